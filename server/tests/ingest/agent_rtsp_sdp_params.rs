//! An RTSP camera that sends its parameter sets (SPS, PPS) only in the SDP's
//! `sprop-parameter-sets`, never in the stream (GStreamer's server with `--sdp-only`, as some IP
//! cameras do): the agent puts them in front of every keyframe, so every keyframe a viewer gets
//! starts SPS, PPS and what the viewer got decodes in ffmpeg on its own, without the SDP.

use std::time::Duration;

use testkit::agent::{ffmpeg_decode, server_table, Agent, RtspServer};
use testkit::ws::Client;
use testkit::{remote_control, scratch, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_sets_from_the_sdp_go_before_every_keyframe() {
    let dir = scratch("agent_rtsp_sdp_params");
    let server = Server::start(&dir, &[]).await;
    let rtsp = RtspServer::start_with(&dir, 1, None, &["--sdp-only"]).await;
    let config = format!(
        "train_id = \"train-1\"\n{}\n[[camera]]\nid = 0\nsource = \"rtsp\"\nurl = \"{}\"\n",
        server_table(&server, "train-1"),
        rtsp.url(0)
    );
    let _agent = Agent::start(&dir, "rtsp-sdp", &config, std::process::Stdio::null());
    testkit::wait_for_train(&server, "train-1", true).await;
    let rc = remote_control(&server, Some("train-1")).await;
    let client = Client::connect(&server.ws_url(&rc)).await;
    client.keep_data();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let frames = client.frames();
    let keyframes: Vec<_> = frames.iter().filter(|f| f.keyframe).collect();
    assert!(keyframes.len() >= 2, "{} keyframes in 3 s at one a second", keyframes.len());
    for k in &keyframes {
        assert_eq!(k.nal_types.iter().filter(|&&t| t == 7 || t == 8).count(), 2, "SPS and PPS: {:?}", k.nal_types);
        assert!(k.nal_types.starts_with(&[7, 8]), "a keyframe starts SPS, PPS: {:?}", k.nal_types);
    }
    let deltas_with_sps = frames.iter().filter(|f| !f.keyframe && f.nal_types.contains(&7)).count();
    assert_eq!(deltas_with_sps, 0, "the stream itself carries no SPS");
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.data.as_ref().expect("kept").to_vec()).collect();
    let (decoded, errors) = ffmpeg_decode(&stream);
    assert!(errors.is_empty(), "ffmpeg: {errors}");
    assert_eq!(decoded, frames.len());
    println!(
        "agent rtsp sdp-only: {} frames, {} keyframes each with the SDP's SPS and PPS in front; all decode",
        frames.len(),
        keyframes.len()
    );
}
