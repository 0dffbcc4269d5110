//! `rate-limit`: at most `limit` requests per `window_seconds` per caller (fixed windows).
//!
//! Callers are told apart by principal (`kind:id`); anonymous callers by their client
//! address (without the port). With `key = "principal+path"` each path counts separately.
//! The counters live in the host (capability `rate-limit`, which this policy needs granted):
//! an instance is fresh for every evaluation, so it cannot count by itself.
//!
//! Over the limit → deny 429 `rate-limited`. Every outcome carries the `remaining` count.
#![cfg_attr(not(test), no_std)]

use portcullis_guest::prelude::*;
use portcullis_guest::rate_limit::Taken;
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Requests allowed per window. Required, at least 1.
    pub limit: u32,
    /// The window's length in seconds. Required, at least 1.
    pub window_seconds: u64,
    /// What a counter is kept for (default `principal`).
    #[serde(default)]
    pub key: KeyBy,
}

/// What a counter is kept for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
pub enum KeyBy {
    /// One counter per caller.
    #[default]
    #[serde(rename = "principal")]
    Principal,
    /// One counter per caller and path.
    #[serde(rename = "principal+path")]
    PrincipalAndPath,
}

/// The `rate-limit` policy.
pub struct RateLimit;

impl Policy for RateLimit {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new("rate-limit", env!("CARGO_PKG_VERSION"))
    }

    fn validate(settings: &Settings) -> Result<(), SettingsError> {
        if settings.limit == 0 {
            return Err(SettingsError::new("limit", "must be at least 1 request per window"));
        }
        if settings.window_seconds == 0 || settings.window_seconds > u64::MAX / 1000 {
            return Err(SettingsError::new("window_seconds", "must be at least 1 second"));
        }
        Ok(())
    }

    fn on_request(settings: &Settings, req: &Request) -> Outcome {
        let taken =
            rate_limit::take(&counter_key(settings, req), settings.limit, settings.window_seconds.saturating_mul(1000));
        decide(settings, &taken)
    }
}

/// The counter a request counts against: `kind:id`, `anonymous:<ip>` for anonymous callers,
/// with ` <path>` appended for `principal+path`.
fn counter_key(settings: &Settings, req: &Request) -> String {
    let principal = &req.principal;
    let mut key = if principal.is_anonymous() {
        let address = req.client_address.as_deref().map_or("unknown", strip_port);
        format!("anonymous:{address}")
    } else {
        format!("{}:{}", principal.kind.as_str(), principal.id)
    };
    if settings.key == KeyBy::PrincipalAndPath {
        key.push(' ');
        key.push_str(&req.path);
    }
    key
}

/// The address without its port: `10.0.0.1` for `10.0.0.1:5000`, `::1` for `[::1]:5000`;
/// a bare IPv6 address stays whole.
fn strip_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match address.split_once(':') {
        Some((ip, port)) if !port.contains(':') => ip,
        _ => address,
    }
}

/// The outcome for one `take`.
fn decide(settings: &Settings, taken: &Taken) -> Outcome {
    let outcome = if taken.allowed {
        allow()
    } else {
        let retry_seconds = taken.reset_after_ms.div_ceil(1000);
        deny(
            429,
            "rate-limited",
            format!(
                "rate limit of {} requests per {} s exceeded; retry in {retry_seconds} s",
                settings.limit, settings.window_seconds
            ),
        )
        .label("reset-after-ms", taken.reset_after_ms.to_string())
    };
    outcome.label("remaining", taken.remaining.to_string())
}

export_policy!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_guest::{check_settings, testing};

    fn settings(json: &str) -> Settings {
        check_settings::<RateLimit>(json).unwrap()
    }

    #[test]
    fn keys_by_principal_address_and_path() {
        let by_principal = settings(r#"{"limit": 5, "window_seconds": 60}"#);
        let by_path = settings(r#"{"limit": 5, "window_seconds": 60, "key": "principal+path"}"#);
        let user = Request::new("GET", "/a").with_principal(Principal::user("alice"));
        assert_eq!(counter_key(&by_principal, &user), "user:alice");
        assert_eq!(counter_key(&by_path, &user), "user:alice /a");
        for (address, key) in [
            (Some("10.0.0.1:5000"), "anonymous:10.0.0.1"),
            (Some("10.0.0.1"), "anonymous:10.0.0.1"),
            (Some("[::1]:443"), "anonymous:::1"),
            (Some("2001:db8::1"), "anonymous:2001:db8::1"),
            (None, "anonymous:unknown"),
        ] {
            let mut req = Request::new("GET", "/");
            req.client_address = address.map(String::from);
            assert_eq!(counter_key(&by_principal, &req), key);
        }
    }

    #[test]
    fn over_the_limit_is_denied_429_with_limit_and_window() {
        let s = settings(r#"{"limit": 100, "window_seconds": 60}"#);
        let out = decide(&s, &Taken { allowed: false, remaining: 0, reset_after_ms: 12_001 });
        let denial = out.denial().unwrap();
        assert_eq!((denial.status, denial.code.as_str()), (429, "rate-limited"));
        assert_eq!(denial.reason, "rate limit of 100 requests per 60 s exceeded; retry in 13 s");
        assert_eq!(out.label_value("remaining"), Some("0"));
        let out = decide(&s, &Taken { allowed: true, remaining: 99, reset_after_ms: 1 });
        assert!(out.is_allow());
        assert_eq!(out.label_value("remaining"), Some("99"));
    }

    #[test]
    fn counts_through_the_capability() {
        testing::set_now_ms(1_000_000);
        let s = settings(r#"{"limit": 2, "window_seconds": 1}"#);
        let alice = Request::new("GET", "/").with_principal(Principal::user("alice"));
        let bob = Request::new("GET", "/").with_principal(Principal::user("bob"));
        assert!(RateLimit::on_request(&s, &alice).is_allow());
        assert!(RateLimit::on_request(&s, &alice).is_allow());
        assert_eq!(RateLimit::on_request(&s, &alice).denial().unwrap().status, 429);
        assert!(RateLimit::on_request(&s, &bob).is_allow());
        testing::set_now_ms(1_001_000);
        assert!(RateLimit::on_request(&s, &alice).is_allow());
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (json, setting) in [
            (r#"{"window_seconds": 60}"#, "limit"),
            (r#"{"limit": 0, "window_seconds": 60}"#, "limit"),
            (r#"{"limit": -1, "window_seconds": 60}"#, "limit"),
            (r#"{"limit": 1, "window_seconds": 0}"#, "window_seconds"),
            (r#"{"limit": 1, "window_seconds": 60, "key": "path"}"#, "key"),
        ] {
            assert_eq!(check_settings::<RateLimit>(json).unwrap_err().setting, setting, "{json}");
        }
    }
}
