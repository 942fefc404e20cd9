import { describe, expect, it } from 'vitest'
import type { TrainView } from '../src/api'
import { sourceProblems } from '../src/sources'

const train = (over: Partial<TrainView>): TrainView =>
  ({
    id: 'train-7',
    online: true,
    cameras: [0, 1].map((id) => ({ id, codec: 'h264', width: 320, height: 240, fps: 15, measured_fps: 15, bitrate_bps: 1, frames: 1, bytes: 1 })),
    ...over,
  }) as TrainView

describe('sourceProblems', () => {
  it('lists the sources that are not streaming, with the train’s reason', () => {
    const t = train({
      sources: [
        { id: 0, state: 'streaming', fps: 15, bitrate_bps: 1e5, age_s: 0.2 },
        { id: 1, state: 'reconnecting', detail: '401 response to DESCRIBE', fps: 0, bitrate_bps: 0, age_s: 0.4 },
        { id: 256, state: 'stalled', detail: null, fps: 0, bitrate_bps: 0, age_s: 0.4 },
      ],
    })
    expect(sourceProblems(t)).toEqual(['camera 1: reconnecting — 401 response to DESCRIBE', 'source 256: stalled'])
  })

  it('says nothing for an offline train or one that sends no status', () => {
    expect(sourceProblems(train({ online: false, sources: [{ id: 0, state: 'ended', fps: 0, bitrate_bps: 0, age_s: 1 }] }))).toEqual([])
    expect(sourceProblems(train({}))).toEqual([])
  })
})
