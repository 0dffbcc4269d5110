//! Writes seed inputs for the fuzz targets into `<corpus>/<target>/`, from the shared
//! traffic captures (HAR), the example requests and the example configs. Run by
//! `fuzz/seed.sh`; the corpus folders are git-ignored, so no copy of the captures is
//! committed.
//!
//! Usage: `portcullis-fuzz-seedgen <traffic dir> <examples dir> <corpus dir>`

use std::fs;
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::config::core::v3::{Address, HeaderMap, HeaderValue, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request as AttrRequest};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use portcullis_host::adapters::har::read_har_file;
use portcullis_host::{Exchange, Request};
use prost::Message;
use serde_json::{Value, json};

fn main() {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [traffic, examples, corpus] = args.as_slice() else {
        eprintln!("usage: portcullis-fuzz-seedgen <traffic dir> <examples dir> <corpus dir>");
        std::process::exit(2);
    };
    let mut seeds = Seeds { corpus: corpus.clone(), count: Default::default() };

    let mut hars: Vec<PathBuf> = list(traffic, "har");
    hars.sort();
    let mut exchanges: Vec<Exchange> = Vec::new();
    for har in &hars {
        let stem = har.file_stem().unwrap().to_string_lossy().into_owned();
        let text = fs::read(har).expect("read HAR");
        // The whole capture only if small (large seeds slow every run), and each entry on
        // its own, as a one-entry HAR, with a streaming-buffer byte in front.
        if text.len() <= 64 * 1024 {
            seeds.write("har", &format!("{stem}"), &[&[64], &text]);
        }
        let doc: Value = serde_json::from_slice(&text).expect("HAR is JSON");
        let entries = doc["log"]["entries"].as_array().cloned().unwrap_or_default();
        for (i, entry) in entries.iter().enumerate().take(12) {
            let one = json!({"log": {"version": "1.2", "creator": {"name": "seed", "version": "0"}, "entries": [entry]}});
            let bytes = serde_json::to_vec(&one).unwrap();
            let prefix: &[u8] = if i % 3 == 0 { b"\x05\xEF\xBB\xBF" } else { b"\x80" };
            seeds.write("har", &format!("{stem}-{i}"), &[prefix, &bytes]);
        }
        read_har_file(har, |item| {
            if let Ok(exchange) = item.result {
                exchanges.push(exchange);
            }
        })
        .expect("read HAR");
    }

    // JSONL: each exchange as a line, a bare request, and a few lines together.
    for (i, exchange) in exchanges.iter().enumerate().step_by(3) {
        let line = serde_json::to_string(exchange).unwrap();
        seeds.write("jsonl", &format!("exchange-{i}"), &[line.as_bytes(), b"\n"]);
        let bare = serde_json::to_string(&exchange.request).unwrap();
        seeds.write("jsonl", &format!("request-{i}"), &[b"# a comment\n\n", bare.as_bytes(), b"\n"]);
    }
    let many: Vec<String> = exchanges.iter().take(5).map(|e| serde_json::to_string(e).unwrap()).collect();
    seeds.write("jsonl", "five", &[many.join("\n").as_bytes()]);
    for file in list(&examples.join("requests"), "json") {
        let value: Value = serde_json::from_slice(&fs::read(&file).unwrap()).expect("example is JSON");
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        seeds.write("jsonl", &name, &[serde_json::to_string(&value).unwrap().as_bytes(), b"\n"]);
        // Its body, for the redaction applier.
        if let Some(body) = value.pointer("/request/body/json") {
            redact_seeds(&mut seeds, &name, &serde_json::to_vec_pretty(body).unwrap());
        }
        redact_seeds(&mut seeds, &format!("{name}-whole"), &fs::read(&file).unwrap());
    }

    // Configs: the examples, the policy tests' config, and every `toml` block of the
    // configuration docs.
    let repo = examples.parent().unwrap_or(Path::new("."));
    for file in list(examples, "toml").into_iter().chain(list(&repo.join("policy-tests"), "toml")) {
        let dir = file.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        seeds.write("config", &format!("{dir}-{name}"), &[&fs::read(&file).unwrap()]);
    }
    for doc in list(&repo.join("docs"), "md") {
        let text = fs::read_to_string(&doc).unwrap_or_default();
        let name = doc.file_stem().unwrap().to_string_lossy().into_owned();
        let mut block: Option<String> = None;
        let mut n = 0;
        for line in text.lines() {
            match &mut block {
                None if line.trim_start().starts_with("```toml") => block = Some(String::new()),
                None => {}
                Some(_) if line.trim_start().starts_with("```") => {
                    seeds.write("config", &format!("{name}-{n}"), &[block.take().unwrap().as_bytes()]);
                    n += 1;
                }
                Some(current) => {
                    current.push_str(line);
                    current.push('\n');
                }
            }
        }
    }

    // Bodies from the captures.
    for (i, exchange) in exchanges.iter().enumerate() {
        let bodies = [exchange.request.body.as_ref(), exchange.response.as_ref().and_then(|r| r.body.as_ref())];
        for (j, body) in bodies.into_iter().flatten().enumerate() {
            if !body.bytes.is_empty() && body.bytes.len() <= 8 * 1024 && i % 2 == 0 {
                redact_seeds(&mut seeds, &format!("capture-{i}-{j}"), &body.bytes);
            }
        }
    }

    // HTTP/1-shaped requests and CheckRequests from the captured requests.
    for (i, exchange) in exchanges.iter().enumerate().step_by(2) {
        let request = &exchange.request;
        seeds.write("http_normalise", &format!("request-{i}"), &[&[i as u8, 7], &http1(request, i % 4 == 0)]);
        for variant in 0..3 {
            let check = check_request(request, variant);
            seeds.write("ext_authz", &format!("request-{i}-{variant}"), &[&check.encode_to_vec(), &[i as u8]]);
        }
        seeds.write("forward_auth", &format!("request-{i}"), &[&[i as u8], &forwarded(request, i % 2 == 0)]);
    }

    // Request targets for `target` (a control byte choosing the rules, then the target):
    // the captured ones, and the path-confusion shapes under every rule set below.
    for (i, exchange) in exchanges.iter().enumerate().step_by(4) {
        let control = TARGET_RULES[i % TARGET_RULES.len()];
        seeds.write("target", &format!("request-{i}"), &[&[control], target_of(&exchange.request).as_bytes()]);
    }
    for (i, target) in CONFUSING_TARGETS.iter().enumerate() {
        for control in TARGET_RULES {
            seeds.write("target", &format!("confusing-{i}-{control}"), &[&[control], target.as_bytes()]);
        }
    }

    for (target, count) in &seeds.count {
        println!("{target}: {count} seeds");
    }
}

/// Control bytes of the `target` fuzz target: the strict defaults (0), dot segments refused
/// (1), escaped slashes kept encoded (2) or decoded (4), and `;` kept with `//` merged, with
/// escaped slashes kept encoded (26) or decoded (28).
const TARGET_RULES: [u8; 6] = [0, 1, 2, 4, 26, 28];

/// Targets that backends read differently (issue 16's findings and their relatives).
const CONFUSING_TARGETS: [&str; 16] = [
    "/public/../admin/users",
    "/public/%2e%2e/admin/users",
    "/public/.%2E/admin/users?x=1",
    "/public/..%2fadmin/users",
    "/public/..%5Cadmin/users",
    "/public/..\\admin/users",
    "/public/..;/admin/users",
    "/public;jsessionid=1/./a/",
    "//public//a///b",
    "/a/b/c/../../../../x",
    "/%7Euser/caf%c3%a9/%41%2d%5f",
    "/files/caf\u{e9} menu.pdf?download=1&q=%zz",
    "/a%00b",
    "/a%2Fb?c=%2F",
    "/v1/customers/cus_8f3a9b2c/invoices/inv-1001/lines?expand=tax&limit=50&starting_after=li_42",
    "/?",
];

/// A forward-auth sub-request's header lines (the `forward_auth` target's layout after its
/// control byte): nginx's `X-Original-*` or Traefik's `X-Forwarded-*`, then the original
/// request's own headers.
fn forwarded(request: &Request, nginx: bool) -> Vec<u8> {
    let target = target_of(request);
    let mut lines = if nginx {
        format!("host: {}\nx-original-method: {}\nx-original-uri: {target}\n", request.authority, request.method)
    } else {
        format!(
            "host: portcullis:8081\nx-forwarded-method: {}\nx-forwarded-proto: {}\nx-forwarded-host: {}\n\
             x-forwarded-uri: {target}\nx-forwarded-for: 198.51.100.7, 192.0.2.1\n",
            request.method, request.scheme, request.authority
        )
    };
    for (name, value) in &request.headers {
        if name != "host" {
            lines.push_str(&format!("{name}: {value}\n"));
        }
    }
    lines.into_bytes()
}

struct Seeds {
    corpus: PathBuf,
    count: std::collections::BTreeMap<String, usize>,
}

impl Seeds {
    fn write(&mut self, target: &str, name: &str, parts: &[&[u8]]) {
        let dir = self.corpus.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{name}")), parts.concat()).unwrap();
        *self.count.entry(target.to_owned()).or_default() += 1;
    }
}

/// The redact target's layout: `n`, `n` control bytes, the body.
fn redact_seeds(seeds: &mut Seeds, name: &str, body: &[u8]) {
    for (k, control) in [&[1u8, 5, 6, 9, 0, 12, 7, 3][..], &[2, 0, 1, 3, 9, 9, 4, 8, 9, 1, 3][..], &[4, 1, 2, 5][..]]
        .into_iter()
        .enumerate()
    {
        seeds.write("redact", &format!("{name}-{k}"), &[&[control.len() as u8], control, body]);
    }
}

fn list(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn target_of(request: &Request) -> String {
    let mut target = request.path.clone();
    if !request.query.is_empty() {
        let pairs: Vec<String> = request
            .query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    portcullis_host::exchange::percent_encode_query(k),
                    portcullis_host::exchange::percent_encode_query(v)
                )
            })
            .collect();
        target = format!("{target}?{}", pairs.join("&"));
    }
    target
}

fn http1(request: &Request, absolute: bool) -> Vec<u8> {
    let target = target_of(request);
    let uri = if absolute { format!("{}://{}{target}", request.scheme, request.authority) } else { target };
    let mut out = format!("{} {uri}\r\n", request.method);
    for (name, value) in &request.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(body) = &request.body {
        bytes.extend_from_slice(&body.bytes);
    }
    bytes
}

fn check_request(request: &Request, variant: u8) -> CheckRequest {
    let mut http = HttpRequest {
        id: "1234".into(),
        method: request.method.clone(),
        path: target_of(request),
        host: request.authority.clone(),
        scheme: request.scheme.clone(),
        protocol: "HTTP/1.1".into(),
        ..HttpRequest::default()
    };
    match variant {
        // Headers in the `headers` map, the body as text.
        0 => {
            http.headers = request.headers.iter().cloned().collect();
            if let Some(body) = &request.body {
                http.body = String::from_utf8_lossy(&body.bytes).into_owned();
                http.size = body.bytes.len() as i64;
            }
        }
        // Headers in `header_map` with raw values, pseudo-headers instead of fields, the
        // body as raw bytes, cut short.
        1 => {
            let mut headers = vec![
                HeaderValue { key: ":method".into(), value: request.method.clone(), raw_value: Vec::new() },
                HeaderValue { key: ":path".into(), value: String::new(), raw_value: target_of(request).into_bytes() },
                HeaderValue { key: ":authority".into(), value: request.authority.clone(), raw_value: Vec::new() },
            ];
            headers.extend(request.headers.iter().map(|(k, v)| HeaderValue {
                key: k.clone(),
                value: String::new(),
                raw_value: v.clone().into_bytes(),
            }));
            if let Some(body) = &request.body {
                headers.push(HeaderValue {
                    key: "x-envoy-auth-partial-body".into(),
                    value: "true".into(),
                    raw_value: Vec::new(),
                });
                http.raw_body = body.bytes.iter().copied().take(body.bytes.len() / 2).collect();
            }
            http.header_map = Some(HeaderMap { headers });
            http.method.clear();
            http.path.clear();
            http.host.clear();
        }
        // An absolute target and no body.
        _ => {
            http.path = format!("{}://{}{}", request.scheme, request.authority, target_of(request));
            http.headers = request.headers.iter().cloned().collect();
            http.protocol = "HTTP/2".into();
        }
    }
    let source = Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "10.0.0.7".into(),
                ..SocketAddress::default()
            })),
        }),
        ..Peer::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            request: Some(AttrRequest { time: None, http: Some(http) }),
            ..AttributeContext::default()
        }),
    }
}
