//! The same two rules, `agent-guard` and `scopes`, five ways: the Wasm components of
//! `policies/rust/` (in a fresh or a reused instance), native Rust, Cedar (`cedar-policy`)
//! and Rego (`regorus`: its interpreter and its compiled VM), plus the requests they are
//! measured on. Every variant returns a [`portcullis_host::Outcome`], so [`check_agreement`]
//! can prove they decide alike, field by field, before anything is timed.
//!
//! Cedar answers only allow or deny, so its glue (`cedar`) turns the determining policy's
//! `@id` into the outcome and writes the reason, as an application using Cedar would; Rego
//! returns the whole outcome as a document. Both get the request translated into their
//! own input form on every call, and that translation is part of what is measured, as
//! the Wasm variant's copy of the request into the guest is.

pub mod cedar;
pub mod native;
pub mod rego;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_host::Shared;
use portcullis_host::decision::{Approval, Denial};
use portcullis_host::exchange::{Principal, PrincipalKind};
use portcullis_host::gate::{Gate, Identity};
use portcullis_host::{
    Decision, Engine, EngineConfig, Outcome, Policy, PolicySet, PolicySpec, Request, RouteSpec, Source,
};
use serde::Deserialize;

/// `agent-guard`'s settings in every variant (as in `policy-tests/portcullis.toml`).
pub const AGENT_GUARD_SETTINGS: &str = r#"{"approver_group": "api-owners", "ttl_seconds": 600}"#;

/// `scopes`' settings in every variant: the rules of `policy-tests/portcullis.toml` for the
/// three recorded APIs, plus two for the synthetic invoice requests.
pub const SCOPES_SETTINGS: &str = r#"{
  "default": "deny",
  "rules": [
    {"methods": ["GET", "HEAD"], "path": "/v2/**", "scopes": ["pets:read"]},
    {"methods": ["POST", "PUT", "DELETE"], "path": "/v2/store/**", "scopes": ["store:write"]},
    {"methods": ["GET"], "path": "/api/**", "scopes": ["library:read"]},
    {"methods": ["POST"], "path": "/api/cars/**", "scopes": ["fleet:write"]},
    {"methods": ["GET"], "path": "/rest/**", "scopes": ["pastries:read"]},
    {"methods": ["PATCH", "PUT"], "path": "/rest/**", "scopes": ["pastries:write"]},
    {"methods": ["GET"], "path": "/invoices/**", "scopes": ["invoices:read"]},
    {"methods": ["POST", "PUT", "PATCH"], "path": "/invoices/**", "scopes": ["invoices:write", "invoices:read"]},
    {"path": "/health", "scopes": []}
  ]
}"#;

/// `agent-guard`'s settings, parsed.
#[derive(Debug, Clone, Deserialize)]
pub struct GuardSettings {
    /// Who approves agents' writes.
    pub approver_group: String,
    /// How long an approval lasts.
    #[serde(default = "default_ttl")]
    pub ttl_seconds: u32,
    /// Deny agents acting for nobody.
    #[serde(default = "default_true")]
    pub deny_without_on_behalf_of: bool,
}

fn default_ttl() -> u32 {
    900
}

fn default_true() -> bool {
    true
}

/// `scopes`' settings, parsed.
#[derive(Debug, Clone, Deserialize)]
pub struct ScopeSettings {
    /// Tried in order; the first that covers the request decides.
    #[serde(default)]
    pub rules: Vec<ScopeRule>,
    /// `allow` or `deny` when no rule covers a request.
    #[serde(default = "default_deny")]
    pub default: String,
}

fn default_deny() -> String {
    "deny".into()
}

/// One scope rule.
#[derive(Debug, Clone, Deserialize)]
pub struct ScopeRule {
    /// Methods covered (empty or `*`: any).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path glob.
    pub path: String,
    /// Scopes required.
    pub scopes: Vec<String>,
}

/// Parsed settings of both rules.
pub fn guard_settings() -> GuardSettings {
    serde_json::from_str(AGENT_GUARD_SETTINGS).expect("agent-guard settings")
}

/// Parsed settings of both rules.
pub fn scope_settings() -> ScopeSettings {
    serde_json::from_str(SCOPES_SETTINGS).expect("scopes settings")
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A built component of `target/policies/` (run `scripts/build-policies.sh` first).
pub fn component(name: &str) -> PathBuf {
    let path = root().join("target/policies").join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run scripts/build-policies.sh (scripts/bench.sh does)", path.display());
    path
}

/// The shared recorded traffic (`../shared/traffic`), read in place.
pub fn traffic_files() -> Vec<PathBuf> {
    let dir = root().join("../shared/traffic");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("har" | "jsonl")))
        .collect();
    files.sort();
    files
}

/// An engine whose compile cache is `target/bench-cache`.
pub fn engine() -> Engine {
    Engine::new(&EngineConfig::default().with_cache_dir(Some(root().join("target/bench-cache")))).expect("engine")
}

/// Loads one of the reference components with its settings.
pub fn load_wasm(engine: &Engine, name: &str, settings: &str) -> Policy {
    let mut spec = PolicySpec::new(name, Source::File(component(name)));
    spec.settings = serde_json::from_str(settings).expect("settings JSON");
    Policy::load(engine, spec, &Shared::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The callers every request is evaluated as: an agent acting for a user, a user with
/// scopes, a service with none, an agent acting for nobody, an anonymous caller.
pub fn principals() -> Vec<Principal> {
    let p = |kind, id: &str, scopes: &[&str], obo: Option<&str>| Principal {
        kind,
        id: id.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        claims: Vec::new(),
        on_behalf_of: obo.map(Into::into),
        credential_id: Some("key-7".into()),
    };
    vec![
        p(
            PrincipalKind::Agent,
            "support-bot",
            &["pets:read", "library:read", "pastries:read", "invoices:read"],
            Some("alice"),
        ),
        p(
            PrincipalKind::User,
            "alice",
            &["pets:read", "store:write", "library:read", "fleet:write", "invoices:read", "invoices:write"],
            None,
        ),
        p(PrincipalKind::Service, "crm", &[], None),
        p(PrincipalKind::Agent, "bot", &["pets:read"], Some("")),
        p(PrincipalKind::Anonymous, "", &[], None),
    ]
}

/// The recorded requests of `../shared/traffic` (every entry that reads).
pub fn traffic_requests() -> Vec<Request> {
    let mut out = Vec::new();
    for file in traffic_files() {
        portcullis_host::adapters::traffic::read_traffic(&file, |item| {
            if let Ok(exchange) = item.result {
                out.push(exchange.request);
            }
        })
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    }
    out
}

/// Synthetic requests that reach the branches the recordings do not: every method, odd
/// casing, empty and doubled path segments, paths no rule covers.
pub fn synthetic_requests() -> Vec<Request> {
    let mut out = Vec::new();
    let methods = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "get", "Post", "CALL"];
    let paths = [
        "/invoices",
        "/invoices/inv-1001",
        "/invoices/inv-1001/lines",
        "/v2/store/order/7",
        "/v2/pet/",
        "/api/cars",
        "/rest/pastry/Tartelette",
        "/health",
        "/",
        "/admin/users",
    ];
    for (i, method) in methods.iter().enumerate() {
        for path in paths {
            let json = serde_json::json!({
                "id": format!("synthetic-{i}"),
                "method": method,
                "url": format!("https://api.example.com{path}?draft=true"),
                "headers": {"host": "api.example.com", "content-type": "application/json", "accept": "application/json",
                    "user-agent": "crm-sync/4.2", "x-request-id": format!("req-{i}"), "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
                "body": {"json": {"customer": "c-17", "lines": [{"sku": "A-100", "qty": 3}], "currency": "EUR"}},
            });
            out.push(serde_json::from_value(json).expect("synthetic request"));
        }
    }
    out
}

/// Every benchmarked request: the recorded and the synthetic ones, each as every caller of
/// [`principals`].
pub fn corpus() -> Vec<Request> {
    let mut base = traffic_requests();
    base.extend(synthetic_requests());
    let mut out = Vec::with_capacity(base.len() * 5);
    for request in &base {
        for principal in principals() {
            let mut r = request.clone();
            r.principal = principal;
            out.push(r);
        }
    }
    out
}

/// One way of deciding a request.
pub trait Variant {
    /// The variant's name in reports.
    fn name(&self) -> &'static str;
    /// The decision.
    fn decide(&mut self, request: &Request) -> Outcome;
}

/// Checks that every variant gives the same outcome (decision, status, code, reason,
/// approval, labels) as the first on every request; returns how many were compared.
pub fn check_agreement(variants: &mut [&mut dyn Variant], requests: &[Request]) -> Result<usize, String> {
    let mut compared = 0;
    for request in requests {
        let Some((first, rest)) = variants.split_first_mut() else { return Ok(0) };
        let expected = first.decide(request);
        for v in rest.iter_mut() {
            let got = v.decide(request);
            if got != expected {
                return Err(format!(
                    "{} and {} disagree on {} {} as {:?} {:?} (on behalf of {:?}):\n  {}: {expected:?}\n  {}: {got:?}",
                    first.name(),
                    v.name(),
                    request.method,
                    request.path,
                    request.principal.kind,
                    request.principal.id,
                    request.principal.on_behalf_of,
                    first.name(),
                    v.name()
                ));
            }
            compared += 1;
        }
    }
    Ok(compared)
}

/// The Wasm component in a fresh isolated instance per call (what the policy set does).
pub struct WasmFresh<'p>(pub &'p Policy);

impl Variant for WasmFresh<'_> {
    fn name(&self) -> &'static str {
        "wasm_fresh"
    }
    fn decide(&mut self, request: &Request) -> Outcome {
        self.0.evaluate_request(request).expect("fresh call")
    }
}

/// The Wasm component in one instance kept for every call.
pub struct WasmReused<'p>(pub portcullis_host::ReusableInstance<'p>);

impl Variant for WasmReused<'_> {
    fn name(&self) -> &'static str {
        "wasm_reused"
    }
    fn decide(&mut self, request: &Request) -> Outcome {
        self.0.evaluate_request(request).expect("reused call")
    }
}

// Shared outcome builders, so every variant spells reasons and labels the same way.

fn labels(rule: &str, missing: Option<&str>) -> Vec<(String, String)> {
    let mut out = vec![("rule".to_owned(), rule.to_owned())];
    if let Some(m) = missing {
        out.push(("missing-scopes".to_owned(), m.to_owned()));
    }
    out
}

/// `allow` with a `rule` label.
pub fn allow(rule: &str) -> Outcome {
    Outcome { decision: Decision::Allow, labels: labels(rule, None) }
}

/// `deny 403 code reason` with a `rule` label and maybe `missing-scopes`.
pub fn deny(code: &str, reason: String, rule: &str, missing: Option<&str>) -> Outcome {
    Outcome {
        decision: Decision::Deny(Denial { status: 403, code: code.into(), reason }),
        labels: labels(rule, missing),
    }
}

/// `require-approval` with a `rule` label.
pub fn approval(reason: String, group: &str, ttl_seconds: u32, rule: &str) -> Outcome {
    Outcome {
        decision: Decision::RequireApproval(Approval { reason, approver_group: group.into(), ttl_seconds }),
        labels: labels(rule, None),
    }
}

/// The `scopes` deny for missing scopes, as the policy words it.
pub fn missing_scopes(missing: &[&str], request: &Request, rule: &str) -> Outcome {
    let reason = match missing {
        [one] => format!("scope {one} is required for {} {}", request.method, request.path),
        many => format!("scopes {} are required for {} {}", many.join(", "), request.method, request.path),
    };
    deny("missing-scope", reason, rule, Some(&missing.join(" ")))
}

/// The user an agent acts for (an empty string counts as none).
pub fn acting_for(principal: &Principal) -> Option<&str> {
    principal.on_behalf_of.as_deref().filter(|u| !u.is_empty())
}

/// The path's non-empty segments.
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// A policy spec for one of the reference components with its settings.
pub fn spec(name: String, component_name: &str, settings: &str) -> PolicySpec {
    let mut spec = PolicySpec::new(name, Source::File(component(component_name)));
    spec.settings = serde_json::from_str(settings).unwrap();
    spec
}

/// `scopes` and `agent-guard` on one route for everything: policies that read headers,
/// method and path only; fresh instances, or warm ones with `reuse`.
pub fn header_only_gate(engine: &Engine, reuse: bool) -> Gate {
    let with_reuse = |mut spec: PolicySpec| {
        spec.reuse = reuse.then(portcullis_host::Reuse::default);
        spec
    };
    let set = PolicySet::builder(engine)
        .policy(with_reuse(spec("scopes".into(), "scopes", SCOPES_SETTINGS)))
        .unwrap()
        .policy(with_reuse(spec("agent-guard".into(), "agent-guard", AGENT_GUARD_SETTINGS)))
        .unwrap()
        .route(RouteSpec {
            name: "all".into(),
            policies: vec!["scopes".into(), "agent-guard".into()],
            ..RouteSpec::default()
        })
        .build()
        .unwrap();
    Gate::new(Arc::new(set), None)
}

/// The caller of the replay benchmarks: an agent acting for a user, with read scopes.
pub fn replay_identity() -> Identity {
    Identity::Fixed(Principal {
        scopes: vec!["pets:read".into(), "library:read".into(), "pastries:read".into()],
        ..principals()[0].clone()
    })
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `RssAnon`).
fn status_bytes(key: &str) -> usize {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib =
        text.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok());
    kib.unwrap_or(0) * 1024
}

/// What each live, used instance of a policy adds, over `n` instances: `(resident, private)`
/// bytes. Resident (`VmRSS`) also counts the pages of the policy's memory image that an
/// instance has only read: those are one copy in the page cache, shared by every instance
/// (copy-on-write), so they are counted once per instance here but paid once in all.
/// Private (`RssAnon`) is what an instance costs on its own: the pages it wrote.
pub fn memory_per_instance(policy: &Policy, request: &Request, n: usize) -> (f64, f64) {
    let mut warm = policy.reusable_instance().unwrap();
    warm.evaluate_request(request).unwrap();
    drop(warm);
    let before = (status_bytes("VmRSS"), status_bytes("RssAnon"));
    let mut live = Vec::with_capacity(n);
    for _ in 0..n {
        let mut i = policy.reusable_instance().unwrap();
        i.evaluate_request(request).unwrap();
        live.push(i);
    }
    let after = (status_bytes("VmRSS"), status_bytes("RssAnon"));
    drop(live);
    let per = |a: usize, b: usize| a.saturating_sub(b) as f64 / n as f64;
    (per(after.0, before.0), per(after.1, before.1))
}
