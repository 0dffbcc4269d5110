//! Pre-initialised policies: every fresh instance starts where `init` left off.
//!
//! Why: with a fresh instance per evaluation, a policy re-read and re-parsed its settings on
//! every call, a fifth to a half of a fresh call for the reference policies (agent-guard
//! ~1 µs, scopes ~5 µs of 8–13 µs). At load the host now runs `init` once in an instrumented
//! instance and rewrites the component so that its memories and globals start as `init`
//! left them: the technique of Wizer, through `wasmtime-wizer` (same release as wasmtime).
//! Every evaluation still gets a fresh instance of its own, so nothing one request does is
//! ever seen by another; what all instances share is exactly the state `init` built from
//! the configured settings.
//!
//! This module only instruments and snapshots; [`crate::policy`] decides when (the
//! `preinit` option, default: components up to [`AUTO_MAX_BYTES`]), caches the rewritten
//! component by digest and falls back to the component as shipped when a snapshot cannot
//! be taken (e.g. a guest that mutates tables, which Wizer cannot record).

use std::future::{Future, ready};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::Store;
use wasmtime::component::{Instance, Lift, WasmList};
use wasmtime_wizer::{ComponentContext, ComponentInstanceState, Wizer};

use crate::engine::{Causes, EngineError};
use crate::policy::Fault;

/// `preinit` unset snapshots components up to this size. Larger ones are guests with a
/// language runtime (Python, JavaScript: 12–19 MB) that their build tools already
/// snapshotted after start-up; a second snapshot saves them little and costs a compile of
/// the whole component at first load (seconds).
pub const AUTO_MAX_BYTES: usize = 4 << 20;

/// Part of the cache key of a snapshot: a new snapshot format must never reuse old entries.
pub(crate) const SNAPSHOT_FORMAT: &str = "portcullis-preinit-1 wasmtime-wizer-48";

/// Why a component could not be snapshotted. The step that failed is in the message; the
/// error from wasmtime, wasmtime-wizer, the compile cache or the policy is the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreinitError {
    /// A step failed in wasmtime or wasmtime-wizer.
    #[error("{step}: {}", Causes(source.as_ref()))]
    Step {
        /// What was being done: `instrumenting`, `linking`, ``reading `memory#0` ``.
        step: String,
        /// wasmtime's or wasmtime-wizer's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The snapshot did not compile or link.
    #[error("the snapshot: {source}")]
    Snapshot {
        /// The engine's error (boxed: it is large, and this error is rare).
        source: Box<EngineError>,
    },
    /// `init`, run in the instrumented instance, refused the settings.
    #[error("`init` refused the settings: {setting}: {message}")]
    Settings {
        /// The setting the policy named.
        setting: String,
        /// What the policy said.
        message: String,
    },
    /// `init`, run in the instrumented instance, failed.
    #[error("`init`: {0}")]
    Init(#[source] Fault),
    /// wasmtime-wizer panicked (caught: a component it cannot handle must not abort a load).
    #[error("the snapshot tool panicked while {0}")]
    Panicked(&'static str),
    /// The snapshot waited on something: every accessor completes at once, so it never should.
    #[error("the snapshot did not complete")]
    Incomplete,
}

impl PreinitError {
    /// A failed step, with wasmtime's error as the source.
    pub(crate) fn step(step: impl Into<String>, e: wasmtime::Error) -> PreinitError {
        PreinitError::Step { step: step.into(), source: e.into() }
    }
}

/// Instruments `bytes` for a snapshot: the returned component exports accessors for every
/// memory and global, which [`snapshot`] reads after `init` has run in an instance of it.
pub(crate) fn instrument(bytes: &[u8]) -> Result<(ComponentContext<'_>, Vec<u8>), PreinitError> {
    let wizer = Wizer::new();
    catch_unwind(AssertUnwindSafe(|| wizer.instrument_component(bytes)))
        .map_err(|_| PreinitError::Panicked("instrumenting"))?
        .map_err(|e| PreinitError::step("instrumenting", e))
}

/// The component rewritten so that its memories and globals start as they are now in
/// `instance` (an instance of the instrumented component, after `init`).
pub(crate) fn snapshot<T: Send>(
    cx: &ComponentContext<'_>,
    store: &mut Store<T>,
    instance: Instance,
) -> Result<Vec<u8>, PreinitError> {
    let wizer = Wizer::new();
    let mut access = Access { store, instance, failure: None };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // Every accessor call below completes synchronously, so the future is ready at once.
        let mut future = pin!(wizer.snapshot_component(cx, &mut access));
        match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => Some(result),
            Poll::Pending => None,
        }
    }));
    if let Some(failure) = access.failure {
        return Err(failure);
    }
    match outcome {
        Ok(Some(result)) => result.map_err(|e| PreinitError::step("snapshotting", e)),
        Ok(None) => Err(PreinitError::Incomplete),
        Err(_) => Err(PreinitError::Panicked("reading the instance")),
    }
}

/// Reads an instance's state through the accessors [`instrument`] added, synchronously.
struct Access<'a, T: 'static> {
    store: &'a mut Store<T>,
    instance: Instance,
    /// The first accessor that failed; the snapshot is then discarded.
    failure: Option<PreinitError>,
}

impl<T: Send> Access<'_, T> {
    fn call<R: Lift + Default + Send + Sync + 'static>(&mut self, instance: &str, func: &str) -> R
    where
        (R,): Lift,
    {
        match self.try_call::<R>(instance, func) {
            Ok(value) => value,
            Err(e) => {
                self.fail(instance, func, e);
                R::default()
            }
        }
    }

    /// Keeps the first failure; the snapshot is discarded when there is one.
    fn fail(&mut self, instance: &str, func: &str, e: wasmtime::Error) {
        self.failure.get_or_insert_with(|| PreinitError::step(format!("reading `{instance}#{func}`"), e));
    }

    fn try_call<R: Lift + Send + Sync + 'static>(&mut self, instance: &str, func: &str) -> wasmtime::Result<R>
    where
        (R,): Lift,
    {
        let (_, parent) = self
            .instance
            .get_export(&mut *self.store, None, instance)
            .ok_or_else(|| wasmtime::format_err!("no such export"))?;
        let (_, index) = self
            .instance
            .get_export(&mut *self.store, Some(&parent), func)
            .ok_or_else(|| wasmtime::format_err!("no such function"))?;
        let typed = self.instance.get_typed_func::<(), (R,)>(&mut *self.store, index)?;
        Ok(typed.call(&mut *self.store, ())?.0)
    }
}

impl<T: Send> ComponentInstanceState for Access<'_, T> {
    fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl Future<Output = ()> + Send {
        match self.try_call::<WasmList<u8>>(instance, func) {
            Ok(list) => contents(list.as_le_slice(&*self.store)),
            Err(e) => {
                self.fail(instance, func, e);
                contents(&[]);
            }
        }
        ready(())
    }

    fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> impl Future<Output = i32> + Send {
        ready(self.call(instance, func))
    }

    fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> impl Future<Output = i64> + Send {
        ready(self.call(instance, func))
    }

    fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> impl Future<Output = u32> + Send {
        ready(self.call::<f32>(instance, func).to_bits())
    }

    fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> impl Future<Output = u64> + Send {
        ready(self.call::<f64>(instance, func).to_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cannot_be_instrumented_is_an_error_not_a_panic() {
        let core_module = b"\0asm\x01\0\0\0";
        let err = instrument(core_module).err().expect("a core module is not a component");
        assert!(err.to_string().contains("component"), "{err}");
        let PreinitError::Step { source, .. } = &err else { panic!("{err:?}") };
        assert!(source.to_string().contains("component"), "wasmtime-wizer's error is the source: {err}");
        assert!(instrument(b"not wasm at all").is_err());
    }
}
