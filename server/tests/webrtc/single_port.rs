//! Every WebRTC session on one UDP port (`webrtc_udp_port`), demultiplexed by ICE ufrag.
//!
//! 1. Three webrtc-rs clients at once: each offer's host candidate is the shared port, all three
//!    carry verified video, and the server process has exactly one UDP socket besides QUIC and
//!    WebTransport (read from `/proc/<pid>/fd` and `/proc/<pid>/net/udp`), also all along a
//!    fourth session from aiortc. Closed sessions leave the mux: no connection and no route is
//!    left. Without the mux each session binds a socket
//!    of its own and the socket count fails.
//! 2. Garbage on the port (random bytes, a Binding request for an unknown ufrag, one with a
//!    session's ufrag but without its password, a stray STUN response, a truncated header) is
//!    dropped and counted in
//!    `railcast_webrtc_udp_dropped_total`, and running sessions keep their video.
//! 3. Clients behind a real TURN server (coturn, client policy `relay`): every datagram reaches
//!    the shared port from coturn's relayed addresses, and the sessions carry verified video.
//! 4. `webrtc_udp_port` and `webrtc_udp_ports` together are refused, naming the setting.
//! 5. The compose setup: bound on `0.0.0.0` with a fixed port, the advertised address announced.
//! 6. The control: with `webrtc_udp_ports` the same socket check sees a socket per session.
//! 7. Three sessions gather server-reflexive candidates from one STUN server (coturn) at once
//!    through the shared socket: each answer reaches the session that asked.

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use testkit::webrtc::RtcClient;
use testkit::ws::verify;
use testkit::{api, remote_control, scratch, Server, Sim, SMALL_VIDEO};
use webrtc::peer_connection::RTCIceCandidateType;

use crate::webrtc_turn::{relay_only, Turn, TURN_PASSWORD, TURN_USER};

/// The local UDP ports of the sockets process `pid` holds, sorted (IPv4 and IPv6).
fn udp_ports(pid: u32) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| Some(l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned()))
        .collect();
    let mut ports = Vec::new();
    for table in ["udp", "udp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
            if f.len() > 9 && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()).expect("port");
                ports.push(port);
            }
        }
    }
    ports.sort_unstable();
    ports
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<SocketAddr>().expect("address").port()
}

/// The UDP ports the server must have: QUIC, WebTransport and the shared WebRTC port.
fn expected_ports(server: &Server) -> Vec<u16> {
    let mut want = vec![port_of(&server.quic), port_of(server.webrtc_udp.as_deref().expect("webrtc-udp line"))];
    want.extend(server.webtransport.as_deref().map(port_of));
    want.sort_unstable();
    want
}

async fn metrics(server: &Server) -> String {
    let (status, text) = api("GET", &server.url("/metrics"), None).await;
    assert_eq!(status, 200);
    text.as_str().expect("metrics text").to_owned()
}

/// The value of the sample `name` (with its labels) in a Prometheus text page; 0 when absent.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The ports of the `typ host` candidates of an SDP.
fn host_ports(sdp: &str) -> Vec<u16> {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:") && l.contains(" typ host"))
        .filter_map(|l| l.split_whitespace().nth(5)?.parse().ok())
        .collect()
}

async fn close_all(server: &Server, clients: Vec<RtcClient>) {
    for c in clients {
        let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{}", c.session_id)), None).await;
        assert_eq!(status, 204);
        let _ = c.pc.close().await;
    }
    testkit::wait_no_webrtc_sessions(server).await;
}

/// Poll the metrics until every peer connection has left the mux.
async fn wait_mux_empty(server: &Server) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = metrics(server).await;
        let left = sample(&text, "railcast_webrtc_udp_connections")
            + sample(&text, "railcast_webrtc_udp_routes{kind=\"address\"}")
            + sample(&text, "railcast_webrtc_udp_routes{kind=\"ufrag\"}");
        if left == 0.0 {
            return text;
        }
        assert!(tokio::time::Instant::now() < deadline, "peers left in the mux:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sessions_share_one_udp_socket() {
    let dir = scratch("webrtc_single_port");
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let shared = port_of(server.webrtc_udp.as_deref().expect("the server prints its shared WebRTC port"));
    let pid = server.child.id().expect("pid");
    assert_eq!(udp_ports(pid), expected_ports(&server), "before any session");

    let mut rcs = Vec::new();
    for _ in 0..3 {
        rcs.push(remote_control(&server, Some("train-1")).await);
    }
    let (a, b, c) = tokio::join!(
        RtcClient::connect(&server, &rcs[0]),
        RtcClient::connect(&server, &rcs[1]),
        RtcClient::connect(&server, &rcs[2]),
    );
    let clients = vec![a, b, c];
    for rtc in &clients {
        let ports = host_ports(&rtc.offer);
        assert!(!ports.is_empty() && ports.iter().all(|p| *p == shared), "host candidates on {shared}: {ports:?}");
        println!("session {}: setup {:.1} ms", rtc.session_id, rtc.setup.as_secs_f64() * 1000.0);
    }
    for rtc in &clients {
        rtc.client.wait_frames(30).await;
    }
    let received: Vec<_> = clients.iter().map(|rtc| rtc.client.frames()).collect();
    let manifest = sim.manifest();
    for (rtc, frames) in clients.iter().zip(&received) {
        let checked = verify(frames, &manifest);
        assert!(checked >= 30, "{checked} frames");
        println!("session {}: {checked} frames verified", rtc.session_id);
    }
    let ports = udp_ports(pid);
    println!("server UDP sockets with 3 sessions: {ports:?} (shared WebRTC port {shared})");
    assert_eq!(ports, expected_ports(&server), "one UDP socket serves every WebRTC session");

    // A fourth session from a foreign stack (aiortc) joins, streams and leaves; the sockets are
    // sampled all along, its setup included.
    let rc4 = remote_control(&server, Some("train-1")).await;
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = std::sync::Arc::clone(&sampling);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(udp_ports(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    let report = crate::aiortc_peer::aiortc(&server, &rc4).await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let seen = sampler.await.expect("sampler");
    let offered: Vec<u16> = report["offer_candidates"]
        .as_array()
        .expect("offer_candidates")
        .iter()
        .filter_map(|c| c.as_str()?.split_whitespace().nth(5)?.parse().ok())
        .collect();
    assert!(!offered.is_empty() && offered.iter().all(|p| *p == shared), "aiortc was offered {offered:?}");
    let aiortc_frames = report["frames"].as_array().map_or(0, Vec::len);
    assert!(aiortc_frames >= 20, "aiortc: {report}");
    let odd: Vec<&Vec<u16>> = seen.iter().filter(|p| **p != expected_ports(&server)).collect();
    println!(
        "aiortc alongside: setup {} ms, {aiortc_frames} frames; {} socket samples, none with another UDP socket",
        report["setup_ms"],
        seen.len()
    );
    assert!(odd.is_empty(), "while aiortc connected the server held {odd:?}");
    for rtc in &clients {
        let n = rtc.client.frames().len();
        rtc.client.wait_frames(n + 10).await;
    }

    let text = metrics(&server).await;
    assert_eq!(sample(&text, "railcast_webrtc_udp_connections"), 3.0, "{text}");
    assert!(sample(&text, "railcast_webrtc_udp_received_total") > 0.0, "{text}");

    close_all(&server, clients).await;
    let text = wait_mux_empty(&server).await;
    println!(
        "after close: {} routed transactions left (bounded per peer, gone with it)",
        sample(&text, "railcast_webrtc_udp_routes{kind=\"transaction\"}")
    );
    assert_eq!(sample(&text, "railcast_webrtc_udp_routes{kind=\"transaction\"}"), 0.0, "{text}");
    assert_eq!(udp_ports(pid), expected_ports(&server), "after the sessions closed");

    // The port serves new sessions after the old ones left.
    let again = RtcClient::connect(&server, &rcs[0]).await;
    again.client.wait_frames(5).await;
    close_all(&server, vec![again]).await;
}

/// A STUN message: `kind`, a transaction id, and attributes.
fn stun(kind: u16, tid: [u8; 12], attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&u16::try_from(v.len()).expect("short").to_be_bytes());
        body.extend_from_slice(v);
        body.resize(body.len().div_ceil(4) * 4, 0);
    }
    let mut m = kind.to_be_bytes().to_vec();
    m.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&tid);
    m.extend_from_slice(&body);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_shared_port_is_dropped_and_counted() {
    let dir = scratch("webrtc_single_port_garbage");
    let server = Server::start(&dir, &[]).await;
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let target: SocketAddr = server.webrtc_udp.as_deref().expect("webrtc-udp").parse().expect("address");
    let rc1 = remote_control(&server, Some("train-1")).await;
    let rc2 = remote_control(&server, Some("train-1")).await;
    let (a, b) = tokio::join!(RtcClient::connect(&server, &rc1), RtcClient::connect(&server, &rc2));
    a.client.wait_frames(10).await;
    b.client.wait_frames(10).await;
    let before = metrics(&server).await;

    // From two sockets the server has never heard of; a third sends from the address of nothing.
    let attacker = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut sent_other = 0;
    for i in 0..500 {
        let len = (random() % 1400) as usize + 1;
        let mut d: Vec<u8> = (0..len).map(|_| random() as u8).collect();
        if i % 5 == 0 {
            d[0] = 0x16; // looks like DTLS
        }
        attacker.send_to(&d, target).expect("send");
        sent_other += 1;
        if i % 50 == 49 {
            // Paced: a burst larger than the socket's receive buffer would be the kernel's drop,
            // not the server's, and go uncounted.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let username = (0x0006, &b"nobodysufrag:x"[..]);
    let mut sent_unknown_ufrag = 0;
    for i in 0..50u8 {
        attacker.send_to(&stun(0x0001, [i; 12], &[username]), target).expect("send");
        sent_unknown_ufrag += 1;
    }
    // A session's real ufrag without its password: a new address is tied to it only by a check
    // that carries the password.
    let ufrag = a.offer.lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:")).expect("ufrag").to_owned();
    let forged_username = format!("{ufrag}:attacker");
    let mut forged = stun(0x0001, [0xEE; 12], &[(0x0006, forged_username.as_bytes())]);
    let len = u16::from_be_bytes([forged[2], forged[3]]) + 24;
    forged[2..4].copy_from_slice(&len.to_be_bytes());
    forged.extend_from_slice(&[0x00, 0x08, 0x00, 0x14]);
    forged.extend_from_slice(&[0x5A; 20]);
    let mut sent_bad_integrity = 0;
    for _ in 0..10 {
        attacker.send_to(&forged, target).expect("send");
        sent_bad_integrity += 1;
    }
    // A Binding success nobody asked for, a request without USERNAME, a truncated header.
    for d in [
        stun(0x0101, [0xAB; 12], &[]),
        stun(0x0001, [0xCD; 12], &[]),
        stun(0x0001, [1; 12], &[username])[..19].to_vec(),
    ] {
        attacker.send_to(&d, target).expect("send");
        sent_other += 1;
    }
    let other = UdpSocket::bind("127.0.0.1:0").expect("udp");
    other.send_to(b"\x00\x01\x00\x00", target).expect("send");
    sent_other += 1;

    // The sessions keep streaming.
    let (na, nb) = (a.client.frames().len(), b.client.frames().len());
    a.client.wait_frames(na + 15).await;
    b.client.wait_frames(nb + 15).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = metrics(&server).await;
        let delta = |name: &str| sample(&after, name) - sample(&before, name);
        let (ufrag, address, integrity) = (
            delta("railcast_webrtc_udp_dropped_total{reason=\"unknown_ufrag\"}"),
            delta("railcast_webrtc_udp_dropped_total{reason=\"unknown_address\"}"),
            delta("railcast_webrtc_udp_dropped_total{reason=\"bad_integrity\"}"),
        );
        if ufrag >= f64::from(sent_unknown_ufrag)
            && address >= f64::from(sent_other)
            && integrity >= f64::from(sent_bad_integrity)
        {
            println!(
                "dropped and counted: {ufrag} Binding requests for an unknown ufrag, {integrity} with a session's \
                 ufrag but not its password, {address} datagrams from unknown addresses; both sessions kept their \
                 video"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "dropped {ufrag} of {sent_unknown_ufrag} (ufrag), {integrity} of {sent_bad_integrity} (integrity), \
             {address} of {sent_other} (address)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a new session still opens on the port.
    let c = RtcClient::connect(&server, &rc1).await;
    c.client.wait_frames(3).await;
    close_all(&server, vec![a, b, c]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_clients_reach_the_shared_port_through_coturn() {
    let dir = scratch("webrtc_single_port_turn");
    let turn = Turn::start(&dir);
    let server = Server::start(&dir, &[]).await;
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let shared = port_of(server.webrtc_udp.as_deref().expect("webrtc-udp"));
    let pid = server.child.id().expect("pid");
    let relayed = || relay_only(&turn.url(), TURN_USER, TURN_PASSWORD);
    let rc1 = remote_control(&server, Some("train-1")).await;
    let rc2 = remote_control(&server, Some("train-1")).await;
    let (a, b) = tokio::join!(
        RtcClient::connect_with(&server, &rc1, relayed()),
        RtcClient::connect_with(&server, &rc2, relayed()),
    );
    for rtc in [&a, &b] {
        rtc.client.wait_frames(20).await;
    }
    let received = [a.client.frames(), b.client.frames()];
    let manifest = sim.manifest();
    for (rtc, frames) in [&a, &b].into_iter().zip(&received) {
        let checked = verify(frames, &manifest);
        println!(
            "relayed session {}: setup {:.1} ms, {checked} frames verified",
            rtc.session_id,
            rtc.setup.as_secs_f64() * 1000.0
        );
    }
    // The server saw the clients only at coturn's relayed addresses (its relay ports), all on
    // the one port.
    for rtc in [&a, &b] {
        let pair = rtc.pc.sctp().await.expect("sctp").transport().ice_transport().get_selected_candidate_pair().await;
        let pair = pair.expect("ice").expect("a selected pair");
        println!("client's selected pair: {pair:?}");
        assert_eq!(pair.remote().port, shared, "the client reaches the shared port");
        assert_eq!(pair.local().typ, RTCIceCandidateType::Relay, "the client is relayed: {pair:?}");
    }
    let log = turn.log();
    assert!(log.contains("ALLOCATE processed, success"), "coturn allocated:\n{log}");
    assert_eq!(udp_ports(pid), expected_ports(&server), "one UDP socket for relayed sessions too");
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "railcast_webrtc_udp_connections"), 2.0, "{text}");
    close_all(&server, vec![a, b]).await;
    wait_mux_empty(&server).await;
}

#[tokio::test]
async fn the_shared_port_and_the_range_exclude_each_other() {
    let out = tokio::process::Command::new(testkit::bin("railcast-server"))
        .args(["--webrtc-udp-port", "8189", "--webrtc-udp-ports", "50000-50099"])
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("webrtc_udp_port"), "{stderr}");
    println!("{}", stderr.trim());
}

/// As docker-compose runs it: bound on every interface, a fixed port, the address clients reach
/// announced instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_port_on_every_interface_as_in_compose() {
    let dir = scratch("webrtc_single_port_compose");
    let port = UdpSocket::bind("0.0.0.0:0").expect("udp").local_addr().expect("addr").port();
    let port_arg = port.to_string();
    let args = ["--webrtc-bind-ip", "0.0.0.0", "--webrtc-advertised-ip", "127.0.0.1", "--webrtc-udp-port", &port_arg];
    let server = Server::start(&dir, &args).await;
    assert_eq!(server.webrtc_udp.as_deref(), Some(format!("0.0.0.0:{port}").as_str()));
    let sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc = remote_control(&server, Some("train-1")).await;
    let rtc = RtcClient::connect(&server, &rc).await;
    let hosts: Vec<&str> = rtc.offer.lines().filter(|l| l.contains(" typ host")).collect();
    assert!(
        !hosts.is_empty() && hosts.iter().all(|l| l.contains(&format!(" 127.0.0.1 {port} typ host"))),
        "the advertised address with the fixed port: {hosts:?}"
    );
    rtc.client.wait_frames(10).await;
    let checked = verify(&rtc.client.frames(), &sim.manifest());
    println!("bound 0.0.0.0:{port}, announced 127.0.0.1:{port}: {checked} frames verified");
    assert_eq!(udp_ports(server.child.id().expect("pid")), expected_ports(&server));
    close_all(&server, vec![rtc]).await;
}

/// The control: with a port range each session binds its own socket, and the check above sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_port_range_each_session_binds_its_own_socket() {
    let dir = scratch("webrtc_single_port_range");
    let lo = UdpSocket::bind("127.0.0.1:0").expect("udp").local_addr().expect("addr").port().min(65_000);
    let range = format!("{lo}-{}", lo + 20);
    let server = Server::start(&dir, &["--webrtc-udp-ports", &range]).await;
    assert_eq!(server.webrtc_udp, None, "no shared port with a range");
    let _sim = Sim::start(&dir, &server, &[&["--trains", "1"], SMALL_VIDEO].concat());
    let rc1 = remote_control(&server, Some("train-1")).await;
    let rc2 = remote_control(&server, Some("train-1")).await;
    let (a, b) = tokio::join!(RtcClient::connect(&server, &rc1), RtcClient::connect(&server, &rc2));
    a.client.wait_frames(5).await;
    b.client.wait_frames(5).await;
    let ports = udp_ports(server.child.id().expect("pid"));
    // The range was carved from the ephemeral ports, where the server's own QUIC and
    // WebTransport sockets may also have landed: those are not sessions'.
    let own: Vec<u16> =
        [Some(server.quic.as_str()), server.webtransport.as_deref()].into_iter().flatten().map(port_of).collect();
    let per_session: Vec<&u16> = ports.iter().filter(|p| (lo..=lo + 20).contains(*p) && !own.contains(p)).collect();
    println!("with --webrtc-udp-ports {range}, 2 sessions: UDP sockets {ports:?}");
    assert_eq!(per_session.len(), 2, "a socket per session: {ports:?}");
    close_all(&server, vec![a, b]).await;
}

/// Server-reflexive gathering through the shared socket: several sessions ask the same STUN
/// server (coturn) from the same address at once, and each answer must reach the session that
/// asked, by its transaction id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_answers_reach_the_session_that_asked() {
    let dir = scratch("webrtc_single_port_stun");
    let turn = Turn::start(&dir);
    let stun = format!("stun:127.0.0.1:{}", turn.port);
    let server = Server::start(&dir, &["--webrtc-ice-servers", &stun]).await;
    let shared = port_of(server.webrtc_udp.as_deref().expect("webrtc-udp"));
    let rc = remote_control(&server, None).await;
    let offer = || async {
        let (status, v) =
            api("POST", &server.url("/api/webrtc/offer"), Some(serde_json::json!({"remote_control_id": rc}))).await;
        assert_eq!(status, 200, "{v}");
        v["session_id"].as_str().expect("session_id").to_owned()
    };
    let (s1, s2, s3) = tokio::join!(offer(), offer(), offer());
    for sid in [&s1, &s2, &s3] {
        let (mut srflx, mut complete, mut after) = (None, false, 0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !complete && tokio::time::Instant::now() < deadline {
            let url = server.url(&format!("/api/webrtc/sessions/{sid}/candidates?after={after}&wait_ms=1000"));
            let (status, page) = api("GET", &url, None).await;
            assert_eq!(status, 200, "{page}");
            for c in page["candidates"].as_array().expect("candidates") {
                let line = c["candidate"].as_str().expect("candidate");
                if line.contains(" typ srflx") {
                    srflx = Some(line.to_owned());
                }
            }
            after = page["next"].as_u64().expect("next") as usize;
            complete = page["complete"].as_bool().expect("complete");
        }
        let srflx =
            srflx.unwrap_or_else(|| panic!("session {sid}: no server-reflexive candidate (complete: {complete})"));
        let port: u16 = srflx.split_whitespace().nth(5).and_then(|p| p.parse().ok()).expect("port");
        assert_eq!(port, shared, "coturn saw the shared port: {srflx}");
        assert!(complete, "session {sid}: gathering completes");
        println!("session {sid}: {srflx}");
    }
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "railcast_webrtc_udp_routes{kind=\"transaction\"}"), 0.0, "answered: {text}");
    for sid in [&s1, &s2, &s3] {
        let (status, _) = api("DELETE", &server.url(&format!("/api/webrtc/sessions/{sid}")), None).await;
        assert_eq!(status, 204);
    }
    testkit::wait_no_webrtc_sessions(&server).await;
    wait_mux_empty(&server).await;
}
