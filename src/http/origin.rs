//! Cross-site WebSocket hijacking defence: may a page from this `Origin` open a WebSocket here?
//!
//! Browsers send `Origin` with every WebSocket handshake and let any page connect anywhere, cookies
//! included; the server must refuse foreign pages itself. Allowed: requests without `Origin`
//! (non-browser clients), an origin naming the host the request was sent to (its `Host`, ports
//! compared with the scheme's default filled in), and any origin listed with `--allowed-origin`
//! (`*`: all). An `--allowed-origin` entry that is empty (or only slashes and spaces) names no
//! origin and matches none: `--allowed-origin ""` must not make an empty `Origin` header acceptable.
//! Pure: strings in, a verdict out.

/// Whether a handshake with `origin` sent to `host` may proceed, given the `--allowed-origin` list.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin.map(str::trim) else { return true };
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let normalized = origin.trim_end_matches('/');
    if allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('/');
        !a.is_empty() && a.eq_ignore_ascii_case(normalized)
    }) {
        return true;
    }
    let (Some((o_host, o_port)), Some(host)) = (parse_origin(normalized), host) else { return false };
    let Some((h_host, h_port)) = split_host_port(host.trim()) else { return false };
    if !o_host.eq_ignore_ascii_case(h_host) {
        return false;
    }
    match h_port {
        // The Host names the port the client connected to.
        Some(port) => o_port.effective == port,
        // No port in Host: the client used its scheme's default port, so the origin must too.
        None => o_port.explicit.is_none() || o_port.explicit == Some(o_port.default),
    }
}

struct OriginPort {
    explicit: Option<u16>,
    default: u16,
    effective: u16,
}

/// `scheme://host[:port]` → host and port facts; `None` for `null` or anything else.
fn parse_origin(origin: &str) -> Option<(&str, OriginPort)> {
    let (scheme, rest) = origin.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    };
    if rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, explicit) = split_host_port(rest)?;
    Some((host, OriginPort { explicit, default, effective: explicit.unwrap_or(default) }))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` → host (brackets kept for v6) and optional port.
fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if s.is_empty() {
        return None;
    }
    if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, rest) = s.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => Some((host, Some(rest.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => None,
        None => Some((s, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(origin: Option<&str>, host: &str, allowed: &[&str]) -> bool {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        origin_allowed(origin, Some(host), &allowed)
    }

    #[test]
    fn same_host_is_allowed_by_default() {
        assert!(ok(None, "chat.example", &[]), "no Origin: not a browser");
        assert!(ok(Some("https://chat.example"), "chat.example", &[]));
        assert!(ok(Some("http://Chat.Example:80"), "chat.example", &[]));
        assert!(ok(Some("http://127.0.0.1:8000"), "127.0.0.1:8000", &[]));
        assert!(ok(Some("http://[::1]:8000"), "[::1]:8000", &[]));
        assert!(ok(Some("https://chat.example"), "chat.example:443", &[]));
    }

    #[test]
    fn foreign_or_odd_origins_are_refused() {
        assert!(!ok(Some("https://evil.example"), "chat.example", &[]));
        assert!(!ok(Some("http://127.0.0.1:9999"), "127.0.0.1:8000", &[]));
        assert!(!ok(Some("http://chat.example:8080"), "chat.example", &[]));
        assert!(!ok(Some("null"), "chat.example", &[]));
        assert!(!ok(Some("file://chat.example"), "chat.example", &[]));
        assert!(!ok(Some("https://chat.example.evil.example"), "chat.example", &[]));
        assert!(!ok(Some("https://user@chat.example"), "chat.example", &[]));
        assert!(!ok(Some(""), "chat.example", &[]));
        assert!(!origin_allowed(Some("https://chat.example"), None, &[]), "no Host to compare with");
    }

    #[test]
    fn allowed_list_and_wildcard() {
        assert!(ok(Some("https://app.example"), "api.example", &["https://app.example"]));
        assert!(ok(Some("https://APP.example/"), "api.example", &["https://app.example"]));
        assert!(!ok(Some("https://other.example"), "api.example", &["https://app.example"]));
        assert!(ok(Some("https://api.example"), "api.example", &["https://app.example"]), "same host still ok");
        assert!(ok(Some("null"), "api.example", &["*"]));
    }

    #[test]
    fn an_empty_allowed_origin_matches_nothing() {
        for empty in ["", " ", "/", " / "] {
            assert!(!ok(Some(""), "chat.example", &[empty]), "{empty:?} must not admit an empty Origin");
            assert!(!ok(Some("  "), "chat.example", &[empty]), "{empty:?} must not admit a blank Origin");
            assert!(!ok(Some("/"), "chat.example", &[empty]), "{empty:?} must not admit Origin: /");
            assert!(!ok(Some("https://evil.example"), "chat.example", &[empty]));
            assert!(ok(Some("https://chat.example"), "chat.example", &[empty]), "same host is still allowed");
        }
        assert!(ok(Some("https://app.example"), "api.example", &["", "https://app.example"]));
    }
}
