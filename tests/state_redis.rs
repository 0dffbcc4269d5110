//! Rate-limit counters on a real `redis-server` (started here on a free port): two policy
//! sets sharing one Redis count against the same windows, as two replicas would; a Redis
//! killed mid-run answers within the budget (503 `state-unavailable` by default, or per
//! `on_error`), and counting resumes when it is back. The policy is the real `rate-limit`
//! component, unchanged: it does not know where its counters live.

mod common;

#[path = "../host/src/state/testing.rs"]
mod servers;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcullis_host::{Config, Decision, DecisionKind, PolicySet, RateLimiter};
use serde_json::json;
use servers::RedisServer;

/// A config with the real `rate-limit` policy (`limit` per minute per principal) and
/// `[state.rate_limit]` on `redis_url`.
fn config(tmp: &common::TempDir, redis_url: &str, limit: u32, on_error: &str, timeout_ms: u64) -> (Config, PathBuf) {
    common::policies_dir();
    let module = common::component("rate-limit");
    let text = format!(
        r#"
[policies.rl]
module = "{module}"
capabilities = ["rate-limit"]
settings = {{ limit = {limit}, window_seconds = 60 }}

[[routes]]
name = "all"
policies = ["rl"]

[state.rate_limit]
backend = "redis"
url = "{redis_url}"
key_prefix = "test:{prefix}:"
timeout_ms = {timeout_ms}
on_error = "{on_error}"
"#,
        module = module.display(),
        prefix = std::process::id(),
    );
    let path = tmp.write(&format!("portcullis-{on_error}.toml"), text);
    (Config::read(&path).unwrap(), path)
}

/// One "replica": its own counters handle (its own connections) and policy set.
fn replica(config: &Config, path: &std::path::Path) -> (PolicySet, RateLimiter) {
    let counters = config.rate_limiter(path).expect("the redis counters open");
    let set = PolicySet::from_config_with_counters(config, path, &common::engine(), counters.clone()).unwrap();
    (set, counters)
}

fn caller(id: &str) -> portcullis_host::Request {
    common::request(json!({"url": "https://api.test/a", "principal": {"kind": "user", "id": id}}))
}

fn denial(set: &PolicySet, request: &portcullis_host::Request) -> Option<(u16, String)> {
    match set.evaluate_request(request).decision {
        Decision::Deny(d) => Some((d.status, d.code)),
        _ => None,
    }
}

#[test]
fn two_replicas_share_one_limit_and_fail_closed_when_redis_dies() {
    let mut redis = RedisServer::start();
    let tmp = common::TempDir::new("state-redis");
    let (config, path) = config(&tmp, &redis.url(), 5, "deny", 50);
    let (a, counters_a) = replica(&config, &path);
    let (b, _counters_b) = replica(&config, &path);

    // Ten requests alternating between the replicas: five pass in total, not ten.
    let alice = caller("alice");
    let kinds: Vec<DecisionKind> =
        (0..10).map(|i| if i % 2 == 0 { &a } else { &b }).map(|set| set.evaluate_request(&alice).kind()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == DecisionKind::Allow).count(), 5, "{kinds:?}");
    assert_eq!(denial(&b, &alice), Some((429, "rate-limited".into())));
    assert_eq!(a.evaluate_request(&caller("bob")).kind(), DecisionKind::Allow, "per principal");
    assert!(counters_a.health().up);

    // Redis dies: every answer is 503 state-unavailable, none waits past the budget.
    redis.kill();
    for i in 0..20 {
        let started = Instant::now();
        let answer = denial(&a, &caller(&format!("carol{i}")));
        let took = started.elapsed();
        assert_eq!(answer, Some((503, "state-unavailable".into())));
        assert!(took < Duration::from_millis(250), "request {i} took {took:?}");
    }
    let health = counters_a.health();
    assert!(!health.up && health.errors >= 20, "{health:?}");
    assert_eq!(health.backend, "redis");

    // Back: counting resumes (the backoff is at most a second), from an empty Redis.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while denial(&a, &caller("dave")).is_some() {
        assert!(Instant::now() < deadline, "no recovery after Redis came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(counters_a.health().up);
    let kinds: Vec<DecisionKind> = (0..6).map(|_| b.evaluate_request(&caller("erin")).kind()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == DecisionKind::Allow).count(), 5, "{kinds:?}");
}

#[test]
fn on_error_local_counts_per_replica_and_allow_lets_through() {
    let mut redis = RedisServer::start();
    let tmp = common::TempDir::new("state-redis-modes");
    let (local_config, local_path) = config(&tmp, &redis.url(), 3, "local", 50);
    let (allow_config, allow_path) = config(&tmp, &redis.url(), 3, "allow", 50);
    let (local, local_counters) = replica(&local_config, &local_path);
    let (allow, allow_counters) = replica(&allow_config, &allow_path);
    assert_eq!(local.evaluate_request(&caller("warm")).kind(), DecisionKind::Allow);
    redis.kill();

    // `local`: this replica's own counters take over, with the same limit.
    let frank = caller("frank");
    let kinds: Vec<DecisionKind> = (0..5).map(|_| local.evaluate_request(&frank).kind()).collect();
    assert_eq!(
        kinds,
        [DecisionKind::Allow, DecisionKind::Allow, DecisionKind::Allow, DecisionKind::Deny, DecisionKind::Deny]
    );
    assert_eq!(denial(&local, &frank), Some((429, "rate-limited".into())));
    let health = local_counters.health();
    assert!(!health.up && health.fallbacks >= 5, "{health:?}");

    // `allow`: every request passes, and each is counted as a fallback.
    let kinds: Vec<DecisionKind> = (0..5).map(|_| allow.evaluate_request(&frank).kind()).collect();
    assert!(kinds.iter().all(|k| *k == DecisionKind::Allow), "{kinds:?}");
    assert!(allow_counters.health().fallbacks >= 5);
}

#[test]
fn a_redis_url_with_a_password_in_the_file_is_refused() {
    let tmp = common::TempDir::new("state-redis-password");
    let path = tmp.write(
        "portcullis.toml",
        "[state.rate_limit]\nbackend = \"redis\"\nurl = \"redis://:hunter2@127.0.0.1:6379/\"\n",
    );
    let err = Config::read(&path).unwrap_err().to_string();
    assert!(err.contains("[state.rate_limit] url") && err.contains("url_env"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // With no [state] section, counters are in memory as before.
    let path = tmp.write("plain.toml", "");
    assert_eq!(Config::read(&path).unwrap().rate_limiter(&path).unwrap().health().backend, "memory");
}

/// A Redis that hangs (frozen: connections open, no answer) costs each request at most the
/// budget, then nothing while the backoff runs; it counts again once thawed.
#[test]
fn a_hung_redis_costs_at_most_the_budget() {
    let redis = RedisServer::start();
    let tmp = common::TempDir::new("state-redis-hung");
    let (config, path) = config(&tmp, &redis.url(), 100, "deny", 50);
    let (set, counters) = replica(&config, &path);
    assert_eq!(set.evaluate_request(&caller("gina")).kind(), DecisionKind::Allow);
    redis.pause();
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        assert_eq!(denial(&set, &caller(&format!("hank{i}"))), Some((503, "state-unavailable".into())));
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(slowest < Duration::from_millis(200), "a request waited {slowest:?} on a hung Redis (budget 50 ms)");
    assert!(!counters.health().up);
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(5);
    while denial(&set, &caller("gina")).is_some() {
        assert!(Instant::now() < deadline, "no recovery after Redis thawed");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(counters.health().up);
}
