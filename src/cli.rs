//! The command line: clap definitions only; execution lives in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Portcullis: sandboxed WebAssembly policies in front of APIs.
///
/// Policies are WebAssembly components built against the `portcullis:policy` WIT contract.
/// Each evaluation runs in a fresh, isolated instance (unless a policy's config trades that
/// for speed with `reuse`) with a time and memory limit; a policy that fails is counted as
/// a deny (fail-closed).
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
    ///   portcullis eval --config examples/portcullis.toml --request examples/requests/04-agent-deletes-invoice.json
    ///
    ///   portcullis eval --policy target/policies/scopes.wasm --settings @scopes.json --request req.json --format text
    #[command(verbatim_doc_comment)]
    Eval(EvalArgs),
    /// Replay recorded traffic (HAR or JSONL) through a policy set and summarise the
    /// decisions; compare with a baseline to see what a new policy version changes.
    ///
    /// Every entry's request phase is evaluated and, when the request would have been
    /// forwarded and a response was recorded, its response phase. The principal comes from
    /// the recorded credentials through the config's [identity] settings (tokens checked at
    /// the recorded time), from a principal recorded in JSONL, or from --as.
    ///
    /// Entries are named capture.har#3 (HAR: the entry index, 0-based), by a JSONL line's
    /// own request id, or calls.jsonl:7 (JSONL: the line number, 1-based).
    ///
    /// Exit status, so CI can tell a changed decision from a bad capture:
    ///   0  every entry was read and evaluated (and, with --fail-on-change, none changed)
    ///   1  --fail-on-change: a decision changed from the baseline
    ///   2  bad arguments or config
    ///   3  unreadable input: a traffic file, or an entry of one, could not be read
    ///   4  an entry could not be evaluated: a policy failed or a redaction could not be applied
    /// When several apply, the first of 3, 4, 1 is the status; stderr names every one.
    ///
    /// Examples:
    ///
    ///   portcullis replay --config examples/portcullis.toml capture.har
    ///
    ///   portcullis replay --config portcullis.toml --as agent:support-bot --on-behalf-of alice --scope invoices:read capture.har
    ///
    ///   portcullis replay --config new.toml --baseline old.toml --fail-on-change traffic/*.har
    ///
    ///   portcullis replay --config portcullis.toml --baseline pii-redact=old/pii-redact.wasm capture.har
    ///
    ///   portcullis replay --config portcullis.toml --format junit --jobs 0 traffic/*.har > replay.xml
    #[command(verbatim_doc_comment)]
    Replay(ReplayArgs),
    /// Run test files: recorded traffic replayed through a policy set with expected
    /// decisions per entry selector. Prints a line per case and ends with
    /// `N passed, N failed`; exits 1 when any case fails.
    ///
    /// The test file format is in docs/testing-policies.md.
    ///
    /// Examples:
    ///
    ///   portcullis test policy-tests/
    ///
    ///   portcullis test policy-tests/agents.toml --jobs 0
    #[command(verbatim_doc_comment)]
    Test(TestArgs),
    /// Print what a policy component says about itself: name, version, contract version,
    /// phases, body needs, imported capabilities and its digest.
    ///
    /// Example: portcullis inspect target/policies/agent-guard.wasm
    Inspect(InspectArgs),
    /// Run the front doors the config opens: a reverse proxy ([server.proxy]), a
    /// forward-auth endpoint for nginx, Traefik and Caddy ([server.forward_auth]), Envoy's
    /// ext_authz ([server.ext_authz]) and the admin listener with /healthz, /readyz,
    /// /metrics and the approvals API ([server.admin]).
    ///
    /// Every request is authenticated ([identity]), evaluated by the routed policies,
    /// held for approval when a policy asks ([approvals]) and recorded ([audit]). The
    /// config and its modules are reloaded on SIGHUP and when they change on disk; a
    /// config that fails to load leaves the previous one serving. SIGINT or SIGTERM stop
    /// accepting and let requests in flight finish.
    ///
    /// Example: portcullis serve --config examples/serve.toml
    ///
    /// Set-up for each proxy: docs/front-doors.md.
    #[command(verbatim_doc_comment)]
    Serve(ServeArgs),
    /// Check a config as `serve` would load it, without listening: for CI and before a reload.
    ///
    /// Loads, links and initialises every policy with its settings; builds the routes and
    /// [identity]; checks each door's upstream URL and TLS files, and where [audit] and
    /// [approvals] go. Prints what `serve` would run (policies, routes -> policies, doors ->
    /// listen addresses) and exits 0, or prints the error `serve` would give and exits 2.
    /// It binds no port and writes no file, so it can run beside the live server.
    ///
    /// Examples:
    ///
    ///   portcullis check --config /etc/portcullis/portcullis.toml
    ///
    ///   # reload only a config that loads (systemd ExecReload, a deploy hook):
    ///   portcullis check --quiet --config portcullis.toml && kill -HUP "$(pidof portcullis)"
    #[command(verbatim_doc_comment)]
    Check(CheckArgs),
    /// Approve or reject pending approvals (the SQLite store named by [approvals]).
    ///
    /// A require-approval decision at a front door stores a pending approval and answers
    /// the caller with its id. Once approved here (or through the admin API), the caller
    /// repeats the same request with the header `Portcullis-Approval: ID`; it is let
    /// through once, for the same request and principal, before the approval expires.
    ///
    /// Examples:
    ///
    ///   portcullis approvals --config portcullis.toml list
    ///
    ///   portcullis approvals --config portcullis.toml approve apr_... --by alice@example.com
    ///
    ///   portcullis approvals --config portcullis.toml reject apr_... --by alice@example.com --note "not this month"
    #[command(verbatim_doc_comment)]
    Approvals(ApprovalsArgs),
    /// Start a policy project that builds to a component and passes its own test.
    ///
    /// Creates NAME/ with the policy (agents may read, their other methods are denied), a
    /// portcullis.toml that routes every request to it, and tests/ with recorded traffic and
    /// the expected decisions. Then, inside it: `portcullis build` and
    /// `portcullis test tests/`.
    ///
    /// Rust needs the wasm32-wasip2 target (`rustup target add wasm32-wasip2`); Python needs
    /// componentize-py (scripts/build-python-policies.sh installs it into
    /// target/python-venv of this repository, where `portcullis build` finds it);
    /// JavaScript needs Node.js 18+ and componentize-js (scripts/build-js-policies.sh
    /// installs it into target/js-tools). A JavaScript project also has native unit tests:
    /// `node --test` inside it.
    ///
    /// Examples:
    ///
    ///   portcullis new --lang rust invoice-guard
    ///
    ///   portcullis new --lang python --sdk /src/portcullis/guest-sdk invoice-guard
    ///
    ///   portcullis new --lang js invoice-guard
    #[command(verbatim_doc_comment)]
    New(NewArgs),
    /// Build a policy project (Rust, Python or JavaScript) into a component:
    /// DIR/target/NAME.wasm.
    ///
    /// The kind is read from the project: Cargo.toml (cargo, wasm32-wasip2), pyproject.toml
    /// (componentize-py) or package.json (node and componentize-js). When a toolchain is
    /// missing the error says what to install. The component is written next to its final name and renamed into place.
    ///
    /// Rust projects build in one target folder shared by every project, so the SDK and its
    /// dependencies compile once: CARGO_TARGET_DIR, else PORTCULLIS_TARGET_DIR, else
    /// ~/.cache/portcullis/target ($XDG_CACHE_HOME/portcullis/target). Cargo runs inside the
    /// project, so its .cargo/config.toml (the 64 KiB guest stack) applies. Python projects
    /// also get the bindings for their unit tests in DIR/target/python-bindings.
    ///
    /// Examples:
    ///
    ///   portcullis build
    ///
    ///   portcullis build --jobs 1
    ///
    ///   portcullis build policies/python/agent-guard --out /tmp/agent-guard.wasm
    #[command(verbatim_doc_comment)]
    Build(BuildArgs),
    /// Measure your policies on your own traffic: p50/p99 per policy and phase, and
    /// decisions per second through the whole gate, on one core.
    ///
    /// Reads every entry of the traffic files (HAR or JSONL, as `replay` does) into memory,
    /// establishes each entry's principal the same way (recorded credentials, or --as),
    /// evaluates every entry once to warm up, then ROUNDS times:
    ///
    ///   - the whole gate (route, every policy of both phases in fresh instances, or warm
    ///     ones for policies with `reuse`, combining, redaction) per entry: its p50, p99
    ///     and decisions per second;
    ///   - each policy on the entry's route alone, per phase (the response phase on every
    ///     recorded response): its p50 and p99.
    ///
    /// Also reports how long loading the config took (compile cache included). Timings
    /// depend on the machine and its load: compare runs made on the same machine, close
    /// together. Policies' decisions are not shown here; use `replay` for those.
    ///
    /// Examples:
    ///
    ///   portcullis bench --config policy-tests/portcullis.toml ../shared/traffic/*.har
    ///
    ///   portcullis bench --config portcullis.toml --as agent:support-bot --on-behalf-of alice --scope invoices:read capture.har
    ///
    ///   portcullis bench --config portcullis.toml --rounds 50 --format json traffic/*.jsonl > bench.json
    #[command(verbatim_doc_comment)]
    Bench(BenchArgs),
    /// MCP tools: pin the tool definitions of the MCP door's server (`mcp pin`).
    #[command(subcommand_required = true)]
    Mcp(McpArgs),
}

/// Arguments of `mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: McpAction,
}

/// What `mcp` does.
#[derive(Debug, Subcommand)]
pub enum McpAction {
    /// List an MCP server's tools and pin their definitions: write the pin file the MCP door
    /// reads with `[server.mcp.pins] mode = "file"`, or check the server against it.
    ///
    /// A pin is the SHA-256 of a tool's name, description, input schema and annotations
    /// (canonical JSON). The door hides a tool whose listed definition differs from its pin
    /// and refuses its calls, so a server cannot change what a tool says it does (a "rug
    /// pull", or instructions slipped into a description) without someone re-pinning it.
    ///
    /// The server is the URL argument, or the config's [server.mcp] upstream (with its
    /// upstream_tls). The pin file is --out, or the config's [server.mcp.pins] file. The
    /// listing speaks MCP 2026-07-28 and falls back to the 2025 handshake.
    ///
    /// Re-pinning after a reviewed change: run this again, then reload `portcullis serve`
    /// (SIGHUP, or change the config); the door reads the file again.
    ///
    /// Exit status: 0 pinned (or, with --check, every tool matches); 1 --check found a
    /// changed, new or removed tool (each is named); 2 the server or the file could not be
    /// read.
    ///
    /// Examples:
    ///
    ///   portcullis mcp pin --config portcullis.toml
    ///
    ///   portcullis mcp pin --config portcullis.toml --check
    ///
    ///   portcullis mcp pin https://mcp.example.com/mcp --out github.pins.json --bearer-env GITHUB_MCP_TOKEN
    #[command(verbatim_doc_comment)]
    Pin(McpPinArgs),
}

/// Arguments of `mcp pin`.
#[derive(Debug, Args)]
pub struct McpPinArgs {
    /// The MCP server's Streamable HTTP endpoint (default: the config's [server.mcp] upstream).
    pub url: Option<String>,
    /// The config whose [server.mcp] upstream and [server.mcp.pins] file to use.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The pin file to write or check (default: the config's [server.mcp.pins] file).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Compare the server's tools with the pin file instead of writing it; exit 1 naming
    /// each changed, new or removed tool.
    #[arg(long)]
    pub check: bool,
    /// A header the server needs, NAME:VALUE (repeatable), e.g. an API key.
    #[arg(long, value_name = "NAME:VALUE")]
    pub header: Vec<String>,
    /// Send `Authorization: Bearer` with the token in this environment variable.
    #[arg(long, value_name = "VAR")]
    pub bearer_env: Option<String>,
    /// The server's name written into the file (default: its URL).
    #[arg(long)]
    pub server: Option<String>,
    /// How long each request to the server may take, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The config (portcullis.toml) with policies, routes and [server] front doors.
    #[arg(long)]
    pub config: PathBuf,
    /// Once every door listens, write each door's bound address here as JSON, e.g.
    /// {"admin":"127.0.0.1:9090","proxy":"127.0.0.1:41234"}. With `listen = "127.0.0.1:0"`
    /// the system picks a free port and this file says which. Removed on exit.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
}

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config (portcullis.toml) to check.
    #[arg(long)]
    pub config: PathBuf,
    /// Print nothing when the config is good (errors are still printed).
    #[arg(long, short)]
    pub quiet: bool,
}

/// Arguments of `approvals`.
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// The config whose [approvals] store to use.
    #[arg(long)]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: ApprovalsAction,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
}

/// What `approvals` does.
#[derive(Debug, Subcommand)]
pub enum ApprovalsAction {
    /// List approvals, newest first.
    List {
        /// Only those in this state: pending, approved, rejected, used or expired.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one approval.
    Show {
        /// The approval's id.
        id: String,
    },
    /// Approve a pending approval (recorded as `cli:<user>`, the operating-system user).
    Approve {
        /// The approval's id.
        id: String,
        /// Ignored (kept so older scripts run): the decision is recorded as `cli:<user>`.
        #[arg(long, hide = true)]
        by: Option<String>,
        /// A note, for the record.
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a pending approval (recorded as `cli:<user>`, the operating-system user).
    Reject {
        /// The approval's id.
        id: String,
        /// Ignored (kept so older scripts run): the decision is recorded as `cli:<user>`.
        #[arg(long, hide = true)]
        by: Option<String>,
        /// Why, for the caller and the record.
        #[arg(long)]
        note: Option<String>,
    },
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

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The policy set (portcullis.toml) to measure.
    #[arg(long)]
    pub config: PathBuf,
    /// Recorded traffic: HAR 1.2/1.3 files (.har) or exchanges, one per line (.jsonl); see
    /// docs/traffic-formats.md. Every entry is held in memory.
    #[arg(required = true, value_name = "TRAFFIC")]
    pub traffic: Vec<PathBuf>,
    /// How many times every entry is evaluated (after one warm-up round).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Output format: a table for people, or one JSON document.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Who the entries are evaluated as.
    #[command(flatten)]
    pub principal: PrincipalArgs,
}

/// The principal flags `replay` and `bench` share.
#[derive(Debug, Args)]
pub struct PrincipalArgs {
    /// Evaluate every entry as this principal instead of its recorded credentials:
    /// KIND:ID with KIND one of user, service, agent, anonymous.
    #[arg(long = "as", value_name = "KIND:ID")]
    pub as_principal: Option<String>,
    /// With --as: the user the principal acts for.
    #[arg(long, value_name = "USER")]
    pub on_behalf_of: Option<String>,
    /// With --as: a scope the principal holds (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// When recorded tokens are checked for expiry: `recorded` (each entry's recorded time,
    /// the default), `now`, or seconds since the Unix epoch.
    #[arg(long, value_name = "recorded|now|SECONDS")]
    pub at: Option<String>,
}

/// Arguments of `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The policy set (portcullis.toml) to evaluate with.
    #[arg(long)]
    pub config: PathBuf,
    /// Recorded traffic: HAR 1.2/1.3 files (.har), exchanges one per line (.jsonl), or
    /// recorded MCP sessions (.jsonl whose first line is a JSON-RPC message: tool calls
    /// paired with their results; docs/mcp.md); see docs/traffic-formats.md.
    #[arg(required = true, value_name = "TRAFFIC")]
    pub traffic: Vec<PathBuf>,
    /// Output format: a summary table for people, or JSON, JSON Lines (one entry a line,
    /// as it is evaluated) or JUnit XML for CI.
    #[arg(long, value_enum, default_value_t = ReplayFormat::Table)]
    pub format: ReplayFormat,
    /// Print every redacted body as a diff, recorded against redacted.
    #[arg(long)]
    pub show_redactions: bool,
    /// Stop at the first entry that cannot be read, instead of reporting it and going on.
    #[arg(long)]
    pub strict: bool,
    /// Evaluate on this many threads (0: one per core). Output keeps the input order.
    #[arg(long, short = 'j', default_value_t = 1)]
    pub jobs: usize,
    /// Also evaluate with a baseline and list every entry whose decision changed: another
    /// config (OLD.toml), or this config with one policy's component replaced
    /// (NAME=OLD.wasm).
    #[arg(long, value_name = "OLD.toml|NAME=OLD.wasm")]
    pub baseline: Option<String>,
    /// Exit with status 1 when any decision changed from the baseline (unreadable input
    /// exits 3, an entry that could not be evaluated 4, whatever changed).
    #[arg(long, requires = "baseline")]
    pub fail_on_change: bool,
    /// Serve every policy from warm instances for this run, as `reuse = true` does for
    /// each policy whose config does not set `reuse` (also the baseline's): about 1.5×
    /// the entries per second for small policies, many times that for Python and
    /// JavaScript ones. Decisions differ only for a policy that keeps state from one call
    /// to the next (docs/configuration.md, `reuse`).
    #[arg(long)]
    pub reuse_instances: bool,
    /// Answer every approval of approver group GROUP as this approver (KIND:ID, e.g.
    /// finance=user:carol), then retry the entry with the approval, as a caller would. The
    /// approver must be allowed to decide by the config's [approvals.groups] (member, four
    /// eyes); one who is not is reported. Repeatable.
    #[arg(long, value_name = "GROUP=KIND:ID")]
    pub approve_as: Vec<String>,
    /// A file of approvers' decisions (TOML, or JSON for .json): per group and per entry
    /// selector, who approves or rejects (docs/testing-policies.md).
    #[arg(long, value_name = "FILE")]
    pub approvals: Option<PathBuf>,
    /// Who the entries are evaluated as.
    #[command(flatten)]
    pub principal: PrincipalArgs,
}

/// Output formats of `replay`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReplayFormat {
    /// Summary table and the denied/held entries.
    Table,
    /// One JSON document: summary, entries, changes.
    Json,
    /// One JSON object per entry, in input order, as evaluated.
    Jsonl,
    /// JUnit XML: a suite per file, a case per entry.
    Junit,
}

/// Arguments of `new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project's (and the policy's) name: lower-case letters, digits and `-`.
    pub name: String,
    /// The language of the policy.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// The folder that holds `rust/`, `python/` and `js/` of the guest SDKs (default: this
    /// repository's guest-sdk/, or PORTCULLIS_SDK).
    #[arg(long, env = "PORTCULLIS_SDK")]
    pub sdk: Option<PathBuf>,
    /// Where to create the project (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Languages `new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the portcullis-guest crate.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js (needs Node.js 18 or later).
    #[value(alias = "javascript")]
    Js,
}

/// Arguments of `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The project folder (with Cargo.toml, pyproject.toml or package.json).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the component (default: DIR/target/NAME.wasm).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The guest SDK folder, for Python and JavaScript projects (default: this
    /// repository's guest-sdk/, or PORTCULLIS_SDK).
    #[arg(long, env = "PORTCULLIS_SDK")]
    pub sdk: Option<PathBuf>,
    /// Compile with at most this many parallel jobs (Rust: cargo's --jobs; default: one per
    /// core). Python and JavaScript builds run one job whatever this says.
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
}

/// Arguments of `test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files (.toml), or folders holding them.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Evaluate on this many threads (0: one per core).
    #[arg(long, short = 'j', default_value_t = 1)]
    pub jobs: usize,
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
