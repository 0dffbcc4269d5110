//! One loaded policy: checked, compiled, pre-instantiated, its settings accepted by its own
//! `init`, and callable in a fresh isolated instance per evaluation.
//!
//! Every call gets a new store and instance (no state survives between requests or
//! callers), unless the policy's spec asks for [`Reuse`] (see [`crate::warm`] for what that
//! gives up); either way a call has a deadline in epoch ticks, a memory limit and a bound on
//! what it may return.
//! Whatever goes wrong inside comes back as a [`Fault`], which the policy set turns into a
//! fail-closed deny; nothing a policy does can take the host down.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Store, Trap};

use crate::bindings::portcullis::policy as wit_if;
use crate::bindings::portcullis::policy::types as wit;
use crate::bindings::{self, Lists, Policy as Bindings, PolicyPre};
use crate::capability::{Capability, DataSets, HostState, MemoryLimiter, PolicyContext, RateLimiter};
use crate::contract::{self, ContractError};
use crate::decision::{Decision, Outcome, Target};
use crate::engine::{Causes, ContentDigest, EPOCH_TICK, Engine, EngineError};
use crate::exchange;
use crate::preinit::PreinitError;
use crate::warm::{Reuse, Warm, WarmPool};

/// Resource limits for one policy. Every limit applies to each call separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Wall-clock time per call, including instantiation (default 100 ms). Past it the
    /// call is interrupted and the policy fails (closed, unless `fail_open`).
    pub timeout_ms: u64,
    /// Linear memory per instance in MiB (default 32). A `memory.grow` past it fails
    /// inside the guest, which usually then traps: reported as memory exhaustion.
    pub memory_mb: u32,
    /// Total bytes of strings a policy may return in one outcome (default 1 MiB).
    pub max_return_bytes: usize,
    /// The most body bytes copied into the policy, for policies that ask for bodies
    /// (default 1 MiB). Longer bodies arrive cut, with `truncated` set.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { timeout_ms: 100, memory_mb: 32, max_return_bytes: 1 << 20, max_body_bytes: 1 << 20 }
    }
}

/// Setters from [`Limits::default`], since new limits will be added. Ranges are checked at
/// load ([`Limits::check`]).
impl Limits {
    /// With another [`timeout_ms`](Limits::timeout_ms).
    #[must_use]
    pub fn with_timeout_ms(mut self, timeout_ms: u64) -> Limits {
        self.timeout_ms = timeout_ms;
        self
    }

    /// With another [`memory_mb`](Limits::memory_mb).
    #[must_use]
    pub fn with_memory_mb(mut self, memory_mb: u32) -> Limits {
        self.memory_mb = memory_mb;
        self
    }

    /// With another [`max_return_bytes`](Limits::max_return_bytes).
    #[must_use]
    pub fn with_max_return_bytes(mut self, max_return_bytes: usize) -> Limits {
        self.max_return_bytes = max_return_bytes;
        self
    }

    /// With another [`max_body_bytes`](Limits::max_body_bytes).
    #[must_use]
    pub fn with_max_body_bytes(mut self, max_body_bytes: usize) -> Limits {
        self.max_body_bytes = max_body_bytes;
        self
    }
}

/// The longest `timeout_ms`: a minute. Calls take microseconds; a longer limit only holds
/// a worker thread, and every deadline sum stays far from overflow.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// The largest `memory_mb`: 4 GiB, all a 32-bit WebAssembly memory can address.
pub const MAX_MEMORY_MB: u32 = 4096;

/// The largest `max_return_bytes` and `max_body_bytes`: 4 GiB, since neither can exceed
/// what a policy's memory holds.
pub const MAX_LIMIT_BYTES: u64 = 4 << 30;

/// A limit out of its range, named as in config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{limit}` {message}")]
#[non_exhaustive]
pub struct LimitError {
    /// The limit's key (`timeout_ms`, `memory_mb`, …).
    pub limit: &'static str,
    /// What is wrong and the allowed range.
    pub message: String,
}

impl Limits {
    /// Checks every limit against its range, so that none can overflow where it is used
    /// (deadlines in ticks, MiB in bytes). The engine's own memory cap is checked at load.
    pub fn check(&self) -> Result<(), LimitError> {
        let err = |limit, message: String| Err(LimitError { limit, message });
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return err("timeout_ms", format!("is {}, but must be between 1 and {MAX_TIMEOUT_MS}", self.timeout_ms));
        }
        if !(1..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return err("memory_mb", format!("is {}, but must be between 1 and {MAX_MEMORY_MB}", self.memory_mb));
        }
        for (limit, value) in [("max_return_bytes", self.max_return_bytes), ("max_body_bytes", self.max_body_bytes)] {
            if value as u64 > MAX_LIMIT_BYTES {
                return err(limit, format!("is {value}, but must be at most {MAX_LIMIT_BYTES} (4 GiB)"));
            }
        }
        Ok(())
    }
}

/// Where a policy's component comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Source {
    /// A `.wasm` file.
    File(PathBuf),
    /// Bytes already in memory; the label stands in for a path in errors.
    Bytes {
        /// What to call it in errors.
        label: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Bytes { label, .. } => f.write_str(label),
        }
    }
}

/// Everything needed to load one policy. Made with [`PolicySpec::new`], then its fields set
/// (new fields will be added, each with a default).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PolicySpec {
    /// The name it is known by in config, routes and verdicts.
    pub name: String,
    /// The component.
    pub source: Source,
    /// When set, the component's SHA-256 (hex) must equal this.
    pub sha256: Option<String>,
    /// The settings handed to `init` and to every call, as JSON.
    pub settings: serde_json::Value,
    /// Resource limits.
    pub limits: Limits,
    /// The host capabilities granted to it.
    pub capabilities: Vec<Capability>,
    /// When true, a failing policy counts as `allow` instead of `deny`. Off by default.
    pub fail_open: bool,
    /// Serve calls from warm instances instead of a fresh one each (off by default): faster
    /// for guests with a language runtime, but state survives between calls and callers.
    pub reuse: Option<Reuse>,
    /// Start every fresh instance from a snapshot taken after `init` (see
    /// [`Policy::load`]): `Some(true)` always, `Some(false)` never, `None` (the default)
    /// for components up to 4 MiB (`preinit::AUTO_MAX_BYTES`).
    pub preinit: Option<bool>,
}

impl PolicySpec {
    /// A spec with defaults: no pin, `{}` settings, default limits, no capabilities,
    /// fail-closed.
    pub fn new(name: impl Into<String>, source: Source) -> Self {
        PolicySpec {
            name: name.into(),
            source,
            sha256: None,
            settings: serde_json::Value::Object(serde_json::Map::default()),
            limits: Limits::default(),
            capabilities: Vec::new(),
            fail_open: false,
            reuse: None,
            preinit: None,
        }
    }
}

/// State shared by all policies of one host: rate-limit counters and data sets. Opaque: a
/// policy loaded alone with [`Policy::load`] takes `&Shared::default()` (counters of its
/// own, no data sets); a [`PolicySet`](crate::PolicySet) built from config shares one among
/// its policies.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// Rate-limit counters.
    pub(crate) rate_limiter: RateLimiter,
    /// Named data sets.
    pub(crate) data: Arc<DataSets>,
}

/// Why a policy could not be loaded. Every variant names the policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("policy `{policy}`: cannot read {source_path}: {error}")]
    Read {
        /// The policy.
        policy: String,
        /// The file.
        source_path: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The file is not a compatible component.
    #[error("policy `{policy}`: {source_path} {error}")]
    Contract {
        /// The policy.
        policy: String,
        /// The file.
        source_path: String,
        /// What is wrong.
        #[source]
        error: ContractError,
    },
    /// The pinned digest does not match.
    #[error(
        "policy `{policy}`: {source_path} has sha256 {actual}, but the configuration pins {expected}; if the new component is intended, update `sha256` for this policy"
    )]
    PinMismatch {
        /// The policy.
        policy: String,
        /// The file.
        source_path: String,
        /// The pin.
        expected: String,
        /// The file's digest.
        actual: String,
    },
    /// The component did not compile or link.
    #[error("policy `{policy}`: {source_path}: {error}")]
    Compile {
        /// The policy.
        policy: String,
        /// The file.
        source_path: String,
        /// Why.
        #[source]
        error: EngineError,
    },
    /// The component compiled but could not be linked or pre-instantiated.
    #[error("policy `{policy}`: {source_path} cannot be linked: {}", Causes(source.as_ref()))]
    Link {
        /// The policy.
        policy: String,
        /// The file.
        source_path: String,
        /// wasmtime's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `preinit = true` and no snapshot could be taken after `init`.
    #[error(
        "policy `{policy}`: {source_path} cannot be pre-initialised ({error}); remove `preinit = true` to run it from the component as shipped"
    )]
    Preinit {
        /// The policy.
        policy: String,
        /// The file.
        source_path: String,
        /// Why.
        #[source]
        error: PreinitError,
    },
    /// `metadata` or `init` failed.
    #[error("policy `{policy}`: `{export}` failed at load: {fault}")]
    Fault {
        /// The policy.
        policy: String,
        /// Which export.
        export: &'static str,
        /// What happened.
        #[source]
        fault: Fault,
    },
    /// The metadata makes no sense.
    #[error("policy `{policy}`: its metadata is invalid: {message}")]
    Metadata {
        /// The policy.
        policy: String,
        /// What is wrong.
        message: String,
    },
    /// `init` refused a setting.
    #[error("policy `{policy}`: setting `{setting}` is invalid: {message}")]
    Settings {
        /// The policy.
        policy: String,
        /// The setting the policy named.
        setting: String,
        /// What the policy said.
        message: String,
    },
    /// A limit is out of range.
    #[error("policy `{policy}`: limit `{limit}` {message}")]
    Limit {
        /// The policy.
        policy: String,
        /// The limit's name.
        limit: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// What went wrong inside one call. Turned into a deny (or, with `fail_open`, an allow)
/// by the policy set.
///
/// A value, not only an error: verdicts carry it, audit records and replay reports
/// serialise it and compare it. So it keeps wasmtime's message as text (a trap's, an
/// instantiation's) rather than wasmtime's error as a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "fault", content = "detail")]
#[non_exhaustive]
pub enum Fault {
    /// The guest trapped (a panic, an unreachable, an out-of-bounds access).
    #[error("trapped: {0}")]
    Trap(String),
    /// The call ran past its time limit.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The guest asked for more memory than its limit and then failed.
    #[error("ran out of memory (limit {0} MiB)")]
    MemoryExhausted(u32),
    /// The outcome broke the contract (bad status, oversized, invalid pointer).
    #[error("returned an invalid outcome: {0}")]
    InvalidReturn(String),
    /// No instance could be created (e.g. every pool slot is busy).
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
}

impl Fault {
    /// The HTTP status a front door answers with when this fault denies a request:
    /// 503 when the host is overloaded or the policy too slow, 500 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Fault::Timeout(_) | Fault::MemoryExhausted(_) | Fault::Instantiate(_) => 503,
            Fault::Trap(_) | Fault::InvalidReturn(_) => 500,
        }
    }
}

/// What a policy says about itself (its `metadata` export).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The policy's own name.
    pub name: String,
    /// The policy's own version.
    pub version: String,
    /// Whether it handles the request phase.
    pub request_phase: bool,
    /// Whether it handles the response phase.
    pub response_phase: bool,
    /// Whether it needs request bodies.
    pub needs_request_body: bool,
    /// Whether it needs response bodies.
    pub needs_response_body: bool,
}

/// A loaded policy, ready to evaluate. Cheap to share behind an `Arc`; calls from many
/// threads run in separate instances.
pub struct Policy {
    name: String,
    source: String,
    digest: String,
    metadata: Metadata,
    imports: Vec<Capability>,
    limits: Limits,
    fail_open: bool,
    engine: Engine,
    pre: PolicyPre<HostState>,
    /// Whether `pre` instantiates the snapshot taken after `init` rather than the component.
    preinitialised: bool,
    context: Arc<PolicyContext>,
    /// Warm instances, when the spec asks for reuse.
    warm: Option<WarmPool>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Loads, checks, compiles (or takes from the cache), links, reads the metadata of,
    /// and initialises a policy with its settings.
    ///
    /// Then, with `preinit = true`, or when `preinit` is unset and the component is at most
    /// 4 MiB (`preinit::AUTO_MAX_BYTES`), the policy is pre-initialised: fresh instances
    /// start from a snapshot of the instance `init` left behind. A component that cannot be
    /// snapshotted is used as shipped (and logged); only `preinit = true` makes that a load
    /// error.
    pub fn load(engine: &Engine, spec: PolicySpec, shared: &Shared) -> Result<Policy, LoadError> {
        let preinit = spec.preinit;
        let (mut policy, bytes) = Policy::prepare_bytes(engine, spec, shared)?;
        policy.init()?;
        if preinit.unwrap_or(bytes.len() <= crate::preinit::AUTO_MAX_BYTES) {
            match policy.snapshot_pre(&bytes) {
                Ok(pre) => {
                    policy.pre = pre;
                    policy.preinitialised = true;
                }
                Err(error) if preinit == Some(true) => {
                    return Err(LoadError::Preinit { policy: policy.name, source_path: policy.source, error });
                }
                Err(error) => tracing::info!(
                    policy = %policy.name,
                    %error,
                    "not pre-initialised: each evaluation starts from the component as shipped"
                ),
            }
        }
        Ok(policy)
    }

    /// Everything [`Policy::load`] does except `init`: for inspecting a component whose
    /// settings are not known. Such a policy must not evaluate traffic.
    pub fn prepare(engine: &Engine, spec: PolicySpec, shared: &Shared) -> Result<Policy, LoadError> {
        Policy::prepare_bytes(engine, spec, shared).map(|(policy, _)| policy)
    }

    /// [`Policy::prepare`], also returning the component's bytes.
    fn prepare_bytes(engine: &Engine, spec: PolicySpec, shared: &Shared) -> Result<(Policy, Arc<[u8]>), LoadError> {
        let name = spec.name.clone();
        let source = spec.source.to_string();
        let bytes: Arc<[u8]> = match &spec.source {
            Source::File(path) => std::fs::read(path)
                .map_err(|error| LoadError::Read { policy: name.clone(), source_path: source.clone(), error })?
                .into(),
            Source::Bytes { bytes, .. } => bytes.clone(),
        };
        let contract_err = |error| LoadError::Contract { policy: name.clone(), source_path: source.clone(), error };
        contract::check_header(&bytes).map_err(contract_err)?;
        let key = ContentDigest::of(&bytes);
        let digest = key.to_string();
        if let Some(expected) = &spec.sha256 {
            let expected = expected.trim().trim_start_matches("sha256:").to_ascii_lowercase();
            if expected != digest {
                return Err(LoadError::PinMismatch { policy: name, source_path: source, expected, actual: digest });
            }
        }
        check_limits(&name, &spec.limits, engine)?;
        if let Some(reuse) = &spec.reuse {
            check_reuse(&name, reuse)?;
        }
        let component = engine.compile_keyed(&bytes, &key).map_err(|error| LoadError::Compile {
            policy: name.clone(),
            source_path: source.clone(),
            error,
        })?;
        let imports =
            contract::check_component(engine.wasmtime(), &component, &spec.capabilities).map_err(contract_err)?;

        let link_err = |e: wasmtime::Error| LoadError::Link {
            policy: name.clone(),
            source_path: source.clone(),
            source: e.into(),
        };
        let linker = link(engine, &imports).map_err(link_err)?;
        let pre = linker.instantiate_pre(&component).map_err(link_err)?;
        let pre = PolicyPre::new(pre).map_err(link_err)?;

        let settings = serde_json::to_string(&spec.settings).unwrap_or_else(|_| "{}".into());
        let mut policy = Policy {
            context: Arc::new(PolicyContext {
                name: name.as_str().into(),
                settings,
                rate_limiter: shared.rate_limiter.clone(),
                data: shared.data.clone(),
            }),
            name,
            source,
            digest,
            metadata: Metadata {
                name: String::new(),
                version: String::new(),
                request_phase: false,
                response_phase: false,
                needs_request_body: false,
                needs_response_body: false,
            },
            imports,
            limits: spec.limits,
            fail_open: spec.fail_open,
            engine: engine.clone(),
            pre,
            preinitialised: false,
            warm: spec.reuse.map(WarmPool::new),
        };
        policy.metadata = policy.read_metadata()?;
        Ok((policy, bytes))
    }

    /// Links a snapshot of this policy after `init` (see [`crate::preinit`]), from the
    /// compile cache when this component was snapshotted with these settings before.
    fn snapshot_pre(&self, bytes: &[u8]) -> Result<PolicyPre<HostState>, PreinitError> {
        let key = ContentDigest::of(
            format!("{}\n{}\n{}", crate::preinit::SNAPSHOT_FORMAT, self.digest, self.context.settings).as_bytes(),
        );
        let linker = link(&self.engine, &self.imports).map_err(|e| PreinitError::step("linking", e))?;
        let component = if let Some(component) = self.engine.cached(&key) {
            component
        } else {
            let snapshot = self.take_snapshot(&linker, bytes)?;
            self.engine.compile_keyed(&snapshot, &key).map_err(|e| PreinitError::Snapshot { source: Box::new(e) })?
        };
        let pre = linker.instantiate_pre(&component).map_err(|e| PreinitError::step("the snapshot", e))?;
        PolicyPre::new(pre).map_err(|e| PreinitError::step("the snapshot", e))
    }

    /// Runs `init` in an instrumented instance and returns the component rewritten to start
    /// in the state `init` left.
    fn take_snapshot(&self, linker: &Linker<HostState>, bytes: &[u8]) -> Result<Vec<u8>, PreinitError> {
        let (cx, instrumented) = crate::preinit::instrument(bytes)?;
        let failed = |what: &str, e| PreinitError::step(what, e);
        let component = Component::new(self.engine.wasmtime(), &instrumented)
            .map_err(|e| failed("compiling the instrumented component", e))?;
        let mut store = self.new_store();
        store.set_epoch_deadline(ticks_for(self.load_timeout_ms()));
        let instance = linker.instantiate(&mut store, &component).map_err(|e| failed("instantiating", e))?;
        let bindings = Bindings::new(&mut store, &instance).map_err(|e| failed("binding", e))?;
        match bindings.portcullis_policy_handler().call_init(&mut store, &self.context.settings) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(PreinitError::Settings { setting: e.setting, message: e.message });
            }
            Err(e) => return Err(PreinitError::Init(self.at_load(self.classify(e, &store)))),
        }
        // Reading the state back runs the instrumented accessors (copies of the memories),
        // not policy code: give them their own, generous, deadline.
        store.set_epoch_deadline(SNAPSHOT_READ_TICKS);
        crate::preinit::snapshot(&cx, &mut store, instance)
    }

    /// Reads and checks the metadata.
    fn read_metadata(&self) -> Result<Metadata, LoadError> {
        let fault = |export, fault| LoadError::Fault { policy: self.name.clone(), export, fault };
        let (mut store, instance) = self.instantiate_at_load().map_err(|f| fault("metadata", f))?;
        let handler = instance.portcullis_policy_handler();
        let meta =
            handler.call_metadata(&mut store).map_err(|e| fault("metadata", self.at_load(self.classify(e, &store))))?;
        let invalid = |message: String| LoadError::Metadata { policy: self.name.clone(), message };
        if meta.name.trim().is_empty() {
            return Err(invalid("`name` is empty".into()));
        }
        if meta.name.len() > 256 || meta.version.len() > 256 {
            return Err(invalid("`name` and `version` must be at most 256 bytes".into()));
        }
        if !meta.phases.contains(wit::Phases::REQUEST) && !meta.phases.contains(wit::Phases::RESPONSE) {
            return Err(invalid("`phases` is empty, so it would never be called".into()));
        }
        let metadata = Metadata {
            request_phase: meta.phases.contains(wit::Phases::REQUEST),
            response_phase: meta.phases.contains(wit::Phases::RESPONSE),
            needs_request_body: meta.needs_request_body,
            needs_response_body: meta.needs_response_body,
            name: meta.name,
            version: meta.version,
        };
        Ok(metadata)
    }

    /// Runs `init` with the policy's settings.
    fn init(&self) -> Result<(), LoadError> {
        let fault = |fault| LoadError::Fault { policy: self.name.clone(), export: "init", fault };
        let (mut store, instance) = self.instantiate_at_load().map_err(fault)?;
        let result = instance
            .portcullis_policy_handler()
            .call_init(&mut store, &self.context.settings)
            .map_err(|e| fault(self.at_load(self.classify(e, &store))))?;
        result.map_err(|e| LoadError::Settings {
            policy: self.name.clone(),
            setting: if e.setting.trim().is_empty() { "(the whole document)".into() } else { e.setting },
            message: e.message,
        })
    }

    /// Whether fresh instances start from the snapshot taken after `init` (see
    /// [`Policy::load`]).
    pub fn preinitialised(&self) -> bool {
        self.preinitialised
    }

    /// The name it is configured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it was loaded from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The component's SHA-256 (hex).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// What the policy says about itself.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The capabilities the component actually imports (a subset of those granted).
    pub fn imports(&self) -> &[Capability] {
        &self.imports
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a failure counts as allow.
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// How it reuses instances, if it does (`None`: a fresh instance per call).
    pub fn reuse(&self) -> Option<Reuse> {
        self.warm.as_ref().map(WarmPool::reuse)
    }

    /// Warm instances waiting for a call (always 0 without reuse).
    pub fn idle_instances(&self) -> usize {
        self.warm.as_ref().map_or(0, WarmPool::idle)
    }

    /// The WIT version it speaks (`0.1.0` or `0.2.0`).
    pub fn contract_version(&self) -> &'static str {
        self.pre.contract().version()
    }

    /// Evaluates the request phase of this one policy in a fresh instance, or a warm one if
    /// it reuses instances (no routing, no combining): for tests, benchmarks and tools that
    /// look at a single policy.
    pub fn evaluate_request(&self, request: &exchange::Request) -> Result<Outcome, Fault> {
        self.on_request(&Lists::new(request, None), request)
    }

    /// Evaluates the response phase of this one policy, as [`Policy::evaluate_request`].
    pub fn evaluate_response(
        &self,
        request: &exchange::Request,
        response: &exchange::Response,
    ) -> Result<Outcome, Fault> {
        self.on_response(&Lists::new(request, Some(response)), request, response)
    }

    /// One instance kept for many calls, trading isolation for speed: state a policy keeps
    /// in its memory (globals, caches, a leaked allocation) survives from one call to the
    /// next. This is the instance the `reuse` option's pool would make (with `init` called
    /// once), held by the caller instead: for measuring what a fresh instance costs, and for
    /// callers that evaluate one trusted caller's traffic in a batch.
    pub fn reusable_instance(&self) -> Result<ReusableInstance<'_>, Fault> {
        let (store, bindings) = self.instantiate_for_reuse()?;
        Ok(ReusableInstance { policy: self, store, bindings })
    }

    /// The body cap to pass a request's body with, when this policy asked for it.
    fn request_body_cap(&self) -> Option<usize> {
        self.metadata.needs_request_body.then_some(self.limits.max_body_bytes)
    }

    /// Calls `on-request`. `lists` are the exchange's lists, built once per evaluation and
    /// shared by the route's policies; the body is passed only if the policy asked for it.
    pub(crate) fn on_request(&self, lists: &Lists<'_>, request: &exchange::Request) -> Result<Outcome, Fault> {
        let arg = bindings::request(request, lists, self.request_body_cap());
        self.call(|store, instance| instance.portcullis_policy_handler().call_on_request(store, arg))
    }

    /// Calls `on-response`; `lists` were built with this response.
    pub(crate) fn on_response(
        &self,
        lists: &Lists<'_>,
        request: &exchange::Request,
        response: &exchange::Response,
    ) -> Result<Outcome, Fault> {
        let req = bindings::request(request, lists, self.request_body_cap());
        let resp = bindings::response(
            response,
            lists,
            self.metadata.needs_response_body.then_some(self.limits.max_body_bytes),
        );
        self.call(|store, instance| instance.portcullis_policy_handler().call_on_response(store, req, resp))
    }

    /// Runs one export call in a fresh instance, or in a warm one when the policy reuses
    /// instances: a warm instance gets a new deadline, and goes back to the pool only if the
    /// call ended without any fault (an invalid outcome included).
    fn call(
        &self,
        export: impl FnOnce(&mut Store<HostState>, &Bindings) -> wasmtime::Result<wit::Outcome>,
    ) -> Result<Outcome, Fault> {
        let Some(pool) = &self.warm else {
            let (mut store, instance) = self.instantiate()?;
            let outcome = export(&mut store, &instance).map_err(|e| self.classify(e, &store))?;
            if store.data().state_unavailable {
                return Ok(crate::capability::state_unavailable());
            }
            return self.check_outcome(outcome);
        };
        let mut warm = if let Some(mut warm) = pool.take() {
            warm.store.set_epoch_deadline(self.deadline_ticks());
            warm
        } else {
            let (store, bindings) = self.instantiate_for_reuse()?;
            Warm { store, bindings, uses: 0 }
        };
        warm.store.data_mut().state_unavailable = false;
        let outcome = export(&mut warm.store, &warm.bindings)
            .map_err(|e| self.classify(e, &warm.store))
            .and_then(|outcome| self.check_outcome(outcome));
        if outcome.is_ok() {
            let unavailable = warm.store.data().state_unavailable;
            pool.give_back(warm);
            if unavailable {
                return Ok(crate::capability::state_unavailable());
            }
        }
        outcome
    }

    /// A store with this policy's deadline and memory limit.
    fn new_store(&self) -> Store<HostState> {
        let state = HostState {
            context: self.context.clone(),
            limiter: MemoryLimiter { max_bytes: (self.limits.memory_mb as usize).saturating_mul(1 << 20), hit: false },
            state_unavailable: false,
        };
        let mut store = Store::new(self.engine.wasmtime(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(self.deadline_ticks());
        store
    }

    /// A fresh store and instance (of the snapshot, when pre-initialised).
    fn instantiate(&self) -> Result<(Store<HostState>, Bindings), Fault> {
        self.instantiate_with(self.new_store())
    }

    /// [`instantiate`](Self::instantiate) for the calls made once at load (`metadata`,
    /// `init`), with their deadline ([`load_timeout_ms`](Self::load_timeout_ms)).
    fn instantiate_at_load(&self) -> Result<(Store<HostState>, Bindings), Fault> {
        let mut store = self.new_store();
        store.set_epoch_deadline(ticks_for(self.load_timeout_ms()));
        self.instantiate_with(store).map_err(|f| self.at_load(f))
    }

    fn instantiate_with(&self, mut store: Store<HostState>) -> Result<(Store<HostState>, Bindings), Fault> {
        match self.pre.instantiate(&mut store) {
            Ok(instance) => Ok((store, instance)),
            // A trap in a start function is the guest's fault; anything else is the host's
            // inability to make an instance (e.g. every pool slot is busy).
            Err(e) if e.downcast_ref::<Trap>().is_some() || store.data().limiter.hit => Err(self.classify(e, &store)),
            Err(e) => Err(Fault::Instantiate(first_line(&format!("{e:#}")))),
        }
    }

    /// A new instance that will serve several calls: instantiated, then `init` with the
    /// policy's settings, so that a policy may keep what it parses there for the instance's
    /// later calls (the Rust SDK keeps its parsed settings). Any failure is a fault, as for
    /// an evaluation: the settings passed `init` at load, so this is not expected.
    fn instantiate_for_reuse(&self) -> Result<(Store<HostState>, Bindings), Fault> {
        let (mut store, bindings) = self.instantiate()?;
        // A snapshot already starts where `init` left off.
        if self.preinitialised {
            return Ok((store, bindings));
        }
        let result = bindings
            .portcullis_policy_handler()
            .call_init(&mut store, &self.context.settings)
            .map_err(|e| self.classify(e, &store))?;
        if let Err(e) = result {
            return Err(Fault::InvalidReturn(format!(
                "`init` refused the settings on a new reused instance (setting `{}`: {})",
                e.setting, e.message
            )));
        }
        // The call above counted against the deadline; each evaluation gets its own.
        store.set_epoch_deadline(self.deadline_ticks());
        Ok((store, bindings))
    }

    /// The time limit in epoch ticks.
    fn deadline_ticks(&self) -> u64 {
        ticks_for(self.limits.timeout_ms)
    }

    /// The time `metadata` and `init` get at load: ten times `timeout_ms`, at most
    /// [`MAX_TIMEOUT_MS`]. They run once, and a Python or JavaScript component starts its
    /// interpreter's state then, which on a busy machine can take longer than one
    /// evaluation's budget; a policy that loops at load is still stopped.
    fn load_timeout_ms(&self) -> u64 {
        self.limits.timeout_ms.saturating_mul(LOAD_TIMEOUT_FACTOR).min(MAX_TIMEOUT_MS).max(self.limits.timeout_ms)
    }

    /// A load-time fault: a timeout names the load-time limit, not the evaluation's.
    fn at_load(&self, fault: Fault) -> Fault {
        match fault {
            Fault::Timeout(_) => Fault::Timeout(self.load_timeout_ms()),
            other => other,
        }
    }

    fn classify(&self, error: wasmtime::Error, store: &Store<HostState>) -> Fault {
        if store.data().limiter.hit {
            return Fault::MemoryExhausted(self.limits.memory_mb);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Fault::Timeout(self.limits.timeout_ms),
            Some(trap) => Fault::Trap(trap.to_string()),
            None => Fault::Trap(first_line(&format!("{error:#}"))),
        }
    }

    /// Converts and validates an outcome: statuses in range, sizes bounded, pointers valid.
    fn check_outcome(&self, outcome: wit::Outcome) -> Result<Outcome, Fault> {
        let size = outcome_size(&outcome);
        if size > self.limits.max_return_bytes {
            return Err(Fault::InvalidReturn(format!(
                "{size} bytes of strings, above the limit of {} (limits.max_return_bytes)",
                self.limits.max_return_bytes
            )));
        }
        let outcome = bindings::outcome(outcome);
        match &outcome.decision {
            Decision::Deny(d) if !(400..=599).contains(&d.status) => {
                return Err(Fault::InvalidReturn(format!("deny status {} is not a 4xx or 5xx status", d.status)));
            }
            Decision::Deny(d) if d.code.trim().is_empty() => {
                return Err(Fault::InvalidReturn("deny code is empty".into()));
            }
            Decision::Redact { redactions } => {
                for r in redactions {
                    match &r.target {
                        Target::JsonPointer(p) if !p.is_empty() && !p.starts_with('/') => {
                            return Err(Fault::InvalidReturn(format!(
                                "JSON pointer `{p}` must be empty or start with `/`"
                            )));
                        }
                        Target::Header(h) | Target::Query(h) if h.is_empty() => {
                            return Err(Fault::InvalidReturn("a redaction names an empty header or query key".into()));
                        }
                        Target::Header(h) if http::HeaderName::from_bytes(h.as_bytes()).is_err() => {
                            return Err(Fault::InvalidReturn(format!("`{h}` is not a valid header name")));
                        }
                        Target::JsonName(n) if n.is_empty() => {
                            return Err(Fault::InvalidReturn("a redaction names an empty JSON member name".into()));
                        }
                        Target::Detected(d) if crate::detect::Detector::from_name(d).is_none() => {
                            return Err(Fault::InvalidReturn(format!(
                                "`{d}` is not a detector (expected one of: {})",
                                crate::detect::Detector::ALL.map(crate::detect::Detector::name).join(", ")
                            )));
                        }
                        _ => {}
                    }
                }
            }
            Decision::RequireApproval(a) if a.approver_group.trim().is_empty() => {
                return Err(Fault::InvalidReturn("require-approval names no approver group".into()));
            }
            _ => {}
        }
        Ok(outcome)
    }
}

/// Checks limits against what the engine can give.
fn check_limits(policy: &str, limits: &Limits, engine: &Engine) -> Result<(), LoadError> {
    let err = |limit, message: String| LoadError::Limit { policy: policy.to_owned(), limit, message };
    limits.check().map_err(|e| err(e.limit, e.message))?;
    let max_mb = u32::try_from(engine.max_memory_bytes() >> 20).unwrap_or(u32::MAX);
    if limits.memory_mb > max_mb {
        return Err(err(
            "memory_mb",
            format!("is {}, but must be between 1 and {max_mb} (engine.max_memory_mb)", limits.memory_mb),
        ));
    }
    Ok(())
}

/// Checks a reuse setting.
fn check_reuse(policy: &str, reuse: &Reuse) -> Result<(), LoadError> {
    let err = |limit, message: String| LoadError::Limit { policy: policy.to_owned(), limit, message };
    if reuse.max_uses == 0 {
        return Err(err("reuse.max_uses", "must be at least 1".into()));
    }
    if reuse.max_idle == 0 {
        return Err(err(
            "reuse.max_idle",
            "must be at least 1 (leave `reuse` out for a fresh instance per call)".into(),
        ));
    }
    Ok(())
}

/// Bytes of strings in an outcome: what a policy made the host copy out.
fn outcome_size(o: &wit::Outcome) -> usize {
    let labels: usize = o.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    labels
        + match &o.decision {
            wit::Decision::Allow => 0,
            wit::Decision::Deny(d) => d.code.len() + d.reason.len(),
            wit::Decision::Redact(list) => list.iter().map(|r| 16 + r.target.text_len() + r.action.text_len()).sum(),
            wit::Decision::RequireApproval(a) => a.reason.len() + a.approver_group.len(),
        }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// An instance that serves several calls; see [`Policy::reusable_instance`]. Each call
/// still gets the policy's time limit; a fault poisons the instance (make a new one).
pub struct ReusableInstance<'p> {
    policy: &'p Policy,
    store: Store<HostState>,
    bindings: Bindings,
}

impl ReusableInstance<'_> {
    /// Calls `on-request` in this instance.
    pub fn evaluate_request(&mut self, request: &exchange::Request) -> Result<Outcome, Fault> {
        let lists = Lists::new(request, None);
        let arg = bindings::request(request, &lists, self.policy.request_body_cap());
        self.store.set_epoch_deadline(self.policy.deadline_ticks());
        let outcome = self
            .bindings
            .portcullis_policy_handler()
            .call_on_request(&mut self.store, arg)
            .map_err(|e| self.policy.classify(e, &self.store))?;
        self.policy.check_outcome(outcome)
    }
}

/// The deadline, in epoch ticks (~10 s), for reading an instance's state into a snapshot.
const SNAPSHOT_READ_TICKS: u64 = 10_000;

/// How many evaluations' budgets `metadata` and `init` get at load
/// ([`Policy::load_timeout_ms`]).
const LOAD_TIMEOUT_FACTOR: u64 = 10;

/// A time limit in epoch ticks; +1 because the current tick may be about to end.
fn ticks_for(timeout_ms: u64) -> u64 {
    let tick = EPOCH_TICK.as_millis().max(1) as u64;
    timeout_ms.div_ceil(tick).saturating_add(1)
}

/// A linker with the contract's always-available interfaces and the granted capabilities.
fn link(engine: &Engine, imports: &[Capability]) -> wasmtime::Result<Linker<HostState>> {
    let mut linker: Linker<HostState> = Linker::new(engine.wasmtime());
    wit_if::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    wit_if::settings::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    for capability in imports {
        match capability {
            Capability::Log => wit_if::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s),
            Capability::Clock => wit_if::clock::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s),
            Capability::RateLimit => wit_if::rate_limit::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s),
            Capability::Data => wit_if::data::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s),
        }?;
    }
    bindings::link_v0_1(&mut linker, imports)?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    /// Regression (issue 16): a `timeout_ms` near `u64::MAX` overflowed the deadline sum.
    #[test]
    fn limits_that_would_overflow_are_refused_naming_the_limit() {
        let with = |f: fn(&mut Limits)| {
            let mut limits = Limits::default();
            f(&mut limits);
            limits.check().map_err(|e| e.limit)
        };
        assert_eq!(with(|_| {}), Ok(()));
        assert_eq!(with(|l| l.timeout_ms = u64::MAX), Err("timeout_ms"));
        assert_eq!(with(|l| l.timeout_ms = 0), Err("timeout_ms"));
        assert_eq!(with(|l| l.timeout_ms = MAX_TIMEOUT_MS), Ok(()));
        assert_eq!(with(|l| l.memory_mb = u32::MAX), Err("memory_mb"));
        assert_eq!(with(|l| l.memory_mb = 0), Err("memory_mb"));
        assert_eq!(with(|l| l.max_body_bytes = usize::MAX), Err("max_body_bytes"));
        assert_eq!(with(|l| l.max_return_bytes = usize::MAX), Err("max_return_bytes"));
        let message = Limits { timeout_ms: u64::MAX, ..Limits::default() }.check().unwrap_err().to_string();
        assert!(message.contains("`timeout_ms`") && message.contains("60000"), "{message}");
    }

    /// The errors of `source()`, from `err` inwards.
    fn causes<'a>(err: &'a (dyn std::error::Error + 'static)) -> Vec<&'a (dyn std::error::Error + 'static)> {
        std::iter::successors(err.source(), |e| e.source()).collect()
    }

    /// Issue 17: callers can walk `source()` from a load error to the io or wasmtime error,
    /// and the message still says everything the chain says.
    #[test]
    fn load_errors_lead_to_their_io_and_wasmtime_causes() {
        let engine =
            Engine::new(&EngineConfig { cache_dir: None, max_instances: 4, ..EngineConfig::default() }).unwrap();
        let missing = std::env::temp_dir().join(format!("portcullis-missing-{}.wasm", std::process::id()));
        let err =
            Policy::load(&engine, PolicySpec::new("gone", Source::File(missing)), &Shared::default()).unwrap_err();
        assert!(matches!(err, LoadError::Read { .. }), "{err:?}");
        let io = causes(&err).into_iter().find_map(|e| e.downcast_ref::<std::io::Error>()).expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

        // A component preamble followed by bytes that are no section: compiling fails.
        let bytes: Arc<[u8]> = b"\0asm\x0d\0\x01\0\xff\xff\xff".as_slice().into();
        let spec = PolicySpec::new("broken", Source::Bytes { label: "broken.wasm".into(), bytes });
        let err = Policy::load(&engine, spec, &Shared::default()).unwrap_err();
        assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
        let chain = causes(&err);
        assert!(matches!(chain.first().and_then(|e| e.downcast_ref()), Some(EngineError::Compile { .. })), "{err:?}");
        let wasmtime = chain.get(1).expect("wasmtime's error under the engine's");
        let message = err.to_string();
        assert!(message.contains(&wasmtime.to_string()), "the message keeps wasmtime's: {message}");
        assert!(message.starts_with("policy `broken`: broken.wasm: cannot compile the component: "), "{message}");
    }
}
