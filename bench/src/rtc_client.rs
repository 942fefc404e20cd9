//! WebRTC remote controls (webrtc-rs) following the REST flow like a browser, with the test kit's
//! client peer (`testkit::webrtc`): offer from the server, answer, trickle of our candidates (then
//! end-of-candidates), and the `video` and `command` channels the server opens.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use testkit::webrtc::{candidate_body, client_peer, PeerEvents};
use tokio::sync::{mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::PeerConnection;

use crate::server::Api;
use crate::stats::{FrameCounter, Window};
use crate::train::stopped;

/// An open peer: both channels are open.
pub struct RtcConn {
    pub pc: Arc<dyn PeerConnection>,
    pub session_id: String,
    /// Offer request → both channels open.
    pub setup: Duration,
    /// Offer request → the answer's POST acknowledged (signaling done but for the trickle).
    pub signaled: Duration,
    pub video: Arc<dyn DataChannel>,
    pub command: Arc<dyn DataChannel>,
}

impl std::fmt::Debug for RtcConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtcConn").field("session_id", &self.session_id).field("setup", &self.setup).finish()
    }
}

/// Open a peer for remote control `rc`, within `timeout`.
pub async fn connect(api: &Api, rc: &str, timeout: Duration) -> anyhow::Result<RtcConn> {
    let start = Instant::now();
    let (status, offer) = api.call("POST", "/api/webrtc/offer", Some(json!({ "remote_control_id": rc }))).await?;
    if status != 200 {
        bail!("offer: {status} {offer}");
    }
    let session_id = offer["session_id"].as_str().ok_or_else(|| anyhow!("no session_id"))?.to_owned();
    let sdp = offer["sdp"].as_str().ok_or_else(|| anyhow!("no sdp"))?.to_owned();

    let (pc, events) = client_peer().await.context("client peer")?;
    let PeerEvents { candidates: cand_rx, channels: mut dc_rx } = events;
    let opened = async {
        let answer_sdp = testkit::webrtc::answer(pc.as_ref(), sdp).await?;
        let body = json!({"session_id": session_id, "type": "answer", "sdp": answer_sdp});
        let (status, v) = api.call("POST", "/api/webrtc/answer", Some(body)).await?;
        if status != 204 {
            bail!("answer: {status} {v}");
        }
        let signaled = start.elapsed();
        tokio::spawn(trickle(api.clone(), session_id.clone(), cand_rx));
        let (mut video, mut command) = (None, None);
        while video.is_none() || command.is_none() {
            let dc = dc_rx.recv().await.ok_or_else(|| anyhow!("peer gone before its channels opened"))?;
            match dc.label().await?.as_str() {
                "video" => video = Some(dc),
                "command" => command = Some(dc),
                other => bail!("unexpected channel {other}"),
            }
        }
        match (video, command) {
            (Some(v), Some(c)) => Ok::<_, anyhow::Error>((v, c, signaled)),
            _ => bail!("channels missing"),
        }
    };
    match tokio::time::timeout(timeout, opened).await {
        Ok(Ok((video, command, signaled))) => {
            Ok(RtcConn { pc, session_id, setup: start.elapsed(), signaled, video, command })
        }
        Ok(Err(e)) => {
            abandon(&pc, api, &session_id).await;
            Err(e)
        }
        Err(_) => {
            abandon(&pc, api, &session_id).await;
            bail!("channels not open within {timeout:?}")
        }
    }
}

async fn abandon(pc: &Arc<dyn PeerConnection>, api: &Api, sid: &str) {
    let _ = api.call("DELETE", &format!("/api/webrtc/sessions/{sid}"), None).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), pc.close()).await;
}

/// Post our candidates as they are gathered, then end-of-candidates.
async fn trickle(api: Api, sid: String, mut rx: mpsc::UnboundedReceiver<Option<Value>>) {
    while let Some(c) = rx.recv().await {
        let body = candidate_body(&sid, c);
        let end = body["candidate"] == "";
        if api.call("POST", "/api/webrtc/ice-candidate", Some(body)).await.is_err() || end {
            break;
        }
    }
}

impl RtcConn {
    /// Count video until `stop`; `warm` is incremented at the first video message.
    pub fn spawn_video(
        &self,
        window: Arc<Window>,
        warm: Arc<AtomicUsize>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<(FrameCounter, Option<String>)> {
        tokio::spawn(count_video(Arc::clone(&self.video), window, warm, stop, |_| {}))
    }

    /// Read the command channel until the server's `welcome` event.
    pub async fn wait_welcome(&self, within: Duration) -> anyhow::Result<()> {
        let read = async {
            loop {
                match self.command.poll().await {
                    Some(DataChannelEvent::OnMessage(m)) if m.is_string => {
                        if String::from_utf8_lossy(&m.data).contains("\"welcome\"") {
                            return Ok(());
                        }
                    }
                    Some(DataChannelEvent::OnClose) | None => bail!("command channel closed before the welcome"),
                    Some(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read).await.map_err(|_| anyhow!("no welcome within {within:?}"))?
    }

    /// Drain both channels in the background (an idle client still reads what it is sent).
    pub fn spawn_drain(&self) {
        drain(Arc::clone(&self.video));
        drain(Arc::clone(&self.command));
    }

    /// Drain the video channel in the background.
    pub fn spawn_drain_video(&self) {
        drain(Arc::clone(&self.video));
    }

    /// Drain the command channel (events) in the background.
    pub fn spawn_drain_command(&self) {
        drain(Arc::clone(&self.command));
    }

    /// End the session on the server (DELETE) and close our peer.
    pub async fn close(self, api: &Api) {
        abandon(&self.pc, api, &self.session_id).await;
    }
}

fn drain(dc: Arc<dyn DataChannel>) {
    tokio::spawn(async move {
        while let Some(ev) = dc.poll().await {
            if matches!(ev, DataChannelEvent::OnClose) {
                break;
            }
        }
    });
}

/// Count the `video` channel's packets until `stop`, calling `observe` with the counts after each
/// (the soak's live figures); the error, if the channel closed first.
pub async fn count_video(
    dc: Arc<dyn DataChannel>,
    window: Arc<Window>,
    warm: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
    observe: impl Fn(&FrameCounter),
) -> (FrameCounter, Option<String>) {
    let mut c = FrameCounter::default();
    let mut error = None;
    let stop_fut = stopped(&mut stop);
    tokio::pin!(stop_fut);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop_fut => break,
            ev = dc.poll() => match ev {
                Some(DataChannelEvent::OnMessage(m)) if !m.is_string => {
                    c.message_warming(&m.data, &window, &warm);
                    observe(&c);
                }
                Some(DataChannelEvent::OnClose) | None => {
                    error = Some("video channel closed".to_owned());
                    break;
                }
                Some(_) => {}
            }
        }
    }
    (c, error)
}
