//! `[[approvals.notify]]`: webhooks told about approvals (pending, decided, expired, …),
//! and `[approvals] inbox_url`, the link they carry. The server sends them
//! (`src/serve/notify.rs`); here they are parsed and checked when the file is read.

use serde::Deserialize;

use super::UpstreamTls;
use crate::approval::{ApprovalEvent, EventKind};

/// Attempts per event and target when `attempts` is not set.
pub const DEFAULT_NOTIFY_ATTEMPTS: u32 = 3;
/// How long one attempt may take, in ms, when `timeout_ms` is not set.
pub const DEFAULT_NOTIFY_TIMEOUT_MS: u64 = 5_000;
/// The wait before the first retry, in ms, when `backoff_ms` is not set; it doubles after
/// each failed retry.
pub const DEFAULT_NOTIFY_BACKOFF_MS: u64 = 1_000;
/// Events waiting per target when `queue` is not set; past it the oldest is dropped.
pub const DEFAULT_NOTIFY_QUEUE: usize = 1_000;
/// What a target is told when `events` is not set: new approvals, decisions, expiries.
pub const DEFAULT_NOTIFY_EVENTS: [EventKind; 4] =
    [EventKind::Pending, EventKind::Approved, EventKind::Rejected, EventKind::Expired];
/// The shortest signing secret accepted, in bytes.
pub const MIN_NOTIFY_SECRET_LEN: usize = 16;

/// How a notification's body is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NotifyFormat {
    /// A versioned JSON document, signed (`Portcullis-Signature`).
    #[default]
    Json,
    /// `{"text": "…"}` with the inbox link, for Slack incoming webhooks and chat tools
    /// that take the same.
    Slack,
}

impl NotifyFormat {
    /// `json` or `slack`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Json => "json",
            NotifyFormat::Slack => "slack",
        }
    }
}

/// One `[[approvals.notify]]` table: where to POST, what, and how hard to try.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifyTarget {
    /// The target's name in logs and metrics (default: the URL's host). Never the URL
    /// itself: a Slack webhook URL is a secret.
    #[serde(default)]
    pub name: Option<String>,
    /// Where to POST, `http://` or `https://`.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL, for URLs that are secrets themselves
    /// (Slack's incoming webhooks).
    #[serde(default)]
    pub url_env: Option<String>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Which events (default: pending, approved, rejected, expired).
    #[serde(default)]
    pub events: Option<Vec<EventKind>>,
    /// Only approvals for these approver groups (default: every group).
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// The environment variable holding the HMAC-SHA256 signing key; required with
    /// `format = "json"`.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// How long one attempt may take, connect to response, in ms (default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Attempts per event, the first included (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// The wait before the first retry in ms, doubled before each next one (default 1000).
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Events kept waiting when the target is slow; past it the oldest is dropped (default
    /// 1000).
    #[serde(default)]
    pub queue: Option<usize>,
    /// How an `https://` target's certificate is checked, and a client certificate.
    #[serde(default)]
    pub tls: UpstreamTls,
}

impl NotifyTarget {
    /// How this target is named in errors: `[[approvals.notify]] #N` (1-based) and its name.
    pub fn key(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("[[approvals.notify]] #{} ({name})", index + 1),
            None => format!("[[approvals.notify]] #{}", index + 1),
        }
    }

    /// The name in logs and metrics: `name`, or the URL's host (and port), or `url_env`'s
    /// variable name; never the URL's path or query.
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        if let Some(url) = &self.url {
            let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
            return authority.rsplit('@').next().unwrap_or(authority).to_owned();
        }
        self.url_env.clone().unwrap_or_default()
    }

    /// The events this target is told about.
    pub fn events(&self) -> Vec<EventKind> {
        self.events.clone().unwrap_or_else(|| DEFAULT_NOTIFY_EVENTS.to_vec())
    }

    /// Whether `event` goes to this target: its kind is listed and, when `groups` is set,
    /// its approval's group is among them.
    pub fn wants(&self, event: &ApprovalEvent) -> bool {
        let kind_ok = match &self.events {
            Some(events) => events.contains(&event.kind),
            None => DEFAULT_NOTIFY_EVENTS.contains(&event.kind),
        };
        kind_ok && self.groups.as_ref().is_none_or(|groups| groups.contains(&event.approval.group))
    }

    /// The URL, from `url` or the variable `url_env` names.
    pub fn resolve_url(&self, index: usize) -> Result<String, String> {
        match (&self.url, &self.url_env) {
            (Some(url), None) => Ok(url.clone()),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                format!("{} url_env names `{var}`, which is not set; export it or set `url`", self.key(index))
            }),
            _ => Err(format!("{}: set one of `url` and `url_env`", self.key(index))),
        }
    }

    /// The signing key from `secret_env` (none when unset). Refused when the variable is
    /// missing or shorter than [`MIN_NOTIFY_SECRET_LEN`] bytes.
    pub fn secret(&self, index: usize) -> Result<Option<Vec<u8>>, String> {
        let Some(var) = &self.secret_env else { return Ok(None) };
        let secret = std::env::var(var).map_err(|_| {
            format!("{} secret_env names `{var}`, which is not set; export the signing key in it", self.key(index))
        })?;
        if secret.len() < MIN_NOTIFY_SECRET_LEN {
            return Err(format!(
                "{} the signing key in `{var}` is shorter than {MIN_NOTIFY_SECRET_LEN} bytes; use a long random one",
                self.key(index)
            ));
        }
        Ok(Some(secret.into_bytes()))
    }

    /// Attempts per event.
    pub fn attempts(&self) -> u32 {
        self.attempts.unwrap_or(DEFAULT_NOTIFY_ATTEMPTS)
    }

    /// How long one attempt may take, in ms.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_NOTIFY_TIMEOUT_MS)
    }

    /// The wait before the first retry, in ms.
    pub fn backoff_ms(&self) -> u64 {
        self.backoff_ms.unwrap_or(DEFAULT_NOTIFY_BACKOFF_MS)
    }

    /// Events kept waiting at most.
    pub fn queue(&self) -> usize {
        self.queue.unwrap_or(DEFAULT_NOTIFY_QUEUE)
    }

    /// What can be checked without the environment or the network: one URL source, the
    /// URL's form when given in the file, the ranges, the secret where the format needs one.
    fn check(&self, index: usize) -> Result<(), String> {
        let key = self.key(index);
        match (&self.url, &self.url_env) {
            (Some(url), None) => check_url(url, &format!("{key} url"))?,
            (None, Some(_)) => {}
            (Some(_), Some(_)) => return Err(format!("{key}: set `url` or `url_env`, not both")),
            (None, None) => return Err(format!("{key}: set `url` (where to POST) or `url_env`")),
        }
        if self.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(format!("{key} name: is empty"));
        }
        match (self.format, &self.secret_env) {
            (NotifyFormat::Json, None) => {
                return Err(format!(
                    "{key} secret_env: a JSON notification is signed; name the environment variable holding the \
                     signing key (never the key itself)"
                ));
            }
            (NotifyFormat::Slack, Some(_)) => {
                return Err(format!(
                    "{key} secret_env: Slack does not check signatures; remove it (keep the webhook URL secret with \
                     `url_env` instead)"
                ));
            }
            _ => {}
        }
        if let Some(events) = &self.events
            && events.is_empty()
        {
            return Err(format!(
                "{key} events: is empty; list some of pending, approved, rejected, expired, redeemed, or remove the \
                 target"
            ));
        }
        if let Some(groups) = &self.groups
            && (groups.is_empty() || groups.iter().any(|g| g.trim().is_empty()))
        {
            return Err(format!("{key} groups: name at least one approver group, and no empty one"));
        }
        let timeout = self.timeout_ms();
        if timeout == 0 || timeout > 60_000 {
            return Err(format!("{key} timeout_ms: {timeout} is not between 1 and 60000"));
        }
        let attempts = self.attempts();
        if !(1..=10).contains(&attempts) {
            return Err(format!("{key} attempts: {attempts} is not between 1 and 10"));
        }
        let backoff = self.backoff_ms();
        if backoff > 60_000 {
            return Err(format!("{key} backoff_ms: {backoff} is more than 60000"));
        }
        let queue = self.queue();
        if !(1..=100_000).contains(&queue) {
            return Err(format!("{key} queue: {queue} is not between 1 and 100000"));
        }
        Ok(())
    }
}

/// An `http://` or `https://` URL with a host and no `user:password@` (not echoed: it may
/// hold a secret).
fn check_url(url: &str, key: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{key}: `{url}` is not an http:// or https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!("{key}: credentials in the URL (`user:password@`) are not supported"));
    }
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("{key}: the scheme must be http:// or https://, not {scheme}://"));
    }
    if authority.is_empty() {
        return Err(format!("{key}: `{url}` has no host"));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(format!("{key}: `{url}` contains a space"));
    }
    Ok(())
}

/// `template` (`[approvals] inbox_url`) with `{id}` replaced by `id`, or with `/ID` added
/// when it has no `{id}`.
pub fn inbox_link(template: &str, id: &str) -> String {
    if template.contains("{id}") {
        template.replace("{id}", id)
    } else {
        format!("{}/{id}", template.trim_end_matches('/'))
    }
}

impl super::ApprovalsSection {
    /// The approver's link for approval `id` ([`inbox_link`]), when `inbox_url` is set.
    pub fn inbox_link(&self, id: &str) -> Option<String> {
        self.inbox_url.as_deref().map(|template| inbox_link(template, id))
    }

    /// Checks `inbox_url` and every `[[approvals.notify]]` target, and that their names
    /// (logs, metrics) differ.
    pub(crate) fn check_notify(&self) -> Result<(), String> {
        if let Some(inbox) = &self.inbox_url {
            check_url(inbox, "[approvals] inbox_url")?;
        }
        let mut labels: Vec<String> = Vec::with_capacity(self.notify.len());
        for (index, target) in self.notify.iter().enumerate() {
            target.check(index)?;
            let label = target.label();
            if labels.contains(&label) {
                return Err(format!(
                    "{}: another target is also named `{label}` in logs and metrics; give each a different `name`",
                    target.key(index)
                ));
            }
            labels.push(label);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Config;

    fn parse(extra: &str) -> Result<Config, String> {
        let text = format!("[approvals]\nstore = \"a.db\"\n{extra}");
        Config::parse(&text, Path::new("portcullis.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_target_reads_with_its_defaults() {
        let config = parse(
            "inbox_url = \"https://approvals.example/approvals/{id}\"\n[[approvals.notify]]\nurl = \
             \"https://hooks.example/portcullis?x=1\"\nsecret_env = \"HOOK_KEY\"\n",
        )
        .unwrap();
        let approvals = config.approvals.unwrap();
        let target = &approvals.notify[0];
        assert_eq!(target.label(), "hooks.example");
        assert_eq!(target.attempts(), 3);
        assert_eq!(target.events(), super::DEFAULT_NOTIFY_EVENTS.to_vec());
        assert_eq!(approvals.inbox_link("apr_1").as_deref(), Some("https://approvals.example/approvals/apr_1"));
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[[approvals.notify]]\nsecret_env = \"K\"\n", "#1: set `url`"),
            ("[[approvals.notify]]\nurl = \"https://h.example\"\n", "#1 secret_env: a JSON notification is signed"),
            ("[[approvals.notify]]\nurl = \"ftp://h.example\"\nsecret_env = \"K\"\n", "the scheme must be http"),
            ("[[approvals.notify]]\nurl = \"https://u:p@h.example\"\nsecret_env = \"K\"\n", "credentials in the URL"),
            (
                "[[approvals.notify]]\nurl = \"https://h.example\"\nformat = \"slack\"\nsecret_env = \"K\"\n",
                "Slack does not check signatures",
            ),
            ("[[approvals.notify]]\nurl = \"https://h.example\"\nsecret_env = \"K\"\nattempts = 0\n", "attempts: 0"),
            (
                "[[approvals.notify]]\nurl = \"https://h.example\"\nsecret_env = \"K\"\nevents = []\n",
                "events: is empty",
            ),
            (
                "[[approvals.notify]]\nurl = \"https://h.example\"\nsecret_env = \"K\"\nevents = [\"used\"]\n",
                "unknown variant `used`",
            ),
            (
                "[[approvals.notify]]\nurl = \"https://h.example/a\"\nsecret_env = \"K\"\n[[approvals.notify]]\nurl = \
                 \"https://h.example/b\"\nsecret_env = \"K\"\n",
                "#2: another target is also named `h.example`",
            ),
            ("inbox_url = \"approvals.example\"\n", "[approvals] inbox_url"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}\n→ {error}\nexpected: {expected}");
        }
        assert!(
            !parse("[[approvals.notify]]\nurl = \"https://u:hunter2@h.example\"\nsecret_env = \"K\"\n")
                .unwrap_err()
                .contains("hunter2")
        );
    }

    #[test]
    fn filters_by_kind_and_group() {
        use crate::approval::{Approval, ApprovalEvent, EventKind};
        let config = parse(
            "[[approvals.notify]]\nurl = \"http://h.example\"\nsecret_env = \"K\"\nevents = [\"redeemed\"]\ngroups = \
             [\"finance\"]\n",
        )
        .unwrap();
        let target = &config.approvals.unwrap().notify[0];
        let approval = Approval { id: "apr_1".into(), group: "finance".into(), ..Approval::default() };
        assert!(target.wants(&ApprovalEvent::new(EventKind::Redeemed, approval.clone(), 0)));
        assert!(!target.wants(&ApprovalEvent::new(EventKind::Pending, approval.clone(), 0)));
        let mut other = approval;
        other.group = "legal".into();
        assert!(!target.wants(&ApprovalEvent::new(EventKind::Redeemed, other, 0)));
    }
}
