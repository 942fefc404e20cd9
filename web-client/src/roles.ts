/**
 * What the console offers each role (the server enforces the same rules; these only shape the UI):
 * - `admin`: creates this console's remote control and maps it to the train picked in the list;
 *   watches and commands.
 * - `operator`: uses a remote control an admin assigned (and mapped); watches and commands.
 * - `viewer`: uses an assigned remote control; watches only.
 */
import type { RemoteControlView } from './api'

export type Role = 'viewer' | 'operator' | 'admin'

export interface Me {
  name: string
  role: Role
}

/** The server's `role`; anything unknown gets the least rights. */
export function normalizeRole(role: unknown): Role {
  return role === 'admin' || role === 'operator' ? role : 'viewer'
}

/** `GET /api/me`'s body, checked. */
export function parseMe(v: unknown): Me {
  const o = (typeof v === 'object' && v !== null ? v : {}) as { name?: unknown; role?: unknown }
  return { name: typeof o.name === 'string' && o.name ? o.name : 'unknown', role: normalizeRole(o.role) }
}

/** May create remote controls and map them to trains. */
export const canManage = (role: Role | null): boolean => role === 'admin'
/** May send commands to the mapped train. */
export const canCommand = (role: Role | null): boolean => role === 'admin' || role === 'operator'

export const READ_ONLY_TRAINS_NOTE = 'an admin maps this console to a train'

export function noAssignmentMessage(name: string): string {
  return `no remote control is assigned to ${name} yet`
}

export interface RemoteControlChoice {
  id: string | null
  /** Why the remote control asked for (in the URL) is not the one chosen. */
  problem: string | null
}

/**
 * The assigned remote control an operator or viewer connects as: the one named in the URL
 * (`#rc=`) if it is listed, else the stored one if it is still listed, else the first.
 */
export function chooseRemoteControl(list: RemoteControlView[], fromUrl: string | null, stored: string | null): RemoteControlChoice {
  if (!list.length) return { id: null, problem: null }
  const listed = (id: string | null) => !!id && list.some((rc) => rc.id === id)
  if (listed(fromUrl)) return { id: fromUrl, problem: null }
  const problem = fromUrl ? `remote control ${fromUrl} (from the URL) is not assigned to you` : null
  if (listed(stored)) return { id: stored, problem }
  return { id: list[0].id, problem }
}

export interface CommandState {
  role: Role | null
  connected: boolean
  trainId: string | null
  online: boolean
  /** Why there is no link on purpose (no remote control assigned yet). */
  waiting?: string | null
}

/** Why the command buttons are disabled, or null when they are not. */
export function commandBlockReason(s: CommandState): string | null {
  if (s.role === 'viewer') return 'the viewer role may watch but not command'
  if (!s.role && !s.connected) return 'not signed in'
  if (s.waiting && !s.connected) return s.waiting
  if (!s.connected) return 'not connected to the server'
  if (!s.trainId) return canManage(s.role) ? 'no train is mapped to this console: pick one' : `no train is mapped to this console: ${READ_ONLY_TRAINS_NOTE}`
  if (!s.online) return `train ${s.trainId} is offline`
  return null
}

/** What a `command_error` code means, for the codes access control and limits use. */
export function explainCommandError(code: string): string | null {
  if (code === 'forbidden') return 'this token may not command this train'
  if (code === 'rate_limited') return 'too many commands: slow down'
  return null
}

/** A `command_error` for people: the code, what it means, then the server's message. */
export function describeCommandError(code: string, message: string): string {
  const meaning = explainCommandError(code)
  const why = meaning ? `${code}: ${meaning}` : code
  return message ? `${why} — ${message}` : why
}
