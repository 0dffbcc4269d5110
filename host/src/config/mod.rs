//! `portcullis.toml`: the file that names policies, their settings, limits and
//! capabilities, and the routes that bind them to requests.
//!
//! Errors quote the file, the line and the key. Paths in the file are relative to the
//! file's folder, so a config and its policies can move together. The format is
//! documented in `docs/configuration.md`.

mod front;
mod hold;
mod mcp_oauth;
mod notify;
mod redaction;
mod state;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::capability::{Capability, DataError, DataSets, RateLimiter};
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::policy::{Limits, PolicySpec, Shared, Source};
use crate::set::{PolicySet, RouteSpec, SetError, Unmatched};
use crate::warm::Reuse;

pub use front::{
    AdminSection, ApprovalsSection, AuditSection, ForwardAuthSection, ListenSection, McpSection, ProxySection,
    RequestStateKey, ServerSection,
};
pub use hold::{DEFAULT_MAX_HELD, Holds, MAX_HOLD, parse_duration};
pub use mcp_oauth::{McpOAuth, TokenExchange, is_scope_token};
pub use notify::{
    DEFAULT_NOTIFY_ATTEMPTS, DEFAULT_NOTIFY_BACKOFF_MS, DEFAULT_NOTIFY_EVENTS, DEFAULT_NOTIFY_QUEUE,
    DEFAULT_NOTIFY_TIMEOUT_MS, MIN_NOTIFY_SECRET_LEN, NotifyFormat, NotifyTarget, inbox_link,
};
pub use redaction::RedactionSection;
pub use state::{
    ApprovalBackend, CounterStore, DEFAULT_POSTGRES_POOL, DEFAULT_POSTGRES_TIMEOUT_MS, RateLimitState, StateSection,
};
pub use tls::{ClientAuth, ListenerTls, UpstreamTls};

/// The parsed file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// Engine-wide settings.
    #[serde(default)]
    pub engine: EngineSection,
    /// Default limits for every policy; a policy's own `limits` override them key by key.
    #[serde(default)]
    pub limits: Limits,
    /// Named data sets for the `data` capability.
    #[serde(default)]
    pub data: Option<DataSection>,
    /// Routing defaults.
    #[serde(default)]
    pub routing: RoutingSection,
    /// How every door canonicalises request targets (`crate::target`); the defaults refuse
    /// what backends read differently.
    #[serde(default)]
    pub request_target: crate::target::TargetRules,
    /// How credentials become principals (docs/identity.md). Empty: every request is
    /// anonymous.
    #[serde(default)]
    pub identity: crate::identity::IdentityConfig,
    /// The policies, by name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyConfig>,
    /// The routes, in match order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Front doors for `portcullis serve`.
    #[serde(default)]
    pub server: ServerSection,
    /// Where decision records go (no audit log without it).
    #[serde(default)]
    pub audit: Option<AuditSection>,
    /// Where pending approvals are kept (require-approval refuses without it).
    #[serde(default)]
    pub approvals: Option<ApprovalsSection>,
    /// Where state shared by replicas lives (rate-limit counters); memory without it.
    #[serde(default)]
    pub state: StateSection,
    /// The redaction applier's settings: the key of keyed pseudonyms.
    #[serde(default)]
    pub redaction: RedactionSection,
}

/// `[engine]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineSection {
    /// Live instances at once (default 1000).
    pub max_instances: u32,
    /// The largest memory any policy may be granted, in MiB (default 256).
    pub max_memory_mb: u32,
    /// The compile cache folder (default: `$PORTCULLIS_CACHE_DIR` or `~/.cache/portcullis`).
    pub cache_dir: Option<PathBuf>,
    /// Whether to cache compiled components on disk (default true).
    pub cache: bool,
}

impl Default for EngineSection {
    fn default() -> Self {
        let defaults = EngineConfig::default();
        EngineSection {
            max_instances: defaults.max_instances,
            max_memory_mb: (defaults.max_memory_bytes >> 20) as u32,
            cache_dir: None,
            cache: true,
        }
    }
}

/// `[data]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DataSection {
    /// The folder holding `NAME.json` / `NAME.txt` data sets.
    pub dir: PathBuf,
}

/// `[routing]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RoutingSection {
    /// What happens to requests no route covers (default `deny`).
    pub unmatched: Unmatched,
}

/// `[policies.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// Path of the component (`.wasm`).
    pub module: PathBuf,
    /// Expected SHA-256 of the component (hex, optionally prefixed `sha256:`).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The policy's settings, passed to it as JSON.
    #[serde(default)]
    pub settings: Option<toml::Value>,
    /// Overrides of the default limits.
    #[serde(default)]
    pub limits: PartialLimits,
    /// Host capabilities granted: `log`, `clock`, `rate-limit`, `data`.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Count a failing policy as allow instead of deny (default false).
    #[serde(default)]
    pub fail_open: bool,
    /// Serve calls from warm instances: `reuse = true`, or `reuse = { max_uses = 1000,
    /// max_idle = 8 }`. Off by default (a fresh instance per call); see [`Reuse`]
    /// for the isolation it gives up.
    #[serde(default)]
    pub reuse: Option<ReuseConfig>,
    /// Start every fresh instance from a snapshot taken after `init`, so settings are parsed
    /// once at load: `true` (a load error when the component cannot be snapshotted),
    /// `false`, or unset (snapshot components up to 4 MiB, when possible); see
    /// [`Policy::load`](crate::Policy::load).
    #[serde(default)]
    pub preinit: Option<bool>,
    /// How long a door keeps a request this policy asks an approval for open while an
    /// approver decides (`"30s"`; at most [`MAX_HOLD`]); a route's own `hold` wins.
    #[serde(default)]
    pub hold: Option<String>,
}

/// `reuse = true | false | { max_uses, max_idle }`.
#[derive(Debug, Clone)]
pub enum ReuseConfig {
    /// `true`: reuse with the defaults; `false`: a fresh instance per call.
    Switch(bool),
    /// Reuse with these settings (absent keys take the defaults).
    Tuned(Reuse),
}

/// By hand rather than `untagged`, so that a mistyped key is named in the error instead of
/// "did not match any variant".
impl<'de> Deserialize<'de> for ReuseConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ReuseConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or a table { max_uses = N, max_idle = N }")
            }
            fn visit_bool<E: serde::de::Error>(self, on: bool) -> Result<ReuseConfig, E> {
                Ok(ReuseConfig::Switch(on))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<ReuseConfig, M::Error> {
                Reuse::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ReuseConfig::Tuned)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl ReuseConfig {
    fn reuse(&self) -> Option<Reuse> {
        match self {
            ReuseConfig::Switch(on) => on.then(Reuse::default),
            ReuseConfig::Tuned(reuse) => Some(*reuse),
        }
    }
}

/// Per-policy limit overrides; absent keys take the `[limits]` defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PartialLimits {
    /// See [`Limits::timeout_ms`].
    pub timeout_ms: Option<u64>,
    /// See [`Limits::memory_mb`].
    pub memory_mb: Option<u32>,
    /// See [`Limits::max_return_bytes`].
    pub max_return_bytes: Option<usize>,
    /// See [`Limits::max_body_bytes`].
    pub max_body_bytes: Option<usize>,
}

impl PartialLimits {
    fn over(&self, defaults: &Limits) -> Limits {
        Limits {
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
            memory_mb: self.memory_mb.unwrap_or(defaults.memory_mb),
            max_return_bytes: self.max_return_bytes.unwrap_or(defaults.max_return_bytes),
            max_body_bytes: self.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        }
    }
}

/// `[[routes]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// The route's name (default `routes[N]`).
    #[serde(default)]
    pub name: Option<String>,
    /// Host patterns (default: any).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path globs (default: any).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Methods (default: any).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Operation names (default: any).
    #[serde(default)]
    pub operations: Vec<String>,
    /// Policies to evaluate, in order.
    pub policies: Vec<String>,
    /// How long a door keeps a request on this route that needs an approval open while an
    /// approver decides (`"30s"`, `"0s"` for none; at most [`MAX_HOLD`]); it wins over the
    /// policies' `hold`.
    #[serde(default)]
    pub hold: Option<String>,
}

/// Why a config could not be used. Always names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown / mistyped key (the message quotes the
    /// line and the key).
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's error; its message has the line, column and key.
        source: toml::de::Error,
    },
    /// The `[data]` folder could not be loaded.
    #[error("invalid config {path}: [data] dir: {source}")]
    Data {
        /// The file.
        path: PathBuf,
        /// Why.
        source: DataError,
    },
    /// Something is wrong beyond syntax.
    #[error("invalid config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What.
        message: String,
    },
    /// The engine could not start.
    #[error("config {path}: {source}")]
    Engine {
        /// The file.
        path: PathBuf,
        /// Why (boxed: it is large, and a config error is rare).
        source: Box<EngineError>,
    },
    /// A policy or route failed.
    #[error("config {path}: {source}")]
    Set {
        /// The file.
        path: PathBuf,
        /// Why (boxed: it is large, and a config error is rare).
        source: Box<SetError>,
    },
}

impl Config {
    /// `reuse = true` for every policy whose table does not set `reuse` (an explicit
    /// `reuse = false` stays): what `portcullis replay --reuse-instances` runs with.
    pub fn reuse_where_unset(&mut self) {
        for policy in self.policies.values_mut() {
            policy.reuse.get_or_insert(ReuseConfig::Switch(true));
        }
    }

    /// Reads and parses a config file (without loading any policy).
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` is used for errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        config.check_limits().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        config.check_state().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        config.check_holds().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        Ok(config)
    }

    /// Refuses `[state]` and `[approvals]` backend keys that contradict each other.
    fn check_state(&self) -> Result<(), String> {
        if let Some(rate_limit) = &self.state.rate_limit {
            rate_limit.check()?;
        }
        if let Some(approvals) = &self.approvals {
            approvals.check()?;
            for (name, group) in &approvals.groups {
                group.check(name)?;
            }
            approvals.check_notify()?;
        }
        Ok(())
    }

    /// The rate-limit counters `[state.rate_limit]` asks for (memory without it). Shared
    /// counters are opened once per process and kept across reloads.
    pub fn rate_limiter(&self, path: &Path) -> Result<RateLimiter, ConfigError> {
        match &self.state.rate_limit {
            None => Ok(RateLimiter::default()),
            Some(section) => {
                section.counters().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })
            }
        }
    }

    /// Refuses limits out of range (e.g. a `timeout_ms` near `u64::MAX`, which would
    /// overflow the deadline) when the file is read, naming the key.
    fn check_limits(&self) -> Result<(), String> {
        let mb = self.engine.max_memory_mb;
        if !(1..=crate::policy::MAX_MEMORY_MB).contains(&mb) {
            return Err(format!(
                "`engine.max_memory_mb` is {mb}, but must be between 1 and {}",
                crate::policy::MAX_MEMORY_MB
            ));
        }
        self.limits.check().map_err(|e| format!("`limits.{}` {}", e.limit, e.message))?;
        for (name, policy) in &self.policies {
            let limits = policy.limits.over(&self.limits);
            limits.check().map_err(|e| format!("`policies.{name}.limits.{}` {}", e.limit, e.message))?;
            if limits.memory_mb > mb {
                return Err(format!(
                    "`policies.{name}.limits.memory_mb` is {}, above `engine.max_memory_mb` ({mb})",
                    limits.memory_mb
                ));
            }
        }
        Ok(())
    }

    /// The engine settings this config asks for.
    pub fn engine_config(&self, base_dir: &Path) -> EngineConfig {
        let defaults = EngineConfig::default();
        EngineConfig {
            max_instances: self.engine.max_instances,
            max_memory_bytes: (self.engine.max_memory_mb as usize).saturating_mul(1 << 20),
            cache_dir: if self.engine.cache {
                self.engine.cache_dir.as_ref().map(|d| base_dir.join(d)).or(defaults.cache_dir)
            } else {
                None
            },
        }
    }
}

/// The folder relative paths in `config_path` are resolved against.
pub fn base_dir(config_path: &Path) -> PathBuf {
    match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

impl PolicySet {
    /// Reads a config file, starts an engine for it and loads every policy.
    pub fn from_config_file(path: &Path) -> Result<PolicySet, ConfigError> {
        let config = Config::read(path)?;
        let engine = Engine::new(&config.engine_config(&base_dir(path)))
            .map_err(|source| ConfigError::Engine { path: path.to_owned(), source: Box::new(source) })?;
        PolicySet::from_config(&config, path, &engine)
    }

    /// Loads the policies and routes of a parsed config on an existing engine. `path` is
    /// the config's location: relative paths are resolved against its folder.
    pub fn from_config(config: &Config, path: &Path, engine: &Engine) -> Result<PolicySet, ConfigError> {
        PolicySet::from_config_with_counters(config, path, engine, RateLimiter::default())
    }

    /// As [`PolicySet::from_config`], keeping the rate-limit counters of an earlier set: a
    /// hot reload must not hand every caller a fresh allowance.
    pub fn from_config_with_counters(
        config: &Config,
        path: &Path,
        engine: &Engine,
        counters: RateLimiter,
    ) -> Result<PolicySet, ConfigError> {
        let dir = base_dir(path);
        let invalid = |message: String| ConfigError::Invalid { path: path.to_owned(), message };
        let set_err = |source: SetError| ConfigError::Set { path: path.to_owned(), source: Box::new(source) };
        let data = match &config.data {
            Some(section) => DataSets::load(&dir.join(&section.dir))
                .map_err(|source| ConfigError::Data { path: path.to_owned(), source })?,
            None => DataSets::default(),
        };
        let pseudonym_key = config.redaction.pseudonym_key(&dir).map_err(invalid)?;
        let mut builder = PolicySet::builder(engine)
            .shared(Shared { data: Arc::new(data), rate_limiter: counters })
            .unmatched(config.routing.unmatched);
        if config.policies.is_empty() {
            return Err(invalid("defines no policies; add a `[policies.NAME]` table with a `module` path".into()));
        }
        for (name, policy) in &config.policies {
            let settings = match &policy.settings {
                Some(value) => serde_json::to_value(value)
                    .map_err(|e| invalid(format!("policies.{name}.settings cannot be turned into JSON: {e}")))?,
                None => serde_json::Value::Object(serde_json::Map::default()),
            };
            let spec = PolicySpec {
                name: name.clone(),
                source: Source::File(dir.join(&policy.module)),
                sha256: policy.sha256.clone(),
                settings,
                limits: policy.limits.over(&config.limits),
                capabilities: policy.capabilities.clone(),
                fail_open: policy.fail_open,
                reuse: policy.reuse.as_ref().and_then(ReuseConfig::reuse),
                preinit: policy.preinit,
            };
            builder = builder.policy(spec).map_err(set_err)?;
        }
        if config.routes.is_empty() {
            return Err(invalid(
                "defines no routes, so no policy would ever run; add `[[routes]]` with `paths` and `policies`".into(),
            ));
        }
        for (i, route) in config.routes.iter().enumerate() {
            builder = builder.route(RouteSpec {
                name: route.name.clone().unwrap_or_else(|| format!("routes[{i}]")),
                hosts: route.hosts.clone(),
                paths: route.paths.clone(),
                methods: route.methods.clone(),
                operations: route.operations.clone(),
                policies: route.policies.clone(),
            });
        }
        let set = builder.build().map_err(set_err)?;
        // Installed only once the whole set loaded: a reload that fails keeps the old key.
        crate::mask::set_pseudonym_key(pseudonym_key);
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_quote_line_and_key() {
        let text = "[policies.a]\nmodule = \"a.wasm\"\nfail_opn = true\n";
        let err = Config::parse(text, Path::new("p.toml")).unwrap_err().to_string();
        assert!(err.contains("p.toml"), "{err}");
        assert!(err.contains("fail_opn"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn partial_limits_override_defaults_key_by_key() {
        let text = "[limits]\ntimeout_ms = 20\n[policies.a]\nmodule = \"a.wasm\"\nlimits = { memory_mb = 8 }\n";
        let config = Config::parse(text, Path::new("p.toml")).unwrap();
        let limits = config.policies["a"].limits.over(&config.limits);
        assert_eq!(limits.timeout_ms, 20);
        assert_eq!(limits.memory_mb, 8);
        assert_eq!(limits.max_body_bytes, Limits::default().max_body_bytes);
    }

    /// Regression (issue 16): limits that overflow where they are used were accepted.
    #[test]
    fn limits_out_of_range_are_refused_when_read_naming_the_key() {
        let policy = "[policies.a]\nmodule = \"a.wasm\"\n";
        for (text, named) in [
            (format!("[limits]\ntimeout_ms = {}\n{policy}", i64::MAX), "`limits.timeout_ms`"),
            (format!("[limits]\ntimeout_ms = 0\n{policy}"), "`limits.timeout_ms`"),
            (format!("{policy}limits = {{ timeout_ms = 60001 }}\n"), "`policies.a.limits.timeout_ms`"),
            (format!("{policy}limits = {{ memory_mb = 4294967295 }}\n"), "`policies.a.limits.memory_mb`"),
            (format!("{policy}limits = {{ memory_mb = 300 }}\n"), "above `engine.max_memory_mb`"),
            (format!("[limits]\nmax_body_bytes = {}\n{policy}", i64::MAX), "`limits.max_body_bytes`"),
            (
                format!("{policy}limits = {{ max_return_bytes = {} }}\n", 5u64 << 30),
                "`policies.a.limits.max_return_bytes`",
            ),
            (format!("[engine]\nmax_memory_mb = 4294967295\n{policy}"), "`engine.max_memory_mb`"),
        ] {
            let err = Config::parse(&text, Path::new("p.toml")).unwrap_err().to_string();
            assert!(err.contains("p.toml") && err.contains(named), "{text}: {err}");
        }
        let ok = format!("[limits]\ntimeout_ms = 60000\n{policy}limits = {{ memory_mb = 256 }}\n");
        Config::parse(&ok, Path::new("p.toml")).unwrap();
    }

    #[test]
    fn capabilities_must_be_known() {
        let text = "[policies.a]\nmodule = \"a.wasm\"\ncapabilities = [\"network\"]\n";
        let err = Config::parse(text, Path::new("p.toml")).unwrap_err().to_string();
        assert!(err.contains("network"), "{err}");
    }

    #[test]
    fn reuse_where_unset_leaves_explicit_choices_alone() {
        let text = "[policies.a]\nmodule = \"a.wasm\"\n[policies.b]\nmodule = \"b.wasm\"\nreuse = false\n\
                    [policies.c]\nmodule = \"c.wasm\"\nreuse = { max_uses = 5 }\n";
        let mut config = Config::parse(text, Path::new("p.toml")).unwrap();
        config.reuse_where_unset();
        let reuse = |name: &str| config.policies[name].reuse.as_ref().and_then(ReuseConfig::reuse);
        assert_eq!(reuse("a"), Some(Reuse::default()));
        assert_eq!(reuse("b"), None);
        assert_eq!(reuse("c"), Some(Reuse { max_uses: 5, ..Reuse::default() }));
    }

    #[test]
    fn reuse_is_a_switch_or_a_table_and_names_bad_keys() {
        let parse = |value: &str| {
            Config::parse(&format!("[policies.a]\nmodule = \"a.wasm\"\nreuse = {value}\n"), Path::new("p.toml"))
        };
        let reuse = |value: &str| parse(value).unwrap().policies["a"].reuse.as_ref().and_then(ReuseConfig::reuse);
        assert_eq!(reuse("true"), Some(Reuse::default()));
        assert_eq!(reuse("false"), None);
        assert_eq!(reuse("{ max_uses = 5 }"), Some(Reuse { max_uses: 5, ..Reuse::default() }));
        let none = Config::parse("[policies.a]\nmodule = \"a.wasm\"\n", Path::new("p.toml")).unwrap();
        assert!(none.policies["a"].reuse.is_none());
        for (bad, named) in
            [("{ max_use = 5 }", "max_use"), ("\"yes\"", "true, false or a table"), ("{ max_idle = -1 }", "max_idle")]
        {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(named) && err.contains("line 3"), "{bad}: {err}");
        }
    }
}
