//! `subscriptions/listen` (MCP 2026-07-28, basic/patterns/subscriptions): the long-lived
//! stream of change notifications a client opens with one POST, through the door.
//!
//! The listen request is admitted like any protocol method (operation
//! `subscriptions/listen`, its filter as the body). The server's answer is an SSE stream
//! that stays open; the door passes it on event by event (never read whole, no upstream
//! timeout once its headers arrived, each event under `max_response_bytes`), and ends it
//! upstream when the client goes away ("Closing the SSE response stream MUST be treated by
//! the server as cancellation", basic/transports/streamable-http, Cancellation).
//!
//! Each notification on the stream passes the response phase as an event of its own
//! ([`Listening::release`]):
//!
//! - the request the policies see is the listen call's (same principal, headers, request id
//!   and `mcp-method: subscriptions/listen`) with the **notification's method as the
//!   operation** (`notifications/resources/updated`), routed anew, so a route can name the
//!   notification kinds it covers;
//! - the response is status 200 with the notification's whole `params` as its JSON body
//!   (`_meta` too: what the client gets is what the policies judged, as an answer's
//!   `result._meta` is): a redaction is written back as the new `params`;
//! - a deny (or a redaction that cannot be written back) drops the notification: the
//!   client never sees it, the log says which method and why, and the gate's response-phase
//!   audit record names it (operation, decision, status).
//!
//! The final JSON-RPC answer to the listen request (the server's graceful end, `resultType:
//! complete`) settles as every answer does. A server request on the stream is dropped: the
//! 2026 revision forbids them on response streams ("MUST NOT send independent JSON-RPC
//! requests on this stream").

use std::sync::Arc;

use portcullis_host::exchange::{Body, Response};
use portcullis_host::gate::{Gate, Release, Ticket};
use serde_json::Value;

use super::Judge;

/// The JSON-RPC method that opens a notification stream.
pub(super) const LISTEN_METHOD: &str = "subscriptions/listen";

/// A call admitted by the gate, whose stream's notifications pass the response phase: a
/// `subscriptions/listen` call's change notifications, or any other call's own
/// notifications (`notifications/progress`, `notifications/message`: what a policy masks
/// in the answer must not pass in a log line beside it). Kept by the stream's task for the
/// stream's whole life (after the final answer too, so nothing on it passes unjudged).
pub(super) struct Listening {
    gate: Arc<Gate>,
    ticket: Arc<Ticket>,
    judge: Judge,
    /// A `subscriptions/listen` stream (else a call's own response stream).
    listen: bool,
}

impl Listening {
    /// The stream's state for an admitted call of `method`.
    pub(super) fn of(method: &str, gate: &Arc<Gate>, ticket: &Arc<Ticket>, judge: Judge) -> Listening {
        Listening { gate: gate.clone(), ticket: ticket.clone(), judge, listen: method == LISTEN_METHOD }
    }

    /// Whether this is a `subscriptions/listen` stream.
    pub(super) fn is_listen(&self) -> bool {
        self.listen
    }

    fn stream(&self) -> &'static str {
        if self.listen { "a subscriptions/listen stream" } else { "a call's response stream" }
    }

    /// The response phase for one notification `message` (of `method`) on the stream: the
    /// message to pass (redacted when a policy asked), or `None` to drop it.
    pub(super) fn release(&self, mut message: Value, method: &str) -> Option<Value> {
        let body = match message.get("params").cloned().unwrap_or(Value::Null) {
            Value::Null => Value::Object(serde_json::Map::new()),
            params => params,
        };
        let mut request = self.ticket.request.clone();
        request.operation = Some(method.to_owned());
        let mut response = Response {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Some(Body::json(&body)),
        };
        let released = self.judge.run(|| self.gate.release_event(&self.ticket, request, &mut response));
        let request_id = &self.ticket.request.id;
        match released {
            Release::Refuse(refusal) => {
                tracing::warn!(
                    method,
                    code = %refusal.code,
                    policy = refusal.policy.as_deref().unwrap_or(""),
                    request_id = %request_id,
                    "dropped a notification on {}: a response-phase policy refused it",
                    self.stream()
                );
                None
            }
            Release::Return(check) if check.verdict.redactions().is_empty() => Some(message),
            Release::Return(_) => match written_back(&mut message, response.body.as_ref()) {
                Ok(()) => Some(message),
                Err(reason) => {
                    tracing::warn!(
                        method,
                        request_id = %request_id,
                        "dropped a notification on {}: its redaction cannot be written back ({reason}); refusing \
                         rather than passing it unredacted",
                        self.stream()
                    );
                    None
                }
            },
        }
    }
}

/// Writes the redacted body back as the notification's `params` (its `_meta` as judged).
fn written_back(message: &mut Value, redacted: Option<&Body>) -> Result<(), String> {
    let Some(redacted) = redacted else { return Err("a redaction removed the whole params".into()) };
    if redacted.truncated {
        return Err("the body was truncated".into());
    }
    let body: Value = serde_json::from_slice(&redacted.bytes).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(fields) = body else {
        return Err("a redaction replaced the whole params object".into());
    };
    let Some(object) = message.as_object_mut() else { return Err("the message is not an object".into()) };
    object.insert("params".into(), Value::Object(fields));
    Ok(())
}

/// Whether a server request may pass on a stream: on a 2025 `GET` stream or a 2025
/// response stream it may (sampling, elicitation, roots); on a listen stream or the
/// response stream of any 2026-07-28 request (`modern`) it is dropped: "The server MUST NOT
/// send independent JSON-RPC requests on this stream" (basic/transports/streamable-http,
/// "Receiving Messages"; they travel inside an `InputRequiredResult`), and the client's
/// answer would reach the server unjudged.
pub(super) fn passes_server_request(listening: Option<&Listening>, modern: bool) -> bool {
    if listening.is_some_and(Listening::is_listen) {
        tracing::warn!("dropped a server request on a subscriptions/listen stream (the 2026 revision forbids them)");
        return false;
    }
    if modern {
        tracing::warn!("dropped a server request on a 2026-07-28 call's response stream (the revision forbids them)");
        return false;
    }
    true
}

/// The notifications a 2026-07-28 request's own response stream may carry: those about the
/// request ("These notifications MUST relate to the originating client request",
/// streamable-http "Receiving Messages"). Change notifications (`…/list_changed`,
/// `resources/updated`) are delivered only on a listen stream, where each passes the
/// response phase ([`Listening::release`]).
const REQUEST_SCOPED: [&str; 2] = ["notifications/progress", "notifications/message"];

/// Whether a notification of `method` may pass, unjudged, on the response stream of a
/// request that is not a listen: any on a 2025 stream (as that revision allows); on a
/// 2026-07-28 one (`modern`) only [`REQUEST_SCOPED`] ones, the rest dropped (a change
/// notification there would bypass the listen stream's response phase).
pub(super) fn passes_call_notification(method: &str, modern: bool) -> bool {
    if !modern || REQUEST_SCOPED.contains(&method) {
        return true;
    }
    let shown: String = method.chars().take(64).collect();
    tracing::warn!(method = %shown, "dropped a notification on a 2026-07-28 call's response stream: not about the call");
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_redacted_body_goes_back_as_params_with_its_meta_as_judged() {
        let mut message = json!({"jsonrpc": "2.0", "method": "notifications/resources/updated", "params": {
            "_meta": {"io.modelcontextprotocol/subscriptionId": 1, "note": "x"}, "uri": "invoices://7", "title": "x"}});
        let redacted =
            Body::json(&json!({"uri": "[redacted]", "_meta": {"io.modelcontextprotocol/subscriptionId": 1}}));
        written_back(&mut message, Some(&redacted)).unwrap();
        assert_eq!(
            message["params"],
            json!({"uri": "[redacted]", "_meta": {"io.modelcontextprotocol/subscriptionId": 1}})
        );
        assert!(written_back(&mut message, None).is_err());
        let whole = Body::json(&json!("gone"));
        assert!(written_back(&mut message, Some(&whole)).is_err());
    }
}
