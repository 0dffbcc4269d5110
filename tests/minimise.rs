//! The `minimise` reference policy end to end: `portcullis serve`'s proxy door with
//! `minimise` on the payments route, in front of a real upstream that answers a payments
//! JSON (nested card numbers, an IBAN in a free-text note, e-mails, a JWT, a customer id);
//! the caller gets the masks, pseudonyms are stable across requests, agents and third
//! parties get the stricter rules, and the audit record lists the pointers changed and no
//! value. Then `portcullis replay` of the same exchanges (tests/data/minimise-payments.jsonl)
//! shows the same redactions. The config is tests/data/minimise.toml.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::serve::{Answer, Server, send, temp_dir};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The agent's API key (its sha256 is in tests/data/minimise.toml).
const AGENT_KEY: &str = "test-minimise-agent-key-0001";
/// The pseudonym key, passed in the environment variable the config names.
const PSEUDONYM_KEY: (&str, &str) = ("PORTCULLIS_TEST_PSEUDONYM_KEY", "test-pseudonym-key-for-minimise-0001");

/// Values that must never reach the caller or the audit log.
const SECRETS: [&str; 7] = [
    "4111111111111111",
    "5555555555554444",
    "GB82WEST12345698765432",
    "DE89370400440532013000",
    "alice@example.com",
    "cus_8842",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
];

/// The payments document the upstream answers: the recorded response of the capture's
/// first entry, so the proxy and the replay see the same data.
fn payments() -> Value {
    let text = std::fs::read_to_string(common::root().join("tests/data/minimise-payments.jsonl")).unwrap();
    let line = text.lines().find(|l| l.contains("\"user-reads-payments\"")).expect("the user's entry");
    let exchange: Value = serde_json::from_str(line).unwrap();
    exchange["response"]["body"]["json"].clone()
}

/// A real HTTP/1.1 upstream on loopback: `GET` answers the payments document, anything
/// else `{"accepted": true}`; it records the bodies it receives.
struct PaymentsApi {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    _runtime: tokio::runtime::Runtime,
}

impl PaymentsApi {
    fn start() -> PaymentsApi {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (record, document) = (bodies.clone(), payments().to_string());
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (record, document) = (record.clone(), document.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (record, document) = (record.clone(), document.clone());
                        async move {
                            let get = req.method() == hyper::Method::GET;
                            let body =
                                req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            record.lock().unwrap().push(body);
                            let answer = if get { document } else { r#"{"accepted": true}"#.to_owned() };
                            let mut response = hyper::Response::new(Full::new(Bytes::from(answer)));
                            response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        PaymentsApi { addr, bodies, _runtime: runtime }
    }
}

/// tests/data/minimise.toml with the built component, plus the proxy door in front of
/// `upstream` and an audit log, written into `dir`.
fn write_config(dir: &Path, upstream: SocketAddr) -> std::path::PathBuf {
    let module = common::component("minimise");
    let text = std::fs::read_to_string(common::root().join("tests/data/minimise.toml"))
        .unwrap()
        .replace("../../target/policies/minimise.wasm", module.to_str().unwrap())
        + &format!(
            r#"
[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[audit]
path = "audit.jsonl"
"#
        );
    let config = dir.join("portcullis.toml");
    std::fs::write(&config, text).unwrap();
    config
}

fn get(server: &Server, headers: &[(&str, &str)]) -> Answer {
    let answer = send("GET", &server.url("proxy", "/payments/recent"), headers, b"");
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    answer
}

fn assert_no_secrets(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{what} holds `{secret}`: {text}");
    }
}

#[test]
fn the_proxy_masks_payments_and_the_audit_lists_pointers_without_values() {
    let dir = temp_dir("minimise-serve");
    let api = PaymentsApi::start();
    let server = Server::start(&write_config(&dir, api.addr), &[PSEUDONYM_KEY]);

    // A user on the first-party host: cards and IBANs keep their last 4 (by name and, in
    // the free-text note, by value), e-mails their domain, the JWT is gone, the customer id
    // is a pseudonym.
    let first = get(&server, &[("host", "api.test")]);
    let body = first.json();
    let payments = &body["payments"];
    assert_eq!(payments[0]["payer"]["card"]["card_number"], "************1111");
    assert_eq!(payments[1]["payer"]["card"]["card_number"], "************4444");
    assert_eq!(payments[0]["payer"]["card"]["expiry"], "12/29", "other members are kept");
    assert_eq!(payments[0]["note"], "refund to IBAN ******************5432 please");
    assert_eq!(payments[1]["iban"], "******************3000");
    assert_eq!(payments[0]["payer"]["email"], "*****@example.com");
    assert_eq!(payments[1]["payer"]["email"], "***@example.com");
    assert!(body.get("session").is_none(), "the JWT is removed: {body}");
    let pseudonym = body["customer_id"].as_str().unwrap().to_owned();
    assert!(pseudonym.starts_with("pn_") && pseudonym.len() == 29, "{pseudonym}");
    assert_no_secrets("the answer", &String::from_utf8_lossy(&first.body));
    assert_eq!(first.header("content-length"), Some(first.body.len().to_string().as_str()));

    // The same value gives the same pseudonym on the next request: joins still work.
    let second = get(&server, &[("host", "api.test")]);
    assert_eq!(second.json()["customer_id"], pseudonym.as_str());
    assert_eq!(second.body, first.body);

    // An agent gets the stricter rule listed later: e-mails become pseudonyms too.
    let agent = get(&server, &[("host", "api.test"), ("x-api-key", AGENT_KEY)]).json();
    let email = agent["payments"][0]["payer"]["email"].as_str().unwrap();
    assert!(email.starts_with("pn_"), "{agent}");
    assert_eq!(agent["payments"][0]["payer"]["card"]["card_number"], "************1111");

    // A third-party host: the card in the request body is masked whole before it leaves.
    let sent = send(
        "POST",
        &server.url("proxy", "/payments/forward"),
        &[("host", "partner.test"), ("content-type", "application/json")],
        br#"{"card_number": "4111111111111111", "amount": 5}"#,
    );
    assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
    let forwarded = api.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&forwarded).unwrap()["card_number"], "********");

    // The audit: the concrete pointers changed, the rules that matched, no value.
    server.stop();
    let log = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert_no_secrets("the audit log", &log);
    assert!(!log.contains(&pseudonym), "the audit log holds no masked value either");
    let records: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let response = records
        .iter()
        .find(|r| r["phase"] == "response" && r["decision"] == "redact")
        .unwrap_or_else(|| panic!("no redacted response in {log}"));
    let redacted: Vec<&str> = response["redacted"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for pointer in [
        "json:/payments/0/payer/card/card_number",
        "json:/payments/1/payer/card/card_number",
        "json:/payments/1/iban",
        "json:/payments/0/note",
        "json:/payments/0/payer/email",
        "json:/session",
        "json:/customer_id",
    ] {
        assert!(redacted.contains(&pointer), "{pointer} missing from {redacted:?}");
    }
    assert!(!redacted.contains(&"json:/payments/1/note"), "an untouched note is not listed: {redacted:?}");
    let labels = response["labels"].to_string();
    assert!(labels.contains("cards,iban,emails,secrets,customers"), "{labels}");
    let partner = records
        .iter()
        .find(|r| r["phase"] == "request" && r["decision"] == "redact")
        .unwrap_or_else(|| panic!("no redacted request in {log}"));
    assert_eq!(partner["redacted"], serde_json::json!(["json:/card_number"]));
}

#[test]
fn a_replay_of_the_payments_capture_shows_the_redactions() {
    let out = common::portcullis_cli(
        &["replay", "--config", "tests/data/minimise.toml", "--show-redactions", "tests/data/minimise-payments.jsonl"],
        &[PSEUDONYM_KEY],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        r#"+          "card_number": "************1111","#,
        r#"+          "card_number": "************4444","#,
        r#"+      "note": "refund to IBAN ******************5432 please","#,
        r#"+      "iban": "******************3000","#,
        r#"+        "email": "*****@example.com""#,
        r#"-  "session": "eyJ"#,
        // The partner's request body.
        r#"+  "card_number": "********""#,
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
    // The user's and the agent's entries: the same customer pseudonym; the agent's e-mails
    // are pseudonyms, the user's keep their domain.
    let pseudonyms: Vec<&str> = stdout.lines().filter(|l| l.starts_with("+  \"customer_id\": \"pn_")).collect();
    assert_eq!(pseudonyms.len(), 2, "{stdout}");
    assert_eq!(pseudonyms[0], pseudonyms[1]);
    assert!(stdout.contains(r#"+        "email": "pn_"#), "{stdout}");
    assert!(stdout.contains("Replayed 3 entries"), "{stdout}");
}
