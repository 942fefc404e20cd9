// The WHEP link's pure parts: ICE servers from `Link` headers (WHEP §4.4) and per-camera figures
// from a getStats() report.
import { describe, expect, it } from 'vitest'
import { audioTrackStats, iceServersFromLinks, trackStats } from '../src/transport/whep'
import { captureMsFromRtp, RTP_PERIOD_MS } from '../src/video/media'

describe('iceServersFromLinks', () => {
  it('reads STUN and TURN entries with their credentials, and nothing else', () => {
    const header =
      '<stun:127.0.0.1:3478>; rel="ice-server", ' +
      '<turn:127.0.0.1:3478?transport=udp>; rel="ice-server"; username="user, with comma"; credential="s3cret"; credential-type="password", ' +
      '</api/other>; rel="next"'
    expect(iceServersFromLinks(header)).toEqual([
      { urls: 'stun:127.0.0.1:3478' },
      { urls: 'turn:127.0.0.1:3478?transport=udp', username: 'user, with comma', credential: 's3cret' },
    ])
  })

  it('no header, or garbage: none', () => {
    expect(iceServersFromLinks(null)).toEqual([])
    expect(iceServersFromLinks('not a link header')).toEqual([])
  })
})

describe('trackStats', () => {
  const report = (entries: Record<string, unknown>[]) => new Map(entries.map((e) => [e.id as string, e])) as unknown as RTCStatsReport

  it('maps inbound video streams to cameras by mid, with jitter-buffer delay per frame', () => {
    const r = report([
      { id: 'c1', type: 'codec', mimeType: 'video/H264' },
      { id: 'in1', type: 'inbound-rtp', kind: 'video', mid: '1', codecId: 'c1', framesDecoded: 90, framesPerSecond: 30, packetsReceived: 900, packetsLost: 2, jitter: 0.004, jitterBufferDelay: 4.5, jitterBufferEmittedCount: 90, keyFramesDecoded: 3, pliCount: 1, frameWidth: 640, frameHeight: 480 },
      { id: 'in0', type: 'inbound-rtp', kind: 'video', mid: '0', codecId: 'c1', framesDecoded: 10 },
      { id: 'a', type: 'inbound-rtp', kind: 'audio', mid: '2' },
      { id: 'x', type: 'inbound-rtp', kind: 'video', mid: '7' },
    ])
    const s = trackStats(r, ['0', '1'])
    expect(s.map((t) => t.index)).toEqual([0, 1])
    expect(s[1]).toEqual({
      index: 1, framesDecoded: 90, framesPerSecond: 30, packetsReceived: 900, packetsLost: 2, jitterMs: 4, jitterBufferMs: 50,
      keyFramesDecoded: 3, pliSent: 1, width: 640, height: 480, codec: 'video/H264',
    })
    expect(s[0]).toMatchObject({ framesDecoded: 10, jitterBufferMs: null })
  })
})

describe('captureMsFromRtp', () => {
  it('the capture time of a 90 kHz timestamp, unwrapped to the period nearest the present', () => {
    const capture = 1_764_600_000_123 // 2025-12-01, ms
    const rtp = Math.round(capture * 90) % 2 ** 32
    expect(captureMsFromRtp(rtp, capture + 50)).toBeCloseTo(capture, 1)
    expect(captureMsFromRtp(rtp, capture - 50)).toBeCloseTo(capture, 1)
    // Across a wrap: a timestamp just below 2^32 seen just after the wrap.
    const wrapAt = Math.ceil(capture / RTP_PERIOD_MS) * RTP_PERIOD_MS
    const before = wrapAt - 10
    expect(captureMsFromRtp(Math.round(before * 90) % 2 ** 32, wrapAt + 20)).toBeCloseTo(before, 1)
  })
})

describe('audioTrackStats', () => {
  it("the audio transceiver's inbound stream, by mid; none without it", () => {
    const r = new Map(
      [
        { id: 'c', type: 'codec', mimeType: 'audio/opus' },
        { id: 'a', type: 'inbound-rtp', kind: 'audio', mid: '0', codecId: 'c', packetsReceived: 100, packetsLost: 1, totalSamplesReceived: 96000, audioLevel: 0.25, jitterBufferDelay: 4, jitterBufferEmittedCount: 100 },
        { id: 'v', type: 'inbound-rtp', kind: 'video', mid: '1' },
      ].map((e) => [e.id, e]),
    ) as unknown as RTCStatsReport
    expect(audioTrackStats(r, '0')).toEqual({ packetsReceived: 100, packetsLost: 1, totalSamplesReceived: 96000, audioLevel: 0.25, jitterBufferMs: 40, codec: 'audio/opus' })
    expect(audioTrackStats(r, '1')).toBeNull()
    expect(audioTrackStats(r, null)).toBeNull()
  })
})
