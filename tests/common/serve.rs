//! Support for end-to-end tests over loopback: a real upstream HTTP server that records
//! what reaches it, `portcullis serve` as a child process, and a small blocking HTTP
//! client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query as received.
    pub target: String,
    /// Header names lower-case; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A real HTTP/1.1 server on loopback standing in for the API behind the gateway. It
/// records every request and answers:
/// - `/customers/…`: a customer record with personal data (`email`, `phone`) and an
///   `x-internal-user` response header;
/// - anything else: `{"ok": true, "method": …, "path": …}`.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _runtime: tokio::runtime::Runtime,
}

impl Upstream {
    pub fn start() -> Upstream {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let record = seen.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = record.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let mut headers = BTreeMap::new();
                            for (name, value) in &parts.headers {
                                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                                headers
                                    .entry(name.as_str().to_owned())
                                    .and_modify(|v: &mut String| {
                                        v.push_str(", ");
                                        v.push_str(&value);
                                    })
                                    .or_insert(value);
                            }
                            let target = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
                            record.lock().unwrap().push(Seen {
                                method: parts.method.as_str().to_owned(),
                                target: target.clone(),
                                headers,
                                body,
                            });
                            let path = parts.uri.path();
                            let mut response = if path.starts_with("/customers/") {
                                let body = json!({"id": 42, "name": "Ada", "email": "ada@example.com", "phone": "+44 20 7946 0000"});
                                // Honours `Range: bytes=A-B` as file servers and many APIs do.
                                let range = parts.headers.get("range").and_then(|v| v.to_str().ok()).and_then(|v| {
                                    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
                                    Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
                                });
                                let text = body.to_string();
                                let mut r = match range {
                                    Some((a, b)) if a <= b && b < text.len() => {
                                        let mut r = hyper::Response::new(Full::new(Bytes::from(text[a..=b].to_owned())));
                                        *r.status_mut() = hyper::StatusCode::PARTIAL_CONTENT;
                                        let content_range = format!("bytes {a}-{b}/{}", text.len());
                                        r.headers_mut().insert("content-range", content_range.parse().unwrap());
                                        r
                                    }
                                    _ => hyper::Response::new(Full::new(Bytes::from(text))),
                                };
                                r.headers_mut().insert("x-internal-user", "ada-internal".parse().unwrap());
                                r
                            } else {
                                let body = json!({"ok": true, "method": parts.method.as_str(), "path": path});
                                hyper::Response::new(Full::new(Bytes::from(body.to_string())))
                            };
                            response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Upstream { addr, seen, _runtime: runtime }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests received for a path (query excluded).
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.target.split('?').next() == Some(path)).collect()
    }
}

/// `portcullis serve` running as a child process; stopped (SIGTERM, then kill) on drop.
///
/// Its config's doors listen on `127.0.0.1:0`: the system gives each a free port, and the
/// server says which in its `--ready-file`. No port is picked in advance, so parallel
/// tests never race for one.
pub struct Server {
    child: Option<Child>,
    pub config: PathBuf,
    stderr_log: PathBuf,
    /// Each door's bound address, by its config section (`proxy`, `forward_auth`,
    /// `ext_authz`, `mcp`, `admin`).
    doors: BTreeMap<String, SocketAddr>,
}

impl Server {
    /// Starts `portcullis serve --config CONFIG --ready-file …` with `env` and waits until
    /// every door listens: the server writes the ready file then (up to 60 s: the first
    /// start may compile the components).
    pub fn start(config: &Path, env: &[(&str, &str)]) -> Server {
        let stderr_log = config.with_extension("stderr.log");
        let ready_file = config.with_extension("ready.json");
        let log = std::fs::File::create(&stderr_log).expect("stderr log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command
            .args(["serve", "--config"])
            .arg(config)
            .arg("--ready-file")
            .arg(&ready_file)
            .env("PORTCULLIS_CACHE_DIR", super::root().join("target/test-cache"))
            .env("PORTCULLIS_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        // The server removes a stale ready file before it starts; removing it here too means
        // the loop below can only read this run's.
        let _ = std::fs::remove_file(&ready_file);
        let child = command.spawn().expect("start portcullis serve");
        let mut server = Server { child: Some(child), config: config.to_owned(), stderr_log, doors: BTreeMap::new() };
        let deadline = Instant::now() + Duration::from_secs(60);
        server.doors = loop {
            // Written aside and renamed by the server: a file that exists is whole.
            if let Ok(text) = std::fs::read_to_string(&ready_file) {
                break serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("ready file {} ({e}): {text}", ready_file.display()));
            }
            if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("portcullis serve exited with {status}:\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "portcullis serve never wrote {}:\n{}",
                ready_file.display(),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        server
    }

    /// The address a door is bound to (`proxy`, `forward_auth`, `ext_authz`, `mcp`,
    /// `admin`); fails the test when the config opens no such door.
    pub fn addr(&self, door: &str) -> SocketAddr {
        *self.doors.get(door).unwrap_or_else(|| panic!("no `{door}` door is open: {:?}", self.doors))
    }

    /// The port a door is bound to.
    pub fn port(&self, door: &str) -> u16 {
        self.addr(door).port()
    }

    /// `http://ADDR{path}` on a door.
    pub fn url(&self, door: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr(door))
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The server's resident memory in KiB (Linux), if it is running.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends SIGHUP (reload).
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
        }
    }

    /// Stops gracefully (SIGTERM) and waits for the exit; returns the stderr log.
    pub fn stop(mut self) -> String {
        self.shutdown();
        self.log()
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one HTTP/1.1 request with a real client and waits for the whole answer.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    try_send(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// As [`send`], returning transport errors.
pub fn try_send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Answer, String> {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    }
    let mut request = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::copy_from_slice(body))).map_err(|e| e.to_string())?;
    RUNTIME.with(|rt| {
        rt.block_on(async {
            let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
            let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
                .await
                .map_err(|_| "timed out".to_owned())?
                .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec();
            Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body })
        })
    })
}

/// A fresh temporary folder for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = super::root().join("target/test-tmp").join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// An API key the fixture config knows: alice, a user who may read and write invoices and
/// read customers.
pub const USER_KEY: &str = "test-user-key-alice-000001";
/// bob, a user who may read invoices and customers, not write.
pub const READER_KEY: &str = "test-reader-key-bob-000001";
/// invoice-bot, an agent acting for alice, with alice's scopes.
pub const AGENT_KEY: &str = "test-agent-key-bot-0000001";
/// The admin token, passed to the server in `PORTCULLIS_TEST_ADMIN_TOKEN`.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The part of a front-door test's config every door shares: limits, the three API keys
/// above (`[identity] strip_credentials` as given) and the reference policies (`scopes`
/// with `read_scope` for reading invoices, `agent-guard`, `pii-redact` for `/email` and
/// `/phone` with third party `*.partner.example`, `rate-limit` at 2 a minute). A test adds
/// its routes and doors after it; more `[[identity.…]]` entries may follow too.
pub fn fixture_config(strip_credentials: bool, read_scope: &str) -> String {
    let module = |name: &str| super::component(name).display().to_string();
    let sha256 = |key: &str| portcullis_host::sha256_hex(key.as_bytes());
    format!(
        r#"
[limits]
timeout_ms = 200
memory_mb = 16

[identity]
strip_credentials = {strip_credentials}

[[identity.api_keys]]
name = "alice-key"
sha256 = "{user}"
kind = "user"
id = "alice"
scopes = ["invoices:read", "invoices:write", "customers:read"]

[[identity.api_keys]]
name = "bob-key"
sha256 = "{reader}"
kind = "user"
id = "bob"
scopes = ["invoices:read", "customers:read"]

[[identity.api_keys]]
name = "bot-key"
sha256 = "{agent}"
kind = "agent"
id = "invoice-bot"
on_behalf_of = "alice"
scopes = ["invoices:read", "invoices:write", "customers:read"]

[policies.rate-limit]
module = "{rate_limit}"
capabilities = ["rate-limit"]
settings = {{ limit = 2, window_seconds = 60 }}

[policies.scopes]
module = "{scopes}"
[policies.scopes.settings]
default = "deny"
rules = [
  {{ methods = ["GET", "HEAD"], path = "/invoices/**", scopes = ["{read_scope}"] }},
  {{ methods = ["POST", "PUT", "PATCH", "DELETE"], path = "/invoices/**", scopes = ["invoices:write"] }},
  {{ methods = ["GET"], path = "/customers/**", scopes = ["customers:read"] }},
]

[policies.agent-guard]
module = "{agent_guard}"
settings = {{ approver_group = "finance-approvers", ttl_seconds = 600 }}

[policies.pii-redact]
module = "{pii}"
[policies.pii-redact.settings]
fields = ["/email", "/phone"]
mask = "***"
third_party_hosts = ["*.partner.example"]
headers = ["x-internal-user"]
"#,
        user = sha256(USER_KEY),
        reader = sha256(READER_KEY),
        agent = sha256(AGENT_KEY),
        rate_limit = module("rate-limit"),
        scopes = module("scopes"),
        agent_guard = module("agent-guard"),
        pii = module("pii-redact"),
    )
}
