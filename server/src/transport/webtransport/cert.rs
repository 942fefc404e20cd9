//! The WebTransport endpoint's certificates.
//!
//! Without a configured certificate, browsers accept a self-signed one only through
//! `serverCertificateHashes`, which requires ECDSA P-256 and a whole validity (back-dating
//! included) of at most 14 days. [`Certificates`] holds the one served now and the next one,
//! generated a rotation ahead so that the console can learn its hash before it is served; every
//! [`Certificates::rotate`] makes the next one current. With a configured (CA-issued) certificate
//! it holds that one and publishes no hashes.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use crate::tls::Identity;

/// A generated certificate is valid from this long before it is first served…
pub const BACKDATE: Duration = Duration::from_secs(3600);
/// …to this long after.
pub const VALIDITY: Duration = Duration::from_secs(10 * 24 * 3600);

/// The longest whole validity `serverCertificateHashes` accepts.
pub const MAX_WHOLE_VALIDITY: Duration = Duration::from_secs(14 * 24 * 3600);

/// One certificate and its key.
#[derive(Debug)]
pub struct Cert {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the end-entity certificate (DER), lower-case hex.
    pub sha256: String,
    /// The end of its validity (`None` when a configured certificate cannot be read for it).
    pub not_after: Option<SystemTime>,
}

impl Cert {
    /// A fresh self-signed ECDSA P-256 certificate for `names`, valid from `serve_from` −
    /// [`BACKDATE`] to `serve_from` + [`VALIDITY`].
    pub fn generate(names: &[String], serve_from: SystemTime) -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "railcast webtransport");
        // Whole seconds: what the certificate holds.
        let start = serve_from.checked_sub(BACKDATE).unwrap_or(SystemTime::UNIX_EPOCH);
        let start = SystemTime::UNIX_EPOCH
            + Duration::from_secs(start.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        let end = start + BACKDATE + VALIDITY;
        params.not_before = time::OffsetDateTime::from(start);
        params.not_after = time::OffsetDateTime::from(end);
        let cert = params.self_signed(&key)?;
        let der = cert.der().clone();
        Ok(Self {
            sha256: sha256_hex(&der),
            chain: vec![der],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after: Some(end),
        })
    }

    /// The configured certificate (`tls_cert`, `tls_key`).
    pub fn configured(identity: &Identity) -> Self {
        let der = identity.chain.first().cloned().unwrap_or_else(|| CertificateDer::from(Vec::new()));
        Self {
            sha256: sha256_hex(&der),
            not_after: not_after(&der),
            chain: identity.chain.clone(),
            key: identity.key().clone_key(),
        }
    }

    /// A QUIC server config presenting this certificate with the HTTP/3 ALPN.
    pub fn server_config(&self, transport: Arc<quinn::TransportConfig>) -> Result<quinn::ServerConfig, CertError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        tls.alpn_protocols = vec![web_transport_quinn::ALPN.as_bytes().to_vec()];
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| CertError::Quic(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        config.transport_config(transport);
        Ok(config)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate a WebTransport certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid WebTransport certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("WebTransport TLS config: {0}")]
    Quic(String),
}

/// SHA-256 of `der`, lower-case hex (what `serverCertificateHashes` takes).
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The end of a certificate's validity, read from its DER.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let secs = cert.validity().not_after.timestamp();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// What is served now and what comes next.
#[derive(Debug)]
struct Pair {
    current: Arc<Cert>,
    /// Generated certificates only.
    next: Option<Arc<Cert>>,
}

/// The endpoint's certificates (see the module docs).
#[derive(Debug)]
pub struct Certificates {
    /// `None`: a configured certificate, never rotated.
    names: Option<Vec<String>>,
    rotation: Duration,
    pair: RwLock<Pair>,
}

impl Certificates {
    /// Generated certificates for `names`, rotated every `rotation`.
    pub fn generated(names: &[String], rotation: Duration) -> Result<Self, CertError> {
        let now = SystemTime::now();
        let current = Arc::new(Cert::generate(names, now)?);
        let next = Arc::new(Cert::generate(names, now + rotation)?);
        Ok(Self { names: Some(names.to_vec()), rotation, pair: RwLock::new(Pair { current, next: Some(next) }) })
    }

    /// The configured certificate.
    pub fn configured(identity: &Identity) -> Self {
        Self {
            names: None,
            rotation: Duration::MAX,
            pair: RwLock::new(Pair { current: Arc::new(Cert::configured(identity)), next: None }),
        }
    }

    pub fn self_signed(&self) -> bool {
        self.names.is_some()
    }

    pub fn rotation(&self) -> Option<Duration> {
        self.names.as_ref().map(|_| self.rotation)
    }

    /// The certificate served now.
    pub fn current(&self) -> Arc<Cert> {
        Arc::clone(&self.pair.read().unwrap_or_else(std::sync::PoisonError::into_inner).current)
    }

    /// The hashes a browser may pin: the current certificate's, then the next one's. Empty for a
    /// configured certificate (browsers verify it against their roots).
    pub fn hashes(&self) -> Vec<String> {
        if self.names.is_none() {
            return Vec::new();
        }
        let pair = self.pair.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::iter::once(&pair.current).chain(&pair.next).map(|c| c.sha256.clone()).collect()
    }

    /// Make the next certificate current and generate the one after it, to be served from one
    /// rotation on. Returns the new current one; `None` for a configured certificate.
    pub fn rotate(&self) -> Result<Option<Arc<Cert>>, CertError> {
        let Some(names) = &self.names else { return Ok(None) };
        let after = Arc::new(Cert::generate(names, SystemTime::now() + self.rotation)?);
        let mut pair = self.pair.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next = pair.next.replace(after);
        if let Some(next) = next {
            pair.current = next;
        }
        Ok(Some(Arc::clone(&pair.current)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_suit_server_certificate_hashes() {
        let now = SystemTime::now();
        let cert = Cert::generate(&["localhost".into(), "127.0.0.1".into()], now).expect("generate");
        let (_, x509) = x509_parser::parse_x509_certificate(&cert.chain[0]).expect("parse");
        // ECDSA P-256 key, signed with ECDSA-SHA256.
        let spki = x509.public_key();
        assert_eq!(spki.algorithm.algorithm, x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY);
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).expect("curve");
        assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
        assert_eq!(x509.signature_algorithm.algorithm, x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256);
        // Whole validity at most 14 days, back-dating included, and valid now.
        let v = x509.validity();
        let whole = (v.not_after.timestamp() - v.not_before.timestamp()) as u64;
        assert!(whole <= MAX_WHOLE_VALIDITY.as_secs(), "whole validity {whole} s");
        assert_eq!(whole, (BACKDATE + VALIDITY).as_secs());
        let unix = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs() as i64;
        assert!(v.not_before.timestamp() <= unix(now) && unix(now) < v.not_after.timestamp());
        assert_eq!(not_after(&cert.chain[0]), cert.not_after);
        assert_eq!(cert.sha256, sha256_hex(&cert.chain[0]));
        assert_eq!(cert.sha256.len(), 64);
    }

    #[test]
    fn rotation_serves_the_published_next_certificate() {
        let certs = Certificates::generated(&["localhost".into()], Duration::from_secs(60)).expect("generate");
        let before = certs.hashes();
        assert_eq!(before.len(), 2);
        assert_ne!(before[0], before[1]);
        let current = certs.rotate().expect("rotate").expect("generated");
        assert_eq!(current.sha256, before[1], "the next certificate becomes current");
        let after = certs.hashes();
        assert_eq!(after[0], before[1]);
        assert_ne!(after[1], before[0]);
        // The next one is valid while it will be served: from its rotation on.
        let next = certs.pair.read().expect("lock").next.clone().expect("next");
        let served_until = SystemTime::now() + 2 * Duration::from_secs(60);
        assert!(next.not_after.expect("validity") > served_until);
    }
}
