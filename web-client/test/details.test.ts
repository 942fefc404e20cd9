// The Connection panel's per-link details: a closed link keeps no stale ICE/channel fields, and
// REST signaling's progress goes past "offer received" (a Chromium finding: after switching from
// WebRTC to WebSocket the panel still showed the channels open and ICE connected).
import { describe, expect, it } from 'vitest'
import { mergeDetail } from '../src/session/details'

const webrtcOpen = {
  signaling: 'rest', restSignaling: 'offer received', session: 's-1', connectionState: 'connected', iceConnectionState: 'connected',
  iceGatheringState: 'complete', signalingState: 'stable', videoChannel: 'open', commandChannel: 'open',
}

describe('link details', () => {
  it('a closed WebRTC link keeps its state and reason only', () => {
    let d = mergeDetail('webrtc', {}, { state: 'connecting' })
    d = mergeDetail('webrtc', d, webrtcOpen)
    d = mergeDetail('webrtc', d, { state: 'open' })
    expect(d.iceConnectionState).toBe('connected')
    // The supervisor closes it (Auto switched, or the user picked WebSocket).
    d = mergeDetail('webrtc', d, { state: 'closed' })
    d = mergeDetail('webrtc', d, { state: 'closed', reason: 'switched to websocket' })
    expect(d).toEqual({ state: 'closed', reason: 'switched to websocket', signaling: 'rest' })
  })

  it('connecting starts from nothing', () => {
    const d = mergeDetail('webrtc', { state: 'closed', reason: 'x', videoChannel: 'open' }, { state: 'connecting' })
    expect(d).toEqual({ state: 'connecting' })
  })

  it('REST signaling: offer requested → offer received → answer sent → connected', () => {
    let d = mergeDetail('webrtc', {}, { state: 'connecting' })
    d = mergeDetail('webrtc', d, { signaling: 'rest', restSignaling: 'offer requested', videoChannel: 'none', commandChannel: 'none' })
    expect(d.restSignaling).toBe('offer requested')
    d = mergeDetail('webrtc', d, { signaling: 'rest', restSignaling: 'offer received', signalingState: 'have-remote-offer', videoChannel: 'none', commandChannel: 'none' })
    expect(d.restSignaling).toBe('offer received')
    d = mergeDetail('webrtc', d, { signaling: 'rest', restSignaling: 'offer received', signalingState: 'stable', connectionState: 'connecting', videoChannel: 'connecting', commandChannel: 'none' })
    expect(d.restSignaling).toBe('answer sent (stable)')
    d = mergeDetail('webrtc', d, { ...webrtcOpen })
    expect(d.restSignaling).toBe('connected (stable)')
    d = mergeDetail('webrtc', d, { state: 'open' })
    expect(d.restSignaling).toBe('connected (stable)')
  })

  it('MQTT and JSON-RPC signaling report their own progress: untouched', () => {
    const d = mergeDetail('webrtc', {}, { ...webrtcOpen, signaling: 'rpc', restSignaling: undefined as unknown as string, rpcSignaling: 'open (socket kept for the session)' })
    expect(d.rpcSignaling).toBe('open (socket kept for the session)')
    expect(d.restSignaling).toBeUndefined()
  })

  it('other links merge as before, and also forget their fields when closed', () => {
    let d = mergeDetail('websocket', {}, { state: 'connecting' })
    d = mergeDetail('websocket', d, { readyState: 'OPEN' })
    d = mergeDetail('websocket', d, { state: 'open' })
    expect(d).toEqual({ state: 'open', readyState: 'OPEN' })
    d = mergeDetail('websocket', d, { readyState: 'CLOSED', closeCode: '1006', closeReason: '' })
    d = mergeDetail('websocket', d, { state: 'closed', reason: 'closed 1006' })
    expect(d).toEqual({ state: 'closed', reason: 'closed 1006', closeCode: '1006', closeReason: '' })
  })
})
