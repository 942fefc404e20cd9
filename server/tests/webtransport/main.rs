//! Remote controls over WebTransport (HTTP/3, its own UDP port): exact frames over datagrams and
//! streams, live remapping, commands, refusals, revocation, shutdown and certificate rotation.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod wt_fanout;
