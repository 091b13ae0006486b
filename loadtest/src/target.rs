//! Parsing of `ws://host:port/path?query` (and `wss://`) targets and building per-connection request paths.

use crate::error::LoadError;
use crate::tls::ClientTls;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// A WebSocket (or HTTP) endpoint: resolved address plus the request path.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
    /// Path without query, e.g. `/ws/chat`.
    pub path: String,
    /// Query string without `?`, possibly empty.
    pub query: String,
    /// `wss://` or `https://`.
    pub secure: bool,
    /// The TLS client of a secure target (set by [`Target::with_tls`]).
    pub tls: Option<ClientTls>,
}

impl Target {
    /// Parses `ws://`, `http://`, `wss://` or `https://` URLs (a secure one needs [`Target::with_tls`]).
    pub fn parse(url: &str) -> Result<Target, LoadError> {
        let bad = |reason| LoadError::BadUrl { url: url.to_string(), reason };
        let (rest, secure) = if let Some(r) = url.strip_prefix("ws://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("http://") {
            (r, false)
        } else if let Some(r) = url.strip_prefix("wss://").or_else(|| url.strip_prefix("https://")) {
            (r, true)
        } else {
            return Err(bad("scheme must be ws://, wss://, http:// or https://"));
        };
        let (authority, path_query) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_string(), p.parse::<u16>().map_err(|_| bad("bad port"))?)
            }
            _ => (authority.to_string(), if secure { 443 } else { 80 }),
        };
        let (path, query) = match path_query.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (path_query.to_string(), String::new()),
        };
        let host_for_lookup = host.trim_start_matches('[').trim_end_matches(']');
        let addr = (host_for_lookup, port)
            .to_socket_addrs()
            .map_err(|_| bad("cannot resolve host"))?
            .next()
            .ok_or_else(|| bad("host resolves to nothing"))?;
        Ok(Target { host, port, addr, path, query, secure, tls: None })
    }

    /// Sets up TLS for a secure target (trusting `ca`, or anything with `insecure`); a plain target
    /// is left as it is.
    pub fn with_tls(mut self, ca: Option<&Path>, insecure: bool, resumption: bool) -> Result<Target, LoadError> {
        if self.secure {
            self.tls = Some(ClientTls::new(&self.host, ca, insecure, resumption)?);
        }
        Ok(self)
    }

    /// `Host` header value.
    pub fn host_header(&self) -> String {
        let default = if self.secure { 443 } else { 80 };
        if self.port == default { self.host.clone() } else { format!("{}:{}", self.host, self.port) }
    }

    /// Request target with the base query plus extra `key=value` pairs appended.
    pub fn request_path(&self, extra: &[(&str, &str)]) -> String {
        let mut s = self.path.clone();
        let mut first = true;
        let mut push = |s: &mut String, kv: &str| {
            s.push(if first { '?' } else { '&' });
            first = false;
            s.push_str(kv);
        };
        if !self.query.is_empty() {
            push(&mut s, &self.query.clone());
        }
        for (k, v) in extra {
            push(&mut s, &format!("{k}={}", encode_component(v)));
        }
        s
    }
}

/// Percent-encodes everything outside the unreserved set.
pub fn encode_component(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_url_and_appends_params() {
        let t = Target::parse("ws://127.0.0.1:8000/ws/chat?x=1").unwrap();
        assert_eq!(t.port, 8000);
        assert_eq!(t.path, "/ws/chat");
        assert_eq!(t.request_path(&[("room", "room-1")]), "/ws/chat?x=1&room=room-1");
        let t = Target::parse("ws://127.0.0.1:9/").unwrap();
        assert_eq!(t.request_path(&[("nick", "a b")]), "/?nick=a%20b");
        let t = Target::parse("wss://127.0.0.1/ws").unwrap();
        assert!(t.secure && t.port == 443 && t.host_header() == "127.0.0.1");
        assert!(Target::parse("ftp://127.0.0.1/").is_err());
        assert!(t.with_tls(None, false, true).is_err(), "wss needs --ca or --insecure");
    }
}
