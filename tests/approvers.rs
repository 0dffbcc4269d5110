//! Approvers are principals (issue 20): the admin API authenticates approvers with the
//! doors' `[identity]`, lets them see and decide only their `[approvals.groups]` approvals,
//! bars them from their own requests (four eyes, unless a group relaxes it), keeps the
//! admin token for automation (recorded as `admin-token`), and every approval event lands
//! in the audit log and `/metrics`. A real `portcullis serve` on loopback, real HTTP.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::serve::{ADMIN_TOKEN, AGENT_KEY, Server, USER_KEY, Upstream, send, temp_dir};
use serde_json::{Value, json};

const FIONA_KEY: &str = "test-approver-key-fiona-01";
const MALLORY_KEY: &str = "test-outsider-key-mallory1";
const OPS_BOT_KEY: &str = "test-agent-key-ops-bot-001";
const JWT_SECRET: &str = "test-jwt-secret-for-the-approvers-test";

struct Deployment {
    dir: PathBuf,
    config: PathBuf,
    server: Server,
    _upstream: Upstream,
}

impl Deployment {
    fn start(name: &str) -> Deployment {
        common::policies_dir();
        let dir = temp_dir(name);
        let upstream = Upstream::start();
        let guard = common::component("agent-guard").display().to_string();
        let sha256 = |key: &str| portcullis_host::sha256_hex(key.as_bytes());
        let config = dir.join("portcullis.toml");
        let text = common::serve::fixture_config(false, "invoices:read")
            + &format!(
                r#"
[[identity.jwt]]
issuer = "https://sso.test"
secret_env = "PORTCULLIS_TEST_JWT_SECRET"
audiences = ["portcullis-admin"]
kind = "user"
id_prefix = "sso:"
claims = ["groups"]

[[identity.api_keys]]
name = "fiona-key"
sha256 = "{fiona}"
kind = "user"
id = "fiona"
claims = {{ groups = "finance ops" }}

[[identity.api_keys]]
name = "mallory-key"
sha256 = "{mallory}"
kind = "user"
id = "mallory"
claims = {{ groups = "sales" }}

[[identity.api_keys]]
name = "ops-bot-key"
sha256 = "{ops_bot}"
kind = "agent"
id = "ops-bot"
scopes = ["invoices:write"]

[policies.guard]
module = "{guard}"
settings = {{ approver_group = "finance-approvers", ttl_seconds = 600, deny_without_on_behalf_of = false }}

[policies.guard-self]
module = "{guard}"
settings = {{ approver_group = "self-service", ttl_seconds = 600 }}

[policies.guard-short]
module = "{guard}"
settings = {{ approver_group = "finance-approvers", ttl_seconds = 1 }}

[policies.guard-legal]
module = "{guard}"
settings = {{ approver_group = "legal", ttl_seconds = 600 }}

[[routes]]
name = "partner"
hosts = ["crm.partner.example"]
policies = ["guard", "pii-redact"]

[[routes]]
name = "self"
hosts = ["api.test"]
paths = ["/self/**"]
policies = ["guard-self"]

[[routes]]
name = "short"
hosts = ["api.test"]
paths = ["/short/**"]
policies = ["guard-short"]

[[routes]]
name = "legal"
hosts = ["api.test"]
paths = ["/legal/**"]
policies = ["guard-legal"]

[[routes]]
name = "invoices"
hosts = ["api.test"]
paths = ["/invoices/**"]
policies = ["guard"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[approvals]
store = "approvals.sqlite"

[approvals.groups.finance-approvers]
ids = ["ops-bot", "alice"]
claims = {{ groups = "finance" }}
kinds = ["user", "agent"]

[approvals.groups.self-service]
ids = ["alice"]
four_eyes = false

[audit]
path = "audit.jsonl"
"#,
                fiona = sha256(FIONA_KEY),
                mallory = sha256(MALLORY_KEY),
                ops_bot = sha256(OPS_BOT_KEY),
                upstream = upstream.addr,
            );
        std::fs::write(&config, text).unwrap();
        let server = Server::start(
            &config,
            &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN), ("PORTCULLIS_TEST_JWT_SECRET", JWT_SECRET)],
        );
        Deployment { dir, config, server, _upstream: upstream }
    }

    /// Sends a request through the proxy as the holder of `key`, with this request id.
    fn call(
        &self,
        key: &str,
        host: &str,
        path: &str,
        request_id: &str,
        approval: Option<&str>,
    ) -> common::serve::Answer {
        let mut headers = vec![
            ("host", host),
            ("x-api-key", key),
            ("x-request-id", request_id),
            ("content-type", "application/json"),
        ];
        if let Some(id) = approval {
            headers.push(("portcullis-approval", id));
        }
        send("POST", &self.server.url("proxy", path), &headers, br#"{"amount": 120, "email": "carol@example.com"}"#)
    }

    /// A held request's approval id.
    fn held(&self, key: &str, host: &str, path: &str, request_id: &str) -> String {
        let answer = self.call(key, host, path, request_id, None);
        assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
        let problem = answer.json();
        assert_eq!(problem["code"], "approval-required", "{problem}");
        problem["approval"]["id"].as_str().unwrap().to_owned()
    }

    /// The admin API as an approver holding an API key (`x-api-key`), or with the admin
    /// token (`Authorization: Bearer`), or with nothing.
    fn admin(&self, method: &str, path: &str, who: Who, body: &Value) -> common::serve::Answer {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let mut headers = vec![("content-type", "application/json")];
        match who {
            Who::Key(key) => headers.push(("x-api-key", key)),
            Who::Bearer(token) => {
                headers.push(("authorization", token));
            }
            Who::AdminToken => headers.push(("authorization", &bearer)),
            Who::Nobody => {}
        }
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        send(method, &self.server.url("admin", path), &headers, &body)
    }

    fn decide(&self, id: &str, verb: &str, who: Who, note: &str) -> common::serve::Answer {
        self.admin("POST", &format!("/approvals/{id}/{verb}"), who, &json!({"note": note, "by": "typed-in-name"}))
    }

    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}"))).collect()
    }

    /// The audit records of approval `id`'s events, by event.
    fn events(&self, id: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|r| r["approval_id"] == id && r["approval"].is_object()).collect()
    }

    fn event(&self, id: &str, event: &str) -> Value {
        let found: Vec<Value> = self.events(id).into_iter().filter(|r| r["approval"]["event"] == event).collect();
        assert_eq!(found.len(), 1, "one `{event}` record for {id}: {found:?}\n{}", self.server.log());
        found.into_iter().next().unwrap()
    }
}

#[derive(Clone, Copy)]
enum Who<'a> {
    Key(&'a str),
    Bearer(&'a str),
    AdminToken,
    Nobody,
}

#[test]
fn approvers_are_principals_of_their_groups_with_four_eyes_and_every_event_is_audited() {
    let d = Deployment::start("approvers");

    // invoice-bot (an agent acting for alice) is held for finance-approvers.
    let a = d.held(AGENT_KEY, "api.test", "/invoices/7", "req-a-1");

    // No credential: 401. An outsider sees none of it and may not decide it.
    assert_eq!(d.admin("GET", "/approvals", Who::Nobody, &Value::Null).status, 401);
    let listed = d.admin("GET", "/approvals", Who::Key(MALLORY_KEY), &Value::Null);
    assert_eq!((listed.status, listed.json()), (200, json!([])), "an outsider lists nothing");
    let shown = d.admin("GET", &format!("/approvals/{a}"), Who::Key(MALLORY_KEY), &Value::Null);
    assert_eq!((shown.status, shown.json()["code"].clone()), (403, json!("not-an-approver")));
    let refused = d.decide(&a, "approve", Who::Key(MALLORY_KEY), "");
    assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["code"], "not-an-approver");
    assert!(refused.json()["detail"].as_str().unwrap().contains("not a member of approver group `finance-approvers`"));

    // Four eyes: alice is an approver, but the request was made on her behalf; the agent
    // itself acts for someone, so it is no approver at all.
    let own = d.decide(&a, "approve", Who::Key(USER_KEY), "");
    assert_eq!((own.status, own.json()["code"].clone()), (403, json!("four-eyes")), "{}", own.json());
    let agent = d.decide(&a, "approve", Who::Key(AGENT_KEY), "");
    assert_eq!((agent.status, agent.json()["code"].clone()), (403, json!("not-an-approver")));
    // ops-bot is an approver by id, but may not approve a request it made itself.
    let b = d.held(OPS_BOT_KEY, "api.test", "/invoices/8", "req-b-1");
    let own = d.decide(&b, "approve", Who::Key(OPS_BOT_KEY), "");
    assert_eq!((own.status, own.json()["code"].clone()), (403, json!("four-eyes")));

    // fiona (claim groups = "finance ops") sees both, with what the inbox shows, and decides.
    let listed = d.admin("GET", "/approvals?state=pending", Who::Key(FIONA_KEY), &Value::Null);
    assert_eq!(listed.status, 200);
    let ids: Vec<String> =
        listed.json().as_array().unwrap().iter().map(|x| x["id"].as_str().unwrap().to_owned()).collect();
    assert!(ids.contains(&a) && ids.contains(&b), "{ids:?}");
    let one = d.admin("GET", &format!("/approvals/{a}"), Who::Key(FIONA_KEY), &Value::Null).json();
    assert_eq!(
        (one["method"].clone(), one["host"].clone(), one["path"].clone()),
        (json!("POST"), json!("api.test"), json!("/invoices/7"))
    );
    assert_eq!(one["request_id"], "req-a-1");
    assert_eq!(one["body"], r#"{"amount": 120, "email": "carol@example.com"}"#);
    let approved = d.decide(&a, "approve", Who::Key(FIONA_KEY), "fine by me");
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    let approved = approved.json();
    assert_eq!(
        (
            &approved["decided_by"],
            &approved["decided_by_kind"],
            &approved["decided_by_credential"],
            &approved["decided_via"]
        ),
        (&json!("fiona"), &json!("user"), &json!("fiona-key"), &json!("principal")),
        "recorded from the credential, not the body's `by`"
    );
    let retry = d.call(AGENT_KEY, "api.test", "/invoices/7", "req-a-2", Some(&a));
    assert_eq!(retry.status, 200, "{}", String::from_utf8_lossy(&retry.body));
    let rejected = d.decide(&b, "reject", Who::Key(FIONA_KEY), "not this month");
    assert_eq!((rejected.status, rejected.json()["state"].clone()), (200, json!("rejected")));

    // four_eyes = false: alice may approve what her agent asked for self-service.
    let c = d.held(AGENT_KEY, "api.test", "/self/1", "req-c-1");
    let relaxed = d.decide(&c, "approve", Who::Key(USER_KEY), "");
    assert_eq!((relaxed.status, relaxed.json()["decided_by"].clone()), (200, json!("alice")));
    assert_eq!(d.call(AGENT_KEY, "api.test", "/self/1", "req-c-2", Some(&c)).status, 200);

    // The admin token still works (a `by` in the body is ignored) and is recorded as such;
    // a group without [approvals.groups] is the admin token's alone.
    let e = d.held(AGENT_KEY, "api.test", "/legal/1", "req-e-1");
    let unconfigured = d.decide(&e, "approve", Who::Key(FIONA_KEY), "");
    assert_eq!((unconfigured.status, unconfigured.json()["code"].clone()), (403, json!("not-an-approver")));
    assert!(unconfigured.json()["detail"].as_str().unwrap().contains("only the admin token"));
    let by_token = d.decide(&e, "approve", Who::AdminToken, "automation");
    assert_eq!(by_token.status, 200);
    assert_eq!(
        (by_token.json()["decided_by"].clone(), by_token.json()["decided_via"].clone()),
        (json!("admin-token"), json!("admin-token"))
    );
    let all = d.admin("GET", "/approvals", Who::AdminToken, &Value::Null).json();
    assert!(all.as_array().unwrap().len() >= 4, "the admin token sees every group: {all}");

    // The approver sees the body with the request's redactions applied (pii-redact on the
    // partner host), never the value.
    let f = d.held(AGENT_KEY, "crm.partner.example", "/contacts", "req-f-1");
    let partner = d.admin("GET", &format!("/approvals/{f}"), Who::Key(FIONA_KEY), &Value::Null).json();
    let body = partner["body"].as_str().unwrap_or_default();
    assert!(body.contains("\"amount\"") && !body.contains("carol@example.com"), "{partner}");

    // A short-lived approval expires pending: the sweeper records it once.
    let g = d.held(AGENT_KEY, "api.test", "/short/1", "req-g-1");
    let deadline = Instant::now() + Duration::from_secs(15);
    while d.events(&g).iter().all(|r| r["approval"]["event"] != "expired") {
        assert!(Instant::now() < deadline, "no expired record for {g}:\n{}", d.server.log());
        std::thread::sleep(Duration::from_millis(200));
    }

    an_sso_token_with_the_group_claim_decides(&d);
    audit_has_every_event(&d, [&a, &b, &e, &g]);
    metrics_count_events_and_pending(&d);
    the_cli_records_the_os_user(&d, &f);
}

/// An approver signed in with a token from the SSO issuer (an array `groups` claim, an
/// `id_prefix`) decides, recorded with the token's `jti`; a token without the group does not.
fn an_sso_token_with_the_group_claim_decides(d: &Deployment) {
    let token = |sub: &str, groups: Value| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"iss": "https://sso.test", "aud": "portcullis-admin", "sub": sub, "exp": now + 300,
                            "jti": format!("tok-{sub}"), "groups": groups});
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap();
        format!("Bearer {jwt}")
    };
    let h = d.held(AGENT_KEY, "api.test", "/invoices/10", "req-h-1");
    let sales = token("sam", json!(["sales"]));
    let refused = d.decide(&h, "approve", Who::Bearer(&sales), "");
    assert_eq!((refused.status, refused.json()["code"].clone()), (403, json!("not-an-approver")));
    let bad = d.decide(&h, "approve", Who::Bearer("Bearer not-a-token"), "");
    assert_eq!(bad.status, 401, "a bad token is refused, not taken for the admin token");
    let finance = token("frank", json!(["ops", "finance"]));
    let approved = d.decide(&h, "approve", Who::Bearer(&finance), "ok");
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    let approved = approved.json();
    assert_eq!(
        (&approved["decided_by"], &approved["decided_by_credential"], &approved["decided_via"]),
        (&json!("sso:frank"), &json!("tok-frank"), &json!("principal"))
    );
}

/// The audit log: every event, with the approval id and the request id.
fn audit_has_every_event(d: &Deployment, [a, b, e, g]: [&str; 4]) {
    let pending = d.event(a, "pending");
    assert_eq!(
        (pending["request_id"].clone(), pending["decision"].clone()),
        (json!("req-a-1"), json!("require-approval"))
    );
    assert_eq!(pending["approval"]["group"], "finance-approvers");
    assert_eq!(
        (pending["principal"]["id"].clone(), pending["on_behalf_of"].clone()),
        (json!("invoice-bot"), json!("alice"))
    );
    let approved = d.event(a, "approved");
    assert_eq!(approved["request_id"], "req-a-1");
    assert_eq!(
        approved["approval"]["by"],
        json!({"id": "fiona", "kind": "user", "credential_id": "fiona-key", "via": "principal"})
    );
    assert_eq!(approved["approval"]["note"], "fine by me");
    let redeemed = d.event(a, "redeemed");
    assert_eq!(
        (redeemed["request_id"].clone(), redeemed["approval"]["held_request_id"].clone()),
        (json!("req-a-2"), json!("req-a-1"))
    );
    let rejected = d.event(b, "rejected");
    assert_eq!(
        (rejected["request_id"].clone(), rejected["approval"]["note"].clone()),
        (json!("req-b-1"), json!("not this month"))
    );
    assert_eq!(rejected["approval"]["by"]["id"], "fiona");
    let token = d.event(e, "approved");
    assert_eq!(token["approval"]["by"], json!({"id": "admin-token", "via": "admin-token"}));
    assert_eq!(token["approval"]["group"], "legal");
    let expired = d.event(g, "expired");
    assert_eq!(
        (expired["request_id"].clone(), expired["approval"]["state"].clone()),
        (json!("req-g-1"), json!("pending"))
    );
    assert!(d.audit().iter().all(|r| !r.to_string().contains("typed-in-name")), "the body's `by` is never recorded");
    assert!(d.events(a).iter().all(|r| !r.to_string().contains("carol@example.com")), "no body in the audit log");
}

/// /metrics: counters per event and group, and the pending gauge.
fn metrics_count_events_and_pending(d: &Deployment) {
    let metrics = String::from_utf8(send("GET", &d.server.url("admin", "/metrics"), &[], b"").body).unwrap();
    for line in [
        r#"portcullis_approval_events_total{event="pending",group="finance-approvers"} 5"#,
        r#"portcullis_approval_events_total{event="approved",group="finance-approvers"} 2"#,
        r#"portcullis_approval_events_total{event="rejected",group="finance-approvers"} 1"#,
        r#"portcullis_approval_events_total{event="redeemed",group="self-service"} 1"#,
        r#"portcullis_approval_events_total{event="expired",group="finance-approvers"} 1"#,
        r#"portcullis_approvals_pending{group="finance-approvers"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(
        !metrics.contains(r#"portcullis_approvals_pending{group="legal"}"#),
        "no pending legal approval: {metrics}"
    );
}

/// The command line records the operating-system user.
fn the_cli_records_the_os_user(d: &Deployment, f: &str) {
    let out = common::portcullis_cli(
        &["approvals", "--config", d.config.to_str().unwrap(), "approve", f, "--by", "someone"],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = d.admin("GET", &format!("/approvals/{f}"), Who::AdminToken, &Value::Null).json();
    assert!(shown["decided_by"].as_str().unwrap().starts_with("cli:"), "{shown}");
    assert_eq!(shown["decided_via"], "cli");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--by"), "the ignored --by is pointed out");
}
