//! The control lease in the audit: every `take_control` and `release_control` is an entry, as a
//! command is, with who sent it and how it ended: `done` with the lease's change (`taken`,
//! `taken over by …`, `released`), or `refused` with the error's code (`control_held`,
//! `not_in_control`, `forbidden`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::ws::Client;
use testkit::{api, remote_control, scratch, RawTrain, Server};

fn changes(client: &Client) -> usize {
    client.events().iter().filter(|e| e["type"] == "control_changed").count()
}

/// Send `msg` from `clients[from]` and wait for its answer: an `error` to it, or (`done`) the
/// `control_changed` every session of the train gets.
async fn control(clients: &[&Client], from: usize, msg: &Value, done: bool) {
    let seen: Vec<usize> = clients.iter().map(|c| changes(c)).collect();
    let errors = |c: &Client| c.events().iter().filter(|e| e["type"] == "error").count();
    let errors_before = errors(clients[from]);
    clients[from].send_text(msg.to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = if done {
            clients.iter().zip(&seen).all(|(c, n)| changes(c) > *n)
        } else {
            errors(clients[from]) > errors_before
        };
        if answered {
            return;
        }
        assert!(Instant::now() < deadline, "no answer to {msg}: {:?}", clients[from].events());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_and_releases_are_audited() {
    let dir = scratch("control_audit");
    let server = Server::start(&dir, &[]).await;
    let _train = RawTrain::connect(&server, "train-1", Duration::ZERO).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let url = |role: &str| server.ws_url_as(&rc, Some(server.token(role)));
    let operator = Client::connect(&url("operator")).await;
    let other = Client::connect(&url("operator")).await;
    let admin = Client::connect(&url("admin")).await;
    let viewer = Client::connect(&url("viewer")).await;

    let clients = [&operator, &other, &admin, &viewer];
    let steps = [
        (0, json!({"type": "take_control", "console_id": "tab-1"}), true),
        (1, json!({"type": "take_control"}), false),
        (3, json!({"type": "take_control"}), false),
        (2, json!({"type": "take_control", "force": true}), true),
        (1, json!({"type": "release_control"}), false),
        (2, json!({"type": "release_control"}), true),
    ];
    for (from, msg, done) in &steps {
        control(&clients, *from, msg, *done).await;
    }

    let (status, page) = api("GET", &server.url("/api/audit?train=train-1"), None).await;
    assert_eq!(status, 200, "{page}");
    let entries: Vec<&Value> = page["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["command"]["type"].as_str().is_some_and(|t| t.ends_with("_control")))
        .collect();
    let summary: Vec<(String, String, String, String, String)> = entries
        .iter()
        .map(|e| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
            (s(&e["principal"]), s(&e["command"]["type"]), s(&e["result"]), s(&e["code"]), s(&e["message"]))
        })
        .collect();
    let row = |who: &str, what: &str, result: &str, code: &str, message: &str| {
        (who.to_owned(), what.to_owned(), result.to_owned(), code.to_owned(), message.to_owned())
    };
    assert_eq!(summary.len(), steps.len(), "{page}");
    assert_eq!(summary[0], row("demo-operator", "take_control", "done", "", "taken"));
    assert_eq!((&summary[1].2[..], &summary[1].3[..]), ("refused", "control_held"), "{:?}", summary[1]);
    assert_eq!((&summary[2].2[..], &summary[2].3[..]), ("refused", "forbidden"), "{:?}", summary[2]);
    assert_eq!(
        summary[3],
        row("demo-admin", "take_control", "done", "", "taken over by demo-admin from demo-operator")
    );
    assert_eq!((&summary[4].2[..], &summary[4].3[..]), ("refused", "not_in_control"), "{:?}", summary[4]);
    assert_eq!(summary[5], row("demo-admin", "release_control", "done", "", "released"));
    let first = entries[0];
    assert_eq!(
        (&first["transport"], &first["train_id"], &first["command"]["console_id"], &first["request_id"]),
        (&json!("websocket"), &json!("train-1"), &json!("tab-1"), &json!("")),
        "{first}"
    );
}
