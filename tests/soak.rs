//! Soak: the reverse proxy under a fixed request rate, with a hot reload every two seconds
//! and a hostile policy (an infinite loop) on one route. Every answer must be the one its
//! request deserves (allow, redact, deny, or the fail-closed 503 for the looping policy),
//! the server's memory must stay flat, and every decision must be in the audit log.
//!
//! It asserts no throughput or timing (the machines are shared): it prints the figures, and
//! BENCHMARKS.md ("Soak") records them. CI runs it for 10 s; a longer run:
//!
//!   PORTCULLIS_SOAK_SECS=300 PORTCULLIS_SOAK_RATE=400 cargo test --release --test soak -- --nocapture

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::serve::{READER_KEY, Server, USER_KEY, Upstream, fixture_config, send, temp_dir, try_send};
use serde_json::Value;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn write_config(path: &std::path::Path, upstream: std::net::SocketAddr, generation: u64) {
    let hostile = common::component("hostile-misbehave").display().to_string();
    let text = fixture_config(false, "invoices:read")
        + &format!(
            r#"
# generation {generation}
[policies.hostile]
module = "{hostile}"
settings = {{ on_request = "loop" }}
limits = {{ timeout_ms = 20 }}

[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[[routes]]
name = "customers"
paths = ["/customers/**"]
policies = ["scopes", "pii-redact"]

[[routes]]
name = "hostile"
paths = ["/hostile/**"]
policies = ["hostile"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[server.admin]
listen = "127.0.0.1:0"

[audit]
path = "audit.jsonl"
"#
        );
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// One kind of request in the mix, and the only status it may get.
struct Kind {
    method: &'static str,
    path: &'static str,
    key: &'static str,
    expect: u16,
}

const MIX: [Kind; 4] = [
    Kind { method: "GET", path: "/invoices/1", key: USER_KEY, expect: 200 },
    Kind { method: "GET", path: "/customers/42", key: USER_KEY, expect: 200 },
    Kind { method: "POST", path: "/invoices/2", key: READER_KEY, expect: 403 },
    Kind { method: "GET", path: "/hostile/x", key: USER_KEY, expect: 503 },
];

#[test]
fn the_proxy_holds_steady_under_load_reloads_and_a_looping_policy() {
    let secs = env_u64("PORTCULLIS_SOAK_SECS", 10);
    let rate = env_u64("PORTCULLIS_SOAK_RATE", 100);
    common::policies_dir();
    let dir = temp_dir("soak");
    let upstream = Upstream::start();
    let config = dir.join("portcullis.toml");
    write_config(&config, upstream.addr, 0);
    let server = Server::start(&config, &[]);
    let proxy = server.port("proxy");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers = 4;
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (stop, sent, unexpected) = (stop.clone(), sent.clone(), unexpected.clone());
            // Each worker keeps its share of the rate on a fixed schedule (open loop).
            let interval = Duration::from_secs_f64(workers as f64 / rate as f64);
            std::thread::spawn(move || {
                let mut next = Instant::now() + interval.mul_f64(w as f64 / workers as f64);
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += interval;
                    let kind = &MIX[i % MIX.len()];
                    i += 1;
                    let url = format!("http://127.0.0.1:{proxy}{}", kind.path);
                    let answer = try_send(kind.method, &url, &[("x-api-key", kind.key)], b"{}");
                    sent.fetch_add(1, Ordering::Relaxed);
                    match answer {
                        Ok(a) if a.status == kind.expect => {}
                        Ok(a) => unexpected.lock().unwrap().push(format!(
                            "{} {}: {} {}",
                            kind.method,
                            kind.path,
                            a.status,
                            String::from_utf8_lossy(&a.body)
                        )),
                        Err(e) => unexpected.lock().unwrap().push(format!("{} {}: {e}", kind.method, kind.path)),
                    }
                }
            })
        })
        .collect();

    // Reload every 2 s; sample memory every second.
    let mut rss = Vec::new();
    let mut generation = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        rss.push(server.rss_kib().expect("server RSS"));
        if rss.len() % 2 == 0 {
            generation += 1;
            write_config(&config, upstream.addr, generation);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        handle.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let readyz = send("GET", &server.url("admin", "/readyz"), &[], b"").json();
    server.stop();

    let sent = sent.load(Ordering::Relaxed);
    let unexpected = unexpected.lock().unwrap();
    let audit: Vec<Value> = std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let request_records = audit.iter().filter(|r| r["phase"] == "request").count() as u64;
    let third = rss.len() / 3;
    let early = rss[1..=third.max(1)].iter().max().copied().unwrap_or(0);
    let late = rss[rss.len() - third.max(1)..].iter().max().copied().unwrap_or(0);
    println!(
        "soak: {sent} requests in {elapsed:.1} s ({:.0}/s), {} unexpected, {request_records} request-phase audit records, \
         generation {}, RSS early max {early} KiB, late max {late} KiB, samples {rss:?}",
        sent as f64 / elapsed,
        unexpected.len(),
        readyz["generation"],
    );
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)]
    );
    // No throughput or timing assertion: the machine is shared, the figures above go to
    // BENCHMARKS.md ("Soak"). What must hold at any speed: every request got its answer
    // (above), every decision is audited, the rewritten config was reloaded, memory is flat.
    assert!(sent > 0, "no request was sent");
    assert_eq!(request_records, sent, "every request's decision is in the audit log");
    assert!(generation >= 1, "the config was never rewritten in {secs} s");
    assert!(readyz["generation"].as_u64().unwrap() >= 2, "no reload happened: {readyz}");
    assert!(readyz["last_reload_error"].is_null(), "{readyz}");
    assert!(late <= early + 32 * 1024, "memory grew: {early} KiB early, {late} KiB late ({rss:?})");
}
