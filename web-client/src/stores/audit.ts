/**
 * The command history of the mapped train (admins): `GET /api/audit`, the newest entries first
 * (`order=newest`), then only what is newer than the newest entry held, page after page, every few
 * seconds while shown and after each ack. A 403 (not an admin) hides it without an error.
 */
import { reactive, type Ref } from 'vue'
import { auditQuery, mergeAudit, parseAuditPage, type AuditEntry } from '../control'
import { api, ApiError } from '../transport/link'
import { errorText } from '../session/storage'

/** Entries kept, page size, pages read per refresh, refresh period. */
const AUDIT_KEEP = 50
const AUDIT_PAGE = 1000
const AUDIT_MAX_PAGES = 20
const AUDIT_REFRESH_MS = 2000

export interface AuditState {
  shown: boolean
  loading: boolean
  error: string | null
  forbidden: boolean
  trainId: string | null
  entries: AuditEntry[]
  /** Where the next refresh goes on: the newest seq read (one node), or in a cluster the last
   * page's `resume` cursor. */
  readTo: number | string | null
  /** A cluster's nodes that did not answer the last refresh in time. */
  missing: string[]
  loadedAt: number | null
}

export function createAudit(deps: { manages: Ref<boolean>; trainId: () => string | null }) {
  const audit = reactive<AuditState>({
    shown: false, loading: false, error: null, forbidden: false, trainId: null, entries: [], readTo: null, missing: [], loadedAt: null,
  })
  let timer: ReturnType<typeof setInterval> | undefined
  let busy: Promise<void> | null = null

  /** Read the mapped train's audit entries newer than the last seen (all pages), keep the newest. */
  function refresh(): Promise<void> {
    if (!audit.shown || !deps.manages.value || audit.forbidden) return Promise.resolve()
    busy ??= load().finally(() => (busy = null))
    return busy
  }

  async function load() {
    const train = deps.trainId()
    if (!train) {
      audit.entries = []
      audit.trainId = null
      return
    }
    if (audit.trainId !== train) {
      audit.trainId = train
      audit.entries = []
      audit.readTo = null
    }
    audit.loading = true
    try {
      let after = audit.readTo
      if (after === null) {
        // The first read: the newest entries in one request (`order=newest`), not the log from
        // its start; from then on only what is newer.
        const page = parseAuditPage(await api<unknown>('GET', auditQuery(train, AUDIT_KEEP, null, 'newest')))
        if (audit.trainId !== train) return
        audit.entries = mergeAudit(audit.entries, page.entries, AUDIT_KEEP)
        audit.missing = page.missing
        // A cluster: every node at its newest entry (`resume`); one node: the newest seq.
        after = audit.readTo = page.resume ?? page.entries.reduce((m, e) => Math.max(m, e.seq), 0)
      }
      for (let i = 0; i < AUDIT_MAX_PAGES; i++) {
        const page = parseAuditPage(await api<unknown>('GET', auditQuery(train, AUDIT_PAGE, after)))
        if (audit.trainId !== train) return
        audit.entries = mergeAudit(audit.entries, page.entries, AUDIT_KEEP)
        audit.missing = page.missing
        if (page.resume !== null) {
          // A cluster: `resume` goes on after this page; `cursor` says more matched already.
          after = audit.readTo = page.resume
          if (page.cursor === null) break
          continue
        }
        const last = page.entries.at(-1)?.seq ?? null
        if (last !== null) after = audit.readTo = Math.max(last, typeof audit.readTo === 'number' ? audit.readTo : 0)
        if (page.next === null) break
        after = page.next
      }
      audit.error = null
      audit.loadedAt = Date.now()
    } catch (e) {
      // 403: not an admin (the role changed): no history, and no error to show.
      if (e instanceof ApiError && e.status === 403) audit.forbidden = true
      else audit.error = errorText(e)
    } finally {
      audit.loading = false
    }
  }

  function show(shown: boolean) {
    audit.shown = shown && deps.manages.value
    clearInterval(timer)
    timer = undefined
    if (audit.shown) {
      void refresh()
      timer = setInterval(() => void refresh(), AUDIT_REFRESH_MS)
    }
  }

  return { audit, refresh, show }
}
