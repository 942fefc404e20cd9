//! An MQTT remote control for `mqtt-fanout`: its own session (`POST /api/mqtt/sessions`), its own
//! rumqttc connection to the broker with the session's credentials (testkit's options), which
//! subscribes to the video (QoS 0) and events (QoS 1) topics and then publishes its first client
//! message, a `ping`, on the command topic; that opens the session. Each video message holds one
//! or more whole packets back to back (wire format §2.6): it is split and only the packet headers
//! are read, as the data-channel reader does.
//!
//! The server ends a session whose client says nothing for `mqtt_idle_timeout` (30 s), so the
//! client pings every [`KEEP_TALKING`] while it counts.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::server::Api;
use crate::stats::{FrameCounter, Window};
use crate::ws_client::WsResult;

/// How often a connected client sends a `ping` (well inside the server's 30 s idle timeout).
const KEEP_TALKING: Duration = Duration::from_secs(10);

/// A connected, subscribed client whose session is open (its first `ping` published).
pub struct MqttConn {
    client: AsyncClient,
    eventloop: EventLoop,
    video: String,
    events: String,
    command: String,
}

/// Wait (10 s at most) until `GET /api/mqtt` says the server is connected to the broker.
pub async fn wait_server_connected(api: &Api) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = api.call("GET", "/api/mqtt", None).await?;
        if status == 200 && v["connected"] == true {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the server did not connect to the broker within 10 s: {status} {v}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Create a session for remote control `rc`, connect to the broker on `broker_port` with its
/// credentials, subscribe, and publish the first message.
pub async fn connect(api: &Api, broker_port: u16, rc: &str) -> anyhow::Result<MqttConn> {
    let (status, session) = api.call("POST", "/api/mqtt/sessions", Some(json!({ "remote_control_id": rc }))).await?;
    if status != 201 {
        bail!("POST /api/mqtt/sessions: {status} {session}");
    }
    let topic = |k: &str| -> anyhow::Result<String> {
        session["topics"][k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("no topics.{k} in {session}"))
    };
    let (video, events, command) = (topic("video")?, topic("events")?, topic("command")?);
    let mut options = testkit::mqtt::options(broker_port, &session);
    // A client busy reading video may answer late; the bench reports a lost connection, it does
    // not provoke one.
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let subscribed = async {
        let mut subacks = 0;
        loop {
            match eventloop.poll().await? {
                Event::Incoming(Packet::ConnAck(_)) => {
                    client.subscribe(&video, QoS::AtMostOnce).await?;
                    client.subscribe(&events, QoS::AtLeastOnce).await?;
                }
                Event::Incoming(Packet::SubAck(a)) => {
                    if a.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        bail!("subscription refused: {a:?}");
                    }
                    subacks += 1;
                    if subacks == 2 {
                        client.publish(&command, QoS::AtLeastOnce, false, ping(1)).await?;
                        return Ok::<_, anyhow::Error>(());
                    }
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), subscribed)
        .await
        .map_err(|_| anyhow!("MQTT connect and subscribe: timed out"))??;
    Ok(MqttConn { client, eventloop, video, events, command })
}

fn ping(t: u64) -> Vec<u8> {
    format!("{{\"type\":\"ping\",\"t\":{t}}}").into_bytes()
}

/// Count video until `stop`, then say goodbye (an empty command message) and disconnect.
pub async fn run(
    mut c: MqttConn,
    window: Arc<Window>,
    warm: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> WsResult {
    let mut r = WsResult { counter: FrameCounter::default(), events: 0, error: None };
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    let mut talk = tokio::time::interval_at(tokio::time::Instant::now() + KEEP_TALKING, KEEP_TALKING);
    let mut t = 1;
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            _ = talk.tick() => {
                t += 1;
                // Never waits: the request queue is nearly empty (a ping every 10 s).
                let _ = c.client.try_publish(&c.command, QoS::AtLeastOnce, false, ping(t));
            }
            ev = c.eventloop.poll() => match ev {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic == c.video {
                        r.counter.message_warming(&p.payload, &window, &warm);
                    } else if p.topic == c.events {
                        r.events += 1;
                        if serde_json::from_slice::<Value>(&p.payload).is_ok_and(|v| v["type"] == "closing") {
                            r.error = Some(format!("closing: {}", String::from_utf8_lossy(&p.payload)));
                            break;
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    r.error = Some(format!("MQTT connection: {e}"));
                    break;
                }
            },
        }
    }
    if r.error.is_none() {
        let _ = c.client.try_publish(&c.command, QoS::AtLeastOnce, false, Vec::new());
        let _ = c.client.try_disconnect();
        // Let the event loop write the goodbye (bounded: the server is stopped right after).
        let _ =
            tokio::time::timeout(Duration::from_millis(200), async { while c.eventloop.poll().await.is_ok() {} }).await;
    }
    r
}

/// Start mosquitto as testkit does (the shipped configuration on free loopback ports, a fresh
/// dynamic-security file, under `dir`), pinned to `cpu` (`taskset -a -p -c`: every thread) when
/// given, with `extra` lines appended to its configuration. Errors instead of testkit's panics.
pub async fn start_broker(
    dir: &std::path::Path,
    cpu: Option<&str>,
    extra: &[String],
) -> anyhow::Result<testkit::mqtt::Broker> {
    for bin in [testkit::mqtt::MOSQUITTO, "/usr/bin/mosquitto_ctrl"] {
        if !std::path::Path::new(bin).exists() {
            bail!("mqtt-fanout needs Debian's mosquitto ({bin} is missing): run scripts/setup.sh");
        }
    }
    let (dir, extra) = (dir.to_owned(), extra.to_vec());
    let broker = tokio::spawn(async move { testkit::mqtt::Broker::start_with(&dir, &extra).await })
        .await
        .map_err(|e| anyhow!("mosquitto did not start: {e}"))?;
    let pid = broker.pid().ok_or_else(|| anyhow!("mosquitto exited at once: {}", broker.log()))?;
    if let Some(cpu) = cpu {
        let out = std::process::Command::new("taskset").args(["-a", "-p", "-c", cpu]).arg(pid.to_string()).output()?;
        if !out.status.success() {
            bail!("taskset -a -p -c {cpu} {pid}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    Ok(broker)
}
