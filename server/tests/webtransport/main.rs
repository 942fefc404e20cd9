//! Remote controls over WebTransport (HTTP/3, its own UDP port): exact frames over datagrams and
//! streams, live remapping, commands, client messages, refusals, revocation, shutdown and
//! certificate rotation.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod cert_rotation;
mod client_messages;
mod configured_certificate;
mod deleted;
mod oversized;
mod refusals;
mod remap;
mod revocation;
mod shutdown;
mod wt_fanout;
