/**
 * Can this page play video at all? The console decodes with WebCodecs (`VideoDecoder`), which
 * browsers expose only in a secure context: a page served over HTTPS, or from localhost / a
 * loopback address. Opened over plain HTTP from any other host, every canvas would stay black
 * with nothing said; the console checks at start-up and explains instead (`App.vue`).
 *
 * Pure: the browser facts are passed in (`browserFacts()` reads them), so Vitest covers every case.
 */

/** What the check needs to know about the page and the browser. */
export interface BrowserFacts {
  /** `window.isSecureContext`. */
  secureContext: boolean
  /** `typeof VideoDecoder === 'function'`. */
  videoDecoder: boolean
  /** `location.protocol`, `location.hostname`, `location.port`. */
  protocol: string
  hostname: string
  port: string
}

export interface PlaybackProblem {
  /** `insecure-context`: WebCodecs is hidden on this origin; `no-webcodecs`: this browser lacks it. */
  kind: 'insecure-context' | 'no-webcodecs'
  /** One line: what is wrong. */
  title: string
  /** Why, in plain words. */
  why: string
  /** What the operator (or whoever runs the server) can do, one step per line. */
  todo: string[]
}

/** Where the deployment guide is (served with the repository, not by the server). */
export const DOCS_HINT = 'docs/security.md, section “HTTPS for the console”'

function hostPort(hostname: string, port: string): string {
  const host = hostname.includes(':') ? `[${hostname}]` : hostname
  return port ? `${host}:${port}` : host
}

/** `null` when video can play here; otherwise what is wrong and what to do. */
export function playbackProblem(f: BrowserFacts): PlaybackProblem | null {
  if (f.secureContext && f.videoDecoder) return null
  if (!f.secureContext) {
    const here = `${f.protocol}//${hostPort(f.hostname, f.port)}/`
    return {
      kind: 'insecure-context',
      title: 'Video cannot play on this address.',
      why:
        `This console was opened at ${here} over plain HTTP. Browsers decode video (WebCodecs) only on a secure ` +
        'page: one served over HTTPS, or from localhost on the server itself. Here the browser hides the video ' +
        'decoder, so every camera would stay black.',
      todo: [
        `Open it over HTTPS: https://${hostPort(f.hostname, f.port)}/ — the server needs a certificate ` +
          '(settings http_tls_cert and http_tls_key), or a reverse proxy with TLS in front of it.',
        `On the server's own machine, http://localhost${f.port ? `:${f.port}` : ''}/ works too.`,
        `How to set it up: ${DOCS_HINT}.`,
      ],
    }
  }
  return {
    kind: 'no-webcodecs',
    title: 'This browser cannot decode the video.',
    why: 'The console decodes video with WebCodecs (VideoDecoder), and this browser does not provide it.',
    todo: ['Use a current version of Chrome, Edge, Firefox or Safari.', `More: ${DOCS_HINT}.`],
  }
}

/** The facts of the page this runs in. */
export function browserFacts(): BrowserFacts {
  return {
    secureContext: globalThis.isSecureContext === true,
    videoDecoder: typeof (globalThis as { VideoDecoder?: unknown }).VideoDecoder === 'function',
    protocol: location.protocol,
    hostname: location.hostname,
    port: location.port,
  }
}
