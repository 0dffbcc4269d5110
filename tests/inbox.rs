//! The approval inbox in a real browser (issue 20): `portcullis serve` with the proxy, the
//! admin listener and a SQLite approval store; an agent's request is held open while an
//! approver decides (`hold` on its route); headless Debian `chromium`, driven through
//! `chromedriver`'s W3C WebDriver API, signs in with an approver's API key, sees the request
//! in the list, opens it, reads the redacted body, and approves it with a note; the held
//! request then completes with the upstream's answer. Also: a form without its CSRF token is refused, a non-member sees nothing,
//! the admin token cannot sign in, and a path with `<script>` is shown as text. Screenshots
//! go to target/inbox-screenshots/ (docs/approvals.md shows them).
//!
//! WebDriver is spoken directly (JSON over HTTP with the tests' own hyper client): the test
//! needs a dozen endpoints, and a client crate would bring a second HTTP stack for them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::{ADMIN_TOKEN, AGENT_KEY, Server, Upstream, send, temp_dir};
use serde_json::{Value, json};

const FIONA_KEY: &str = "test-approver-key-fiona-01";
const MALLORY_KEY: &str = "test-outsider-key-mallory1";
const EVIL_PATH_ENCODED: &str = "/invoices/%3Cscript%3Ealert(1)%3C/script%3E";
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A caller whose request is held: its answer, once the approver decided.
type Caller = std::thread::JoinHandle<common::serve::Answer>;

struct Deployment {
    dir: PathBuf,
    server: Server,
    upstream: Upstream,
}

impl Deployment {
    /// With `hold`, the partner's invoices are held open while an approver decides
    /// (`hold = "10m"` on their route); otherwise every held request is answered at once.
    fn start(name: &str, hold: bool) -> Deployment {
        common::policies_dir();
        let dir = temp_dir(name);
        let upstream = Upstream::start();
        let guard = common::component("agent-guard").display().to_string();
        let sha256 = |key: &str| portcullis_host::sha256_hex(key.as_bytes());
        let config = dir.join("portcullis.toml");
        let text = common::serve::fixture_config(false, "invoices:read")
            + &format!(
                r#"
[[identity.api_keys]]
name = "fiona-key"
sha256 = "{fiona}"
kind = "user"
id = "fiona"
claims = {{ groups = "finance" }}

[[identity.api_keys]]
name = "mallory-key"
sha256 = "{mallory}"
kind = "user"
id = "mallory"
claims = {{ groups = "sales" }}

[policies.guard]
module = "{guard}"
settings = {{ approver_group = "finance-approvers", ttl_seconds = 600, deny_without_on_behalf_of = false }}
{held_route}
[[routes]]
name = "partner"
hosts = ["crm.partner.example"]
policies = ["guard", "pii-redact"]

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
ids = ["alice", "frank"]
claims = {{ groups = "finance" }}
kinds = ["user"]

# An SSO proxy in front of the admin listener asserts who is signed in.
[identity.trusted_headers]
id = "x-auth-user"

[audit]
path = "audit.jsonl"
"#,
                fiona = sha256(FIONA_KEY),
                mallory = sha256(MALLORY_KEY),
                upstream = upstream.addr,
                held_route = if hold {
                    "\n[[routes]]\nname = \"partner-invoices\"\nhosts = [\"crm.partner.example\"]\n\
                     paths = [\"/v1/invoices\"]\npolicies = [\"guard\", \"pii-redact\"]\nhold = \"10m\"\n"
                } else {
                    ""
                },
            );
        std::fs::write(&config, text).unwrap();
        let server = Server::start(&config, &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN)]);
        Deployment { dir, server, upstream }
    }

    /// invoice-bot (acting for alice) posts an invoice with a customer's e-mail through the proxy.
    fn call(&self, host: &str, path: &str, request_id: &str, approval: Option<&str>) -> common::serve::Answer {
        let mut headers = vec![
            ("host", host),
            ("x-api-key", AGENT_KEY),
            ("x-request-id", request_id),
            ("content-type", "application/json"),
        ];
        if let Some(id) = approval {
            headers.push(("portcullis-approval", id));
        }
        send("POST", &self.server.url("proxy", path), &headers, br#"{"amount": 120, "email": "carol@example.com"}"#)
    }

    /// The call on a thread of its own: a held request is answered only once decided.
    fn call_in_background(&self, host: &'static str, path: &'static str, request_id: &'static str) -> Caller {
        let url = self.server.url("proxy", path);
        std::thread::spawn(move || {
            let headers = [
                ("host", host),
                ("x-api-key", AGENT_KEY),
                ("x-request-id", request_id),
                ("content-type", "application/json"),
            ];
            send("POST", &url, &headers, br#"{"amount": 120, "email": "carol@example.com"}"#)
        })
    }

    /// The id of the pending approval of request `request_id`, once it exists.
    fn pending_for(&self, request_id: &str) -> String {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let list =
                send("GET", &self.admin_url("/approvals?state=pending"), &[("authorization", &bearer)], b"").json();
            let found = list.as_array().unwrap().iter().find(|a| a["request_id"] == request_id);
            if let Some(id) = found.and_then(|a| a["id"].as_str()) {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no pending approval for {request_id}: {list}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn admin_url(&self, path: &str) -> String {
        self.server.url("admin", path)
    }

    fn approval(&self, id: &str) -> Value {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        send("GET", &self.admin_url(&format!("/approvals/{id}")), &[("authorization", &bearer)], b"").json()
    }

    fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// The approval id of a held answer.
fn held(answer: &common::serve::Answer) -> String {
    assert_eq!(answer.status, 403, "{}", String::from_utf8_lossy(&answer.body));
    let problem = answer.json();
    assert_eq!(problem["code"], "approval-required", "{problem}");
    problem["approval"]["id"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// A small W3C WebDriver client over chromedriver
// ---------------------------------------------------------------------------------------

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    shots: PathBuf,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| Path::new(p).exists());
        let driver =
            ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].into_iter().find(|p| Path::new(p).exists());
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            panic!(
                "the inbox test needs Debian's chromium and chromedriver: apt-get install -y chromium chromium-driver (scripts/test.sh does)"
            );
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while common::serve::try_send("GET", &format!("{base}/status"), &[], b"")
            .ok()
            .is_none_or(|a| a.json()["value"]["ready"] != true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let shots = common::root().join("target/inbox-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let mut browser = Browser { driver: child, base, session: String::new(), shots };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                         "--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1100,900",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let created = browser.call("POST", "/session", &capabilities);
        created["sessionId"].as_str().expect("a WebDriver session").clone_into(&mut browser.session);
        browser
    }

    /// One WebDriver command; returns its `value`, failing the test on an error.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    /// One WebDriver command: its `value`, or the error.
    fn try_call(&self, method: &str, path: &str, body: &Value) -> Result<Value, String> {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        let answer = send(method, &url, &[("content-type", "application/json")], &body);
        let value = answer.json()["value"].take();
        if answer.status < 300 { Ok(value) } else { Err(format!("{} {value}", answer.status)) }
    }

    /// Clicks a button or link that loads another page, and waits until it has.
    fn click_and_wait(&self, css: &str) {
        self.and_wait(css, || self.click(css));
    }

    /// Does `action`, which loads another page, and waits until it has.
    fn and_wait(&self, what: &str, action: impl FnOnce()) {
        let old = self.find("html");
        action();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.try_call("GET", &format!("/element/{old}/name"), &Value::Null).is_ok() {
            assert!(Instant::now() < deadline, "`{what}` loaded no page");
            std::thread::sleep(Duration::from_millis(50));
        }
        while self.script("return document.readyState;") != "complete" {
            assert!(Instant::now() < deadline, "the page after `{what}` never finished loading");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses keys on the keyboard (WebDriver key codes: `\u{E004}` is Tab, `\u{E007}` Enter).
    fn keys(&self, text: &str) {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| [json!({"type": "keyDown", "value": c}), json!({"type": "keyUp", "value": c})])
            .collect();
        self.call("POST", "/actions", &json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}));
    }

    /// Presses Tab until the focused element matches `css` (at most 30 times).
    fn tab_to(&self, css: &str) {
        for _ in 0..30 {
            if self.script(&format!("return document.activeElement.matches({});", json!(css))) == true {
                return;
            }
            self.keys("\u{E004}");
        }
        panic!("Tab never reaches `{css}`");
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", &json!({ "url": url }));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", &Value::Null).as_str().unwrap().to_owned()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", &Value::Null).as_str().unwrap().to_owned()
    }

    fn find(&self, css: &str) -> String {
        let found = self.call("POST", "/element", &json!({"using": "css selector", "value": css}));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element `{css}`: {found}\n{}", self.source())).to_owned()
    }

    fn count(&self, css: &str) -> usize {
        self.call("POST", "/elements", &json!({"using": "css selector", "value": css})).as_array().unwrap().len()
    }

    fn text(&self, css: &str) -> String {
        let element = self.find(css);
        self.call("GET", &format!("/element/{element}/text"), &Value::Null).as_str().unwrap().to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/value"), &json!({ "text": text }));
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), &json!({}));
    }

    fn cookie(&self, name: &str) -> Value {
        self.call("GET", &format!("/cookie/{name}"), &Value::Null)
    }

    fn resize(&self, width: u32, height: u32) {
        self.call("POST", "/window/rect", &json!({"width": width, "height": height}));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", &json!({"script": script, "args": []}))
    }

    /// Whether a JavaScript dialog is open (an injected script would have opened one).
    fn alert_open(&self) -> bool {
        let url = format!("{}/session/{}/alert/text", self.base, self.session);
        send("GET", &url, &[], b"").status == 200
    }

    /// Saves a PNG of the viewport as target/inbox-screenshots/NAME.png.
    fn screenshot(&self, name: &str) {
        let png = base64_decode(self.call("GET", "/screenshot", &Value::Null).as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = common::serve::try_send("DELETE", &format!("{}/session/{}", self.base, self.session), &[], b"");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[test]
fn an_approver_signs_in_sees_the_held_request_and_approves_it_in_a_real_browser() {
    let d = Deployment::start("inbox-browser", true);

    // invoice-bot's invoice to a partner CRM is held for finance-approvers (its request
    // kept open: `hold` on the route); pii-redact masks the customer's e-mail in what is
    // kept for the approver.
    let caller = d.call_in_background("crm.partner.example", "/v1/invoices", "req-inbox-1");
    let id = d.pending_for("req-inbox-1");
    // A request whose path carries markup (percent-encoded on the wire, as HTTP requires;
    // the gate decodes it), held too.
    let evil = held(&d.call("crm.partner.example", EVIL_PATH_ENCODED, "req-inbox-evil", None));
    assert_eq!(d.approval(&evil)["path"], "/invoices/<script>alert(1)</script>");

    let profile = d.dir.join("chromium-profile");
    let browser = Browser::start(&profile);

    // Not signed in: the inbox sends the browser to the sign-in form.
    browser.go(&d.admin_url("/inbox"));
    assert!(browser.url().ends_with("/inbox/sign-in"), "{}", browser.url());
    browser.screenshot("1-sign-in");

    // The admin token is for automation: it cannot sign in.
    browser.type_into("#credential", ADMIN_TOKEN);
    browser.click_and_wait("form.card button[type=submit]");
    assert!(browser.text(".notice").contains("admin token is for automation"), "{}", browser.source());

    // fiona signs in with her API key and sees the held requests of her group.
    browser.type_into("#credential", FIONA_KEY);
    browser.click_and_wait("form.card button[type=submit]");
    assert!(browser.url().ends_with("/inbox"), "{}", browser.url());
    let list = browser.text("main");
    assert!(list.contains("Signed in as fiona") || browser.text("header").contains("fiona"), "{list}");
    assert!(list.contains("POST crm.partner.example /v1/invoices"), "{list}");
    assert!(list.contains("agent invoice-bot") && list.contains("on behalf of alice"), "{list}");
    assert!(list.contains("finance-approvers") && list.contains("left"), "{list}");
    // The markup in a path is shown as text, never run.
    assert!(list.contains("<script>alert(1)</script>"), "{list}");
    assert!(browser.source().contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!browser.alert_open(), "no script ran");
    assert_eq!(browser.count(&format!("a[href='/inbox/approvals/{id}']")), 1);
    browser.screenshot("2-pending-list");

    // The session cookie: HttpOnly, SameSite=Strict, scoped to /inbox.
    let cookie = browser.cookie("portcullis_inbox");
    assert_eq!((cookie["httpOnly"].clone(), cookie["sameSite"].clone()), (json!(true), json!("Strict")), "{cookie}");
    assert_eq!(cookie["path"], "/inbox", "{cookie}");
    let session = format!("portcullis_inbox={}", cookie["value"].as_str().unwrap());

    strict_headers(&d, &session);

    // She opens the invoice: the body as the policies saw it, with the e-mail redacted.
    browser.click_and_wait(&format!("a[href='/inbox/approvals/{id}']"));
    let body = browser.text("pre.body");
    assert!(body.contains("\"amount\"") && body.contains("***"), "{body}");
    assert!(!browser.source().contains("carol@example.com"), "the redacted value is never shown");
    let facts = browser.text("main");
    assert!(facts.contains("pending") && facts.contains("req-inbox-1") && facts.contains("guard"), "{facts}");
    browser.resize(1100, 1150);
    browser.screenshot("3-approval");

    forged_decisions_are_refused(&d, &id, &session);

    // She approves with a note, from the keyboard alone: Tab to the note, type, Tab to
    // Approve (its focus is visible), Enter.
    browser.tab_to("#note");
    browser.keys("invoice checked with the customer");
    browser.tab_to("button[value=approve]");
    let outline = browser.script("return getComputedStyle(document.activeElement).outlineStyle;");
    assert_eq!(outline, "solid", "a visible focus ring");
    browser.and_wait("Enter on Approve", || browser.keys("\u{E007}"));
    assert_eq!(browser.count("button[value=approve]"), 0, "no form once decided");

    // The held request completes: the caller's one request, kept open, is forwarded once
    // and answered by the upstream.
    let answer = caller.join().unwrap();
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["path"], "/v1/invoices", "the upstream's own answer");
    let seen = d.upstream.seen_at("/v1/invoices");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(!String::from_utf8_lossy(&seen[0].body).contains("carol@example.com"), "forwarded redacted");

    // The approver sees it go through.
    browser.go(&d.admin_url(&format!("/inbox/approvals/{id}")));
    let facts = browser.text("dl.facts");
    assert!(facts.contains("used") && facts.contains("fiona"), "{facts}");
    assert!(facts.contains("invoice checked with the customer"), "{facts}");
    assert!(browser.text(".outcome").contains("the held request went through"), "{}", browser.source());
    browser.screenshot("4-approved");
    browser.resize(1100, 900);

    decision_recorded(&d, &id);

    // The history, filtered (redeemed by the held request, the approval is now `used`).
    browser.go(&d.admin_url("/inbox/history?state=used&group=finance-approvers"));
    assert!(browser.text("table").contains("invoice checked with the customer"));
    browser.screenshot("5-history");
    browser.go(&d.admin_url("/inbox/history?state=rejected"));
    assert_eq!(browser.count("table"), 0);

    // On a phone: the list fits the screen's width.
    browser.resize(390, 844);
    browser.go(&d.admin_url("/inbox"));
    let widths = browser.script("return [document.documentElement.scrollWidth, window.innerWidth];");
    assert!(widths[0].as_u64() <= widths[1].as_u64(), "no sideways scrolling on a phone: {widths}");
    browser.screenshot("6-phone-list");
    browser.click_and_wait(&format!("a[href='/inbox/approvals/{evil}']"));
    browser.resize(390, 1400);
    browser.screenshot("7-phone-approval");
    browser.resize(1100, 900);

    outsiders_and_four_eyes(&d, &browser, &session, &id, &evil);
}

/// Every inbox page carries the strict headers.
fn strict_headers(d: &Deployment, session: &str) {
    let page = send("GET", &d.admin_url("/inbox"), &[("cookie", session)], b"");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-security-policy"), Some(CSP));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

/// A decision without the form's CSRF token (or with a wrong one) is refused, and a GET
/// decides nothing.
fn forged_decisions_are_refused(d: &Deployment, id: &str, session: &str) {
    let decide_url = d.admin_url(&format!("/inbox/approvals/{id}"));
    let form = [("content-type", "application/x-www-form-urlencoded"), ("cookie", session)];
    for body in ["decision=approve&note=forged", "decision=approve&note=forged&csrf=00112233445566778899aabbccddeeff"] {
        let forged = send("POST", &decide_url, &form, body.as_bytes());
        assert_eq!(forged.status, 403, "{}", String::from_utf8_lossy(&forged.body));
    }
    // And a GET changes nothing.
    assert_eq!(send("GET", &format!("{decide_url}?decision=approve"), &form, b"").status, 200);
    assert_eq!(d.approval(id)["state"], "pending");
}

/// The decision is recorded as fiona's, with her note, in the store and the audit log.
fn decision_recorded(d: &Deployment, id: &str) {
    let approval = d.approval(id);
    // Approved, then used at once by the held request.
    assert_eq!(approval["state"], "used");
    assert_eq!(
        (&approval["decided_by"], &approval["decided_via"], &approval["decided_by_credential"]),
        (&json!("fiona"), &json!("principal"), &json!("fiona-key"))
    );
    assert_eq!(approval["note"], "invoice checked with the customer");
    let decided: Vec<Value> =
        d.audit().into_iter().filter(|r| r["approval_id"] == id && r["approval"]["event"] == "approved").collect();
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(decided[0]["front_door"], "inbox");
    assert_eq!(decided[0]["approval"]["by"]["id"], "fiona");
}

/// Signed out, mallory (not in finance) signs in and sees nothing; alice, in finance but
/// the one the request was made for, may not decide it (four eyes).
fn outsiders_and_four_eyes(d: &Deployment, browser: &Browser, session: &str, id: &str, evil: &str) {
    // Sign out; mallory (not in finance) signs in and sees nothing of it.
    browser.go(&d.admin_url("/inbox"));
    browser.click_and_wait("form.inline button");
    assert!(browser.url().ends_with("/inbox/sign-in"));
    assert_eq!(send("GET", &d.admin_url("/inbox"), &[("cookie", session)], b"").status, 303, "the session ended");
    browser.type_into("#credential", MALLORY_KEY);
    browser.click_and_wait("form.card button[type=submit]");
    let list = browser.text("main");
    assert!(list.contains("member of no approver group") && list.contains("No request is waiting"), "{list}");
    assert_eq!(browser.count("ul.approvals li"), 0);
    browser.go(&d.admin_url(&format!("/inbox/approvals/{id}")));
    assert!(browser.text("main").contains("does not exist, or belongs to a group you are not in"));

    // Four eyes: alice is a finance approver, but invoice-bot asked on her behalf: she sees
    // the request and why she may not decide it, and no buttons.
    browser.go(&d.admin_url("/inbox"));
    browser.click_and_wait("form.inline button");
    browser.type_into("#credential", common::serve::USER_KEY);
    browser.click_and_wait("form.card button[type=submit]");
    browser.click_and_wait(&format!("a[href='/inbox/approvals/{evil}']"));
    assert!(browser.text(".notice").contains("four eyes"), "{}", browser.source());
    assert_eq!(browser.count("button[value=approve]"), 0);
    assert_eq!(d.approval(evil)["state"], "pending");
}

/// The `csrf` field of a page's form.
fn csrf_of(page: &str) -> String {
    let start = page.find(r#"name="csrf" value=""#).expect("a form with a CSRF token") + r#"name="csrf" value=""#.len();
    page[start..].split('"').next().unwrap().to_owned()
}

#[test]
fn an_approver_behind_an_sso_proxy_is_signed_in_by_its_headers_and_every_form_is_bound_to_them() {
    let d = Deployment::start("inbox-sso", false);
    let id = held(&d.call("crm.partner.example", "/v1/invoices", "req-sso-1", None));
    let page_url = d.admin_url(&format!("/inbox/approvals/{id}"));

    // The proxy in front says frank is signed in: no form, no session, no sign-out.
    let frank = [("x-auth-user", "frank")];
    let list = send("GET", &d.admin_url("/inbox"), &frank, b"");
    assert_eq!(list.status, 200);
    let list = String::from_utf8(list.body).unwrap();
    assert!(list.contains(&format!("/inbox/approvals/{id}")) && !list.contains("Sign out"), "{list}");
    let page = send("GET", &page_url, &frank, b"");
    assert!(page.header("set-cookie").is_none(), "no session for header sign-in");
    let csrf = csrf_of(&String::from_utf8(page.body).unwrap());

    // Without the token, with another principal's, or with another principal presenting
    // frank's: refused, and nothing is decided.
    let form = |who: &'static str| [("x-auth-user", who), ("content-type", "application/x-www-form-urlencoded")];
    let body = |csrf: &str| format!("csrf={csrf}&decision=reject&note=not+ours");
    assert_eq!(send("POST", &page_url, &form("frank"), b"decision=reject").status, 403);
    assert_eq!(send("POST", &page_url, &form("alice"), body(&csrf).as_bytes()).status, 403);
    assert_eq!(d.approval(&id)["state"], "pending");

    // With it, frank rejects, and the caller's retry is refused, never forwarded.
    let decided = send("POST", &page_url, &form("frank"), body(&csrf).as_bytes());
    assert_eq!(decided.status, 303, "{}", String::from_utf8_lossy(&decided.body));
    assert_eq!(decided.header("location"), Some(format!("/inbox/approvals/{id}").as_str()));
    let approval = d.approval(&id);
    assert_eq!((&approval["state"], &approval["decided_by"]), (&json!("rejected"), &json!("frank")));
    assert_eq!(approval["note"], "not ours");
    let retry = d.call("crm.partner.example", "/v1/invoices", "req-sso-2", Some(&id));
    assert_eq!(retry.status, 403, "{}", String::from_utf8_lossy(&retry.body));
    assert!(d.upstream.seen_at("/v1/invoices").is_empty());

    // A second decision: 409, shown on the page.
    let again = send("POST", &page_url, &form("frank"), body(&csrf).as_bytes());
    assert_eq!(again.status, 409, "{}", String::from_utf8_lossy(&again.body));

    // Unauthenticated: sent to the sign-in form; a POST is refused outright.
    let anonymous = send("GET", &d.admin_url("/inbox"), &[], b"");
    assert_eq!((anonymous.status, anonymous.header("location")), (303, Some("/inbox/sign-in")));
    assert_eq!(send("POST", &page_url, &[], body(&csrf).as_bytes()).status, 401);
}
