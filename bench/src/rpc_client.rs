//! A webrtc-rs remote control that signals over JSON-RPC 2.0 on `GET /rpc` (docs/signaling.md,
//! "JSON-RPC 2.0 over WebSocket"): it connects, `announce`s itself, opens its own `video`
//! (unordered, no retransmissions) and `command` channels, offers them to the peer `relay` and
//! applies the answer (`{session_id, sdp}`, the server's host candidates inside) and the relay's
//! later `ice_candidate` notifications.
//!
//! Non-trickle on our side: the offer is sent once ICE gathering is complete, so it carries our
//! host candidates and no `ice_candidate` is sent. What is timed starts when the offer is sent,
//! as the REST flow's time starts at its offer request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use testkit::webrtc::{client_peer, PeerEvents};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use webrtc::data_channel::{DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use crate::server::Api;
use crate::ws_client;

/// An open peer signaled over `/rpc`: both channels are open.
pub struct RpcConn {
    pub pc: Arc<dyn PeerConnection>,
    pub session_id: String,
    /// Offer sent → both channels open.
    pub setup: Duration,
    /// Offer sent → its answer received.
    pub answered: Duration,
    /// WebSocket connect started → both channels open (connect, announce, peer, gathering, and
    /// `setup`).
    pub total: Duration,
    rpc: Rpc,
}

impl std::fmt::Debug for RpcConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConn")
            .field("session_id", &self.session_id)
            .field("setup", &self.setup)
            .field("answered", &self.answered)
            .finish_non_exhaustive()
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One JSON-RPC connection: a writer task fed by `out`, a reader task that hands each reply to
/// its caller and each notification to `notes`.
struct Rpc {
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    writer: tokio::task::JoinHandle<()>,
}

impl Rpc {
    async fn connect(url: &str) -> anyhow::Result<(Rpc, mpsc::UnboundedReceiver<Value>)> {
        let ws = ws_client::connect(url).await.context("WebSocket /rpc")?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        let pending: Pending = Arc::default();
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let p = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(t.as_str()) else { continue };
                // A batch never comes back: this client sends none.
                match v["id"].as_u64() {
                    Some(id) if v.get("method").is_none() => {
                        if let Some(tx) = p.lock().expect("lock").remove(&id) {
                            let _ = tx.send(v);
                        }
                    }
                    _ => {
                        let _ = notes_tx.send(v);
                    }
                }
            }
            // The socket is gone: every caller still waiting gets an error.
            p.lock().expect("lock").clear();
        });
        Ok((Rpc { out, pending, next_id: AtomicU64::new(1), writer }, notes))
    }

    /// Send a request; its `result`, or its `error` as an error.
    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("lock").insert(id, tx);
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.out.send(Message::text(req.to_string())).map_err(|_| anyhow!("{method}: socket closed"))?;
        let reply = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .map_err(|_| anyhow!("{method}: no reply within 10 s"))?
            .map_err(|_| anyhow!("{method}: socket closed before the reply"))?;
        if reply.get("error").is_some() {
            bail!("{method}: {}", reply["error"]);
        }
        Ok(reply["result"].clone())
    }

    /// Close the socket (a Close frame once the queue is written) and wait for the writer.
    async fn close(self) {
        drop(self.out);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.writer).await;
    }
}

/// The `/rpc` URL of the server `api` talks to, with its token.
fn rpc_url(api: &Api) -> String {
    let base = api.base.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    match &api.token {
        Some(t) => format!("{base}/rpc?access_token={t}"),
        None => format!("{base}/rpc"),
    }
}

/// Connect to `/rpc`, announce as `name`, offer both channels to the relay for remote control
/// `rc`; within `timeout` from the offer.
pub async fn connect(api: &Api, name: &str, rc: &str, timeout: Duration) -> anyhow::Result<RpcConn> {
    let begun = Instant::now();
    let (rpc, mut notes) = Rpc::connect(&rpc_url(api)).await?;
    let announced = rpc.call("announce", json!({ "name": name })).await;
    if let Err(e) = announced {
        rpc.close().await;
        return Err(e);
    }

    let (pc, events) = match client_peer().await {
        Ok(p) => p,
        Err(e) => {
            rpc.close().await;
            return Err(anyhow!(e).context("client peer"));
        }
    };
    let PeerEvents { candidates: mut cand_rx, .. } = events;
    let (open_tx, mut open_rx) = mpsc::unbounded_channel::<String>();
    let prepared = async {
        let video_init = RTCDataChannelInit { ordered: false, max_retransmits: Some(0), ..Default::default() };
        let video = pc.create_data_channel("video", Some(video_init)).await.context("video channel")?;
        let command = pc.create_data_channel("command", None).await.context("command channel")?;
        for (dc, label) in [(video, "video"), (command, "command")] {
            let open = open_tx.clone();
            // Reports the open, then reads (and drops) what comes until the channel closes.
            tokio::spawn(async move {
                while let Some(ev) = dc.poll().await {
                    match ev {
                        DataChannelEvent::OnOpen => {
                            let _ = open.send(label.to_owned());
                        }
                        DataChannelEvent::OnClose => break,
                        _ => {}
                    }
                }
            });
        }
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        // Non-trickle: wait for the end of gathering, so that the offer lists our candidates.
        let gathered = async {
            while let Some(c) = cand_rx.recv().await {
                if c.is_none() {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(Duration::from_secs(5), gathered).await {
            Ok(true) => {}
            Ok(false) => bail!("peer gone while gathering"),
            Err(_) => bail!("ICE gathering not complete within 5 s"),
        }
        let sdp = pc.local_description().await.ok_or_else(|| anyhow!("no local description"))?.sdp;
        if !sdp.contains("a=candidate:") {
            bail!("gathering complete but the offer lists no candidate");
        }
        Ok::<_, anyhow::Error>(sdp)
    };
    let sdp = match prepared.await {
        Ok(s) => s,
        Err(e) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), pc.close()).await;
            rpc.close().await;
            return Err(e);
        }
    };

    let start = Instant::now();
    let session = Arc::new(Mutex::new(None::<String>));
    let s = Arc::clone(&session);
    let opened = async {
        let params = json!({"to_peer_id": "relay", "remote_control_id": rc, "sdp": sdp});
        let answer = rpc.call("offer", params).await?;
        let answered = start.elapsed();
        let sid = answer["session_id"].as_str().ok_or_else(|| anyhow!("no session_id in {answer}"))?.to_owned();
        *s.lock().expect("lock") = Some(sid.clone());
        let sdp = answer["sdp"].as_str().ok_or_else(|| anyhow!("no sdp in the answer"))?.to_owned();
        pc.set_remote_description(RTCSessionDescription::answer(sdp)?).await.context("apply the answer")?;
        // The relay's later candidates.
        let p = Arc::clone(&pc);
        tokio::spawn(async move {
            while let Some(n) = notes.recv().await {
                if n["method"] != "ice_candidate" {
                    continue;
                }
                let c = &n["params"];
                let candidate = c["candidate"].as_str().unwrap_or_default();
                if candidate.is_empty() {
                    break;
                }
                let init = RTCIceCandidateInit {
                    candidate: candidate.to_owned(),
                    sdp_mid: c["sdp_mid"].as_str().map(str::to_owned),
                    sdp_mline_index: c["sdp_mline_index"].as_u64().map(|n| n as u16),
                    ..Default::default()
                };
                let _ = p.add_ice_candidate(init).await;
            }
        });
        let mut open = Vec::new();
        while open.len() < 2 {
            open.push(open_rx.recv().await.ok_or_else(|| anyhow!("channels gone before they opened"))?);
        }
        Ok::<_, anyhow::Error>((sid, answered))
    };
    match tokio::time::timeout(timeout, opened).await {
        Ok(Ok((session_id, answered))) => {
            Ok(RpcConn { pc, session_id, setup: start.elapsed(), answered, total: begun.elapsed(), rpc })
        }
        Ok(Err(e)) => {
            let sid = session.lock().expect("lock").clone();
            abandon(rpc, &pc, sid.as_deref()).await;
            Err(e)
        }
        Err(_) => {
            let sid = session.lock().expect("lock").clone();
            abandon(rpc, &pc, sid.as_deref()).await;
            bail!("channels not open within {timeout:?}")
        }
    }
}

/// End the relay session (`disconnect`), close our peer and the socket.
async fn abandon(rpc: Rpc, pc: &Arc<dyn PeerConnection>, sid: Option<&str>) {
    let params = match sid {
        Some(sid) => json!({"to_peer_id": "relay", "session_id": sid}),
        None => json!({"to_peer_id": "relay"}),
    };
    let _ = rpc.call("disconnect", params).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), pc.close()).await;
    rpc.close().await;
}

impl RpcConn {
    /// End the session (`disconnect` to the relay), close our peer and the socket.
    pub async fn close(self) {
        abandon(self.rpc, &self.pc, Some(&self.session_id)).await;
    }
}
