//! A camera behind RTSP (an IP camera, or any RTSP server): pulled with the `retina` client, H.264
//! over RTP on TCP (interleaved) or UDP, with credentials; reconnected with backoff (1 s doubling
//! to 10 s) when the camera drops, refuses or goes silent for [`STALL`]. Parameter sets come from
//! the SDP and from the stream; a keyframe sent without them gets them put in front (see
//! [`Camera::deliver`]), so a late joiner can always decode.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use railcast_uplink::now_us;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport};
use retina::codec::{CodecItem, ParametersRef};
use tokio::sync::watch;

use crate::camera::{Camera, Output};
use crate::config::{RtspTransport, SourceConfig};

/// No frame for this long: the camera is treated as gone and the session opened again.
pub const STALL: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RtspSource {
    url: url::Url,
    creds: Option<Credentials>,
    transport: RtspTransport,
}

impl RtspSource {
    pub fn from_config(source: &SourceConfig) -> anyhow::Result<RtspSource> {
        let SourceConfig::Rtsp { url, username, password, password_file, transport } = source else {
            anyhow::bail!("not an RTSP source");
        };
        let url = url::Url::parse(url).map_err(|e| anyhow::anyhow!("bad RTSP URL {url:?}: {e}"))?;
        let password = match (password, password_file) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| anyhow::anyhow!("password_file {}: {e}", f.display()))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let creds = username.clone().map(|username| Credentials { username, password: password.unwrap_or_default() });
        Ok(RtspSource { url, creds, transport: *transport })
    }

    /// The URL without credentials, for logs.
    fn shown(&self) -> String {
        let mut u = self.url.clone();
        let _ = u.set_password(None);
        let _ = u.set_username("");
        u.to_string()
    }
}

/// Pull `source` into `camera` until `stop`, reconnecting as long as it takes.
pub async fn run(source: RtspSource, camera: Arc<Camera>, out: Output, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = session(&source, &camera, &out) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        camera.restart_at_keyframe();
        let why = match result {
            Ok(()) => "the camera ended the stream".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        tracing::warn!(camera = camera.id, "{}: {}: {why}", camera.label, source.shown());
        camera.set_state("reconnecting", Some(why));
        if started.elapsed() > MAX_BACKOFF * 2 {
            backoff = FIRST_BACKOFF;
        }
        tracing::info!(camera = camera.id, "{}: reconnecting in {backoff:?}", camera.label);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(source: &RtspSource, camera: &Camera, out: &Output) -> anyhow::Result<()> {
    let options = SessionOptions::default()
        .creds(source.creds.clone())
        .user_agent(concat!("railcast-train-agent/", env!("CARGO_PKG_VERSION")).to_owned());
    let mut session = tokio::time::timeout(STALL, Session::describe(source.url.clone(), options))
        .await
        .map_err(|_| anyhow::anyhow!("no answer to DESCRIBE within {STALL:?}"))??;
    let stream = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name() == "h264")
        .ok_or_else(|| anyhow::anyhow!("the camera offers no H.264 video stream"))?;
    let transport = match source.transport {
        RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
        RtspTransport::Udp => Transport::Udp(Default::default()),
    };
    session.setup(stream, SetupOptions::default().transport(transport)).await?;
    let mut demuxed = session.play(PlayOptions::default()).await?.demuxed()?;
    take_parameters(camera, demuxed.streams()[stream].parameters());
    tracing::info!(
        camera = camera.id,
        "{}: playing {} (size {:?})",
        camera.label,
        source.shown(),
        camera.stream_size()
    );
    camera.set_state("streaming", None);
    let mut frames = 0u64;
    loop {
        let item = match tokio::time::timeout(STALL, demuxed.next()).await {
            Ok(Some(item)) => item?,
            Ok(None) => return Ok(()),
            Err(_) => anyhow::bail!("no frame for {STALL:?} after {frames} frames"),
        };
        let CodecItem::VideoFrame(frame) = item else { continue };
        let capture_us = now_us();
        if frame.has_new_parameters() {
            take_parameters(camera, demuxed.streams()[stream].parameters());
        }
        if frame.stream_id() != stream {
            continue;
        }
        frames += 1;
        camera.deliver(out, avcc_to_annex_b(frame.data()), capture_us);
    }
}

/// The SDP's (or the stream's new) SPS and PPS, from retina's AVCDecoderConfigurationRecord.
fn take_parameters(camera: &Camera, params: Option<ParametersRef<'_>>) {
    let Some(ParametersRef::Video(v)) = params else { return };
    let (sps, pps) = avcc_parameter_sets(v.extra_data());
    camera.set_params(sps, pps);
}

/// Length-prefixed (4-byte) NAL units, as retina hands out frames, to Annex B.
pub fn avcc_to_annex_b(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut rest = data;
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(nal) = rest.get(4..4 + len) else { break };
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
        rest = &rest[4 + len..];
    }
    out
}

/// The first SPS and PPS of an AVCDecoderConfigurationRecord (ISO 14496-15 §5.2.4.1), Annex B.
pub fn avcc_parameter_sets(record: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let annex_b = |nal: &[u8]| [&[0u8, 0, 0, 1][..], nal].concat();
    let mut pos = 5;
    let mut take_list = |count_mask: u8| -> Option<Vec<Vec<u8>>> {
        let n = usize::from(record.get(pos)? & count_mask);
        pos += 1;
        let mut list = Vec::new();
        for _ in 0..n {
            let len = usize::from(u16::from_be_bytes([*record.get(pos)?, *record.get(pos + 1)?]));
            list.push(annex_b(record.get(pos + 2..pos + 2 + len)?));
            pos += 2 + len;
        }
        Some(list)
    };
    let sps = take_list(0x1F).and_then(|l| l.into_iter().next());
    let pps = take_list(0xFF).and_then(|l| l.into_iter().next());
    (sps, pps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_frames_and_records_become_annex_b() {
        let frame = [0, 0, 0, 2, 0x65, 0xAA, 0, 0, 0, 1, 0x06, 0, 0, 0, 9];
        assert_eq!(avcc_to_annex_b(&frame), [0, 0, 0, 1, 0x65, 0xAA, 0, 0, 0, 1, 0x06]);
        let record = [1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 3];
        let (sps, pps) = avcc_parameter_sets(&record);
        assert_eq!(sps.as_deref(), Some(&[0, 0, 0, 1, 0x67, 1, 2][..]));
        assert_eq!(pps.as_deref(), Some(&[0, 0, 0, 1, 0x68, 3][..]));
        assert_eq!(avcc_parameter_sets(&record[..9]), (None, None), "truncated");
    }
}
