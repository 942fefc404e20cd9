//! Finding and reaching the server: discovery over HTTP(S), and a QUIC client that checks the
//! server's certificate one of three ways ([`Trust`]): against a CA (a file, or the system's
//! roots), against a SHA-256 fingerprint from the train's configuration, or against the
//! fingerprint discovery returned — trust on first use, for demos only (docs/security.md).

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
    #[error("CA certificates: {0}")]
    Ca(String),
}

/// How a train decides that the QUIC server it reached is railcast's.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Whatever fingerprint discovery returns: trust on first use, as safe as the path to the
    /// HTTP API. Over plain HTTP anyone on the path can substitute their own. Demo only.
    Discovered,
    /// The certificate whose DER has this SHA-256 (`--cert-sha256`), whatever discovery says.
    Pin([u8; 32]),
    /// A certificate for `server_name` issued by one of `roots` (`--ca`); `roots` also verify
    /// discovery over HTTPS. No `server_name`: the host of whichever server is being reached
    /// (several servers, no `--server-name`).
    Ca { roots: Arc<rustls::RootCertStore>, server_name: Option<String>, source: String },
}

impl Trust {
    /// The QUIC client configuration and the server name to send, given what discovery found
    /// (none with a fixed `--quic` address) and the host of the server being reached (the name
    /// a CA-issued certificate must carry when none was configured).
    pub fn quic(
        &self,
        discovered: Option<&Target>,
        idle: Duration,
        host: &str,
    ) -> anyhow::Result<(quinn::ClientConfig, String)> {
        match self {
            Trust::Discovered => {
                let target = discovered.ok_or_else(|| anyhow::anyhow!("no fingerprint: discovery did not run"))?;
                Ok((client_config(target.sha256, idle)?, "localhost".into()))
            }
            Trust::Pin(sha256) => Ok((client_config(*sha256, idle)?, "localhost".into())),
            Trust::Ca { roots, server_name, .. } => {
                Ok((ca_client_config(Arc::clone(roots), idle)?, server_name.as_deref().unwrap_or(host).to_owned()))
            }
        }
    }

    /// What a failed handshake with `host` should say about the check that refused it.
    pub fn describe(&self, host: &str) -> String {
        match self {
            Trust::Discovered => "the fingerprint discovery returned".into(),
            Trust::Pin(_) => "the configured --cert-sha256".into(),
            Trust::Ca { server_name, source, .. } => {
                format!("a certificate for {} issued by {source}", server_name.as_deref().unwrap_or(host))
            }
        }
    }
}

/// Roots to verify the server against: `system` for the operating system's trusted CAs, else a
/// PEM file of one or more CA certificates. Returns them and how to name them in messages.
pub fn load_roots(spec: &str) -> Result<(rustls::RootCertStore, String), ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    if spec == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
            return Err(ConnectError::Ca(format!("no system CA certificate found ({})", errors.join("; "))));
        }
        return Ok((roots, format!("the system's {added} trusted CAs")));
    }
    let pem = std::fs::read(spec).map_err(|e| ConnectError::Ca(format!("cannot read {spec}: {e}")))?;
    let certs = <CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConnectError::Ca(format!("{spec}: {e}")))?;
    for cert in certs {
        roots.add(cert).map_err(|e| ConnectError::Ca(format!("{spec}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ConnectError::Ca(format!("{spec}: no certificate found")));
    }
    Ok((roots, format!("the CA in {spec}")))
}

/// The host of a URL or of `HOST:PORT`, without IPv6 brackets.
pub fn host_of(s: &str) -> Option<String> {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Parse `AB:CD:…` or plain hex.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], ConnectError> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&hex).map_err(|e| ConnectError::Fingerprint(e.to_string()))?;
    bytes.try_into().map_err(|_| ConnectError::Fingerprint(format!("{s:?} is not 32 bytes")))
}

/// `GET {server}/api/quic/certificate`: the QUIC port (same host) and the certificate hash.
/// `https://` URLs are verified against the system's trusted CAs ([`discover_with`] takes others).
pub async fn discover(server: &str) -> Result<Target, ConnectError> {
    discover_with(server, None).await
}

/// [`discover`], verifying an `https://` server against `roots` (none: the system's CAs).
pub async fn discover_with(server: &str, roots: Option<Arc<rustls::RootCertStore>>) -> Result<Target, ConnectError> {
    let uri: hyper::Uri = format!("{}/api/quic/certificate", server.trim_end_matches('/'))
        .parse()
        .map_err(|_| ConnectError::BadUrl(server.into()))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(ConnectError::BadUrl(server.into())),
    };
    let host = uri
        .host()
        .ok_or_else(|| ConnectError::BadUrl(server.into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let get = async {
        if !https {
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<bytes::Bytes>>();
            return client.get(uri).await.map_err(|e| ConnectError::Http(e.to_string()));
        }
        let roots = match roots {
            Some(r) => r,
            None => Arc::new(load_roots("system")?.0),
        };
        https_get(&host, uri, roots).await
    };
    let resp = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .map_err(|_| ConnectError::Http("timed out".into()))??;
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

/// One GET over HTTPS (HTTP/1.1), the server's certificate verified against `roots` for `host`.
async fn https_get(
    host: &str,
    uri: hyper::Uri,
    roots: Arc<rustls::RootCertStore>,
) -> Result<hyper::Response<hyper::body::Incoming>, ConnectError> {
    let http = |e: &dyn std::fmt::Display| ConnectError::Http(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| http(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.to_owned()).map_err(|e| http(&e))?;
    let addr = resolve(host, uri.port_u16().unwrap_or(443))?;
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| http(&e))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.map_err(|e| http(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| http(&e))?;
    tokio::spawn(conn);
    let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| http(&e))?;
    sender.send_request(req).await.map_err(|e| http(&e))
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
    let tls = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { sha256, provider }))
        .with_no_client_auth();
    quic_config(tls, idle)
}

/// Client config that accepts a certificate chaining to one of `roots` (name, validity and
/// signatures checked by webpki), with the transport settings the server expects.
pub fn ca_client_config(roots: Arc<rustls::RootCertStore>, idle: Duration) -> anyhow::Result<quinn::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    quic_config(tls, idle)
}

fn quic_config(mut tls: rustls::ClientConfig, idle: Duration) -> anyhow::Result<quinn::ClientConfig> {
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

/// What a train's configuration says about the server's certificate (the simulator's flags, the
/// agent's `[server]` table).
#[derive(Debug, Clone, Copy)]
pub struct TrustOptions<'a> {
    /// The server's HTTP(S) API (discovery): one URL, or several separated by commas ([`server_list`]).
    pub server: &'a str,
    /// A fixed QUIC address (`HOST:PORT`) instead of discovery, or several separated by commas.
    pub quic: Option<&'a str>,
    /// A CA file, or `system`.
    pub ca: Option<&'a str>,
    /// The name the certificate must carry (default: the host of `quic`, else of `server`; with
    /// several servers, the host of the one being reached).
    pub server_name: Option<&'a str>,
    pub cert_sha256: Option<&'a str>,
}

/// How the server's certificate is checked: against a CA, a pinned fingerprint or (demo) the
/// fingerprint discovery returns, with a warning when that comes over plain HTTP.
pub fn choose_trust(o: TrustOptions<'_>) -> anyhow::Result<Trust> {
    if let Some(spec) = o.ca {
        let (roots, source) = load_roots(spec)?;
        let hosts = match o.quic {
            Some(quic) => server_list(quic)?
                .iter()
                .map(|q| host_of(q).ok_or_else(|| anyhow::anyhow!("the QUIC address must be HOST:PORT")))
                .collect::<anyhow::Result<Vec<_>>>()?,
            None => server_list(o.server)?
                .iter()
                .map(|s| host_of(s).ok_or_else(|| anyhow::anyhow!("the server must be a URL with a host")))
                .collect::<anyhow::Result<Vec<_>>>()?,
        };
        // One server: its host, as always. Several: the host of each, unless a name was given.
        let server_name = match (o.server_name, hosts.as_slice()) {
            (Some(name), _) => Some(name.to_owned()),
            (None, [host]) => Some(host.clone()),
            (None, _) => None,
        };
        match &server_name {
            Some(server_name) => tracing::info!(%server_name, "verifying the server's certificates against {source}"),
            None => tracing::info!(
                server_names = %hosts.join(","),
                "verifying each server's certificate (for its own host) against {source}"
            ),
        }
        return Ok(Trust::Ca { roots: Arc::new(roots), server_name, source });
    }
    if let Some(sha) = o.cert_sha256 {
        return Ok(Trust::Pin(parse_fingerprint(sha)?));
    }
    if o.quic.is_some() {
        anyhow::bail!(
            "a fixed QUIC address needs a CA or a certificate fingerprint: without discovery nothing says which \
             certificate to trust"
        );
    }
    let plain: Vec<String> = server_list(o.server)?.into_iter().filter(|s| !s.starts_with("https://")).collect();
    if !plain.is_empty() {
        tracing::warn!(
            server = %plain.join(","),
            "learning the QUIC certificate's fingerprint over plain HTTP (trust on first use): anyone on the path can \
             impersonate the server. Demo only; give a CA file, the system roots or the certificate's fingerprint \
             (docs/security.md)"
        );
    }
    Ok(Trust::Discovered)
}

/// The entries of a comma-separated server list (`--server`, `--quic`, the agent's `url` and
/// `quic`), trimmed, in order. An empty entry (`a,,b`, a trailing comma) or an empty list is an
/// error: a list is the order of failover, and a hole in it is a typo.
pub fn server_list(list: &str) -> anyhow::Result<Vec<String>> {
    let entries: Vec<String> = list.split(',').map(|e| e.trim().to_owned()).collect();
    if entries.iter().all(String::is_empty) {
        anyhow::bail!("the server list is empty: give at least one server");
    }
    if let Some(n) = entries.iter().position(String::is_empty) {
        anyhow::bail!("the server list {list:?} has an empty entry (number {}): remove the extra comma", n + 1);
    }
    Ok(entries)
}

/// Where to connect: the fixed QUIC addresses (resolved once, here, from the train's own
/// configuration), or discovery through the `server` URLs. Both take a comma-separated list
/// ([`server_list`]); one entry gives a plain [`Fixed`](crate::session::Source::Fixed) or
/// [`Discover`](crate::session::Source::Discover), several an
/// [`Any`](crate::session::Source::Any) tried in this order (failover).
pub fn source(server: &str, quic: Option<&str>) -> anyhow::Result<crate::session::Source> {
    use crate::session::{Server, Source};
    let servers = match quic {
        Some(quic) => server_list(quic)?
            .into_iter()
            .map(|q| Ok(Server { source: Source::Fixed(quic_addr(&q)?), name: q }))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => server_list(server)?
            .into_iter()
            .map(|url| {
                if !(url.starts_with("http://") || url.starts_with("https://")) || host_of(&url).is_none() {
                    return Err(ConnectError::BadUrl(url).into());
                }
                Ok(Server { source: Source::Discover(url.clone()), name: url })
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    Ok(match <[Server; 1]>::try_from(servers) {
        Ok([one]) => one.source,
        Err(several) => Source::Any(several),
    })
}

/// A fixed QUIC address, `HOST:PORT` (`[V6]:PORT`), resolved now.
fn quic_addr(quic: &str) -> anyhow::Result<SocketAddr> {
    let (host, port) = quic.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("the QUIC address must be HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| anyhow::anyhow!("bad QUIC port in {quic:?}"))?;
    Ok(resolve(host.trim_start_matches('[').trim_end_matches(']'), port)?)
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

    #[test]
    fn hosts() {
        assert_eq!(host_of("http://relay.example:8080/").as_deref(), Some("relay.example"));
        assert_eq!(host_of("https://[::1]:8443").as_deref(), Some("::1"));
        assert_eq!(host_of("10.0.0.1:4433").as_deref(), Some("10.0.0.1"));
        assert_eq!(host_of("relay.example").as_deref(), Some("relay.example"));
        assert_eq!(host_of("http://:80"), None);
    }

    #[test]
    fn server_lists() {
        assert_eq!(server_list("http://a:8080").expect("one"), ["http://a:8080"]);
        assert_eq!(server_list(" http://a:8080 ,http://b:8081\t").expect("two"), ["http://a:8080", "http://b:8081"]);
        for empty in ["", " ", ",", " , "] {
            let err = server_list(empty).expect_err("empty list").to_string();
            assert!(err.contains("empty: give at least one"), "{empty:?}: {err}");
        }
        for hole in ["a,,b", "a,", ",a", "a, ,b"] {
            let err = server_list(hole).expect_err("empty entry").to_string();
            assert!(err.contains("empty entry"), "{hole:?}: {err}");
        }
        assert!(server_list("a,,b").expect_err("hole").to_string().contains("number 2"));
    }

    #[test]
    fn sources() {
        use crate::session::Source;
        // One entry: the plain source, as before lists existed.
        let one = source("http://127.0.0.1:8080", None).expect("one URL");
        assert!(matches!(&one, Source::Discover(u) if u == "http://127.0.0.1:8080"), "{one:?}");
        let one = source("ignored", Some("127.0.0.1:4433")).expect("one QUIC address");
        assert!(matches!(one, Source::Fixed(a) if a == "127.0.0.1:4433".parse().expect("addr")), "{one:?}");
        // Several: in order, named as written, QUIC addresses resolved.
        let Source::Any(urls) = source("http://127.0.0.1:8080, https://localhost:8443", None).expect("two") else {
            panic!("a list")
        };
        let names: Vec<&str> = urls.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["http://127.0.0.1:8080", "https://localhost:8443"]);
        assert!(matches!(&urls[1].source, Source::Discover(u) if u == "https://localhost:8443"));
        let Source::Any(quic) = source("", Some("127.0.0.1:4433,[::1]:4434 ,127.0.0.1:4435")).expect("three") else {
            panic!("a list")
        };
        let addrs: Vec<String> = quic
            .iter()
            .map(|s| match s.source {
                Source::Fixed(a) => a.to_string(),
                _ => panic!("fixed"),
            })
            .collect();
        assert_eq!(addrs, ["127.0.0.1:4433", "[::1]:4434", "127.0.0.1:4435"]);
        assert_eq!(quic[1].name, "[::1]:4434");
        // Mistakes are refused before any connection.
        assert!(source("http://127.0.0.1:8080,", None).expect_err("hole").to_string().contains("empty entry"));
        assert!(source("x", Some(" ")).expect_err("empty").to_string().contains("empty"));
        assert!(source("x", Some("127.0.0.1:4433,127.0.0.1")).expect_err("no port").to_string().contains("HOST:PORT"));
        assert!(source("x", Some("127.0.0.1:99999")).expect_err("bad port").to_string().contains("bad QUIC port"));
        let err = source("http://127.0.0.1:8080,127.0.0.1:8081", None).expect_err("not a URL").to_string();
        assert!(err.contains("\"127.0.0.1:8081\""), "{err}");
    }
}
