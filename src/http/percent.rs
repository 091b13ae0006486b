//! Strict percent-decoding of URL components (RFC 3986 §2.1): the one decoder for every path segment
//! and query value the server acts on.
//!
//! An escape must be `%` followed by two hex digits, and the decoded bytes must be UTF-8; anything else
//! is refused rather than repaired, so two different inputs (`%ff`, `%fe`) can never decode to the same
//! name and a malformed escape (`%zz`, a lone `%`) is never taken literally.

use thiserror::Error;

/// Why a component could not be decoded.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum PercentError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-escape (a % must be followed by two hex digits)")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("percent-decodes to bytes that are not UTF-8")]
    NotUtf8,
}

/// Percent-decodes `s`; with `plus_is_space` (query strings, form encoding) a `+` becomes a space, in a
/// path it stays a literal `+`.
///
/// # Errors
/// [`PercentError`] for a malformed escape or a result that is not UTF-8.
pub(crate) fn decode(s: &str, plus_is_space: bool) -> Result<String, PercentError> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else { return Err(PercentError::BadEscape) };
                // Two hex digits make at most 0xff.
                out.push(u8::try_from(hi * 16 + lo).map_err(|_| PercentError::BadEscape)?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

/// Iterates over the `key=value` pairs of a query string: keys and values percent-decoded with `+` as a
/// space. A value that does not decode is yielded as its error, for the caller to answer with the
/// parameter's own error code; a pair whose key does not decode names no parameter and is skipped,
/// like any unknown parameter.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, Result<String, PercentError>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).filter_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        Some((decode(k, true).ok()?, decode(v, true)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_escapes_decode() {
        assert_eq!(decode("caf%C3%A9", true).as_deref(), Ok("café"));
        assert_eq!(decode("a+b%2Bc", true).as_deref(), Ok("a b+c"));
        assert_eq!(decode("a+b", false).as_deref(), Ok("a+b"));
        assert_eq!(decode("%41%6a", false).as_deref(), Ok("Aj"));
        assert_eq!(decode("", true).as_deref(), Ok(""));
    }

    #[test]
    fn malformed_escapes_and_non_utf8_are_refused() {
        for bad in ["%zz", "%", "a%", "%4", "%4g", "%%41", "x%g1"] {
            assert_eq!(decode(bad, true), Err(PercentError::BadEscape), "{bad}");
        }
        for bad in ["%ff", "%fe", "%C3", "%C3%28", "%ED%A0%80"] {
            assert_eq!(decode(bad, false), Err(PercentError::NotUtf8), "{bad}");
        }
    }

    #[test]
    fn query_pairs_decode_values_and_skip_undecodable_keys() {
        let pairs: Vec<_> = query_pairs("room=caf%C3%A9&nick=a+b&x&bad%zz=1&r=%ff").collect();
        assert_eq!(
            pairs,
            [
                ("room".into(), Ok("café".into())),
                ("nick".into(), Ok("a b".into())),
                ("x".into(), Ok(String::new())),
                ("r".into(), Err(PercentError::NotUtf8)),
            ]
        );
    }
}
