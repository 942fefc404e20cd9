//! The RTCP a media sender owes its peer, as one interceptor: [`SenderFeedback`].
//!
//! A WHEP session only sends media. What a sender needs from the interceptor chain is three
//! things: retransmissions answering the peer's NACKs (RFC 4585 generic NACK) from the last
//! packets sent, a sender report per stream every second (RFC 3550 §6.4.1: the RTP ↔ NTP mapping
//! players use for lip sync, and the packet and octet counts), and the peer's PLI and FIR handed
//! to the application (which asks the train for a keyframe). webrtc-rs has an interceptor for
//! each of the first two, and railcast had one for the third.
//!
//! webrtc-rs' chain walks every packet through each interceptor's queue and a terminus: at 500
//! viewers × 15 packets per frame, that costs more than what the interceptors do
//! (third_party/PATCHES.md, 22 and 23). This one is a WHEP peer's whole chain (vendored patch 23),
//! so a packet is handed to it directly; it does the three jobs, and the terminus's (inbound RTCP
//! reaches the application only when it asks for a keyframe), with the same
//! behaviour as webrtc-rs' `NackResponderInterceptor` (a history of [`HISTORY`] packets per
//! stream, retransmitted as they were sent: no RTX, which railcast does not negotiate) and
//! `SenderReportInterceptor` (reports every [`REPORT_INTERVAL`], the NTP ↔ RTP mapping taken at
//! each new frame's first packet, counts wrapping at 2³²).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::shared::time::SystemInstant;
use rtc::shared::TransportContext;

use super::tracks::keyframe_requests;
use super::METRICS;

/// Packets kept per stream for retransmission (a power of two): about a second of 4 Mbit/s video.
pub const HISTORY: u16 = 1024;

/// How often each stream's sender report goes out.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// NACK responder, sender reports and keyframe requests for a peer that sends media.
#[derive(Default)]
pub struct SenderFeedback {
    streams: Vec<Stream>,
    next_report: Option<Instant>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl std::fmt::Debug for SenderFeedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderFeedback").field("streams", &self.streams.len()).finish_non_exhaustive()
    }
}

/// One local stream: its history (when the peer negotiated NACK) and its report's state.
struct Stream {
    ssrc: u32,
    clock_rate: f64,
    history: Option<History>,
    report: Report,
}

impl SenderFeedback {
    fn stream(&mut self, ssrc: u32) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.ssrc == ssrc)
    }

    /// Queue the packets `nack` asks for that are still in the history, in the order asked;
    /// count them (`railcast_whep_nack_packets_total`).
    fn answer(&mut self, now: Instant, nack: &TransportLayerNack) {
        let Some(history) = self.streams.iter().find(|s| s.ssrc == nack.media_ssrc).and_then(|s| s.history.as_ref())
        else {
            return;
        };
        let (mut resent, mut unavailable) = (0, 0);
        for pair in &nack.nacks {
            let lost = std::iter::once(pair.packet_id).chain(
                (0..16u16).filter(|i| pair.lost_packets & (1 << i) != 0).map(|i| pair.packet_id.wrapping_add(i + 1)),
            );
            for seq in lost {
                let Some(packet) = history.get(seq) else {
                    unavailable += 1;
                    continue;
                };
                resent += 1;
                self.write.push_back(TaggedPacket {
                    now,
                    transport: TransportContext::default(),
                    message: AttributedPacket::new(Packet::Rtp(packet.clone())).with(Attribute::Retransmission),
                });
            }
        }
        METRICS.nack_packets.with_label_values(&["resent"]).inc_by(resent);
        METRICS.nack_packets.with_label_values(&["unavailable"]).inc_by(unavailable);
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for SenderFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    /// Inbound RTCP is acted on here and reaches the application only when it asks for a
    /// keyframe: this interceptor is the whole chain (`Interceptors::Only`), so it does what
    /// webrtc-rs' terminus (`NoopInterceptor`) does at the end of a chain. RTP passes.
    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() {
                    self.answer(msg.now, nack);
                }
            }
            if keyframe_requests(packets).is_empty() {
                return Ok(());
            }
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            let now = msg.now;
            if let Some(stream) = self.stream(packet.header.ssrc) {
                stream.report.sent(now, packet);
                if let Some(history) = &mut stream.history {
                    history.add(packet.clone());
                }
                // The first report a second after the first packet (as webrtc-rs' interceptor).
                self.next_report.get_or_insert(now + REPORT_INTERVAL);
            }
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Self::Error> {
        if self.next_report.is_some_and(|at| now >= at) {
            self.next_report = Some(now + REPORT_INTERVAL);
            for stream in &self.streams {
                if let Some(report) = stream.report.report(stream.ssrc, stream.clock_rate, now) {
                    self.write.push_back(TaggedPacket {
                        now,
                        transport: TransportContext::default(),
                        message: AttributedPacket::new(Packet::Rtcp(vec![Box::new(report)])),
                    });
                }
            }
        }
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.next_report
    }
}

impl Interceptor for SenderFeedback {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let nack = info.rtcp_feedback.iter().any(|fb| fb.typ == "nack" && fb.parameter.is_empty());
        self.streams.retain(|s| s.ssrc != info.ssrc);
        self.streams.push(Stream {
            ssrc: info.ssrc,
            clock_rate: f64::from(info.clock_rate),
            history: nack.then(History::default),
            report: Report::default(),
        });
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.retain(|s| s.ssrc != info.ssrc);
    }

    fn bind_remote_stream(&mut self, _: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// The last [`HISTORY`] packets sent on a stream, by sequence number.
struct History {
    packets: Vec<Option<rtc::rtp::Packet>>,
    highest: Option<u16>,
}

impl Default for History {
    fn default() -> Self {
        Self { packets: vec![None; usize::from(HISTORY)], highest: None }
    }
}

impl History {
    const MASK: u16 = HISTORY - 1;

    fn add(&mut self, packet: rtc::rtp::Packet) {
        let seq = packet.header.sequence_number;
        match self.highest {
            Some(highest) if seq == highest => return,
            Some(highest) if seq.wrapping_sub(highest) < 1 << 15 => {
                // Forget what lay between: it was never sent.
                let mut i = highest.wrapping_add(1);
                while i != seq {
                    self.packets[usize::from(i & Self::MASK)] = None;
                    i = i.wrapping_add(1);
                }
                self.highest = Some(seq);
            }
            Some(_) => {}
            None => self.highest = Some(seq),
        }
        self.packets[usize::from(seq & Self::MASK)] = Some(packet);
    }

    fn get(&self, seq: u16) -> Option<&rtc::rtp::Packet> {
        let behind = self.highest?.wrapping_sub(seq);
        if behind >= HISTORY {
            return None;
        }
        self.packets[usize::from(seq & Self::MASK)].as_ref().filter(|p| p.header.sequence_number == seq)
    }
}

/// A stream's sender-report state.
#[derive(Default)]
struct Report {
    /// The last in-order sequence number (a packet behind it does not move the mapping).
    last_seq: Option<u16>,
    /// The RTP timestamp of the newest frame's first packet, when it was sent and the wall clock
    /// then.
    mapping: Option<(u32, Instant, SystemInstant)>,
    packets: u32,
    octets: u32,
}

impl Report {
    fn sent(&mut self, now: Instant, packet: &rtc::rtp::Packet) {
        let seq = packet.header.sequence_number;
        let in_order = self.last_seq.is_none_or(|last| {
            let ahead = seq.wrapping_sub(last);
            ahead > 0 && ahead < 1 << 15
        });
        if in_order {
            self.last_seq = Some(seq);
            if self.mapping.is_none_or(|(rtp, _, _)| rtp != packet.header.timestamp) {
                self.mapping = Some((packet.header.timestamp, now, SystemInstant::now(now)));
            }
        }
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(u32::try_from(packet.payload.len()).unwrap_or(u32::MAX));
    }

    fn report(&self, ssrc: u32, clock_rate: f64, now: Instant) -> Option<SenderReport> {
        let (rtp, at, wall) = self.mapping?;
        let elapsed = now.saturating_duration_since(at).as_secs_f64() * clock_rate;
        Some(SenderReport {
            ssrc,
            ntp_time: wall.ntp(now),
            rtp_time: rtp.wrapping_add(elapsed as u32),
            packet_count: self.packets,
            octet_count: self.octets,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;
    use rtc::sansio::Protocol;

    fn rtp(ssrc: u32, seq: u16, timestamp: u32, len: usize) -> TaggedPacket {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::Header { version: 2, ssrc, sequence_number: seq, timestamp, ..Default::default() },
            payload: vec![seq as u8; len].into(),
        };
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: Packet::Rtp(packet).into(),
        }
    }

    fn bound(nack: bool) -> SenderFeedback {
        let mut f = SenderFeedback::default();
        let rtcp_feedback = if nack {
            vec![rtc::interceptor::RTCPFeedback { typ: "nack".into(), parameter: String::new() }]
        } else {
            vec![]
        };
        f.bind_local_stream(&StreamInfo { ssrc: 7, clock_rate: 90_000, rtcp_feedback, ..Default::default() });
        f
    }

    fn nack(ssrc: u32, packet_id: u16, lost_packets: u16) -> TaggedPacket {
        let nack =
            TransportLayerNack { sender_ssrc: 1, media_ssrc: ssrc, nacks: vec![NackPair { packet_id, lost_packets }] };
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: Packet::Rtcp(vec![Box::new(nack)]).into(),
        }
    }

    fn seqs(f: &mut SenderFeedback) -> Vec<(u16, bool)> {
        std::iter::from_fn(|| f.poll_write())
            .filter_map(|m| match &m.message.packet {
                Packet::Rtp(p) => Some((p.header.sequence_number, m.message.has(&Attribute::Retransmission))),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn packets_pass_in_order_and_nacked_ones_are_sent_again() {
        let mut f = bound(true);
        for seq in [65_534, 65_535, 0, 1, 2] {
            f.handle_write(rtp(7, seq, 3_000, 100)).expect("handled");
        }
        assert_eq!(seqs(&mut f), [(65_534, false), (65_535, false), (0, false), (1, false), (2, false)]);
        // 65535, then the bitmap: 0 (bit 0) and 2 (bit 2); 1 is not asked for.
        f.handle_read(nack(7, 65_535, 0b101)).expect("handled");
        assert_eq!(seqs(&mut f), [(65_535, true), (0, true), (2, true)]);
        // Acted on here: the NACK does not reach the application.
        assert!(f.poll_read().is_none());
    }

    #[test]
    fn a_nack_outside_the_history_or_for_another_stream_is_not_answered() {
        let mut f = bound(true);
        for seq in 0..=HISTORY {
            f.handle_write(rtp(7, seq, 0, 10)).expect("handled");
        }
        let _ = seqs(&mut f);
        f.handle_read(nack(7, 0, 0)).expect("handled"); // 1,025 behind: forgotten
        f.handle_read(nack(8, 5, 0)).expect("handled"); // not a stream of ours
        f.handle_read(nack(7, HISTORY + 1, 0)).expect("handled"); // never sent
        assert_eq!(seqs(&mut f), []);
        f.handle_read(nack(7, 1, 0)).expect("handled");
        assert_eq!(seqs(&mut f), [(1, true)]);
    }

    #[test]
    fn without_negotiated_nack_nothing_is_kept() {
        let mut f = bound(false);
        f.handle_write(rtp(7, 1, 0, 10)).expect("handled");
        let _ = seqs(&mut f);
        f.handle_read(nack(7, 1, 0)).expect("handled");
        assert_eq!(seqs(&mut f), []);
    }

    #[test]
    fn a_report_a_second_after_the_first_packet_with_counts_and_mapping() {
        let mut f = bound(true);
        let start = Instant::now();
        let mut first = rtp(7, 10, 90_000, 100);
        first.now = start;
        f.handle_write(first).expect("handled");
        let mut second = rtp(7, 11, 90_000, 50);
        second.now = start + Duration::from_millis(5);
        f.handle_write(second).expect("handled");
        let _ = seqs(&mut f);
        assert_eq!(f.poll_timeout(), Some(start + REPORT_INTERVAL));
        f.handle_timeout(start + Duration::from_millis(500)).expect("handled");
        assert!(f.poll_write().is_none(), "no report before the interval");
        f.handle_timeout(start + REPORT_INTERVAL).expect("handled");
        let out = f.poll_write().expect("a report");
        let Packet::Rtcp(packets) = &out.message.packet else { panic!("not RTCP") };
        let sr = packets[0].as_any().downcast_ref::<SenderReport>().expect("a sender report");
        assert_eq!((sr.ssrc, sr.packet_count, sr.octet_count), (7, 2, 150));
        // One second after the frame's first packet: 90,000 ticks later.
        assert_eq!(sr.rtp_time, 180_000);
        assert_eq!(f.poll_timeout(), Some(start + 2 * REPORT_INTERVAL));
    }

    #[test]
    fn keyframe_requests_reach_the_application_and_other_rtcp_does_not() {
        use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
        let mut f = bound(true);
        let pli = PictureLossIndication { sender_ssrc: 1, media_ssrc: 7 };
        f.handle_read(TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: Packet::Rtcp(vec![Box::new(pli)]).into(),
        })
        .expect("handled");
        assert!(f.poll_read().expect("passed on").message.has(&Attribute::DeliverToApplication));
        f.handle_read(nack(7, 1, 0)).expect("handled");
        assert!(f.poll_read().is_none(), "other RTCP ends here");
        f.handle_read(rtp(7, 1, 0, 10)).expect("handled");
        assert!(f.poll_read().is_some(), "RTP passes");
    }
}
