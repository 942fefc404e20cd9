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

/// WHEP's send path marshals a frame's RTP packets into one buffer and encrypts each where it
/// lies (third_party/PATCHES.md, 27): the datagrams must be byte for byte what the copying path
/// gives, for both SRTP profiles browsers negotiate, and decrypt to the packets sent.
#[test]
fn srtp_in_place_matches_the_copying_path() {
    use bytes::{Bytes, BytesMut};
    use rtc::shared::marshal::{Marshal, MarshalSize};
    use rtc::srtp::context::Context;
    use rtc::srtp::protection_profile::ProtectionProfile;

    let provider = rtc::crypto::default_provider().expect("crypto provider");
    for profile in [ProtectionProfile::AeadAes128Gcm, ProtectionProfile::Aes128CmHmacSha1_80] {
        let key: Vec<u8> = (0..profile.key_len() as u8).collect();
        let salt: Vec<u8> = (100..100 + profile.salt_len() as u8).collect();
        let context = || Context::new(&key, &salt, profile, None, None, provider.crypto()).expect("context");
        let (mut copying, mut in_place, mut receiver) = (context(), context(), context());
        let mut arena = BytesMut::with_capacity(4 * (1200 + 16));
        let mut previous: Option<BytesMut> = None;
        // Across the 16-bit sequence wrap, so the rollover counter moves the same way in both.
        for (i, seq) in [65534u16, 65535, 0, 1].into_iter().enumerate() {
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::Header {
                    version: 2,
                    marker: i == 3,
                    payload_type: 102,
                    sequence_number: seq,
                    timestamp: 90_000,
                    ssrc: 0x1234_5678,
                    ..Default::default()
                },
                payload: Bytes::from((0..1100u32).map(|b| (b * 7 + i as u32) as u8).collect::<Vec<u8>>()),
            };
            let plain = packet.marshal().expect("marshal");
            let expected = copying.encrypt_rtp_with_header(&plain, &packet.header).expect("encrypt");

            arena.resize(packet.marshal_size(), 0);
            let n = packet.marshal_to(&mut arena).expect("marshal in place");
            arena.truncate(n);
            in_place.encrypt_rtp_in_place(&mut arena, &packet.header).expect("encrypt in place");
            let datagram = arena.split();
            assert_eq!(datagram, expected, "{profile:?} seq {seq}");
            assert_ne!(&datagram[12..12 + 16], &plain[12..12 + 16], "{profile:?}: the payload is encrypted");
            assert_eq!(receiver.decrypt_rtp(&datagram).expect("decrypt"), plain, "{profile:?} seq {seq}");
            // Each datagram starts where the one before ends: the GSO send joins them in place.
            if let Some(p) = &previous {
                assert_eq!(p.as_ptr().wrapping_add(p.len()), datagram.as_ptr(), "{profile:?} seq {seq}");
            }
            previous = Some(datagram);
        }
        // A buffer shorter than its header is refused, not read past.
        let header = rtc::rtp::Header { version: 2, ssrc: 1, ..Default::default() };
        assert!(in_place.encrypt_rtp_in_place(&mut BytesMut::from(&[0x80u8, 0][..]), &header).is_err());
    }
}
