//! `minimise`: data minimisation from settings alone. Masks values by member name
//! (`json-name`) and by what the host's detectors recognise (`detected`), per direction,
//! host, path and kind of caller, and more strictly for third-party hosts.
//!
//! The policy never reads a body: it turns the rules that match an exchange into targets and
//! masks, and the host finds and rewrites the values (contract 0.2). So its metadata asks
//! for no bodies, and the host never copies them into the sandbox.
//!
//! Rule semantics (docs/minimisation.md, "The payments example"):
//! - the rules are `defaults` (when `defaults = true`) followed by `rules`, in order;
//! - **every** rule that matches applies (not just the first): a rule matches when its
//!   `direction` covers the phase and each selector it sets matches (`hosts`, `paths`,
//!   `principals`, `third_party`); a selector left out matches everything;
//! - a matching rule adds one redaction per `fields` name, then one per `detect` name, all
//!   with its `mask`; where two redactions reach the same value the host's rules decide:
//!   removal wins, else the one listed last (so a later, stricter rule overrides);
//! - the outcome is `redact` with those redactions and the label `rules` (the matching rules'
//!   names, comma-separated), or `allow` when no rule matches.
#![cfg_attr(not(test), no_std)]

use portcullis_guest::glob::{check_glob, glob_matches, host_matches};
use portcullis_guest::prelude::*;
use serde::Deserialize;

/// The detectors the host has (docs/minimisation.md, "Detectors").
pub const DETECTORS: [&str; 6] = ["card-number", "iban", "email", "phone", "jwt", "secret"];

/// The principal kinds a rule may select.
const KINDS: [&str; 4] = ["anonymous", "user", "service", "agent"];

/// The policy's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Put the default ruleset ([`default_rules`]) before `rules`.
    #[serde(default)]
    pub defaults: bool,
    /// The hosts that are not third parties (case-insensitive, without port; `*.example.com`
    /// covers every subdomain of `example.com`). Needed when a rule sets `third_party`.
    #[serde(default)]
    pub first_party_hosts: Vec<String>,
    /// The rules, applied in order after the defaults.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule: what to mask, how, and where.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The rule's name in the audit label `rules`; `rules[N]` when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Member names masked at any depth of a JSON body, e.g. `card_number`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Detectors whose findings are masked in bodies, header values and (requests) query
    /// values: `card-number`, `iban`, `email`, `phone`, `jwt`, `secret`.
    #[serde(default)]
    pub detect: Vec<String>,
    /// `keep-last:N`, `email-domain`, `fixed:N`, `pseudonym`, `remove` or `replace:TEXT`.
    pub mask: String,
    /// The phase the rule applies in.
    #[serde(default)]
    pub direction: Direction,
    /// Only requests to these hosts (exact or `*.suffix`); every host when empty.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Only these path globs (`*` one segment, `**` any number); every path when empty.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Only callers of these kinds (`anonymous`, `user`, `service`, `agent`); every caller
    /// when empty.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Only when the request's host is not one of `first_party_hosts`.
    #[serde(default)]
    pub third_party: bool,
}

/// Which phase a rule applies in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Requests, before they reach the upstream.
    Request,
    /// Responses, before they reach the caller (the default).
    #[default]
    Response,
    /// Both.
    Both,
}

/// What a rule does to the values it targets, parsed from its `mask`.
#[derive(Debug, Clone, PartialEq)]
pub enum Treatment {
    /// `remove`.
    Remove,
    /// `replace:TEXT`.
    Replace(String),
    /// `keep-last:N`, `email-domain`, `fixed:N`, `pseudonym`.
    Mask(Mask),
}

impl Treatment {
    fn action(&self) -> Action {
        match self {
            Treatment::Remove => Action::Remove,
            Treatment::Replace(text) => Action::Replace(text.clone()),
            Treatment::Mask(mask) => Action::Mask(*mask),
        }
    }
}

/// The default ruleset, applied before `rules` when `defaults = true`: cards and IBANs keep
/// their last 4 in every response, secrets and JWTs are removed from every response, agents
/// see e-mail domains only and no phone numbers, and everything bound for or coming from a
/// third-party host is masked to a fixed length. No pseudonyms: those need a key the
/// deployment may not have configured.
pub fn default_rules() -> Vec<Rule> {
    let rule = |name: &str, fields: &[&str], detect: &[&str], mask: &str| Rule {
        name: Some(name.into()),
        fields: fields.iter().map(|s| (*s).into()).collect(),
        detect: detect.iter().map(|s| (*s).into()).collect(),
        mask: mask.into(),
        ..Rule::default()
    };
    vec![
        rule("default-cards", &["card_number"], &["card-number"], "keep-last:4"),
        rule("default-iban", &["iban"], &["iban"], "keep-last:4"),
        rule("default-secrets", &[], &["secret", "jwt"], "remove"),
        Rule { principals: vec!["agent".into()], ..rule("default-agent-email", &[], &["email"], "email-domain") },
        Rule { principals: vec!["agent".into()], ..rule("default-agent-phone", &[], &["phone"], "fixed:8") },
        Rule {
            direction: Direction::Both,
            third_party: true,
            ..rule(
                "default-third-party",
                &["card_number", "iban"],
                &["card-number", "iban", "email", "phone"],
                "fixed:8",
            )
        },
    ]
}

/// The `minimise` policy.
pub struct Minimise;

impl Policy for Minimise {
    type Settings = Settings;

    fn metadata() -> Metadata {
        Metadata::new("minimise", env!("CARGO_PKG_VERSION")).both_phases()
    }

    fn validate(settings: &Settings) -> Result<(), SettingsError> {
        if settings.rules.is_empty() && !settings.defaults {
            return Err(SettingsError::new("rules", "name at least one rule, or set defaults = true"));
        }
        for (i, host) in settings.first_party_hosts.iter().enumerate() {
            check_host(host).map_err(|m| SettingsError::new(format!("first_party_hosts[{i}]"), m))?;
        }
        for (i, rule) in settings.rules.iter().enumerate() {
            check_rule(rule).map_err(|(key, message)| SettingsError::new(format!("rules[{i}]{key}"), message))?;
        }
        let third_party = settings.defaults || settings.rules.iter().any(|r| r.third_party);
        if third_party && settings.first_party_hosts.is_empty() {
            return Err(SettingsError::new(
                "first_party_hosts",
                "rules with third_party = true (the defaults have one) need the first-party hosts: name at least one",
            ));
        }
        Ok(())
    }

    fn on_request(settings: &Settings, req: &Request) -> Outcome {
        decide(settings, req, Direction::Request)
    }

    fn on_response(settings: &Settings, req: &Request, _resp: &Response) -> Outcome {
        decide(settings, req, Direction::Response)
    }
}

/// The redactions of every rule that matches `req` in `phase`, in order.
fn decide(settings: &Settings, req: &Request, phase: Direction) -> Outcome {
    let host = req.host();
    let first_party = settings.first_party_hosts.iter().any(|pattern| host_matches(pattern, &host));
    let defaults = if settings.defaults { default_rules() } else { Vec::new() };
    let user = settings.rules.iter().enumerate().map(|(i, rule)| (format!("rules[{i}]"), rule));
    let mut redaction = redact();
    let mut names: Vec<String> = Vec::new();
    for (fallback, rule) in defaults.iter().map(|rule| (String::new(), rule)).chain(user) {
        if !rule_matches(rule, req, &host, first_party, phase) {
            continue;
        }
        // Validated in `init`; should the mask not parse here, remove rather than pass on.
        let action = parse_mask(&rule.mask).unwrap_or(Treatment::Remove).action();
        for name in &rule.fields {
            redaction = redaction.redaction(Redaction { target: Target::json_name(name), action: action.clone() });
        }
        for detector in &rule.detect {
            redaction = redaction.redaction(Redaction { target: Target::detected(detector), action: action.clone() });
        }
        names.push(rule.name.clone().unwrap_or(fallback));
    }
    if names.is_empty() {
        return allow();
    }
    redaction.label("rules", names.join(",")).into()
}

/// Whether `rule` applies to `req` in `phase`.
fn rule_matches(rule: &Rule, req: &Request, host: &str, first_party: bool, phase: Direction) -> bool {
    (rule.direction == Direction::Both || rule.direction == phase)
        && (rule.principals.is_empty() || rule.principals.iter().any(|k| k == req.principal.kind.as_str()))
        && (rule.hosts.is_empty() || rule.hosts.iter().any(|pattern| host_matches(pattern, host)))
        && (rule.paths.is_empty() || rule.paths.iter().any(|glob| glob_matches(glob, &req.path)))
        && (!rule.third_party || !first_party)
}

/// Why `rule` is not usable: the key inside the rule (`.mask`, `.hosts[1]`, or empty for
/// the rule as a whole) and the message.
fn check_rule(rule: &Rule) -> Result<(), (String, String)> {
    if let Some(name) = &rule.name
        && (name.trim().is_empty() || name.contains(','))
    {
        return Err((".name".into(), "must not be empty or contain a comma".into()));
    }
    if rule.fields.is_empty() && rule.detect.is_empty() {
        return Err((String::new(), "name the fields or the detectors (detect) the rule masks".into()));
    }
    if let Some(i) = rule.fields.iter().position(|f| f.is_empty()) {
        return Err((format!(".fields[{i}]"), "must not be empty".into()));
    }
    if let Some(i) = rule.detect.iter().position(|d| !DETECTORS.contains(&d.as_str())) {
        let message = format!("`{}` is not a detector: use {}", rule.detect[i], one_of(&DETECTORS));
        return Err((format!(".detect[{i}]"), message));
    }
    parse_mask(&rule.mask).map_err(|m| (".mask".into(), m))?;
    for (i, host) in rule.hosts.iter().enumerate() {
        check_host(host).map_err(|m| (format!(".hosts[{i}]"), m))?;
    }
    for (i, glob) in rule.paths.iter().enumerate() {
        check_glob(glob).map_err(|m| (format!(".paths[{i}]"), m))?;
    }
    if let Some(i) = rule.principals.iter().position(|k| !KINDS.contains(&k.as_str())) {
        let message = format!("`{}` is not a kind of caller: use {}", rule.principals[i], one_of(&KINDS));
        return Err((format!(".principals[{i}]"), message));
    }
    Ok(())
}

/// `a, b or c`.
fn one_of(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => (*last).into(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Parses a rule's `mask`.
pub fn parse_mask(text: &str) -> Result<Treatment, String> {
    match text {
        "remove" => return Ok(Treatment::Remove),
        "email-domain" => return Ok(Treatment::Mask(Mask::KeepEmailDomain)),
        "pseudonym" => return Ok(Treatment::Mask(Mask::Pseudonym)),
        _ => {}
    }
    if let Some(text) = text.strip_prefix("replace:") {
        return Ok(Treatment::Replace(text.into()));
    }
    if let Some(n) = text.strip_prefix("keep-last:") {
        return number(n, 0, 1000)
            .map(|n| Treatment::Mask(Mask::KeepLast(n)))
            .ok_or_else(|| format!("`{text}`: the number of characters kept must be a whole number from 0 to 1000"));
    }
    if let Some(n) = text.strip_prefix("fixed:") {
        return number(n, 1, 256)
            .map(|n| Treatment::Mask(Mask::FixedLength(n)))
            .ok_or_else(|| format!("`{text}`: the length must be a whole number from 1 to 256"));
    }
    Err(format!("`{text}` is not a mask: use keep-last:N, email-domain, fixed:N, pseudonym, remove or replace:TEXT"))
}

/// `digits` as a number in `min..=max`: ASCII digits only, at most 4 of them.
fn number(digits: &str, min: u32, max: u32) -> Option<u32> {
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.bytes().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    (min..=max).contains(&n).then_some(n)
}

/// Why `host` is not a host pattern (`api.example.com`, `*.example.com` or `*`), if it is not.
fn check_host(host: &str) -> Result<(), String> {
    if host == "*" {
        return Ok(());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty() || name.contains(['/', ':', '*', ' ']) {
        return Err(format!("`{host}` must be a host name such as api.example.com or *.example.com"));
    }
    Ok(())
}

export_policy!(Minimise);

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_guest::check_settings;

    fn settings(json: &str) -> Settings {
        check_settings::<Minimise>(json).unwrap()
    }

    /// The redactions as `json-name:X`, `detected:X` (or header/query) with the action.
    fn shown(out: &Outcome) -> Vec<String> {
        out.redactions()
            .iter()
            .map(|r| {
                let target = match &r.target {
                    Target::JsonName(n) => format!("json-name:{n}"),
                    Target::Detected(d) => format!("detected:{d}"),
                    other => format!("{other:?}"),
                };
                let action = match &r.action {
                    Action::Remove => "remove".into(),
                    Action::Replace(t) => format!("replace:{t}"),
                    Action::Mask(Mask::KeepLast(n)) => format!("keep-last:{n}"),
                    Action::Mask(Mask::KeepEmailDomain) => "email-domain".into(),
                    Action::Mask(Mask::FixedLength(n)) => format!("fixed:{n}"),
                    Action::Mask(Mask::Pseudonym) => "pseudonym".into(),
                };
                format!("{target} {action}")
            })
            .collect()
    }

    fn get(authority: &str, path: &str) -> Request {
        Request::new("GET", path).with_authority(authority)
    }

    fn response(s: &Settings, req: &Request) -> Outcome {
        Minimise::on_response(s, req, &Response::new(200))
    }

    #[test]
    fn metadata_takes_both_phases_without_bodies() {
        let m = Minimise::metadata().build();
        assert_eq!(m.phases, Phases::REQUEST | Phases::RESPONSE);
        assert!(!m.needs_request_body && !m.needs_response_body);
    }

    #[test]
    fn the_payments_rule_masks_names_and_detections_in_responses_only() {
        let s = settings(
            r#"{"rules": [{"fields": ["card_number", "iban"], "detect": ["card-number"], "mask": "keep-last:4"}]}"#,
        );
        let out = response(&s, &get("api.test", "/payments"));
        assert_eq!(
            shown(&out),
            ["json-name:card_number keep-last:4", "json-name:iban keep-last:4", "detected:card-number keep-last:4"]
        );
        assert_eq!(out.label_value("rules"), Some("rules[0]"));
        assert!(Minimise::on_request(&s, &get("api.test", "/payments")).is_allow());
    }

    #[test]
    fn every_matching_rule_applies_in_order() {
        let s = settings(
            r#"{"first_party_hosts": ["api.test"], "rules": [
                {"name": "cards", "fields": ["card_number"], "mask": "keep-last:4", "direction": "both"},
                {"name": "agents", "detect": ["email"], "mask": "pseudonym", "principals": ["agent"]},
                {"name": "partners", "fields": ["card_number"], "mask": "fixed:8", "third_party": true},
                {"name": "notes", "fields": ["note"], "mask": "replace:[note]", "paths": ["/payments/**"]},
                {"name": "eu", "detect": ["iban"], "mask": "remove", "hosts": ["*.eu.test"], "direction": "request"}
            ]}"#,
        );
        let agent = get("API.test:8443", "/payments/7").with_principal(Principal::agent("bot"));
        let out = response(&s, &agent);
        assert_eq!(
            shown(&out),
            ["json-name:card_number keep-last:4", "detected:email pseudonym", "json-name:note replace:[note]"]
        );
        assert_eq!(out.label_value("rules"), Some("cards,agents,notes"));

        let partner = get("pay.eu.test", "/refunds").with_principal(Principal::user("alice"));
        let out = response(&s, &partner);
        assert_eq!(shown(&out), ["json-name:card_number keep-last:4", "json-name:card_number fixed:8"]);
        assert_eq!(out.label_value("rules"), Some("cards,partners"));
        let out = Minimise::on_request(&s, &partner);
        assert_eq!(shown(&out), ["json-name:card_number keep-last:4", "detected:iban remove"]);
        assert_eq!(out.label_value("rules"), Some("cards,eu"));
    }

    #[test]
    fn no_matching_rule_allows_without_labels() {
        let s = settings(r#"{"rules": [{"detect": ["jwt"], "mask": "remove", "paths": ["/auth/*"]}]}"#);
        let out = response(&s, &get("api.test", "/auth/a/b"));
        assert!(out.is_allow() && out.labels.is_empty());
        assert_eq!(shown(&response(&s, &get("api.test", "/auth/a"))), ["detected:jwt remove"]);
    }

    #[test]
    fn defaults_come_first_and_are_stricter_for_agents_and_third_parties() {
        let s = settings(
            r#"{"defaults": true, "first_party_hosts": ["*.bank.test"],
                "rules": [{"fields": ["note"], "mask": "remove"}]}"#,
        );
        let user = get("api.bank.test", "/x").with_principal(Principal::user("alice"));
        assert_eq!(
            response(&s, &user).label_value("rules"),
            Some("default-cards,default-iban,default-secrets,rules[0]")
        );
        assert!(Minimise::on_request(&s, &user).is_allow());
        let agent = get("api.bank.test", "/x").with_principal(Principal::agent("bot"));
        let out = response(&s, &agent);
        assert_eq!(
            out.label_value("rules"),
            Some("default-cards,default-iban,default-secrets,default-agent-email,default-agent-phone,rules[0]")
        );
        assert!(shown(&out).contains(&"detected:email email-domain".to_owned()));
        assert!(shown(&out).contains(&"detected:phone fixed:8".to_owned()));
        let third = get("crm.partner.test", "/x");
        let out = Minimise::on_request(&s, &third);
        assert_eq!(out.label_value("rules"), Some("default-third-party"));
        assert_eq!(
            shown(&out),
            [
                "json-name:card_number fixed:8",
                "json-name:iban fixed:8",
                "detected:card-number fixed:8",
                "detected:iban fixed:8",
                "detected:email fixed:8",
                "detected:phone fixed:8",
            ]
        );
    }

    #[test]
    fn masks_parse() {
        for (text, treatment) in [
            ("keep-last:4", Treatment::Mask(Mask::KeepLast(4))),
            ("keep-last:0", Treatment::Mask(Mask::KeepLast(0))),
            ("email-domain", Treatment::Mask(Mask::KeepEmailDomain)),
            ("fixed:256", Treatment::Mask(Mask::FixedLength(256))),
            ("pseudonym", Treatment::Mask(Mask::Pseudonym)),
            ("remove", Treatment::Remove),
            ("replace:", Treatment::Replace(String::new())),
            ("replace:a:b", Treatment::Replace("a:b".into())),
        ] {
            assert_eq!(parse_mask(text), Ok(treatment), "{text}");
        }
        for text in ["keep-last:", "keep-last:-1", "keep-last:1001", "keep-last:+4", "fixed:0", "fixed:257", "hash", ""]
        {
            assert!(parse_mask(text).is_err(), "{text}");
        }
    }

    #[test]
    fn bad_settings_name_the_setting() {
        for (json, setting) in [
            ("{}", "rules"),
            (r#"{"rules": [{"mask": "remove"}]}"#, "rules[0]"),
            (r#"{"rules": [{"fields": ["a"]}]}"#, "rules[0].mask"),
            (r#"{"rules": [{"fields": ["a"], "mask": "keep-last:x"}]}"#, "rules[0].mask"),
            (
                r#"{"rules": [{"fields": ["a"], "mask": "remove"}, {"fields": [""], "mask": "remove"}]}"#,
                "rules[1].fields[0]",
            ),
            (r#"{"rules": [{"detect": ["email", "ssn"], "mask": "remove"}]}"#, "rules[0].detect[1]"),
            (r#"{"rules": [{"detect": ["email"], "mask": "remove", "direction": "up"}]}"#, "rules[0].direction"),
            (r#"{"rules": [{"detect": ["email"], "mask": "remove", "hosts": ["https://x"]}]}"#, "rules[0].hosts[0]"),
            (r#"{"rules": [{"detect": ["email"], "mask": "remove", "paths": ["x/**"]}]}"#, "rules[0].paths[0]"),
            (
                r#"{"rules": [{"detect": ["email"], "mask": "remove", "principals": ["bot"]}]}"#,
                "rules[0].principals[0]",
            ),
            (r#"{"rules": [{"detect": ["email"], "mask": "remove", "name": "a,b"}]}"#, "rules[0].name"),
            (r#"{"rules": [{"detect": ["email"], "mask": "remove", "third_party": true}]}"#, "first_party_hosts"),
            (r#"{"defaults": true}"#, "first_party_hosts"),
            (r#"{"defaults": true, "first_party_hosts": ["a b"]}"#, "first_party_hosts[0]"),
            (r#"{"rules": [{"detect": ["email"], "mask": "remove", "route": "x"}]}"#, "rules[0].route"),
            (r#"{"default": true}"#, "default"),
        ] {
            assert_eq!(check_settings::<Minimise>(json).unwrap_err().setting, setting, "{json}");
        }
    }

    #[test]
    fn globs_and_hosts() {
        assert!(glob_matches("/payments/**", "/payments"));
        assert!(glob_matches("/payments/*/card", "/payments/7/card"));
        assert!(!glob_matches("/payments/*", "/payments/7/card"));
        assert!(host_matches("*.bank.test", "eu.bank.test"));
        assert!(!host_matches("*.bank.test", "bank.test"));
        assert!(!host_matches("*.bank.test", "evilbank.test"));
        assert!(host_matches("API.test", "api.test"));
    }
}
