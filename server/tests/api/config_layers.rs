//! Configuration layers as the binary sees them: defaults < file < environment < flags; each bad
//! value exits 2 with a message naming the setting, before any port is bound.

use std::process::Command;

use serde_json::Value;

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut cmd = Command::new(testkit::bin("railcast-server"));
    cmd.args(args);
    for (k, _) in railcast_server::config::SETTINGS {
        cmd.env_remove(k.to_uppercase());
    }
    cmd.env_remove("RAILCAST_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run server");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let dir = testkit::scratch("config_layers");
    let file = dir.join("railcast.toml");
    std::fs::write(&file, "max_payload = 1000\nsubscriber_queue = 64\ncommand_timeout = \"2s\"\n").expect("write");
    let f = file.to_str().expect("utf8");

    let (code, c, err) = run(&["--check-config"], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!((c["max_payload"].as_u64(), c["subscriber_queue"].as_u64()), (Some(1150), Some(1024)), "defaults: {c}");

    let (_, c, _) = run(&["--check-config", "--config", f], &[]);
    assert_eq!(
        (c["max_payload"].as_u64(), c["subscriber_queue"].as_u64(), c["command_timeout"].as_str()),
        (Some(1000), Some(64), Some("2s"))
    );

    let (_, c, _) = run(&["--check-config"], &[("RAILCAST_CONFIG", f), ("RAILCAST_MAX_PAYLOAD", "900")]);
    assert_eq!(
        (c["max_payload"].as_u64(), c["subscriber_queue"].as_u64()),
        (Some(900), Some(64)),
        "env over file: {c}"
    );

    let (_, c, _) = run(&["--check-config", "--config", f, "--max-payload", "800"], &[("RAILCAST_MAX_PAYLOAD", "900")]);
    assert_eq!(c["max_payload"].as_u64(), Some(800), "flag over env: {c}");
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
        (vec![], vec![("RAILCAST_SUBSCRIBER_QUEUE", "lots")], "--subscriber-queue"),
        (vec!["--config", bad_file.to_str().expect("utf8")], vec![], "subscriber_queue"),
        (vec!["--config", unknown.to_str().expect("utf8")], vec![], "max_payloads"),
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
        println!("{args:?} {env:?} → {}", err.lines().next().unwrap_or(""));
    }
}
