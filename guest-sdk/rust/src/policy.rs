//! The [`Policy`] trait a policy implements, and the [`Metadata`] it describes itself with.

use alloc::string::String;

use serde::de::DeserializeOwned;

use crate::bindings::portcullis::policy::types::PolicyMetadata;
use crate::{Outcome, Phases, Request, Response, SettingsError, allow};

/// A Portcullis policy. Implement it on a unit struct and export it with
/// [`crate::export_policy!`].
///
/// Every method is an associated function that receives the parsed settings as a parameter:
/// each evaluation runs in a fresh instance, so there is no `self` to keep state in, and a
/// policy's logic stays a pure function of (settings, request) that unit tests can call
/// natively.
pub trait Policy {
    /// The policy's settings, parsed from the JSON document the host configured for it
    /// (`{}` when none). Use `()` for a policy without settings. Mark structs
    /// `#[serde(deny_unknown_fields)]` so that a misspelt setting is refused at load.
    ///
    /// `Default` is what a blank or `null` document yields.
    type Settings: DeserializeOwned + Default;

    /// Describes the policy: name, version, phases and whether it needs message bodies.
    /// Called once at load, before the settings are validated.
    fn metadata() -> Metadata;

    /// Checks parsed settings beyond what their type enforces, once at load. An error names
    /// the setting (e.g. `rules[2].path`) and refuses the policy. Accepts everything by
    /// default.
    fn validate(settings: &Self::Settings) -> Result<(), SettingsError> {
        let _ = settings;
        Ok(())
    }

    /// Decides about a request before it reaches the upstream. Allows by default.
    fn on_request(settings: &Self::Settings, request: &Request) -> Outcome {
        let _ = (settings, request);
        allow()
    }

    /// Decides about a response before it reaches the caller. Allows by default.
    fn on_response(settings: &Self::Settings, request: &Request, response: &Response) -> Outcome {
        let _ = (settings, request, response);
        allow()
    }
}

/// What a policy says about itself: a builder for the WIT `policy-metadata` record.
///
/// By default a policy takes part in the request phase only and needs no bodies. Ask for a
/// body only when the policy reads it: the host skips copying bodies for policies that do
/// not, and a redaction of body fields needs no body (the host applies it).
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    name: String,
    version: String,
    phases: Phases,
    needs_request_body: bool,
    needs_response_body: bool,
}

impl Metadata {
    /// Metadata for the policy `name` at `version` (e.g. `env!("CARGO_PKG_VERSION")`),
    /// taking part in the request phase only.
    pub fn new(name: &str, version: &str) -> Self {
        Metadata {
            name: name.into(),
            version: version.into(),
            phases: Phases::REQUEST,
            needs_request_body: false,
            needs_response_body: false,
        }
    }

    /// Sets the phases the host calls the policy for, e.g.
    /// `Phases::REQUEST | Phases::RESPONSE`.
    pub fn phases(mut self, phases: Phases) -> Self {
        self.phases = phases;
        self
    }

    /// Takes part in the response phase only.
    pub fn response_phase_only(self) -> Self {
        self.phases(Phases::RESPONSE)
    }

    /// Takes part in both phases.
    pub fn both_phases(self) -> Self {
        self.phases(Phases::REQUEST | Phases::RESPONSE)
    }

    /// Asks the host to copy request bodies into `on_request` (up to its configured cap).
    pub fn needs_request_body(mut self) -> Self {
        self.needs_request_body = true;
        self
    }

    /// Asks the host to copy response bodies into `on_response` (up to its configured cap).
    pub fn needs_response_body(mut self) -> Self {
        self.needs_response_body = true;
        self
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The WIT record the host receives.
    pub fn build(self) -> PolicyMetadata {
        PolicyMetadata {
            name: self.name,
            version: self.version,
            phases: self.phases,
            needs_request_body: self.needs_request_body,
            needs_response_body: self.needs_response_body,
        }
    }
}

impl From<Metadata> for PolicyMetadata {
    fn from(metadata: Metadata) -> Self {
        metadata.build()
    }
}
