//! The QUIC server certificate: loaded from PEM files, or generated at start-up.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate chain and key the QUIC endpoint presents.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The certificate chain as PEM (what trains can pin or trust).
    pub pem: String,
    /// Whether it was generated at start-up.
    pub self_signed: bool,
}

impl Identity {
    /// A fresh self-signed certificate for `names` (DNS names or IP addresses).
    pub fn self_signed(names: &[String]) -> Result<Self, TlsError> {
        let cert = rcgen::generate_simple_self_signed(names.to_vec())?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));
        Ok(Self { chain: vec![cert.cert.der().clone()], key, pem: cert.cert.pem(), self_signed: true })
    }

    /// Load a PEM certificate chain and a PEM private key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read =
            |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.display().to_string(), source });
        let pem_err = |p: &Path, reason: String| TlsError::Pem { path: p.display().to_string(), reason };
        let cert_pem = read(cert)?;
        let chain = rustls::pki_types::pem::PemObject::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<CertificateDer<'static>>, _>>()
            .map_err(|e| pem_err(cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem_err(cert, "no certificate found".into()));
        }
        let key_pem = read(key)?;
        let key = <PrivateKeyDer<'static> as rustls::pki_types::pem::PemObject>::from_pem_slice(&key_pem)
            .map_err(|e| pem_err(key, e.to_string()))?;
        Ok(Self { chain, key, pem: String::from_utf8_lossy(&cert_pem).into_owned(), self_signed: false })
    }

    /// The private key (the WebTransport endpoint presents the same certificate).
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// SHA-256 of the end-entity certificate (DER), as colon-separated upper-case hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }

    /// A rustls server config offering only railcast's ALPN.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![railcast_protocol::ALPN.to_vec()];
        Ok(cfg)
    }
}

pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_round_trips_through_pem() {
        let id = Identity::self_signed(&["localhost".into()]).expect("generate");
        let dir = std::env::temp_dir().join(format!("railcast-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("c.pem"), &id.pem).expect("write");
        assert!(matches!(
            Identity::from_files(&dir.join("c.pem"), &dir.join("missing.pem")),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(Identity::from_files(&dir.join("c.pem"), &dir.join("c.pem")), Err(TlsError::Pem { .. })));
        assert_eq!(id.fingerprint().len(), 32 * 3 - 1);
    }
}
