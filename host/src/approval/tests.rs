//! Tests of the digest, and of the approval rules run against every store.

use std::sync::Arc;

use super::*;
use crate::exchange::{Body, Principal, PrincipalKind, Request};

// ---------------------------------------------------------------------------------------
// request_digest
// ---------------------------------------------------------------------------------------

fn request(method: &str, path: &str, query: &[(&str, &str)], body: &str) -> Request {
    Request {
        method: method.into(),
        authority: "API.Example.com:443".into(),
        path: path.into(),
        query: query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        body: (!body.is_empty()).then(|| Body {
            content_type: None,
            bytes: body.as_bytes().to_vec(),
            truncated: false,
        }),
        ..Request::default()
    }
}

#[test]
fn digest_is_stable_for_the_same_request() {
    let a = request("POST", "/v1/invoices", &[("x", "1")], r#"{"amount":3}"#);
    assert_eq!(request_digest(&a), request_digest(&a.clone()));
    assert_eq!(request_digest(&a).len(), 64);
    assert!(request_digest(&a).bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn digest_ignores_the_order_of_distinct_names_headers_case_of_method_and_port() {
    let a = request("POST", "/p", &[("b", "2"), ("a", "1"), ("a", "0")], "x");
    let mut b = request("post", "/p", &[("a", "1"), ("b", "2"), ("a", "0")], "x");
    b.headers = vec![("authorization".into(), "Bearer fresh".into()), ("portcullis-approval".into(), "apr_x".into())];
    b.authority = "api.example.com".into();
    assert_eq!(request_digest(&a), request_digest(&b));
}

/// Finding: the approved `POST /x?pay_to=alice&pay_to=mallory` was redeemed by
/// `?pay_to=mallory&pay_to=alice`, which many backends read as paying mallory.
#[test]
fn digest_keeps_the_order_of_a_repeated_name() {
    let approved = request("POST", "/x", &[("pay_to", "alice"), ("pay_to", "mallory")], "");
    let swapped = request("POST", "/x", &[("pay_to", "mallory"), ("pay_to", "alice")], "");
    assert_ne!(request_digest(&approved), request_digest(&swapped));
    // Other names may move around the repeated ones.
    let moved = request("POST", "/x", &[("pay_to", "alice"), ("memo", "rent"), ("pay_to", "mallory")], "");
    let first = request("POST", "/x", &[("memo", "rent"), ("pay_to", "alice"), ("pay_to", "mallory")], "");
    assert_eq!(request_digest(&moved), request_digest(&first));
}

/// Finding: `X-HTTP-Method-Override: DELETE` rode along on the retry of an approved POST.
#[test]
fn digest_binds_method_override_and_body_meaning_headers() {
    let approved = request("POST", "/invoices/7", &[], "{}");
    for (name, value) in [
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("X-Method-Override", "PUT"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-encoding", "gzip"),
    ] {
        let mut retry = approved.clone();
        retry.headers.push((name.into(), value.into()));
        assert_ne!(request_digest(&approved), request_digest(&retry), "{name}");
    }
    // The same headers on both, in any order and case, match.
    let mut a = approved.clone();
    a.headers =
        vec![("Content-Type".into(), "application/json".into()), ("X-HTTP-Method-Override".into(), "PATCH".into())];
    let mut b = approved.clone();
    b.headers =
        vec![("x-http-method-override".into(), " PATCH ".into()), ("content-type".into(), "application/json".into())];
    assert_eq!(request_digest(&a), request_digest(&b));
    // Another value does not.
    b.headers[0].1 = "DELETE".into();
    assert_ne!(request_digest(&a), request_digest(&b));
}

#[test]
fn digest_treats_no_body_as_empty_body() {
    let a = request("POST", "/p", &[], "");
    let mut b = a.clone();
    b.body = Some(Body::default());
    assert_eq!(request_digest(&a), request_digest(&b));
}

#[test]
fn digest_differs_for_a_different_body_method_path_query_or_host() {
    let base = request("POST", "/p", &[("a", "1")], "x");
    let mut other_host = base.clone();
    other_host.authority = "other.example.com".into();
    let mut truncated = base.clone();
    truncated.body.as_mut().unwrap().truncated = true;
    for (case, other) in [
        ("body", request("POST", "/p", &[("a", "1")], "y")),
        ("method", request("PUT", "/p", &[("a", "1")], "x")),
        ("path", request("POST", "/q", &[("a", "1")], "x")),
        ("query value", request("POST", "/p", &[("a", "2")], "x")),
        ("query name", request("POST", "/p", &[("b", "1")], "x")),
        ("extra query", request("POST", "/p", &[("a", "1"), ("a", "1")], "x")),
        ("host", other_host),
        ("truncated body", truncated),
    ] {
        assert_ne!(request_digest(&base), request_digest(&other), "{case}");
    }
}

#[test]
fn digest_has_no_prefix_ambiguity() {
    // Path "/a" with query "b" against path "/ab".
    assert_ne!(
        request_digest(&request("GET", "/a", &[("b", "")], "")),
        request_digest(&request("GET", "/ab", &[], ""))
    );
    // A name/value boundary moved.
    assert_ne!(
        request_digest(&request("GET", "/", &[("a", "bc")], "")),
        request_digest(&request("GET", "/", &[("ab", "c")], ""))
    );
    // A query value against the body.
    assert_ne!(
        request_digest(&request("GET", "/", &[("a", "b")], "")),
        request_digest(&request("GET", "/", &[("a", "")], "b"))
    );
}

// ---------------------------------------------------------------------------------------
// The rules, against every store
// ---------------------------------------------------------------------------------------

const T0: u64 = 1_700_000_000_000;
const TTL: u64 = 600_000;

fn agent(id: &str, for_user: Option<&str>) -> Principal {
    Principal {
        kind: PrincipalKind::Agent,
        id: id.into(),
        on_behalf_of: for_user.map(str::to_owned),
        credential_id: Some("key-1".into()),
        ..Principal::default()
    }
}

fn new_approval(digest: &str, principal: &Principal, now_ms: u64) -> NewApproval {
    NewApproval {
        digest: digest.into(),
        principal: principal.clone(),
        policy: "invoices".into(),
        reason: "writes need a finance approval".into(),
        group: "finance".into(),
        request_line: "POST api.example.com /v1/invoices".into(),
        shown: Shown::default(),
        ttl_ms: TTL,
        now_ms,
    }
}

fn lifecycle(store: &dyn ApprovalStore) {
    let bot = agent("bot", Some("alice"));
    let pending = store.create(new_approval("d1", &bot, T0)).unwrap();
    assert!(pending.id.starts_with("apr_") && pending.id.len() == 30, "{}", pending.id);
    assert_eq!(pending.state, ApprovalState::Pending);
    assert_eq!((pending.principal_kind.as_str(), pending.principal_id.as_str()), ("agent", "bot"));
    assert_eq!(pending.on_behalf_of.as_deref(), Some("alice"));
    assert_eq!((pending.created_ms, pending.expires_ms), (T0, T0 + TTL));
    assert_eq!(store.get(&pending.id, T0 + 1).unwrap().as_ref(), Some(&pending));

    let early = store.redeem(&pending.id, "d1", &bot, T0 + 1).unwrap_err();
    assert!(matches!(early, RedeemError::Pending { .. }), "{early}");

    let approved = store.approve(&pending.id, " carol@example.com ", T0 + 2).unwrap();
    assert_eq!(approved.state, ApprovalState::Approved);
    assert_eq!(approved.decided_by.as_deref(), Some("carol@example.com"));
    assert_eq!(approved.decided_ms, Some(T0 + 2));

    let used = store.redeem(&pending.id, "d1", &bot, T0 + 3).unwrap();
    assert_eq!(used.state, ApprovalState::Used);
    assert_eq!(used.used_ms, Some(T0 + 3));
    assert_eq!(store.get(&pending.id, T0 + 4).unwrap().unwrap(), used);
    // Used stays used, also past the expiry.
    assert_eq!(store.get(&pending.id, T0 + TTL + 1).unwrap().unwrap().state, ApprovalState::Used);

    let twice = store.approve(&pending.id, "carol", T0 + 5).unwrap_err();
    assert!(twice.to_string().contains("already approved and used"), "{twice}");
    assert!(store.get("apr_nope", T0).unwrap().is_none());
}

fn redeem_once_only(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let a = store.create(new_approval("d1", &bot, T0)).unwrap();
    store.approve(&a.id, "carol", T0 + 1).unwrap();
    store.redeem(&a.id, "d1", &bot, T0 + 2).unwrap();
    let again = store.redeem(&a.id, "d1", &bot, T0 + 3).unwrap_err();
    assert!(matches!(again, RedeemError::AlreadyUsed { .. }), "{again}");
    assert!(again.to_string().contains("already used"), "{again}");
}

fn wrong_digest(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let a = store.create(new_approval("d1", &bot, T0)).unwrap();
    store.approve(&a.id, "carol", T0 + 1).unwrap();
    let other = store.redeem(&a.id, "d2", &bot, T0 + 2).unwrap_err();
    assert!(matches!(other, RedeemError::DifferentRequest { .. }), "{other}");
    // Not consumed by the failed attempt.
    store.redeem(&a.id, "d1", &bot, T0 + 3).unwrap();
}

fn wrong_principal(store: &dyn ApprovalStore) {
    let bot = agent("bot", Some("alice"));
    let a = store.create(new_approval("d1", &bot, T0)).unwrap();
    // Before approval too: a stranger learns nothing about the state.
    for stranger in [
        agent("other-bot", Some("alice")),
        agent("bot", Some("mallory")),
        agent("bot", None),
        Principal { kind: PrincipalKind::User, id: "bot".into(), ..Principal::default() },
    ] {
        let err = store.redeem(&a.id, "d1", &stranger, T0 + 1).unwrap_err();
        assert!(matches!(err, RedeemError::DifferentPrincipal { .. }), "{stranger:?}: {err}");
        let text = err.to_string();
        assert!(!text.contains("alice") && !text.contains("pending") && !text.contains("finance"), "{text}");
    }
    store.approve(&a.id, "carol", T0 + 2).unwrap();
    let err = store.redeem(&a.id, "d2", &agent("other-bot", Some("alice")), T0 + 3).unwrap_err();
    assert!(matches!(err, RedeemError::DifferentPrincipal { .. }), "principal is checked before the request: {err}");
    // Fresh credentials of the same caller are fine.
    let mut renewed = bot.clone();
    renewed.credential_id = Some("key-2".into());
    store.redeem(&a.id, "d1", &renewed, T0 + 4).unwrap();
}

fn expiry(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let late = T0 + TTL;
    // Pending, never decided.
    let a = store.create(new_approval("d1", &bot, T0)).unwrap();
    assert_eq!(store.get(&a.id, late - 1).unwrap().unwrap().state, ApprovalState::Pending);
    assert_eq!(store.get(&a.id, late).unwrap().unwrap().state, ApprovalState::Expired);
    let err = store.redeem(&a.id, "d1", &bot, late).unwrap_err();
    assert!(matches!(err, RedeemError::Expired { .. }), "{err}");
    // Approved, but not used in time.
    let b = store.create(new_approval("d2", &bot, T0)).unwrap();
    store.approve(&b.id, "carol", T0 + 1).unwrap();
    assert_eq!(store.get(&b.id, late).unwrap().unwrap().state, ApprovalState::Expired);
    let err = store.redeem(&b.id, "d2", &bot, late + 1).unwrap_err();
    assert!(matches!(err, RedeemError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    // Listing by state sees the state as of now.
    let expired: Vec<String> =
        store.list(Some(ApprovalState::Expired), late).unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(expired.len(), 2);
    assert!(expired.contains(&a.id) && expired.contains(&b.id));
    assert!(store.list(Some(ApprovalState::Pending), late).unwrap().is_empty());
    assert!(store.list(Some(ApprovalState::Approved), late).unwrap().is_empty());
    assert_eq!(store.list(Some(ApprovalState::Approved), late - 1).unwrap().len(), 1);
}

fn approve_after_expiry_refused(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let a = store.create(new_approval("d1", &bot, T0)).unwrap();
    let err = store.approve(&a.id, "carol", T0 + TTL).unwrap_err();
    assert!(matches!(err, ApprovalError::NotPending { state: ApprovalState::Expired, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&a.id) && text.contains("expired") && text.contains("send the request again"), "{text}");
    let err = store.reject(&a.id, "carol", None, T0 + TTL + 1).unwrap_err();
    assert!(matches!(err, ApprovalError::NotPending { state: ApprovalState::Expired, .. }), "{err}");
}

fn reject(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let a = store.create(new_approval("d1", &bot, T0)).unwrap();
    let rejected = store.reject(&a.id, "carol", Some("not this month"), T0 + 1).unwrap();
    assert_eq!(rejected.state, ApprovalState::Rejected);
    assert_eq!(rejected.note.as_deref(), Some("not this month"));
    assert_eq!(rejected.decided_by.as_deref(), Some("carol"));
    let err = store.redeem(&a.id, "d1", &bot, T0 + 2).unwrap_err();
    assert!(matches!(err, RedeemError::Rejected { .. }), "{err}");
    assert!(!err.to_string().contains("not this month"), "the approver's note stays with the approvers: {err}");
    let err = store.approve(&a.id, "dave", T0 + 3).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("approval `{}` is already rejected (by carol), so it cannot be approved", a.id)
    );
    // After a rejection the same ask makes a new pending approval.
    let again = store.create(new_approval("d1", &bot, T0 + 4)).unwrap();
    assert_ne!(again.id, a.id);
}

fn duplicate_create_returns_the_same_pending_one(store: &dyn ApprovalStore) {
    let bot = agent("bot", Some("alice"));
    let a = store.create(new_approval("d1", &bot, T0)).unwrap();
    let b = store.create(new_approval("d1", &bot, T0 + 10)).unwrap();
    assert_eq!(a, b);
    // A different request, caller, on-behalf-of user or policy is a different ask.
    let mut other_policy = new_approval("d1", &bot, T0 + 11);
    other_policy.policy = "other".into();
    let others = [
        store.create(new_approval("d2", &bot, T0 + 11)).unwrap(),
        store.create(new_approval("d1", &agent("bot2", Some("alice")), T0 + 11)).unwrap(),
        store.create(new_approval("d1", &agent("bot", Some("bob")), T0 + 11)).unwrap(),
        store.create(other_policy).unwrap(),
    ];
    assert!(others.iter().all(|o| o.id != a.id));
    assert_eq!(store.list(None, T0 + 12).unwrap().len(), 5);
    // Once it expired, a new one is made.
    let c = store.create(new_approval("d1", &bot, T0 + TTL)).unwrap();
    assert_ne!(c.id, a.id);
    // Once approved, asking again makes a new pending one (the approved one is not handed out again).
    store.approve(&c.id, "carol", T0 + TTL + 1).unwrap();
    assert_ne!(store.create(new_approval("d1", &bot, T0 + TTL + 2)).unwrap().id, c.id);
}

fn list_is_newest_first(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let ids: Vec<String> =
        (0..4).map(|i| store.create(new_approval(&format!("d{i}"), &bot, T0 + i / 2)).unwrap().id).collect();
    store.approve(&ids[1], "carol", T0 + 5).unwrap();
    let listed: Vec<String> = store.list(None, T0 + 6).unwrap().into_iter().map(|a| a.id).collect();
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    let pending: Vec<String> =
        store.list(Some(ApprovalState::Pending), T0 + 6).unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(pending, vec![ids[3].clone(), ids[2].clone(), ids[0].clone()]);
    let approved = store.list(Some(ApprovalState::Approved), T0 + 6).unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0].id, ids[1]);
}

fn unknown_ids_and_missing_decider(store: &dyn ApprovalStore) {
    let err = store.approve("apr_nope", "carol", T0).unwrap_err();
    assert!(matches!(err, ApprovalError::Unknown { .. }) && err.to_string().contains("apr_nope"), "{err}");
    let err = store.redeem("apr_nope", "d1", &agent("bot", None), T0).unwrap_err();
    assert!(matches!(err, RedeemError::Unknown { .. }) && err.to_string().contains("`apr_nope`"), "{err}");
    let err = store.redeem("<script>\"", "d1", &agent("bot", None), T0).unwrap_err();
    assert!(!err.to_string().contains("<script>"), "odd ids are not echoed: {err}");
    let a = store.create(new_approval("d1", &agent("bot", None), T0)).unwrap();
    let err = store.approve(&a.id, "  ", T0 + 1).unwrap_err();
    assert!(matches!(err, ApprovalError::NoDecider { .. }), "{err}");
    assert_eq!(store.get(&a.id, T0 + 1).unwrap().unwrap().state, ApprovalState::Pending);
}

/// Several threads redeem each approved id at once; exactly one wins each time.
fn concurrent_redeem(stores: &[Arc<dyn ApprovalStore>]) {
    let bot = agent("bot", None);
    for round in 0..10 {
        let digest = format!("d{round}");
        let a = stores[0].create(new_approval(&digest, &bot, T0)).unwrap();
        stores[0].approve(&a.id, "carol", T0 + 1).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let store = Arc::clone(&stores[i % stores.len()]);
                let (id, digest, bot, barrier) = (a.id.clone(), digest.clone(), bot.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    store.redeem(&id, &digest, &bot, T0 + 2)
                })
            })
            .collect();
        let results: Vec<Result<Approval, RedeemError>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}: {results:?}");
        for result in &results {
            if let Err(e) = result {
                assert!(matches!(e, RedeemError::AlreadyUsed { .. }), "round {round}: {e}");
            }
        }
    }
}

fn for_group(digest: &str, principal: &Principal, group: &str, now_ms: u64) -> NewApproval {
    NewApproval { group: group.into(), policy: format!("{group}-guard"), ..new_approval(digest, principal, now_ms) }
}

fn groups(names: &[&str]) -> Vec<String> {
    names.iter().map(|g| (*g).to_owned()).collect()
}

/// Finding: with two groups asking, one approval let the retry through. Now every group
/// that asked must be covered, and a retry that fails uses none of its approvals.
fn every_group_must_approve(store: &dyn ApprovalStore) {
    let bot = agent("bot", Some("alice"));
    let finance = store.create(for_group("d1", &bot, "finance", T0)).unwrap();
    let legal = store.create(for_group("d1", &bot, "legal", T0)).unwrap();
    assert_ne!(finance.id, legal.id, "one approval per group");
    store.approve(&finance.id, "fiona", T0 + 1).unwrap();
    let asked = groups(&["finance", "legal"]);
    let only_finance = [finance.id.clone()];
    let redemption = Redemption { ids: &only_finance, digest: "d1", principal: &bot, groups: Some(&asked) };
    let err = store.redeem_all(&redemption, T0 + 2).unwrap_err();
    assert!(matches!(&err, RedeemError::Missing { groups } if groups == &["legal"]), "{err}");
    assert_eq!(store.get(&finance.id, T0 + 2).unwrap().unwrap().state, ApprovalState::Approved, "not used");

    // Both ids, legal still pending: refused, nothing used.
    let both = [finance.id.clone(), legal.id.clone()];
    let redemption = Redemption { ids: &both, digest: "d1", principal: &bot, groups: Some(&asked) };
    let err = store.redeem_all(&redemption, T0 + 3).unwrap_err();
    assert!(matches!(err, RedeemError::Pending { ref id } if id == &legal.id), "{err}");
    assert_eq!(store.get(&finance.id, T0 + 3).unwrap().unwrap().state, ApprovalState::Approved);

    // Both approved: both used at once, then never again.
    store.approve(&legal.id, "lena", T0 + 4).unwrap();
    let used = store.redeem_all(&redemption, T0 + 5).unwrap();
    assert_eq!(used.len(), 2);
    assert!(used.iter().all(|a| a.state == ApprovalState::Used && a.used_ms == Some(T0 + 5)));
    for id in &both {
        assert_eq!(store.get(id, T0 + 6).unwrap().unwrap().state, ApprovalState::Used);
    }
    let err = store.redeem_all(&redemption, T0 + 6).unwrap_err();
    assert!(matches!(err, RedeemError::AlreadyUsed { .. }), "{err}");
}

/// Ids for groups that did not ask, two for one group, a rejected one beside an approved
/// one: refused, and the approved one is left for a proper retry.
fn a_bundle_is_refused_whole(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let finance = store.create(for_group("d1", &bot, "finance", T0)).unwrap();
    let legal = store.create(for_group("d1", &bot, "legal", T0)).unwrap();
    store.approve(&finance.id, "fiona", T0 + 1).unwrap();
    store.approve(&legal.id, "lena", T0 + 1).unwrap();
    let only_finance = groups(&["finance"]);
    let both = [finance.id.clone(), legal.id.clone()];
    let redemption = Redemption { ids: &both, digest: "d1", principal: &bot, groups: Some(&only_finance) };
    let err = store.redeem_all(&redemption, T0 + 2).unwrap_err();
    assert!(matches!(err, RedeemError::NotAsked { ref group, .. } if group == "legal"), "{err}");
    let twice = [finance.id.clone(), finance.id.clone()];
    let redemption = Redemption { ids: &twice, digest: "d1", principal: &bot, groups: Some(&only_finance) };
    let err = store.redeem_all(&redemption, T0 + 2).unwrap_err();
    assert!(matches!(err, RedeemError::Duplicate { .. }), "{err}");
    let none: [String; 0] = [];
    let redemption = Redemption { ids: &none, digest: "d1", principal: &bot, groups: Some(&only_finance) };
    assert!(store.redeem_all(&redemption, T0 + 2).is_err());
    let many: Vec<String> = (0..=MAX_IDS).map(|i| format!("apr_{i}")).collect();
    let redemption = Redemption { ids: &many, digest: "d1", principal: &bot, groups: Some(&only_finance) };
    assert!(matches!(store.redeem_all(&redemption, T0 + 2).unwrap_err(), RedeemError::TooMany { .. }));

    // Another caller's id in the bundle: refused before anything is said about it.
    let stranger = agent("other-bot", None);
    let theirs = store.create(for_group("d1", &stranger, "legal", T0)).unwrap();
    let asked = groups(&["finance", "legal"]);
    let mixed = [finance.id.clone(), theirs.id.clone()];
    let redemption = Redemption { ids: &mixed, digest: "d1", principal: &bot, groups: Some(&asked) };
    let err = store.redeem_all(&redemption, T0 + 2).unwrap_err();
    assert!(matches!(err, RedeemError::DifferentPrincipal { .. }), "{err}");

    // A rejection among them refuses the whole retry.
    let dual = store.create(for_group("d2", &bot, "finance", T0)).unwrap();
    let refused = store.create(for_group("d2", &bot, "legal", T0)).unwrap();
    store.approve(&dual.id, "fiona", T0 + 1).unwrap();
    store.reject(&refused.id, "lena", Some("no"), T0 + 1).unwrap();
    let ids = [dual.id.clone(), refused.id.clone()];
    let redemption = Redemption { ids: &ids, digest: "d2", principal: &bot, groups: Some(&asked) };
    assert!(matches!(store.redeem_all(&redemption, T0 + 2).unwrap_err(), RedeemError::Rejected { .. }));

    for id in [&finance.id, &legal.id, &dual.id] {
        assert_eq!(store.get(id, T0 + 3).unwrap().unwrap().state, ApprovalState::Approved, "{id} not used");
    }
    // The right bundle still works.
    let redemption = Redemption { ids: &both, digest: "d1", principal: &bot, groups: Some(&asked) };
    assert_eq!(store.redeem_all(&redemption, T0 + 3).unwrap().len(), 2);
}

/// Expired approvals are forgotten an hour after their expiry, from `create`, at most once
/// a minute; nothing younger is touched.
fn purges_expired_approvals(store: &dyn ApprovalStore) {
    let bot = agent("bot", None);
    let old = store.create(new_approval("d1", &bot, T0)).unwrap();
    let used = store.create(new_approval("d2", &bot, T0)).unwrap();
    store.approve(&used.id, "carol", T0 + 1).unwrap();
    store.redeem(&used.id, "d2", &bot, T0 + 2).unwrap();
    let gone_at = T0 + TTL + RETAIN_AFTER_EXPIRY_MS;
    // Expired, but within the retention: kept, and shown as expired. This create purges
    // (its minute is up) but finds nothing old enough.
    let young = store.create(new_approval("d3", &bot, gone_at - 1)).unwrap();
    assert_eq!(store.get(&old.id, gone_at - 1).unwrap().unwrap().state, ApprovalState::Expired);
    // Past the retention, but within a minute of the last purge: no scan yet.
    store.create(new_approval("d4", &bot, gone_at + 1)).unwrap();
    assert!(store.get(&old.id, gone_at + 1).unwrap().is_some(), "no purge twice in a minute");
    // The next create after the minute purges.
    let next = gone_at - 1 + PURGE_EVERY_MS;
    store.create(new_approval("d5", &bot, next)).unwrap();
    assert!(store.get(&old.id, next).unwrap().is_none(), "expired pending purged");
    assert!(store.get(&used.id, next).unwrap().is_none(), "used purged");
    assert!(store.get(&young.id, next).unwrap().is_some(), "a fresh one stays");
    let err = store.redeem(&used.id, "d2", &bot, next).unwrap_err();
    assert!(matches!(err, RedeemError::Unknown { .. }), "a purged id stays refused: {err}");
    // An explicit purge takes the rest once they are old enough.
    let end = next + TTL + RETAIN_AFTER_EXPIRY_MS;
    assert_eq!(store.purge(end).unwrap(), 3);
    assert!(store.list(None, end).unwrap().is_empty());
}

/// Issue 20: the store keeps who decided (from the credential) and what the inbox shows of
/// the held request, and counts pending approvals by group.
fn keeps_the_decider_and_the_shown_request(store: &dyn ApprovalStore) {
    let bot = agent("bot", Some("alice"));
    let shown = Shown {
        request_id: "req-7".into(),
        method: "POST".into(),
        host: "api.example.com".into(),
        path: "/v1/invoices".into(),
        operation: Some("createInvoice".into()),
        body: Some(r#"{"amount":3,"iban":"[redacted]"}"#.into()),
        body_truncated: true,
        content_type: Some("application/json".into()),
    };
    let pending = store.create(NewApproval { shown: shown.clone(), ..new_approval("k1", &bot, T0) }).unwrap();
    let other = store.create(NewApproval { group: "legal".into(), ..new_approval("k2", &bot, T0) }).unwrap();
    let read = store.get(&pending.id, T0 + 1).unwrap().unwrap();
    assert_eq!(read, pending);
    assert_eq!(
        (read.request_id.as_str(), read.method.as_str(), read.host.as_str(), read.path.as_str()),
        ("req-7", "POST", "api.example.com", "/v1/invoices")
    );
    assert_eq!((read.operation.as_deref(), read.body.as_deref()), (shown.operation.as_deref(), shown.body.as_deref()));
    assert!(read.body_truncated);
    assert_eq!(read.content_type.as_deref(), Some("application/json"));
    let mut counts = store.pending_by_group(T0 + 1).unwrap();
    counts.sort();
    assert_eq!(counts, vec![("finance".to_owned(), 1), ("legal".to_owned(), 1)]);

    let fiona = Principal {
        kind: PrincipalKind::User,
        id: "corp:fiona".into(),
        credential_id: Some("fiona-key".into()),
        ..Principal::default()
    };
    let approved = store.approve_as(&pending.id, &Decider::principal(&fiona), Some("ok"), T0 + 2).unwrap();
    let read = store.get(&pending.id, T0 + 3).unwrap().unwrap();
    assert_eq!(read, approved);
    assert_eq!(
        (
            read.decided_by.as_deref(),
            read.decided_by_kind.as_deref(),
            read.decided_by_credential.as_deref(),
            read.decided_via.as_deref(),
            read.note.as_deref()
        ),
        (Some("corp:fiona"), Some("user"), Some("fiona-key"), Some("principal"), Some("ok"))
    );
    let rejected = store.reject_as(&other.id, &Decider::admin_token(), Some("no"), T0 + 2).unwrap();
    assert_eq!(
        (rejected.decided_by.as_deref(), rejected.decided_by_kind.as_deref(), rejected.decided_via.as_deref()),
        (Some("admin-token"), None, Some("admin-token"))
    );
    assert!(store.pending_by_group(T0 + 3).unwrap().is_empty());
}

/// Issue 20: every approval that expired unused is handed out once by `sweep_expired`,
/// in the state it expired in; used and rejected ones never.
fn sweeps_each_expiry_once(store: &dyn ApprovalStore) {
    let bot = agent("bot", Some("alice"));
    let pending = store.create(new_approval("s1", &bot, T0)).unwrap();
    let approved = store.create(new_approval("s2", &bot, T0)).unwrap();
    store.approve(&approved.id, "carol", T0 + 1).unwrap();
    let used = store.create(new_approval("s3", &bot, T0)).unwrap();
    store.approve(&used.id, "carol", T0 + 1).unwrap();
    store.redeem(&used.id, "s3", &bot, T0 + 2).unwrap();
    let rejected = store.create(new_approval("s4", &bot, T0)).unwrap();
    store.reject(&rejected.id, "carol", None, T0 + 1).unwrap();
    assert!(store.sweep_expired(T0 + TTL - 1).unwrap().is_empty(), "nothing expired yet");
    let mut swept: Vec<(String, ApprovalState)> =
        store.sweep_expired(T0 + TTL).unwrap().into_iter().map(|a| (a.id, a.state)).collect();
    swept.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected =
        vec![(pending.id.clone(), ApprovalState::Pending), (approved.id.clone(), ApprovalState::Approved)];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(swept, expected);
    assert!(store.sweep_expired(T0 + TTL + 1).unwrap().is_empty(), "each expiry once");
    assert!(store.get(&pending.id, T0 + TTL + 1).unwrap().unwrap().expiry_recorded_ms.is_some());
}

/// One `#[test]` per rule, for a store made by `$make`.
macro_rules! store_tests {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            fn store() -> (Arc<dyn ApprovalStore>, impl Sized) {
                $make
            }

            #[test]
            fn full_lifecycle() {
                lifecycle(&*store().0);
            }
            #[test]
            fn redeems_once_only() {
                redeem_once_only(&*store().0);
            }
            #[test]
            fn refuses_a_different_request() {
                wrong_digest(&*store().0);
            }
            #[test]
            fn refuses_a_different_principal() {
                wrong_principal(&*store().0);
            }
            #[test]
            fn expires() {
                expiry(&*store().0);
            }
            #[test]
            fn refuses_approval_after_expiry() {
                approve_after_expiry_refused(&*store().0);
            }
            #[test]
            fn rejects() {
                reject(&*store().0);
            }
            #[test]
            fn duplicate_create_returns_the_pending_one() {
                duplicate_create_returns_the_same_pending_one(&*store().0);
            }
            #[test]
            fn lists_newest_first() {
                list_is_newest_first(&*store().0);
            }
            #[test]
            fn explains_unknown_ids_and_a_missing_decider() {
                unknown_ids_and_missing_decider(&*store().0);
            }
            #[test]
            fn every_group_that_asked_must_approve() {
                every_group_must_approve(&*store().0);
            }
            #[test]
            fn a_bundle_is_used_whole_or_not_at_all() {
                a_bundle_is_refused_whole(&*store().0);
            }
            #[test]
            fn purges_expired_approvals_on_a_schedule() {
                purges_expired_approvals(&*store().0);
            }
            #[test]
            fn keeps_who_decided_and_what_the_inbox_shows() {
                keeps_the_decider_and_the_shown_request(&*store().0);
            }
            #[test]
            fn sweeps_each_expiry_once() {
                super::sweeps_each_expiry_once(&*store().0);
            }
            #[test]
            fn concurrent_redeems_let_exactly_one_through() {
                let (store, _keep) = store();
                concurrent_redeem(&[store]);
            }
        }
    };
}

store_tests!(memory, (Arc::new(MemoryStore::new()) as Arc<dyn ApprovalStore>, ()));

#[cfg(feature = "sqlite")]
store_tests!(sqlite, {
    let dir = sqlite_files::TempDir::new("store");
    let store = SqliteStore::open(dir.path().join("approvals.sqlite")).unwrap();
    (Arc::new(store) as Arc<dyn ApprovalStore>, dir)
});

/// Every shared rule against PostgreSQL, on one server of our own (a fresh database per
/// rule), plus what only a shared database shows: several handles (replicas) on one
/// database, a restart, and a newer schema refused.
#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::state::testing::PgServer;
    use std::time::Duration;

    type Rule = fn(&dyn ApprovalStore);

    fn open(url: &str) -> Arc<dyn ApprovalStore> {
        let settings = PostgresSettings {
            url: url.to_owned(),
            pool_size: 8,
            timeout: Duration::from_secs(2),
            on_error: crate::state::OnError::Deny,
        };
        Arc::new(PostgresStore::open(&settings).unwrap())
    }

    #[test]
    fn postgres_store_follows_every_rule_across_handles_and_restarts() {
        let mut server = PgServer::start();
        let rules: [(&str, Rule); 15] = [
            ("keeps_the_decider_and_the_shown_request", keeps_the_decider_and_the_shown_request),
            ("sweeps_each_expiry_once", sweeps_each_expiry_once),
            ("lifecycle", lifecycle),
            ("redeem_once_only", redeem_once_only),
            ("wrong_digest", wrong_digest),
            ("wrong_principal", wrong_principal),
            ("expiry", expiry),
            ("approve_after_expiry_refused", approve_after_expiry_refused),
            ("reject", reject),
            ("duplicate_create", duplicate_create_returns_the_same_pending_one),
            ("list_is_newest_first", list_is_newest_first),
            ("unknown_ids_and_missing_decider", unknown_ids_and_missing_decider),
            ("every_group_must_approve", every_group_must_approve),
            ("a_bundle_is_refused_whole", a_bundle_is_refused_whole),
            ("purges_expired_approvals", purges_expired_approvals),
        ];
        for (name, rule) in rules {
            let url = server.new_database();
            eprintln!("postgres: {name}");
            rule(&*open(&url));
        }

        // Four handles on one database, like four replicas: exactly one redeem wins.
        let url = server.new_database();
        let stores: Vec<Arc<dyn ApprovalStore>> = (0..4).map(|_| open(&url)).collect();
        concurrent_redeem(&stores);

        // Created through one, approved through another, redeemed through a third; a
        // restart of the database in between loses nothing.
        let bot = agent("bot", Some("alice"));
        let created = stores[0].create(new_approval("r1", &bot, T0)).unwrap();
        stores[1].approve(&created.id, "carol", T0 + 1).unwrap();
        server.restart();
        // The pool notices its connections died; the first call may fail, then it reconnects.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let seen = loop {
            match stores[2].get(&created.id, T0 + 2) {
                Ok(found) => break found,
                Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("no reconnect after a restart: {e}"),
            }
        };
        assert_eq!(seen.unwrap().state, ApprovalState::Approved, "the approval survived the restart");
        let used = stores[2].redeem(&created.id, "r1", &bot, T0 + 3).unwrap();
        assert_eq!(used.decided_by.as_deref(), Some("carol"));
        let again = stores[0].redeem(&created.id, "r1", &bot, T0 + 4).unwrap_err();
        assert!(matches!(again, RedeemError::AlreadyUsed { .. }), "{again}");

        // A database migrated by a newer portcullis is refused, naming the database and not
        // its credentials.
        let url = server.new_database();
        drop(open(&url));
        let database = url.rsplit('/').next().unwrap();
        let newer = POSTGRES_SCHEMA_VERSION + 1;
        let output = std::process::Command::new("psql")
            .args([&url, "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("UPDATE portcullis_schema_version SET version = {newer}"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let settings = PostgresSettings {
            url: url.clone(),
            pool_size: 1,
            timeout: Duration::from_secs(2),
            on_error: crate::state::OnError::Deny,
        };
        let err = PostgresStore::open(&settings).unwrap_err();
        assert!(matches!(err, ApprovalError::NewerSchema { .. }), "{err}");
        assert!(err.to_string().contains(database), "{err}");
    }

    #[test]
    fn a_dead_database_fails_within_the_budget_and_recovers() {
        let mut server = PgServer::start();
        let url = server.new_database();
        let settings = PostgresSettings {
            url,
            pool_size: 4,
            timeout: Duration::from_millis(100),
            on_error: crate::state::OnError::Deny,
        };
        let store = PostgresStore::open(&settings).unwrap();
        let bot = agent("bot", None);
        let a = store.create(new_approval("d1", &bot, T0)).unwrap();
        server.stop();
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let err = store.get(&a.id, T0 + 1).unwrap_err();
            assert!(started.elapsed() < Duration::from_millis(150), "waited {:?}: {err}", started.elapsed());
        }
        let health = store.health().unwrap();
        assert!(!health.up && health.errors >= 20, "{health:?}");
        let redeem = store.redeem(&a.id, "d1", &bot, T0 + 1).unwrap_err();
        assert!(matches!(redeem, RedeemError::Store(_)), "{redeem}");
        assert!(!redeem.to_string().contains("127.0.0.1"), "no internals for callers: {redeem}");
        server.start_again();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.get(&a.id, T0 + 2).is_err() {
            assert!(std::time::Instant::now() < deadline, "no recovery");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(store.health().unwrap().up);
    }
}

#[test]
fn a_purge_is_due_once_a_minute_or_after_the_clock_went_back() {
    assert!(purge_due(0, T0));
    assert!(!purge_due(T0, T0 + PURGE_EVERY_MS - 1));
    assert!(purge_due(T0, T0 + PURGE_EVERY_MS));
    assert!(!purge_due(T0, T0 - 5), "requests slightly out of order do not purge");
    assert!(purge_due(T0, T0 - PURGE_EVERY_MS - 1), "a clock set back does not stop purging");
}

#[test]
fn ids_are_unique_and_well_formed() {
    let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id().unwrap()).collect();
    assert_eq!(ids.len(), 1000);
    assert!(ids.iter().all(|id| id.len() == 30 && id[4..].bytes().all(|b| ID_ALPHABET.contains(&b))));
}

#[test]
fn states_parse_and_serialise_as_words() {
    for state in ApprovalState::ALL {
        assert_eq!(state.as_str().parse::<ApprovalState>(), Ok(state));
        assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(state.as_str()));
    }
    assert!("done".parse::<ApprovalState>().unwrap_err().contains("pending, approved"));
}

#[cfg(feature = "sqlite")]
mod sqlite_files {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A directory removed when the test ends.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(name: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "portcullis-approval-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = TempDir::new("reopen");
        let path = dir.path().join("approvals.sqlite");
        let bot = agent("bot", Some("alice"));
        let created = {
            let store = SqliteStore::open(&path).unwrap();
            store.create(new_approval("d1", &bot, T0)).unwrap()
        };
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get(&created.id, T0 + 1).unwrap(), Some(created.clone()));
        assert_eq!(store.create(new_approval("d1", &bot, T0 + 2)).unwrap().id, created.id, "still the pending one");
        store.approve(&created.id, "carol", T0 + 3).unwrap();
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        let used = store.redeem(&created.id, "d1", &bot, T0 + 4).unwrap();
        assert_eq!(used.decided_by.as_deref(), Some("carol"));
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        let again = store.redeem(&created.id, "d1", &bot, T0 + 5).unwrap_err();
        assert!(matches!(again, RedeemError::AlreadyUsed { .. }), "{again}");
    }

    /// A file made by the version-1 schema is migrated: its rows stay readable, and those
    /// already expired count as recorded (the first sweep does not report old history).
    #[test]
    fn migrates_a_version_1_file() {
        let dir = TempDir::new("v1");
        let path = dir.path().join("approvals.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE approvals (id TEXT PRIMARY KEY NOT NULL, digest TEXT NOT NULL, principal_kind TEXT NOT NULL,
                 principal_id TEXT NOT NULL, on_behalf_of TEXT, policy TEXT NOT NULL, reason TEXT NOT NULL,
                 approver_group TEXT NOT NULL, request_line TEXT NOT NULL, created_ms INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected',
                 'used', 'expired')), decided_by TEXT, decided_ms INTEGER, note TEXT, used_ms INTEGER);
                 CREATE INDEX approvals_by_digest ON approvals (digest);
                 CREATE INDEX approvals_by_created ON approvals (created_ms);
                 INSERT INTO approvals VALUES ('apr_old', 'd', 'agent', 'bot', NULL, 'p', 'r', 'finance',
                  'POST h /x', 1000, 2000, 'pending', NULL, NULL, NULL, NULL);
                 INSERT INTO approvals VALUES ('apr_new', 'd', 'agent', 'bot', NULL, 'p', 'r', 'finance',
                  'POST h /x', 1000, 9000000000000, 'pending', NULL, NULL, NULL, NULL);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let old = store.get("apr_old", 3_000).unwrap().unwrap();
        assert_eq!(
            (old.state, old.request_line.as_str(), old.method.as_str()),
            (ApprovalState::Expired, "POST h /x", "")
        );
        assert!(old.expiry_recorded_ms.is_some(), "already expired at the migration: counts as recorded");
        assert!(store.sweep_expired(crate::now_ms()).unwrap().is_empty());
        let new = store.get("apr_new", 3_000).unwrap().unwrap();
        assert_eq!((new.state, new.expiry_recorded_ms), (ApprovalState::Pending, None));
        store.approve("apr_new", "carol", 3_000).unwrap();
        drop(store);
        let conn = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn concurrent_redeems_across_connections_let_exactly_one_through() {
        // Like a server and the CLI (or two servers) on one file: each store has its own
        // connection, so only the file's write lock keeps them apart.
        let dir = TempDir::new("connections");
        let path = dir.path().join("approvals.sqlite");
        let stores: Vec<Arc<dyn ApprovalStore>> =
            (0..4).map(|_| Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn ApprovalStore>).collect();
        concurrent_redeem(&stores);
    }

    #[test]
    fn refuses_a_newer_schema_naming_the_file() {
        let dir = TempDir::new("newer");
        let path = dir.path().join("approvals.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        }
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, ApprovalError::NewerSchema { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()) && text.contains("upgrade portcullis"), "{text}");
    }

    #[test]
    fn refuses_a_file_that_is_not_a_database() {
        let dir = TempDir::new("garbage");
        let path = dir.path().join("approvals.sqlite");
        std::fs::write(&path, b"this is not an SQLite database, just some text that is long enough").unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, ApprovalError::Open { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn names_a_missing_directory() {
        let dir = TempDir::new("missing");
        let path = dir.path().join("no-such-dir").join("approvals.sqlite");
        let err = SqliteStore::open(&path).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()) && text.contains("directory does not exist"), "{text}");
    }

    #[test]
    fn store_errors_reach_the_caller_without_internals() {
        let err = RedeemError::Store(ApprovalError::Storage {
            path: "/secret/place/approvals.sqlite".into(),
            id: Some("apr_x".into()),
            source: "disk I/O error".into(),
        });
        assert!(!err.to_string().contains("/secret"), "{err}");
        assert!(std::error::Error::source(&err).unwrap().to_string().contains("/secret/place"));
    }
}
