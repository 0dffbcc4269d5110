//! The host functions a policy may import, and the per-evaluation state behind them.
//!
//! A policy gets its own settings always, and `log`, `clock`, `rate-limit` and `data` only
//! when its configuration grants them: the linker of each policy defines only what was
//! granted, and [`crate::contract`] refuses a component that imports more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::bindings::portcullis::policy as wit;

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

/// Fixed-window counters shared by every evaluation of every policy in a process.
/// Counters are keyed by policy name and the policy's key, so policies cannot read or
/// exhaust each other's counters.
#[derive(Debug, Clone, Default)]
pub struct RateLimiter {
    windows: Arc<Mutex<HashMap<(Arc<str>, String), Window>>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started_ms: u64,
    length_ms: u64,
    count: u32,
}

/// Above this many counters, expired windows are swept on the next take.
const SWEEP_ABOVE: usize = 100_000;

impl RateLimiter {
    /// Takes one unit from `(policy, key)`, allowing `limit` per `window_ms`, at time `now_ms`.
    pub fn take(&self, policy: &Arc<str>, key: &str, limit: u32, window_ms: u64, now_ms: u64) -> (bool, u32, u64) {
        let window_ms = window_ms.max(1);
        // A poisoned lock only means another thread panicked mid-update; the counters are
        // still usable.
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, w| now_ms < w.started_ms.saturating_add(w.length_ms));
        }
        let window = windows
            .entry((policy.clone(), key.to_owned()))
            .or_insert(Window { started_ms: now_ms, length_ms: window_ms, count: 0 });
        if now_ms >= window.started_ms.saturating_add(window.length_ms) || window.length_ms != window_ms {
            *window = Window { started_ms: now_ms, length_ms: window_ms, count: 0 };
        }
        let allowed = window.count < limit;
        if allowed {
            window.count += 1;
        }
        let remaining = limit.saturating_sub(window.count);
        let reset_after = window.started_ms.saturating_add(window.length_ms).saturating_sub(now_ms);
        (allowed, remaining, reset_after)
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
pub enum DataError {
    /// The folder or a file could not be read.
    #[error("cannot read data set {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
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
                match serde_json::from_str::<serde_json::Value>(&text()?).map_err(|e| shape(e.to_string()))? {
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

    /// A data set built in code (for embedders and tests).
    pub fn insert(&mut self, name: &str, entries: impl IntoIterator<Item = (String, String)>) {
        self.sets.insert(name.to_owned(), entries.into_iter().collect());
    }

    /// The names of the loaded sets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    fn get(&self, set: &str, key: &str) -> Option<&String> {
        self.sets.get(set)?.get(key)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
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
        use wit::log::Level;
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
        let (allowed, remaining, reset_after_ms) =
            self.context.rate_limiter.take(&self.context.name, &key, limit, window_ms, now_ms());
        wit::rate_limit::Taken { allowed, remaining, reset_after_ms }
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
        assert_eq!(limiter.take(&a, "k", 2, 1000, 20).0, false);
        assert_eq!(limiter.take(&b, "k", 2, 1000, 20).0, true, "another policy's counter is separate");
        assert_eq!(limiter.take(&a, "k", 2, 1000, 1000), (true, 1, 1000), "a new window starts");
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
        std::fs::write(dir.join("bad.json"), r#"[1]"#).unwrap();
        let err = DataSets::load(&dir).unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
