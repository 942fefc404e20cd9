// Where the access token comes from (fragment, then storage, then the prompt) and what leaves the URL.
import { describe, expect, it, vi } from 'vitest'
import { normalizeTokenInput, parseFragment, resolveToken, TOKEN_KEY, type StorageLike } from '../src/auth'

function memoryStorage(init: Record<string, string> = {}): StorageLike & { data: Map<string, string> } {
  const data = new Map(Object.entries(init))
  return {
    data,
    getItem: (k) => data.get(k) ?? null,
    setItem: (k, v) => void data.set(k, v),
    removeItem: (k) => void data.delete(k),
  }
}

function env(hash: string, stored?: string, search = '') {
  const storage = memoryStorage(stored === undefined ? {} : { [TOKEN_KEY]: stored })
  const replaceState = vi.fn()
  return { storage, replaceState, env: { location: { hash, pathname: '/', search }, history: { replaceState }, storage } }
}

describe('parseFragment', () => {
  it('reads token and rc, in any order, and keeps everything but the token', () => {
    expect(parseFragment('#token=XYZ&rc=rc-123')).toEqual({ token: 'XYZ', rc: 'rc-123', hadToken: true, rest: 'rc=rc-123' })
    expect(parseFragment('#rc=rc-1&token=abc&x=1')).toEqual({ token: 'abc', rc: 'rc-1', hadToken: true, rest: 'rc=rc-1&x=1' })
    expect(parseFragment('')).toEqual({ token: null, rc: null, hadToken: false, rest: '' })
  })

  it('percent-decodes, but keeps "+" (base64 tokens)', () => {
    expect(parseFragment('#token=a%2Fb+c%3D%3D').token).toBe('a/b+c==')
  })

  it('an empty token is no token, but still leaves the URL', () => {
    expect(parseFragment('#token=&rc=r')).toEqual({ token: null, rc: 'r', hadToken: true, rest: 'rc=r' })
  })
})

describe('resolveToken: fragment, then storage, then nothing', () => {
  it('the fragment wins over storage; it is saved and removed from the visible URL', () => {
    const t = env('#token=FROM-URL&rc=rc-123', 'STORED', '?transport=webrtc')
    expect(resolveToken(t.env)).toEqual({ token: 'FROM-URL', source: 'fragment', rc: 'rc-123' })
    expect(t.storage.data.get(TOKEN_KEY)).toBe('FROM-URL')
    expect(t.replaceState).toHaveBeenCalledOnce()
    expect(t.replaceState.mock.calls[0][2]).toBe('/?transport=webrtc#rc=rc-123')
  })

  it('a fragment with only the token leaves no "#" behind', () => {
    const t = env('#token=T')
    resolveToken(t.env)
    expect(t.replaceState.mock.calls[0][2]).toBe('/')
  })

  it('storage when the fragment has no token; the URL is left alone', () => {
    const t = env('#rc=rc-9', 'STORED')
    expect(resolveToken(t.env)).toEqual({ token: 'STORED', source: 'storage', rc: 'rc-9' })
    expect(t.replaceState).not.toHaveBeenCalled()
  })

  it('nothing: the prompt will ask', () => {
    const t = env('')
    expect(resolveToken(t.env)).toEqual({ token: null, source: null, rc: null })
    expect(t.storage.data.size).toBe(0)
  })

  it('works when storage is disabled (throws)', () => {
    const broken: StorageLike = {
      getItem: () => {
        throw new Error('denied')
      },
      setItem: () => {
        throw new Error('denied')
      },
      removeItem: () => {},
    }
    const replaceState = vi.fn()
    const loc = { hash: '#token=T', pathname: '/', search: '' }
    expect(resolveToken({ location: loc, history: { replaceState }, storage: broken }).token).toBe('T')
    expect(resolveToken({ location: { ...loc, hash: '' }, history: { replaceState }, storage: broken }).token).toBeNull()
  })
})

describe('normalizeTokenInput (the prompt)', () => {
  it('takes a bare token, token=…, or a whole console URL', () => {
    expect(normalizeTokenInput('  abc123 \n')).toBe('abc123')
    expect(normalizeTokenInput('token=abc')).toBe('abc')
    expect(normalizeTokenInput('http://127.0.0.1:8080/#token=abc&rc=rc-1')).toBe('abc')
  })

  it('refuses empty text and text that is not a token', () => {
    expect(normalizeTokenInput('   ')).toBeNull()
    expect(normalizeTokenInput('two words')).toBeNull()
    expect(normalizeTokenInput('http://127.0.0.1:8080/#rc=rc-1')).toBeNull()
  })
})
