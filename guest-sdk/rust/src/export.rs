//! The bridge between a [`Policy`] and the generated `handler` export; used by
//! [`crate::export_policy!`], not meant to be named directly.

use core::marker::PhantomData;

use alloc::format;
use alloc::string::String;

use crate::bindings::exports::portcullis::policy::handler::Guest;
use crate::bindings::portcullis::policy::types::PolicyMetadata;
use crate::{Outcome, Policy, Request, Response, SettingsError, deny, settings};

/// Implements the generated `Guest` trait for any [`Policy`] `P`.
pub struct Export<P>(PhantomData<P>);

/// The settings for one call, read through the `settings` import. Failing here means the host
/// passed settings that `init` would have refused: answer with a fail-closed deny rather
/// than guess.
fn call_settings<P: Policy>() -> Result<P::Settings, Outcome> {
    let json = crate::bindings::portcullis::policy::settings::get();
    settings::parse::<P::Settings>(&json).map_err(|error| settings_failure(&error))
}

/// The outcome when the settings do not parse at call time: a 500 `policy-settings` deny.
pub fn settings_failure(error: &SettingsError) -> Outcome {
    let reason = if error.setting.is_empty() {
        format!("the policy's settings are invalid: {}", error.message)
    } else {
        format!(
            "the policy's setting {} is invalid: {}",
            error.setting, error.message
        )
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
        call(|| settings::check_settings::<P>(&settings).map(drop))
    }

    fn on_request(request: Request) -> Outcome {
        call(|| match call_settings::<P>() {
            Ok(settings) => P::on_request(&settings, &request),
            Err(outcome) => outcome,
        })
    }

    fn on_response(request: Request, response: Response) -> Outcome {
        call(|| match call_settings::<P>() {
            Ok(settings) => P::on_response(&settings, &request, &response),
            Err(outcome) => outcome,
        })
    }
}
