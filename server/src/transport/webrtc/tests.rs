//! Candidate and SDP checks of the negotiation core. The answering direction end to end (a
//! webrtc-rs client offers, the registry answers) is `server/tests/webrtc/answering.rs`.

use super::negotiate;

#[test]
fn candidate_grammar() {
    for good in [
        "candidate:1 1 udp 2122260223 127.0.0.1 50123 typ host",
        "candidate:1 1 UDP 1 ::1 9 typ srflx raddr ::1 rport 9",
        "candidate:2 1 udp 1 192.0.2.1 3478 typ relay raddr 0.0.0.0 rport 0",
    ] {
        assert!(negotiate::check_candidate(good).is_ok(), "{good}: {:?}", negotiate::check_candidate(good));
    }
    for bad in [
        "",
        "candidate:",
        "candidate:1 1 udp x 127.0.0.1 1 typ host",
        "candidate:1 1 sctp 1 h 1 typ host",
        "candidate:1 1 udp 1 h 99999 typ host",
        "candidate:1 1 udp 1 h 1 type host",
        "candidate:1 1 udp 1 h 1 typ weird",
    ] {
        assert!(negotiate::check_candidate(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_data_channel_mid_is_read_from_the_offer() {
    let sdp = "v=0\r\nm=audio 9 UDP 0\r\na=mid:a\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:data\r\n";
    assert_eq!(negotiate::application_mid(sdp).as_deref(), Some("data"));
    assert_eq!(negotiate::application_mid("v=0\r\nm=audio 9 UDP 0\r\na=mid:0\r\n"), None);
}

#[test]
fn candidates_name_no_host_to_resolve() {
    assert!(negotiate::check_candidate("candidate:1 1 udp 2122260223 3f1c2a9e-0b7d.local 50123 typ host").is_ok());
    for named in [
        "candidate:1 1 udp 2122260223 example.com 50123 typ host",
        "candidate:1 1 udp 2122260223 localhost 50123 typ host",
        "candidate:1 1 udp 1 turn.example.net 3478 typ relay raddr 0.0.0.0 rport 0",
    ] {
        assert!(negotiate::check_candidate(named).is_err(), "{named}");
    }
}
