//! Configuration layers as the binary sees them: defaults < file < environment < flags; each bad
//! value exits 2 with a message naming the setting (a bad environment value names its variable,
//! a bad file line its line and column), before any port is bound. `--check-config` prints TOML
//! that `--config` reads back, with the secrets redacted.

use std::process::Command;

use toml::{Table, Value};

/// The server's exit code, its stdout as TOML (an empty table when it is not), its stderr.
pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, Table, String) {
    let (code, stdout, stderr) = run_raw(args, env);
    (code, stdout.parse().unwrap_or_default(), stderr)
}

/// The server with no `RAILCAST_*` variable but `env`: exit code, stdout, stderr.
pub(crate) fn run_raw(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(testkit::bin("railcast-server"));
    cmd.args(args);
    for (_, var) in railcast_server::config::SETTINGS {
        cmd.env_remove(var);
    }
    cmd.env_remove("RAILCAST_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run server");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn int(c: &Table, key: &str) -> Option<i64> {
    c.get(key).and_then(Value::as_integer)
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = testkit::scratch("config_layers");
    let file = dir.join("railcast.toml");
    std::fs::write(&file, "max_payload = 1000\nsubscriber_queue = 64\ncommand_timeout = \"2s\"\n").expect("write");
    let f = file.to_str().expect("utf8");

    let (code, c, err) = run(&["--check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((int(&c, "max_payload"), int(&c, "subscriber_queue")), (Some(1150), Some(1024)), "defaults: {c}");

    let (_, c, _) = run(&["--check-config", "--config", f], &[]);
    assert_eq!(
        (int(&c, "max_payload"), int(&c, "subscriber_queue"), c.get("command_timeout").and_then(Value::as_str)),
        (Some(1000), Some(64), Some("2s"))
    );

    let (_, c, _) = run(&["--check-config"], &[("RAILCAST_CONFIG", f), ("RAILCAST_MAX_PAYLOAD", "900")]);
    assert_eq!((int(&c, "max_payload"), int(&c, "subscriber_queue")), (Some(900), Some(64)), "env over file: {c}");

    let (_, c, _) = run(&["--check-config", "--config", f, "--max-payload", "800"], &[("RAILCAST_MAX_PAYLOAD", "900")]);
    assert_eq!(int(&c, "max_payload"), Some(800), "flag over env: {c}");

    // A switch: absent, it leaves the file's value; the environment says true or false.
    std::fs::write(&file, "access_log = true\n").expect("write");
    let (_, c, _) = run(&["--check-config", "--config", f], &[]);
    assert_eq!(c.get("access_log").and_then(Value::as_bool), Some(true), "{c}");
    let (_, c, _) = run(&["--check-config", "--config", f], &[("RAILCAST_ACCESS_LOG", "false")]);
    assert_eq!(c.get("access_log").and_then(Value::as_bool), Some(false), "{c}");
    let (_, c, _) = run(
        &["--check-config", "--webrtc-relay-only", "--webrtc-ice-servers", "turn:127.0.0.1:3478"],
        &[("RAILCAST_WEBRTC_TURN_SECRET", "north-sea")],
    );
    assert_eq!(c.get("webrtc_relay_only").and_then(Value::as_bool), Some(true), "{c}");
}

#[test]
fn check_config_prints_toml_that_reads_back_without_secrets() {
    let dir = testkit::scratch("config_check_toml");
    let secrets = [
        ("RAILCAST_WEBRTC_ICE_SERVERS", "turn:127.0.0.1:3478"),
        ("RAILCAST_WEBRTC_TURN_USERNAME", "railcast"),
        ("RAILCAST_WEBRTC_TURN_CREDENTIAL", "static-hunter2"),
        ("RAILCAST_MQTT_URL", "mqtt://admin:broker-hunter2@127.0.0.1:1883"),
    ];
    let (code, shown, err) = run_raw(&["--check-config", "--max-payload", "900"], &secrets);
    assert_eq!(code, 0, "{err}");
    assert!(!shown.contains("hunter2"), "a secret is printed:\n{shown}");
    assert!(shown.contains("# webrtc_turn_credential = \"***\""), "{shown}");
    assert!(shown.contains("mqtt://admin:***@127.0.0.1:1883"), "{shown}");
    let file = dir.join("shown.toml");
    std::fs::write(&file, &shown).expect("write");
    let f = file.to_str().expect("utf8");
    // Read back with the secrets from the environment: the same configuration.
    let (code, again, err) = run_raw(&["--check-config", "--config", f], &secrets[1..]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, shown, "--check-config output, read back with --config, is the same configuration");
    // Without them, the TURN server's credential is missing, and the message says which.
    let (code, _, err) = run_raw(&["--check-config", "--config", f], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("webrtc_turn"), "{err}");

    // The TURN secret too.
    let rest =
        [("RAILCAST_WEBRTC_ICE_SERVERS", "turn:127.0.0.1:3478"), ("RAILCAST_WEBRTC_TURN_SECRET", "rest-hunter2")];
    let (code, shown, err) = run_raw(&["--check-config"], &rest);
    assert_eq!(code, 0, "{err}");
    assert!(!shown.contains("hunter2") && shown.contains("# webrtc_turn_secret = \"***\""), "{shown}");
    println!("--check-config: {} lines of TOML", shown.lines().count());
}

#[test]
fn help_shows_every_default_and_switches() {
    let (code, help, err) = run_raw(&["--help"], &[("RAILCAST_WEBRTC_TURN_SECRET", "help-hunter2")]);
    assert_eq!(code, 0, "{err}");
    for (key, _) in railcast_server::config::SETTINGS {
        assert!(help.contains(&format!("--{}", key.replace('_', "-"))), "--help lacks {key}");
    }
    let defaults = help.matches("[default: ").count();
    assert!(defaults >= railcast_server::config::SETTINGS.len(), "{defaults} defaults shown:\n{help}");
    assert!(!help.contains("help-hunter2"), "--help shows a secret's value:\n{help}");
    for switch in ["--control-required", "--webrtc-relay-only", "--access-log"] {
        let line = help.lines().map(str::trim_start).find(|l| l.starts_with(&format!("{switch} ")) || *l == switch);
        let line = line.unwrap_or_else(|| panic!("--help lacks {switch}:\n{help}"));
        assert!(!line.contains(&format!("{switch} <")), "{switch} takes a value: {line}");
    }
    println!("--help: {} lines, {defaults} defaults", help.lines().count());
}

#[test]
fn each_invalid_value_is_rejected_with_its_message() {
    let dir = testkit::scratch("config_invalid");
    let bad_file = dir.join("bad.toml");
    std::fs::write(&bad_file, "subscriber_queue = 3\n").expect("write");
    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "max_payloads = 10\n").expect("write");
    // Occupy a port: a configuration error must be reported before any bind is attempted.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().expect("addr").to_string();
    // (flags, environment, what the message must name)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (vec!["--max-payload", "0"], vec![], "max_payload"),
        (vec![], vec![("RAILCAST_MAX_PAYLOAD", "70000")], "max_payload"),
        (vec![], vec![("RAILCAST_SUBSCRIBER_QUEUE", "lots")], "RAILCAST_SUBSCRIBER_QUEUE=\"lots\""),
        (vec![], vec![("RAILCAST_QUIC_ADDR", "nowhere")], "RAILCAST_QUIC_ADDR=\"nowhere\""),
        (vec![], vec![("RAILCAST_CONTROL_REQUIRED", "maybe")], "RAILCAST_CONTROL_REQUIRED=\"maybe\""),
        (vec!["--subscriber-queue", "lots"], vec![("RAILCAST_SUBSCRIBER_QUEUE", "lots")], "--subscriber-queue"),
        (vec!["--config", bad_file.to_str().expect("utf8")], vec![], "subscriber_queue"),
        (
            vec!["--config", unknown.to_str().expect("utf8")],
            vec![],
            "unknown.toml:1:1: unknown setting `max_payloads`; did you mean `max_payload`?",
        ),
        (vec!["--quic-keep-alive", "10s"], vec![], "quic_keep_alive"),
        (vec![], vec![("RAILCAST_COMMAND_TIMEOUT", "0s")], "command_timeout"),
        (vec!["--http-addr", "not-an-address"], vec![], "--http-addr"),
        (vec!["--tls-cert", "/nonexistent.pem"], vec![], "tls_key"),
        (vec!["--http-addr", &busy_addr, "--ws-max-message", "1"], vec![], "ws_max_message"),
    ];
    for (args, env, needle) in cases {
        let (code, _, err) = run(&args, &env);
        assert_eq!(code, 2, "{args:?} {env:?}: exit {code}, {err}");
        assert!(err.contains(needle), "{args:?} {env:?}: message does not name {needle}: {err}");
        if args.is_empty() {
            assert!(!err.contains("--"), "a bad environment value names the variable, not the flag: {err}");
        }
        println!("{args:?} {env:?} → {}", err.lines().next().unwrap_or(""));
    }
}
