//! Minting JWTs for the auth tests, with the test-only keys in `tests/fixtures/jwt/`.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

/// The HS256 secret the auth tests start servers with.
pub const SECRET: &str = "roomcast-test-secret-0123456789abcdef";

/// Seconds since the epoch.
pub fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

/// An HS256 token for `claims` signed with [`SECRET`].
pub fn hs256(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("encode")
}

/// An HS256 token naming `name`, valid for an hour, with optional audience and rooms.
pub fn user(name: &str, aud: Option<&str>, rooms: Option<&[&str]>) -> String {
    let mut claims = json!({"sub": format!("id-{name}"), "name": name, "exp": now() + 3600});
    if let Some(aud) = aud {
        claims["aud"] = json!(aud);
    }
    if let Some(rooms) = rooms {
        claims["rooms"] = json!(rooms);
    }
    hs256(&claims)
}

/// A token signed with a PEM private key from the fixtures (`rsa_private.pem`, `ec_private.pem`).
pub fn signed_with(alg: Algorithm, fixture: &str, claims: &Value) -> String {
    let pem = std::fs::read(super::repo_path(&format!("tests/fixtures/jwt/{fixture}"))).expect("fixture key");
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("private key");
    encode(&Header::new(alg), claims, &key).expect("encode")
}

/// An HS256 token whose HMAC key is `key` (e.g. a public key's PEM bytes: algorithm confusion).
pub fn hs256_with_key(key: &[u8], claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(key)).expect("encode")
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(claims))
}

/// An HS256 token signed with [`SECRET`] whose header lists `crit` extensions (RFC 7515 §4.1.11).
pub fn hs256_with_crit(crit: &[&str], claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(crit.iter().map(|c| c.to_string()).collect());
    encode(&header, claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("encode")
}
