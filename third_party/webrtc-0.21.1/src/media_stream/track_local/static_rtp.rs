//! Local track that accepts pre-packetized RTP packets.
//!
//! [`TrackLocalStaticRTP`](crate::media_stream::track_local::static_rtp::TrackLocalStaticRTP) is the pass-through local track: you hand it
//! [`rtp::Packet`](rtc::rtp::Packet)s and it forwards them to the peer, rewriting only what
//! the negotiated session requires. Nothing is packetized, sequenced, or re-timestamped for
//! you.
//!
//! Reach for this when your application already holds RTP — an SFU forwarding another
//! peer's stream, an RTP-over-UDP ingest, a recording being replayed packet-for-packet. If
//! it holds encoded *frames* instead, use
//! [`TrackLocalStaticSample`](crate::media_stream::track_local::static_sample::TrackLocalStaticSample), which owns the
//! packetizer and sequencer.
//!
//! # Examples
//!
//! Build the track from a [`MediaStreamTrack`], then write packets through the
//! [`TrackLocal`](crate::media_stream::track_local::TrackLocal) trait's
//! [`write_rtp`](crate::media_stream::track_local::TrackLocal::write_rtp) — so that trait must be in scope:
//!
//! ```no_run
//! use rtc::media_stream::MediaStreamTrack;
//! use rtc::rtp;
//! use webrtc::media_stream::track_local::TrackLocal;
//! use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
//!
//! # async fn example(track: MediaStreamTrack, packet: rtp::Packet)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let output_track = TrackLocalStaticRTP::new(track);
//!
//! // Forward a packet received from elsewhere, unchanged.
//! output_track.write_rtp(packet).await?;
//! # Ok(())
//! # }
//! ```
//!
//! To attach RTP header extensions per packet, use
//! [`write_rtp_with_extensions`](crate::media_stream::track_local::static_rtp::TrackLocalStaticRTP::write_rtp_with_extensions), which maps
//! each extension URI onto the id negotiated for this track — and therefore requires the
//! track to be bound to a peer connection first.

use crate::error::{Error, Result};
use crate::media_stream::Track;
use crate::media_stream::track_local::{TrackLocal, TrackLocalContext, TrackLocalEvent};
use crate::peer_connection::driver::PeerConnectionDriverEvent;
use crate::runtime::{Mutex, Receiver};
use bytes::BytesMut;
use rtc::media_stream::{
    MediaStreamId, MediaStreamTrack, MediaStreamTrackId, MediaStreamTrackState,
    MediaTrackCapabilities, MediaTrackConstraints, MediaTrackSettings,
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpEncodingParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpSenderId, RtpStreamId, SSRC};
use rtc::shared::error::flatten_errs;
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::{rtcp, rtp};
use std::collections::HashMap;

/// TrackLocalStaticRTP  is a TrackLocal that has a pre-set codec and accepts RTP Packets.
/// If you wish to send a media.Sample use TrackLocalStaticSample
#[derive(Clone)]
pub struct TrackLocalStaticRTP {
    pub(crate) track: Mutex<MediaStreamTrack>,
    pub(crate) ctx: Mutex<Option<TrackLocalContext>>,
    /// Delivers RTCP feedback received about this sent track (set on bind).
    pub(crate) evt_rx: Mutex<Option<Receiver<TrackLocalEvent>>>,
}

impl TrackLocalStaticRTP {
    /// Creates a new `TrackLocalStaticRTP` with the given [`MediaStreamTrack`].
    pub fn new(track: MediaStreamTrack) -> Self {
        Self {
            track: Mutex::new(track),
            ctx: Mutex::new(None),
            evt_rx: Mutex::new(None),
        }
    }

    /// Hands the driver the event `event` makes of this track's sender id (railcast patch,
    /// third_party/PATCHES.md, 19; since 24 only `write_rtp` sends an event).
    async fn send_rtp(
        &self,
        event: impl FnOnce(RTCRtpSenderId) -> PeerConnectionDriverEvent,
    ) -> Result<()> {
        let ctx_opt = self.ctx.lock().await;
        if let Some(ctx) = &*ctx_opt {
            let tx = ctx.driver_event_tx.clone();
            let rtp_sender_id = ctx.rtp_sender_id;
            drop(ctx_opt);
            // overflow: awaited — producer is the application in `write_rtp`. Blocking
            // the sender is the outbound back-pressure mechanism, not a failure mode.
            tx.send(event(rtp_sender_id))
                .await
                .map_err(|e| Error::Other(format!("{:?}", e)))
        } else {
            Err(Error::Other("track is not binding yet".to_string()))
        }
    }

    /// Writes an RTP packet to the track with the specified header extensions.
    pub async fn write_rtp_with_extensions(
        &self,
        mut pkt: rtp::Packet,
        extensions: &[rtp::extension::HeaderExtension],
    ) -> Result<()> {
        let mut write_errs = vec![];

        // Prepare the extensions data
        let extension_data: HashMap<_, _> = extensions
            .iter()
            .flat_map(|extension| {
                let buf = {
                    let mut buf = BytesMut::with_capacity(extension.marshal_size());
                    buf.resize(extension.marshal_size(), 0);
                    if let Err(err) = extension.marshal_to(&mut buf) {
                        write_errs.push(err);
                        return None;
                    }

                    buf.freeze()
                };

                Some((extension.uri(), buf))
            })
            .collect();

        {
            let ctx = self.ctx.lock().await;
            if let Some(ctx) = &*ctx {
                for (uri, data) in extension_data.iter() {
                    if let Some(id) = ctx
                        .rtp_parameters
                        .header_extensions
                        .iter()
                        .find(|ext| &ext.uri == uri)
                        .map(|ext| ext.id)
                        && let Err(err) = pkt.header.set_extension(id as u8, data.clone())
                    {
                        write_errs.push(err);
                        continue;
                    }
                }
            } else {
                return Err(Error::ErrBindFailed);
            }
        }

        if let Err(err) = self.write_rtp(pkt).await {
            write_errs.push(err);
        }

        flatten_errs(write_errs)
    }
}

#[async_trait::async_trait]
impl Track for TrackLocalStaticRTP {
    async fn stream_id(&self) -> MediaStreamId {
        let track = self.track.lock().await;
        track.stream_id().to_owned()
    }

    async fn track_id(&self) -> MediaStreamTrackId {
        let track = self.track.lock().await;
        track.track_id().to_owned()
    }

    async fn label(&self) -> String {
        let track = self.track.lock().await;
        track.label().to_owned()
    }

    async fn kind(&self) -> RtpCodecKind {
        let track = self.track.lock().await;
        track.kind()
    }

    async fn rid(&self, ssrc: SSRC) -> Option<RtpStreamId> {
        let track = self.track.lock().await;
        track.rid(ssrc).cloned()
    }

    async fn codec(&self, ssrc: SSRC) -> Option<RTCRtpCodec> {
        let track = self.track.lock().await;
        track.codec(ssrc).cloned()
    }

    async fn ssrcs(&self) -> Vec<SSRC> {
        let track = self.track.lock().await;
        track.ssrcs().collect()
    }

    async fn enabled(&self) -> bool {
        let track = self.track.lock().await;
        track.enabled()
    }

    async fn set_enabled(&self, enabled: bool) {
        let mut track = self.track.lock().await;
        track.set_enabled(enabled);
    }

    async fn muted(&self) -> bool {
        let track = self.track.lock().await;
        track.muted()
    }

    async fn set_muted(&self, muted: bool) {
        let mut track = self.track.lock().await;
        track.set_muted(muted);
    }

    async fn ready_state(&self) -> MediaStreamTrackState {
        let track = self.track.lock().await;
        track.ready_state()
    }

    async fn stop(&self) {
        let mut track = self.track.lock().await;
        track.stop();
    }

    async fn get_capabilities(&self) -> MediaTrackCapabilities {
        let track = self.track.lock().await;
        track.get_capabilities().clone()
    }

    async fn get_constraints(&self) -> MediaTrackConstraints {
        let track = self.track.lock().await;
        track.get_constraints().clone()
    }

    async fn get_settings(&self) -> MediaTrackSettings {
        let track = self.track.lock().await;
        track.get_settings().clone()
    }

    async fn apply_constraints(&self, constraints: Option<MediaTrackConstraints>) {
        let mut track = self.track.lock().await;
        track.apply_constraints(constraints);
    }

    async fn codings(&self) -> Vec<RTCRtpEncodingParameters> {
        let track = self.track.lock().await;
        track.codings().to_vec()
    }

    async fn add_coding(&self, coding: RTCRtpEncodingParameters) {
        let mut track = self.track.lock().await;
        track.add_coding(coding);
    }
}

#[async_trait::async_trait]
impl TrackLocal for TrackLocalStaticRTP {
    async fn track(&self) -> MediaStreamTrack {
        let track = self.track.lock().await;
        track.clone()
    }

    async fn bind(&self, ctx: TrackLocalContext, evt_rx: Receiver<TrackLocalEvent>) {
        *self.ctx.lock().await = Some(ctx);
        *self.evt_rx.lock().await = Some(evt_rx);
    }

    async fn unbind(&self) {
        *self.ctx.lock().await = None;
        *self.evt_rx.lock().await = None;
    }

    async fn write_rtp(&self, packet: rtp::Packet) -> Result<()> {
        self.send_rtp(|id| PeerConnectionDriverEvent::SenderRtp(id, Box::new(packet)))
            .await
    }

    async fn write_rtp_batch(&self, packets: Vec<rtp::Packet>) -> Result<()> {
        if packets.is_empty() {
            return Ok(());
        }
        // railcast patch (third_party/PATCHES.md, 24): written and sent by this task, with no
        // driver event (19 made the batch one event; this makes it none).
        let (pc, sender_id) = {
            let ctx = self.ctx.lock().await;
            let ctx = ctx
                .as_ref()
                .ok_or_else(|| Error::Other("track is not binding yet".to_string()))?;
            (ctx.pc.upgrade(), ctx.rtp_sender_id)
        };
        let pc = pc.ok_or(Error::ErrConnectionClosed)?;
        crate::peer_connection::driver::send_rtp_batch(&pc, sender_id, packets).await
    }

    async fn write_rtcp(&self, packets: Vec<Box<dyn rtcp::Packet>>) -> Result<()> {
        let ctx_opt = self.ctx.lock().await;
        if let Some(ctx) = &*ctx_opt {
            let tx = ctx.driver_event_tx.clone();
            let rtp_sender_id = ctx.rtp_sender_id;
            drop(ctx_opt);
            // overflow: awaited — producer is the application in `write_rtcp`.
            tx.send(PeerConnectionDriverEvent::SenderRtcp(
                rtp_sender_id,
                packets,
            ))
            .await
            .map_err(|e| Error::Other(format!("{:?}", e)))
        } else {
            Err(Error::Other("track is not binding yet".to_string()))
        }
    }

    async fn poll(&self) -> Option<TrackLocalEvent> {
        let mut guard = self.evt_rx.lock().await;
        match guard.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        }
    }
}
