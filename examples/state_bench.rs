//! What shared state costs (docs/replicas.md, BENCHMARKS.md), measured in one run against
//! servers started here (a real `redis-server` and PostgreSQL on loopback):
//!
//! - one evaluation of the real `rate-limit` policy with counters in memory and on Redis:
//!   p50 and p99, and the difference (the added cost of the Redis round trip);
//! - approvals created, approved and redeemed per second on SQLite and on PostgreSQL, from
//!   one thread and from eight.
//!
//! Run: `cargo run --release --example state_bench` (builds the policies when missing).

#[path = "../host/src/state/testing.rs"]
mod servers;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_host::approval::{ApprovalStore, NewApproval, PostgresSettings, PostgresStore, SqliteStore};
use portcullis_host::state::OnError;
use portcullis_host::{Config, Engine, PolicySet, Principal, PrincipalKind, Request};

const EVALUATIONS: usize = 5000;
const APPROVALS: usize = 1000;

fn main() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let module = root.join("target/policies/rate-limit.wasm");
    if !module.exists() {
        let status = std::process::Command::new("bash").arg(root.join("scripts/build-policies.sh")).status().unwrap();
        assert!(status.success(), "building the policies failed");
    }
    let redis = servers::RedisServer::start();
    let postgres = servers::PgServer::start();
    let dir = std::env::temp_dir().join(format!("portcullis-state-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    println!("rate-limit policy, one evaluation ({EVALUATIONS} each, one thread):");
    let memory = rate_limit_latency(&dir, &module, None);
    let redis_latency = rate_limit_latency(&dir, &module, Some(&redis.url()));
    for (name, (p50, p99)) in [("memory", memory), ("redis", redis_latency)] {
        println!("  {name:<8} p50 {:>7.1} µs   p99 {:>7.1} µs", micros(p50), micros(p99));
    }
    println!(
        "  added by Redis: p50 +{:.1} µs, p99 +{:.1} µs",
        micros(redis_latency.0.saturating_sub(memory.0)),
        micros(redis_latency.1.saturating_sub(memory.1))
    );

    println!("approvals created + approved + redeemed per second ({APPROVALS} each):");
    let sqlite: Arc<dyn ApprovalStore> = Arc::new(SqliteStore::open(dir.join("approvals.sqlite")).unwrap());
    let settings = PostgresSettings {
        url: postgres.new_database(),
        pool_size: 8,
        timeout: Duration::from_secs(2),
        on_error: OnError::Deny,
    };
    let pg: Arc<dyn ApprovalStore> = Arc::new(PostgresStore::open(&settings).unwrap());
    for threads in [1, 8] {
        for (name, store) in [("sqlite", &sqlite), ("postgres", &pg)] {
            let rate = approvals_per_second(store, threads);
            println!("  {name:<8} {threads} thread(s): {rate:>7.0} /s");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// p50 and p99 of one `evaluate_request` through the rate-limit policy.
fn rate_limit_latency(dir: &std::path::Path, module: &std::path::Path, redis: Option<&str>) -> (Duration, Duration) {
    let state = redis.map_or_else(String::new, |url| {
        format!("[state.rate_limit]\nbackend = \"redis\"\nurl = \"{url}\"\ntimeout_ms = 50\n")
    });
    let text = format!(
        "[policies.rl]\nmodule = \"{}\"\ncapabilities = [\"rate-limit\"]\nsettings = {{ limit = 1000000000, window_seconds = 3600 }}\n\n\
         [[routes]]\nname = \"all\"\npolicies = [\"rl\"]\n\n{state}",
        module.display()
    );
    let path = dir.join(if redis.is_some() { "redis.toml" } else { "memory.toml" });
    std::fs::write(&path, text).unwrap();
    let config = Config::read(&path).unwrap();
    let engine = Engine::new(&config.engine_config(dir)).unwrap();
    let set =
        PolicySet::from_config_with_counters(&config, &path, &engine, config.rate_limiter(&path).unwrap()).unwrap();
    let request = Request {
        method: "GET".into(),
        authority: "api.test".into(),
        path: "/a".into(),
        principal: Principal { kind: PrincipalKind::User, id: "alice".into(), ..Principal::default() },
        ..Request::default()
    };
    for _ in 0..500 {
        assert!(set.evaluate_request(&request).is_allowed());
    }
    let mut times: Vec<Duration> = (0..EVALUATIONS)
        .map(|_| {
            let started = Instant::now();
            let verdict = set.evaluate_request(&request);
            let took = started.elapsed();
            assert!(verdict.is_allowed());
            took
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

/// Full round trips (create, approve, redeem) per second, from `threads` threads.
fn approvals_per_second(store: &Arc<dyn ApprovalStore>, threads: usize) -> f64 {
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let bot = Principal { kind: PrincipalKind::Agent, id: format!("bot{t}"), ..Principal::default() };
                for i in 0..APPROVALS / threads {
                    let now = portcullis_host::now_ms();
                    let digest = format!("{t}-{i}-{now}");
                    let new = NewApproval {
                        digest: digest.clone(),
                        principal: bot.clone(),
                        policy: "guard".into(),
                        reason: "bench".into(),
                        group: "ops".into(),
                        request_line: "POST api.test /x".into(),
                        shown: portcullis_host::approval::Shown::default(),
                        ttl_ms: 600_000,
                        now_ms: now,
                    };
                    let approval = store.create(new).unwrap();
                    store.approve(&approval.id, "carol", now).unwrap();
                    store.redeem(&approval.id, &digest, &bot, now).unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    (APPROVALS / threads * threads) as f64 / started.elapsed().as_secs_f64()
}
