//! Control frames: `ControlMessage::decode` and the stream `ControlDecoder` on arbitrary bytes,
//! split at arbitrary points.
//!
//! Input layout: byte 0 — bits 0–2: how many split bytes follow (0–7), bit 3: use a 256-byte body
//! limit instead of the default 64 KiB; then the split bytes, each a chunk length − 1, used in turn
//! until the stream is consumed (none: the stream arrives in one piece); the rest is the stream.
//! Seeds are a golden vector behind a `00` byte. Checks:
//! - nothing panics;
//! - the decoder is split-invariant: it yields exactly the frames that decoding the whole stream
//!   in one piece yields, then the same fatal error (a bad magic may differ in the byte it has not
//!   seen), or `None` with the same number of bytes held;
//! - `Incomplete` only ever asks for more bytes than there are, and a decoded frame is never empty;
//! - every decoded message re-encodes to a frame that decodes to the same message, whole.

#![no_main]

use libfuzzer_sys::fuzz_target;
use railcast_protocol::control::{ControlDecoder, ControlMessage, CONTROL_HEADER_LEN, DEFAULT_MAX_BODY};
use railcast_protocol::DecodeError;

/// Decode a whole stream in one piece: its frames, then the error that stopped it (`Incomplete`
/// when the stream ends inside a frame, `None` when it ends on a frame boundary) and where.
fn decode_whole(stream: &[u8], max_body: usize) -> (Vec<ControlMessage>, Option<DecodeError>, usize) {
    let mut msgs = Vec::new();
    let mut at = 0;
    while at < stream.len() {
        match ControlMessage::decode(&stream[at..], max_body) {
            Ok((msg, used)) => {
                assert!(used >= CONTROL_HEADER_LEN && used <= stream.len() - at, "used {used}");
                msgs.push(msg);
                at += used;
            }
            Err(e) => {
                if let DecodeError::Incomplete { needed } = e {
                    assert!(needed > 0);
                }
                return (msgs, Some(e), at);
            }
        }
    }
    (msgs, None, at)
}

fn check_round_trip(msg: &ControlMessage, max_body: usize) {
    let bytes = msg.to_bytes();
    match ControlMessage::decode(&bytes, max_body.max(bytes.len())) {
        Ok((again, used)) => {
            assert_eq!(used, bytes.len(), "re-encoded {} frame not used whole", msg.name());
            assert_eq!(&again, msg, "re-encoded {} frame decodes differently", msg.name());
        }
        Err(e) => panic!("re-encoded {} frame does not decode: {e}\n{msg:?}\n{bytes:?}", msg.name()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let n_splits = usize::from(control & 0x07).min(rest.len());
    let max_body = if control & 0x08 != 0 { 256 } else { DEFAULT_MAX_BODY };
    let (splits, stream) = rest.split_at(n_splits);

    let (whole, stop, used) = decode_whole(stream, max_body);
    for msg in &whole {
        check_round_trip(msg, max_body);
    }

    let mut decoder = ControlDecoder::new(max_body);
    let mut got = Vec::new();
    let mut failed = None;
    let mut at = 0;
    let mut turn = 0;
    'feed: while at < stream.len() {
        let len = if splits.is_empty() { stream.len() } else { usize::from(splits[turn % splits.len()]) + 1 };
        turn += 1;
        let end = (at + len).min(stream.len());
        decoder.push(&stream[at..end]);
        at = end;
        loop {
            match decoder.next_frame() {
                Ok(Some(msg)) => got.push(msg),
                Ok(None) => break,
                Err(e) => {
                    assert!(!matches!(e, DecodeError::Incomplete { .. }), "decoder returned Incomplete");
                    failed = Some(e);
                    break 'feed;
                }
            }
        }
    }

    assert_eq!(got, whole, "split decoding yields other frames than whole decoding");
    match (stop, failed) {
        (None, None) => assert_eq!(decoder.buffered(), 0),
        (Some(DecodeError::Incomplete { .. }), None) => assert_eq!(decoder.buffered(), stream.len() - used),
        // The same error, except that a bad magic seen with one byte buffered reports the second
        // byte it has not seen yet as 0: compare the reason there.
        (Some(DecodeError::BadMagic { found: [a, _] }), Some(DecodeError::BadMagic { found: [b, _] })) => {
            assert_eq!(a, b)
        }
        (Some(want), Some(e)) => assert_eq!(e, want, "split decoding fails otherwise than whole decoding"),
        (stop, failed) => panic!("whole decoding stopped with {stop:?}, split decoding with {failed:?}"),
    }
});
