//! Finding and reaching the server: discovery over HTTP, a QUIC client that pins the server's
//! certificate by its SHA-256.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Where the QUIC endpoint is and which certificate it must present.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub sha256: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("bad server URL {0:?}: expected http://HOST:PORT")]
    BadUrl(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("discovery request failed: {0}")]
    Http(String),
    #[error("discovery answer is not what was expected: {0}")]
    Answer(String),
    #[error("bad SHA-256 fingerprint: {0}")]
    Fingerprint(String),
}

/// Parse `AB:CD:…` or plain hex.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], ConnectError> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex).map_err(|e| ConnectError::Fingerprint(e.to_string()))?;
    bytes.try_into().map_err(|_| ConnectError::Fingerprint(format!("{s:?} is not 32 bytes")))
}

/// `GET {server}/api/quic/certificate`: the QUIC port (same host) and the certificate hash.
pub async fn discover(server: &str) -> Result<Target, ConnectError> {
    let uri: hyper::Uri = format!("{}/api/quic/certificate", server.trim_end_matches('/'))
        .parse()
        .map_err(|_| ConnectError::BadUrl(server.into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(ConnectError::BadUrl(server.into()));
    }
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::BadUrl(server.into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.get(uri))
        .await
        .map_err(|_| ConnectError::Http("timed out".into()))?
        .map_err(|e| ConnectError::Http(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(ConnectError::Http(format!("status {}", resp.status())));
    }
    let body = resp.into_body().collect().await.map_err(|e| ConnectError::Http(e.to_string()))?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ConnectError::Answer(e.to_string()))?;
    let port = v["quic_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| ConnectError::Answer("no quic_port".into()))?;
    let sha = v["sha256"].as_str().ok_or_else(|| ConnectError::Answer("no sha256".into()))?;
    let addr = resolve(&host, port)?;
    Ok(Target { addr, sha256: parse_fingerprint(sha)? })
}

pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, ConnectError> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConnectError::Resolve(format!("{host}:{port}")))
}

/// Accepts exactly one certificate: the one whose DER hashes to the pinned SHA-256. Signatures
/// are still verified, so the peer must hold the certificate's key.
#[derive(Debug)]
struct Pinned {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A client endpoint on an ephemeral port of the right address family.
pub fn endpoint(server: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let bind: SocketAddr =
        if server.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }.map_err(std::io::Error::other)?;
    quinn::Endpoint::client(bind)
}

/// Client config pinned to `sha256`, with the transport settings the server expects.
pub fn client_config(sha256: [u8; 32], idle: Duration) -> anyhow::Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { sha256, provider }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![railcast_protocol::ALPN.to_vec()];
    let mut cfg = quinn::ClientConfig::new(Arc::new(quinn::crypto::rustls::QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle)?))
        .keep_alive_interval(Some(Duration::from_secs(1)))
        .initial_mtu(1280)
        .datagram_send_buffer_size(4 << 20);
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let colon = "AB:".repeat(31) + "AB";
        assert_eq!(parse_fingerprint(&colon).expect("ok"), [0xab; 32]);
        assert_eq!(parse_fingerprint(&"ab".repeat(32)).expect("ok"), [0xab; 32]);
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint("zz").is_err());
    }
}
