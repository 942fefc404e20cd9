//! Test certificates and an HTTPS client: a [`TestCa`] (rcgen) that issues server certificates,
//! and [`https_get`], which trusts only the CA it is given and reports the certificate the server
//! presented, for tests of the server's HTTPS listener and of the trains' CA verification.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

/// A certificate authority made for one test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("spki_sha256", &self.spki_sha256_base64()).finish_non_exhaustive()
    }
}

/// A server certificate issued by a [`TestCa`].
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, then the CA's (a "full chain", as a server should present it).
    pub chain_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl TestCa {
    /// A CA named `name` (its common name).
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Write the CA certificate to `dir/file`.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.pem()).expect("write CA");
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Issued {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("names");
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().copied().unwrap_or("server"));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("issue");
        Issued { chain_pem: cert.pem() + &self.cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// Base64 SHA-256 of the CA's SubjectPublicKeyInfo: Chromium's
    /// `--ignore-certificate-errors-spki-list` takes it for any certificate of the chain the server
    /// presents (so the server must send the CA's certificate too, as [`Issued::chain_pem`] has it).
    pub fn spki_sha256_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(self.key.public_key_der()))
    }
}

impl Issued {
    /// Write the chain and the key as `dir/STEM.pem` and `dir/STEM.key`.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert, &self.chain_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }

    /// SHA-256 of the certificate, colon-separated upper-case hex (as the server prints it).
    pub fn sha256(&self) -> String {
        colon_hex(&Sha256::digest(&self.der))
    }
}

pub fn colon_hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// What an HTTPS server answered, and with which certificate.
#[derive(Debug)]
pub struct HttpsAnswer {
    pub status: u16,
    pub body: String,
    /// SHA-256 of the end-entity certificate it presented ([`colon_hex`]).
    pub peer_sha256: String,
    /// The protocol negotiated by ALPN.
    pub alpn: Option<String>,
}

/// A TLS connection to `host:port` (ALPN http/1.1) trusting only `ca_pem`, `host` as the server
/// name. `Err` says why the connection or the handshake failed.
pub async fn tls_connect(
    host: &str,
    port: u16,
    ca_pem: &str,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in <CertificateDer<'static> as rustls::pki_types::pem::PemObject>::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp).await.map_err(|e| e.to_string())
}

/// `GET url` over HTTPS (HTTP/1.1), trusting only `ca_pem`; the server name is the URL's host.
/// `Err` says why the connection or the handshake failed.
pub async fn https_get(url: &str, ca_pem: &str) -> Result<HttpsAnswer, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let host = uri.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let stream = tls_connect(&host, uri.port_u16().unwrap_or(443), ca_pem).await?;
    let (_, session) = stream.get_ref();
    let peer_sha256 =
        session.peer_certificates().and_then(|c| c.first()).map(|c| colon_hex(&Sha256::digest(c))).unwrap_or_default();
    let alpn = session.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, uri.authority().map(ToString::to_string).unwrap_or_default())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(HttpsAnswer { status, body: String::from_utf8_lossy(&body).into_owned(), peer_sha256, alpn })
}
