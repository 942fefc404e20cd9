/** The server's REST resources the console uses (openapi/openapi.json). */
import type { CameraInfo } from './wire/control'
import type { ControlHolder } from './control'

export interface CameraView extends CameraInfo {
  measured_fps: number
  bitrate_bps: number
  frames: number
  bytes: number
}

export interface TrainView {
  id: string
  online: boolean
  cameras: CameraView[]
  software?: string | null
  connected_since?: string | null
  last_seen?: string | null
  offline_reason?: string | null
  bitrate_bps: number
  fps: number
  packets_in: number
  frames_in: number
  subscribers: number
  connections: number
  /** Who controls the train (its control lease), null: nobody; absent from servers before leases. */
  control?: ControlHolder | null
}

export interface RemoteControlView {
  id: string
  name: string
  /** The only non-admin client that may use it; none: any signed-in client. */
  owner?: string | null
  train_id?: string | null
  created_at: string
}

/** `GET /api/me`: who the token belongs to (see `roles.ts`). */
export interface MeView {
  name: string
  /** `viewer`, `operator` or `admin`. */
  role: string
}
