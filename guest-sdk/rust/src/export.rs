//! The bridge between a [`Policy`] and the generated `handler` export; used by
//! [`crate::export_policy!`], not meant to be named directly.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, Ordering};

#[cfg(target_arch = "wasm32")]
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;

use crate::bindings::exports::portcullis::policy::handler::Guest;
use crate::bindings::portcullis::policy::types::PolicyMetadata;
use crate::{Outcome, Policy, Request, Response, SettingsError, deny, settings};

/// Implements the generated `Guest` trait for any [`Policy`] `P`.
pub struct Export<P>(PhantomData<P>);

/// The settings `init` parsed in this instance, kept for its later calls: a `Box<P::Settings>`
/// leaked into memory that the allocator keeps (`arena::keep_allocations`), or null.
///
/// The host either snapshots the instance after `init` and starts every fresh instance from
/// that snapshot (pre-initialisation, its default for small components), or calls `init`
/// once on every instance it will reuse: either way evaluations find the settings parsed.
/// In a fresh instance of the component as shipped (`preinit = false`) `init` never ran, so
/// each evaluation parses the settings it reads through the `settings` import. Sound because a component
/// exports exactly one policy type `P` (`export_policy!` implements the single `handler`
/// export), so the pointer is always read back as the type it was stored as, and an
/// instance is single-threaded.
static KEPT_SETTINGS: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// The settings for one call: those `init` kept in this instance, else read through the
/// `settings` import and parsed. Failing here means the host passed settings that `init`
/// would have refused: answer with a fail-closed deny rather than guess.
fn with_settings<P: Policy>(f: impl FnOnce(&P::Settings) -> Outcome) -> Outcome {
    let kept = KEPT_SETTINGS.load(Ordering::Relaxed) as *const P::Settings;
    // SAFETY: non-null only when `init` stored a leaked `Box<P::Settings>` of this same `P`
    // (see `KEPT_SETTINGS`), in memory the allocator never reuses.
    if let Some(settings) = unsafe { kept.as_ref() } {
        return f(settings);
    }
    let json = crate::bindings::portcullis::policy::settings::get();
    match settings::parse::<P::Settings>(&json) {
        Ok(settings) => f(&settings),
        Err(error) => settings_failure(&error),
    }
}

/// The outcome when the settings do not parse at call time: a 500 `policy-settings` deny.
pub fn settings_failure(error: &SettingsError) -> Outcome {
    let reason = if error.setting.is_empty() {
        format!("the policy's settings are invalid: {}", error.message)
    } else {
        format!("the policy's setting {} is invalid: {}", error.setting, error.message)
    };
    deny(500, "policy-settings", reason)
}

/// Runs one export's code as a call: the allocator starts over first if the previous call has
/// finished (when no argument was copied in, e.g. for `metadata`), and notes that this call
/// has finished when `f` returns, so that the next one can reuse the memory (see the
/// allocator's notes in `arena`: the generated bindings still lower the result afterwards,
/// which is fine).
///
/// The SDK's exports use it. A component that implements the generated `Guest` trait itself
/// can wrap each export's body in it to get the same memory reuse, provided nothing it
/// returns or keeps (no `static`) outlives the call except the result.
#[inline]
pub fn call<R>(f: impl FnOnce() -> R) -> R {
    crate::arena::begin_call();
    let result = f();
    crate::arena::finish_call();
    result
}

impl<P: Policy> Guest for Export<P> {
    fn metadata() -> PolicyMetadata {
        call(|| P::metadata().build())
    }

    fn init(settings: String) -> Result<(), SettingsError> {
        call(|| {
            let parsed = settings::check_settings::<P>(&settings)?;
            // In a component, keep them for this instance's later calls (see
            // `KEPT_SETTINGS`). Natively (tests) one process may hold several policy types,
            // so nothing is kept there.
            #[cfg(target_arch = "wasm32")]
            {
                let kept = Box::into_raw(Box::new(parsed));
                crate::arena::keep_allocations();
                KEPT_SETTINGS.store(kept as *mut (), Ordering::Relaxed);
            }
            #[cfg(not(target_arch = "wasm32"))]
            drop(parsed);
            Ok(())
        })
    }

    fn on_request(request: Request) -> Outcome {
        call(|| with_settings::<P>(|settings| P::on_request(settings, &request)))
    }

    fn on_response(request: Request, response: Response) -> Outcome {
        call(|| with_settings::<P>(|settings| P::on_response(settings, &request, &response)))
    }
}
