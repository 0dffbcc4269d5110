//! The host functions a policy may import, and the per-evaluation state behind them.
//!
//! A policy gets its own settings always, and `log`, `clock`, `rate-limit` and `data` only
//! when its configuration grants them: the linker of each policy defines only what was
//! granted, and [`crate::contract`] refuses a component that imports more.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::bindings::portcullis::policy as wit;
use crate::state::{CounterBackend, Health, OnError};

/// A host capability that configuration can grant to a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Write to the host's log.
    Log,
    /// Read the time.
    Clock,
    /// Use host-kept rate-limit counters.
    RateLimit,
    /// Read the host's named data sets.
    Data,
}

impl Capability {
    /// Every capability, in the order they are documented.
    pub const ALL: [Capability; 4] = [Capability::Log, Capability::Clock, Capability::RateLimit, Capability::Data];

    /// The capability behind a WIT interface name (`rate-limit` → [`Capability::RateLimit`]).
    pub fn from_interface(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The name used in config and in the WIT interface.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::RateLimit => "rate-limit",
            Capability::Data => "data",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fixed-window counters shared by every evaluation of every policy in a process. Opaque to
/// embedders: hand the same one to [`PolicySet::from_config_with_counters`] on every reload
/// so that counts survive it.
///
/// [`PolicySet::from_config_with_counters`]: crate::PolicySet::from_config_with_counters
/// Counters are keyed by policy name and the policy's key, so policies cannot read or
/// exhaust each other's counters.
///
/// Memory is bounded whatever keys a policy makes from what callers send: each policy holds
/// at most 100 000 counters (`MAX_COUNTERS_PER_POLICY`), each key at most 256 bytes
/// (`MAX_KEY_BYTES`). Every call removes a few counters whose
/// window has ended, oldest first (bounded work, never a scan of the table). When a policy's
/// table is still full, a new key is denied (fail closed) until windows end; keys already
/// counted go on counting. A key over the length cap is always denied, never truncated (two
/// long keys with a common prefix must not share a counter).
///
/// With [`RateLimiter::shared`], counters live in a [`CounterBackend`] that several
/// replicas share (Redis, see [`crate::state`]); this process's own table then only serves
/// `on_error = "local"` while the backend is away.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    tables: Arc<Mutex<HashMap<Arc<str>, Table>>>,
    max_counters: usize,
    shared: Option<(Arc<dyn CounterBackend>, OnError)>,
}

/// A take that the shared backend could not answer, under `on_error = "deny"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::with_max_counters(MAX_COUNTERS_PER_POLICY)
    }
}

/// The default cap on live counters per policy: at most about 40 MB per policy with the
/// longest keys.
pub const MAX_COUNTERS_PER_POLICY: usize = 100_000;

/// The longest rate-limit key, in bytes; a longer one is denied.
pub const MAX_KEY_BYTES: usize = 256;

/// Ended windows removed per call at most: more than one, so the table shrinks after a
/// burst of new keys, and few, so no call pays for many.
const EVICT_PER_TAKE: usize = 8;

/// One policy's counters, with an index by window end for eviction.
#[derive(Debug, Default)]
struct Table {
    windows: HashMap<Arc<str>, Window>,
    /// `(window end, serial)` → key, so ended windows are found oldest first in O(log n).
    ends: BTreeMap<(u64, u64), Arc<str>>,
    next_serial: u64,
    /// Whether "full" was logged since the last counter was added (one line per episode).
    full_logged: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started_ms: u64,
    length_ms: u64,
    count: u32,
    serial: u64,
}

impl Window {
    fn end(&self) -> u64 {
        self.started_ms.saturating_add(self.length_ms)
    }
}

impl Table {
    /// Removes up to `EVICT_PER_TAKE` counters whose window ended at or before `now_ms`.
    fn evict_ended(&mut self, now_ms: u64) {
        for _ in 0..EVICT_PER_TAKE {
            let Some(entry) = self.ends.first_entry() else { return };
            if entry.key().0 > now_ms {
                return;
            }
            let key = entry.remove();
            self.windows.remove(&key);
        }
    }

    /// Starts a new window for `key` (which must be in `windows` or about to be inserted).
    fn start(&mut self, key: Arc<str>, old: Option<Window>, now_ms: u64, window_ms: u64) -> Window {
        if let Some(old) = old {
            self.ends.remove(&(old.end(), old.serial));
        }
        let window = Window { started_ms: now_ms, length_ms: window_ms, count: 0, serial: self.next_serial };
        self.next_serial += 1;
        self.ends.insert((window.end(), window.serial), key.clone());
        self.windows.insert(key, window);
        window
    }
}

impl RateLimiter {
    /// Counters with another cap per policy than [`MAX_COUNTERS_PER_POLICY`] (at least 1).
    pub(crate) fn with_max_counters(max_counters: usize) -> RateLimiter {
        RateLimiter { tables: Arc::default(), max_counters: max_counters.max(1), shared: None }
    }

    /// Counters kept in `backend`, shared with every replica that uses the same one; when
    /// it fails, takes are refused (`deny`: the request is answered 503
    /// `state-unavailable`), allowed (`allow`) or counted in this process (`local`).
    pub fn shared(backend: Arc<dyn CounterBackend>, on_error: OnError) -> RateLimiter {
        RateLimiter { shared: Some((backend, on_error)), ..RateLimiter::default() }
    }

    /// How the counters' backend is doing (memory is always up).
    pub fn health(&self) -> Health {
        match &self.shared {
            Some((backend, _)) => backend.health(),
            None => Health {
                role: "rate_limit",
                backend: "memory",
                up: true,
                on_error: OnError::Deny,
                errors: 0,
                fallbacks: 0,
                last_error: None,
            },
        }
    }

    /// [`take`](RateLimiter::take) through the shared backend when there is one, applying
    /// its `on_error` when it fails; `Err` when the take must fail the request.
    pub(crate) fn take_shared(
        &self,
        policy: &Arc<str>,
        key: &str,
        limit: u32,
        window_ms: u64,
        now_ms: u64,
    ) -> Result<(bool, u32, u64), Unavailable> {
        let Some((backend, on_error)) = &self.shared else {
            return Ok(self.take(policy, key, limit, window_ms, now_ms));
        };
        let window_ms = window_ms.max(1);
        if limit == 0 || key.len() > MAX_KEY_BYTES {
            return Ok(self.take(policy, key, limit, window_ms, now_ms));
        }
        match backend.take(policy, key, limit, window_ms) {
            Ok(taken) => Ok((taken.allowed, taken.remaining, taken.reset_after_ms)),
            Err(_) => match on_error {
                OnError::Deny => Err(Unavailable),
                OnError::Allow => {
                    backend.fell_back();
                    tracing::debug!(
                        policy = &**policy,
                        "rate-limit backend unavailable: take allowed (on_error = allow)"
                    );
                    Ok((true, limit.saturating_sub(1), window_ms))
                }
                OnError::Local => {
                    backend.fell_back();
                    Ok(self.take(policy, key, limit, window_ms, now_ms))
                }
            },
        }
    }

    /// Takes one unit from `(policy, key)`, allowing `limit` per `window_ms`, at time `now_ms`.
    /// Returns whether it was allowed, what remains, and the milliseconds until the window
    /// (or, when the table is full, the oldest window) ends.
    pub(crate) fn take(
        &self,
        policy: &Arc<str>,
        key: &str,
        limit: u32,
        window_ms: u64,
        now_ms: u64,
    ) -> (bool, u32, u64) {
        let window_ms = window_ms.max(1);
        if limit == 0 {
            // Nothing to count: no counter is kept for it.
            return (false, 0, window_ms);
        }
        if key.len() > MAX_KEY_BYTES {
            tracing::debug!(policy = &**policy, bytes = key.len(), "rate-limit key over {MAX_KEY_BYTES} bytes: denied");
            return (false, 0, window_ms);
        }
        // A poisoned lock only means another thread panicked mid-update; the counters are
        // still usable.
        let mut tables = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let table = tables.entry(policy.clone()).or_default();
        table.evict_ended(now_ms);
        let window = match table.windows.get(key).copied() {
            Some(w) if now_ms < w.end() && w.length_ms == window_ms => w,
            Some(old) => {
                let key = table.ends.get(&(old.end(), old.serial)).cloned().unwrap_or_else(|| key.into());
                table.start(key, Some(old), now_ms, window_ms)
            }
            None if table.windows.len() >= self.max_counters => {
                if !table.full_logged {
                    table.full_logged = true;
                    tracing::warn!(
                        policy = &**policy,
                        max = self.max_counters,
                        "rate-limit counters full: new keys are denied until windows end"
                    );
                }
                let oldest = table.ends.first_key_value().map_or(window_ms, |((end, _), _)| end.saturating_sub(now_ms));
                return (false, 0, oldest);
            }
            None => {
                table.full_logged = false;
                table.start(key.into(), None, now_ms, window_ms)
            }
        };
        let allowed = window.count < limit;
        let count = if allowed { window.count + 1 } else { window.count };
        if allowed && let Some(w) = table.windows.get_mut(key) {
            w.count = count;
        }
        let remaining = limit.saturating_sub(count);
        let reset_after = window.end().saturating_sub(now_ms);
        (allowed, remaining, reset_after)
    }

    /// How many counters a policy holds now (for tests and metrics).
    pub fn counters(&self, policy: &str) -> usize {
        let tables = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tables.get(policy).map_or(0, |t| t.windows.len())
    }
}

/// Read-only named data sets, loaded once from a folder: `NAME.json` holding an object
/// (keys map to values; non-string values are kept as JSON text) or an array of strings
/// (a set), and `NAME.txt` holding one key per line (`#` starts a comment).
#[derive(Debug, Clone, Default)]
pub struct DataSets {
    sets: HashMap<String, HashMap<String, String>>,
}

/// A data set file that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The folder or a file could not be read.
    #[error("cannot read data set {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `.json` file is not JSON.
    #[error("data set {path} must hold a JSON object or an array of strings: {source}")]
    Json {
        /// The path.
        path: PathBuf,
        /// serde_json's error, with line and column.
        source: serde_json::Error,
    },
    /// A `.json` file was not an object or an array of strings.
    #[error("data set {path} must hold a JSON object or an array of strings: {message}")]
    Shape {
        /// The path.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

impl DataSets {
    /// Loads every `.json` and `.txt` file directly inside `dir` (no subfolders, no
    /// symlinks followed out of it).
    pub fn load(dir: &Path) -> Result<DataSets, DataError> {
        let read_err = |path: &Path, source| DataError::Read { path: path.to_owned(), source };
        let mut sets = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| read_err(dir, e))? {
            let entry = entry.map_err(|e| read_err(dir, e))?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(|e| read_err(&path, e))?;
            if !file_type.is_file() {
                continue;
            }
            let (Some(stem), Some(ext)) = (path.file_stem().and_then(|s| s.to_str()), path.extension()) else {
                continue;
            };
            let text = || std::fs::read_to_string(&path).map_err(|e| read_err(&path, e));
            let set = if ext == "txt" {
                text()?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(|l| (l.to_owned(), String::new()))
                    .collect()
            } else if ext == "json" {
                let shape = |message: String| DataError::Shape { path: path.clone(), message };
                match serde_json::from_str::<serde_json::Value>(&text()?)
                    .map_err(|source| DataError::Json { path: path.clone(), source })?
                {
                    serde_json::Value::Object(map) => map
                        .into_iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(s) => (k, s),
                            other => (k, other.to_string()),
                        })
                        .collect(),
                    serde_json::Value::Array(items) => items
                        .into_iter()
                        .map(|v| match v {
                            serde_json::Value::String(s) => Ok((s, String::new())),
                            other => Err(shape(format!("array element {other} is not a string"))),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(shape("found neither".into())),
                }
            } else {
                continue;
            };
            sets.insert(stem.to_owned(), set);
        }
        Ok(DataSets { sets })
    }

    fn get(&self, set: &str, key: &str) -> Option<&String> {
        self.sets.get(set)?.get(key)
    }
}

/// Milliseconds since the Unix epoch: the clock policies read, and what a front door stamps
/// [`Request::received_at_ms`](crate::Request::received_at_ms) with.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What one policy's host functions need, shared by all its evaluations.
#[derive(Debug)]
pub(crate) struct PolicyContext {
    pub name: Arc<str>,
    pub settings: String,
    pub rate_limiter: RateLimiter,
    pub data: Arc<DataSets>,
}

/// The store data of one evaluation.
pub(crate) struct HostState {
    pub context: Arc<PolicyContext>,
    pub limiter: MemoryLimiter,
    /// Set when a rate-limit take could not reach the shared counters under
    /// `on_error = "deny"`: the evaluation's outcome becomes [`state_unavailable`].
    pub state_unavailable: bool,
}

/// What an evaluation that met unavailable shared counters decides, whatever the policy
/// said: 503 `state-unavailable`, naming no internals.
pub(crate) fn state_unavailable() -> crate::decision::Outcome {
    crate::decision::Outcome::new(crate::decision::Decision::Deny(crate::decision::Denial {
        status: 503,
        code: crate::state::STATE_UNAVAILABLE.into(),
        reason: "rate-limit counters are unavailable; try again shortly".into(),
    }))
}

/// Enforces a policy's memory limit and remembers whether it was hit, so that the trap
/// that usually follows (an allocation failure) is reported as memory exhaustion.
pub(crate) struct MemoryLimiter {
    pub max_bytes: usize,
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Longest log message kept; longer ones are cut.
const MAX_LOG_MESSAGE: usize = 4096;

impl wit::settings::Host for HostState {
    fn get(&mut self) -> String {
        self.context.settings.clone()
    }
}

impl wit::log::Host for HostState {
    fn write(&mut self, level: wit::log::Level, message: String) {
        use wit::log::Level;
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" […]");
        }
        let policy = &*self.context.name;
        match level {
            Level::Trace => tracing::trace!(target: "portcullis::policy", policy, "{message}"),
            Level::Debug => tracing::debug!(target: "portcullis::policy", policy, "{message}"),
            Level::Info => tracing::info!(target: "portcullis::policy", policy, "{message}"),
            Level::Warn => tracing::warn!(target: "portcullis::policy", policy, "{message}"),
            Level::Error => tracing::error!(target: "portcullis::policy", policy, "{message}"),
        }
    }
}

impl wit::clock::Host for HostState {
    fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}

impl wit::rate_limit::Host for HostState {
    fn take(&mut self, key: String, limit: u32, window_ms: u64) -> wit::rate_limit::Taken {
        if let Ok((allowed, remaining, reset_after_ms)) =
            self.context.rate_limiter.take_shared(&self.context.name, &key, limit, window_ms, now_ms())
        {
            wit::rate_limit::Taken { allowed, remaining, reset_after_ms }
        } else {
            self.state_unavailable = true;
            wit::rate_limit::Taken { allowed: false, remaining: 0, reset_after_ms: window_ms.max(1) }
        }
    }
}

impl wit::data::Host for HostState {
    fn contains(&mut self, set: String, key: String) -> bool {
        self.context.data.get(&set, &key).is_some()
    }

    fn get(&mut self, set: String, key: String) -> Option<String> {
        self.context.data.get(&set, &key).cloned()
    }
}

impl wit::types::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_counts_per_policy_and_resets_per_window() {
        let limiter = RateLimiter::default();
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        assert_eq!(limiter.take(&a, "k", 2, 1000, 0), (true, 1, 1000));
        assert_eq!(limiter.take(&a, "k", 2, 1000, 10), (true, 0, 990));
        assert!(!limiter.take(&a, "k", 2, 1000, 20).0);
        assert!(limiter.take(&b, "k", 2, 1000, 20).0, "another policy's counter is separate");
        assert_eq!(limiter.take(&a, "k", 2, 1000, 1000), (true, 1, 1000), "a new window starts");
    }

    #[test]
    fn rate_limit_keys_over_the_cap_are_denied_not_truncated() {
        let limiter = RateLimiter::default();
        let p: Arc<str> = "p".into();
        let longest = "k".repeat(MAX_KEY_BYTES);
        assert!(limiter.take(&p, &longest, 5, 1000, 0).0);
        let over = format!("{longest}x");
        assert_eq!(limiter.take(&p, &over, 5, 1000, 0), (false, 0, 1000));
        assert_eq!(limiter.counters("p"), 1, "no counter is kept for a refused key");
        assert!(!limiter.take(&p, "zero", 0, 1000, 0).0);
        assert_eq!(limiter.counters("p"), 1, "nor for a limit of 0");
    }

    #[test]
    fn a_full_table_denies_new_keys_until_windows_end_and_keeps_counting_old_ones() {
        let limiter = RateLimiter::with_max_counters(3);
        let (p, q): (Arc<str>, Arc<str>) = ("p".into(), "q".into());
        for key in ["a", "b", "c"] {
            assert!(limiter.take(&p, key, 2, 1000, 0).0);
        }
        assert_eq!(limiter.take(&p, "d", 2, 1000, 10), (false, 0, 990), "full: a new key fails closed");
        assert!(limiter.take(&p, "a", 2, 1000, 10).0, "a counted key goes on counting");
        assert!(!limiter.take(&p, "a", 2, 1000, 20).0);
        assert!(limiter.take(&q, "d", 2, 1000, 20).0, "another policy has its own table");
        assert_eq!(limiter.counters("p"), 3);
        assert!(limiter.take(&p, "d", 2, 1000, 1000).0, "ended windows are evicted for new keys");
        assert_eq!(limiter.counters("p"), 1);
    }

    #[test]
    fn each_take_evicts_a_bounded_number_of_ended_windows_oldest_first() {
        let limiter = RateLimiter::with_max_counters(1000);
        let p: Arc<str> = "p".into();
        for i in 0..100 {
            limiter.take(&p, &format!("short{i}"), 1, 10, 0);
        }
        limiter.take(&p, "long", 1, 1_000_000, 0);
        assert_eq!(limiter.counters("p"), 101);
        limiter.take(&p, "long", 1, 1_000_000, 50);
        assert_eq!(limiter.counters("p"), 101 - EVICT_PER_TAKE, "one call does bounded work");
        for t in 0..100 {
            limiter.take(&p, "long", 1, 1_000_000, 60 + t);
        }
        assert_eq!(limiter.counters("p"), 1, "the live window stays; every ended one went");
        assert!(!limiter.take(&p, "long", 1, 1_000_000, 500).0, "its count survived eviction of others");
    }

    #[test]
    fn a_window_restarted_under_a_new_length_is_reindexed() {
        let limiter = RateLimiter::with_max_counters(10);
        let p: Arc<str> = "p".into();
        limiter.take(&p, "k", 1, 10, 0);
        limiter.take(&p, "k", 1, 1_000_000, 5);
        // The first window's end (10) must not evict the restarted window.
        limiter.take(&p, "other", 1, 10, 20);
        assert!(!limiter.take(&p, "k", 1, 1_000_000, 30).0, "k's new window still counts");
    }

    #[test]
    fn data_sets_load_json_objects_arrays_and_text() {
        let dir = std::env::temp_dir().join(format!("portcullis-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tools.json"), r#"["search", "read"]"#).unwrap();
        std::fs::write(dir.join("owners.json"), r#"{"inv-1": "alice", "n": 3}"#).unwrap();
        std::fs::write(dir.join("hosts.txt"), "# partners\napi.partner.test\n\n").unwrap();
        let sets = DataSets::load(&dir).unwrap();
        assert!(sets.get("tools", "search").is_some());
        assert_eq!(sets.get("owners", "inv-1").map(String::as_str), Some("alice"));
        assert_eq!(sets.get("owners", "n").map(String::as_str), Some("3"));
        assert!(sets.get("hosts", "api.partner.test").is_some());
        assert!(sets.get("hosts", "# partners").is_none());
        std::fs::write(dir.join("bad.json"), r"[1]").unwrap();
        let err = DataSets::load(&dir).unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
