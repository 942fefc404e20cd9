//! MQTT: a real mosquitto started on free loopback ports with railcast's shipped configuration
//! (`deploy/mosquitto/mosquitto.conf`) and a fresh dynamic-security file, and an MQTT remote
//! control (rumqttc) that records what it receives like every other client of the kit.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::ws::{Client, Log, Outbox, Recorder};
use crate::Server;

pub const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// The broker's admin (the server's user).
pub const ADMIN: &str = "railcast-server";

/// A mosquitto process.
#[derive(Debug)]
pub struct Broker {
    child: Option<Child>,
    dir: PathBuf,
    pub port: u16,
    pub ws_port: u16,
    pub password: String,
    /// Lines appended to the shipped configuration ([`Broker::start_with`]).
    extra: Vec<String>,
}

/// A free TCP port on loopback (bound and released: good enough for a test's services).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Broker {
    /// Start mosquitto with the shipped configuration on free ports; its dynamic-security file
    /// is made with `mosquitto_ctrl dynsec init` (admin [`ADMIN`]).
    pub async fn start(dir: &Path) -> Broker {
        Self::start_with(dir, &[]).await
    }

    /// [`Broker::start`] with `extra` lines appended to the configuration (e.g.
    /// `set_tcp_nodelay true`, for the load tool's experiments).
    pub async fn start_with(dir: &Path, extra: &[String]) -> Broker {
        assert!(
            Path::new(MOSQUITTO).exists(),
            "this test needs Debian's mosquitto ({MOSQUITTO}): run scripts/setup.sh"
        );
        let dir = dir.join(format!("mosquitto-{}", free_port()));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let password = format!("pw{:016x}", rand_u64());
        let dynsec = dir.join("dynamic-security.json");
        let out = std::process::Command::new("/usr/bin/mosquitto_ctrl")
            .args(["dynsec", "init"])
            .arg(&dynsec)
            .args([ADMIN, &password])
            .output()
            .expect("mosquitto_ctrl");
        assert!(dynsec.exists(), "mosquitto_ctrl dynsec init failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut broker =
            Broker { child: None, dir, port: free_port(), ws_port: free_port(), password, extra: extra.to_vec() };
        broker.spawn().await;
        broker
    }

    /// The shipped configuration with this broker's ports and files.
    fn config(&self) -> String {
        let shipped = std::fs::read_to_string(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/mosquitto/mosquitto.conf"
        )))
        .expect("deploy/mosquitto/mosquitto.conf");
        let plugin = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib"]
            .iter()
            .map(|d| format!("{d}/mosquitto_dynamic_security.so"))
            .find(|p| Path::new(p).exists())
            .expect("mosquitto's dynamic-security plugin");
        shipped
            .lines()
            .map(|l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["listener", "1883"] => format!("listener {} 127.0.0.1", self.port),
                ["listener", "9001"] => format!("listener {} 127.0.0.1", self.ws_port),
                ["plugin", _] => format!("plugin {plugin}"),
                ["plugin_opt_config_file", _] => {
                    format!("plugin_opt_config_file {}", self.dir.join("dynamic-security.json").display())
                }
                _ => l.to_owned(),
            })
            .chain(std::iter::once(format!(
                // Started as root, mosquitto becomes user `mosquitto`, which cannot read a
                // scratch directory under /root: it stays who started it.
                "user {}",
                String::from_utf8_lossy(&std::process::Command::new("id").arg("-un").output().expect("id").stdout)
                    .trim()
            )))
            .chain(self.extra.iter().cloned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn spawn(&mut self) {
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(&conf, self.config()).expect("write mosquitto.conf");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .expect("broker log");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for port in [self.port, self.ws_port] {
            while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                assert!(tokio::time::Instant::now() < deadline, "mosquitto did not listen on {port}: {}", self.log());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// The server's `--mqtt-url`.
    pub fn url(&self) -> String {
        format!("mqtt://{ADMIN}:{}@127.0.0.1:{}", self.password, self.port)
    }

    /// The server's `--mqtt-browser-url`.
    pub fn browser_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    /// The server arguments that point it at this broker.
    pub fn server_args(&self) -> Vec<String> {
        vec!["--mqtt-url".into(), self.url(), "--mqtt-browser-url".into(), self.browser_url()]
    }

    /// The mosquitto process's id (for pinning and CPU figures); `None` once killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The broker's resident memory, KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("a running broker");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Kill the broker (SIGKILL: no goodbye to anyone).
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Start it again on the same ports with the same (persisted) dynamic-security file.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::now_us());
    h.finish()
}

/// Wait (10 s at most) until `GET /api/mqtt` says the server is connected and ready; its answer.
pub async fn wait_connected(server: &Server) -> Value {
    wait_connected_as(server, server.tokens.get("admin").map(String::as_str)).await
}

/// [`wait_connected`] with `token`.
pub async fn wait_connected_as(server: &Server, token: Option<&str>) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, info) = crate::api_as(token, "GET", &server.url("/api/mqtt"), None).await;
        assert_eq!(status, 200, "{info}");
        if info["connected"] == true {
            return info;
        }
        assert!(tokio::time::Instant::now() < deadline, "the server did not connect to the broker: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `POST /api/mqtt/sessions` as `token`: the status and body.
pub async fn create_session_as(server: &Server, token: Option<&str>, rc: &str) -> (u16, Value) {
    crate::api_as(
        token,
        "POST",
        &server.url("/api/mqtt/sessions"),
        Some(serde_json::json!({ "remote_control_id": rc })),
    )
    .await
}

/// `POST /api/mqtt/sessions` as the admin; panics unless 201.
pub async fn create_session(server: &Server, rc: &str) -> Value {
    let (status, body) = create_session_as(server, Some(server.token("admin")), rc).await;
    assert_eq!(status, 201, "{body}");
    body
}

/// MQTT options for a session's credentials (`session`: the POST's answer) on `broker`.
pub fn options(broker_port: u16, session: &Value) -> MqttOptions {
    let s = |k: &str| session[k].as_str().unwrap_or_else(|| panic!("no {k} in {session}")).to_owned();
    let mut o = MqttOptions::new(s("client_id"), "127.0.0.1", broker_port);
    o.set_credentials(s("username"), s("password"))
        .set_keep_alive(Duration::from_secs(5))
        .set_clean_session(true)
        .set_max_packet_size(1 << 20, 1 << 20);
    o
}

/// An MQTT remote control on `broker_port` for a session the test created: subscribes to its
/// video and events, sends a `ping` as its first message, records; reconnects (and subscribes
/// again) after the broker goes away until the server ends the session. Its will is the empty
/// goodbye. [`Client::send_text`] publishes on the command topic.
pub async fn connect(broker_port: u16, session: &Value) -> Client {
    let topics = session["topics"].clone();
    let t = |k: &str| topics[k].as_str().expect("topic").to_owned();
    let (video, events, command) = (t("video"), t("events"), t("command"));
    let mut options = options(broker_port, session);
    options.set_last_will(LastWill::new(&command, Vec::new(), QoS::AtLeastOnce, false));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    eventloop.network_options.set_tcp_nodelay(true);
    let log = Arc::new(Mutex::new(Log::default()));
    let (out, mut out_rx) = mpsc::channel::<(Vec<u8>, bool)>(16);
    let sender = client.clone();
    let cmd = command.clone();
    tokio::spawn(async move {
        while let Some((m, retain)) = out_rx.recv().await {
            if sender.publish(&cmd, QoS::AtLeastOnce, retain, m).await.is_err() {
                break;
            }
        }
    });
    let l = Arc::clone(&log);
    let reader = tokio::spawn(async move {
        let mut rec = Recorder::default();
        let mut greeted = false;
        let mut failures = 0;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    let _ = client.subscribe(&video, QoS::AtMostOnce).await;
                    let _ = client.subscribe(&events, QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(Packet::SubAck(_))) if !greeted => {
                    // Both subscriptions are answered in order; the second SUBACK is events'.
                    greeted = true;
                    let _ = client
                        .publish(&command, QoS::AtLeastOnce, false, b"{\"type\":\"ping\",\"t\":1}".to_vec())
                        .await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if p.topic == video {
                        rec.video_message(&l, p.payload);
                    } else if p.topic == events {
                        let text = String::from_utf8_lossy(&p.payload).into_owned();
                        rec.text(&l, &text);
                        if serde_json::from_str::<Value>(&text).is_ok_and(|v| v["type"] == "closing") {
                            let reason = serde_json::from_str::<Value>(&text)
                                .map(|v| v["reason"].to_string())
                                .unwrap_or_default();
                            l.lock().expect("lock").closed = Some((0, reason));
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failures += 1;
                    // Refused credentials (deleted by the server) end it; a lost broker is
                    // retried for 20 s.
                    let refused = matches!(e, rumqttc::ConnectionError::ConnectionRefused(_));
                    if refused || failures > 100 {
                        let mut log = l.lock().expect("lock");
                        if log.closed.is_none() {
                            log.closed = Some((if refused { 5 } else { 1006 }, e.to_string()));
                        }
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    Client { log, out: Outbox::Mqtt(out), reader: Some(reader.abort_handle()) }
}

/// Create a session for `rc` and connect to it.
pub async fn connect_rc(server: &Server, broker: &Broker, rc: &str) -> (Value, Client) {
    wait_connected(server).await;
    let session = create_session(server, rc).await;
    let client = connect(broker.port, &session).await;
    (session, client)
}

/// Messages arriving on `topic` for a client logged in with `session`'s credentials (or
/// refusals: the SUBACK codes).
pub async fn subscribe_raw(
    broker_port: u16,
    session: &Value,
    topic: &str,
) -> (AsyncClient, mpsc::Receiver<Result<Packet, String>>) {
    let (client, mut eventloop) = AsyncClient::new(options(broker_port, session), 64);
    let (tx, rx) = mpsc::channel(1024);
    let c = client.clone();
    let topic = topic.to_owned();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    let _ = c.subscribe(&topic, QoS::AtLeastOnce).await;
                }
                Ok(Event::Incoming(p)) => {
                    if tx.send(Ok(p)).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    break;
                }
            }
        }
    });
    (client, rx)
}

/// One sample of `/metrics` (e.g. `railcast_mqtt_refused_total{reason="retained"}`); 0 when absent.
pub async fn metric(server: &Server, key: &str) -> f64 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let resp = client.get(server.url("/metrics").parse().expect("uri")).await.expect("scrape");
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// Wait (5 s at most) until `session`'s credentials are refused by the broker.
pub async fn wait_refused(broker_port: u16, session: &Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while can_log_in(broker_port, session).await {
        assert!(tokio::time::Instant::now() < deadline, "the session's credentials still log in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `session`'s credentials still log in (a fresh connection, refused or not).
pub async fn can_log_in(broker_port: u16, session: &Value) -> bool {
    let (_c, mut eventloop) = AsyncClient::new(options(broker_port, session), 8);
    let polled = tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await.expect("an answer in 5 s");
    matches!(polled, Ok(Event::Incoming(Packet::ConnAck(_))))
}
