//! `hostile-misbehave`: a policy that misbehaves on purpose, for the host's tests only.
//!
//! One component covers many faults: its settings choose, per export, what goes wrong.
//!
//! ```json
//! {"metadata": "ok", "init": "ok", "on_request": "allow", "on_response": "allow"}
//! ```
//!
//! Every key is optional. The modes:
//!
//! - `metadata`: `ok` (the default: name `hostile-misbehave`, both phases, no bodies),
//!   `panic` (traps), `no-phases` (declares no phase at all), `loop` (spins forever).
//! - `init`: `ok` (the default), `panic` (traps), `reject` (a settings error naming the
//!   setting `init`), `loop` (spins forever).
//! - `on_request` and `on_response`: `allow` (the default), and
//!   - `panic`: a Rust panic, which traps;
//!   - `unreachable`: executes the wasm `unreachable` instruction;
//!   - `loop`: spins forever (until the host's deadline interrupts it);
//!   - `recurse`: unbounded recursion, until the wasm call stack overflows;
//!   - `oom`: allocates and touches 1 MiB blocks until an allocation fails, then traps;
//!   - `huge-string`: denies with a reason of 8 MiB;
//!   - `many-redactions`: redacts with 1,000,000 header redactions;
//!   - `bad-status`: denies with status 200;
//!   - `bad-pointer`: redacts the JSON pointer `email` (no leading `/`);
//!   - `empty-group`: requires approval from an empty approver group;
//!   - `bad-detector`: redacts `detected("ssn")`, a detector the host does not have;
//!   - `mask-0-2`: a valid contract-0.2 redaction: `json-name("card_number")` masked with
//!     `keep-last(4)`, and `detected("email")` with `keep-email-domain`;
//!   - `pseudonym-0-2`: `json-name("phone")` as a keyed pseudonym, and `detected("email")`
//!     with `keep-email-domain`.
//!
//! `init` refuses an unknown key or mode (naming it), so a test cannot misspell a fault.
//! `metadata` runs before `init`, so it reads the settings through the `settings` import
//! and falls back to `ok` when they do not parse.
//!
//! The component bypasses the SDK's `Policy` trait and implements the generated `Guest`
//! trait directly, so that every export, `metadata` and `init` included, can misbehave. It
//! imports nothing but `settings`: no capability that the host would have to grant.
#![cfg_attr(not(test), no_std)]
// Natively (`cargo test` over the workspace) nothing is exported, so nothing is used.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

extern crate alloc;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use alloc::{format, vec};
use core::hint::black_box;

use portcullis_guest::bindings::exports::portcullis::policy::handler::Guest;
use portcullis_guest::bindings::portcullis::policy::types::PolicyMetadata;
use portcullis_guest::{
    Action, Approval, Decision, Denial, Mask, Outcome, Phases, Redaction, Request, Response, SettingsError, Target,
};
use serde_json::Value;

/// The settings keys and the modes each accepts (the first is the default).
const KEYS: [(&str, &[&str]); 4] = [
    ("metadata", &["ok", "panic", "no-phases", "loop"]),
    ("init", &["ok", "panic", "reject", "loop"]),
    ("on_request", CALL_MODES),
    ("on_response", CALL_MODES),
];

const CALL_MODES: &[&str] = &[
    "allow",
    "panic",
    "unreachable",
    "loop",
    "recurse",
    "oom",
    "huge-string",
    "many-redactions",
    "bad-status",
    "bad-pointer",
    "empty-group",
    "bad-detector",
    "mask-0-2",
    "pseudonym-0-2",
];

/// Size of the `huge-string` reason: 8 MiB.
const HUGE_STRING_BYTES: usize = 8 << 20;
/// Number of redactions for `many-redactions`.
const MANY_REDACTIONS: usize = 1_000_000;
/// Block size for `oom`.
const OOM_BLOCK_BYTES: usize = 1 << 20;

fn settings_error(setting: &str, message: String) -> SettingsError {
    SettingsError { setting: setting.to_string(), message }
}

/// Checks the settings document: a JSON object (or `null`/blank) whose keys are known and
/// whose values are modes those keys accept.
fn check(json: &str) -> Result<(), SettingsError> {
    if json.trim().is_empty() {
        return Ok(());
    }
    let value: Value =
        serde_json::from_str(json).map_err(|e| settings_error("", format!("the settings are not JSON: {e}")))?;
    let object = match value {
        Value::Null => return Ok(()),
        Value::Object(object) => object,
        _ => return Err(settings_error("", "the settings must be a JSON object".to_string())),
    };
    for (key, value) in &object {
        let Some((_, modes)) = KEYS.iter().find(|(k, _)| k == key) else {
            return Err(settings_error(
                key,
                "unknown setting; expected metadata, init, on_request or on_response".to_string(),
            ));
        };
        match value.as_str() {
            Some(mode) if modes.contains(&mode) => {}
            _ => {
                return Err(settings_error(key, format!("expected one of {}", modes.join(", "))));
            }
        }
    }
    Ok(())
}

/// The mode configured for `key` in `json`, or the key's default when the settings do not
/// say (or do not parse).
fn mode(json: &str, key: &str) -> String {
    let default = KEYS.iter().find(|(k, _)| *k == key).map_or("", |(_, modes)| modes[0]);
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|v| v.get(key).and_then(Value::as_str).map(ToString::to_string))
        .unwrap_or_else(|| default.to_string())
}

/// The mode for `key`, read through the `settings` import.
fn configured(key: &str) -> String {
    mode(&portcullis_guest::bindings::portcullis::policy::settings::get(), key)
}

fn outcome(decision: Decision) -> Outcome {
    Outcome { decision, labels: Vec::new() }
}

/// Traps the way a Rust panic does in a `no_std` guest (the SDK's panic handler).
#[inline(never)]
fn panic_now(what: &str) -> ! {
    panic!("hostile-misbehave: {what}: panic on purpose")
}

/// Executes the wasm `unreachable` instruction (natively, where nothing calls it: a panic).
fn unreachable_instruction() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic_now("unreachable");
}

/// Spins forever. `black_box` keeps the counter opaque, so the loop cannot be removed.
#[inline(never)]
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Recurses until the call stack overflows. The stop condition depends on an opaque value
/// (never reached in practice) and the result is combined after the call, so the compiler
/// can neither prove the recursion infinite nor turn it into a loop. Everything stays in wasm
/// locals, so it is the wasm call stack (not the shadow stack in linear memory) that runs out.
#[inline(never)]
fn recurse(depth: u64, stop: u64) -> u64 {
    if depth == stop {
        return depth;
    }
    let deeper = recurse(depth + 1, stop);
    deeper.wrapping_mul(31).rotate_left(7) ^ depth
}

/// Allocates and touches 1 MiB blocks (one write per 4 KiB page, so the memory is really
/// committed) until an allocation fails, then traps as Rust does on allocation failure.
#[inline(never)]
fn exhaust_memory() -> ! {
    let layout = core::alloc::Layout::from_size_align(OOM_BLOCK_BYTES, 16).unwrap_or_else(|_| {
        panic_now("oom layout");
    });
    loop {
        // SAFETY: the layout has a non-zero size.
        let block = unsafe { alloc::alloc::alloc(layout) };
        if block.is_null() {
            alloc::alloc::handle_alloc_error(layout);
        }
        let mut offset = 0;
        while offset < OOM_BLOCK_BYTES {
            // SAFETY: `offset` is inside the block just allocated.
            unsafe { block.add(offset).write_volatile(1) };
            offset += 4096;
        }
    }
}

/// What `on_request` / `on_response` do in `mode`.
fn call(phase: &str, mode: &str) -> Outcome {
    match mode {
        "allow" => outcome(Decision::Allow),
        "panic" => panic_now(phase),
        "unreachable" => unreachable_instruction(),
        "loop" => spin(),
        "recurse" => {
            let depth = recurse(0, black_box(u64::MAX));
            outcome(Decision::Deny(Denial {
                status: 500,
                code: "recursion-ended".to_string(),
                reason: format!("unbounded recursion returned at depth {depth}"),
            }))
        }
        "oom" => exhaust_memory(),
        "huge-string" => outcome(Decision::Deny(Denial {
            status: 403,
            code: "huge-string".to_string(),
            reason: "x".repeat(HUGE_STRING_BYTES),
        })),
        "many-redactions" => {
            let mut redactions = Vec::with_capacity(MANY_REDACTIONS);
            for _ in 0..MANY_REDACTIONS {
                redactions.push(Redaction { target: Target::Header("x".to_string()), action: Action::Remove });
            }
            outcome(Decision::Redact(redactions))
        }
        "bad-status" => outcome(Decision::Deny(Denial {
            status: 200,
            code: "bad-status".to_string(),
            reason: "a denial with a success status".to_string(),
        })),
        "bad-pointer" => outcome(Decision::Redact(vec![Redaction {
            target: Target::JsonPointer("email".to_string()),
            action: Action::Remove,
        }])),
        "bad-detector" => outcome(Decision::Redact(vec![Redaction {
            target: Target::Detected("ssn".to_string()),
            action: Action::Remove,
        }])),
        "mask-0-2" => outcome(Decision::Redact(vec![
            Redaction { target: Target::JsonName("card_number".to_string()), action: Action::Mask(Mask::KeepLast(4)) },
            Redaction { target: Target::Detected("email".to_string()), action: Action::Mask(Mask::KeepEmailDomain) },
        ])),
        "pseudonym-0-2" => outcome(Decision::Redact(vec![
            Redaction { target: Target::JsonName("phone".to_string()), action: Action::Mask(Mask::Pseudonym) },
            Redaction { target: Target::Detected("email".to_string()), action: Action::Mask(Mask::KeepEmailDomain) },
        ])),
        "empty-group" => outcome(Decision::RequireApproval(Approval {
            reason: "an approval nobody can give".to_string(),
            approver_group: String::new(),
            ttl_seconds: 900,
        })),
        // `init` refused anything else; should the host call anyway, fail closed.
        other => outcome(Decision::Deny(Denial {
            status: 500,
            code: "misbehave-settings".to_string(),
            reason: format!("unknown {phase} mode {other:?}"),
        })),
    }
}

struct Misbehave;

impl Guest for Misbehave {
    fn metadata() -> PolicyMetadata {
        let phases = match configured("metadata").as_str() {
            "panic" => panic_now("metadata"),
            "loop" => spin(),
            "no-phases" => Phases::empty(),
            _ => Phases::REQUEST | Phases::RESPONSE,
        };
        PolicyMetadata {
            name: "hostile-misbehave".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            phases,
            needs_request_body: false,
            needs_response_body: false,
        }
    }

    fn init(settings: String) -> Result<(), SettingsError> {
        check(&settings)?;
        match mode(&settings, "init").as_str() {
            "panic" => panic_now("init"),
            "loop" => spin(),
            "reject" => Err(settings_error("init", "rejected on purpose (init: reject)".to_string())),
            _ => Ok(()),
        }
    }

    fn on_request(_request: Request) -> Outcome {
        call("on_request", &configured("on_request"))
    }

    fn on_response(_request: Request, _response: Response) -> Outcome {
        call("on_response", &configured("on_response"))
    }
}

#[cfg(target_arch = "wasm32")]
portcullis_guest::bindings::export!(Misbehave with_types_in portcullis_guest::bindings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_null_and_empty_settings_are_accepted() {
        for json in ["", "  ", "null", "{}"] {
            assert_eq!(check(json), Ok(()), "{json:?}");
        }
    }

    #[test]
    fn every_documented_mode_is_accepted() {
        for (key, modes) in KEYS {
            for mode in modes {
                let json = format!("{{\"{key}\": \"{mode}\"}}");
                assert_eq!(check(&json), Ok(()), "{json}");
            }
        }
    }

    #[test]
    fn an_unknown_mode_names_its_setting() {
        let error = check(r#"{"on_request": "lop"}"#).unwrap_err();
        assert_eq!(error.setting, "on_request");
        assert!(error.message.contains("loop"), "{}", error.message);
    }

    #[test]
    fn an_unknown_key_is_refused() {
        assert_eq!(check(r#"{"on_reqest": "loop"}"#).unwrap_err().setting, "on_reqest");
        assert_eq!(check(r#"{"init": 1}"#).unwrap_err().setting, "init");
        assert_eq!(check("[]").unwrap_err().setting, "");
        assert_eq!(check("{").unwrap_err().setting, "");
    }

    #[test]
    fn modes_default_per_key() {
        assert_eq!(mode("{}", "metadata"), "ok");
        assert_eq!(mode("", "init"), "ok");
        assert_eq!(mode("not json", "on_request"), "allow");
        assert_eq!(mode(r#"{"on_response": "oom"}"#, "on_response"), "oom");
        assert_eq!(mode(r#"{"on_response": "oom"}"#, "on_request"), "allow");
    }

    #[test]
    fn the_answers_that_return_are_what_they_claim() {
        match call("on_request", "bad-status").decision {
            Decision::Deny(denial) => assert_eq!(denial.status, 200),
            other => panic!("{other:?}"),
        }
        match call("on_request", "bad-pointer").decision {
            Decision::Redact(r) => assert_eq!(r[0].target, Target::JsonPointer("email".into())),
            other => panic!("{other:?}"),
        }
        match call("on_request", "empty-group").decision {
            Decision::RequireApproval(a) => assert!(a.approver_group.is_empty()),
            other => panic!("{other:?}"),
        }
        match call("on_request", "huge-string").decision {
            Decision::Deny(denial) => assert_eq!(denial.reason.len(), 8 << 20),
            other => panic!("{other:?}"),
        }
        match call("on_request", "many-redactions").decision {
            Decision::Redact(r) => assert_eq!(r.len(), 1_000_000),
            other => panic!("{other:?}"),
        }
        assert_eq!(call("on_request", "allow").decision, Decision::Allow);
    }
}
