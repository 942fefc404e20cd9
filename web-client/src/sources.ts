/**
 * What the train list says about a train's own sources (the agent's `status` frames, `sources` in
 * `GET /api/trains`): every source that is not streaming, in a line each, so that an operator sees
 * "camera 1: reconnecting — 401 …" instead of a camera that silently shows nothing.
 */
import type { TrainView } from './api'

/** The sources of an online train that are not streaming, as "camera N: state — why". */
export function sourceProblems(t: TrainView): string[] {
  if (!t.online) return []
  const cameraIds = new Set(t.cameras.map((c) => c.id))
  return (t.sources ?? [])
    .filter((s) => s.state !== 'streaming')
    .map((s) => {
      const what = cameraIds.has(s.id) ? `camera ${s.id}` : `source ${s.id}`
      return s.detail ? `${what}: ${s.state} — ${s.detail}` : `${what}: ${s.state}`
    })
}
