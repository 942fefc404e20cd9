//! Trains over QUIC: malformed packets and hellos, fatal control-stream errors after the hello
//! (each explained by an `error` frame before the close), a second connection for an online train
//! id, a train that restarts, vanishes mid-frame or jumps its clock, the simulator reconnecting,
//! commands to the train and their acks, a foreign train on aioquic that behaves, then does
//! not, and trains that check the server's certificate against a CA. WHIP (RFC 9725): aiortc
//! publishing a train, and the requests WHIP refuses.
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).

mod agent_audio;
mod agent_commands;
mod agent_pipe;
mod agent_robustness;
mod agent_rtsp;
mod agent_rtsp_auth;
mod agent_rtsp_sdp_params;
mod clock_jumps;
mod commands;
mod control_errors_after_hello;
mod disconnect_mid_command;
mod foreign_quic_train;
mod malformed_packets;
mod record_audio;
mod record_disk_full;
mod record_kill;
mod record_playback;
mod record_retention;
mod record_rollover;
mod record_shutdown;
mod record_simulator;
mod record_toggle;
mod record_total_budget;
mod sim_reconnect;
mod train_ca;
mod train_id_takeover;
mod train_restart;
mod train_vanishes_mid_frame;
mod whip_aiortc;
mod whip_bad_input;
mod whip_no_command_channel;
mod whip_publisher_vanishes;
mod whip_reorder;
mod whip_shutdown;
mod whip_stalled_camera;
mod whip_takeover;
mod whip_takes_over_quic;
