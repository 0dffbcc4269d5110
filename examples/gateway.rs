//! A gateway of your own on `portcullis-host`: a hyper server whose handler is guarded by
//! the same gate `portcullis serve` uses (authentication, policies, approvals, audit).
//!
//!   scripts/build-policies.sh && cargo run --example gateway
//!   curl -H 'x-api-key: demo-user-key-0001' http://127.0.0.1:8090/customers/42
//!
//! The lines an embedder writes are in `guard`: check and normalise the request (its
//! canonical target), `Gate::admit`, build the request your handler gets from what the
//! policies judged (`adapters::forward::upstream_request`), and on the way back
//! `Gate::release` and apply the response's redactions. Everything else here is an
//! ordinary hyper service.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use portcullis_host::adapters::forward::{downstream_response, take_incoming, upstream_request};
use portcullis_host::adapters::http::{FromHttp, canonical_request_from_http, response_from_http};
use portcullis_host::approval::MemoryStore;
use portcullis_host::audit::JsonLinesSink;
use portcullis_host::config::base_dir;
use portcullis_host::gate::{Admission, Arrival, Gate, Reach, Refusal, Release};
use portcullis_host::identity::Authenticator;
use portcullis_host::{Config, Phase, PolicySet};

type Response = http::Response<Vec<u8>>;

/// The gate from a config: policies and routes, identity, approvals kept in memory (use
/// `approval::SqliteStore` to keep them across restarts), audit records to stdout.
fn gate(config_path: &Path) -> Result<Gate, Box<dyn std::error::Error>> {
    let config = Config::read(config_path)?;
    let set = PolicySet::from_config_file(config_path)?;
    let authenticator = Authenticator::new(&config.identity, &base_dir(config_path))?;
    Ok(Gate::new(Arc::new(set), Some(Arc::new(authenticator)))
        .with_approvals(Arc::new(MemoryStore::new()))
        .with_audit(Arc::new(JsonLinesSink::stdout())))
}

/// Middleware: runs `handler` only for requests the policies let through, and gives it
/// exactly what they judged: the canonical target, the headers as the gate left them
/// (credentials and the approval header removed, header redactions applied), the body as
/// redacted, and `X-Portcullis-*` set by the host, never by the caller.
fn guard(
    gate: &Gate,
    mut req: http::Request<Vec<u8>>,
    handler: impl FnOnce(http::Request<Vec<u8>>) -> Response,
) -> Response {
    if take_incoming(req.headers_mut()).is_err() {
        return problem(400, "bad request");
    }
    let opts = FromHttp { default_scheme: "http".into(), target_rules: gate.target_rules(), ..FromHttp::default() };
    let Ok((mut request, target)) = canonical_request_from_http(&req, &opts) else {
        return problem(400, "bad request");
    };
    let arrival = Arrival::take("gateway-example", Reach::ALL, &mut request);
    let ticket = match gate.admit(&mut request, arrival) {
        Admission::Refuse(refusal) => return refused(&refusal),
        Admission::Forward(ticket) => ticket,
    };
    let redactions = ticket.check.verdict.redactions();
    // The route was found once, when the request was admitted, and travels in the ticket.
    let response_phase = ticket.route().runs(Phase::Response);
    let Ok(mut judged) = upstream_request(&ticket.request, &target, redactions, response_phase) else {
        return problem(500, "a redaction could not be applied");
    };
    *judged.body_mut() = ticket.request.body.as_ref().map(|b| b.bytes.clone()).unwrap_or_default();
    let mut res = handler(judged);
    let Ok(mut response) = response_from_http(&res) else { return problem(502, "bad response") };
    match gate.release(&ticket, &mut response) {
        Release::Refuse(refusal) => refused(&refusal),
        Release::Return(check) => match downstream_response(&mut res, check.verdict.redactions()) {
            Ok(_) => res,
            Err(_) => problem(502, "a redaction could not be applied"),
        },
    }
}

/// The API being guarded: a customer record with personal data.
fn api(req: http::Request<Vec<u8>>) -> Response {
    let body = format!(
        r#"{{"path": "{}", "name": "Ada", "email": "ada@example.com", "phone": "+44 20 7946 0000"}}"#,
        req.uri().path()
    );
    http::Response::builder().header("content-type", "application/json").body(body.into_bytes()).unwrap_or_default()
}

fn refused(refusal: &Refusal) -> Response {
    let mut res = http::Response::new(refusal.problem_body());
    *res.status_mut() = http::StatusCode::from_u16(refusal.status).unwrap_or(http::StatusCode::FORBIDDEN);
    res.headers_mut().insert("content-type", http::HeaderValue::from_static("application/problem+json"));
    for (name, value) in refusal.headers() {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, value);
        }
    }
    res
}

fn problem(status: u16, detail: &str) -> Response {
    let mut res = http::Response::new(format!(r#"{{"status": {status}, "detail": "{detail}"}}"#).into_bytes());
    *res.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    res
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gate = Arc::new(gate(Path::new("examples/serve.toml"))?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8090").await?;
    eprintln!("guarded API on http://127.0.0.1:8090 (try x-api-key: demo-user-key-0001)");
    loop {
        let (stream, _) = listener.accept().await?;
        let gate = gate.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let gate = gate.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                    let req = http::Request::from_parts(parts, body);
                    // Policy calls are synchronous CPU work: keep them off the async workers.
                    let res = tokio::task::spawn_blocking(move || guard(&gate, req, api))
                        .await
                        .unwrap_or_else(|_| problem(500, "evaluation failed"));
                    Ok::<_, Infallible>(res.map(|b| Full::new(Bytes::from(b))))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str, key: &str) -> http::Request<Vec<u8>> {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "api.example.com")
            .header("x-api-key", key)
            .body(Vec::new())
            .unwrap()
    }

    fn example_gate() -> Gate {
        let built = std::process::Command::new("bash").arg("scripts/build-policies.sh").output().unwrap();
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        gate(Path::new("examples/serve.toml")).unwrap()
    }

    #[test]
    fn the_guard_redacts_refuses_and_holds_as_the_policies_say() {
        let gate = example_gate();
        let mut called = 0;
        let ok = guard(&gate, request("GET", "/customers/42", "demo-user-key-0001"), |r| {
            called += 1;
            api(r)
        });
        assert_eq!(ok.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(ok.body()).unwrap();
        assert_eq!((body["email"].as_str(), body["name"].as_str()), (Some("***"), Some("Ada")));

        let unknown = guard(&gate, request("GET", "/customers/42", "not-a-known-key-000"), |r| {
            called += 1;
            api(r)
        });
        assert_eq!(unknown.status(), 401);

        let held = guard(&gate, request("POST", "/invoices/1", "demo-agent-key-0001"), |r| {
            called += 1;
            api(r)
        });
        assert_eq!(held.status(), 403);
        assert!(held.headers().contains_key("portcullis-approval"));
        assert_eq!(called, 1, "only the allowed request reached the API");
    }

    /// The handler gets what the policies judged: the canonical target, no approval header,
    /// and the principal header set by the host, not the caller's.
    #[test]
    fn the_handler_gets_exactly_what_was_judged() {
        let gate = example_gate();
        let mut req = request("GET", "/public/../customers/42", "demo-user-key-0001");
        req.headers_mut().insert("portcullis-approval", "apr-forged".parse().unwrap());
        req.headers_mut().insert("x-portcullis-principal", "user:admin".parse().unwrap());
        let mut seen = None;
        let ok = guard(&gate, req, |r| {
            seen = Some(r.clone());
            api(r)
        });
        assert_eq!(ok.status(), 200);
        let seen = seen.expect("the handler ran");
        assert_eq!(seen.uri().to_string(), "/customers/42");
        assert!(seen.headers().get("portcullis-approval").is_none());
        assert_eq!(seen.headers()["x-portcullis-principal"], "user:alice");
        let refused = guard(&gate, request("GET", "/customers/..%2f42", "demo-user-key-0001"), api);
        assert_eq!(refused.status(), 400);
    }
}
