//! What a WHIP offer publishes, read from its SDP (sans-IO): the H.264 video sections (the
//! train's cameras, in m-line order), the first Opus audio section (its audio) and whether it has
//! a data-channel section (the `command` channel). The peer connection parses the SDP again for
//! itself; this reading only decides the train's layout and refuses an offer with nothing to
//! publish before a peer is built.

/// One media section of the offer that the train publishes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    /// `a=mid:`.
    pub mid: Option<String>,
    /// The SSRCs the section announces (`a=ssrc:`), to route packets to it.
    pub ssrcs: Vec<u32>,
    /// The track id of `a=msid:<stream> <track>`.
    pub track_id: Option<String>,
    /// Opus: `stereo=1` in its fmtp.
    pub stereo: bool,
    /// `a=ptime:` (Opus frame duration), ms.
    pub ptime: Option<u32>,
    /// `a=framerate:` (video), rounded.
    pub framerate: Option<u32>,
}

/// The train an offer describes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// Sections that send H.264: camera `i` is the i-th.
    pub cameras: Vec<Section>,
    /// The first section that sends Opus.
    pub audio: Option<Section>,
    /// The offer has an `m=application … webrtc-datachannel` section.
    pub data_channel: bool,
    /// Video sections that send no H.264 (answered without a camera).
    pub other_video: usize,
}

/// Why an offer cannot publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the body is not an SDP offer: {0}")]
    NotSdp(String),
    #[error("the offer sends no H.264 video: {0}")]
    NoH264(String),
    #[error("the offer sends {found} video tracks, at most {max} are accepted")]
    TooManyCameras { found: usize, max: usize },
}

/// Kind of one media section while reading.
#[derive(Debug, Default)]
struct Reading {
    kind: String,
    /// `sendonly`/`sendrecv` (or none given, which means sendrecv).
    sends: bool,
    h264: bool,
    opus_pt: Option<String>,
    fmtp: Vec<(String, String)>,
    section: Section,
}

/// Read `sdp`. At most `max_cameras` H.264 sections are accepted.
pub fn read(sdp: &str, max_cameras: usize) -> Result<Layout, OfferError> {
    let mut lines = sdp.lines().map(str::trim_end).filter(|l| !l.is_empty());
    match lines.next() {
        Some("v=0") => {}
        other => return Err(OfferError::NotSdp(format!("it must start with \"v=0\", not {:?}", other.unwrap_or("")))),
    }
    let mut sections: Vec<Reading> = Vec::new();
    for line in lines {
        if line.len() < 2 || line.as_bytes()[1] != b'=' {
            return Err(OfferError::NotSdp(format!("{:?} is not an SDP line (x=…)", clip(line))));
        }
        if let Some(m) = line.strip_prefix("m=") {
            let kind = m.split(' ').next().unwrap_or_default().to_owned();
            sections.push(Reading { sends: true, kind, ..Reading::default() });
            if m.starts_with("application") && m.contains("webrtc-datachannel") {
                if let Some(last) = sections.last_mut() {
                    last.kind = "datachannel".into();
                }
            }
            continue;
        }
        let Some(r) = sections.last_mut() else { continue };
        let Some(attr) = line.strip_prefix("a=") else { continue };
        let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
        match name {
            "mid" => r.section.mid = Some(value.to_owned()),
            "recvonly" | "inactive" => r.sends = false,
            "sendonly" | "sendrecv" => r.sends = true,
            "rtpmap" => {
                let (pt, codec) = value.split_once(' ').unwrap_or((value, ""));
                let codec = codec.to_ascii_lowercase();
                if codec.starts_with("h264/") {
                    r.h264 = true;
                } else if codec.starts_with("opus/") && r.opus_pt.is_none() {
                    r.opus_pt = Some(pt.to_owned());
                }
            }
            "fmtp" => {
                let (pt, params) = value.split_once(' ').unwrap_or((value, ""));
                r.fmtp.push((pt.to_owned(), params.to_owned()));
            }
            "ssrc" => {
                if let Some(ssrc) = value.split(' ').next().and_then(|s| s.parse::<u32>().ok()) {
                    if !r.section.ssrcs.contains(&ssrc) {
                        r.section.ssrcs.push(ssrc);
                    }
                }
            }
            "msid" => r.section.track_id = value.split(' ').nth(1).map(str::to_owned),
            "ptime" => r.section.ptime = value.trim().parse().ok(),
            "framerate" => r.section.framerate = value.trim().parse::<f64>().ok().map(|f| f.round() as u32),
            _ => {}
        }
    }
    if sections.is_empty() {
        return Err(OfferError::NotSdp("it has no media section (m=…)".into()));
    }
    let mut layout = Layout::default();
    for mut r in sections {
        match r.kind.as_str() {
            "video" if r.sends && r.h264 => layout.cameras.push(r.section),
            "video" => layout.other_video += 1,
            "audio" if r.sends && layout.audio.is_none() => {
                if let Some(pt) = &r.opus_pt {
                    r.section.stereo = r.fmtp.iter().any(|(p, params)| {
                        p == pt && params.split(';').any(|kv| kv.trim().eq_ignore_ascii_case("stereo=1"))
                    });
                    layout.audio = Some(r.section);
                }
            }
            "datachannel" => layout.data_channel = true,
            _ => {}
        }
    }
    if layout.cameras.is_empty() {
        let why = if layout.other_video > 0 {
            "its video sections offer no H.264 (a=rtpmap:… H264/90000) or do not send (sendonly/sendrecv)"
        } else {
            "it has no video section (m=video): a train needs at least one camera"
        };
        return Err(OfferError::NoH264(why.into()));
    }
    if layout.cameras.len() > max_cameras {
        return Err(OfferError::TooManyCameras { found: layout.cameras.len(), max: max_cameras });
    }
    Ok(layout)
}

fn clip(line: &str) -> String {
    line.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like aiortc's offer: two H.264 senders (the second also VP8), Opus stereo, a data
    /// channel.
    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2 3\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 97 98\r\nc=IN IP4 0.0.0.0\r\na=sendonly\r\na=mid:0\r\na=msid:s1 cam-a\r\n\
a=rtpmap:97 H264/90000\r\na=fmtp:97 packetization-mode=1;profile-level-id=42e01f\r\na=rtpmap:98 rtx/90000\r\n\
a=ssrc:111 cname:x\r\na=ssrc:112 cname:x\r\na=framerate:29.97\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 99\r\na=sendrecv\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:99 H264/90000\r\n\
a=ssrc:222 cname:x\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\na=mid:2\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;stereo=1\r\na=ptime:20\r\na=ssrc:333 cname:x\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\na=sctp-port:5000\r\n";

    #[test]
    fn reads_cameras_audio_and_data_channel() {
        let l = read(OFFER, 16).expect("valid");
        assert_eq!(l.cameras.len(), 2);
        assert_eq!(l.cameras[0].mid.as_deref(), Some("0"));
        assert_eq!(l.cameras[0].ssrcs, [111, 112]);
        assert_eq!(l.cameras[0].track_id.as_deref(), Some("cam-a"));
        assert_eq!(l.cameras[0].framerate, Some(30));
        assert_eq!(l.cameras[1].ssrcs, [222]);
        let audio = l.audio.expect("audio");
        assert!(audio.stereo);
        assert_eq!((audio.ssrcs.as_slice(), audio.ptime), ([333].as_slice(), Some(20)));
        assert!(l.data_channel);
    }

    #[test]
    fn refuses_what_cannot_publish() {
        let err = |sdp: &str| read(sdp, 16).expect_err(sdp);
        assert!(matches!(err("hello"), OfferError::NotSdp(_)));
        assert!(matches!(err(""), OfferError::NotSdp(_)));
        assert!(matches!(err("v=0\r\nnot sdp\r\n"), OfferError::NotSdp(_)));
        assert!(matches!(err("v=0\r\ns=-\r\n"), OfferError::NotSdp(_)));
        let audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(matches!(err(audio_only), OfferError::NoH264(m) if m.contains("no video section")));
        let vp8 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert!(matches!(err(vp8), OfferError::NoH264(m) if m.contains("no H.264")));
        let recvonly = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly\r\na=rtpmap:96 H264/90000\r\n";
        assert!(matches!(err(recvonly), OfferError::NoH264(_)));
        assert_eq!(read(OFFER, 1), Err(OfferError::TooManyCameras { found: 2, max: 1 }));
    }
}
