//! Three `portcullis serve` replicas with one config behind a real nginx (round-robin),
//! sharing rate-limit counters on a real `redis-server` and approvals on a real PostgreSQL,
//! each started here in a temporary folder on a free port. No mocks.
//!
//! Proves: an approval created through one replica is approved through another's admin API
//! and redeemed through a third; 50 concurrent retries with one approval id, spread over
//! the replicas, forward exactly once; a limit of N per window across three replicas
//! allows N in total, also across a hot reload of one replica; Redis killed mid-run gives
//! 503 `state-unavailable` within the budget and recovers; PostgreSQL restarted mid-run
//! loses no approval.

mod common;

#[path = "../host/src/state/testing.rs"]
mod servers;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::serve::{ADMIN_TOKEN, AGENT_KEY, READER_KEY, Server, Upstream, send, temp_dir};
use servers::{PgServer, RedisServer};

struct Cluster {
    replicas: Vec<Server>,
    nginx: Nginx,
    upstream: Upstream,
    _dir: std::path::PathBuf,
}

impl Cluster {
    fn start(name: &str, redis: &RedisServer, postgres_url: &str) -> Cluster {
        common::policies_dir();
        let dir = temp_dir(name);
        let upstream = Upstream::start();
        let config = common::serve::fixture_config(false, "invoices:read")
            + &format!(
                r#"
[[routes]]
name = "invoices"
hosts = ["api.test"]
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[[routes]]
name = "reports"
hosts = ["api.test"]
paths = ["/reports/**"]
policies = ["rate-limit"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[server.admin]
listen = "127.0.0.1:0"
token_env = "PORTCULLIS_TEST_ADMIN_TOKEN"

[state.rate_limit]
backend = "redis"
url = "{redis}"
key_prefix = "replicas:{pid}:"
timeout_ms = 50

[approvals]
backend = "postgres"
url_env = "PORTCULLIS_TEST_APPROVALS_URL"
timeout_ms = 1000
"#,
                upstream = upstream.addr,
                redis = redis.url(),
                pid = std::process::id(),
            );
        // One config, three copies (each replica's ready file and log sit beside its copy).
        let replicas: Vec<Server> = (0..3)
            .map(|i| {
                let folder = dir.join(format!("replica{i}"));
                std::fs::create_dir_all(&folder).unwrap();
                let path = folder.join("portcullis.toml");
                std::fs::write(&path, &config).unwrap();
                Server::start(
                    &path,
                    &[("PORTCULLIS_TEST_ADMIN_TOKEN", ADMIN_TOKEN), ("PORTCULLIS_TEST_APPROVALS_URL", postgres_url)],
                )
            })
            .collect();
        let proxies: Vec<u16> = replicas.iter().map(|r| r.port("proxy")).collect();
        let nginx = Nginx::start(&dir, 1, |ports| {
            let servers: String = proxies.iter().map(|p| format!("        server 127.0.0.1:{p};\n")).collect();
            format!(
                "    upstream portcullis {{\n{servers}    }}\n    server {{\n        listen 127.0.0.1:{};\n        \
                 location / {{\n            proxy_pass http://portcullis;\n            proxy_set_header Host $http_host;\n            \
                 proxy_next_upstream off;\n        }}\n    }}\n",
                ports[0]
            )
        });
        Cluster { replicas, nginx, upstream, _dir: dir }
    }

    /// A request through nginx with an API key and `Host: api.test`.
    fn call(&self, method: &str, path: &str, key: &str, extra: &[(&str, &str)]) -> common::serve::Answer {
        let mut headers = vec![("host", "api.test"), ("x-api-key", key)];
        headers.extend_from_slice(extra);
        send(method, &self.nginx.url(path), &headers, b"{}")
    }

    fn approve(&self, replica: usize, id: &str) -> common::serve::Answer {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        send(
            "POST",
            &self.replicas[replica].url("admin", &format!("/approvals/{id}/approve")),
            &[("authorization", &auth), ("content-type", "application/json")],
            br#"{"by": "fiona@finance.test"}"#,
        )
    }

    /// Which replicas logged a request (by the count of lines naming `needle` in their logs).
    fn forwarded(&self, path: &str) -> usize {
        self.upstream.seen_at(path).len()
    }
}

#[test]
fn three_replicas_behind_nginx_share_approvals_and_limits() {
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let mut redis = RedisServer::start();
    let mut postgres = PgServer::start();
    step("redis and postgres up");
    let postgres_url = postgres.new_database();
    let cluster = Cluster::start("replicas", &redis, &postgres_url);
    step("three replicas and nginx up");

    // -- Approvals: created through one replica, approved through another, redeemed once.
    let held = cluster.call("POST", "/invoices/7", AGENT_KEY, &[]);
    assert_eq!(held.status, 403, "{}", String::from_utf8_lossy(&held.body));
    assert_eq!(held.json()["code"], "approval-required");
    let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
    // Asking again lands on other replicas: still the same pending approval.
    for _ in 0..3 {
        assert_eq!(cluster.call("POST", "/invoices/7", AGENT_KEY, &[]).json()["approval"]["id"], id.as_str());
    }
    let approved = cluster.approve(1, &id);
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    assert_eq!(approved.json()["state"], "approved");

    step("approval created and approved");
    // 50 concurrent retries with the id, round-robin over the three replicas.
    let barrier = Arc::new(Barrier::new(50));
    let url = cluster.nginx.url("/invoices/7");
    let answers: Vec<u16> = (0..50)
        .map(|_| {
            let (barrier, url, id) = (Arc::clone(&barrier), url.clone(), id.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let headers = [("host", "api.test"), ("x-api-key", AGENT_KEY), ("portcullis-approval", id.as_str())];
                send("POST", &url, &headers, b"{}").status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(answers.iter().filter(|s| **s == 200).count(), 1, "{answers:?}");
    assert!(answers.iter().all(|s| *s == 200 || *s == 403), "{answers:?}");
    assert_eq!(cluster.forwarded("/invoices/7"), 1, "the upstream saw the approved request once");

    step("50 concurrent retries");
    // -- PostgreSQL restarted mid-run: a pending approval survives and is redeemed.
    let held = cluster.call("POST", "/invoices/8", AGENT_KEY, &[]);
    let id = held.json()["approval"]["id"].as_str().unwrap().to_owned();
    postgres.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let approved = loop {
        let answer = cluster.approve(2, &id);
        if answer.status == 200 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(approved.status, 200, "{}", String::from_utf8_lossy(&approved.body));
    // `portcullis approvals` (no runtime of its own) sees the same database.
    let config = cluster.replicas[0].config.to_str().unwrap().to_owned();
    let env = [("PORTCULLIS_TEST_APPROVALS_URL", postgres_url.as_str())];
    let listed = common::portcullis_cli(&["approvals", "--config", &config, "list", "--format", "json"], &env);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let states: Vec<(&str, &str)> =
        listed.as_array().unwrap().iter().map(|a| (a["id"].as_str().unwrap(), a["state"].as_str().unwrap())).collect();
    assert!(states.contains(&(id.as_str(), "approved")), "{states:?}");
    assert!(states.iter().any(|(_, state)| *state == "used"), "the first approval, used: {states:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let redeemed = loop {
        let answer = cluster.call("POST", "/invoices/8", AGENT_KEY, &[("portcullis-approval", &id)]);
        if answer.status != 503 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(redeemed.status, 200, "{}", String::from_utf8_lossy(&redeemed.body));

    step("postgres restarted, approval redeemed");
    // -- Rate limit: 2 a minute per caller (the fixture's), across three replicas: 2 in
    // total, also across a hot reload of one replica.
    let statuses: Vec<u16> = (0..3).map(|_| cluster.call("GET", "/reports/q1", READER_KEY, &[]).status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses[2], 429);
    cluster.replicas[0].hangup();
    std::thread::sleep(Duration::from_millis(500));
    let after: Vec<u16> = (0..6).map(|_| cluster.call("GET", "/reports/q1", READER_KEY, &[]).status).collect();
    assert!(after.iter().all(|s| *s == 429), "a reload keeps the shared counters: {after:?}");
    let other: Vec<u16> = (0..4).map(|_| cluster.call("GET", "/reports/q2", AGENT_KEY, &[]).status).collect();
    assert_eq!(other.iter().filter(|s| **s == 200).count(), 2, "{other:?}");

    step("rate limits across replicas and a reload");
    redis_outage(&cluster, &mut redis);
    step("redis killed and back");
}

/// Redis killed: every replica answers 503 `state-unavailable` within the budget and shows
/// the outage on `/readyz` and `/metrics`; counting resumes when Redis is back.
fn redis_outage(cluster: &Cluster, redis: &mut RedisServer) {
    // -- Redis killed: fail closed within the budget, then recover.
    redis.kill();
    for _ in 0..9 {
        let started = Instant::now();
        let answer = cluster.call("GET", "/reports/q3", AGENT_KEY, &[]);
        let took = started.elapsed();
        assert_eq!(answer.status, 503, "{}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.json()["code"], "state-unavailable");
        assert!(!String::from_utf8_lossy(&answer.body).contains("127.0.0.1"), "no internals");
        assert!(took < Duration::from_millis(500), "a request waited {took:?} on a dead Redis");
    }
    // Each replica that met the outage shows it on /readyz and /metrics.
    let shown: Vec<bool> = cluster
        .replicas
        .iter()
        .map(|replica| {
            let ready = send("GET", &replica.url("admin", "/readyz"), &[], b"");
            let metrics =
                String::from_utf8_lossy(&send("GET", &replica.url("admin", "/metrics"), &[], b"").body).into_owned();
            let down = ready.json()["degraded"].as_array().is_some_and(|d| d.iter().any(|v| v == "rate_limit (redis)"));
            assert_eq!(
                down,
                metrics.contains(r#"portcullis_state_up{role="rate_limit",backend="redis"} 0"#),
                "/readyz and /metrics agree:\n{metrics}"
            );
            assert!(metrics.contains(r#"portcullis_state_up{role="approvals",backend="postgres"} 1"#), "{metrics}");
            down
        })
        .collect();
    assert!(shown.iter().all(|d| *d), "every replica served a request during the outage: {shown:?}");
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut statuses = Vec::new();
    while statuses.len() < 3 {
        let status = cluster.call("GET", "/reports/q4", AGENT_KEY, &[]).status;
        if status == 503 {
            assert!(Instant::now() < deadline, "no recovery after Redis came back");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429], "counting resumed on the fresh Redis");
}

/// `[approvals] on_error`: with PostgreSQL stopped, a request that needs an approval is
/// refused 503 `state-unavailable` under `deny` (the default) and forwarded under `allow`;
/// a request that needs none is unaffected either way.
#[test]
fn approvals_on_error_deny_refuses_and_allow_forwards_while_postgres_is_down() {
    common::policies_dir();
    let mut postgres = PgServer::start();
    let url = postgres.new_database();
    let dir = temp_dir("replicas-on-error");
    let upstream = Upstream::start();
    let servers: Vec<Server> = ["deny", "allow"]
        .iter()
        .map(|on_error| {
            let config = common::serve::fixture_config(false, "invoices:read")
                + &format!(
                    r#"
[[routes]]
name = "invoices"
hosts = ["api.test"]
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[approvals]
backend = "postgres"
url_env = "PORTCULLIS_TEST_APPROVALS_URL"
timeout_ms = 100
on_error = "{on_error}"
"#,
                    upstream = upstream.addr,
                );
            let path = dir.join(format!("{on_error}.toml"));
            std::fs::write(&path, config).unwrap();
            Server::start(&path, &[("PORTCULLIS_TEST_APPROVALS_URL", url.as_str())])
        })
        .collect();
    let call = |server: &Server, method: &str, key: &str| {
        send(method, &server.url("proxy", "/invoices/9"), &[("host", "api.test"), ("x-api-key", key)], b"{}")
    };
    assert_eq!(call(&servers[0], "POST", AGENT_KEY).json()["code"], "approval-required");
    postgres.stop();

    let started = Instant::now();
    let refused = call(&servers[0], "POST", AGENT_KEY);
    assert_eq!(refused.status, 503, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.json()["code"], "state-unavailable");
    assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
    let forwarded = call(&servers[1], "POST", AGENT_KEY);
    assert_eq!(forwarded.status, 200, "{}", String::from_utf8_lossy(&forwarded.body));
    assert_eq!(upstream.seen_at("/invoices/9").len(), 1, "only the `allow` replica forwarded");
    for server in &servers {
        assert_eq!(call(server, "GET", READER_KEY).status, 200, "no approval needed, no database needed");
    }
}
