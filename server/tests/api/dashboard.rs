//! The shipped Grafana dashboard and Prometheus alerts name only series the server exports: every
//! metric in their queries, and every `label="value"` they select on, is in a scrape of a running
//! server with a train streaming, a WebSocket viewer and a command acked. (promtool checks the
//! rules' syntax and behaviour: scripts/check-deploy.sh.)

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{get_text, remote_control, scratch, Server, Sim, SMALL_VIDEO};

/// Every PromQL expression of the dashboard (`expr` of each target, and the template queries).
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", Value::String(q)) => out.push(q.clone()),
                    _ => dashboard_queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

/// Every `expr:` of the alert rules (one line each, as the file keeps them).
fn alert_queries(yaml: &str) -> Vec<String> {
    yaml.lines().filter_map(|l| l.trim().strip_prefix("expr:")).map(|q| q.trim().to_owned()).collect()
}

/// (metric, selectors) for each railcast or process metric in `query`: `name{a="b", c=~"d"}` gives
/// `[("a","b")]` (only exact matches are checked).
fn metrics_in(query: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let ident_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let rest = &query[i..];
        if ident_start && (rest.starts_with("railcast_") || rest.starts_with("process_")) {
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let name = rest[..end].to_owned();
            let mut selectors = Vec::new();
            if let Some(inner) = rest[end..].strip_prefix('{') {
                let close = inner.find('}').expect("closed selector");
                for m in inner[..close].split(',') {
                    if let Some((label, value)) = m.split_once('=') {
                        if !value.starts_with('~') && !label.ends_with('!') {
                            selectors.push((label.trim().to_owned(), value.trim().trim_matches('"').to_owned()));
                        }
                    }
                }
            }
            out.push((name, selectors));
            i += end;
        } else {
            i += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_exported_series() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("deploy/grafana/railcast.json")).expect("dashboard"))
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    let dashboard_count = queries.len();
    queries.extend(alert_queries(&std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml")).expect("alerts")));
    assert!(dashboard_count >= 20 && queries.len() >= dashboard_count + 5, "{queries:#?}");

    let dir = scratch("dashboard");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.wait_frames(5).await;
    client.send_text(json!({"type": "command", "request_id": "d1", "command": {"type": "horn"}}).to_string()).await;
    client.wait_event("ack", |e| e["type"] == "command_ack").await;
    let (status, _, scrape) = get_text(&server.url("/metrics")).await;
    assert_eq!(status, 200);
    let samples: Vec<&str> = scrape.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();

    let mut missing = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for query in &queries {
        for (name, selectors) in metrics_in(query) {
            let of_metric: Vec<&&str> = samples
                .iter()
                .filter(|s| s.strip_prefix(name.as_str()).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
                .collect();
            if of_metric.is_empty() {
                missing.insert(format!("{name} (in {query})"));
            }
            for (label, value) in &selectors {
                let wanted = format!("{label}=\"{value}\"");
                if !of_metric.iter().any(|s| s.contains(&wanted)) {
                    missing.insert(format!("{name}{{{wanted}}} (in {query})"));
                }
            }
            checked.insert(name);
        }
    }
    assert!(missing.is_empty(), "named by the dashboard or the alerts but not exported:\n{missing:#?}");
    println!("{} queries, {} metrics checked: {checked:?}", queries.len(), checked.len());
    assert!(checked.len() >= 20, "{checked:?}");
}

#[test]
fn the_query_parser_finds_metrics_and_selectors() {
    let found = metrics_in(
        r#"sum by (le) (rate(railcast_relay_latency_seconds_bucket{reason="queue_full", train=~"$train"}[5m])) / process_open_fds"#,
    );
    assert_eq!(
        found,
        vec![
            ("railcast_relay_latency_seconds_bucket".to_owned(), vec![("reason".to_owned(), "queue_full".to_owned())]),
            ("process_open_fds".to_owned(), vec![]),
        ]
    );
    assert!(metrics_in("label_values(my_railcast_x, train)").is_empty());
}
