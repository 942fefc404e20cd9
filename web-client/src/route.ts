/**
 * Which view the console shows, kept in the URL's query so that a link opens it again:
 * the single view (default), the video wall (`?view=wall`) and the playback view
 * (`?view=playback&train=ID&at=RFC3339`). Shared by the header's tabs and the links that open a
 * view from elsewhere ("Recordings", "▶ replay").
 */
import { reactive } from 'vue'
import { parseTime, playbackQuery } from './playback'

export type View = 'single' | 'wall' | 'playback'

export interface Route {
  view: View
  /** The playback view's train (`?train=`). */
  train: string | null
  /** The playback view's moment to open at (`?at=`), epoch ms. */
  at: number | null
  /** Bumped on every `openPlayback`, so that the view reacts to a second jump to the same moment. */
  seq: number
}

export function parseRoute(search: string): Omit<Route, 'seq'> {
  const q = new URLSearchParams(search)
  const v = q.get('view')
  const at = q.get('at') ? parseTime(q.get('at') as string) : NaN
  return { view: v === 'wall' || v === 'playback' ? v : 'single', train: q.get('train') || null, at: Number.isFinite(at) ? at : null }
}

export const route = reactive<Route>({ ...parseRoute(typeof location === 'undefined' ? '' : location.search), seq: 0 })

function write(search: string) {
  history.replaceState(history.state, '', location.pathname + search + location.hash)
}

/** Show the single view or the wall. */
export function setView(v: Exclude<View, 'playback'>) {
  route.view = v
  const u = new URL(location.href)
  u.searchParams.delete('at')
  if (v === 'wall') u.searchParams.set('view', 'wall')
  else u.searchParams.delete('view')
  write(u.search)
}

/** Open the playback view of `train` at `at` (epoch ms; null: the newest recording). */
export function openPlayback(train: string, at: number | null = null) {
  route.view = 'playback'
  route.train = train
  route.at = at
  route.seq++
  write(playbackQuery(train, at))
}
