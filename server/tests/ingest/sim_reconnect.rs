//! The simulator reconnects by itself when the server goes away and comes back (with a new
//! self-signed certificate, which it discovers and pins again).

use std::time::Instant;

use testkit::{api, scratch, wait_for_train, Server, Sim, SMALL_VIDEO};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_reconnects_after_server_restart() {
    let dir = scratch("sim_reconnect");
    let mut first = Server::start(&dir, &[]).await;
    let (http, quic, fp1) = (first.http.clone(), first.quic.clone(), first.fingerprint.clone());
    let _sim = Sim::start(&dir, &first, &[&["--trains", "1"], SMALL_VIDEO].concat());
    wait_for_train(&first, "train-1", true).await;

    first.child.kill().await.expect("kill server");
    let _ = first.child.wait().await;
    let down = Instant::now();
    // The same credentials: the train keeps its token.
    let creds = first.credentials.clone().expect("credentials");
    let creds = creds.to_str().expect("utf8");
    let second = Server::start(&dir, &["--http-addr", &http, "--quic-addr", &quic, "--auth-file", creds]).await;
    assert_eq!((second.http.as_str(), second.quic.as_str()), (http.as_str(), quic.as_str()));
    assert_ne!(second.fingerprint, fp1, "a restarted server generates a new certificate");
    wait_for_train(&second, "train-1", true).await;
    println!("train back online {} ms after the server was restarted", down.elapsed().as_millis());
    let (_, t) = api("GET", &second.url("/api/trains/train-1"), None).await;
    assert_eq!(t["connections"], 1);
}
