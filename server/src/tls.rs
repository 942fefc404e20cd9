//! Certificates: the QUIC server's ([`Identity`]: loaded from PEM files, or generated at
//! start-up) and, when configured, the HTTP listener's ([`HttpTls`]: PEM files re-read on SIGHUP).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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

/// The HTTP listener's TLS (`http_tls_cert`, `http_tls_key`): the certificate chain and key in
/// force, which [`HttpTls::reload`] replaces from the same files. Each new connection takes the
/// one in force as it is accepted; connections already open keep theirs.
pub struct HttpTls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<rustls::ServerConfig>, String)>,
}

impl std::fmt::Debug for HttpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTls").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

impl HttpTls {
    /// Load `cert` (PEM chain, end-entity first) and `key` (PEM); they must match.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let current = Self::read(cert, key)?;
        Ok(Self { cert: cert.to_owned(), key: key.to_owned(), current: RwLock::new(current) })
    }

    fn read(cert: &Path, key: &Path) -> Result<(Arc<rustls::ServerConfig>, String), TlsError> {
        let id = Identity::from_files(cert, key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // TLS 1.2 too: reverse proxies and older tools in front of the console may need it.
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(id.chain.clone(), id.key.clone_key())?;
        // The accept loop speaks HTTP/1.1 only (the WebSocket upgrade needs it).
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok((Arc::new(cfg), id.fingerprint()))
    }

    /// Re-read the files. On success new connections use the new certificate, and its
    /// fingerprint is returned; on error the one in force stays.
    pub fn reload(&self) -> Result<String, TlsError> {
        let next = Self::read(&self.cert, &self.key)?;
        let fp = next.1.clone();
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(fp)
    }

    /// The rustls configuration in force, for one new connection.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).0)
    }

    /// SHA-256 of the end-entity certificate in force.
    pub fn fingerprint(&self) -> String {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
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

    #[test]
    fn http_tls_reload_keeps_the_old_certificate_on_a_bad_file() {
        let dir = std::env::temp_dir().join(format!("railcast-http-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let write = |names: &[&str]| {
            let c = rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("generate");
            std::fs::write(&cert, c.cert.pem()).expect("write");
            std::fs::write(&key, c.key_pair.serialize_pem()).expect("write");
            fingerprint(c.cert.der())
        };
        let first = write(&["a.test"]);
        let tls = HttpTls::load(&cert, &key).expect("load");
        assert_eq!(tls.fingerprint(), first);
        assert_eq!(tls.config().alpn_protocols, vec![b"http/1.1".to_vec()]);
        let second = write(&["b.test"]);
        assert_eq!(tls.reload().expect("reload"), second);
        assert_eq!(tls.fingerprint(), second);
        // A key that does not match the certificate: refused, the second stays.
        let other = rcgen::generate_simple_self_signed(vec!["c.test".to_owned()]).expect("generate");
        std::fs::write(&key, other.key_pair.serialize_pem()).expect("write");
        assert!(tls.reload().is_err());
        std::fs::write(&cert, "not a certificate").expect("write");
        assert!(tls.reload().is_err());
        assert_eq!(tls.fingerprint(), second);
    }
}
