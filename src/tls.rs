//! The TLS server configuration: the certificate chain and private key read from PEM files into a
//! rustls `ServerConfig`, and the current configuration that SIGHUP replaces; and the client
//! configuration of `https://` webhook receivers ([`webhook_client_config`]).
//!
//! Owns the policy of every TLS connection: the `ring` crypto provider (no cmake or C++ toolchain
//! beyond the C compiler the build already needs for SQLite; ARCHITECTURE.md says why), TLS 1.2
//! and 1.3 only, rustls' default cipher suites and key exchange groups, ALPN `http/1.1`, no
//! client authentication, session resumption with TLS 1.3 tickets (a ticketer whose keys rotate;
//! the same ticketer is kept across reloads, so tickets issued before a reload stay valid) and
//! TLS 1.2 session ids (rustls' in-memory cache). The socket side of TLS, one unbuffered rustls
//! connection (`UnbufferedServerConnection`) per connection, is `conn::tls`.
//!
//! [`TlsConfig::reload`] builds a complete new configuration before anything is replaced: a bad
//! pair is refused with the file and the reason, and the old pair stays in use. Connections read
//! [`TlsConfig::current`] once, when they are accepted, so a reload never touches a connection
//! that is already open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ProducesTickets;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN protocol offered (and the only one accepted when a client offers ALPN).
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Why a certificate and key could not be used. Each names the file and the reason, in the
/// `<what> (<path>): <reason>` shape of every start error.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no usable certificate.
    #[error("cannot load the TLS certificate ({}): {reason}", path.display())]
    Cert {
        /// The `--tls-cert` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file could not be read or holds no usable private key.
    #[error("cannot load the TLS key ({}): {reason}", path.display())]
    Key {
        /// The `--tls-key` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The `--webhook-ca` file could not be read or holds no usable CA certificate.
    #[error("cannot load the webhook CA certificates ({}): {reason}", path.display())]
    WebhookCa {
        /// The `--webhook-ca` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The rustls configuration could not be built (no ticketer, no protocol versions).
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The paths of a certificate and its key, and the configuration currently built from them.
pub struct TlsConfig {
    cert: PathBuf,
    key: PathBuf,
    ticketer: Arc<dyn ProducesTickets>,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM PKCS#8, PKCS#1 or SEC1 private key:
    /// ECDSA P-256/P-384, Ed25519 or RSA) and builds the first configuration.
    ///
    /// # Errors
    /// [`TlsError`] naming the file and the reason.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
        let current = build(cert, key, &ticketer)?;
        Ok(TlsConfig { cert: cert.to_path_buf(), key: key.to_path_buf(), ticketer, current: RwLock::new(current) })
    }

    /// The configuration for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read())
    }

    /// Reads both files again and, if they make a usable pair, uses them for every connection
    /// accepted from now on (open connections keep theirs).
    ///
    /// # Errors
    /// [`TlsError`] naming the file and the reason; the configuration in use is then unchanged.
    pub fn reload(&self) -> Result<(), TlsError> {
        let next = build(&self.cert, &self.key, &self.ticketer)?;
        *self.current.write() = next;
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}

/// The crypto provider every TLS connection uses (ring; see the module docs).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// One complete configuration from the two files.
fn build(cert: &Path, key: &Path, ticketer: &Arc<dyn ProducesTickets>) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert { path: cert.to_path_buf(), reason };
    let key_err = |reason: String| TlsError::Key { path: key.to_path_buf(), reason };
    let chain = read_certs(cert).map_err(cert_err)?;
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(pem_reason(&e)))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| pair_error(cert, key, &e))?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    config.ticketer = Arc::clone(ticketer);
    Ok(Arc::new(config))
}

/// Every certificate of the PEM file at `path`, at least one; the error is the reason in words.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_reason(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_reason(&e))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block in the file".into());
    }
    Ok(certs)
}

/// A PEM reading error in words (the file missing, unreadable, or without the block looked for).
fn pem_reason(err: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match err {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM private key block (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)".into(),
        other => format!("not valid PEM: {other}"),
    }
}

/// rustls' refusal of a chain and key, blamed on the file at fault.
fn pair_error(cert: &Path, key: &Path, err: &rustls::Error) -> TlsError {
    match err {
        rustls::Error::InconsistentKeys(_) => TlsError::Key {
            path: key.to_path_buf(),
            reason: format!("the key does not match the certificate in {}", cert.display()),
        },
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            TlsError::Cert { path: cert.to_path_buf(), reason: err.to_string() }
        }
        _ => TlsError::Key { path: key.to_path_buf(), reason: err.to_string() },
    }
}

/// The client configuration of `https://` webhook receivers: TLS 1.2 and 1.3 with the same
/// provider and defaults as the server, ALPN `http/1.1`, the receiver's certificate verified (chain
/// and name) against the CA certificates in `ca` (`--webhook-ca`) or, without it, the Mozilla roots
/// compiled in (`webpki-roots`). No client certificate; rustls keeps resumption tickets per
/// receiver name, so a reconnect to the same receiver resumes.
///
/// # Errors
/// [`TlsError::WebhookCa`] naming the file: unreadable, not PEM, no certificate, or a certificate
/// that is not a usable trust anchor.
pub fn webhook_client_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = match ca {
        None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        Some(path) => {
            let ca_err = |reason: String| TlsError::WebhookCa { path: path.to_path_buf(), reason };
            let certs = read_certs(path).map_err(ca_err)?;
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert).map_err(|e| ca_err(format!("not a usable CA certificate: {e}")))?;
            }
            roots
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(Arc::new(config))
}
