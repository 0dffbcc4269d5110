//! `[state.rate_limit]` and the backend keys of `[approvals]`: where state shared by
//! several replicas lives (docs/replicas.md). Without them, counters stay in memory and
//! approvals in the SQLite file `[approvals] store` names, exactly as before.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::capability::RateLimiter;
use crate::state::OnError;

/// `[state]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StateSection {
    /// `[state.rate_limit]`: where the `rate-limit` capability's counters live.
    #[serde(default)]
    pub rate_limit: Option<RateLimitState>,
}

/// Where rate-limit counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CounterStore {
    /// This process's memory (the default): each replica counts on its own.
    #[default]
    Memory,
    /// A Redis server every replica shares.
    Redis,
}

/// `[state.rate_limit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RateLimitState {
    /// `memory` (default) or `redis`.
    #[serde(default)]
    pub backend: CounterStore,
    /// `redis://host:port[/db]`, without a password (use `url_env` for one).
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL (which may carry a password).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Put before every key (default `portcullis:rl:`).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Connections to Redis, used in turn (default 2).
    #[serde(default = "default_redis_pool")]
    pub pool_size: usize,
    /// How long a take may wait for Redis, in ms (default 50).
    #[serde(default = "default_redis_timeout")]
    pub timeout_ms: u64,
    /// `deny` (default: 503 `state-unavailable`), `allow` or `local`.
    #[serde(default)]
    pub on_error: OnError,
}

/// Where approvals live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalBackend {
    /// The SQLite file `store` names (the default).
    #[default]
    Sqlite,
    /// A PostgreSQL database every replica shares.
    Postgres,
}

fn default_prefix() -> String {
    "portcullis:rl:".into()
}

fn default_redis_pool() -> usize {
    2
}

fn default_redis_timeout() -> u64 {
    50
}

/// The default budget of one approval operation on PostgreSQL, in ms.
pub const DEFAULT_POSTGRES_TIMEOUT_MS: u64 = 250;

/// The default number of PostgreSQL connections.
pub const DEFAULT_POSTGRES_POOL: usize = 8;

/// The URL from `url` or the variable `url_env` names; `key` names the section for errors.
/// A password written in the file itself is refused: it belongs in the environment.
pub(crate) fn resolve_url(url: Option<&str>, url_env: Option<&str>, key: &str) -> Result<String, String> {
    match (url, url_env) {
        (Some(_), Some(_)) => Err(format!("{key}: set `url` or `url_env`, not both")),
        (None, None) => Err(format!("{key}: set `url`, or `url_env` naming the variable that holds it")),
        (Some(url), None) => {
            if has_password(url) {
                return Err(format!(
                    "{key} url: carries a password; put the URL in an environment variable and name it with `url_env`"
                ));
            }
            Ok(url.to_owned())
        }
        (None, Some(var)) => match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => Ok(url.trim().to_owned()),
            _ => Err(format!("{key} url_env: the environment variable `{var}` is not set")),
        },
    }
}

/// Whether a URL's user info has a password (`scheme://user:password@host`, `:password@`).
fn has_password(url: &str) -> bool {
    // `key=value` connection strings and `?password=` query parameters.
    if url.contains("password=") {
        return true;
    }
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else { return false };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(user, _)| user.contains(':'))
}

impl RateLimitState {
    /// The counters this section asks for: in memory, or on Redis (`redis` feature).
    pub fn counters(&self) -> Result<RateLimiter, String> {
        match self.backend {
            CounterStore::Memory => Ok(RateLimiter::default()),
            CounterStore::Redis => self.redis(),
        }
    }

    #[cfg(feature = "redis")]
    fn redis(&self) -> Result<RateLimiter, String> {
        let url = resolve_url(self.url.as_deref(), self.url_env.as_deref(), "[state.rate_limit]")?;
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            return Err(format!("[state.rate_limit] timeout_ms: {} is not between 1 and 60000", self.timeout_ms));
        }
        if !(1..=64).contains(&self.pool_size) {
            return Err(format!("[state.rate_limit] pool_size: {} is not between 1 and 64", self.pool_size));
        }
        let settings = crate::state::RedisSettings {
            url,
            key_prefix: self.key_prefix.clone(),
            pool_size: self.pool_size,
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            on_error: self.on_error,
        };
        let counters = crate::state::RedisCounters::open(&settings).map_err(|e| e.to_string())?;
        Ok(RateLimiter::shared(std::sync::Arc::new(counters), self.on_error))
    }

    #[cfg(not(feature = "redis"))]
    #[allow(clippy::unused_self)]
    fn redis(&self) -> Result<RateLimiter, String> {
        Err("[state.rate_limit] backend = \"redis\": this build has no Redis support (cargo feature `redis`)".into())
    }
}

impl super::ApprovalsSection {
    /// The SQLite file, for `backend = "sqlite"` (relative to `base`).
    pub fn sqlite_path(&self, base: &Path) -> Option<PathBuf> {
        match self.backend {
            ApprovalBackend::Sqlite => self.store.as_ref().map(|store| base.join(store)),
            ApprovalBackend::Postgres => None,
        }
    }

    /// The PostgreSQL URL, for `backend = "postgres"`.
    pub fn postgres_url(&self) -> Result<String, String> {
        resolve_url(self.url.as_deref(), self.url_env.as_deref(), "[approvals]")
    }

    /// Refuses keys that do not belong to the backend chosen.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self.backend {
            ApprovalBackend::Sqlite => {
                if self.store.is_none() {
                    return Err(
                        "[approvals]: set `store` to the SQLite file, or `backend = \"postgres\"` with `url_env`"
                            .into(),
                    );
                }
                if self.url.is_some() || self.url_env.is_some() {
                    return Err("[approvals] url/url_env: only for `backend = \"postgres\"`".into());
                }
                if self.on_error != OnError::Deny {
                    return Err("[approvals] on_error: only for `backend = \"postgres\"` (SQLite is local)".into());
                }
            }
            ApprovalBackend::Postgres => {
                if self.store.is_some() {
                    return Err("[approvals] store: names an SQLite file; with `backend = \"postgres\"` set `url_env` (or `url`) instead".into());
                }
                if self.url.as_deref().is_some_and(has_password) {
                    return Err("[approvals] url: carries a password; put the URL in an environment variable and name it with `url_env`".into());
                }
                if self.on_error == OnError::Local {
                    return Err("[approvals] on_error: `local` is for rate limits only; use `deny` or `allow`".into());
                }
                let timeout = self.timeout_ms.unwrap_or(DEFAULT_POSTGRES_TIMEOUT_MS);
                if timeout == 0 || timeout > 60_000 {
                    return Err(format!("[approvals] timeout_ms: {timeout} is not between 1 and 60000"));
                }
                let pool = self.pool_size.unwrap_or(DEFAULT_POSTGRES_POOL);
                if !(1..=256).contains(&pool) {
                    return Err(format!("[approvals] pool_size: {pool} is not between 1 and 256"));
                }
            }
        }
        Ok(())
    }
}

impl RateLimitState {
    /// Refuses values out of range and a password in the file, when the file is read.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.backend == CounterStore::Memory {
            return Ok(());
        }
        if let Some(url) = &self.url
            && has_password(url)
        {
            return Err("[state.rate_limit] url: carries a password; put the URL in an environment variable and name it with `url_env`".into());
        }
        if self.url.is_none() && self.url_env.is_none() {
            return Err("[state.rate_limit]: backend = \"redis\" needs `url` or `url_env`".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_file_is_refused_and_env_urls_are_read() {
        assert!(has_password("redis://:s3cret@127.0.0.1:6379"));
        assert!(has_password("postgres://u:p@db/x"));
        assert!(has_password("host=db password=x"));
        assert!(!has_password("redis://127.0.0.1:6379/0"));
        assert!(!has_password("postgres://portcullis@db:5432/gw"));
        let err = resolve_url(Some("redis://:x@h"), None, "[state.rate_limit]").unwrap_err();
        assert!(err.contains("url_env"), "{err}");
        let err = resolve_url(None, Some("PORTCULLIS_TEST_SURELY_UNSET"), "[approvals]").unwrap_err();
        assert!(err.contains("PORTCULLIS_TEST_SURELY_UNSET"), "{err}");
    }
}
