//! WebRTC signaling over MQTT topics (docs/signaling.md, "MQTT topics"): a [`Signaler`] logged in
//! with an MQTT session's credentials that reads its `device/ID/webrtc/…` topics and publishes
//! on its `mobile/ID/webrtc/…` ones, and a webrtc-rs remote control that offers through it
//! ([`SignalingClient::offer`]), its channels recorded like every other client of the kit.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, QoS, SubscribeReasonCode};
use serde_json::{json, Value};
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::webrtc::{without_candidates, Offering};
use crate::ws::{Client, Outbox};

/// One message the server sent on a session's `device/ID/webrtc/…` topics.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub body: Value,
    pub at: Instant,
}

/// An MQTT connection with a session's credentials, subscribed to its answer and candidate
/// topics (the SUBACKs checked), recording what arrives there.
#[derive(Debug, Clone)]
pub struct Signaler {
    pub client: AsyncClient,
    /// The session's `signaling` topics, as `POST /api/mqtt/sessions` gave them.
    pub topics: Value,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Signaler {
    /// Log in with `session`'s credentials and subscribe to its answer and candidate topics.
    pub async fn connect(broker_port: u16, session: &Value) -> Signaler {
        let topics = session["signaling"].clone();
        let t = |k: &str| topics[k].as_str().unwrap_or_else(|| panic!("no signaling.{k} in {session}")).to_owned();
        let (answer, candidate) = (t("answer"), t("server_candidate"));
        let (client, mut eventloop) = AsyncClient::new(crate::mqtt::options(broker_port, session), 256);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (c, r) = (client.clone(), Arc::clone(&received));
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut codes = Vec::new();
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = c.subscribe(&answer, QoS::AtLeastOnce).await;
                        let _ = c.subscribe(&candidate, QoS::AtLeastOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        codes.extend(ack.return_codes);
                        if codes.len() == 2 {
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(codes.clone());
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let body = serde_json::from_slice(&p.payload)
                            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&p.payload).into_owned()));
                        r.lock().expect("lock").push(Received { topic: p.topic, body, at: Instant::now() });
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let codes = tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("SUBACKs within 10 s")
            .expect("the signaling connection ended before its SUBACKs");
        assert!(!codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)), "signaling SUBACKs: {codes:?}");
        Signaler { client, topics, received }
    }

    fn topic(&self, key: &str) -> String {
        self.topics[key].as_str().expect("topic").to_owned()
    }

    /// Publish raw bytes on the session's `offer` or `candidate` topic.
    pub async fn publish_raw(&self, key: &str, qos: QoS, retain: bool, payload: impl Into<Vec<u8>>) {
        self.client.publish(self.topic(key), qos, retain, payload.into()).await.expect("publish");
    }

    /// Publish an offer (QoS 1).
    pub async fn offer(&self, sdp: &str) {
        self.publish_raw("offer", QoS::AtLeastOnce, false, json!({"type": "offer", "sdp": sdp}).to_string()).await;
    }

    /// Publish a candidate (QoS 0), as `RTCIceCandidate.toJSON()` has it.
    pub async fn candidate(&self, c: &Value) {
        self.publish_raw("candidate", QoS::AtMostOnce, false, c.to_string()).await;
    }

    /// Everything received on the answer topic.
    pub fn answers(&self) -> Vec<Value> {
        let topic = self.topic("answer");
        self.received.lock().expect("lock").iter().filter(|m| m.topic == topic).map(|m| m.body.clone()).collect()
    }

    /// Everything received on the server's candidate topic.
    pub fn server_candidates(&self) -> Vec<Value> {
        let topic = self.topic("server_candidate");
        self.received.lock().expect("lock").iter().filter(|m| m.topic == topic).map(|m| m.body.clone()).collect()
    }

    /// Wait (10 s at most) for a message on the answer topic after the first `skip` that
    /// satisfies `pred`.
    pub async fn wait_answer(&self, what: &str, skip: usize, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = self.answers().into_iter().skip(skip).find(|v| pred(v)) {
                return v;
            }
            assert!(tokio::time::Instant::now() < deadline, "no {what} on the answer topic; got {:?}", self.answers());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A remote control whose offer went over MQTT.
pub struct SignalingClient {
    pub client: Client,
    pub pc: Arc<dyn PeerConnection>,
    pub signaler: Signaler,
    /// The answer, as it came.
    pub answer: Value,
    /// Offer published → answer received.
    pub answered: Duration,
    /// Offer published → both channels open.
    pub setup: Duration,
}

impl std::fmt::Debug for SignalingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingClient")
            .field("client", &self.client)
            .field("answered", &self.answered)
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

impl SignalingClient {
    /// Offer over `session`'s signaling topics: open `video` (unordered, no retransmissions) and
    /// `command` (ordered), send the first candidate BEFORE the offer (the offer carries none),
    /// the rest after it, then end-of-candidates; apply the answer and the server's candidates;
    /// wait (10 s at most) until both channels are open.
    pub async fn offer(broker_port: u16, session: &Value) -> SignalingClient {
        let signaler = Signaler::connect(broker_port, session).await;
        let Offering { pc, candidates: mut cand_rx, log, command, mut open_rx } = Offering::new().await;
        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer).await.expect("set offer");
        let first = tokio::time::timeout(Duration::from_secs(5), cand_rx.recv())
            .await
            .expect("a first candidate within 5 s")
            .flatten()
            .expect("a candidate before the end of gathering");
        // Early on purpose: QoS 0 may overtake the QoS 1 offer anyway.
        signaler.candidate(&first).await;
        let sdp = pc.local_description().await.expect("local description").sdp;
        let start = Instant::now();
        signaler.offer(&without_candidates(&sdp)).await;
        let answer = signaler.wait_answer("answer", 0, |v| v["type"] != Value::Null).await;
        assert_eq!(answer["type"], "answer", "{answer}");
        let answered = start.elapsed();
        let sdp = answer["sdp"].as_str().expect("sdp").to_owned();
        assert!(sdp.contains("webrtc-datachannel"), "{sdp}");
        pc.set_remote_description(RTCSessionDescription::answer(sdp).expect("answer sdp")).await.expect("set answer");

        // The rest of our candidates, then the end of them.
        let s = signaler.clone();
        tokio::spawn(async move {
            while let Some(c) = cand_rx.recv().await {
                let end = c.is_none();
                s.candidate(&c.unwrap_or_else(|| json!({"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}))).await;
                if end {
                    break;
                }
            }
        });
        // The server's later candidates.
        let s = signaler.clone();
        crate::webrtc::apply_server_candidates(Arc::clone(&pc), ["candidate", "sdpMid", "sdpMLineIndex"], move || {
            s.server_candidates()
        });

        Offering::wait_open(&mut open_rx).await;
        let setup = start.elapsed();
        SignalingClient {
            client: Client { log, out: Outbox::DataChannel(command), reader: None },
            pc,
            signaler,
            answer,
            answered,
            setup,
        }
    }
}

/// `railcast_mqtt_signaling_refused_total{reason}` as `/metrics` has it now.
pub async fn refusals(server: &crate::Server, reason: &str) -> u64 {
    let (_, text) = crate::api("GET", &server.url("/metrics"), None).await;
    let key = format!("railcast_mqtt_signaling_refused_total{{reason=\"{reason}\"}} ");
    text.as_str()
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
