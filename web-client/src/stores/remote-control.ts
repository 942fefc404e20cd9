/**
 * An admin's own remote control: created with `POST /api/remote-controls` (owned by the admin, so
 * that it is not listed to operators and viewers), mapped with `PUT /api/remote-controls/{id}/train`,
 * and created again when the server forgot it (404 after a restart). The single view keeps one in
 * `localStorage`; every wall cell has its own and deletes it when the cell goes.
 */
import type { RemoteControlView } from '../api'
import { authHeaders } from '../auth'
import type { Me } from '../roles'
import { api, ApiError } from '../transport/link'

export interface OwnRemoteControl {
  id: string
  /** Set when the wanted train is not known to the server yet (mapped when it appears). */
  problem: string | null
  /** A new one was created (the caller may keep its id). */
  created: boolean
}

/**
 * The remote control `id` (when the server still knows it, else a new one named `name`), mapped to
 * `want` when that is set and differs.
 */
export async function ensureOwnRemoteControl(o: {
  id: string | null
  want: string | null
  me: Me | null
  name: string
  note?(text: string): void
}): Promise<OwnRemoteControl> {
  const note = o.note ?? (() => {})
  let rc: RemoteControlView | null = null
  let created = false
  if (o.id) {
    try {
      rc = await api<RemoteControlView>('GET', `/api/remote-controls/${encodeURIComponent(o.id)}`)
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e
      note(`the server does not know remote control ${o.id} (restarted?): creating a new one`)
    }
  }
  if (!rc) {
    // Owned by this admin: the server lists owner-less remote controls to every operator and viewer.
    const owner = o.me && o.me.name !== 'anonymous' ? { owner: o.me.name } : {}
    rc = await api<RemoteControlView>('POST', '/api/remote-controls', { name: o.name, ...owner })
    created = true
    note(`remote control ${rc.id} created`)
  }
  let problem: string | null = null
  if (o.want && rc.train_id !== o.want) {
    try {
      rc = await api<RemoteControlView>('PUT', `/api/remote-controls/${encodeURIComponent(rc.id)}/train`, { train_id: o.want })
      note(`mapped to ${o.want}`)
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404 && e.code !== 'remote_control_not_found')) throw e
      problem = `train ${o.want} is not known to the server yet; mapping when it appears`
    }
  }
  return { id: rc.id, problem, created }
}

/**
 * Delete a remote control (the wall's, when its cell goes): best effort, and `keepalive` so that
 * the request outlives a page that is closing. Resolves to the status, or null when unsent.
 */
export function deleteRemoteControl(id: string): Promise<number | null> {
  return fetch(`/api/remote-controls/${encodeURIComponent(id)}`, { method: 'DELETE', keepalive: true, headers: authHeaders() }).then(
    (r) => r.status,
    () => null,
  )
}
