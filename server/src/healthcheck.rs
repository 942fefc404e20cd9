//! `railcast-server healthcheck`: asks the server running beside it for `GET /healthz`, for a
//! container's `HEALTHCHECK` (the image has no curl). It reads the same configuration as the
//! server, connects to the HTTP listener over loopback (the configured IP, or loopback of its
//! family when that is unspecified; never a name), speaks TLS when `http_tls_cert` is set (the
//! certificate is not verified: the peer is this host's own server), and exits 0 on a 200.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Cli, Config, HealthcheckArgs};

/// Why the server is not healthy, as the one line on stderr says it.
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("TLS with {addr}: {source}")]
    Tls { addr: SocketAddr, source: std::io::Error },
    #[error("{addr}: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("no answer from {addr} within {timeout}")]
    Timeout { addr: SocketAddr, timeout: crate::config::Dur },
    #[error("{url} answered {status:?}")]
    Status { url: String, status: String },
}

/// Run the check: exit 0 when healthy, 1 with one line on stderr otherwise.
pub async fn main(cli: &Cli, args: &HealthcheckArgs) -> ExitCode {
    match check(cli, args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("railcast-server healthcheck: {e}");
            ExitCode::from(1)
        }
    }
}

/// `GET args.path` on the configured HTTP listener; `Ok` on a 200.
pub async fn check(cli: &Cli, args: &HealthcheckArgs) -> Result<(), Unhealthy> {
    let config = Config::load(cli)?;
    let addr = target(config.http_addr);
    let tls = Config::path(&config.http_tls_cert).is_some();
    let timeout = args.timeout;
    let status = tokio::time::timeout(timeout.0, fetch(addr, tls, &args.path))
        .await
        .map_err(|_| Unhealthy::Timeout { addr, timeout })??;
    if status.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        let scheme = if tls { "https" } else { "http" };
        Err(Unhealthy::Status { url: format!("{scheme}://{addr}{}", args.path), status })
    }
}

/// Where to connect: the listener's address, with an unspecified IP (`0.0.0.0`, `::`) replaced
/// by loopback of the same family.
pub fn target(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The status line of `GET path`.
async fn fetch(addr: SocketAddr, tls: bool, path: &str) -> Result<String, Unhealthy> {
    let tcp = TcpStream::connect(addr).await.map_err(|source| Unhealthy::Connect { addr, source })?;
    if !tls {
        return request(tcp, addr, path).await;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Unhealthy::Tls { addr, source: std::io::Error::other(e) })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|source| Unhealthy::Tls { addr, source })?;
    request(stream, addr, path).await
}

async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    addr: SocketAddr,
    path: &str,
) -> Result<String, Unhealthy> {
    let io = |source| Unhealthy::Io { addr, source };
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: railcast-healthcheck\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    // The status line is all that matters; read until its end (or 1 KiB).
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = s.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    Ok(text.lines().next().unwrap_or("").trim().to_owned())
}

/// Accepts any certificate (the peer is this host's own listener, found by address), but still
/// checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:8080", "[::1]:8080"),
            ("10.1.2.3:80", "10.1.2.3:80"),
            ("[::1]:9", "[::1]:9"),
        ];
        for (listen, expected) in cases {
            assert_eq!(target(listen.parse().expect("addr")).to_string(), expected, "{listen}");
        }
    }
}
