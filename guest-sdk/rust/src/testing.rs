//! A stand-in for the host's capabilities in native builds, so that policies which log,
//! read the clock, count or look up data can be unit-tested with plain `cargo test`.
//!
//! State is per thread, and the test harness runs every test on its own thread, so tests do
//! not see each other's counters, data or clock. Only in native builds: in a component the
//! capabilities are the host's.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use crate::log::Level;
use crate::rate_limit::Taken;

#[derive(Default)]
struct FakeHost {
    now_ms: Option<u64>,
    /// Per key: the start of its current window and the units taken in it.
    counters: BTreeMap<String, (u64, u32)>,
    data: BTreeMap<String, BTreeMap<String, String>>,
    logs: Vec<(Level, String)>,
}

std::thread_local! {
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

fn with<R>(f: impl FnOnce(&mut FakeHost) -> R) -> R {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

/// Fixes what `clock::now_ms()` returns on this thread (the system time until called).
pub fn set_now_ms(now_ms: u64) {
    with(|host| host.now_ms = Some(now_ms));
}

/// Stores `value` under `key` in the data set `set` on this thread.
pub fn insert_data(set: &str, key: &str, value: &str) {
    with(|host| {
        host.data.entry(set.into()).or_default().insert(key.into(), value.into());
    });
}

/// The messages logged on this thread so far, oldest first.
pub fn logs() -> Vec<(Level, String)> {
    with(|host| host.logs.clone())
}

/// Forgets this thread's clock, counters, data and logs.
pub fn reset() {
    with(|host| *host = FakeHost::default());
}

pub(crate) fn log(level: Level, message: &str) {
    with(|host| host.logs.push((level, message.into())));
}

pub(crate) fn now_ms() -> u64 {
    with(|host| host.now_ms).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64)
    })
}

/// A fixed window aligned to multiples of `window_ms`, like the host's.
pub(crate) fn take(key: &str, limit: u32, window_ms: u64) -> Taken {
    let window_ms = window_ms.max(1);
    let now = now_ms();
    let start = now - now % window_ms;
    with(|host| {
        let counter = host.counters.entry(key.into()).or_insert((start, 0));
        if counter.0 != start {
            *counter = (start, 0);
        }
        let allowed = counter.1 < limit;
        if allowed {
            counter.1 += 1;
        }
        Taken { allowed, remaining: limit.saturating_sub(counter.1), reset_after_ms: start + window_ms - now }
    })
}

pub(crate) fn data_get(set: &str, key: &str) -> Option<String> {
    with(|host| host.data.get(set)?.get(key).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clock, data, log, rate_limit};

    #[test]
    fn rate_limit_counts_within_a_window_and_resets_after_it() {
        set_now_ms(10_500);
        let takes: Vec<_> = (0..3).map(|_| rate_limit::take("k", 2, 1_000)).collect();
        assert_eq!(takes.iter().map(|t| t.allowed).collect::<Vec<_>>(), [true, true, false]);
        assert_eq!(takes[0].remaining, 1);
        assert_eq!(takes[2].reset_after_ms, 500);
        assert!(rate_limit::take("other", 2, 1_000).allowed);
        set_now_ms(11_000);
        assert!(rate_limit::take("k", 2, 1_000).allowed);
    }

    #[test]
    fn data_logs_and_clock() {
        insert_data("vip", "alice", "gold");
        assert!(data::contains("vip", "alice"));
        assert_eq!(data::get("vip", "alice").as_deref(), Some("gold"));
        assert!(!data::contains("vip", "bob") && !data::contains("none", "alice"));
        log::info("hello");
        assert_eq!(logs(), [(Level::Info, String::from("hello"))]);
        assert!(clock::now_ms() > 1_600_000_000_000);
        reset();
        assert!(logs().is_empty());
    }
}
