//! The Envoy ext_authz mapping: `request_from_check` on an arbitrary `CheckRequest` (the
//! bytes decoded as protobuf; bytes that do not decode are skipped), and the answer for a
//! request the gate forwards with header and query redactions.
//!
//! Checks, beyond "never panics":
//! - a request that cannot be normalised gets a refusal (`bad_request`), never an allow;
//! - a normalised request has an upper-case method, a path starting with `/`, lower-case
//!   header names, no pseudo-headers;
//! - after the gate removes or replaces headers and query parameters, the `OK` answer,
//!   applied to the request as Envoy would (headers by name, query parameters by their
//!   key as written), leaves nothing of a removed field and only the replacement of a
//!   replaced one; a body redaction Envoy cannot carry out is refused.
#![no_main]

use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use libfuzzer_sys::fuzz_target;
use portcullis_host::adapters::ext_authz::{
    BodySeen, CheckRequest, ExtAuthzError, FromCheck, GRPC_OK, UNENFORCEABLE, bad_request, forward_response,
    request_from_check,
};
use portcullis_host::decision::{Action, Decision, DecisionKind, Redaction, Target};
use portcullis_host::exchange::percent_decode;
use portcullis_host::gate::RequestCheck;
use portcullis_host::{Phase, PolicyResult, Verdict, redact};
use prost::Message;

fuzz_target!(|data: &[u8]| {
    // The last byte chooses the redactions; the rest is the CheckRequest.
    let Some((&choice, encoded)) = data.split_last() else { return };
    let Ok(check) = CheckRequest::decode(encoded) else { return };
    let checked = match request_from_check(&check, &FromCheck::default()) {
        Ok(checked) => checked,
        Err(err) => {
            let answer = bad_request(&check, &err);
            assert_ne!(answer.status.as_ref().map(|s| s.code), Some(GRPC_OK), "{err} was allowed");
            assert!(matches!(answer.http_response, Some(HttpResponse::DeniedResponse(_))));
            if let ExtAuthzError::BadPath { path } = &err {
                assert!(path.chars().count() <= 64);
            }
            return;
        }
    };
    let request = &checked.request;
    assert!(!request.method.is_empty());
    assert_eq!(request.method, request.method.to_ascii_uppercase());
    assert!(request.path.starts_with('/'), "path {:?}", request.path);
    for (name, _) in &request.headers {
        assert!(!name.starts_with(':') && !name.bytes().any(|b| b.is_ascii_uppercase()), "header {name:?}");
    }
    if let Some(body) = &request.body {
        assert!(!body.bytes.is_empty());
        assert_eq!(body.truncated, checked.body == BodySeen::Partial);
    }

    let http = check.attributes.as_ref().and_then(|a| a.request.as_ref()).and_then(|r| r.http.as_ref()).unwrap();
    let raw_query = raw_query_of(http);

    // Redactions of fields that are there, chosen by `choice`.
    let mut redactions = Vec::new();
    let mut bits = choice;
    let mut pick = |n: usize| {
        let i = usize::from(bits) % n.max(1);
        bits = bits.rotate_right(3);
        i
    };
    if let Some((name, _)) = request.headers.get(pick(request.headers.len())) {
        let action = if pick(2) == 0 { Action::Remove } else { Action::Replace("[redacted]".into()) };
        redactions.push(Redaction { target: Target::Header(name.clone()), action });
    }
    if let Some((key, _)) = request.query.get(pick(request.query.len())) {
        let action = if pick(2) == 0 { Action::Remove } else { Action::Replace("x y&z".into()) };
        redactions.push(Redaction { target: Target::Query(key.clone()), action });
    }
    if pick(4) == 0 {
        redactions.push(Redaction { target: Target::JsonPointer("/password".into()), action: Action::Remove });
    }
    if redactions.is_empty() {
        return;
    }

    let mut forwarded = request.clone();
    let applied = redact::apply_to_request(&mut forwarded, &redactions);
    let (applied, redaction_error) = match applied {
        Ok(applied) => (Some(applied), None),
        Err(err) => (None, Some(err.to_string())),
    };
    if redaction_error.is_some() {
        return; // The gate refuses before asking for an answer.
    }
    let verdict = Verdict {
        phase: Phase::Request,
        route: None,
        decision: Decision::Redact { redactions: redactions.clone() },
        decided_by: None,
        policies: vec![PolicyResult {
            policy: "fuzz".into(),
            digest: String::new(),
            decision: DecisionKind::Redact,
            code: None,
            reason: String::new(),
            redactions: redactions.clone(),
            labels: Vec::new(),
            fault: None,
            elapsed_us: 0,
            approval: None,
        }],
        elapsed_us: 0,
    };
    let body_changed = applied.as_ref().is_some_and(|a| a.body_changed);
    let pointer = redactions.iter().any(|r| matches!(r.target, Target::JsonPointer(_)));
    let answer = forward_response(&checked, &forwarded, &RequestCheck { verdict, applied, redaction_error });
    let ok = match &answer.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            assert_eq!(answer.status.as_ref().map(|s| s.code), Some(GRPC_OK));
            assert!(!(pointer && (body_changed || !checked.body.is_complete())), "an unenforceable body redaction was allowed");
            ok
        }
        Some(HttpResponse::DeniedResponse(_)) => {
            let message = answer.status.as_ref().map(|s| s.message.as_str()).unwrap_or("");
            assert!(message.starts_with(UNENFORCEABLE), "unexpected refusal: {message}");
            assert!(pointer);
            return;
        }
        other => panic!("unexpected answer: {other:?}"),
    };

    // Envoy applies the answer: headers by name, query parameters by their key as written.
    let mut headers = request.headers.clone();
    for name in &ok.headers_to_remove {
        headers.retain(|(n, _)| n != name);
    }
    #[allow(deprecated)]
    for option in &ok.headers {
        let header = option.header.as_ref().unwrap();
        let append = option.append.as_ref().is_some_and(|a| a.value);
        if !append {
            headers.retain(|(n, _)| *n != header.key);
        }
        headers.push((header.key.clone(), header.value.clone()));
    }
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    for key in &ok.query_parameters_to_remove {
        pairs.retain(|(k, _)| k != key);
    }
    for param in &ok.query_parameters_to_set {
        let at = pairs.iter().position(|(k, _)| *k == param.key);
        pairs.retain(|(k, _)| *k != param.key);
        pairs.insert(at.unwrap_or(pairs.len()).min(pairs.len()), (param.key.clone(), param.value.clone()));
    }
    let query: Vec<(String, String)> =
        pairs.iter().map(|(k, v)| (percent_decode(k, true), percent_decode(v, true))).collect();

    for redaction in &redactions {
        match (&redaction.target, &redaction.action) {
            (Target::Header(name), Action::Remove) => {
                assert!(!headers.iter().any(|(n, _)| n == name), "header `{name}` reaches the upstream")
            }
            (Target::Header(name), Action::Replace(text)) => {
                assert!(headers.iter().filter(|(n, _)| n == name).all(|(_, v)| v == text), "header `{name}` kept a value")
            }
            (Target::Query(key), Action::Remove) => {
                assert!(!query.iter().any(|(k, _)| k == key), "query `{key}` reaches the upstream: {raw_query:?} {ok:?}")
            }
            (Target::Query(key), Action::Replace(text)) => assert!(
                query.iter().filter(|(k, _)| k == key).all(|(_, v)| v == text),
                "query `{key}` kept a value: {raw_query:?} {ok:?}"
            ),
            _ => {}
        }
    }
});

/// The raw query of the request target, as Envoy holds it (`path`, else `:path`).
fn raw_query_of(http: &HttpRequest) -> String {
    let target = if !http.path.is_empty() {
        http.path.clone()
    } else {
        let from_map = http.header_map.as_ref().filter(|m| !m.headers.is_empty()).map(|m| {
            m.headers.iter().find(|h| h.key.eq_ignore_ascii_case(":path")).map(|h| {
                if h.raw_value.is_empty() { h.value.clone() } else { String::from_utf8(h.raw_value.clone()).unwrap() }
            })
        });
        match from_map {
            Some(found) => found.unwrap_or_default(),
            None => {
                let mut headers: Vec<(String, String)> =
                    http.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
                headers.sort();
                headers.into_iter().find(|(n, _)| n == ":path").map(|(_, v)| v).unwrap_or_default()
            }
        }
    };
    let target = target.split('#').next().unwrap_or("");
    let origin = if target.starts_with('/') {
        target
    } else {
        match target.split_once("://") {
            Some((_, rest)) => rest.find(['/', '?']).map_or("", |i| &rest[i..]),
            None => "",
        }
    };
    origin.split_once('?').map_or("", |(_, q)| q).to_owned()
}
