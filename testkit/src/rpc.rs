//! JSON-RPC 2.0 signaling (`GET /rpc`, docs/signaling.md): a socket that records every message
//! the server sends, calls methods and waits for their replies by id, and a webrtc-rs remote
//! control that offers to the relay through it ([`RelayClient::offer`]), its channels recorded
//! like every other client of the kit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::webrtc::{without_candidates, Offering};
use crate::ws::{Client, Outbox};
use crate::Server;

/// An open `/rpc` socket.
#[derive(Debug, Clone)]
pub struct RpcSocket {
    out: mpsc::Sender<Message>,
    /// Every message received, in order (batches as arrays).
    pub received: Arc<Mutex<Vec<Value>>>,
    /// The close frame (code, reason), or 1006 when the stream ended without one.
    pub closed: Arc<Mutex<Option<(u16, String)>>>,
    next_id: Arc<AtomicU64>,
}

/// The `/rpc` URL with `token`.
pub fn url(server: &Server, token: Option<&str>) -> String {
    let base = server.ws_url_as("x", token);
    // `ws://HOST/ws?remote_control_id=x&access_token=T` → `ws://HOST/rpc?access_token=T`.
    let (origin, query) = base.split_once("/ws?").expect("a /ws URL");
    let token = query.split('&').find(|kv| kv.starts_with("access_token="));
    match token {
        Some(t) => format!("{origin}/rpc?{t}"),
        None => format!("{origin}/rpc"),
    }
}

impl RpcSocket {
    /// Connect as the admin.
    pub async fn connect(server: &Server) -> RpcSocket {
        Self::connect_as(server, Some(server.token("admin"))).await
    }

    pub async fn connect_as(server: &Server, token: Option<&str>) -> RpcSocket {
        Self::open(&url(server, token)).await.expect("rpc socket")
    }

    pub async fn open(url: &str) -> Result<RpcSocket, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(64);
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let received = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(None));
        let (r, c) = (Arc::clone(&received), Arc::clone(&closed));
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str()).expect("the server sent JSON");
                        r.lock().expect("lock").push(v);
                    }
                    Message::Close(f) => {
                        *c.lock().expect("lock") =
                            Some(f.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new())));
                        return;
                    }
                    _ => {}
                }
            }
            c.lock().expect("lock").get_or_insert((1006, "dropped".into()));
        });
        Ok(RpcSocket {
            out,
            received,
            closed, // Far from the small ids tests write by hand.
            next_id: Arc::new(AtomicU64::new(1_000_000)),
        })
    }

    /// Send any text.
    pub async fn send_raw(&self, text: impl Into<String>) {
        self.out.send(Message::Text(text.into().into())).await.expect("send");
    }

    /// Call `method` and wait (10 s at most) for its reply: the whole reply object.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send_raw(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()).await;
        self.wait("reply", |v| v["id"] == id).await
    }

    /// Call and expect a result; returns it.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let reply = self.call(method, params).await;
        assert!(reply.get("result").is_some(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// Send a notification (no id).
    pub async fn notify(&self, method: &str, params: Value) {
        self.send_raw(json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()).await;
    }

    /// The server's notifications of `method`, in order.
    pub fn notifications(&self, method: &str) -> Vec<Value> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .filter(|v| v["method"] == method)
            .map(|v| v["params"].clone())
            .collect()
    }

    /// Wait (10 s at most) for a message satisfying `pred`; returns it.
    pub async fn wait(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.received.lock().expect("lock").iter().find(|v| pred(v)) {
                return v.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within 10 s; got {:?}",
                self.received.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Close the socket (a Close frame).
    pub async fn close(&self) {
        let _ = self.out.send(Message::Close(None)).await;
    }
}

/// A webrtc-rs remote control that offered to the relay over `/rpc`.
pub struct RelayClient {
    /// Its channels as a kit client: frames, events, `send_text` on `command`.
    pub client: Client,
    pub pc: Arc<dyn PeerConnection>,
    pub rpc: RpcSocket,
    pub peer_id: String,
    /// The relay session's id (`GET /api/webrtc/sessions/{id}`).
    pub session_id: String,
    /// Offer sent → answer received, and → both channels open.
    pub answered: Duration,
    pub setup: Duration,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient").field("session_id", &self.session_id).finish_non_exhaustive()
    }
}

impl RelayClient {
    /// Announce on a new socket as the admin, offer to the relay for `rc` (the offer without
    /// candidates; each candidate trickled with `ice_candidate`, then the end), apply the answer
    /// and the relay's candidate notifications; wait (10 s) until both channels are open.
    pub async fn offer(server: &Server, rc: &str) -> RelayClient {
        let rpc = RpcSocket::connect(server).await;
        let announced = rpc.ok("announce", json!({"name": "test-client", "capabilities": ["datachannel"]})).await;
        let peer_id = announced["peer_id"].as_str().expect("peer_id").to_owned();
        let Offering { pc, candidates: mut cand_rx, log, command, mut open_rx } = Offering::new().await;
        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer).await.expect("set offer");
        let sdp = pc.local_description().await.expect("local description").sdp;
        let start = Instant::now();
        let params = json!({"to_peer_id": "relay", "remote_control_id": rc, "sdp": without_candidates(&sdp)});
        let answer = rpc.ok("offer", params).await;
        let answered = start.elapsed();
        let session_id = answer["session_id"].as_str().expect("session_id").to_owned();
        let sdp = answer["sdp"].as_str().expect("sdp").to_owned();
        pc.set_remote_description(RTCSessionDescription::answer(sdp).expect("answer sdp")).await.expect("set answer");
        let (r, s) = (rpc.clone(), session_id.clone());
        tokio::spawn(async move {
            while let Some(c) = cand_rx.recv().await {
                let end = c.is_none();
                let c = c.unwrap_or_else(|| json!({"candidate": ""}));
                let params = json!({
                    "to_peer_id": "relay", "session_id": s, "candidate": c["candidate"],
                    "sdp_mid": c["sdpMid"], "sdp_mline_index": c["sdpMLineIndex"],
                });
                let reply = r.call("ice_candidate", params).await;
                assert!(reply.get("result").is_some(), "ice_candidate: {reply}");
                if end {
                    break;
                }
            }
        });
        let r = rpc.clone();
        crate::webrtc::apply_server_candidates(
            Arc::clone(&pc),
            ["candidate", "sdp_mid", "sdp_mline_index"],
            move || r.notifications("ice_candidate"),
        );
        Offering::wait_open(&mut open_rx).await;
        let setup = start.elapsed();
        RelayClient {
            client: Client { log, out: Outbox::DataChannel(command), reader: None },
            pc,
            rpc,
            peer_id,
            session_id,
            answered,
            setup,
        }
    }
}
