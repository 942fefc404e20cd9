//! The `welcome` every client gets carries the server's payload limit (`max_payload`), so a client
//! knows which packets to refuse (wire format §2.1 step 5, §4).

use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_carries_the_configured_payload_limit() {
    let dir = scratch("welcome_payload_limit");
    // Not the default (1150): the value must come from the configuration.
    let server = Server::start(&dir, &["--max-payload", "900"]).await;
    let rc = remote_control(&server, None).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    let welcome = client.wait_event("welcome", |e| e["type"] == "welcome").await;
    assert_eq!(welcome["max_payload"], 900, "{welcome}");
    assert_eq!(welcome["remote_control_id"], rc.as_str(), "{welcome}");
}
