//! A WHEP viewer for `whep-fanout --whep-client-tasks` (and `--whep-player-interceptors`; the
//! tool's default is [`crate::whep_fleet`]): testkit's webrtc-rs player (one receive-only
//! H.264 transceiver, no data channel, as a plain player), which counts RTP instead of railcast
//! packets. Its [`RtpCounter`] counts for the fleet's viewers too.
//!
//! The server writes RTP timestamps as capture times at 90 kHz (`capture_us × 90 / 1000 mod
//! 2³²`, README "WHEP"), so a packet's latency is `now − capture` read straight from its
//! timestamp: `(now × 90 kHz − timestamp) mod 2³²` ticks, on this host's one clock. A frame is
//! whole when the packets of one timestamp arrived in sequence up to the marker bit. RTP loss is
//! counted from sequence numbers: packets of frames captured inside the window, against the span
//! of their sequence numbers.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{anyhow, bail};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::server::Api;
use crate::stamped_udp::{Stamp, StampedRuntime};
use crate::stats::{now_us, FrameCounter, Window};

/// An answered WHEP session and its tracks as they come.
pub struct WhepConn {
    pub pc: Arc<dyn PeerConnection>,
    /// The session's URL (`Location`), for the DELETE.
    pub url: String,
    tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
    /// The kernel receive time of the newest datagram its sockets handed to webrtc-rs.
    stamp: Arc<Stamp>,
}

/// Offer one receive-only video transceiver to remote control `rc` and apply the answer. With
/// `interceptors`, the peer runs a player's (see `--whep-player-interceptors`).
pub async fn connect(api: &Api, rc: &str, interceptors: bool) -> anyhow::Result<WhepConn> {
    let (runtime, stamp) = StampedRuntime::new()?;
    let (pc, tracks, _channels, _ice) = testkit::whep::media_peer_on(interceptors, runtime).await;
    let (sdp, _) = testkit::whep::offer(&pc, 1, false).await;
    let url = format!("{}/api/whep/remote-controls/{rc}", api.base);
    let (status, headers, answer) =
        testkit::whep::http("POST", &url, api.token.as_deref(), &[("content-type", "application/sdp")], &sdp).await;
    if status != 201 {
        let _ = pc.close().await;
        bail!("WHEP POST: {status} {answer}");
    }
    let location = headers.get("location").and_then(|v| v.to_str().ok()).ok_or_else(|| anyhow!("no Location"))?;
    let url = format!("{}{location}", api.base);
    pc.set_remote_description(RTCSessionDescription::answer(answer)?).await?;
    Ok(WhepConn { pc, url, tracks, stamp })
}

/// RTP sequence numbers of the packets counted: their span against how many arrived.
#[derive(Debug, Default, Clone, Copy)]
pub struct RtpLoss {
    /// Packets of frames captured inside the window, received.
    pub received: u64,
    /// The span of their sequence numbers (first to last, inclusive).
    pub expected: u64,
}

/// Whole frames and packet latency of one track, as [`FrameCounter`] counts railcast packets.
#[derive(Debug, Default)]
pub(crate) struct RtpCounter {
    counter: FrameCounter,
    loss: RtpLoss,
    /// The frame being received: its timestamp, the next sequence number, intact so far.
    frame: Option<(u32, u16, bool)>,
    /// Extended sequence numbers of the first and last in-window packet.
    first: Option<u64>,
    last_ext: Option<u64>,
    last_seq: Option<u16>,
    cycles: u64,
}

impl RtpCounter {
    /// One RTP packet as read; `received_us`: the kernel receive time of it or of a datagram
    /// received after it (see [`crate::stamped_udp`]).
    pub(crate) fn packet(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        len: usize,
        window: &Window,
        received_us: Option<u64>,
    ) {
        let now = now_us();
        let now_ticks = (u128::from(now) * 90_000 / 1_000_000) as u32;
        let latency_us = u64::from(now_ticks.wrapping_sub(timestamp)) * 1_000_000 / 90_000;
        let capture = now.saturating_sub(latency_us);
        self.counter.packets_any += 1;
        // Extended sequence number (wraps every 65,536 packets).
        if let Some(prev) = self.last_seq {
            if seq < prev && prev.wrapping_sub(seq) > 0x8000 {
                self.cycles += 1;
            }
        }
        self.last_seq = Some(seq);
        let ext = (self.cycles << 16) | u64::from(seq);
        let inside = window.contains(capture);
        if inside {
            self.counter.packets += 1;
            self.counter.bytes += len as u64;
            self.counter.latency.record(latency_us);
            if let Some(r) = received_us {
                self.counter.socket_latency.record(r.saturating_sub(capture));
            }
            self.loss.received += 1;
            self.first.get_or_insert(ext);
            self.last_ext = Some(self.last_ext.map_or(ext, |l| l.max(ext)));
        }
        let intact = match self.frame {
            Some((ts, next, ok)) if ts == timestamp => ok && next == seq,
            _ => true,
        };
        self.frame = Some((timestamp, seq.wrapping_add(1), intact));
        if marker {
            if intact && inside {
                self.counter.frames += 1;
            }
            self.frame = None;
        }
    }

    /// Packets read, in the window or not.
    pub(crate) fn packets_any(&self) -> u64 {
        self.counter.packets_any
    }

    pub(crate) fn finish(mut self) -> (FrameCounter, RtpLoss) {
        if let (Some(f), Some(l)) = (self.first, self.last_ext) {
            self.loss.expected = l - f + 1;
        }
        (self.counter, self.loss)
    }
}

/// Count the video track's RTP until `stop`; marks the viewer warm at its first packet.
///
/// The packets are counted by a sink on the connection's driver task
/// ([`TrackRemote::set_rtp_sink`]), as a player's depacketizer would take them: "read" is when
/// webrtc-rs hands a packet to the application. The few queued before the sink was set are
/// read from the track's queue.
pub async fn run(
    mut conn: WhepConn,
    window: Arc<Window>,
    warm: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> (WhepConn, FrameCounter, RtpLoss, Option<String>) {
    let counter = Arc::new(Mutex::new(RtpCounter::default()));
    let mut error = None;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    let track = tokio::select! {
        _ = &mut stopped => None,
        t = conn.tracks.recv() => t,
    };
    if let Some(track) = track {
        let count = {
            let (counter, window, warm, stamp) =
                (Arc::clone(&counter), Arc::clone(&window), Arc::clone(&warm), Arc::clone(&conn.stamp));
            move |p: &rtc::rtp::Packet| {
                let mut c = counter.lock().unwrap_or_else(PoisonError::into_inner);
                if c.counter.packets_any == 0 {
                    warm.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let h = &p.header;
                c.packet(h.sequence_number, h.timestamp, h.marker, p.payload.len() + 12, &window, stamp.get());
            }
        };
        let sink = count.clone();
        track.set_rtp_sink(Some(Box::new(move |p| sink(&p))));
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                ev = track.poll() => match ev {
                    Some(TrackRemoteEvent::OnRtpPacket(p)) => count(&p),
                    Some(_) => {}
                    None => {
                        error = Some("track ended".into());
                        break;
                    }
                },
            }
        }
        track.set_rtp_sink(None);
    } else {
        error = Some("no track before the end".into());
    }
    let c = std::mem::take(&mut *counter.lock().unwrap_or_else(PoisonError::into_inner));
    let (counter, loss) = c.finish();
    (conn, counter, loss, error)
}

/// End the session: DELETE its resource, close the peer.
pub async fn close(conn: WhepConn, api: &Api) {
    let _ = testkit::whep::http("DELETE", &conn.url, api.token.as_deref(), &[], "").await;
    let _ = conn.pc.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_need_every_packet_in_sequence_up_to_the_marker() {
        let w = Window::default();
        w.open(60_000_000);
        // The window opened before the frames below were captured.
        std::thread::sleep(std::time::Duration::from_millis(120));
        // Frames captured 100, 67 and 33 ms ago.
        let ts = ((u128::from(now_us()) * 90_000 / 1_000_000) as u32).wrapping_sub(9_000);
        // The socket received them 5 ms before they were read.
        let at = Some(now_us() - 5_000);
        let mut c = RtpCounter::default();
        // Frame 1: three packets, whole. Frame 2: the middle packet lost. Frame 3: whole, and
        // the sequence numbers wrap inside it.
        c.packet(65_533, ts, false, 1000, &w, at);
        c.packet(65_534, ts, false, 1000, &w, at);
        c.packet(65_535, ts, true, 1000, &w, at);
        c.packet(0, ts + 3000, false, 1000, &w, at);
        c.packet(2, ts + 3000, true, 1000, &w, at);
        c.packet(3, ts + 6000, false, 1000, &w, at);
        c.packet(4, ts + 6000, true, 1000, &w, at);
        let (counter, loss) = c.finish();
        assert_eq!(counter.frames, 2);
        assert_eq!(counter.packets, 7);
        assert_eq!((loss.received, loss.expected), (7, 8));
        let (p0, max) = (counter.latency.quantile(0.0).expect("latency"), counter.latency.max_us);
        assert!(p0 >= 30_000 && max <= 110_000, "33 to 100 ms after capture: {p0}..{max} µs");
        let socket = &counter.socket_latency;
        assert_eq!(socket.n, 7, "every packet in the window has its socket latency");
        assert!(socket.max_us + 4_000 <= max && socket.max_us + 6_000 >= max, "5 ms less: {} vs {max}", socket.max_us);
    }
}
