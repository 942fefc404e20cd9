//! Commands to a train behind the agent go to the train's systems through the command hook (an
//! executable; here a shell script): its exit status and output become the ack the operator sees.
//! A hook that succeeds, fails, does not know the command, or hangs (killed at the timeout, while
//! other commands go on); a keyframe request the cameras cannot honour; `operator_lost` reaching
//! the hook when the operator in control goes away; telemetry from the train's file.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::agent::{ffmpeg_live, server_table, Agent};
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};

const HOOK: &str = r#"#!/bin/sh
# $1: the command's type, $2: its id; the command as JSON on standard input.
input=$(cat)
echo "$1 $2 $RAILCAST_TRAIN_ID $input" >> "$(dirname "$0")/hook.log"
case "$1" in
  set_speed)
    case "$input" in *'"kmh":99'*) sleep 30 ;; esac
    echo "traction set: $input" ;;
  horn)
    case "$input" in *'"duration_ms":1234'*) exit 3 ;; esac
    echo "horn relay fault" >&2
    exit 1 ;;
  operator_lost) echo "emergency brake applied" ;;
  *) exit 3 ;;
esac
"#;

async fn send(client: &Client, id: &str, command: Value) -> (Value, Duration) {
    let start = Instant::now();
    client.send_text(json!({"type": "command", "request_id": id, "command": command}).to_string()).await;
    let ev = client
        .wait_event(id, |e| (e["type"] == "command_ack" || e["type"] == "command_error") && e["request_id"] == id)
        .await;
    (ev, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hook_answers_every_command_and_a_hung_one_times_out() {
    let dir = scratch("agent_commands");
    let server = Server::start(&dir, &[]).await;
    let hook = dir.join("train-command");
    std::fs::write(&hook, HOOK).expect("hook");
    std::process::Command::new("chmod").arg("+x").arg(&hook).status().expect("chmod");
    let telemetry = dir.join("telemetry.json");
    std::fs::write(&telemetry, r#"{"speed_kmh": 42.5, "odometer_m": 1200.0, "horn": false}"#).expect("telemetry");
    let config = format!(
        "train_id = \"train-1\"\n{}\n[[camera]]\nid = 0\nsource = \"pipe\"\npath = \"-\"\n\
         [commands]\nhook = \"{}\"\ntimeout_ms = 500\n[telemetry]\nfile = \"{}\"\nstale_after_ms = 60000\n",
        server_table(&server, "train-1"),
        hook.display(),
        telemetry.display()
    );
    let (_ffmpeg, stdout) = ffmpeg_live("160x120", 10, 60, &dir.join("source.h264"));
    let agent = Agent::start(&dir, "commands", &config, stdout);
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;

    let t = client.wait_event("telemetry", |e| e["type"] == "telemetry").await;
    assert_eq!(
        (t["telemetry"]["speed_kmh"].as_f64(), t["telemetry"]["odometer_m"].as_f64()),
        (Some(42.5), Some(1200.0)),
        "{t}"
    );

    let (ack, rtt) = send(&client, "speed", json!({"type": "set_speed", "kmh": 42})).await;
    assert_eq!((ack["type"].as_str(), ack["ok"].as_bool()), (Some("command_ack"), Some(true)), "{ack}");
    assert!(
        ack["message"].as_str().is_some_and(|m| m.starts_with("traction set") && m.contains("\"kmh\":42")),
        "{ack}"
    );
    println!("agent hook: set_speed acked in {} ms through the hook", rtt.as_millis());

    let (ack, _) = send(&client, "horn", json!({"type": "horn", "duration_ms": 300})).await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["message"], "hook failed (exit status 1): horn relay fault", "{ack}");
    let (ack, _) = send(&client, "no-horn", json!({"type": "horn", "duration_ms": 1234})).await;
    assert_eq!(
        (ack["ok"].as_bool(), ack["message"].as_str()),
        (Some(false), Some("the train does not support horn")),
        "{ack}"
    );
    let (ack, _) = send(&client, "kf", json!({"type": "request_keyframe", "camera": 0})).await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert!(ack["message"].as_str().is_some_and(|m| m.starts_with("unsupported") && m.contains("pipe")), "{ack}");

    // A hook that hangs is killed at the timeout; a command sent meanwhile is not held up.
    let hung = tokio::spawn({
        let client_hung = Client::connect(&server.ws_url(&rc)).await;
        async move { send(&client_hung, "hang", json!({"type": "set_speed", "kmh": 99})).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ack, quick) = send(&client, "meanwhile", json!({"type": "set_speed", "kmh": 10})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (ack, waited) = hung.await.expect("hung command");
    assert_eq!(
        (ack["ok"].as_bool(), ack["message"].as_str()),
        (Some(false), Some("hook timed out after 500 ms")),
        "{ack}"
    );
    assert!(quick < Duration::from_millis(400), "a command during a hung one took {quick:?}");
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(3), "{waited:?}");
    println!(
        "agent hook: a hung hook acked as timed out after {} ms; a command meanwhile in {} ms",
        waited.as_millis(),
        quick.as_millis()
    );

    // The operator in control goes away: the hook hears operator_lost and its answer is audited.
    send_raw(&client, json!({"type": "take_control"})).await;
    client.wait_event("control", |e| e["type"] == "control_changed" && !e["holder"].is_null()).await;
    let gone = Instant::now();
    drop(client);
    let log = dir.join("hook.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("operator_lost") {
        assert!(Instant::now() < deadline, "no operator_lost reached the hook: {}", agent.log_text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let reached = gone.elapsed();
    let lines = std::fs::read_to_string(&log).expect("hook log");
    assert!(lines.lines().all(|l| l.split(' ').nth(2) == Some("train-1")), "RAILCAST_TRAIN_ID: {lines}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let entry = loop {
        let (_, audit) = testkit::api("GET", &server.url("/api/audit?train=train-1"), None).await;
        let found = audit["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["command"]["type"] == "operator_lost")
            .cloned();
        if let Some(e) = found {
            break e;
        }
        assert!(Instant::now() < deadline, "operator_lost not audited: {audit}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (entry["result"].as_str(), entry["message"].as_str()),
        (Some("acked"), Some("emergency brake applied")),
        "{entry}"
    );
    println!("agent hook: operator_lost reached the hook {} ms after the holder's socket closed", reached.as_millis());
}

async fn send_raw(client: &Client, v: Value) {
    client.send_text(v.to_string()).await;
}
