/**
 * What the Connection panel shows of each link (`details[kind]`): the link's own fields merged as
 * they come, but only for the link that lives now. A link that closes keeps only its state and why
 * it closed: its last ICE, channel and signaling fields belonged to a connection that is gone (they
 * stayed "open"/"connected" after a switch from WebRTC to WebSocket, a Chromium finding).
 *
 * The REST-signaled WebRTC link reports `restSignaling` only up to "offer received"; the step after
 * is derived here from the peer connection's own states: "answer sent" once its signaling state is
 * `stable` again, "connected" once both channels are open.
 */
import type { Kind } from '../transport/policy'

export type Detail = Record<string, string>

/** Fields a closed link keeps: its state and the reason it ended. */
const KEPT_WHEN_CLOSED = ['state', 'reason', 'closeCode', 'closeReason', 'signalingError', 'signaling'] as const

export function mergeDetail(kind: Kind, prev: Detail | undefined, d: Detail): Detail {
  if (d.state === 'connecting') return { ...d }
  let next: Detail = { ...(prev ?? {}), ...d }
  if (next.state === 'closed') {
    const kept: Detail = {}
    for (const k of KEPT_WHEN_CLOSED) if (next[k] !== undefined) kept[k] = next[k]
    next = kept
  } else if (kind === 'webrtc') {
    next = withRestProgress(next)
  }
  return next
}

/** REST signaling's progress past "offer received", from the peer connection's own states. */
function withRestProgress(d: Detail): Detail {
  if (d.signaling !== 'rest' || d.restSignaling === undefined || d.restSignaling === 'offer requested') return d
  const channelsOpen = d.videoChannel === 'open' && d.commandChannel === 'open'
  if (channelsOpen && (d.connectionState === 'connected' || d.state === 'open')) return { ...d, restSignaling: 'connected (stable)' }
  if (d.signalingState === 'stable') return { ...d, restSignaling: 'answer sent (stable)' }
  return d
}
