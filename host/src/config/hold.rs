//! How long a door keeps a caller's request open while an approver decides (`hold`), and
//! how many requests it keeps open at once (`[approvals] max_held`).
//!
//! A hold is set on a route (`[[routes]] hold = "30s"`) or on a policy (`[policies.NAME]
//! hold = "30s"`, for the requests that policy asks an approval for). The route's value wins
//! when both are set, so a route can also turn a policy's hold off (`hold = "0s"`). Values
//! are checked when the file is read: a duration (`500ms`, `30s`, `5m`), at most
//! [`MAX_HOLD`]; a hold without an `[approvals]` store is refused, since nothing could be
//! approved while the caller waits.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Config;

/// The longest a request may be held: a caller (and every proxy between it and the door)
/// keeps a connection open that long, so longer waits belong to the retry with the id.
pub const MAX_HOLD: Duration = Duration::from_secs(600);

/// Requests held at once by one server unless `[approvals] max_held` says otherwise.
pub const DEFAULT_MAX_HELD: usize = 1000;

/// The largest `[approvals] max_held` accepted.
pub const MAX_MAX_HELD: usize = 100_000;

/// The holds a config asks for, by route name and by policy name (only non-zero ones, and a
/// route's explicit `"0s"` kept as zero so it overrides its policies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    routes: BTreeMap<String, Duration>,
    policies: BTreeMap<String, Duration>,
}

impl Holds {
    /// How long to hold a request on `route` that `policy` (the policy the approval-required
    /// answer names: the first on the route that asked) holds for approval: the route's
    /// `hold` when it sets one, else the policy's; `None` for no hold.
    pub fn hold(&self, route: &str, policy: Option<&str>) -> Option<Duration> {
        let hold = match self.routes.get(route) {
            Some(hold) => *hold,
            None => *self.policies.get(policy?)?,
        };
        (!hold.is_zero()).then_some(hold)
    }

    /// Whether a request on `route`, bound to `policies`, may be held at all (so a door knows
    /// whether to keep what it needs to forward it later).
    pub fn may_hold<'a>(&self, route: &str, mut policies: impl Iterator<Item = &'a str>) -> bool {
        match self.routes.get(route) {
            Some(hold) => !hold.is_zero(),
            None => policies.any(|p| self.policies.get(p).is_some_and(|h| !h.is_zero())),
        }
    }

    /// Whether no route and no policy holds.
    pub fn is_empty(&self) -> bool {
        self.routes.values().chain(self.policies.values()).all(Duration::is_zero)
    }

    /// Each route's and policy's hold, as `portcullis check` lists them (`routes[0] 30s`).
    pub fn describe(&self) -> Vec<String> {
        let route = self.routes.iter().map(|(name, hold)| format!("route {name}: {}", show(*hold)));
        let policy = self.policies.iter().map(|(name, hold)| format!("policy {name}: {}", show(*hold)));
        route.chain(policy).collect()
    }
}

/// A hold as written back (`30s`, `1500ms`, `0s`).
pub fn show(hold: Duration) -> String {
    if hold.subsec_millis() == 0 { format!("{}s", hold.as_secs()) } else { format!("{}ms", hold.as_millis()) }
}

/// Reads a duration: a whole number followed by `ms`, `s` or `m` (`500ms`, `30s`, `5m`).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

/// One `hold` value read and checked; `key` names it in the error (quoted already).
fn read(key: &str, text: &str) -> Result<Duration, String> {
    let hold = parse_duration(text)
        .ok_or_else(|| format!("{key}: \"{text}\" is not a duration (e.g. \"30s\", \"500ms\", \"5m\")"))?;
    if hold > MAX_HOLD {
        return Err(format!(
            "{key} is \"{text}\", longer than a request may be held ({}): past that, the caller should get the \
             approval id at once and retry with it",
            show(MAX_HOLD)
        ));
    }
    Ok(hold)
}

impl Config {
    /// The holds this config asks for (checked when the file was read).
    pub fn holds(&self) -> Holds {
        let mut holds = Holds::default();
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(hold) = route.hold.as_deref().and_then(parse_duration) {
                holds.routes.insert(route.name.clone().unwrap_or_else(|| format!("routes[{i}]")), hold);
            }
        }
        for (name, policy) in &self.policies {
            if let Some(hold) = policy.hold.as_deref().and_then(parse_duration) {
                holds.policies.insert(name.clone(), hold);
            }
        }
        holds
    }

    /// How many requests one server holds at once (`[approvals] max_held`).
    pub fn max_held(&self) -> usize {
        self.approvals.as_ref().and_then(|a| a.max_held).unwrap_or(DEFAULT_MAX_HELD)
    }

    /// Refuses a `hold` that is not a duration, one over [`MAX_HOLD`], a hold without an
    /// approval store, and a `max_held` out of range, naming the key.
    pub(super) fn check_holds(&self) -> Result<(), String> {
        let mut any = false;
        for (i, route) in self.routes.iter().enumerate() {
            if let Some(text) = &route.hold {
                let key = match &route.name {
                    Some(name) => format!("`routes[{i}].hold` (route `{name}`)"),
                    None => format!("`routes[{i}].hold`"),
                };
                any |= !read(&key, text)?.is_zero();
            }
        }
        for (name, policy) in &self.policies {
            if let Some(text) = &policy.hold {
                any |= !read(&format!("`policies.{name}.hold`"), text)?.is_zero();
            }
        }
        if let Some(max) = self.approvals.as_ref().and_then(|a| a.max_held)
            && !(1..=MAX_MAX_HELD).contains(&max)
        {
            return Err(format!("`approvals.max_held` is {max}, but must be between 1 and {MAX_MAX_HELD}"));
        }
        if any && self.approvals.is_none() {
            return Err("a `hold` is set, but there is no [approvals] store: without one a request that needs an \
                        approval is refused, so nothing can be held; add [approvals] or remove the hold"
                .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = "[approvals]\nstore = \"a.sqlite\"\n[policies.guard]\nmodule = \"g.wasm\"\n";

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("p.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_are_whole_numbers_with_a_unit() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 5m "), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in ["30", "30x", "s", "", "-1s", "1.5s", "30 sec"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(show(Duration::from_secs(30)), "30s");
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn the_route_wins_over_its_policy_and_can_turn_it_off() {
        let text = format!(
            "{BASE}hold = \"20s\"\n[[routes]]\nname = \"pay\"\npolicies = [\"guard\"]\nhold = \"5s\"\n\
             [[routes]]\nname = \"quiet\"\npolicies = [\"guard\"]\nhold = \"0s\"\n[[routes]]\npolicies = [\"guard\"]\n"
        );
        let holds = parse(&text).unwrap().holds();
        assert_eq!(holds.hold("pay", Some("guard")), Some(Duration::from_secs(5)));
        assert_eq!(holds.hold("quiet", Some("guard")), None);
        assert_eq!(holds.hold("routes[2]", Some("guard")), Some(Duration::from_secs(20)));
        assert_eq!(holds.hold("routes[2]", Some("other")), None);
        assert_eq!(holds.hold("routes[2]", None), None);
        assert!(holds.may_hold("routes[2]", ["guard"].into_iter()));
        assert!(!holds.may_hold("quiet", ["guard"].into_iter()));
        assert!(!holds.is_empty());
    }

    #[test]
    fn bad_holds_are_refused_naming_the_key_and_the_file() {
        let route = "[[routes]]\nname = \"pay\"\npolicies = [\"guard\"]\n";
        for (text, named) in [
            (format!("{BASE}{route}hold = \"30x\"\n"), "`routes[0].hold` (route `pay`): \"30x\" is not a duration"),
            (format!("{BASE}hold = \"11m\"\n{route}"), "`policies.guard.hold` is \"11m\", longer than"),
            (format!("{}{route}", BASE.replace("sqlite\"\n", "sqlite\"\nmax_held = 0\n")), "`approvals.max_held` is 0"),
            (
                format!("[policies.guard]\nmodule = \"g.wasm\"\nhold = \"30s\"\n{route}"),
                "there is no [approvals] store",
            ),
        ] {
            let err = parse(&text).unwrap_err();
            assert!(err.contains("p.toml") && err.contains(named), "{text}\n{err}");
        }
        let ok = format!("{BASE}hold = \"10m\"\n{route}");
        assert_eq!(parse(&ok).unwrap().max_held(), DEFAULT_MAX_HELD);
    }
}
