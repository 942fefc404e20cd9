//! Playback of recordings (docs/recording.md, "Playback"): the recorded spans of a train, and a
//! time range of one source as MP4, seekable with HTTP `Range`. The files are read off the
//! runtime; a response streams the segment files' bytes without holding them in memory.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Extension, Json, Router};
use railcast_protocol::TrainId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Role;
use crate::core::Core;
use crate::http::{forbidden, rfc3339, Admin, ApiError, ApiJson, ApiPath, ApiQuery, Caller, ErrorBody, UpgradeCaller};
use crate::record::library::Library;
use crate::record::playback::{self, Format, Piece, Pieces, PlaybackError, MAX_RANGE};

/// This part's fragment of the contract.
#[derive(Debug, OpenApi)]
#[openapi(
    paths(list_recordings, get_recording, set_recording),
    components(schemas(Recordings, RecordingState, SetRecording, RecordedSource, RecordedSpan)),
    tags((name = "recordings", description = "Recorded video and audio of trains (docs/recording.md)"))
)]
pub struct ApiDoc;

/// What the playback routes read.
#[derive(Debug)]
pub struct Playback {
    pub library: Library,
    /// Which trains are recorded, and how it goes.
    pub control: crate::record::control::Control,
}

/// The routes under `/api`; `playback` is `None` when recording is off (`record_dir` empty).
pub fn routes(playback: Option<Arc<Playback>>) -> Router<Core> {
    Router::new()
        .route("/trains/{id}/recordings", get(list_recordings))
        .route("/trains/{id}/recordings/{source}", get(get_recording))
        .route("/trains/{id}/recording", put(set_recording))
        .layer(Extension(playback))
}

/// A train's recordings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Recordings {
    pub train: String,
    pub recording: RecordingState,
    /// Every recorded source, sorted by name.
    pub sources: Vec<RecordedSource>,
}

/// Whether a train is being recorded, and how it goes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordingState {
    /// The train is to be recorded (the configuration's `record_trains`, or the admin's toggle).
    pub enabled: bool,
    /// A segment file is open now: frames are being written.
    pub active: bool,
    /// The last file-system error (a full disk) while it lasts; null once writing works again.
    pub error: Option<String>,
    /// Since when `error` has been happening (RFC 3339).
    pub error_since: Option<String>,
}

impl From<crate::record::control::TrainState> for RecordingState {
    fn from(s: crate::record::control::TrainState) -> Self {
        Self { enabled: s.enabled, active: s.active, error: s.error, error_since: s.error_since.map(rfc3339) }
    }
}

/// Start or stop recording a train.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"enabled": true}))]
pub struct SetRecording {
    pub enabled: bool,
}

/// A recorded camera or audio source.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordedSource {
    /// `camera-<id>` or `audio-<id>` (the track id of the wire format).
    #[schema(example = "camera-0")]
    pub source: String,
    /// `video` or `audio`.
    pub kind: String,
    /// Runs of segments with holes of at most 1 s between them, sorted by start.
    pub spans: Vec<RecordedSpan>,
}

/// A recorded span.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordedSpan {
    /// Wall-clock time of its first sample (RFC 3339, UTC, ms).
    pub start: String,
    /// Wall-clock time its last sample ends.
    pub end: String,
    pub duration_ms: u64,
    /// Segment files it is made of.
    pub segments: usize,
}

/// The range a recording request asks for.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// Start of the range, RFC 3339 in UTC (`2026-12-02T09:00:00.123Z`).
    pub start: String,
    /// End of the range (exclusive), at most 10 minutes after `start`.
    pub end: String,
    /// `mp4` (default: moov first, seekable) or `fmp4` (an init segment, then fragments).
    pub format: Option<String>,
}

fn recording_off() -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "recording_off", "recording is off on this server (record_dir is empty)")
}

fn internal(e: &PlaybackError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "recording_unreadable", e.to_string())
}

/// The train of a playback request, if the caller may watch it: an admin any train, anyone else a
/// train that a remote control it may use is mapped to (docs/security.md).
fn watchable(core: &Core, caller: &Caller, id: &str) -> Result<TrainId, ApiError> {
    let train = TrainId::new(id).map_err(|e| ApiError::bad_request("bad_train_id", format!("train id '{id}': {e}")))?;
    if caller.0.role >= Role::Admin {
        return Ok(train);
    }
    let mapped = core
        .remotes
        .list()
        .iter()
        .any(|rc| rc.train().as_ref() == Some(&train) && caller.0.may_use(rc.owner.as_deref()));
    if mapped {
        Ok(train)
    } else {
        Err(forbidden(format!(
            "{} may play back only trains its remote controls are mapped to; none is mapped to '{id}'",
            caller.0.name
        )))
    }
}

/// The train and the recordings of a playback request: 400 or 403 ([`watchable`]), then 404 for a
/// train neither known (seen, or a remote control's) nor recorded, then 409 when recording is off.
async fn recorded(
    core: &Core,
    caller: &Caller,
    id: &str,
    playback: Option<Arc<Playback>>,
) -> Result<(TrainId, Arc<Playback>), ApiError> {
    let train = watchable(core, caller, id)?;
    let mapped = || core.remotes.list().iter().any(|rc| rc.train().as_ref() == Some(&train));
    let known = core.hub.stream(&train).is_some() || mapped() || {
        let (p, t) = (playback.clone(), train.clone());
        blocking(move || p.is_some_and(|p| p.library.has(&t))).await?
    };
    if !known {
        return Err(ApiError::train_not_found(id));
    }
    Ok((train, playback.ok_or_else(recording_off)?))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("reading recordings: {e}")))
}

/// The recorded spans of a train, per camera and audio source. Any role that may watch the train:
/// admins every train, others a train one of their remote controls is mapped to.
#[utoipa::path(get, path = "/api/trains/{id}/recordings", tag = "recordings",
    params(("id" = String, Path, description = "Train id")),
    responses(
        (status = 200, body = Recordings),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "Nothing of this train is known or recorded", body = ErrorBody),
        (status = 409, description = "Recording is off on this server", body = ErrorBody)))]
async fn list_recordings(
    caller: Caller,
    State(core): State<Core>,
    Extension(playback): Extension<Option<Arc<Playback>>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Recordings>, ApiError> {
    let (train, playback) = recorded(&core, &caller, &id, playback).await?;
    let (t, p) = (train.clone(), Arc::clone(&playback));
    let sources = blocking(move || p.library.sources(&t)).await?.map_err(|e| internal(&e))?;
    let sources = sources
        .into_iter()
        .map(|s| RecordedSource {
            spans: playback::spans(&s.segments)
                .into_iter()
                .map(|span| RecordedSpan {
                    start: rfc3339(span.start),
                    end: rfc3339(span.end),
                    duration_ms: span.end.duration_since(span.start).unwrap_or_default().as_millis() as u64,
                    segments: span.segments,
                })
                .collect(),
            source: s.name,
            kind: s.kind.into(),
        })
        .collect();
    let recording = playback.control.state(&train).into();
    Ok(Json(Recordings { train: train.to_string(), recording, sources }))
}

/// Start or stop recording a train now, whatever `record_trains` says, until the server restarts.
/// Stopping ends its segments cleanly (the parts in progress are written). Admin.
#[utoipa::path(put, path = "/api/trains/{id}/recording", tag = "recordings",
    params(("id" = String, Path, description = "Train id: a train seen, mapped to a remote control, or recorded (need not be online)")),
    request_body = SetRecording,
    responses(
        (status = 200, body = RecordingState),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such train", body = ErrorBody),
        (status = 409, description = "Recording is off on this server", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_recording(
    Admin(caller): Admin,
    State(core): State<Core>,
    Extension(playback): Extension<Option<Arc<Playback>>>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetRecording>,
) -> Result<Json<RecordingState>, ApiError> {
    let (train, playback) = recorded(&core, &caller, &id, playback).await?;
    if !crate::record::library::recordable(&train) {
        return Err(ApiError::bad_request("bad_train_id", format!("train id '{id}' cannot name a directory")));
    }
    let state = playback.control.set(&train, body.enabled);
    tracing::info!(%train, enabled = body.enabled, by = %caller.0.name, "recording toggled");
    Ok(Json(state.into()))
}

fn parse_time(name: &str, value: &str) -> Result<SystemTime, ApiError> {
    humantime::parse_rfc3339(value).map_err(|e| {
        ApiError::bad_request(
            "bad_time",
            format!("{name} '{value}': {e} (RFC 3339 in UTC, e.g. 2026-12-02T09:00:00.123Z)"),
        )
    })
}

/// A time range of one recorded source as MP4. `format=mp4` (default): one file with its `moov`
/// first, seekable; `format=fmp4`: an init segment, then fragments. Video starts at the last
/// keyframe at or before `start`, and an edit list begins the presentation at `start`; holes in
/// the recording are kept in time, so media time t is wall-clock time `Railcast-Media-Start + t`.
/// Honours a single `Range: bytes=…` (206, or 416 outside the file). The token may also be the
/// `access_token` query parameter, for a `<video src>`. Same roles as the listing.
#[utoipa::path(get, path = "/api/trains/{id}/recordings/{source}", tag = "recordings",
    params(("id" = String, Path, description = "Train id"),
           ("source" = String, Path, description = "`camera-<id>` or `audio-<id>`"),
           RangeQuery,
           ("Range" = Option<String>, Header, description = "One byte range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`")),
    responses(
        (status = 200, description = "The range as MP4 (`video/mp4`; `audio/mp4` for an audio source)", content_type = "video/mp4", body = String,
            headers(("Railcast-Media-Start" = String, description = "Wall-clock time (RFC 3339) of media time 0"),
                    ("Accept-Ranges" = String, description = "`bytes`"))),
        (status = 206, description = "The byte range asked for", content_type = "video/mp4", body = String,
            headers(("Content-Range" = String, description = "`bytes first-last/length`"))),
        (status = 400, description = "A bad start, end or format, end before start, or a range over 10 minutes", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such source, or nothing recorded in the range", body = ErrorBody),
        (status = 409, description = "Recording is off on this server", body = ErrorBody),
        (status = 416, description = "The byte range is outside the file", body = ErrorBody)))]
async fn get_recording(
    caller: UpgradeCaller,
    State(core): State<Core>,
    Extension(playback): Extension<Option<Arc<Playback>>>,
    ApiPath((id, source)): ApiPath<(String, String)>,
    query: Result<ApiQuery<RangeQuery>, ApiError>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (train, playback) = recorded(&core, &caller.0, &id, playback).await?;
    let ApiQuery(q) = query?;
    let (start, end) = (parse_time("start", &q.start)?, parse_time("end", &q.end)?);
    let length =
        end.duration_since(start).map_err(|_| ApiError::bad_request("bad_range", "end must be after start"))?;
    if length.is_zero() {
        return Err(ApiError::bad_request("bad_range", "end must be after start"));
    }
    if length > MAX_RANGE {
        return Err(ApiError::bad_request(
            "bad_range",
            format!("a range is at most {} s; this one is {:.1} s", MAX_RANGE.as_secs(), length.as_secs_f64()),
        ));
    }
    let format = match q.format.as_deref() {
        None | Some("mp4") => Format::Progressive,
        Some("fmp4") => Format::Fragmented,
        Some(other) => return Err(ApiError::bad_request("bad_format", format!("format '{other}': mp4 or fmp4"))),
    };
    let name = source.clone();
    let found = blocking(move || {
        let Some(src) = playback.library.source(&train, &name)? else { return Ok(None) };
        playback::range(&src.segments, start, end, format).map(Some)
    })
    .await?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("nothing of '{source}' of train '{id}' is recorded between {} and {}", q.start, q.end),
        )
    };
    let range = match found {
        Ok(Some(r)) => r,
        Ok(None) | Err(PlaybackError::Empty) => return Err(not_found()),
        Err(e) => return Err(internal(&e)),
    };
    let total = range.pieces.len();
    let content_type = if range.kind == "audio" { "audio/mp4" } else { "video/mp4" };
    let mut response_headers = HeaderMap::new();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(&mut response_headers, header::CONTENT_TYPE, content_type.into());
    set(&mut response_headers, header::ACCEPT_RANGES, "bytes".into());
    set(&mut response_headers, header::CACHE_CONTROL, "no-cache".into());
    set(&mut response_headers, header::HeaderName::from_static("railcast-media-start"), rfc3339(range.media_start));
    let file = format!("{id}_{source}_{}.mp4", crate::record::segment::file_name(range.media_start));
    set(&mut response_headers, header::CONTENT_DISPOSITION, format!("inline; filename=\"{file}\""));
    let (status, pieces) = match byte_range(&headers, total) {
        ByteRange::Whole => (StatusCode::OK, range.pieces),
        ByteRange::Part(first, last) => {
            set(&mut response_headers, header::CONTENT_RANGE, format!("bytes {first}-{last}/{total}"));
            (StatusCode::PARTIAL_CONTENT, range.pieces.slice(first, last))
        }
        ByteRange::Unsatisfiable => {
            let mut e = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the byte range is outside the {total} bytes of this recording"),
            )
            .into_response();
            set(e.headers_mut(), header::CONTENT_RANGE, format!("bytes */{total}"));
            return Ok(e);
        }
    };
    set(&mut response_headers, header::CONTENT_LENGTH, pieces.len().to_string());
    Ok((status, response_headers, stream(pieces)).into_response())
}

/// What a `Range` header asks of a body of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range; anything else (several ranges, another unit, bad syntax) is ignored and
/// the whole body sent, as RFC 9110 allows.
fn byte_range(headers: &HeaderMap, total: u64) -> ByteRange {
    let Some(spec) =
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return ByteRange::Whole };
    let (first, last) = match (a.trim(), b.trim()) {
        ("", suffix) => match suffix.parse::<u64>() {
            Ok(0) => return ByteRange::Unsatisfiable,
            Ok(n) => (total.saturating_sub(n), total.saturating_sub(1)),
            Err(_) => return ByteRange::Whole,
        },
        (a, "") => match a.parse::<u64>() {
            Ok(a) => (a, total.saturating_sub(1)),
            Err(_) => return ByteRange::Whole,
        },
        (a, b) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(a), Ok(b)) if a <= b => (a, b.min(total.saturating_sub(1))),
            _ => return ByteRange::Whole,
        },
    };
    if total == 0 || first >= total {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Part(first, last)
    }
}

/// Bytes read per chunk of a file extent.
const CHUNK: u64 = 256 << 10;

/// The body: the pieces in order, file extents read in chunks on a blocking thread, a few chunks
/// ahead of the client at most (a client that stops reading stops the reading).
fn stream(pieces: Pieces) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        for piece in pieces.0 {
            match piece {
                Piece::Bytes(b) => {
                    if tx.blocking_send(Ok(b)).is_err() {
                        return;
                    }
                }
                Piece::File { path, offset, len } => {
                    let mut at = 0;
                    while at < len {
                        let n = CHUNK.min(len - at);
                        let mut buf = Vec::with_capacity(n as usize);
                        let chunk = playback::read_extent(&path, offset + at, n, &mut buf)
                            .map(|()| bytes::Bytes::from(buf))
                            .map_err(std::io::Error::other);
                        let failed = chunk.is_err();
                        if let Err(e) = &chunk {
                            tracing::warn!(error = %e, "recording: a file went away while it was being sent");
                        }
                        if tx.blocking_send(chunk).is_err() || failed {
                            return;
                        }
                        at += n;
                    }
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, total: u64) -> ByteRange {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).expect("value"));
        byte_range(&h, total)
    }

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range(&HeaderMap::new(), 100), ByteRange::Whole);
        assert_eq!(range("bytes=0-9", 100), ByteRange::Part(0, 9));
        assert_eq!(range("bytes=90-", 100), ByteRange::Part(90, 99));
        assert_eq!(range("bytes=-10", 100), ByteRange::Part(90, 99));
        assert_eq!(range("bytes=-1000", 100), ByteRange::Part(0, 99));
        assert_eq!(range("bytes=50-1000", 100), ByteRange::Part(50, 99));
        assert_eq!(range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(range("bytes=0-1,5-6", 100), ByteRange::Whole);
        assert_eq!(range("bytes=9-1", 100), ByteRange::Whole);
        assert_eq!(range("items=0-1", 100), ByteRange::Whole);
    }
}
