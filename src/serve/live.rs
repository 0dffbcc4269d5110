//! The gate currently serving, and how a new one replaces it (hot reload).
//!
//! Every request takes the gate it starts with (an `Arc`) and keeps it to the end, so a
//! reload never changes the rules half-way through a request and never fails one in
//! flight. A new config is built and checked aside; only a complete gate is swapped in,
//! and a bad config leaves the old one serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use portcullis_host::approval::ApprovalStore;
use portcullis_host::audit::AuditSink;
use portcullis_host::config::base_dir;
use portcullis_host::gate::Gate;
use portcullis_host::{Config, Engine};

use super::jwks::Jwks;
use super::metrics::Metrics;

/// What survives a reload: the engine (and its compile cache), the approval store, the
/// audit sink and the metrics.
pub struct Keep {
    /// The engine every generation's policies run on.
    pub engine: Engine,
    /// Pending approvals.
    pub approvals: Option<Arc<dyn ApprovalStore>>,
    /// Where decisions are recorded (the metrics see every record too).
    pub audit: Arc<dyn AuditSink>,
    /// Rate-limit counters, so a reload does not reset every caller's allowance.
    pub counters: portcullis_host::RateLimiter,
    /// `[[approvals.notify]]`: the webhooks told about approvals (the gate's event sink).
    pub notifier: Option<Arc<super::notify::Notifier>>,
    /// Requests held open while approvers decide: the count, the cap, the holds of the
    /// generation serving, and the watch the gate's events wake them through.
    pub holding: Arc<super::hold::Holding>,
    /// The `[engine]`, `[server]`, `[audit]`, `[approvals]` and `[state]` sections at start, to warn
    /// when a reload changes what only a restart applies.
    pub fixed: String,
}

/// The live gate and its reload state. Cheap to clone.
#[derive(Clone)]
pub struct Live {
    gate: Arc<ArcSwap<Gate>>,
    keep: Arc<Keep>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    state: Arc<Mutex<ReloadState>>,
    config_path: Arc<PathBuf>,
    /// JWT keys fetched from issuers, kept across reloads for issuers whose source stays.
    jwks: Arc<Jwks>,
}

/// What `/readyz` reports about reloads.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadState {
    /// How many gates have served (1 after start).
    pub generation: u64,
    /// Why the last reload was refused, if it was.
    pub last_error: Option<String>,
    /// The files watched for changes, with their modification times.
    #[serde(skip)]
    pub watched: Vec<(PathBuf, Option<SystemTime>)>,
}

impl Live {
    /// Starts with `gate`, built from `config` at `config_path`.
    pub fn new(gate: Gate, keep: Keep, metrics: Arc<Metrics>, config: &Config, config_path: &Path) -> Live {
        let state = ReloadState { generation: 1, last_error: None, watched: watched_files(config, config_path) };
        Live {
            gate: Arc::new(ArcSwap::from_pointee(gate)),
            keep: Arc::new(keep),
            jwks: Arc::new(Jwks::new(metrics.clone())),
            metrics,
            state: Arc::new(Mutex::new(state)),
            config_path: Arc::new(config_path.to_owned()),
        }
    }

    /// At start, inside the runtime: builds the TLS client of every issuer whose keys are
    /// fetched (a bad `[identity.jwt.tls]` file stops the start), fetches their keys and
    /// starts their background refresh. Waits up to 10 s for the first fetches; an issuer
    /// that is down does not stop the start (its tokens get 401 and `/readyz` names it).
    pub async fn start_jwks(&self) -> Result<()> {
        let prepared = self.jwks.prepare(&self.gate())?;
        self.jwks.use_prepared(prepared);
        self.jwks.start().await;
        Ok(())
    }

    /// Before the gate admits `request`: refreshes the keys of its bearer token's issuer
    /// when the token's `kid` is unknown (at most once per cooldown; see [`Jwks`]).
    pub async fn refresh_keys(&self, gate: &Gate, request: &portcullis_host::Request) {
        self.jwks.before_admission(gate, request).await;
    }

    /// JWT keys fetched from issuers.
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// How the state backends are doing: the rate-limit counters (memory or Redis) and a
    /// networked approval store (PostgreSQL), for `/readyz` and `/metrics`.
    pub fn state_health(&self) -> Vec<portcullis_host::state::Health> {
        let approvals = self.keep.approvals.as_ref().and_then(|store| store.health());
        std::iter::once(self.keep.counters.health()).chain(approvals).collect()
    }

    /// The gate to use for one request (keep it for the whole request).
    pub fn gate(&self) -> Arc<Gate> {
        self.gate.load_full()
    }

    /// What survives reloads.
    pub fn keep(&self) -> &Keep {
        &self.keep
    }

    /// How many gates have served (1 after start): cheap, for per-request "did a reload
    /// happen" checks (the MCP door's pins), where [`Live::state`] would copy the watched
    /// files each time.
    pub fn generation(&self) -> u64 {
        self.state.lock().map(|s| s.generation).unwrap_or_default()
    }

    /// A copy of the reload state.
    pub fn state(&self) -> ReloadState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether the config or a module changed on disk since the last (attempted) load.
    pub fn changed_on_disk(&self) -> bool {
        let Ok(state) = self.state.lock() else { return false };
        state.watched.iter().any(|(path, seen)| modified(path) != *seen)
    }

    /// Builds a gate from the config on disk and swaps it in; on any error the old gate
    /// keeps serving and the error is returned (and kept for `/readyz`).
    pub fn reload(&self) -> Result<u64> {
        let path = self.config_path.as_path();
        let attempt = (|| -> Result<(Gate, Config, _)> {
            let config = Config::read(path)?;
            let gate = build_gate(&config, path, &self.keep)?;
            let keys = self.jwks.prepare(&gate)?;
            Ok((gate, config, keys))
        })();
        let mut state = self.state.lock().map_err(|_| anyhow::anyhow!("reload state poisoned"))?;
        match attempt {
            Ok((gate, config, keys)) => {
                if fixed_sections(&config) != self.keep.fixed {
                    tracing::warn!(
                        config = %path.display(),
                        "[engine], [server], [audit], [approvals] or [state] changed; those apply only after a restart"
                    );
                }
                // The new gate's key rings take over the keys held before it serves.
                self.jwks.use_prepared(keys);
                self.gate.store(Arc::new(gate));
                // Requests already held keep their deadline; their redemption runs the new gate.
                self.keep.holding.set_holds(config.holds());
                state.generation += 1;
                state.last_error = None;
                state.watched = watched_files(&config, path);
                self.metrics.reloaded(true);
                tracing::info!(generation = state.generation, config = %path.display(), "reloaded");
                Ok(state.generation)
            }
            Err(e) => {
                // Remember what was seen so a broken file is not retried every second.
                state.watched = state.watched.iter().map(|(p, _)| (p.clone(), modified(p))).collect();
                state.last_error = Some(format!("{e:#}"));
                self.metrics.reloaded(false);
                tracing::error!(config = %path.display(), error = %format!("{e:#}"), "reload refused; the previous policies keep serving");
                Err(e)
            }
        }
    }
}

/// A gate for `config` with what survives reloads attached.
pub fn build_gate(config: &Config, path: &Path, keep: &Keep) -> Result<Gate> {
    let gate = crate::setup::gate_with_counters(config, path, &keep.engine, keep.counters.clone())?;
    let gate = gate.with_audit(keep.audit.clone());
    // `[approvals.groups]` is read again at every reload: removing an approver applies at once.
    super::admin::warn_unconfigured_groups(config);
    let groups = config.approvals.as_ref().map(|a| a.groups.clone()).unwrap_or_default();
    let gate = gate.with_approvers(portcullis_host::approval::ApproverGroups::new(groups));
    // Decisions made here (admin API, inbox) wake the requests held on them at once.
    let mut events: Vec<Arc<dyn portcullis_host::approval::ApprovalEvents>> = vec![keep.holding.watch()];
    if let Some(notifier) = &keep.notifier {
        events.push(notifier.clone());
    }
    let gate = gate.with_events(Arc::new(portcullis_host::approval::Fanout(events)));
    Ok(match &keep.approvals {
        Some(store) => gate.with_approvals(store.clone()),
        None => gate,
    })
}

/// The sections a reload cannot change, in a comparable form.
pub fn fixed_sections(config: &Config) -> String {
    // `[approvals.groups]` reloads (it lives in the gate); the rest of `[approvals]` does not.
    let approvals = config.approvals.clone().map(|mut a| {
        a.groups.clear();
        a
    });
    format!("{:?}{:?}{:?}{:?}{:?}", config.engine, config.server, config.audit, approvals, config.state)
}

/// The config file and every module it names.
fn watched_files(config: &Config, config_path: &Path) -> Vec<(PathBuf, Option<SystemTime>)> {
    let dir = base_dir(config_path);
    std::iter::once(config_path.to_owned())
        .chain(config.policies.values().map(|p| dir.join(&p.module)))
        .map(|path| {
            let seen = modified(&path);
            (path, seen)
        })
        .collect()
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Opens the audit sink `[audit]` asks for.
pub fn open_audit(config: &Config, config_path: &Path) -> Result<Option<Arc<dyn AuditSink>>> {
    let Some(section) = &config.audit else { return Ok(None) };
    let sink: Arc<dyn AuditSink> = if section.path.as_os_str() == "-" {
        Arc::new(portcullis_host::audit::JsonLinesSink::stdout())
    } else {
        let path = base_dir(config_path).join(&section.path);
        Arc::new(
            portcullis_host::audit::JsonLinesSink::open(&path)
                .with_context(|| format!("{}: [audit] path", config_path.display()))?,
        )
    };
    Ok(Some(sink))
}

/// Opens the approval store `[approvals]` asks for.
pub fn open_approvals(config: &Config, config_path: &Path) -> Result<Option<Arc<dyn ApprovalStore>>> {
    let Some(section) = &config.approvals else { return Ok(None) };
    let Some(path) = section.sqlite_path(&base_dir(config_path)) else {
        return open_postgres(section, config_path).map(Some);
    };
    let store = portcullis_host::approval::SqliteStore::open(&path)
        .with_context(|| format!("{}: [approvals] store", config_path.display()))?;
    Ok(Some(Arc::new(store)))
}

/// Opens the PostgreSQL approval store (`[approvals] backend = "postgres"`): connects,
/// creates or migrates the schema, and fails with the reason when the database is away.
fn open_postgres(
    section: &portcullis_host::config::ApprovalsSection,
    config_path: &Path,
) -> Result<Arc<dyn ApprovalStore>> {
    use portcullis_host::config::{DEFAULT_POSTGRES_POOL, DEFAULT_POSTGRES_TIMEOUT_MS};
    let url = section.postgres_url().map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?;
    let settings = portcullis_host::approval::PostgresSettings {
        url,
        pool_size: section.pool_size.unwrap_or(DEFAULT_POSTGRES_POOL),
        timeout: std::time::Duration::from_millis(section.timeout_ms.unwrap_or(DEFAULT_POSTGRES_TIMEOUT_MS)),
        on_error: section.on_error,
    };
    let store = portcullis_host::approval::PostgresStore::open(&settings)
        .with_context(|| format!("{}: [approvals] backend = \"postgres\"", config_path.display()))?;
    Ok(Arc::new(store))
}
