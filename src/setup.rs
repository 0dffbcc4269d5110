//! Loading what several commands need: a config's policy set and identity, as one gate.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use portcullis_host::config::base_dir;
use portcullis_host::gate::Gate;
use portcullis_host::identity::Authenticator;
use portcullis_host::{Config, Engine, PolicySet, RateLimiter};

/// Reads `portcullis.toml`, loads every policy and the identity configuration.
pub fn gate_from_config(path: &Path) -> Result<Gate> {
    let config = Config::read(path)?;
    let engine = Engine::new(&config.engine_config(&base_dir(path)))?;
    gate_on_engine(&config, path, &engine)
}

/// The same on an existing engine (a baseline shares the engine under test).
pub fn gate_on_engine(config: &Config, path: &Path, engine: &Engine) -> Result<Gate> {
    gate_with_counters(config, path, engine, RateLimiter::default())
}

/// The same, with rate-limit counters carried over from an earlier gate (hot reload).
pub fn gate_with_counters(config: &Config, path: &Path, engine: &Engine, counters: RateLimiter) -> Result<Gate> {
    let set = PolicySet::from_config_with_counters(config, path, engine, counters)?;
    let authenticator = Authenticator::new(&config.identity, &base_dir(path))
        .with_context(|| format!("invalid config {}: [identity]", path.display()))?;
    Ok(Gate::new(Arc::new(set), Some(Arc::new(authenticator))).with_target_rules(config.request_target))
}
