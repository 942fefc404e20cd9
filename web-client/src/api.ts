/**
 * The server's REST resources the console uses, as `openapi/openapi.json` describes them. The
 * types come from `src/api/schema.d.ts`, which openapi-typescript generates from that file
 * (`npm run gen:api`; `test/api-schema.test.ts` fails when it is out of date): these are only the
 * names the console has always imported.
 */
import type { components } from './api/schema'

type Schemas = components['schemas']

/** A camera of a train with its received figures (`Train.cameras`). */
export type CameraView = Schemas['Camera']
/** `GET /api/trains`, `GET /api/trains/{id}`: a train online now or seen since start-up. */
export type TrainView = Schemas['Train']
/** Who controls a train (`Train.control`, its control lease). */
export type ControlView = Schemas['ControlView']
/** `GET|POST /api/remote-controls`, `PUT /api/remote-controls/{id}/train`. */
export type RemoteControlView = Schemas['RemoteControlView']
/** A live transport session of a remote control (`RemoteControlView.sessions`). */
export type SessionView = Schemas['Session']
/** `GET /api/me`: who the token belongs to (see `roles.ts`). */
export type MeView = Schemas['Me']
/** `viewer`, `operator` or `admin`. */
export type RoleName = Schemas['Role']
/** `POST /api/webrtc/offer`: the server's offer for a new WebRTC session. */
export type OfferResponse = Schemas['OfferResponse']
/** A STUN or TURN server the server names (`OfferResponse.ice_servers`); username and credential may be null. */
export type IceServer = Schemas['IceServer']
/** `GET /api/webrtc/sessions/{id}/candidates`: the server's late candidates. */
export type ServerCandidates = Schemas['ServerCandidates']
