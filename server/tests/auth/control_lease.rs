//! The control lease and the link-loss watchdog. Two operators on one train: only the holder's
//! commands reach it, the other gets `not_in_control` (and `control_held` when it asks);
//! release and take move the lease; an admin's forced takeover tells the previous holder; a
//! viewer may not take it; the API lists the holder. Then the holder's link dies, two ways: its
//! session ends (the socket dropped, as when the browser is killed), and its path is black-holed
//! (nothing crosses, no FIN): the train gets `operator_lost` within `control_heartbeat_timeout` +
//! 100 ms, the lease is free, and the simulator stops. A holder whose remote control is remapped
//! to another train loses the first train's lease at once, and that train is told.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::link::TcpHole;
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, RawTrain, Server, Sim, SMALL_VIDEO};

async fn send(client: &Client, msg: Value) {
    client.send_text(msg.to_string()).await;
}

async fn command(client: &Client, id: &str) -> Value {
    send(client, json!({"type": "command", "request_id": id, "command": {"type": "horn", "duration_ms": 50}})).await;
    client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await
}

/// Ping every 200 ms: the holder's heartbeat.
fn heartbeat(client: &Client) -> tokio::task::JoinHandle<()> {
    let testkit::ws::Outbox::Ws(tx) = &client.out else { panic!("a WebSocket client") };
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut t = 0u64;
        loop {
            t += 1;
            let ping = json!({"type": "ping", "t": t}).to_string();
            if tx.send(tokio_tungstenite::tungstenite::Message::Text(ping.into())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn holder_of(e: &Value) -> Option<&str> {
    e["holder"]["name"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time() {
    let dir = scratch("control_lease");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let a = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    let b = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    let viewer = Client::connect(&server.ws_url_as(&rc, Some(server.token("viewer")))).await;
    a.wait_frames(1).await;
    let _beat = heartbeat(&a);

    send(&a, json!({"type": "take_control"})).await;
    let taken = b.wait_event("control_changed", |e| e["type"] == "control_changed").await;
    assert_eq!((holder_of(&taken), taken["reason"].as_str()), (Some("demo-operator"), Some("taken")), "{taken}");
    a.wait_event("a told too", |e| e["type"] == "control_changed").await;
    let refused = command(&b, "b-horn").await;
    assert_eq!(refused["code"], "not_in_control", "{refused}");
    assert!(refused["message"].as_str().is_some_and(|m| m.contains("demo-operator")), "{refused}");
    send(&b, json!({"type": "take_control"})).await;
    let held = b.wait_event("control_held", |e| e["type"] == "error" && e["code"] == "control_held").await;
    assert!(held["message"].as_str().is_some_and(|m| m.contains("demo-operator")), "{held}");
    assert_eq!(command(&a, "a-horn").await["type"], "command_ack");
    send(&viewer, json!({"type": "take_control"})).await;
    viewer.wait_event("forbidden", |e| e["type"] == "error" && e["code"] == "forbidden").await;
    let (_, train) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert_eq!(train["control"]["name"], "demo-operator", "{train}");
    assert_eq!(train["control"]["transport"], "websocket", "{train}");
    assert_eq!(train["control"]["since_us"], taken["holder"]["since_us"], "{train}");
    // A session that starts watching later learns the holder right after its mapping.
    let late = Client::connect(&server.ws_url_as(&rc, Some(server.token("viewer")))).await;
    let held = late.wait_event("the holder, for a late joiner", |e| e["type"] == "control_changed").await;
    assert_eq!((holder_of(&held), held["reason"].as_str()), (Some("demo-operator"), Some("held")), "{held}");
    drop(late);

    // Release, then B takes it; an admin takes it over by force and B is told.
    send(&a, json!({"type": "release_control"})).await;
    b.wait_event("released", |e| e["type"] == "control_changed" && e["holder"].is_null()).await;
    send(&b, json!({"type": "take_control"})).await;
    b.wait_event("b holds", |e| {
        e["type"] == "control_changed"
            && e["holder"]["session"].is_u64()
            && e["reason"] == "taken"
            && e["holder"]["session"] != taken["holder"]["session"]
    })
    .await;
    let _beat_b = heartbeat(&b);
    let admin = Client::connect(&server.ws_url_as(&rc, Some(server.token("admin")))).await;
    send(&admin, json!({"type": "take_control"})).await;
    admin.wait_event("held for the admin too", |e| e["type"] == "error" && e["code"] == "control_held").await;
    let _beat_admin = heartbeat(&admin);
    send(&admin, json!({"type": "take_control", "force": true})).await;
    let over =
        b.wait_event("taken over", |e| e["type"] == "control_changed" && holder_of(e) == Some("demo-admin")).await;
    assert!(over["reason"].as_str().is_some_and(|r| r.contains("taken over by demo-admin")), "{over}");
    assert_eq!(command(&b, "b-after").await["code"], "not_in_control");
    assert_eq!(command(&admin, "admin-horn").await["type"], "command_ack");
    drop(sim);
}

/// Wait until the raw train got an `operator_lost`; how long after `since`.
async fn operator_lost_after(train: &RawTrain, since: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = train
            .commands
            .lock()
            .expect("lock")
            .iter()
            .any(|c| matches!(c.command, railcast_protocol::Action::OperatorLost { .. }));
        if got {
            return since.elapsed();
        }
        assert!(Instant::now() < deadline, "no operator_lost within 10 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_gets_the_train_told_within_the_timeout() {
    let dir = scratch("control_watchdog");
    let server = Server::start(&dir, &[]).await;
    let train = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let http: std::net::SocketAddr = server.http.parse().expect("addr");

    // 1. The session ends (the socket dropped without a close, as a killed browser's).
    let a = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    send(&a, json!({"type": "take_control"})).await;
    a.wait_event("taken", |e| e["type"] == "control_changed" && !e["holder"].is_null()).await;
    let dropped = Instant::now();
    drop(a);
    let took = operator_lost_after(&train, dropped).await;
    println!("control: operator_lost {} ms after the holder's socket was dropped", took.as_millis());
    assert!(took < Duration::from_millis(1100), "{took:?}");
    let (_, t) = api("GET", &server.url("/api/trains/train-1"), None).await;
    assert!(t["control"].is_null(), "the lease is free: {t}");
    train.commands.lock().expect("lock").clear();

    // 2. The path is black-holed: the session lives on, nothing arrives.
    let hole = TcpHole::start(http).await;
    let url = server.ws_url_as(&rc, Some(server.token("operator"))).replace(&server.http, &hole.addr.to_string());
    let b = Client::connect(&url).await;
    let watcher = Client::connect(&server.ws_url_as(&rc, Some(server.token("viewer")))).await;
    let _beat = heartbeat(&b);
    b.wait_event("b's welcome", |e| e["type"] == "mapped_train_changed").await;
    send(&b, json!({"type": "take_control"})).await;
    b.wait_event("b holds", |e| e["type"] == "control_changed" && !e["holder"].is_null()).await;
    watcher.wait_event("b holds", |e| e["type"] == "control_changed" && !e["holder"].is_null()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !train
            .commands
            .lock()
            .expect("lock")
            .iter()
            .any(|c| matches!(c.command, railcast_protocol::Action::OperatorLost { .. })),
        "a holder that heartbeats keeps the lease"
    );
    hole.cut();
    let cut = Instant::now();
    let took = operator_lost_after(&train, cut).await;
    println!(
        "control: operator_lost {} ms after the holder's path was black-holed (timeout 1000 ms)",
        took.as_millis()
    );
    // The last heartbeat crossed up to 200 ms before the cut.
    assert!(took <= Duration::from_millis(1100), "{took:?}");
    assert!(took >= Duration::from_millis(750), "{took:?}");
    let lost = watcher.wait_event("control lost", |e| e["type"] == "control_changed" && e["holder"].is_null()).await;
    assert!(lost["reason"].as_str().is_some_and(|r| r.starts_with("operator lost")), "{lost}");
    train.commands.lock().expect("lock").clear();

    // 3. The holder's remote control is remapped to another train: the first is told at once.
    let _other = RawTrain::connect(&server, "train-2", Duration::ZERO).await;
    let c = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    let _beat_c = heartbeat(&c);
    c.wait_event("c's mapping", |e| e["type"] == "mapped_train_changed").await;
    send(&c, json!({"type": "take_control"})).await;
    c.wait_event("c holds", |e| e["type"] == "control_changed" && !e["holder"].is_null()).await;
    let remapped = Instant::now();
    testkit::set_train(&server, &rc, "train-2").await;
    let took = operator_lost_after(&train, remapped).await;
    println!("control: operator_lost {} ms after the holder's remote control was remapped", took.as_millis());
    assert!(took < Duration::from_millis(500), "{took:?}");

    // Audited once the train's ack is back, a moment after the train saw the command.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (told, audit) = loop {
        let (_, audit) = api("GET", &server.url("/api/audit?train=train-1"), None).await;
        let told = audit["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["command"]["type"] == "operator_lost")
            .count();
        if told >= 3 || Instant::now() > deadline {
            break (told, audit);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(told, 3, "every operator_lost is audited: {audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_stops_when_its_operator_is_lost() {
    let dir = scratch("control_sim_brakes");
    let server = Server::start(&dir, &["--control-heartbeat-timeout", "500ms"]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let holder = Client::connect(&server.ws_url_as(&rc, Some(server.token("operator")))).await;
    let watcher = Client::connect(&server.ws_url_as(&rc, Some(server.token("viewer")))).await;
    holder.wait_frames(1).await;
    let beat = heartbeat(&holder);
    send(&holder, json!({"type": "take_control"})).await;
    send(&holder, json!({"type": "command", "request_id": "go", "command": {"type": "set_speed", "kmh": 88}})).await;
    watcher.wait_event("88 km/h", |e| e["type"] == "telemetry" && e["telemetry"]["speed_kmh"] == 88.0).await;
    // The holder falls silent (no more pings): the watchdog tells the train, which stops and says so.
    beat.abort();
    let stopped = watcher
        .wait_event("stopped", |e| {
            e["type"] == "telemetry" && e["telemetry"]["speed_kmh"] == 0.0 && e["telemetry"]["operator_lost"] == true
        })
        .await;
    assert_eq!(stopped["train_id"], "train-1");
}
