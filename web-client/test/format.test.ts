import { describe, expect, it } from 'vitest'
import { aspectRatio, fixed, msText, plural } from '../src/format'

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

describe('fixed / msText', () => {
  it('shows no negative zero', () => {
    expect(fixed(-0.3)).toBe('0')
    expect(fixed(-0)).toBe('0')
    expect(fixed(-0.04, 1)).toBe('0.0')
    expect(msText(-0.4)).toBe('0 ms')
  })
  it('keeps real negative figures and the rest as toFixed', () => {
    expect(fixed(-0.6)).toBe('-1')
    expect(fixed(-0.06, 1)).toBe('-0.1')
    expect(fixed(12.345, 1)).toBe('12.3')
    expect(msText(7.6)).toBe('8 ms')
    expect(msText(null)).toBe('—')
    expect(msText(undefined)).toBe('—')
  })
})

describe('plural', () => {
  it('says 1 camera, 2 cameras', () => {
    expect(plural(1, 'camera')).toBe('1 camera')
    expect(plural(2, 'camera')).toBe('2 cameras')
    expect(plural(0, 'camera')).toBe('0 cameras')
  })
})
