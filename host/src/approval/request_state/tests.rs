//! Sealing and opening request states, key rings from config, canonical digests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::*;
use crate::exchange::{Principal, PrincipalKind};

const NOW: u64 = 1_790_000_000_000;

fn key(id: &str, byte: u8) -> Key {
    Key::new(id, vec![byte; 32]).unwrap()
}

fn ring(keys: Vec<Key>) -> KeyRing {
    KeyRing::new(keys).unwrap()
}

fn agent() -> StatePrincipal {
    StatePrincipal { kind: PrincipalKind::Agent, id: "claude-7".into(), on_behalf_of: Some("alice".into()) }
}

fn digest() -> String {
    call_digest("tools/call", "delete_repo", Some(&json!({"repo": "acme/site", "force": true})))
}

fn payload() -> StatePayload {
    StatePayload {
        approval_id: "apv_0123456789abcdef".into(),
        principal: agent(),
        digest: digest(),
        expires_ms: NOW + 60_000,
        inner: Some("upstream-opaque-state".into()),
    }
}

#[test]
fn a_sealed_state_opens_for_its_caller_and_call() {
    let ring = ring(vec![key("k1", 1)]);
    let token = ring.seal(&payload()).unwrap();
    assert!(token.starts_with("pcs1.k1."), "{token}");
    assert_eq!(token.split('.').count(), 4);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "URL- and JSON-safe: {token}");
    assert_eq!(ring.open(&token, &agent(), &digest(), NOW).unwrap(), payload());
}

#[test]
fn each_failure_has_its_own_error() {
    let ring = ring(vec![key("k1", 1)]);
    let token = ring.seal(&payload()).unwrap();
    assert_eq!(ring.open(&token, &agent(), &digest(), NOW + 60_000), Err(StateError::Expired));
    let mut other = agent();
    other.on_behalf_of = Some("mallory".into());
    assert_eq!(ring.open(&token, &other, &digest(), NOW), Err(StateError::WrongPrincipal));
    let other_kind = StatePrincipal { kind: PrincipalKind::User, ..agent() };
    assert_eq!(ring.open(&token, &other_kind, &digest(), NOW), Err(StateError::WrongPrincipal));
    let other_call = call_digest("tools/call", "delete_repo", Some(&json!({"repo": "acme/prod", "force": true})));
    assert_eq!(ring.open(&token, &agent(), &other_call, NOW), Err(StateError::WrongRequest));
    let stranger = KeyRing::new(vec![key("k1", 2)]).unwrap();
    assert_eq!(stranger.open(&token, &agent(), &digest(), NOW), Err(StateError::BadMac));
    let elsewhere = KeyRing::new(vec![key("k9", 1)]).unwrap();
    assert_eq!(elsewhere.open(&token, &agent(), &digest(), NOW), Err(StateError::UnknownKey));
    let later = token.replacen("pcs1.", "pcs2.", 1);
    assert_eq!(ring.open(&later, &agent(), &digest(), NOW), Err(StateError::UnsupportedVersion));
    for junk in ["", "pcs1", "pcs1.k1.x", "a.b.c.d", "pcs1.k1.x.y.z", "jwt.eyJ.sig"] {
        assert_eq!(ring.open(junk, &agent(), &digest(), NOW), Err(StateError::Malformed), "{junk:?}");
    }
    assert_eq!(ring.open(&"a".repeat(MAX_STATE_CHARS + 1), &agent(), &digest(), NOW), Err(StateError::TooLarge));
}

#[test]
fn a_tampered_payload_fails_the_mac_before_anything_in_it_is_read() {
    let ring = ring(vec![key("k1", 1)]);
    let token = ring.seal(&payload()).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    // Re-encode a payload that names another approval and a far expiry, keep the old MAC.
    let mut forged = payload();
    forged.approval_id = "apv_someone_elses".into();
    forged.expires_ms = u64::MAX;
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
    let tampered = format!("{}.{}.{}.{}", parts[0], parts[1], body, parts[3]);
    assert_eq!(ring.open(&tampered, &agent(), &digest(), NOW), Err(StateError::BadMac));
    // Moving the MAC to another key id fails too: the id is covered.
    let ring2 = KeyRing::new(vec![key("k1", 1), key("k2", 1)]).unwrap();
    let moved = format!("{}.k2.{}.{}", parts[0], parts[2], parts[3]);
    assert_eq!(ring2.open(&moved, &agent(), &digest(), NOW), Err(StateError::BadMac));
    // Every single-character change is refused.
    for i in 0..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(bytes).unwrap();
        assert!(ring.open(&changed, &agent(), &digest(), NOW).is_err(), "change at {i} accepted");
    }
}

#[test]
fn rotation_the_first_key_seals_and_all_open() {
    let old = ring(vec![key("old", 1)]);
    let sealed_before = old.seal(&payload()).unwrap();
    let rotated = ring(vec![key("new", 2), key("old", 1)]);
    assert_eq!(rotated.open(&sealed_before, &agent(), &digest(), NOW).unwrap(), payload());
    let sealed_after = rotated.seal(&payload()).unwrap();
    assert!(sealed_after.starts_with("pcs1.new."));
    assert_eq!(old.open(&sealed_after, &agent(), &digest(), NOW), Err(StateError::UnknownKey));
    let retired = ring(vec![key("new", 2)]);
    assert_eq!(retired.open(&sealed_before, &agent(), &digest(), NOW), Err(StateError::UnknownKey));
    assert_eq!(rotated.key_ids().collect::<Vec<_>>(), ["new", "old"]);
}

#[test]
fn the_principal_binding_ignores_scopes_and_credentials() {
    let mut principal = Principal {
        kind: PrincipalKind::Agent,
        id: "claude-7".into(),
        on_behalf_of: Some("alice".into()),
        scopes: vec!["repo:admin".into()],
        credential_id: Some("key-1".into()),
        ..Principal::default()
    };
    assert_eq!(StatePrincipal::of(&principal), agent());
    principal.credential_id = Some("key-2-renewed".into());
    principal.scopes.clear();
    assert_eq!(StatePrincipal::of(&principal), agent());
}

#[test]
fn an_oversized_inner_state_is_refused_at_sealing() {
    let ring = ring(vec![key("k1", 1)]);
    let big = StatePayload { inner: Some("x".repeat(MAX_STATE_CHARS)), ..payload() };
    assert_eq!(ring.seal(&big), Err(StateError::TooLarge));
}

#[test]
fn an_ephemeral_ring_cannot_open_another_process_states() {
    let a = KeyRing::ephemeral().unwrap();
    let b = KeyRing::ephemeral().unwrap();
    assert!(a.is_ephemeral() && !ring(vec![key("k", 1)]).is_ephemeral());
    let token = a.seal(&payload()).unwrap();
    assert!(a.open(&token, &agent(), &digest(), NOW).is_ok());
    assert_eq!(b.open(&token, &agent(), &digest(), NOW), Err(StateError::BadMac));
}

#[test]
fn error_messages_quote_nothing_from_the_state() {
    let ring = ring(vec![key("k1", 1)]);
    let token = ring.seal(&payload()).unwrap();
    let errors = [
        ring.open(&token, &agent(), &digest(), NOW + 60_000).unwrap_err(),
        ring.open(&token, &agent(), "sha256:00", NOW).unwrap_err(),
        KeyRing::new(vec![key("zz", 1)]).unwrap().open(&token, &agent(), &digest(), NOW).unwrap_err(),
    ];
    for e in errors {
        let text = e.to_string();
        assert!(!text.contains("apv_") && !text.contains("claude") && !text.contains("k1"), "{text}");
    }
}

// Keys ---------------------------------------------------------------------------------------

fn temp_file(contents: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "portcullis-request-state-{}-{}.key",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn keys_are_read_from_files_in_hex_or_base64() {
    let hex = temp_file(&format!("{}\n", "ab".repeat(32)));
    let b64 = temp_file(&STANDARD.encode([7u8; 48]));
    let b64url = temp_file(&URL_SAFE_NO_PAD.encode([0xfbu8; 33]));
    let sources = [
        KeySource::File { id: "hex".into(), path: hex.clone() },
        KeySource::File { id: "b64".into(), path: b64.clone() },
        KeySource::File { id: "url".into(), path: b64url.clone() },
    ];
    let ring = KeyRing::from_config(&sources).unwrap();
    assert_eq!(ring.key_ids().collect::<Vec<_>>(), ["hex", "b64", "url"]);
    // The hex file's key is the bytes 0xab, not the text: a ring built from those bytes opens it.
    let token = ring.seal(&payload()).unwrap();
    let same = KeyRing::new(vec![Key::new("hex", vec![0xab; 32]).unwrap()]).unwrap();
    assert!(same.open(&token, &agent(), &digest(), NOW).is_ok());
    for path in [hex, b64, b64url] {
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn key_errors_name_the_key_and_the_source_never_the_value() {
    let short = temp_file(&"cd".repeat(31));
    let err = KeyRing::from_config(&[KeySource::File { id: "primary".into(), path: short.clone() }]).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, KeyError::TooShort { len: 31, .. }), "{text}");
    assert!(text.contains("`primary`") && text.contains(&short.display().to_string()), "{text}");
    assert!(!text.contains("cdcd"), "{text}");
    std::fs::remove_file(short).unwrap();

    let missing = PathBuf::from("/nonexistent/portcullis/state.key");
    let err = KeyRing::from_config(&[KeySource::File { id: "k".into(), path: missing }]).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/portcullis/state.key"), "{err}");

    let var = "PORTCULLIS_TEST_SURELY_UNSET_REQUEST_STATE_KEY";
    let err = KeyRing::from_config(&[KeySource::Env { id: "k".into(), var: var.into() }]).unwrap_err();
    assert_eq!(err.to_string(), format!("requestState key `k`: environment variable {var} is not set"));
    // PATH is set and is neither hex nor base64 (it has `:`).
    let err = KeyRing::from_config(&[KeySource::Env { id: "k".into(), var: "PATH".into() }]).unwrap_err();
    assert_eq!(err.to_string(), "requestState key `k` (environment variable PATH) is neither hex nor base64");

    assert!(matches!(KeyRing::from_config(&[]), Err(KeyError::NoKeys)));
    assert!(matches!(KeyRing::new(vec![key("a", 1), key("a", 2)]), Err(KeyError::DuplicateId { .. })));
    for bad in ["", "has.dot", "has space", &"x".repeat(33)] {
        assert!(matches!(Key::new(bad, vec![0; 32]), Err(KeyError::BadId { .. })), "{bad:?}");
    }
    assert!(!format!("{:?}", key("k", 0x5a)).contains("90"), "Debug shows no key bytes");
}

// Canonical JSON ------------------------------------------------------------------------------

#[test]
fn canonical_json_sorts_keys_and_drops_whitespace() {
    let a: Value =
        serde_json::from_str(r#"{ "b": [1, {"z": null, "a": "x"}], "a": true, "é": "\u00e9", "B": 1.5 }"#).unwrap();
    assert_eq!(canonical_json(&a), r#"{"B":1.5,"a":true,"b":[1,{"a":"x","z":null}],"é":"é"}"#);
    let b: Value = serde_json::from_str(r#"{"a":true,"B":1.5,"é":"é","b":[1,{"a":"x","z":null}]}"#).unwrap();
    assert_eq!(canonical_digest(&a), canonical_digest(&b));
    assert!(canonical_digest(&a).starts_with("sha256:") && canonical_digest(&a).len() == 7 + 64);
    // Array order matters; so does the number's type.
    assert_ne!(canonical_digest(&json!([1, 2])), canonical_digest(&json!([2, 1])));
    assert_ne!(canonical_digest(&json!(1)), canonical_digest(&json!(1.0)));
    assert_eq!(canonical_json(&json!("line\n\"q\"")), r#""line\n\"q\"""#);
}

#[test]
fn call_digests_bind_method_name_and_arguments() {
    let args = json!({"a": 1, "b": 2});
    let reordered: Value = serde_json::from_str(r#"{"b":2,"a":1}"#).unwrap();
    let base = call_digest("tools/call", "t", Some(&args));
    assert_eq!(base, call_digest("tools/call", "t", Some(&reordered)));
    assert_ne!(base, call_digest("prompts/get", "t", Some(&args)));
    assert_ne!(base, call_digest("tools/call", "u", Some(&args)));
    assert_ne!(base, call_digest("tools/call", "t", Some(&json!({"a": 1, "b": 3}))));
    assert_ne!(call_digest("tools/call", "ab", None), call_digest("tools/cal", "lab", None), "length-prefixed");
    assert_ne!(call_digest("tools/call", "t", None), call_digest("tools/call", "t", Some(&json!({}))));
}
