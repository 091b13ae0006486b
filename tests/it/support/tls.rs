//! TLS test support: a CA and certificates made at test time (rcgen), written as PEM files for the
//! server, and a real verifying TLS client (rustls over a blocking socket) for HTTPS and WSS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{PATIENCE, Server};

/// A blocking TLS client stream.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A WebSocket client over TLS.
pub type TlsClient = tungstenite::WebSocket<TlsStream>;

/// A test certificate authority.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (DER), the trust anchor of the test clients.
    pub cert: CertificateDer<'static>,
    /// The same as PEM.
    pub cert_pem: String,
}

/// A leaf certificate and its key, as PEM text.
pub struct Leaf {
    /// The certificate chain: the leaf, then the CA.
    pub chain_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
    /// The leaf certificate (DER), to compare with what a server presents.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A new CA with a P-256 key.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name.push(DnType::CommonName, "roomcast test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa { issuer: Issuer::new(params, key), cert: cert.der().clone(), cert_pem: cert.pem() }
    }

    /// A leaf for `names` with a key of `alg` (e.g. `rcgen::PKCS_ECDSA_P256_SHA256`), valid now.
    pub fn leaf(&self, names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Leaf {
        self.leaf_with(names, alg, |_| {})
    }

    /// A leaf for `names` whose key is the PEM (PKCS#8) `key_pem` of algorithm `alg` (an RSA key
    /// made by `openssl`, which rcgen cannot generate with ring).
    pub fn leaf_for_key(&self, names: &[&str], key_pem: &str, alg: &'static rcgen::SignatureAlgorithm) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, "roomcast test server");
        let key = KeyPair::from_pem_and_sign_algo(key_pem, alg).expect("leaf key from PEM");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key_pem.to_string(),
            der: cert.der().clone(),
        }
    }

    /// A leaf whose validity ended in 2021.
    pub fn expired_leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, &rcgen::PKCS_ECDSA_P256_SHA256, |params| {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        })
    }

    fn leaf_with(
        &self,
        names: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
        adjust: impl FnOnce(&mut CertificateParams),
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, "roomcast test server");
        adjust(&mut params);
        let key = KeyPair::generate_for(alg).expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client configuration trusting only this CA, offering ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).expect("ca into the root store");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl Leaf {
    /// A rustls server configuration presenting this chain (for test servers other than roomcast,
    /// such as an https webhook receiver).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::PrivateKeyDer;
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the chain's PEM");
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("the key's PEM");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("a usable chain and key");
        Arc::new(config)
    }

    /// Writes the chain and key into `dir` as `cert.pem` and `key.pem` (replacing them).
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        write_atomically(&cert, self.chain_pem.as_bytes());
        write_atomically(&key, self.key_pem.as_bytes());
        (cert, key)
    }
}

/// Replaces `path` with `bytes` (write then rename: a reload never sees half a file).
pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write pem");
    std::fs::rename(&tmp, path).expect("rename pem");
}

/// Connects and completes a TLS handshake with `name` as the server name.
pub fn try_connect(addr: SocketAddr, name: &str, config: Arc<ClientConfig>) -> Result<TlsStream, String> {
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(PATIENCE)).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config, server_name).map_err(|e| e.to_string())?;
    let mut stream = StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| e.to_string())?;
    }
    Ok(stream)
}

/// Connects to `server` as `localhost`, panicking if the handshake fails.
pub fn connect(server: &Server, config: &Arc<ClientConfig>) -> TlsStream {
    try_connect(server.addr, "localhost", Arc::clone(config)).expect("TLS handshake")
}

/// The leaf certificate the server presented.
pub fn served_leaf(stream: &TlsStream) -> CertificateDer<'static> {
    stream.conn.peer_certificates().and_then(|c| c.first()).expect("a server certificate").clone()
}

/// One HTTPS GET with `Connection: close`: (status, head, body).
pub fn https_get(server: &Server, config: &Arc<ClientConfig>, path: &str) -> (u16, String, Vec<u8>) {
    let mut stream = connect(server, config);
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n", server.addr.port());
    stream.write_all(request.as_bytes()).expect("send request");
    let mut bytes = Vec::new();
    // The server ends with close_notify; a reset after it is not an error of the response.
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) => assert!(!bytes.is_empty(), "no response: {e}"),
    }
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head") + 4;
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, head, bytes[split..].to_vec())
}

/// A WebSocket client over TLS on `path_and_query`.
pub fn connect_wss(server: &Server, config: &Arc<ClientConfig>, path_and_query: &str) -> TlsClient {
    let stream = connect(server, config);
    let url = format!("wss://localhost:{}{path_and_query}", server.addr.port());
    tungstenite::client::client(url, stream).map(|(ws, _)| ws).expect("websocket handshake over TLS")
}
