//! What a replayed MCP entry was: the protocol generation its call used, and whether it was
//! a Multi Round-Trip retry (the reader pairs a retry carrying `requestState` with the call
//! whose `InputRequiredResult` gave it; `portcullis_host::adapters::mcp_session`). Reports show
//! it per entry and count it.

use std::collections::BTreeMap;

use portcullis_host::Exchange;
use portcullis_host::adapters::mcp_session::{recorded_generation, recorded_retry};
use serde::Serialize;

/// One MCP entry's generation and retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpEntry {
    /// `2026-07-28` or `2025`.
    pub generation: &'static str,
    /// For a Multi Round-Trip retry: what it retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
}

/// A Multi Round-Trip retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// The line of the call it retries (absent when that call was not recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of_line: Option<usize>,
    /// `door` (the door's approval state: replayed carrying the approval) or `server` (the
    /// server's own state: replayed as an ordinary call).
    pub state: &'static str,
    /// The approval the door's state named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

impl McpEntry {
    /// The entry's MCP facts, `None` for an entry that is not a recorded MCP call.
    pub fn of(exchange: &Exchange) -> Option<McpEntry> {
        let generation = recorded_generation(&exchange.request)?.as_str();
        let retry = recorded_retry(&exchange.request).map(|r| Retry {
            of_line: r.of_line,
            state: if r.approval.is_some() { "door" } else { "server" },
            approval: r.approval,
        });
        Some(McpEntry { generation, retry })
    }
}

/// MCP entries by generation, and the Multi Round-Trip retries among them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct McpCounts {
    /// Entries per generation (`2026-07-28`, `2025`).
    pub generations: BTreeMap<&'static str, usize>,
    /// Retries carrying a `requestState`.
    pub mrtr_retries: usize,
    /// Of those, the ones with the door's approval state.
    pub approval_retries: usize,
}

impl McpCounts {
    /// Adds one entry.
    pub fn add(&mut self, entry: &McpEntry) {
        *self.generations.entry(entry.generation).or_default() += 1;
        if let Some(retry) = &entry.retry {
            self.mrtr_retries += 1;
            self.approval_retries += usize::from(retry.state == "door");
        }
    }

    /// No MCP entry was replayed.
    pub fn is_empty(&self) -> bool {
        self.generations.is_empty()
    }

    /// `MCP: 7 entries 2026-07-28, 2 2025; 2 Multi Round-Trip retries (1 with the door's approval state)`.
    pub fn line(&self) -> String {
        let generations: Vec<String> = self.generations.iter().rev().map(|(g, n)| format!("{n} {g}")).collect();
        format!(
            "MCP: entries by protocol generation: {}; {} Multi Round-Trip retr{} ({} with the door's approval state)",
            generations.join(", "),
            self.mrtr_retries,
            if self.mrtr_retries == 1 { "y" } else { "ies" },
            self.approval_retries
        )
    }
}
