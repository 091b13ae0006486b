//! Unit tests of token verification: every refusal reason, algorithm pinning, claims to identity.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/jwt/ec_public.pem");

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn hs(claims: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET)).expect("encode")
}

fn hs_auth(aud: Option<&str>) -> Authenticator {
    Authenticator::new(DecodingKey::from_secret(SECRET), Algorithm::HS256, aud)
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn valid_hs256_token_gives_name_or_sub_and_rooms() {
    let auth = hs_auth(None);
    let exp = u64::try_from(now() + 60).expect("positive");
    let id = auth.verify(&hs(&json!({"sub": "u1", "name": "Alice", "exp": exp, "iat": 7}))).expect("valid");
    assert_eq!(id, Identity { user: "Alice".into(), rooms: RoomGrant::All, exp, iat: Some(7) });
    let id = auth.verify(&hs(&json!({"sub": "u1", "exp": now() + 60, "rooms": ["a", "b"]}))).expect("valid");
    assert_eq!(id.user, "u1");
    assert!(id.rooms.allows("a") && !id.rooms.allows("c"));
    let id = auth.verify(&hs(&json!({"sub": "u1", "exp": now() + 60, "rooms": ["a", "*"]}))).expect("valid");
    assert_eq!(id.rooms, RoomGrant::All);
}

#[test]
fn every_refusal_has_its_reason() {
    let auth = hs_auth(None);
    let cases = [
        (hs(&json!({"sub": "u", "exp": now() - 3600})), AuthError::Expired),
        (hs(&json!({"sub": "u", "exp": now() + 3600, "nbf": now() + 3600})), AuthError::NotYetValid),
        (hs(&json!({"sub": "u"})), AuthError::MissingClaim("exp".into())),
        (hs(&json!({"sub": "u", "exp": now() + 60, "aud": "elsewhere"})), AuthError::WrongAudience),
        (hs(&json!({"exp": now() + 60})), AuthError::NoUser("nickname must not be empty".into())),
        ("not-a-token".to_string(), AuthError::Malformed),
        ("a.b.c".to_string(), AuthError::Malformed),
    ];
    for (token, want) in cases {
        match (auth.verify(&token), &want) {
            (Err(AuthError::NoUser(_)), AuthError::NoUser(_)) => {}
            (got, _) => assert_eq!(got, Err(want), "{token}"),
        }
    }
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "exp": now() + 60}),
        &EncodingKey::from_secret(b"x"),
    )
    .expect("encode");
    assert_eq!(auth.verify(&other_key), Err(AuthError::BadSignature));
    // A tampered payload keeps the old signature.
    let good = hs(&json!({"sub": "u", "exp": now() + 60}));
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64(&json!({"sub": "admin", "exp": now() + 60})), parts[2]);
    assert_eq!(auth.verify(&forged), Err(AuthError::BadSignature));
}

#[test]
fn audience_is_required_when_configured() {
    let auth = hs_auth(Some("roomcast"));
    assert!(auth.verify(&hs(&json!({"sub": "u", "exp": now() + 60, "aud": "roomcast"}))).is_ok());
    assert!(auth.verify(&hs(&json!({"sub": "u", "exp": now() + 60, "aud": ["x", "roomcast"]}))).is_ok());
    assert_eq!(
        auth.verify(&hs(&json!({"sub": "u", "exp": now() + 60, "aud": "other"}))),
        Err(AuthError::WrongAudience)
    );
    assert_eq!(auth.verify(&hs(&json!({"sub": "u", "exp": now() + 60}))), Err(AuthError::MissingClaim("aud".into())));
}

#[test]
fn alg_none_is_refused() {
    let auth = hs_auth(None);
    let token =
        format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&json!({"sub": "u", "exp": now() + 60})));
    assert_eq!(auth.verify(&token), Err(AuthError::WrongAlgorithm(Algorithm::HS256)));
    let token = format!("{}.{}.", b64(&json!({"alg": "None"})), b64(&json!({"sub": "u", "exp": now() + 60})));
    assert_eq!(auth.verify(&token), Err(AuthError::WrongAlgorithm(Algorithm::HS256)));
    let token = format!("{}.{}.", b64(&json!({"typ": "JWT"})), b64(&json!({"sub": "u", "exp": now() + 60})));
    assert_eq!(auth.verify(&token), Err(AuthError::Malformed), "no alg at all");
}

#[test]
fn rs256_and_es256_keys_pin_their_algorithm() {
    let claims = json!({"sub": "u", "exp": now() + 60});
    let rsa = Authenticator::new(DecodingKey::from_rsa_pem(RSA_PUBLIC).expect("rsa"), Algorithm::RS256, None);
    let token = encode(&Header::new(Algorithm::RS256), &claims, &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("k"))
        .expect("encode");
    assert_eq!(rsa.verify(&token).expect("valid").user, "u");
    // Algorithm confusion: an HS256 token "signed" with the RSA public key bytes as the HMAC secret.
    let confused =
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(RSA_PUBLIC)).expect("encode");
    assert_eq!(rsa.verify(&confused), Err(AuthError::WrongAlgorithm(Algorithm::RS256)));
    // Same key, other RSA algorithm: still refused (pinned, not per family).
    let rs384 = encode(&Header::new(Algorithm::RS384), &claims, &EncodingKey::from_rsa_pem(RSA_PRIVATE).expect("k"))
        .expect("encode");
    assert_eq!(rsa.verify(&rs384), Err(AuthError::WrongAlgorithm(Algorithm::RS256)));

    let ec = Authenticator::new(DecodingKey::from_ec_pem(EC_PUBLIC).expect("ec"), Algorithm::ES256, None);
    let token = encode(&Header::new(Algorithm::ES256), &claims, &EncodingKey::from_ec_pem(EC_PRIVATE).expect("k"))
        .expect("encode");
    assert_eq!(ec.verify(&token).expect("valid").user, "u");
    assert!(ec.verify(&confused).is_err());
}

#[test]
fn public_key_files_are_recognised() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    assert_eq!(load_public_key(&dir.join("rsa_public.pem")).expect("rsa").1, Algorithm::RS256);
    assert_eq!(load_public_key(&dir.join("ec_public.pem")).expect("ec").1, Algorithm::ES256);
    assert!(matches!(load_public_key(&dir.join("README.md")), Err(AuthConfigError::BadKey { .. })));
    assert!(matches!(load_public_key(&dir.join("absent.pem")), Err(AuthConfigError::ReadKey { .. })));
}

#[test]
fn token_comes_from_bearer_header_subprotocol_or_query() {
    assert_eq!(token_from(Some("Bearer abc"), None, None), Ok("abc".into()));
    assert_eq!(token_from(Some("bearer abc"), Some("p"), Some("q")), Ok("abc".into()));
    assert_eq!(token_from(None, Some("p"), Some("q")), Ok("p".into()), "the subprotocol before the URL");
    assert_eq!(token_from(None, Some(""), None), Err(AuthError::Malformed));
    assert_eq!(token_from(None, None, Some("q")), Ok("q".into()));
    assert_eq!(token_from(None, None, None), Err(AuthError::Missing));
    assert_eq!(token_from(None, None, Some("")), Err(AuthError::Missing));
    assert_eq!(token_from(Some("Basic abc"), None, None), Err(AuthError::Malformed));
    assert_eq!(token_from(Some("Bearer"), None, None), Err(AuthError::Malformed));
    let offered = ["roomcast.v1.json".to_string(), "bearer.a.b.c".to_string()];
    assert_eq!(protocol_token(&offered), Some("a.b.c"));
    assert_eq!(protocol_token(&offered[..1]), None);
}

#[test]
fn critical_extensions_are_refused_even_when_signed() {
    let auth = hs_auth(None);
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["http://example.invalid/must-understand".into()]);
    let claims = json!({"sub": "u", "exp": now() + 60});
    let token = encode(&header, &claims, &EncodingKey::from_secret(SECRET)).expect("encode");
    assert!(matches!(auth.verify(&token), Err(AuthError::UnsupportedCritical(_))), "{token}");
    // The same token without `crit` is fine: the refusal is the extension, not the signature.
    assert!(auth.verify(&hs(&claims)).is_ok());
}
