//! `[[approvals.notify]]`: webhooks told about approvals (pending, approved, rejected,
//! expired, redeemed), never on the request path.
//!
//! The gate, the admin API and the expiry sweeper hand each [`ApprovalEvent`] to the
//! [`Notifier`] ([`ApprovalEvents::emit`]): it only puts the event in the queue of each
//! target that wants it and returns. Every target has its own bounded queue and its own
//! worker task, so a slow or dead target delays nobody else: when its queue is full the
//! oldest event waiting is dropped (counted in `portcullis_notifications_total{result="dropped"}`
//! and logged once per burst). The worker POSTs one event at a time, in order, with
//! `attempts` tries, each within `timeout_ms`, waiting `backoff_ms` and then twice as long
//! after each failure. A 2xx answer is success; 408, 429, 5xx and transport errors are
//! retried; any other answer is final. The client is the one doors use for upstreams
//! ([`UpstreamClient`]), with the target's `[approvals.notify.tls]`.
//!
//! The JSON body ([`json_payload`]) is signed: `Portcullis-Signature: t=UNIX_SECONDS,v1=HEX`
//! where HEX is HMAC-SHA256 with the key from `secret_env` over `UNIX_SECONDS`, a `.`, and
//! the body's bytes (signed again, with a fresh time, on each attempt). docs/approvals.md
//! shows a receiver's check. No notification carries the request's body, its query or a
//! credential.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Uri};
use portcullis_host::approval::{ApprovalEvent, ApprovalEvents, EventKind};
use portcullis_host::audit::rfc3339_ms;
use portcullis_host::config::{ApprovalsSection, NotifyFormat, NotifyTarget, inbox_link};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use super::http::full;
use super::metrics::Metrics;
use super::upstream::{UpstreamClient, parse_upstream};

/// The version of the JSON document; a change that removes or changes a field raises it.
pub const PAYLOAD_VERSION: u32 = 1;
/// The signature header.
pub const SIGNATURE_HEADER: &str = "portcullis-signature";
/// The event kind header (`pending`, …), so a receiver can route before parsing.
pub const EVENT_HEADER: &str = "portcullis-event";
/// The event's key (`APPROVAL_ID.KIND`), the same on every attempt, for deduplication.
pub const DELIVERY_HEADER: &str = "portcullis-delivery";
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much of a target's answer is read (and then thrown away).
const ANSWER_CAP: usize = 64 * 1024;

/// Every `[[approvals.notify]]` target, ready to be told; an [`ApprovalEvents`] sink.
pub struct Notifier {
    targets: Vec<Arc<Target>>,
}

/// One target: its settings, client and queue.
struct Target {
    label: String,
    uri: Uri,
    client: UpstreamClient,
    secret: Option<Vec<u8>>,
    config: NotifyTarget,
    inbox_url: Option<String>,
    queue: Mutex<VecDeque<Arc<ApprovalEvent>>>,
    wake: Notify,
    dropped: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// Builds every target of `[approvals]` (URL checked, secret read from the environment,
    /// TLS files read relative to `base`); none when there are none. Errors name the
    /// target. Starts no task ([`Notifier::start`] does).
    pub fn new(section: Option<&ApprovalsSection>, base: &Path, metrics: Arc<Metrics>) -> Result<Option<Notifier>> {
        let Some(section) = section.filter(|s| !s.notify.is_empty()) else { return Ok(None) };
        let mut targets = Vec::with_capacity(section.notify.len());
        for (index, config) in section.notify.iter().enumerate() {
            let key = config.key(index);
            let url = config.resolve_url(index).map_err(anyhow::Error::msg)?;
            let uri = parse_upstream(&url, &format!("{key} url"))?;
            let tls_key = format!("{key} tls");
            if uri.scheme() != Some(&http::uri::Scheme::HTTPS)
                && config.tls != portcullis_host::config::UpstreamTls::default()
            {
                anyhow::bail!("{tls_key} is set but the URL is http://: TLS settings apply to an https:// target");
            }
            let client = UpstreamClient::new(&config.tls, base, false, &tls_key)?;
            let secret = config.secret(index).map_err(anyhow::Error::msg)?;
            let label = config.label();
            metrics.notify_target(&label);
            targets.push(Arc::new(Target {
                label,
                uri,
                client,
                secret,
                config: config.clone(),
                inbox_url: section.inbox_url.clone(),
                queue: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                dropped: AtomicU64::new(0),
                metrics: metrics.clone(),
            }));
        }
        Ok(Some(Notifier { targets }))
    }

    /// One line per target for `portcullis check` and the start log: name, format,
    /// events, groups, attempts (never the URL's path or query).
    pub fn describe(section: &ApprovalsSection) -> Vec<String> {
        section
            .notify
            .iter()
            .map(|t| {
                let events: Vec<&str> = t.events().into_iter().map(EventKind::as_str).collect();
                let groups = t.groups.as_ref().map_or_else(|| "every group".to_owned(), |g| g.join(", "));
                let signed = if t.secret_env.is_some() { ", signed" } else { "" };
                format!(
                    "{} ({}{signed}): {} for {groups}; {} attempt(s), {} ms each",
                    t.label(),
                    t.format.as_str(),
                    events.join(", "),
                    t.attempts(),
                    t.timeout_ms()
                )
            })
            .collect()
    }

    /// Starts one worker per target on the current runtime; they stop when `stopped` turns.
    pub fn start(&self, stopped: &watch::Receiver<bool>) {
        for target in &self.targets {
            tokio::spawn(work(target.clone(), stopped.clone()));
        }
    }
}

impl ApprovalEvents for Notifier {
    fn emit(&self, event: &ApprovalEvent) {
        let mut shared: Option<Arc<ApprovalEvent>> = None;
        for target in &self.targets {
            if target.config.wants(event) {
                let event = shared.get_or_insert_with(|| Arc::new(event.clone())).clone();
                target.push(event);
            }
        }
    }
}

impl Target {
    /// Queues `event`; when the queue is full, drops the oldest (counted, logged at the
    /// first drop and every 100th).
    fn push(&self, event: Arc<ApprovalEvent>) {
        let dropped = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let dropped = if queue.len() >= self.config.queue() { queue.pop_front() } else { None };
            queue.push_back(event);
            dropped
        };
        if let Some(old) = dropped {
            let count = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.metrics.notified(&self.label, "dropped");
            if count == 1 || count.is_multiple_of(100) {
                tracing::warn!(
                    target_name = %self.label,
                    dropped = count,
                    event = %old.key(),
                    "approval notifications: the queue is full (the target is slow or down); dropped the oldest"
                );
            }
        }
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<Arc<ApprovalEvent>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }

    /// Sends `event` with retries; counts and logs the outcome.
    async fn deliver(&self, event: &ApprovalEvent, stopped: &mut watch::Receiver<bool>) {
        let inbox = self.inbox_url.as_deref().map(|template| inbox_link(template, &event.approval.id));
        let body = Bytes::from(match self.config.format {
            NotifyFormat::Slack => slack_payload(event, inbox.as_deref()),
            _ => json_payload(event, inbox.as_deref()),
        });
        let timeout = Duration::from_millis(self.config.timeout_ms());
        let attempts = self.config.attempts();
        let mut backoff = Duration::from_millis(self.config.backoff_ms());
        let mut last = String::new();
        for attempt in 1..=attempts {
            match tokio::time::timeout(timeout, self.send(event, body.clone())).await {
                Ok(Ok(status)) if status.is_success() => {
                    self.metrics.notified(&self.label, "sent");
                    tracing::debug!(target_name = %self.label, event = %event.key(), attempt, "approval notification sent");
                    return;
                }
                Ok(Ok(status)) => {
                    last = format!("answered {status}");
                    let retry = status.is_server_error()
                        || status == http::StatusCode::REQUEST_TIMEOUT
                        || status == http::StatusCode::TOO_MANY_REQUESTS;
                    if !retry {
                        break;
                    }
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {timeout:?}"),
            }
            if attempt < attempts {
                tracing::debug!(target_name = %self.label, event = %event.key(), attempt, error = %last, "approval notification failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stopped.changed() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        self.metrics.notified(&self.label, "failed");
        tracing::warn!(target_name = %self.label, event = %event.key(), error = %last, "approval notification failed; giving up");
    }

    /// One attempt: the status, or why none came.
    async fn send(&self, event: &ApprovalEvent, body: Bytes) -> Result<http::StatusCode, String> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, concat!("portcullis/", env!("CARGO_PKG_VERSION")))
            .header(EVENT_HEADER, event.kind.as_str())
            .header(DELIVERY_HEADER, event.key());
        if let Some(secret) = &self.secret {
            let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            request = request.header(SIGNATURE_HEADER, signature(secret, seconds, &body));
        }
        let request = request.body(full(body)).map_err(|e| e.to_string())?;
        let response = self.client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the answer so the connection can be reused; its content does not matter.
        let _ = super::http::read_capped(response.into_body(), ANSWER_CAP).await;
        Ok(status)
    }
}

/// A target's worker: waits for events and delivers them one at a time until `stopped`.
async fn work(target: Arc<Target>, mut stopped: watch::Receiver<bool>) {
    loop {
        let event = loop {
            if *stopped.borrow() {
                return;
            }
            if let Some(event) = target.pop() {
                break event;
            }
            tokio::select! {
                () = target.wake.notified() => {}
                _ = stopped.changed() => return,
            }
        };
        target.deliver(&event, &mut stopped).await;
    }
}

/// `t=SECONDS,v1=HEX`: HMAC-SHA256 with `secret` over `SECONDS.BODY`.
pub fn signature(secret: &[u8], seconds: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    format!("t={seconds},v1={hex}")
}

/// The signed JSON document (version [`PAYLOAD_VERSION`]).
pub fn json_payload(event: &ApprovalEvent, inbox: Option<&str>) -> Vec<u8> {
    let approval = &event.approval;
    let (method, host, path) = split_line(&approval.request_line);
    let decided_by = match &event.by {
        Some(by) => json!({"id": by.id, "kind": by.kind, "via": by.via}),
        None => approval.decided_by.as_ref().map_or(Value::Null, |id| json!({"id": id})),
    };
    let document = json!({
        "version": PAYLOAD_VERSION,
        "event": event.kind,
        "event_id": event.key(),
        "at": rfc3339_ms(event.at_ms),
        "approval": {
            "id": approval.id,
            "group": approval.group,
            "state": if event.kind == EventKind::Expired { json!("expired") } else { json!(approval.state) },
            "requested_by": {
                "kind": approval.principal_kind,
                "id": approval.principal_id,
                "on_behalf_of": approval.on_behalf_of,
            },
            "request": {"line": approval.request_line, "method": method, "host": host, "path": path},
            "policy": approval.policy,
            "reason": approval.reason,
            "created": rfc3339_ms(approval.created_ms),
            "expires": rfc3339_ms(approval.expires_ms),
        },
        // For `expired`: `pending` (nobody decided) or `approved` (approved, never used).
        "expired_while": (event.kind == EventKind::Expired).then_some(approval.state),
        "decided_by": decided_by,
        "note": event.note.as_ref().or(approval.note.as_ref()),
        "request_id": event.request_id,
        "inbox_url": inbox,
    });
    serde_json::to_vec(&document).unwrap_or_default()
}

/// `{"text": "…"}` for Slack incoming webhooks: one line saying what happened, and the
/// inbox link.
pub fn slack_payload(event: &ApprovalEvent, inbox: Option<&str>) -> Vec<u8> {
    let approval = &event.approval;
    let who = match &approval.on_behalf_of {
        Some(user) => format!("{} `{}` for {user}", approval.principal_kind, approval.principal_id),
        None if approval.principal_id.is_empty() => approval.principal_kind.clone(),
        None => format!("{} `{}`", approval.principal_kind, approval.principal_id),
    };
    let decider = event.by.as_ref().map(|b| b.id.clone()).or_else(|| approval.decided_by.clone()).unwrap_or_default();
    let what = format!("{who}: `{}` ({}: {})", approval.request_line, approval.policy, approval.reason);
    let mut text = match event.kind {
        EventKind::Pending => format!(
            "Approval needed from *{}* for {what}. Expires {}.",
            approval.group,
            rfc3339_ms(approval.expires_ms)
        ),
        EventKind::Approved => format!("Approved by {decider} (*{}*): {what}.", approval.group),
        EventKind::Rejected => format!("Rejected by {decider} (*{}*): {what}.", approval.group),
        EventKind::Expired => format!("Expired before it was {}: {what}.", used_or_decided(event)),
        EventKind::Redeemed => format!("Approved request sent: {what}."),
        _ => format!("{}: {what}.", event.kind),
    };
    if let Some(note) = event.note.as_ref().or(approval.note.as_ref()) {
        text = format!("{text} Note: {note}");
    }
    let mut text = slack_escape(&text);
    if let Some(url) = inbox {
        text = format!("{text} <{}|Open {}>", slack_escape(url), approval.id);
    }
    serde_json::to_vec(&json!({ "text": text })).unwrap_or_default()
}

fn used_or_decided(event: &ApprovalEvent) -> &'static str {
    if event.approval.decided_by.is_some() { "used" } else { "decided" }
}

/// Slack's three control characters, escaped as Slack asks.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `METHOD host path` in its parts.
fn split_line(line: &str) -> (&str, &str, &str) {
    let mut parts = line.splitn(3, ' ');
    (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""))
}

/// Checks `[[approvals.notify]]` as `serve` does, without sending anything: URLs, secrets
/// from the environment, TLS files (for `portcullis check`).
pub fn preflight(section: Option<&ApprovalsSection>, base: &Path, config_path: &Path) -> Result<()> {
    Notifier::new(section, base, Arc::new(Metrics::new())).with_context(|| config_path.display().to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use portcullis_host::approval::{Approval, ApprovalState, Decider};

    use super::*;

    fn approval() -> Approval {
        Approval {
            id: "apr_1".into(),
            group: "finance".into(),
            principal_kind: "agent".into(),
            principal_id: "bot".into(),
            on_behalf_of: Some("alice".into()),
            policy: "agent-guard".into(),
            reason: "agents need approval <to write>".into(),
            request_line: "POST api.example /v1/invoices".into(),
            expires_ms: 60_000,
            ..Approval::default()
        }
    }

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        // Python: hmac.new(b"key", b"1.x", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"key", 1, b"x"),
            "t=1,v1=fc4913c41a7bf793267e2a384f3261c9436ec2cd097bd745e7b0d99113f510ec"
        );
    }

    #[test]
    fn the_json_document_names_the_approval_and_not_the_body() {
        let mut decided = approval();
        decided.state = ApprovalState::Approved;
        decided.decided_by = Some("fiona".into());
        let event = ApprovalEvent::decided(decided, Decider::named("fiona"), 1_000);
        let body: Value =
            serde_json::from_slice(&json_payload(&event, Some("https://inbox.example/approvals/apr_1"))).unwrap();
        assert_eq!(body["version"], 1);
        assert_eq!(body["event"], "approved");
        assert_eq!(body["event_id"], "apr_1.approved");
        assert_eq!(body["approval"]["requested_by"]["on_behalf_of"], "alice");
        assert_eq!(body["approval"]["request"]["path"], "/v1/invoices");
        assert_eq!(body["decided_by"]["id"], "fiona");
        assert_eq!(body["inbox_url"], "https://inbox.example/approvals/apr_1");
        assert!(body["approval"].get("body").is_none());
    }

    #[test]
    fn slack_text_escapes_and_links() {
        let event = ApprovalEvent::pending(approval(), "req_1", 0);
        let body: Value = serde_json::from_slice(&slack_payload(&event, Some("https://i.example/a?x=1&y=2"))).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.starts_with("Approval needed from *finance* for agent `bot` for alice"), "{text}");
        assert!(text.contains("&lt;to write&gt;"), "{text}");
        assert!(text.ends_with("<https://i.example/a?x=1&amp;y=2|Open apr_1>"), "{text}");
    }
}
