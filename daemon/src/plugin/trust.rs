//! What HTTPS egress trusts: the operating system's trust store, plus a plugin's own `ca_file`.
//!
//! The OS store is read once per process with `rustls-native-certs` (on Linux the distribution
//! bundle, e.g. `/etc/ssl/certs`; `SSL_CERT_FILE` / `SSL_CERT_DIR` replace it); an `amqps://`
//! broker connection without `[broker.tls] ca_file` trusts the same store. It is used instead of the built-in
//! Mozilla roots (`webpki-roots`), so that an operator who removes or adds a CA is obeyed; only
//! when the OS store holds no certificate at all does egress fall back to the built-in roots,
//! saying so in a warning.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The roots one plugin's HTTPS requests are verified against, and the TLS client
/// configuration built from them on first use.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// CA certificates from the plugin's `ca_file`, trusted besides the OS store.
    extra: Vec<CertificateDer<'static>>,
    config: OnceLock<Option<Arc<rustls::ClientConfig>>>,
}

/// Two trusts are the same if they add the same certificates to the OS store.
impl PartialEq for Trust {
    fn eq(&self, other: &Self) -> bool {
        self.extra == other.extra
    }
}

impl Trust {
    /// The OS trust store plus the CA certificates of the PEM file at `path`. Errors name the
    /// file: missing or unreadable, no certificate in it, or one that cannot be a trust anchor.
    pub fn with_ca_file(path: &Path) -> Result<Self, String> {
        Ok(Self {
            extra: load_ca_file(path)?,
            config: OnceLock::new(),
        })
    }

    /// The TLS client configuration: ring, safe default protocol versions, these roots.
    /// `None` only if rustls refuses the configuration (it does not with ring).
    pub fn client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.config
            .get_or_init(|| {
                let mut roots = system_roots().clone();
                roots.add_parsable_certificates(self.extra.iter().cloned());
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .ok()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(config))
            })
            .clone()
    }
}

/// The OS trust store, read once; the built-in Mozilla roots if it holds no certificate.
pub fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "OS trust store: a certificate source could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                "the OS trust store holds no certificate (install ca-certificates, or set \
                 SSL_CERT_FILE): TLS (HTTPS egress, amqps:// without a ca_file) falls back to \
                 the built-in Mozilla roots"
            );
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        } else {
            tracing::debug!(added, ignored, "HTTPS egress trusts the OS trust store");
        }
        roots
    })
}

/// The certificates of a PEM file, each checked to be usable as a trust anchor.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    let mut check = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        check.add(cert.clone()).map_err(|e| {
            format!(
                "{shown}: certificate {} of {} cannot be a CA: {e}",
                i + 1,
                certs.len()
            )
        })?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("CA").pem()
    }

    #[test]
    fn a_ca_file_must_hold_usable_pem_certificates() {
        let dir = tempfile::tempdir().expect("dir");
        let write = |name: &str, text: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let good = write("ca.pem", format!("{}{}", ca_pem(), ca_pem()).as_bytes());
        assert_eq!(load_ca_file(&good).expect("two CAs").len(), 2);
        assert_ne!(
            Trust::with_ca_file(&good).expect("trust"),
            Trust::default(),
            "a ca_file changes the trust"
        );

        let missing = dir.path().join("missing.pem");
        let error = load_ca_file(&missing).expect_err("missing");
        assert!(
            error.contains("cannot read") && error.contains("missing.pem"),
            "{error}"
        );
        for (name, text, says) in [
            ("empty.pem", &b""[..], "holds no PEM certificate"),
            (
                "der.pem",
                &[0x30, 0x82, 0x01, 0x0a, 0xff][..],
                "holds no PEM",
            ),
            (
                "key.pem",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "holds no PEM certificate",
            ),
            (
                "broken.pem",
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "not valid PEM",
            ),
            (
                "junk.pem",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "cannot be a CA",
            ),
        ] {
            let path = write(name, text);
            let error = load_ca_file(&path).expect_err(name);
            assert!(error.contains(says) && error.contains(name), "{error}");
        }
    }

    #[test]
    fn the_os_trust_store_is_read_once_per_process() {
        let roots = system_roots();
        assert!(!roots.is_empty());
        assert!(std::ptr::eq(roots, system_roots()));
        let trust = Trust::default();
        let config = trust.client_config().expect("config");
        assert!(Arc::ptr_eq(
            &config,
            &trust.client_config().expect("config")
        ));
    }
}
