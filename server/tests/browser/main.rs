//! Real browsers: Debian's Chromium, driven by playwright-core, on the plain WebRTC test page
//! (`tests/browser/`) and on the operator console (`web-client/`, built into `web-client/dist`),
//! over plain HTTP on localhost, over HTTPS with a test CA, and from an insecure origin; and a plain
//! WHEP page playing every camera as RTP tracks (`whep_chromium`), and a plain WHIP page
//! publishing canvases as a train (`whip_chromium`).
//!
//! One behaviour per file; the files of an area share one test executable (see `api/main.rs`).
//! Every test here runs alone (`testkit::serial`): a Chromium decoding two cameras at 640×480,
//! 30 fps and the simulator encoding them take the machine's two cores, and every scenario runs
//! against deadlines.

mod browser_webrtc;
mod console_audio;
mod console_auto_fallback;
mod console_cluster_audit;
mod console_control;
mod console_https;
mod console_insecure_origin;
mod console_mqtt;
mod console_mqtt_signaling;
mod console_playback;
mod console_restart;
mod console_revoked;
mod console_roles;
mod console_rpc_signaling;
mod console_wall;
mod console_webrtc;
mod console_websocket;
mod console_webtransport;
mod console_whep;
mod rpc_browser_peers;
mod webtransport_certificates;
mod whep_chromium;
mod whip_chromium;
