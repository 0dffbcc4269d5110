//! State shared by several replicas of a gateway: where rate-limit counters live, what
//! happens when that place fails, and how a failing backend shows (docs/replicas.md).
//!
//! Counters live in this process's memory by default ([`crate::RateLimiter::default`]).
//! With the `redis` feature, [`RedisCounters`] keeps them on a Redis server so that every
//! replica counts against the same windows. Approvals have their own store trait
//! ([`crate::approval::ApprovalStore`]); its PostgreSQL store (feature `postgres`) shares
//! this module's [`OnError`], [`Health`] and worker thread.
//!
//! Callers of both are synchronous (a policy's host function inside an evaluation, the gate
//! on a blocking thread, an async admin handler, the CLI with no runtime at all), while the
//! network clients are async. Each backend therefore owns one thread running a
//! current-thread tokio runtime (`Worker`); a synchronous call sends its work there and
//! waits for the answer at most the configured budget, so a request never waits on a dead
//! backend longer than that, and no runtime is ever blocked on from inside another.

#[cfg(feature = "redis")]
mod redis;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod worker;

#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) use worker::Worker;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

#[cfg(feature = "redis")]
pub use self::redis::{RedisCounters, RedisSettings};

/// What a request meets when a shared-state backend cannot answer in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Refuse the request: 503 with the problem code `state-unavailable` (the default:
    /// fail closed).
    #[default]
    Deny,
    /// Let the request through as if the limit (or the approval) allowed it; logged and
    /// counted.
    Allow,
    /// Rate limits only: count in this replica's memory until the backend is back (each
    /// replica then allows the full limit on its own).
    Local,
}

impl OnError {
    /// The word used in config and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Deny => "deny",
            OnError::Allow => "allow",
            OnError::Local => "local",
        }
    }
}

/// The problem code of a refusal caused by an unavailable shared-state backend.
pub const STATE_UNAVAILABLE: &str = "state-unavailable";

/// How a shared-state backend is doing, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// What it is for: `rate_limit` or `approvals`.
    pub role: &'static str,
    /// `memory`, `redis`, `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Whether its last operation succeeded.
    pub up: bool,
    /// What a request meets while it is down.
    pub on_error: OnError,
    /// Operations that failed or timed out since start.
    pub errors: u64,
    /// Requests let through (`allow`) or counted locally (`local`) because of a failure.
    pub fallbacks: u64,
    /// Why the last failure happened, without credentials (for operators; never sent to
    /// API callers).
    pub last_error: Option<String>,
}

/// The counters behind [`Health`], updated by a backend.
#[derive(Debug)]
pub struct HealthCell {
    role: &'static str,
    backend: &'static str,
    on_error: OnError,
    up: AtomicBool,
    errors: AtomicU64,
    fallbacks: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl HealthCell {
    /// A backend that is up until an operation fails.
    pub fn new(role: &'static str, backend: &'static str, on_error: OnError) -> HealthCell {
        HealthCell {
            role,
            backend,
            on_error,
            up: AtomicBool::new(true),
            errors: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// An operation succeeded: the backend is up (logged once when it comes back).
    pub fn ok(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(role = self.role, backend = self.backend, "shared state backend is back");
        }
    }

    /// An operation failed for `why` (logged once per outage, then only counted).
    pub fn failed(&self, why: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::error!(
                role = self.role,
                backend = self.backend,
                on_error = self.on_error.as_str(),
                error = why,
                "shared state backend unavailable"
            );
        }
        if let Ok(mut last) = self.last_error.lock() {
            why.clone_into(last.get_or_insert_with(String::new));
        }
    }

    /// A request was let through or counted locally because of a failure.
    pub fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the last operation succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A snapshot.
    pub fn health(&self) -> Health {
        Health {
            role: self.role,
            backend: self.backend,
            up: self.is_up(),
            on_error: self.on_error,
            errors: self.errors.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            last_error: self.last_error.lock().ok().and_then(|l| l.clone()),
        }
    }
}

/// One take from a fixed-window counter: whether it was allowed, what remains, and the
/// milliseconds until the window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// Whether this unit was within the limit.
    pub allowed: bool,
    /// Units left in the window.
    pub remaining: u32,
    /// Milliseconds until the window ends.
    pub reset_after_ms: u64,
}

/// A place to keep rate-limit counters that several processes can share. The key already
/// names the policy; implementations count `limit` per `window_ms` atomically, and let
/// windows expire by themselves.
pub trait CounterBackend: Send + Sync + std::fmt::Debug {
    /// Takes one unit from the counter of `(policy, key)` for windows of `window_ms`.
    /// An error means the backend could not answer within its budget.
    fn take(&self, policy: &str, key: &str, limit: u32, window_ms: u64) -> Result<Taken, StateError>;

    /// How it is doing.
    fn health(&self) -> Health;

    /// Records that a request was let through or counted locally after an error.
    fn fell_back(&self);
}

/// A shared-state backend that did not answer. The message is for operators; callers only
/// ever see [`STATE_UNAVAILABLE`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// No answer within the budget.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The backend is between reconnection attempts (backing off after a failure).
    #[error("backing off after a failure: {0}")]
    BackingOff(String),
    /// The backend answered with an error, or the connection failed.
    #[error("{0}")]
    Backend(String),
    /// The backend's thread is gone.
    #[error("the backend's worker thread stopped")]
    Stopped,
}

/// Exponential backoff between reconnection attempts after a failure: while it runs,
/// operations fail at once instead of each waiting for the budget.
#[cfg(any(feature = "redis", feature = "postgres"))]
#[derive(Debug)]
pub(crate) struct Backoff {
    state: Mutex<BackoffState>,
    min_ms: u64,
    max_ms: u64,
}

#[cfg(any(feature = "redis", feature = "postgres"))]
#[derive(Debug, Default)]
struct BackoffState {
    /// Until when (ms since the Unix epoch) operations fail without trying.
    until_ms: u64,
    /// The current delay; 0 while healthy.
    delay_ms: u64,
    why: String,
}

#[cfg(any(feature = "redis", feature = "postgres"))]
impl Backoff {
    pub(crate) fn new(min_ms: u64, max_ms: u64) -> Backoff {
        Backoff { state: Mutex::new(BackoffState::default()), min_ms, max_ms }
    }

    /// `Err` while backing off; `Ok` when an attempt may be made.
    pub(crate) fn check(&self, now_ms: u64) -> Result<(), StateError> {
        let state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now_ms < state.until_ms { Err(StateError::BackingOff(state.why.clone())) } else { Ok(()) }
    }

    /// An attempt succeeded: no more backoff.
    pub(crate) fn success(&self) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.delay_ms = 0;
        state.until_ms = 0;
    }

    /// An attempt failed at `now_ms`: wait twice as long as last time (from `min_ms` up to
    /// `max_ms`) before the next.
    pub(crate) fn failure(&self, now_ms: u64, why: &str) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.delay_ms = if state.delay_ms == 0 { self.min_ms } else { (state.delay_ms * 2).min(self.max_ms) };
        state.until_ms = now_ms + state.delay_ms;
        why.clone_into(&mut state.why);
    }
}

/// A URL with its password (and user info) replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "redis", feature = "postgres"))]
    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets_on_success() {
        let b = Backoff::new(10, 35);
        assert!(b.check(0).is_ok());
        b.failure(100, "refused");
        assert!(matches!(b.check(105), Err(StateError::BackingOff(w)) if w == "refused"));
        assert!(b.check(110).is_ok());
        b.failure(110, "refused");
        assert!(b.check(129).is_err() && b.check(130).is_ok(), "20 ms");
        b.failure(130, "refused");
        assert!(b.check(164).is_err() && b.check(165).is_ok(), "capped at 35 ms");
        b.success();
        assert!(b.check(130).is_ok());
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(redact_url("redis://:secret@127.0.0.1:6379/0"), "redis://***@127.0.0.1:6379/0");
        assert_eq!(redact_url("postgres://u:p@db/x"), "postgres://***@db/x");
        assert_eq!(redact_url("redis://127.0.0.1"), "redis://127.0.0.1");
    }
}
