//! Thin wrappers for the host capabilities: [`log`], [`clock`], [`rate_limit`], [`data`].
//!
//! Each is a `portcullis:policy/*` import that the host grants per policy in its
//! configuration (none by default), and a component imports only the interfaces its code
//! actually calls: a policy that never logs has no `log` import, so it needs no `log` grant.
//!
//! On `wasm32` the wrappers call the host. Natively (unit tests) there is no host: they are
//! served by the in-process stand-in in `testing`, so code that uses them stays
//! testable with `cargo test`.

/// Capability `log`: messages in the host's log, tagged with the policy's name.
pub mod log {
    pub use crate::bindings::portcullis::policy::log::Level;

    /// Writes one message at `level`. The host may drop messages above a rate or size limit.
    pub fn write(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::portcullis::policy::log::write(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::log(level, message);
    }

    /// Writes a `trace` message.
    pub fn trace(message: &str) {
        write(Level::Trace, message)
    }

    /// Writes a `debug` message.
    pub fn debug(message: &str) {
        write(Level::Debug, message)
    }

    /// Writes an `info` message.
    pub fn info(message: &str) {
        write(Level::Info, message)
    }

    /// Writes a `warn` message.
    pub fn warn(message: &str) {
        write(Level::Warn, message)
    }

    /// Writes an `error` message.
    pub fn error(message: &str) {
        write(Level::Error, message)
    }
}

/// Capability `clock`: the time.
pub mod clock {
    /// Milliseconds since the Unix epoch (during replay, possibly the recorded time).
    /// For the time the request arrived, prefer `Request::received_at_ms`, which needs no
    /// capability.
    pub fn now_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::portcullis::policy::clock::now_ms();
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::now_ms();
    }
}

/// Capability `rate-limit`: fixed-window counters kept by the host across evaluations.
pub mod rate_limit {
    pub use crate::bindings::portcullis::policy::rate_limit::Taken;

    /// Takes one unit from the counter `key`, which allows `limit` units per `window_ms`
    /// milliseconds. Keys are private to the policy.
    pub fn take(key: &str, limit: u32, window_ms: u64) -> Taken {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::portcullis::policy::rate_limit::take(key, limit, window_ms);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::take(key, limit, window_ms);
    }
}

/// Capability `data`: read-only named data sets (allow-lists, field catalogues).
pub mod data {
    use alloc::string::String;

    /// Whether the set `set` contains `key` (false when the set does not exist).
    pub fn contains(set: &str, key: &str) -> bool {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::portcullis::policy::data::contains(set, key);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::data_get(set, key).is_some();
    }

    /// The value stored under `key` in the set `set`, if any.
    pub fn get(set: &str, key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return crate::bindings::portcullis::policy::data::get(set, key);
        #[cfg(not(target_arch = "wasm32"))]
        return crate::testing::data_get(set, key);
    }
}
