//! End-to-end tests of the authenticator: config → request headers → principal or error.
//!
//! Key fixtures were generated once with `openssl genpkey` (RSA 2048, P-256); they are
//! test keys and protect nothing.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
use serde_json::{Value, json};

use super::*;

const RSA_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQCaW+hBZGqOJ+vb
Q5q5bnOJ2PwjQC4jRBoTTAnTOGwz70zymfbXx8RCuRMxbuD19giF96AG9DtTQ8QF
WH/ISPEjVRcVRvmYBTeRt70MYQ8qvev4P967xkCeNJm36c7LcNCGkBBSfgdtPnUD
u7jYEVVrBxFOpS2yzS3E+u6l7ulE+JZJl8ojpAH8RMzOIh4a+cEoR/UpDFBNJ3jB
sFbF92BeoAYE4SEY+rnK0dD+hIKFTSe842txJck+6UUQc0LG2VyZ6j+t8h0X1W7k
m4cWR5NKyUVrLcslRSweIu2MiFEKImTQHtOdXTWfoNkqVwMGuFuQu0zY9Q/Zy6dS
N73L/rIpAgMBAAECggEANFaUdlPDk4bywIp4NIbAc02ZFKTG4BtP0ho2vKFFgwiR
aTMOURUBtXQGj3zel1eAhVg0sRbv5Kg2F2/uB+2/obDQ3lyN9d9S+7w2xDNGzsHN
+INDlRzAPURtmMAU58NNWUsQ1b+46fBDAeyNXOnnsh4X3rhAOf+7FK7W63mKK+Gt
AsYXggSmSda56mqP6VYYy7yXmAIvV3ceM8AmuxOt3g+CsoRfVvUTCgkmQbIYE9rd
o4Jak3knE3vXn9JAofHSxvm+06XBy3WR/kPuF2ZO1xVoE324mLnsho+9i1uGKToK
p6Cqrnp5bYxenQGxmsIAodHtWurCIpYYj1p/XFoO1wKBgQDVX4ersaq8Ry36u5VT
Qp03fao2iTlXwjzI+EdVtp63FFnSJU27+7qtl3FpTYMNwwrpPLICAFc9MsfXVb96
ofYV/UmkVBu8+82SA0ijn3nQg+XMAQR1k49G9DdXJlDlzk/j9q73s7pgJ68S+s5v
mDCpPC+5ltgnDjHx2auehUWr8wKBgQC5MjynSG9pAv7Zenm74CeoYD3v+H5DZnpv
m7dfJ95VNLca5xGnd8LQwpKaCYklSrfffOduzLPEcxbPtUz2h1L7B2pL2xbbCnmn
5l1lkkZ2eo0+EBpv+XfyfLs9s+o0D0m2NbSnt8kd/TEAeu5JuxB/HlRj/2oW6cUG
F08YpeS8cwKBgFIZxPlSjpCNjuqYPRfhXN8aMmFzoaXb7kmiBsi7UQy+/uS2R9fa
P3VF/XR4R8IG127xVMkiWm8I2A5KRzgnk6nYYPqjBl1MQkg5jTywQ03xQn2hspaP
JaU2mQimjKAwJ1te8uoKtN8Exf+2k7IqzCaCKxbtLNSySJN3nuqK+0jzAoGAW1yg
NXpzk9+pcAqOwZOcnOEVzSvOxlto7WRpeyUE9w3xgvEZcX+QeUJz5k/r+5y3xyYs
WincSX7pcwCi/j/WPQb0doWX6elqCN2Jl9Eot8xPn518HV95wAOur4rxcEtWdvBZ
th/htMyyfuUmZvNE+SEySr63TKR40T9wgt1cUWcCgYBLaDvOYj/75Z8e4kkkjqQA
WHDYgh2GKSXQEiRmsMNXZZEOufS+ZAc7FQvVT+u8CscDze3Je35PKrpLfZAd+9gf
+ch7ZpJHvJTFAprl8tp09nr+pGDmOiKOZkGNfNCTalHq1cOzCBRRmWT8GCXsWPer
D9mzdj69bKDHiVDuYlE6Kg==
-----END PRIVATE KEY-----
";
const RSA_PUB: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAmlvoQWRqjifr20OauW5z
idj8I0AuI0QaE0wJ0zhsM+9M8pn218fEQrkTMW7g9fYIhfegBvQ7U0PEBVh/yEjx
I1UXFUb5mAU3kbe9DGEPKr3r+D/eu8ZAnjSZt+nOy3DQhpAQUn4HbT51A7u42BFV
awcRTqUtss0txPrupe7pRPiWSZfKI6QB/ETMziIeGvnBKEf1KQxQTSd4wbBWxfdg
XqAGBOEhGPq5ytHQ/oSChU0nvONrcSXJPulFEHNCxtlcmeo/rfIdF9Vu5JuHFkeT
SslFay3LJUUsHiLtjIhRCiJk0B7TnV01n6DZKlcDBrhbkLtM2PUP2cunUje9y/6y
KQIDAQAB
-----END PUBLIC KEY-----
";
const RSA2_PUB: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4lUdS8DIgOkXnOu6rDoc
lYvqbVvxvHpPWW2xMdEXkUtBQJL4jsTqo7JDjnNoOyRr7GSBCqhkR7gNA/oeiobW
gy7mVm+Oq8Pz01+qm74X58SHMFX/zs5X+Yt1CF/idwZuJa0epRLrW5bk1iFFN2B3
xSKpKVm9EBlgxgDRnAZjtKU8DTvC5/lpMNA6XQo4358xeFy1oNho5Hj9rUlevbJe
guSULAPWD8oSzlRQvZt4r4khU8OwHnaBNuo98C/UKLwaLQaEcbLCWOZpyKkUkFoE
9cJcRtYNAcuBrY5FT7svEr3OJu7YipqTsq9J9gI+gYdgHcLOVyc5Vo176zRPwmhx
BQIDAQAB
-----END PUBLIC KEY-----
";
const EC_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgKdwul/o8ps0ku3ly
D+niF4dbFWuzGa2tRRKk1hgACSShRANCAARA+QovN6sYS8GvbYEoQwyLlCRRukXm
UlSEIApRpYXhRGjAjPiN60fJvHT0WMGQSDAZLu4rWyLnKMbMqY2FXVJg
-----END PRIVATE KEY-----
";
const EC_PUB: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEQPkKLzerGEvBr22BKEMMi5QkUbpF
5lJUhCAKUaWF4URowIz4jetHybx09FjBkEgwGS7uK1si5yjGzKmNhV1SYA==
-----END PUBLIC KEY-----
";

/// A 32-byte HS256 secret.
const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The time the tests run at.
const NOW: u64 = 1_700_000_000;
const ISS: &str = "https://auth.example.com/";

// -- helpers --------------------------------------------------------------------------

/// A fresh folder holding the given files.
fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portcullis-identity-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Parses an `[identity]` table (written without the `[identity]` line) and builds it,
/// with key files from `files` and the environment `JWT_SECRET=SECRET`.
fn try_auth(toml_text: &str, files: &[(&str, &str)]) -> Result<Authenticator, IdentityConfigError> {
    let config: IdentityConfig = toml::from_str(toml_text).expect("config parses");
    let dir = dir_with(files);
    Authenticator::build(&config, &dir, &|name| (name == "JWT_SECRET").then(|| SECRET.to_owned()))
}

fn auth(toml_text: &str, files: &[(&str, &str)]) -> Authenticator {
    try_auth(toml_text, files).unwrap()
}

fn hs256_auth() -> Authenticator {
    auth(
        &format!(
            r#"
            [[jwt]]
            issuer = "{ISS}"
            audiences = ["invoices-api"]
            secret_env = "JWT_SECRET"
            claims = ["tenant", "email_verified"]
            "#
        ),
        &[],
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` with `header` (whose `alg` is used unless `alg` is given in it).
fn sign(alg: jsonwebtoken::Algorithm, key: &EncodingKey, header: Value, claims: Value) -> String {
    let mut header = header;
    if header.get("alg").is_none() {
        header["alg"] = json!(format!("{alg:?}"));
    }
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signer = (DEFAULT_PROVIDER.signer_factory)(&alg, key).unwrap();
    let signature = signer.try_sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

fn hs256(claims: Value) -> String {
    sign(jsonwebtoken::Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), json!({"typ": "JWT"}), claims)
}

fn rs256(header: Value, claims: Value) -> String {
    sign(jsonwebtoken::Algorithm::RS256, &EncodingKey::from_rsa_pem(RSA_KEY.as_bytes()).unwrap(), header, claims)
}

fn es256(claims: Value) -> String {
    sign(jsonwebtoken::Algorithm::ES256, &EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap(), json!({}), claims)
}

/// Claims valid at `NOW` for the HS256 issuer.
fn claims() -> Value {
    json!({"iss": ISS, "sub": "alice", "aud": "invoices-api", "exp": NOW + 600, "iat": NOW - 10})
}

fn with(mut base: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn request(headers: &[(&str, &str)]) -> Request {
    Request { headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(), ..Request::default() }
}

fn bearer(token: &str) -> Request {
    request(&[("authorization", &format!("Bearer {token}"))])
}

fn token_error(result: Result<Principal, AuthError>) -> TokenError {
    match result {
        Err(AuthError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

// -- JWT: HS256 -----------------------------------------------------------------------

#[test]
fn hs256_valid_token_gives_a_user_principal() {
    let token = hs256(with(
        claims(),
        json!({"scope": "invoices:read invoices:write", "jti": "tok-1", "tenant": "acme", "email_verified": true, "other": 1}),
    ));
    let principal = hs256_auth().authenticate(&bearer(&token), NOW).unwrap();
    assert_eq!(principal.kind, PrincipalKind::User);
    assert_eq!(principal.id, "alice");
    assert_eq!(principal.scopes, ["invoices:read", "invoices:write"]);
    assert_eq!(principal.claims, [("tenant".into(), "acme".into()), ("email_verified".into(), "true".into())]);
    assert_eq!(principal.on_behalf_of, None);
    assert_eq!(principal.credential_id.as_deref(), Some("tok-1"));
}

#[test]
fn credential_id_defaults_to_the_issuer() {
    let principal = hs256_auth().authenticate(&bearer(&hs256(claims())), NOW).unwrap();
    assert_eq!(principal.credential_id, Some(format!("jwt:{ISS}")));
    assert!(principal.scopes.is_empty());
}

#[test]
fn expired_tokens_are_refused_after_the_leeway() {
    let auth = hs256_auth();
    let token = hs256(with(claims(), json!({"exp": NOW - 10})));
    // Within the default 30 s leeway.
    assert!(auth.authenticate(&bearer(&token), NOW).is_ok());
    let err = token_error(auth.authenticate(&bearer(&token), NOW + 20));
    assert_eq!(err, TokenError::Expired { exp: NOW - 10, now: NOW + 20, leeway_s: 30 });
    assert!(err.to_string().starts_with("expired at"), "{err}");
}

#[test]
fn replay_verifies_at_the_recorded_time() {
    let auth = hs256_auth();
    let token = hs256(claims());
    assert!(auth.authenticate(&bearer(&token), NOW).is_ok());
    assert!(matches!(token_error(auth.authenticate(&bearer(&token), NOW + 3600)), TokenError::Expired { .. }));
}

#[test]
fn exp_is_required_unless_configured_otherwise() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    let token = hs256(c);
    assert_eq!(token_error(hs256_auth().authenticate(&bearer(&token), NOW)), TokenError::MissingClaim("exp".into()));
    let lenient = auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\nsecret_env = \"JWT_SECRET\"\nrequire_exp = false"), &[]);
    assert!(lenient.authenticate(&bearer(&token), NOW).is_ok());
}

#[test]
fn not_before_is_checked_with_leeway() {
    let auth = auth(&format!("leeway_s = 5\n[[jwt]]\nissuer = \"{ISS}\"\nsecret_env = \"JWT_SECRET\""), &[]);
    let token = hs256(with(claims(), json!({"nbf": NOW + 60})));
    let err = token_error(auth.authenticate(&bearer(&token), NOW));
    assert_eq!(err, TokenError::NotYetValid { nbf: NOW + 60, now: NOW, leeway_s: 5 });
    assert!(auth.authenticate(&bearer(&token), NOW + 56).is_ok());
}

#[test]
fn audience_must_match_when_configured() {
    let auth = hs256_auth();
    let wrong = hs256(with(claims(), json!({"aud": "billing-api"})));
    assert!(matches!(token_error(auth.authenticate(&bearer(&wrong), NOW)), TokenError::WrongAudience { .. }));
    let listed = hs256(with(claims(), json!({"aud": ["billing-api", "invoices-api"]})));
    assert!(auth.authenticate(&bearer(&listed), NOW).is_ok());
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(token_error(auth.authenticate(&bearer(&hs256(c)), NOW)), TokenError::MissingClaim("aud".into()));
}

#[test]
fn unknown_or_missing_issuer_is_refused() {
    let auth = hs256_auth();
    let other = hs256(with(claims(), json!({"iss": "https://evil.example/"})));
    let err = token_error(auth.authenticate(&bearer(&other), NOW));
    assert_eq!(err, TokenError::UnknownIssuer("\"https://evil.example/\"".into()));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("iss");
    assert_eq!(token_error(auth.authenticate(&bearer(&hs256(c)), NOW)), TokenError::MissingIssuer);
}

#[test]
fn bad_signatures_are_refused() {
    let auth = hs256_auth();
    let forged = sign(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(b"another secret, also 32 bytes long!"),
        json!({}),
        claims(),
    );
    assert_eq!(token_error(auth.authenticate(&bearer(&forged), NOW)), TokenError::BadSignature);

    // A valid signature over other claims: swap in a payload naming another subject.
    let good = hs256(claims());
    let evil_payload = b64(with(claims(), json!({"sub": "mallory"})).to_string().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
    assert_eq!(token_error(auth.authenticate(&bearer(&tampered), NOW)), TokenError::BadSignature);
}

#[test]
fn unsigned_and_malformed_tokens_are_refused() {
    let auth = hs256_auth();
    let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims().to_string().as_bytes()));
    assert_eq!(
        token_error(auth.authenticate(&bearer(&none), NOW)),
        TokenError::UnsupportedAlgorithm("\"none\"".into())
    );
    for bad in ["opaque-token", "a.b", "a.b.c", "a.b.c.d.e"] {
        assert!(matches!(token_error(auth.authenticate(&bearer(bad), NOW)), TokenError::Malformed(_)), "{bad}");
    }
    let crit = sign(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        json!({"crit": ["exp"]}),
        claims(),
    );
    assert!(matches!(token_error(auth.authenticate(&bearer(&crit), NOW)), TokenError::Malformed(_)));
}

#[test]
fn error_messages_never_contain_the_token() {
    let auth = hs256_auth();
    let expired = hs256(with(claims(), json!({"exp": NOW - 1000})));
    let forged = format!("{}x", &expired[..expired.len() - 1]);
    for token in [expired.as_str(), forged.as_str(), "opaque-secret-token-value"] {
        let message = auth.authenticate(&bearer(token), NOW).unwrap_err().to_string();
        let signature = token.rsplit('.').next().unwrap();
        assert!(!message.contains(token) && !message.contains(signature), "{message}");
        assert!(message.starts_with("invalid bearer token: "), "{message}");
    }
}

// -- JWT: RS256, ES256, keys ----------------------------------------------------------

fn rs256_auth() -> Authenticator {
    auth(
        &format!(
            r#"
            [[jwt]]
            issuer = "{ISS}"
            public_key_file = "keys/rsa.pub"
            kid = "k1"

            [[jwt.keys]]
            kid = "k2"
            public_key_file = "keys/rsa2.pub"
            "#
        ),
        &[("keys/rsa.pub", RSA_PUB), ("keys/rsa2.pub", RSA2_PUB)],
    )
}

#[test]
fn rs256_tokens_verify_and_select_keys_by_kid() {
    let auth = rs256_auth();
    let principal = auth.authenticate(&bearer(&rs256(json!({"kid": "k1"}), claims())), NOW).unwrap();
    assert_eq!(principal.id, "alice");
    // Without a kid every RS256 key is tried.
    assert!(auth.authenticate(&bearer(&rs256(json!({}), claims())), NOW).is_ok());
    // The kid of the other key: its key does not verify the signature.
    assert_eq!(
        token_error(auth.authenticate(&bearer(&rs256(json!({"kid": "k2"}), claims())), NOW)),
        TokenError::BadSignature
    );
    // A kid no key has.
    let err = token_error(auth.authenticate(&bearer(&rs256(json!({"kid": "k9"}), claims())), NOW));
    assert!(matches!(&err, TokenError::NoKey { kid: Some(k), .. } if k == "\"k9\""), "{err:?}");
}

#[test]
fn hs256_token_against_an_rs256_key_is_refused() {
    // The classic algorithm-confusion attack: sign HS256 with the public key as secret.
    let auth = rs256_auth();
    let forged = sign(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUB.as_bytes()),
        json!({"kid": "k1"}),
        claims(),
    );
    let err = token_error(auth.authenticate(&bearer(&forged), NOW));
    assert!(matches!(&err, TokenError::NoKey { algorithm, .. } if algorithm == "HS256"), "{err:?}");
    // And an RS256 token against an HS256-only issuer.
    let err = token_error(hs256_auth().authenticate(&bearer(&rs256(json!({}), claims())), NOW));
    assert!(matches!(&err, TokenError::NoKey { algorithm, .. } if algorithm == "RS256"), "{err:?}");
}

#[test]
fn es256_tokens_verify() {
    let auth = auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\npublic_key_file = \"ec.pub\""), &[("ec.pub", EC_PUB)]);
    let principal = auth.authenticate(&bearer(&es256(claims())), NOW).unwrap();
    assert_eq!(principal.id, "alice");
    let wrong = auth.authenticate(&bearer(&es256(with(claims(), json!({"exp": NOW - 100})))), NOW);
    assert!(matches!(token_error(wrong), TokenError::Expired { .. }));
}

#[test]
fn jwks_files_provide_rsa_and_ec_keys() {
    let rsa = jsonwebtoken::DecodingKey::from_rsa_pem(RSA_PUB.as_bytes()).unwrap();
    let (n, e) =
        (DEFAULT_PROVIDER.key_utils.rsa_pub_components_from_public_key)(rsa.try_get_as_bytes().unwrap()).unwrap();
    let ec = jsonwebtoken::DecodingKey::from_ec_pem(EC_PUB.as_bytes()).unwrap();
    let point = ec.try_get_as_bytes().unwrap();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": b64(&n), "e": b64(&e)},
        {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&n), "e": b64(&e)},
        {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}
    ]});
    let auth =
        auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\njwks_file = \"jwks.json\""), &[("jwks.json", &jwks.to_string())]);
    assert!(auth.authenticate(&bearer(&rs256(json!({"kid": "r1"}), claims())), NOW).is_ok());
    assert!(auth.authenticate(&bearer(&es256(claims())), NOW).is_ok());
    assert!(matches!(
        token_error(auth.authenticate(&bearer(&rs256(json!({"kid": "enc"}), claims())), NOW)),
        TokenError::NoKey { .. }
    ));
}

// -- JWT: claims → principal ----------------------------------------------------------

#[test]
fn act_claim_makes_an_agent_acting_for_the_subject() {
    let token = hs256(with(claims(), json!({"act": {"sub": "assistant-7", "act": {"sub": "orchestrator"}}})));
    let principal = hs256_auth().authenticate(&bearer(&token), NOW).unwrap();
    assert_eq!(principal.kind, PrincipalKind::Agent);
    assert_eq!(principal.id, "assistant-7");
    assert_eq!(principal.on_behalf_of.as_deref(), Some("alice"));

    for bad in [json!("assistant"), json!({"client_id": "x"}), json!({"sub": ""})] {
        let token = hs256(with(claims(), json!({"act": bad})));
        let err = token_error(hs256_auth().authenticate(&bearer(&token), NOW));
        assert!(matches!(&err, TokenError::InvalidClaim { claim, .. } if claim == "act"), "{err:?}");
    }
}

#[test]
fn scopes_come_from_a_string_or_an_array() {
    let auth = hs256_auth();
    let scp = hs256(with(claims(), json!({"scp": ["a:read", "b:write", "a:read"]})));
    assert_eq!(auth.authenticate(&bearer(&scp), NOW).unwrap().scopes, ["a:read", "b:write"]);
    let scopes = hs256(with(claims(), json!({"scopes": "x  y"})));
    assert_eq!(auth.authenticate(&bearer(&scopes), NOW).unwrap().scopes, ["x", "y"]);
    let bad = hs256(with(claims(), json!({"scope": 3})));
    assert!(matches!(token_error(auth.authenticate(&bearer(&bad), NOW)), TokenError::InvalidClaim { .. }));

    let custom = auth_with(r#"scope_claim = "permissions""#);
    let token = hs256(with(claims(), json!({"scope": "ignored", "permissions": ["p1"]})));
    assert_eq!(custom.authenticate(&bearer(&token), NOW).unwrap().scopes, ["p1"]);
}

fn auth_with(extra: &str) -> Authenticator {
    auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\nsecret_env = \"JWT_SECRET\"\n{extra}"), &[])
}

#[test]
fn kind_comes_from_the_issuer_or_a_claim() {
    let service = auth_with(r#"kind = "service""#);
    assert_eq!(service.authenticate(&bearer(&hs256(claims())), NOW).unwrap().kind, PrincipalKind::Service);

    let by_claim = auth_with(r#"kind_claim = "principal_type""#);
    let token = hs256(with(claims(), json!({"principal_type": "service"})));
    assert_eq!(by_claim.authenticate(&bearer(&token), NOW).unwrap().kind, PrincipalKind::Service);
    let other = hs256(with(claims(), json!({"principal_type": "Bearer"})));
    assert_eq!(by_claim.authenticate(&bearer(&other), NOW).unwrap().kind, PrincipalKind::User);
}

#[test]
fn sub_is_required() {
    let mut c = claims();
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(token_error(hs256_auth().authenticate(&bearer(&hs256(c)), NOW)), TokenError::MissingClaim("sub".into()));
}

// -- API keys -------------------------------------------------------------------------

const API_KEY: &str = "pk_live_7Hq2mZr9VbX4";

fn api_key_auth() -> Authenticator {
    let hash = crate::sha256_hex(API_KEY.as_bytes());
    auth(
        &format!(
            r#"
            [[api_keys]]
            name = "crm-key-2"
            sha256 = "{hash}"
            id = "crm-sync"
            scopes = ["contacts:read"]
            on_behalf_of = "acme-admin"
            claims = {{ team = "crm" }}
            "#
        ),
        &[],
    )
}

#[test]
fn api_keys_are_found_by_hash_in_either_header() {
    let auth = api_key_auth();
    for req in [request(&[("x-api-key", API_KEY)]), request(&[("authorization", &format!("ApiKey {API_KEY}"))])] {
        let principal = auth.authenticate(&req, NOW).unwrap();
        assert_eq!(principal.kind, PrincipalKind::Service);
        assert_eq!(principal.id, "crm-sync");
        assert_eq!(principal.scopes, ["contacts:read"]);
        assert_eq!(principal.on_behalf_of.as_deref(), Some("acme-admin"));
        assert_eq!(principal.claims, [("team".into(), "crm".into())]);
        assert_eq!(principal.credential_id.as_deref(), Some("crm-key-2"));
    }
}

#[test]
fn unknown_api_keys_are_refused_without_echoing_them() {
    let auth = api_key_auth();
    let err = auth.authenticate(&request(&[("x-api-key", "pk_live_guessed")]), NOW).unwrap_err();
    assert_eq!(err, AuthError::UnknownApiKey);
    assert!(!err.to_string().contains("pk_live"), "{err}");
    let err = auth.authenticate(&request(&[("x-api-key", "  ")]), NOW).unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
    let err = auth.authenticate(&request(&[("x-api-key", API_KEY), ("x-api-key", API_KEY)]), NOW).unwrap_err();
    assert!(matches!(err, AuthError::Malformed(_)), "{err:?}");
}

#[test]
fn the_api_key_header_is_configurable() {
    let hash = crate::sha256_hex(API_KEY.as_bytes());
    let auth = auth(
        &format!(
            "api_key_header = \"X-Partner-Key\"\n[[api_keys]]\nname = \"k\"\nsha256 = \"sha256:{hash}\"\nid = \"p\"\nkind = \"user\""
        ),
        &[],
    );
    let principal = auth.authenticate(&request(&[("x-partner-key", API_KEY)]), NOW).unwrap();
    assert_eq!((principal.kind, principal.id.as_str()), (PrincipalKind::User, "p"));
    // The default header is then not looked at.
    assert_eq!(auth.authenticate(&request(&[("x-api-key", API_KEY)]), NOW).unwrap(), Principal::default());
}

// -- Trusted headers ------------------------------------------------------------------

fn trusted_auth() -> Authenticator {
    auth(
        r#"
        [trusted_headers]
        id = "X-Auth-User"
        kind = "x-auth-kind"
        scopes = "x-auth-scopes"
        on_behalf_of = "x-auth-on-behalf-of"
        "#,
        &[],
    )
}

#[test]
fn trusted_headers_give_the_asserted_principal() {
    let auth = trusted_auth();
    let req = request(&[
        ("x-auth-user", "bot-1"),
        ("x-auth-kind", "agent"),
        ("x-auth-scopes", "a:read, b:write c"),
        ("x-auth-on-behalf-of", "alice"),
    ]);
    let principal = auth.authenticate(&req, NOW).unwrap();
    assert_eq!(principal.kind, PrincipalKind::Agent);
    assert_eq!(principal.id, "bot-1");
    assert_eq!(principal.scopes, ["a:read", "b:write", "c"]);
    assert_eq!(principal.on_behalf_of.as_deref(), Some("alice"));
    assert_eq!(principal.credential_id.as_deref(), Some("trusted-headers"));

    let plain = auth.authenticate(&request(&[("x-auth-user", "bob")]), NOW).unwrap();
    assert_eq!((plain.kind, plain.id.as_str()), (PrincipalKind::User, "bob"));
}

#[test]
fn inconsistent_trusted_headers_are_refused() {
    let auth = trusted_auth();
    for headers in [
        vec![("x-auth-scopes", "admin")],
        vec![("x-auth-user", "")],
        vec![("x-auth-user", "bob"), ("x-auth-kind", "root")],
        vec![("x-auth-user", "bob"), ("x-auth-user", "eve")],
        // Finding: a repeated scopes header was merged (a client's copy appended behind
        // the proxy's widened the grant), while repeated id and kind headers were refused.
        vec![("x-auth-user", "bob"), ("x-auth-scopes", "a:read"), ("x-auth-scopes", "admin")],
        vec![("x-auth-user", "bob"), ("x-auth-kind", "user"), ("x-auth-kind", "agent")],
    ] {
        let err = auth.authenticate(&request(&headers), NOW).unwrap_err();
        assert!(matches!(err, AuthError::TrustedHeaders(_)), "{headers:?}: {err:?}");
    }
}

// -- Presence, precedence, stripping --------------------------------------------------

fn everything_auth() -> Authenticator {
    let hash = crate::sha256_hex(API_KEY.as_bytes());
    auth(
        &format!(
            r#"
            strip_credentials = true
            [[jwt]]
            issuer = "{ISS}"
            secret_env = "JWT_SECRET"
            [[api_keys]]
            name = "k"
            sha256 = "{hash}"
            id = "svc"
            [trusted_headers]
            id = "x-auth-user"
            "#
        ),
        &[],
    )
}

#[test]
fn no_credential_is_anonymous() {
    let auth = everything_auth();
    for req in [request(&[]), request(&[("authorization", "Basic dXNlcjpwYXNz")]), request(&[("cookie", "a=b")])] {
        let principal = auth.authenticate(&req, NOW).unwrap();
        assert_eq!(principal, Principal::default());
        assert_eq!(principal.kind, PrincipalKind::Anonymous);
    }
    // Nothing configured: even a bearer token is left for the upstream.
    let none = Authenticator::default();
    assert!(!none.is_configured());
    assert_eq!(none.authenticate(&bearer("whatever"), NOW).unwrap(), Principal::default());
}

#[test]
fn empty_or_repeated_authorization_is_malformed() {
    let auth = everything_auth();
    for req in [
        request(&[("authorization", "Bearer")]),
        request(&[("authorization", "Bearer   ")]),
        request(&[("authorization", &format!("Bearer {}", hs256(claims()))), ("authorization", "Bearer x")]),
    ] {
        assert!(matches!(auth.authenticate(&req, NOW), Err(AuthError::Malformed(_))), "{req:?}");
    }
}

#[test]
fn two_credentials_at_once_are_ambiguous() {
    let auth = everything_auth();
    let token = hs256(claims());
    let cases = [
        request(&[("authorization", &format!("Bearer {token}")), ("x-api-key", API_KEY)]),
        request(&[("x-api-key", API_KEY), ("x-auth-user", "bob")]),
        request(&[("authorization", &format!("ApiKey {API_KEY}")), ("x-api-key", API_KEY)]),
    ];
    for req in cases {
        let err = auth.authenticate(&req, NOW).unwrap_err();
        assert!(matches!(err, AuthError::Ambiguous(_)), "{err:?}");
        assert!(err.to_string().starts_with("ambiguous credentials: "), "{err}");
        assert!(!err.to_string().contains(API_KEY) && !err.to_string().contains(&token), "{err}");
    }
}

#[test]
fn authenticate_and_strip_removes_the_consumed_headers() {
    let auth = everything_auth();
    let mut req = request(&[("authorization", &format!("Bearer {}", hs256(claims()))), ("accept", "*/*")]);
    assert_eq!(auth.authenticate_and_strip(&mut req, NOW).unwrap().id, "alice");
    assert_eq!(req.headers, [("accept".to_string(), "*/*".to_string())]);

    let mut req = request(&[("X-API-Key", API_KEY), ("accept", "*/*")]);
    assert_eq!(auth.authenticate_and_strip(&mut req, NOW).unwrap().id, "svc");
    assert_eq!(req.headers.len(), 1);

    // A failure leaves the request alone.
    let mut req = request(&[("x-api-key", "wrong")]);
    assert!(auth.authenticate_and_strip(&mut req, NOW).is_err());
    assert_eq!(req.headers.len(), 1);

    // With stripping off, nothing is removed.
    let keep = hs256_auth();
    assert!(!keep.strips_credentials());
    let mut req = bearer(&hs256(with(claims(), json!({}))));
    keep.authenticate_and_strip(&mut req, NOW).unwrap();
    assert_eq!(req.headers.len(), 1);
}

/// Finding: with `strip_credentials = true` but no `[[identity.jwt]]`, a bearer token was
/// not a credential to the authenticator, so it was left in the request and forwarded.
/// "Strip credentials" now removes `Authorization` whatever read it, or nothing did.
#[test]
fn strip_credentials_removes_an_authorization_no_identity_read() {
    let hash = crate::sha256_hex(API_KEY.as_bytes());
    let keys = auth(
        &format!("strip_credentials = true\n[[api_keys]]\nname = \"k\"\nsha256 = \"{hash}\"\nid = \"svc\"\n"),
        &[],
    );
    for (headers, id) in [
        (vec![("authorization", "Bearer some.unverified.token"), ("accept", "*/*")], ""),
        (vec![("authorization", "Basic dXNlcjpwYXNz"), ("accept", "*/*")], ""),
        (vec![("authorization", "Bearer some.unverified.token"), ("x-api-key", API_KEY), ("accept", "*/*")], "svc"),
    ] {
        let mut req = request(&headers);
        assert_eq!(keys.authenticate_and_strip(&mut req, NOW).unwrap().id, id);
        assert_eq!(req.headers, [("accept".to_string(), "*/*".to_string())], "{headers:?}");
    }
    // Nothing configured at all, stripping on: still removed.
    let bare = auth("strip_credentials = true", &[]);
    let mut req = request(&[("Authorization", "Bearer x.y.z")]);
    bare.authenticate_and_strip(&mut req, NOW).unwrap();
    assert!(req.headers.is_empty());
    assert_eq!(bare.credential_headers(), ["authorization"]);
    assert_eq!(keys.credential_headers(), ["authorization", "x-api-key"]);
}

// -- Configuration errors -------------------------------------------------------------

fn config_error(toml_text: &str) -> String {
    try_auth(toml_text, &[("short.txt", "too short\n"), ("ec.pub", EC_PUB), ("secret.txt", &format!("{SECRET}\n"))])
        .unwrap_err()
        .to_string()
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        ("[[jwt]]\nissuer = \"i\"\npublic_key_file = \"missing.pem\"", "identity.jwt[0].public_key_file: cannot read "),
        (
            "[[jwt]]\nissuer = \"i\"\nsecret_env = \"NOPE\"",
            "identity.jwt[0].secret_env: environment variable NOPE is not set",
        ),
        ("[[jwt]]\nissuer = \"i\"\nsecret_file = \"short.txt\"", "identity.jwt[0].secret_file: the secret is 9 bytes"),
        ("[[jwt]]\nissuer = \"i\"\npublic_key_file = \"secret.txt\"", "identity.jwt[0].public_key_file: "),
        ("[[jwt]]\nissuer = \"i\"\npublic_key_file = \"ec.pub\"\nalgorithm = \"RS256\"", "cannot verify RS256"),
        ("[[jwt]]\nissuer = \"i\"", "identity.jwt[0]: has no key"),
        ("[[jwt]]\nissuer = \"i\"\n[[jwt.keys]]\nkid = \"a\"", "identity.jwt[0].keys[0]: needs one of"),
        ("[[jwt]]\nissuer = \"i\"\nsecret_env = \"JWT_SECRET\"\nkind = \"anonymous\"", "identity.jwt[0].kind"),
        (
            "[[jwt]]\nissuer = \"i\"\nsecret_env = \"JWT_SECRET\"\n[[jwt]]\nissuer = \"i\"\nsecret_env = \"JWT_SECRET\"",
            "identity.jwt[1].issuer: ",
        ),
        (
            "[[api_keys]]\nname = \"k\"\nsha256 = \"abc\"\nid = \"x\"",
            "identity.api_keys[0].sha256: expected 64 hex digits",
        ),
        ("api_key_header = \"authorization\"", "identity.api_key_header"),
        ("[trusted_headers]\nid = \"bad header\"", "identity.trusted_headers.id"),
    ];
    for (text, expected) in cases {
        let message = config_error(text);
        assert!(message.contains(expected), "{text}\n→ {message}");
    }
    // A file that cannot be read: the io error is the source (issue 17).
    let err = try_auth("[[jwt]]\nissuer = \"i\"\njwks_file = \"missing.json\"", &[]).unwrap_err();
    let io = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<std::io::Error>()).expect("an io error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().starts_with("identity.jwt[0].jwks_file: cannot read "), "{err}");
    // A secret file with its trailing newline is fine.
    assert!(
        try_auth("[[jwt]]\nissuer = \"i\"\nsecret_file = \"secret.txt\"", &[("secret.txt", &format!("{SECRET}\n"))])
            .is_ok()
    );
}

#[test]
fn unknown_config_keys_are_refused() {
    let err = toml::from_str::<IdentityConfig>("[[jwt]]\nissuer = \"i\"\nsecret = \"x\"").unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
    let err = toml::from_str::<IdentityConfig>("strip_credential = true").unwrap_err();
    assert!(err.to_string().contains("strip_credential"), "{err}");
}

#[test]
fn the_authenticator_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Authenticator>();
}

#[test]
fn debug_output_holds_no_secret() {
    let text = format!("{:?}", hs256_auth());
    assert!(!text.contains(SECRET) && !text.contains("0123456789abcdef"), "{text}");
}

// -- Several issuers --------------------------------------------------------------------

const ISS2: &str = "https://partner-idp.test/";

fn two_issuers(prefixes: [Option<&str>; 2]) -> Result<Authenticator, IdentityConfigError> {
    let entry = |iss: &str, prefix: Option<&str>| {
        let prefix = prefix.map(|p| format!("id_prefix = {p:?}\n")).unwrap_or_default();
        format!("[[jwt]]\nissuer = {iss:?}\nsecret_env = \"JWT_SECRET\"\n{prefix}")
    };
    try_auth(&(entry(ISS, prefixes[0]) + &entry(ISS2, prefixes[1])), &[])
}

/// Finding: two issuers that issue the same `sub` gave the same principal. Now each needs
/// its own prefix, which is part of every id (and on-behalf-of user) it vouches for.
#[test]
fn two_issuers_never_give_the_same_principal() {
    for (prefixes, expected) in [
        ([None, None], "identity.jwt[0].id_prefix: 2 JWT issuers are configured"),
        ([Some("corp:"), None], "identity.jwt[1].id_prefix: "),
        ([Some("corp:"), Some("corp:")], "identity.jwt[1].id_prefix: \"corp:\" is also the id_prefix"),
        ([Some("corp"), Some("partner:")], "must end with `:`"),
        ([Some("a:b:"), Some("partner:")], "must be 1 to 63 letters"),
        ([Some(":"), Some("partner:")], "must be 1 to 63 letters"),
    ] {
        let err = two_issuers(prefixes).unwrap_err().to_string();
        assert!(err.contains(expected), "{prefixes:?}: {err}");
    }
    let auth = two_issuers([Some("corp:"), Some("partner:")]).unwrap();
    let token = |iss: &str| hs256(json!({"iss": iss, "sub": "alice", "exp": NOW + 60}));
    let ours = auth.authenticate(&bearer(&token(ISS)), NOW).unwrap();
    let theirs = auth.authenticate(&bearer(&token(ISS2)), NOW).unwrap();
    assert_eq!((ours.id.as_str(), theirs.id.as_str()), ("corp:alice", "partner:alice"));
    assert_ne!(ours, theirs);
    // An agent acting for a user: both are the issuer's, so both carry its prefix.
    let agent = hs256(json!({"iss": ISS2, "sub": "alice", "act": {"sub": "bot"}, "exp": NOW + 60}));
    let agent = auth.authenticate(&bearer(&agent), NOW).unwrap();
    assert_eq!((agent.id.as_str(), agent.on_behalf_of.as_deref()), ("partner:bot", Some("partner:alice")));
    // One issuer needs no prefix, and may have one.
    let one = auth_one(None);
    assert_eq!(one.authenticate(&bearer(&hs256(claims())), NOW).unwrap().id, "alice");
    assert_eq!(auth_one(Some("corp:")).authenticate(&bearer(&hs256(claims())), NOW).unwrap().id, "corp:alice");
}

fn auth_one(prefix: Option<&str>) -> Authenticator {
    let prefix = prefix.map(|p| format!("id_prefix = {p:?}\n")).unwrap_or_default();
    auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\nsecret_env = \"JWT_SECRET\"\n{prefix}"), &[])
}

// -- JWT: keys fetched from the issuer (jwks_url, discovery) ---------------------------

/// The RSA (`r1`) and P-256 (`e1`) test keys as a JWKS document.
fn test_jwks(kids: &[&str]) -> String {
    let rsa = jsonwebtoken::DecodingKey::from_rsa_pem(RSA_PUB.as_bytes()).unwrap();
    let (n, e) =
        (DEFAULT_PROVIDER.key_utils.rsa_pub_components_from_public_key)(rsa.try_get_as_bytes().unwrap()).unwrap();
    let ec = jsonwebtoken::DecodingKey::from_ec_pem(EC_PUB.as_bytes()).unwrap();
    let point = ec.try_get_as_bytes().unwrap();
    let mut keys = Vec::new();
    for kid in kids {
        match *kid {
            "r1" => keys.push(json!({"kty": "RSA", "kid": "r1", "alg": "RS256", "n": b64(&n), "e": b64(&e)})),
            "e1" => keys.push(
                json!({"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
            ),
            other => panic!("no test key {other}"),
        }
    }
    json!({ "keys": keys }).to_string()
}

fn remote_auth(extra: &str) -> Authenticator {
    auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\njwks_url = \"https://idp.example/jwks.json\"\n{extra}"), &[])
}

fn es256_kid(kid: &str) -> String {
    sign(
        jsonwebtoken::Algorithm::ES256,
        &EncodingKey::from_ec_pem(EC_KEY.as_bytes()).unwrap(),
        json!({"kid": kid}),
        claims(),
    )
}

#[test]
fn fetched_keys_verify_once_installed_and_not_before() {
    let auth = remote_auth("");
    let rings = auth.key_rings();
    assert_eq!(rings.len(), 1);
    let ring = &rings[0];
    assert_eq!(ring.issuer(), ISS);
    let token = rs256(json!({"kid": "r1"}), claims());
    let err = token_error(auth.authenticate(&bearer(&token), NOW));
    assert!(matches!(err, TokenError::KeysNotLoaded { .. }), "{err:?}");
    assert!(err.to_string().contains("not loaded yet"), "{err}");
    // Not loaded: every token of the issuer asks for the ring.
    assert!(auth.remote_keys_wanted(&bearer(&token).headers).is_some());

    let installed = ring.install(test_jwks(&["r1"]).as_bytes(), "https://idp.example/jwks.json", SystemTime::now());
    assert_eq!(installed.unwrap().keys, 1);
    assert!(auth.authenticate(&bearer(&token), NOW).is_ok());
    assert!(auth.remote_keys_wanted(&bearer(&token).headers).is_none(), "a known kid needs no fetch");
    // A kid the ring does not hold (a rotation, or a forgery) asks for a refresh; until one
    // brings the key, the token is refused.
    let rotated = es256_kid("e1");
    assert!(auth.remote_keys_wanted(&bearer(&rotated).headers).is_some());
    assert!(matches!(token_error(auth.authenticate(&bearer(&rotated), NOW)), TokenError::NoKey { .. }));
    ring.install(test_jwks(&["r1", "e1"]).as_bytes(), "https://idp.example/jwks.json", SystemTime::now()).unwrap();
    assert!(auth.authenticate(&bearer(&rotated), NOW).is_ok());
    assert!(auth.authenticate(&bearer(&token), NOW).is_ok());
    // Other issuers' tokens and other credentials never ask for a fetch.
    let other = rs256(json!({"kid": "zz"}), with(claims(), json!({"iss": "https://other.example/"})));
    assert!(auth.remote_keys_wanted(&bearer(&other).headers).is_none());
    assert!(auth.remote_keys_wanted(&request(&[("authorization", "Basic abc")]).headers).is_none());
    assert!(auth.remote_keys_wanted(&bearer("not.a-token").headers).is_none());
}

#[test]
fn a_failed_fetch_keeps_the_last_good_keys() {
    let auth = remote_auth("");
    let ring = &auth.key_rings()[0];
    ring.install(test_jwks(&["r1"]).as_bytes(), "u", SystemTime::now()).unwrap();
    assert!(ring.install(b"{\"keys\": []}", "u", SystemTime::now()).is_err());
    assert!(ring.install(b"<html>", "u", SystemTime::now()).is_err());
    ring.fail("connection refused".into());
    assert!(auth.authenticate(&bearer(&rs256(json!({"kid": "r1"}), claims())), NOW).is_ok());
    let status = ring.status(SystemTime::now());
    assert!(status.loaded);
    assert_eq!(status.keys, 1);
    assert_eq!(status.last_error.as_deref(), Some("connection refused"));
}

#[test]
fn weak_symmetric_and_unknown_fetched_keys_are_skipped_with_a_reason() {
    let auth = remote_auth("");
    let ring = &auth.key_rings()[0];
    let mut doc: Value = serde_json::from_str(&test_jwks(&["e1"])).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    keys.push(json!({"kty": "oct", "kid": "h", "k": b64(SECRET.as_bytes())}));
    keys.push(json!({"kty": "RSA", "kid": "small", "n": b64(&[0xc1; 128]), "e": "AQAB"}));
    keys.push(json!({"kty": "EC", "kid": "es512", "crv": "P-521", "x": "AA", "y": "AA"}));
    keys.push(json!({"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "AA", "e": "AQAB"}));
    let installed = ring.install(doc.to_string().as_bytes(), "u", SystemTime::now()).unwrap();
    assert_eq!(installed.keys, 1);
    assert_eq!(installed.skipped.len(), 4, "{:?}", installed.skipped);
    assert!(
        installed.skipped.iter().any(|s| s.contains("\"small\"") && s.contains("1024 bits")),
        "{:?}",
        installed.skipped
    );
    // An HS256 token cannot use a fetched RSA key as an HMAC secret.
    let hs = hs256(claims());
    assert!(matches!(token_error(auth.authenticate(&bearer(&hs), NOW)), TokenError::NoKey { .. }));
}

#[test]
fn unknown_kid_fetches_are_limited_by_the_cooldown() {
    let auth = remote_auth("refetch_cooldown_s = 10");
    let ring = &auth.key_rings()[0];
    let t0 = Instant::now();
    assert_eq!(ring.claim_refetch(t0), Claim::Lead);
    // While it is in flight, others join it instead of fetching again.
    assert_eq!(ring.claim_refetch(t0), Claim::Join);
    assert_eq!(ring.claim_refresh(t0), Claim::Join);
    ring.fail("down".into());
    assert_eq!(ring.completed(), 1);
    for s in [0, 1, 9] {
        assert_eq!(ring.claim_refetch(t0 + Duration::from_secs(s)), Claim::Skip, "at {s}s");
    }
    assert_eq!(ring.claim_refetch(t0 + Duration::from_secs(10)), Claim::Lead);
    ring.install(test_jwks(&["r1"]).as_bytes(), "u", SystemTime::now()).unwrap();
    // A scheduled refresh is not held back by the cooldown, and does not start one.
    assert_eq!(ring.claim_refresh(t0 + Duration::from_secs(11)), Claim::Lead);
    ring.install(test_jwks(&["r1"]).as_bytes(), "u", SystemTime::now()).unwrap();
    assert_eq!(ring.claim_refetch(t0 + Duration::from_secs(19)), Claim::Skip);
    assert_eq!(ring.claim_refetch(t0 + Duration::from_secs(20)), Claim::Lead);
}

#[test]
fn cache_control_is_honoured_within_bounds() {
    let auth = remote_auth("refresh_interval_s = 600");
    let source = auth.key_rings()[0].source().clone();
    let s = Duration::from_secs;
    assert_eq!(source.next_refresh(None), s(600));
    assert_eq!(source.next_refresh(Some("public, max-age=120")), s(120));
    assert_eq!(source.next_refresh(Some("max-age=5")), s(30));
    assert_eq!(source.next_refresh(Some("no-store")), s(30));
    assert_eq!(source.next_refresh(Some("max-age=86400")), s(600));
    assert_eq!(source.next_refresh(Some("private")), s(600));
    assert_eq!(source.retry_after_failure(), s(30));
}

#[test]
fn a_reload_keeps_the_keys_of_an_unchanged_source() {
    // Two generations of one config file: same folder, same source.
    let dir = dir_with(&[]);
    let build = |url: &str| {
        let text = format!("[[jwt]]\nissuer = \"{ISS}\"\njwks_url = \"{url}\"");
        Authenticator::build(&toml::from_str(&text).unwrap(), &dir, &|_| None).unwrap()
    };
    let old = build("https://idp.example/jwks.json");
    old.key_rings()[0].install(test_jwks(&["r1"]).as_bytes(), "u", SystemTime::now()).unwrap();
    let new = build("https://idp.example/jwks.json");
    new.key_rings()[0].adopt(&old.key_rings()[0]);
    assert!(new.authenticate(&bearer(&rs256(json!({"kid": "r1"}), claims())), NOW).is_ok());
    let moved = build("https://idp.example/v2/jwks.json");
    moved.key_rings()[0].adopt(&old.key_rings()[0]);
    assert!(!moved.key_rings()[0].is_loaded(), "another URL's keys are not taken over");
}

#[test]
fn discovery_documents_are_checked() {
    let auth = auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\ndiscovery = true"), &[]);
    let source = auth.key_rings()[0].source().clone();
    assert_eq!(
        source.location,
        JwksLocation::Discovery("https://auth.example.com/.well-known/openid-configuration".into())
    );
    let doc = |iss: &str, uri: &str| json!({"issuer": iss, "jwks_uri": uri}).to_string();
    assert_eq!(
        discovered_jwks_uri(doc(ISS, "https://auth.example.com/keys").as_bytes(), ISS).unwrap(),
        "https://auth.example.com/keys"
    );
    let err = discovered_jwks_uri(doc("https://evil.example/", "https://evil.example/k").as_bytes(), ISS).unwrap_err();
    assert!(err.contains("names issuer \"https://evil.example/\""), "{err}");
    let err = discovered_jwks_uri(doc(ISS, "http://auth.example.com/keys").as_bytes(), ISS).unwrap_err();
    assert!(err.contains("must be https://"), "{err}");
    assert!(discovered_jwks_uri(b"{}", ISS).is_err());
    assert!(discovered_jwks_uri(doc(ISS, "http://127.0.0.1:8080/keys").as_bytes(), ISS).is_ok());
}

#[test]
fn remote_key_config_errors_name_the_key() {
    let cases = [
        (
            "jwks_url = \"http://idp.example/jwks.json\"",
            "identity.jwt[0].jwks_url: \"http://idp.example/jwks.json\" must be https://",
        ),
        ("jwks_url = \"ftp://idp.example/\"", "identity.jwt[0].jwks_url"),
        ("jwks_url = \"https://a/\"\ndiscovery = true", "identity.jwt[0].discovery: give either"),
        ("jwks_url = \"https://a/\"\nrefetch_cooldown_s = 0", "identity.jwt[0].refetch_cooldown_s: 0 is out of range"),
        ("jwks_url = \"https://a/\"\nrefresh_interval_s = 1", "identity.jwt[0].refresh_interval_s: 1 is out of range"),
        (
            "refresh_interval_s = 60\nsecret_env = \"JWT_SECRET\"",
            "identity.jwt[0].refresh_interval_s: applies to keys fetched",
        ),
        (
            "jwks_url = \"https://a/\"\n[jwt.tls]\nclient_cert_file = \"c.pem\"",
            "identity.jwt[0].tls: `client_cert_file` and",
        ),
    ];
    for (extra, expected) in cases {
        let err = try_auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\n{extra}"), &[]).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{extra}: {err}");
    }
    let err = try_auth("[[jwt]]\nissuer = \"http://idp.example\"\ndiscovery = true", &[]).unwrap_err().to_string();
    assert!(err.starts_with("identity.jwt[0].discovery: the issuer is where discovery looks"), "{err}");
    // Plain http to a loopback host is allowed (a local identity provider, a test).
    assert!(try_auth(&format!("[[jwt]]\nissuer = \"{ISS}\"\njwks_url = \"http://127.0.0.1:9/jwks\""), &[]).is_ok());
}
