//! TLS for `wss://` targets: the rustls client configuration (the same `ring` provider as the
//! server), trusting the CA of `--ca FILE`, or any certificate with `--insecure` (handshake
//! signatures are still checked, so the handshake costs what a verifying client's does, less the
//! chain check).

use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::LoadError;

/// What every TLS connection of a run uses.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// Session resumption on (the default; `--no-tls-resumption` turns it off).
    pub resumption: bool,
}

impl ClientTls {
    /// The client configuration for `host`: trusting the PEM certificates in `ca`, or anything with
    /// `insecure`; ALPN `http/1.1`.
    pub fn new(host: &str, ca: Option<&Path>, insecure: bool, resumption: bool) -> Result<ClientTls, LoadError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| LoadError::Other(format!("TLS setup: {e}")))?;
        let mut config = match (ca, insecure) {
            (Some(path), _) => {
                let mut roots = RootCertStore::empty();
                let bad = |e: &dyn std::fmt::Display| LoadError::BadArg(format!("--ca {}: {e}", path.display()));
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                    roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                }
                if roots.is_empty() {
                    return Err(bad(&"no CERTIFICATE block"));
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            (None, true) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.signature_verification_algorithms)))
                .with_no_client_auth(),
            (None, false) => return Err(LoadError::BadArg("wss:// needs --ca FILE or --insecure".into())),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resumption {
            config.resumption = Resumption::disabled();
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let name = ServerName::try_from(host).map_err(|e| LoadError::BadArg(format!("TLS server name: {e}")))?;
        Ok(ClientTls { config: Arc::new(config), name, resumption })
    }

    /// A new client session. With resumption each client keeps its own ticket store in `own`
    /// (made on its first connect and kept across reconnects), like one browser each: rustls keeps
    /// at most 8 TLS 1.3 tickets per server name in a store, so one store shared by thousands of
    /// clients reconnecting at once would resume only a handful of them.
    pub fn session(&self, own: &mut Option<Arc<ClientConfig>>) -> Result<ClientConnection, rustls::Error> {
        if !self.resumption {
            return ClientConnection::new(Arc::clone(&self.config), self.name.clone());
        }
        let config = own.get_or_insert_with(|| {
            let mut c = (*self.config).clone();
            c.resumption = Resumption::in_memory_sessions(1);
            Arc::new(c)
        });
        ClientConnection::new(Arc::clone(config), self.name.clone())
    }
}

/// `--insecure`: accepts any certificate, still checking the handshake's signatures with it.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
