//! Client messages: `ClientMessage::parse` on arbitrary text — the input itself when it is UTF-8,
//! and always its lossy UTF-8 conversion. Seeds are JSON messages and the JSON bodies of the
//! golden control vectors. Checks:
//! - nothing panics; texts over the size limit are refused as too large;
//! - a parsed message is valid (`request_id` of 1–64 bytes, command within its ranges), and
//!   serializing it gives a text that parses to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use railcast_protocol::client::{ClientMessage, MAX_CLIENT_MESSAGE, MAX_REQUEST_ID};
use railcast_protocol::DecodeError;

fn check(text: &str) {
    let parsed = ClientMessage::parse(text);
    if text.len() > MAX_CLIENT_MESSAGE {
        assert!(matches!(parsed, Err(DecodeError::BodyTooLarge { .. })), "{parsed:?}");
        return;
    }
    let Ok(msg) = parsed else { return };
    if let ClientMessage::Command { request_id, command } = &msg {
        assert!((1..=MAX_REQUEST_ID).contains(&request_id.len()));
        assert_eq!(command.validate(), Ok(()));
    }
    let again = match serde_json::to_string(&msg) {
        Ok(json) => json,
        Err(e) => panic!("{msg:?} does not serialize: {e}"),
    };
    match ClientMessage::parse(&again) {
        Ok(back) => assert_eq!(back, msg, "{again}"),
        Err(e) => panic!("{msg:?} serializes to {again}, which does not parse: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(text);
    } else {
        check(&String::from_utf8_lossy(data));
    }
});
