//! [`RedisCounters`]: rate-limit windows counted on a Redis server shared by replicas.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Backoff, CounterBackend, Health, HealthCell, OnError, StateError, Taken, Worker, redact_url};

/// One window, counted atomically on the server in one round trip. A denied take does not
/// count (as in memory), so a caller hammering a closed window does not extend it; a key
/// that somehow has no expiry is restarted rather than left to count forever.
///
/// KEYS[1] the counter; ARGV[1] the limit; ARGV[2] the window in ms. Returns
/// `{allowed (0|1), count, ms until the window ends}`.
const TAKE: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('SET', KEYS[1], 1, 'PX', window)
  return {1, 1, window}
end
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= limit then
  return {0, count, ttl}
end
count = redis.call('INCR', KEYS[1])
return {1, count, ttl}
";

/// How to reach Redis: what `[state.rate_limit]` says.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[:password@]host:port[/db]` (or `rediss://` when the client was built with
    /// TLS; this build is not).
    pub url: String,
    /// Put before every key (default `portcullis:rl:`), so several gateways can share a
    /// server.
    pub key_prefix: String,
    /// Multiplexed connections, used in turn (default 2).
    pub pool_size: usize,
    /// The budget of one take, connecting included (default 50 ms).
    pub timeout: Duration,
    /// What a take meets when Redis does not answer in time.
    pub on_error: OnError,
}

/// Fixed-window counters on Redis: every replica pointing at the same server (and prefix)
/// counts against the same windows, exactly: each take is one atomic script on the
/// server, and nothing is cached per replica.
///
/// Keys are `PREFIX<len(policy)>:<policy>:<window ms>:<key>` and expire with their window,
/// so Redis holds only live windows; policies cannot touch each other's counters.
///
/// A take waits at most the configured timeout. After a failure, takes fail at once for a
/// backoff that doubles from 25 ms up to 1 s while Redis stays away (the connection
/// manager reconnects on the next attempt), so a dead server costs requests nothing.
#[derive(Debug, Clone)]
pub struct RedisCounters {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    worker: Worker,
    connections: Vec<ConnectionManager>,
    next: AtomicUsize,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    health: HealthCell,
    backoff: Backoff,
    url: String,
}

impl RedisCounters {
    /// Checks the URL and prepares the connections; they connect on first use, so a
    /// server that is down at start makes takes fail (as `on_error` says) until it is up.
    pub fn open(settings: &RedisSettings) -> Result<RedisCounters, StateError> {
        let shown = redact_url(&settings.url);
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| StateError::Backend(format!("[state.rate_limit] url `{shown}`: {e}")))?;
        let worker = Worker::start("portcullis-redis").map_err(|e| StateError::Backend(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(Duration::from_millis(100));
        let pool_size = settings.pool_size.max(1);
        let connections = worker.call(Duration::from_secs(5), Duration::from_secs(5), async move {
            (0..pool_size)
                .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StateError::Backend(e.to_string()))
        })?;
        Ok(RedisCounters {
            inner: Arc::new(Inner {
                worker,
                connections,
                next: AtomicUsize::new(0),
                script: redis::Script::new(TAKE),
                prefix: settings.key_prefix.clone(),
                timeout: settings.timeout,
                health: HealthCell::new("rate_limit", "redis", settings.on_error),
                backoff: Backoff::new(25, 1000),
                url: shown,
            }),
        })
    }

    /// The key a policy's counter has on the server.
    fn key(&self, policy: &str, key: &str, window_ms: u64) -> String {
        format!("{}{}:{policy}:{window_ms}:{key}", self.inner.prefix, policy.len())
    }

    /// The server, without credentials.
    pub fn url(&self) -> &str {
        &self.inner.url
    }
}

impl CounterBackend for RedisCounters {
    fn take(&self, policy: &str, key: &str, limit: u32, window_ms: u64) -> Result<Taken, StateError> {
        let inner = &self.inner;
        let now = crate::now_ms();
        if let Err(e) = inner.backoff.check(now) {
            inner.health.failed(&e.to_string());
            return Err(e);
        }
        let index = inner.next.fetch_add(1, Ordering::Relaxed) % inner.connections.len();
        let mut connection = inner.connections[index].clone();
        let redis_key = self.key(policy, key, window_ms);
        let script = inner.script.clone();
        let result = inner.worker.call(inner.timeout, inner.timeout, async move {
            let mut invocation = script.key(redis_key);
            invocation.arg(limit).arg(window_ms);
            let reply: Vec<i64> = match invocation.invoke_async(&mut connection).await {
                Ok(reply) => reply,
                // A connection that died while idle (Redis restarted) fails its next command
                // at once; the manager reconnects, and one retry within the budget finds the
                // new connection.
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() => {
                    invocation.invoke_async(&mut connection).await.map_err(|e| StateError::Backend(e.to_string()))?
                }
                Err(e) => return Err(StateError::Backend(e.to_string())),
            };
            Ok(reply)
        });
        match result {
            Ok(reply) if reply.len() == 3 => {
                inner.backoff.success();
                inner.health.ok();
                let count = u32::try_from(reply[1].max(0)).unwrap_or(u32::MAX);
                Ok(Taken {
                    allowed: reply[0] == 1,
                    remaining: limit.saturating_sub(count),
                    reset_after_ms: reply[2].max(0) as u64,
                })
            }
            Ok(reply) => {
                let e = StateError::Backend(format!("unexpected script reply {reply:?}"));
                inner.health.failed(&e.to_string());
                Err(e)
            }
            Err(e) => {
                inner.backoff.failure(crate::now_ms(), &e.to_string());
                inner.health.failed(&e.to_string());
                Err(e)
            }
        }
    }

    fn health(&self) -> Health {
        self.inner.health.health()
    }

    fn fell_back(&self) {
        self.inner.health.fell_back();
    }
}
