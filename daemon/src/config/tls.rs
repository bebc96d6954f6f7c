//! `[broker.tls]`: the CA, client certificate and server name of TLS to the broker, read and
//! checked when the config is loaded (and reloaded) into the rustls client configuration
//! warren connects with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};

use super::BrokerUrl;
use super::raw::RawTls;
use super::validate::Problems;
use crate::plugin::trust;

/// TLS to the broker, as `[broker.tls]` sets it up.
#[derive(Clone)]
pub struct BrokerTls {
    /// `ca_file`: the CAs the broker's certificate must be signed by (instead of the OS
    /// trust store), for messages.
    pub ca_file: Option<PathBuf>,
    /// `cert_file`: the client certificate warren presents (mutual TLS), for messages.
    pub cert_file: Option<PathBuf>,
    /// `server_name`: the name the broker's certificate is checked against (and sent as SNI)
    /// instead of the URL's host.
    pub server_name: Option<String>,
    config: Arc<rustls::ClientConfig>,
    /// Of every setting and file content, so that a reload sees a changed file.
    digest: [u8; 32],
}

impl BrokerTls {
    /// The rustls client configuration: roots, client certificate, protocol versions.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// True when warren presents a client certificate.
    pub fn has_client_cert(&self) -> bool {
        self.cert_file.is_some()
    }
}

impl PartialEq for BrokerTls {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl std::fmt::Debug for BrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerTls")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The rustls client configuration without `[broker.tls]`: the OS trust store, no client
/// certificate (an `amqps://` URL alone).
pub fn default_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = trust::system_roots().clone();
            let builder = builder().with_root_certificates(roots);
            Arc::new(builder.with_no_client_auth())
        })
        .clone()
}

fn builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // ring supports every safe default version: this cannot fail.
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
}

/// Validates `[broker.tls]` (files relative to `base`) against the broker URLs it serves.
pub(super) fn validate(
    raw: RawTls,
    urls: &[BrokerUrl],
    base: &Path,
    problems: &mut Problems,
) -> Option<BrokerTls> {
    for url in urls {
        if url.expose().starts_with("amqp://") {
            problems.push(format!(
                "broker.tls: set, but {url} is a plain amqp:// URL; write amqps:// to connect with TLS"
            ));
        }
    }
    let before = problems.len();
    let mut digest = Sha256::new();
    let roots = match &raw.ca_file {
        Some(file) => {
            let file = base.join(file);
            let certs = trust::load_ca_file(&file)
                .map_err(|e| problems.push(format!("broker.tls.ca_file: {e}")))
                .unwrap_or_default();
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs {
                digest.update(&cert);
                let _ = roots.add(cert);
            }
            Some((file, roots))
        }
        None => None,
    };
    let identity = client_identity(&raw, base, &mut digest, problems);
    let server_name = raw.server_name.filter(|name| {
        let valid = ServerName::try_from(name.as_str()).is_ok();
        if !valid {
            problems.push(format!(
                "broker.tls.server_name: {name:?} is not a DNS name or IP address"
            ));
        }
        valid
    });
    digest.update(server_name.as_deref().unwrap_or_default());
    if problems.len() > before {
        return None;
    }
    let (ca_file, roots) = match roots {
        Some((file, roots)) => (Some(file), roots),
        None => (None, trust::system_roots().clone()),
    };
    let builder = builder().with_root_certificates(roots);
    let (cert_file, config) = match identity {
        None => (None, builder.with_no_client_auth()),
        Some((cert_file, key_file, chain, key)) => {
            match builder.with_client_auth_cert(chain, key) {
                Ok(config) => (Some(cert_file), config),
                Err(e) => {
                    problems.push(format!(
                        "broker.tls.key_file: {} does not go with the certificate in {}: {e}",
                        key_file.display(),
                        cert_file.display()
                    ));
                    return None;
                }
            }
        }
    };
    Some(BrokerTls {
        ca_file,
        cert_file,
        server_name,
        config: Arc::new(config),
        digest: digest.finalize().into(),
    })
}

type Identity = (
    PathBuf,
    PathBuf,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
);

/// `cert_file` and `key_file`, both or neither: the client certificate chain and its key.
fn client_identity(
    raw: &RawTls,
    base: &Path,
    digest: &mut Sha256,
    problems: &mut Problems,
) -> Option<Identity> {
    let (cert_file, key_file) = match (&raw.cert_file, &raw.key_file) {
        (None, None) => return None,
        (Some(cert), Some(key)) => (base.join(cert), base.join(key)),
        (Some(_), None) => {
            problems.push(
                "broker.tls.cert_file: give key_file with it (the client certificate's private key)"
                    .to_owned(),
            );
            return None;
        }
        (None, Some(_)) => {
            problems.push(
                "broker.tls.key_file: give cert_file with it (the client certificate)".to_owned(),
            );
            return None;
        }
    };
    let chain = read(&cert_file, "cert_file", problems).and_then(|pem| {
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        if certs.is_empty() {
            problems.push(format!(
                "broker.tls.cert_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                cert_file.display()
            ));
            return None;
        }
        Some(certs)
    });
    let key = read(&key_file, "key_file", problems).and_then(|pem| {
        PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| {
                problems.push(format!(
                    "broker.tls.key_file: {} holds no usable PEM private key ({e}; an encrypted key must be decrypted first: openssl pkey -in KEY -out KEY.plain)",
                    key_file.display()
                ))
            })
            .ok()
    });
    let (chain, key) = (chain?, key?);
    for cert in &chain {
        digest.update(cert);
    }
    digest.update(key.secret_der());
    Some((cert_file, key_file, chain, key))
}

fn read(file: &Path, key: &str, problems: &mut Problems) -> Option<Vec<u8>> {
    std::fs::read(file)
        .map_err(|e| {
            problems.push(format!(
                "broker.tls.{key}: cannot read {}: {e}",
                file.display()
            ))
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// A CA and a client certificate and key it issued, as PEM.
    fn pki() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).expect("CA");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .expect("params")
            .signed_by(&key, &ca)
            .expect("certificate");
        (ca.pem(), cert.pem(), key.serialize_pem())
    }

    /// The config `[broker] url` + `[broker.tls]` with `tls` lines, in `dir`.
    fn load(dir: &Path, url: &str, tls: &str) -> anyhow::Result<Config> {
        let text = format!("[broker]\nurl = \"{url}\"\n[broker.tls]\n{tls}\n");
        Config::parse(&text, &dir.join("warren.toml"))
    }

    fn error(dir: &Path, url: &str, tls: &str) -> String {
        format!("{:#}", load(dir, url, tls).expect_err("refused"))
    }

    const URL: &str = "amqps://rabbit.internal/%2f";

    #[test]
    fn broker_tls_is_read_and_checked_naming_keys_and_files() {
        let dir = tempfile::tempdir().expect("dir");
        let (ca, cert, key) = pki();
        let (_, other_cert, _) = pki();
        for (name, text) in [
            ("ca.pem", &ca),
            ("client.pem", &cert),
            ("client.key", &key),
            ("other.pem", &other_cert),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let d = dir.path();
        let mutual = "ca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"client.key\"";
        let config = load(d, URL, mutual).expect("valid");
        let tls = config.broker.tls.as_ref().expect("tls");
        assert!(tls.has_client_cert());
        assert_eq!(tls.ca_file.as_deref(), Some(d.join("ca.pem").as_path()));
        assert_eq!(
            load(d, URL, mutual).expect("valid").broker.tls,
            config.broker.tls
        );
        let named = format!("{mutual}\nserver_name = \"rabbit.example\"");
        assert_ne!(
            load(d, URL, &named).expect("valid").broker.tls,
            config.broker.tls
        );

        for (url, tls, says) in [
            (
                "amqp://rabbit.internal/%2f",
                "",
                "plain amqp:// URL; write amqps://",
            ),
            (
                URL,
                "ca_file = \"missing.pem\"",
                "broker.tls.ca_file: cannot read",
            ),
            (URL, "ca_file = \"client.key\"", "broker.tls.ca_file"),
            (
                URL,
                "cert_file = \"client.pem\"",
                "broker.tls.cert_file: give key_file",
            ),
            (
                URL,
                "key_file = \"client.key\"",
                "broker.tls.key_file: give cert_file",
            ),
            (
                URL,
                "cert_file = \"client.key\"\nkey_file = \"client.key\"",
                "holds no PEM certificate",
            ),
            (
                URL,
                "cert_file = \"client.pem\"\nkey_file = \"ca.pem\"",
                "holds no usable PEM private key",
            ),
            (
                URL,
                "cert_file = \"other.pem\"\nkey_file = \"client.key\"",
                "does not go with the certificate",
            ),
            (
                URL,
                "server_name = \"not a name\"",
                "broker.tls.server_name",
            ),
            (URL, "cipher = \"x\"", "unknown field `cipher`"),
        ] {
            let e = error(d, url, tls);
            assert!(e.contains(says), "{tls:?}: {e}");
        }
        let e = error(d, URL, "ca_file = \"missing.pem\"");
        assert!(
            e.contains(&d.join("missing.pem").display().to_string()),
            "{e}"
        );
    }
}
