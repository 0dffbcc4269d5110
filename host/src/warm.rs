//! Instance reuse: an explicit, per-policy trade of isolation for speed.
//!
//! By default every evaluation gets a fresh instance, so nothing a policy keeps in its
//! memory (globals, caches, a leaked allocation, a half-finished computation) can reach the
//! next request or another caller. For a Rust policy that costs ~10–20 µs, but a guest that
//! carries a language runtime pays for instantiating it on every call: ~1–2.5 ms for
//! CPython (componentize-py), ~0.5–1 ms for StarlingMonkey (componentize-js). A policy
//! configured with [`Reuse`] instead keeps a few warm instances and serves call after call
//! from them; [`Reuse`] says what that gives up and what stays.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use wasmtime::Store;

use crate::bindings::Policy as Bindings;
use crate::capability::HostState;

/// How a policy reuses instances (`reuse = true` or `reuse = { max_uses, max_idle }` in
/// config): a few warm instances serve call after call, instead of a fresh instance per
/// call (~10–20 µs for a Rust policy, ~0.5–2.5 ms for a guest with a language runtime).
/// What it gives up, and what stays:
///
/// - **Given up**: state in the guest's memory survives from one call to the next, across
///   requests *and callers*. A policy that caches something derived from one request, or a
///   bug that leaves a global set, can change a later decision for someone else. Only
///   reuse a policy whose code you trust to keep no per-request state.
/// - **Kept**: each new instance first gets `init` with the settings (as at load), and
///   may keep what it parses there for its later calls (the Rust SDK does). Each call still
///   has its own time limit (the deadline is reset per call),
///   the memory limit (which now bounds the instance's whole life), the bound on what it
///   may return, and fail-closed faults. An instance that faults in any way (a trap, a
///   timeout, memory exhaustion, an invalid outcome) is dropped, never reused, and an
///   instance is retired after `max_uses` calls, which bounds slow leaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reuse {
    /// Calls one instance serves before it is retired (default 1000; at least 1).
    pub max_uses: u32,
    /// Warm instances kept between calls (default 8; at least 1). Concurrent calls beyond
    /// it get instances of their own that are dropped afterwards. Each idle instance holds
    /// one of the engine's instance slots and its memory.
    pub max_idle: u32,
}

impl Default for Reuse {
    fn default() -> Self {
        Reuse { max_uses: 1000, max_idle: 8 }
    }
}

/// A store and its instance, with how many calls it has served.
pub(crate) struct Warm {
    pub store: Store<HostState>,
    pub bindings: Bindings,
    pub uses: u32,
}

/// The idle instances of one reused policy.
pub(crate) struct WarmPool {
    reuse: Reuse,
    idle: Mutex<Vec<Warm>>,
}

impl WarmPool {
    pub fn new(reuse: Reuse) -> WarmPool {
        WarmPool { reuse, idle: Mutex::new(Vec::new()) }
    }

    /// Its settings.
    pub fn reuse(&self) -> Reuse {
        self.reuse
    }

    /// An idle instance, if there is one.
    pub fn take(&self) -> Option<Warm> {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop()
    }

    /// Keeps an instance that has just served a call without fault, unless it has served
    /// `max_uses` calls or `max_idle` are already waiting (then it is dropped).
    pub fn give_back(&self, mut warm: Warm) {
        warm.uses += 1;
        if warm.uses >= self.reuse.max_uses {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.reuse.max_idle as usize {
            idle.push(warm);
        }
    }

    /// Instances waiting now (for tests and inspection).
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}
