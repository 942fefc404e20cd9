import { describe, expect, it } from 'vitest'
import { playbackProblem, type BrowserFacts } from '../src/video/support'

const facts = (over: Partial<BrowserFacts>): BrowserFacts => ({
  secureContext: true,
  videoDecoder: true,
  protocol: 'https:',
  hostname: 'relay.example',
  port: '',
  ...over,
})

describe('playbackProblem', () => {
  it('is null in a secure context with WebCodecs', () => {
    expect(playbackProblem(facts({}))).toBeNull()
    expect(playbackProblem(facts({ protocol: 'http:', hostname: 'localhost', port: '8080' }))).toBeNull()
  })

  it('explains plain HTTP from another host: why, and the https and localhost addresses to use', () => {
    // Chromium hides VideoDecoder outside a secure context, so both facts are false there.
    const p = playbackProblem(facts({ secureContext: false, videoDecoder: false, protocol: 'http:', hostname: 'railcast.test', port: '8080' }))
    expect(p?.kind).toBe('insecure-context')
    expect(p?.why).toContain('http://railcast.test:8080/')
    expect(p?.why).toMatch(/secure/)
    expect(p?.why).toMatch(/HTTPS/)
    expect(p?.todo.join('\n')).toContain('https://railcast.test:8080/')
    expect(p?.todo.join('\n')).toContain('http://localhost:8080/')
    expect(p?.todo.join('\n')).toContain('http_tls_cert')
    expect(p?.todo.join('\n')).toContain('docs/security.md')
  })

  it('brackets IPv6 hosts and leaves out a default port', () => {
    const p = playbackProblem(facts({ secureContext: false, videoDecoder: false, protocol: 'http:', hostname: 'fd00::1', port: '' }))
    expect(p?.why).toContain('http://[fd00::1]/')
    expect(p?.todo[0]).toContain('https://[fd00::1]/')
    expect(p?.todo[1]).toContain('http://localhost/')
  })

  it('insecure context wins even if a decoder were there', () => {
    expect(playbackProblem(facts({ secureContext: false, videoDecoder: true }))?.kind).toBe('insecure-context')
  })

  it('a secure page in a browser without VideoDecoder says to change browsers', () => {
    const p = playbackProblem(facts({ videoDecoder: false }))
    expect(p?.kind).toBe('no-webcodecs')
    expect(p?.why).toContain('VideoDecoder')
  })
})
