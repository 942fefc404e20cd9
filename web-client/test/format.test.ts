import { describe, expect, it } from 'vitest'
import { aspectRatio } from '../src/format'

describe('aspectRatio', () => {
  it('keeps a 16:9 camera 16:9', () => {
    expect(aspectRatio({ width: 1280, height: 720 })).toBe('1280 / 720')
  })
  it('prefers the decoded frame size over the announced one', () => {
    expect(aspectRatio({ width: 1920, height: 1080 }, { width: 640, height: 480 })).toBe('1920 / 1080')
  })
  it('falls back to the announced size while nothing is decoded', () => {
    expect(aspectRatio(null, { width: 0, height: 0 }, { width: 800, height: 600 })).toBe('800 / 600')
    expect(aspectRatio({ width: 0, height: 0 }, { width: 1280, height: 720 })).toBe('1280 / 720')
  })
  it('is 4 / 3 when no size is known', () => {
    expect(aspectRatio()).toBe('4 / 3')
    expect(aspectRatio(null, undefined, { width: 640, height: 0 })).toBe('4 / 3')
  })
})
