//! A WebTransport remote control (web-transport-quinn's client, pinning the certificate hashes
//! `GET /api/webtransport` publishes, as the console does with `serverCertificateHashes`): it
//! opens the one bidirectional stream, sends a `ping` as its first message, and records events,
//! datagrams and stream packets in a [`crate::ws::Log`] like the other clients.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::ws::{Client, Log, Outbox, Recorder};
use crate::Server;

pub use web_transport_quinn::{ClientError, Session};

/// What `GET /api/webtransport` says, as the admin.
pub async fn info(server: &Server) -> Value {
    info_as(server, server.tokens.get("admin").map(String::as_str)).await
}

/// What `GET /api/webtransport` says, asked with `token`.
pub async fn info_as(server: &Server, token: Option<&str>) -> Value {
    let (status, v) = crate::api_as(token, "GET", &server.url("/api/webtransport"), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The certificate hashes the API publishes now.
pub async fn hashes(server: &Server) -> Vec<String> {
    hashes_as(server, server.tokens.get("admin").map(String::as_str)).await
}

/// The certificate hashes the API publishes now, asked with `token`.
pub async fn hashes_as(server: &Server, token: Option<&str>) -> Vec<String> {
    info_as(server, token).await["certificate_hashes"]
        .as_array()
        .expect("certificate_hashes")
        .iter()
        .map(|h| h.as_str().expect("hex").to_owned())
        .collect()
}

/// The session URL of a remote control with `token` (none: no token at all), at `path`.
pub fn url_as(server: &Server, rc: &str, token: Option<&str>, path: &str) -> String {
    let addr = server.webtransport.as_deref().expect("WebTransport is enabled");
    let port = addr.rsplit(':').next().expect("port");
    match token {
        Some(t) => format!("https://127.0.0.1:{port}{path}?remote_control_id={rc}&access_token={t}"),
        None => format!("https://127.0.0.1:{port}{path}?remote_control_id={rc}"),
    }
}

/// The session URL of a remote control, as the admin.
pub fn url(server: &Server, rc: &str) -> String {
    url_as(server, rc, server.tokens.get("admin").map(String::as_str), "/wt")
}

/// Open a session at `url`, accepting only certificates with one of `hashes` (hex).
pub async fn open(url: &str, hashes: &[String]) -> Result<Session, ClientError> {
    open_limited(url, hashes, None).await
}

/// [`open`] from a client that takes UDP payloads of at most `max_udp_payload` bytes (its QUIC
/// `max_udp_payload_size`, at least 1,200): the server's QUIC packets to it, and so its
/// datagrams, are that much smaller, whatever MTU discovery finds on loopback.
///
/// Not quinn's `datagram_receive_buffer_size`: quinn 0.11 advertises that buffer as the largest
/// DATAGRAM frame it takes, but rejects, as a protocol violation ("oversized datagram"), a
/// frame whose payload plus 32 bytes of bookkeeping exceeds it, so a server that sends exactly
/// what was advertised (as railcast does, RFC 9221 §3) gets its connection aborted for
/// payloads in the last 23 bytes below the limit.
pub async fn open_limited(url: &str, hashes: &[String], max_udp_payload: Option<u16>) -> Result<Session, ClientError> {
    let hashes = hashes.iter().map(|h| hex::decode(h).expect("hex hash")).collect();
    let url = url::Url::parse(url).expect("url");
    client(hashes, max_udp_payload).connect(url).await
}

/// A web-transport-quinn client on its own loopback UDP socket that accepts only certificates
/// whose SHA-256 is one of `hashes` (what browsers do with `serverCertificateHashes`).
pub fn client(hashes: Vec<Vec<u8>>, max_udp_payload: Option<u16>) -> web_transport_quinn::Client {
    let mut endpoint_config = quinn::EndpointConfig::default();
    if let Some(max) = max_udp_payload {
        endpoint_config.max_udp_payload_size(max).expect("max_udp_payload_size of 1200 to 65527");
    }
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let runtime = quinn::default_runtime().expect("tokio runtime");
    let endpoint = quinn::Endpoint::new(endpoint_config, None, socket, runtime).expect("client endpoint");
    web_transport_quinn::Client::new(endpoint, client_config(hashes))
}

/// The QUIC client configuration of [`client`]: TLS 1.3, the WebTransport ALPN, and the
/// server's certificate pinned by `hashes` (SHA-256 of the end-entity certificate).
pub fn client_config(hashes: Vec<Vec<u8>>) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pinned = Arc::new(Pinned { hashes, provider: Arc::clone(&provider) });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(pinned)
        .with_no_client_auth();
    tls.alpn_protocols = vec![web_transport_quinn::ALPN.as_bytes().to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS config");
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// Certificate pinning by SHA-256 of the end-entity certificate; signatures checked as usual.
#[derive(Debug)]
struct Pinned {
    hashes: Vec<Vec<u8>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(end_entity.as_ref()).to_vec();
        if self.hashes.contains(&hash) {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Connect as the admin with the published hashes, send a `ping` first, record everything.
pub async fn connect(server: &Server, rc: &str) -> Client {
    let hashes = hashes(server).await;
    connect_url(&url(server, rc), &hashes).await.expect("webtransport session")
}

/// [`open`], then run the session as a recording client; its first message is a `ping`.
pub async fn connect_url(url: &str, hashes: &[String]) -> Result<Client, ClientError> {
    let session = open(url, hashes).await?;
    Ok(run(session).await)
}

/// Run an open session as a recording client: open the stream, send a `ping` on it, record.
pub async fn run(session: Session) -> Client {
    let (mut send, mut recv) = session.open_bi().await.expect("open the stream");
    send.write_all(b"{\"type\":\"ping\",\"t\":1}\n").await.expect("first message");
    let log = Arc::new(Mutex::new(Log::default()));
    let (out, mut out_rx) = mpsc::channel::<String>(16);
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let mut line = m.into_bytes();
            line.push(b'\n');
            if send.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    // Each unidirectional stream is read by a task of its own, its packet handed over here.
    let (uni_tx, mut uni_rx) = mpsc::unbounded_channel::<bytes::Bytes>();
    let l = Arc::clone(&log);
    let reader = tokio::spawn(async move {
        let mut rec = Recorder::default();
        let mut buf: Vec<u8> = Vec::new();
        let mut reading = true;
        let closed = loop {
            tokio::select! {
                // Events first: a datagram may overtake the `mapped_train_changed` written before it.
                biased;
                chunk = recv.read_chunk(64 * 1024, true), if reading => match chunk {
                    Ok(Some(c)) => {
                        buf.extend_from_slice(&c.bytes);
                        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = buf.drain(..=i).collect();
                            let text = std::str::from_utf8(&line[..i]).expect("server sent non-UTF-8");
                            rec.text(&l, text);
                        }
                    }
                    Ok(None) | Err(_) => reading = false,
                },
                Some(p) = uni_rx.recv() => {
                    l.lock().expect("lock").stream_packets += 1;
                    rec.binary(&l, p);
                }
                uni = session.accept_uni() => match uni {
                    Ok(mut s) => {
                        let tx = uni_tx.clone();
                        tokio::spawn(async move {
                            if let Ok(p) = s.read_to_end(70 * 1024).await {
                                let _ = tx.send(bytes::Bytes::from(p));
                            }
                        });
                    }
                    Err(e) => break e,
                },
                d = session.read_datagram() => match d {
                    Ok(d) => {
                        {
                            let mut log = l.lock().expect("lock");
                            log.datagrams += 1;
                            log.largest_video_message = log.largest_video_message.max(d.len());
                        }
                        rec.binary(&l, d);
                    }
                    Err(e) => break e,
                },
            }
        };
        // Events still buffered before the close.
        while let Ok(Some(c)) = recv.read_chunk(64 * 1024, true).await {
            buf.extend_from_slice(&c.bytes);
        }
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            if let Ok(text) = std::str::from_utf8(&line[..i]) {
                rec.text(&l, text);
            }
        }
        l.lock().expect("lock").closed = Some(close_of(&closed));
    });
    Client { log, out: Outbox::WebTransport(out), reader: Some(reader.abort_handle()) }
}

/// The HTTP status a refused session got (`None`: it was not refused by status, e.g. its
/// handshake failed), or the session.
pub fn refusal(result: &Result<Session, ClientError>) -> Option<u16> {
    match result {
        Err(ClientError::HttpError(web_transport_quinn::ConnectError::ErrorStatus(s))) => Some(s.as_u16()),
        Err(ClientError::HttpError(web_transport_quinn::ConnectError::ProtoError(
            web_transport_quinn::proto::ConnectError::WrongStatus(Some(s)),
        ))) => Some(s.as_u16()),
        _ => None,
    }
}

/// The code and reason a session was closed with (1006 and the error when not closed cleanly).
pub fn close_of(e: &web_transport_quinn::SessionError) -> (u16, String) {
    match e {
        web_transport_quinn::SessionError::WebTransportError(web_transport_quinn::WebTransportError::Closed(
            code,
            reason,
        )) => (u16::try_from(*code).unwrap_or(u16::MAX), reason.clone()),
        other => (1006, other.to_string()),
    }
}
