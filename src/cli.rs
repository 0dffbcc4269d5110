//! The command line: clap definitions only; execution lives in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Portcullis: sandboxed WebAssembly policies in front of APIs.
///
/// Policies are WebAssembly components built against the `portcullis:policy` WIT contract.
/// Each evaluation runs in a fresh, isolated instance with a time and memory limit; a
/// policy that fails is counted as a deny (fail-closed).
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate one request (and optionally its response) and print the verdict.
    ///
    /// Give either one policy (`--policy agent-guard.wasm --settings '{...}'`) or a routed
    /// policy set (`--config portcullis.toml`). The request file holds the normalised
    /// request JSON described in docs/exchange-format.md, or an exchange
    /// `{"request": {...}, "response": {...}}`.
    ///
    /// Examples:
    ///
    ///   portcullis eval --config examples/portcullis.toml --request examples/requests/agent-delete.json
    ///
    ///   portcullis eval --policy target/policies/scopes.wasm --settings @scopes.json --request req.json --format text
    #[command(verbatim_doc_comment)]
    Eval(EvalArgs),
    /// Print what a policy component says about itself: name, version, contract version,
    /// phases, body needs, imported capabilities and its digest.
    ///
    /// Example: portcullis inspect target/policies/agent-guard.wasm
    Inspect(InspectArgs),
}

/// Arguments of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A single policy component to evaluate (on a catch-all route).
    #[arg(long, conflicts_with = "config", required_unless_present = "config")]
    pub policy: Option<PathBuf>,
    /// Settings for `--policy`: JSON text, or `@FILE` to read JSON from a file.
    #[arg(long, requires = "policy", value_name = "JSON|@FILE")]
    pub settings: Option<String>,
    /// Capabilities granted to `--policy` (log, clock, rate-limit, data); repeatable.
    #[arg(long = "grant", requires = "policy", value_name = "CAPABILITY")]
    pub grants: Vec<String>,
    /// A policy set config (portcullis.toml) with policies and routes.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The request JSON (or an exchange with `request` and `response`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    pub request: PathBuf,
    /// The response JSON, to evaluate the response phase too.
    #[arg(long, value_name = "FILE")]
    pub response: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component (.wasm).
    pub component: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON document.
    Json,
}
