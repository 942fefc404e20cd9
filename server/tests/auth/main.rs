//! Authentication and authorisation: client roles on every route and transport, train tokens,
//! who may command, and what a credentials reload revokes.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod auth_commands;
mod auth_roles;
mod auth_trains;
mod command_audit;
mod control_audit;
mod control_lease;
mod revocation_persistence;
mod token_revocation;
