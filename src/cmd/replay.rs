//! `portcullis replay`: recorded traffic through a policy set (and optionally a baseline),
//! summarised for people or written for machines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use portcullis_host::approval::ApproverGroups;
use portcullis_host::config::base_dir;
use portcullis_host::exchange::{Principal, PrincipalKind};
use portcullis_host::gate::Gate;
use portcullis_host::{Config, Engine};

use crate::cli::{PrincipalArgs, ReplayArgs, ReplayFormat};
use crate::replay::approve::ApprovalScript;
use crate::replay::diff::{Change, change_of};
use crate::replay::render::{self, Table, entry_json};
use crate::replay::summary::{ApprovalSummary, Summary};
use crate::replay::{EntryOutcome, EntryResult, FileError, IdentityMode, Replay};
use crate::setup;

pub fn run(args: &ReplayArgs) -> Result<ExitCode> {
    let mut config = Config::read(&args.config)?;
    if args.reuse_instances {
        config.reuse_where_unset();
    }
    let engine = Engine::new(&config.engine_config(&base_dir(&args.config)))?;
    let gate = setup::gate_on_engine(&config, &args.config, &engine)?;
    let baseline = match &args.baseline {
        Some(spec) => Some(baseline_gate(spec, &config, &args.config, &engine, args.reuse_instances)?),
        None => None,
    };
    let identity = principal_flags(&args.principal)?;
    let script = approval_script(args, &config)?;
    let jobs = match args.jobs {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    for file in &args.traffic {
        if !file.exists() {
            bail!("traffic file {} does not exist", file.display());
        }
    }
    let replay = Replay {
        gate: &gate,
        baseline: baseline.as_ref(),
        identity,
        jobs,
        // Drawn on stderr, and only when stderr is a terminal.
        progress: true,
        keep_originals: args.show_redactions,
        strict: args.strict,
        approvals: script.as_ref(),
    };

    let started = Instant::now();
    let mut collected = Collected::default();
    if script.is_some() {
        collected.summary.approvals = Some(ApprovalSummary::default());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let file_errors = replay.run(&args.traffic, |entry| collected.add(entry, args, &mut out))?;
    let run = Run { file_errors, seconds: started.elapsed().as_secs_f64(), jobs, has_baseline: baseline.is_some() };
    collected.write(args, &run, &mut out)?;
    out.flush()?;
    drop(out);
    Ok(collected.exit_code(args, &run.file_errors))
}

/// What a replay keeps of its entries as they come in, for the report at the end.
#[derive(Default)]
struct Collected {
    summary: Summary,
    notable: Vec<(String, String, String)>,
    changes: Vec<Change>,
    /// The entries themselves, for the formats written at the end (JSON, JUnit).
    kept: Vec<EntryResult>,
    diffs: String,
    first_read_error: Option<String>,
    /// With scripted approvals: each held entry and what became of it.
    approvals: Vec<(String, String, String)>,
}

/// How the run went, besides its entries.
struct Run {
    file_errors: Vec<FileError>,
    seconds: f64,
    jobs: usize,
    has_baseline: bool,
}

impl Collected {
    /// Takes one entry: counted, noted when notable or changed, its redaction diff kept
    /// for `--show-redactions`, and written at once for `--format jsonl`.
    fn add(&mut self, entry: EntryResult, args: &ReplayArgs, out: &mut impl Write) {
        self.summary.add(&entry);
        if let (EntryOutcome::ReadError(message), None) = (&entry.outcome, &self.first_read_error) {
            // The reader's message names the file and the line or entry index.
            self.first_read_error = Some(message.clone());
        }
        if let Some(line) = render::notable(&entry) {
            self.notable.push(line);
        }
        if let Some(change) = change_of(&entry) {
            self.changes.push(change);
        }
        if let (Some(round), EntryOutcome::Evaluated { passage, .. }) = (&entry.approval, &entry.outcome) {
            self.approvals.push((render::entry_id(&entry), passage.request_line.clone(), round.line()));
        }
        if args.show_redactions
            && let Some(diff) = entry.original.as_deref().and_then(|o| render::redaction_diff(&entry, o))
        {
            self.diffs.push_str(&diff);
        }
        match args.format {
            ReplayFormat::Jsonl => {
                let _ = writeln!(out, "{}", entry_json(&entry));
            }
            ReplayFormat::Json | ReplayFormat::Junit => self.kept.push(entry),
            ReplayFormat::Table => {}
        }
    }

    /// The report in the format asked for (JSONL entries were written as they came).
    fn write(&self, args: &ReplayArgs, run: &Run, out: &mut impl Write) -> Result<()> {
        match args.format {
            ReplayFormat::Table => {
                if !self.diffs.is_empty() {
                    writeln!(out, "{}", self.diffs)?;
                }
                let table = Table {
                    summary: &self.summary,
                    notable: &self.notable,
                    changes: &self.changes,
                    file_errors: &run.file_errors,
                    files: args.traffic.len(),
                    seconds: run.seconds,
                    jobs: run.jobs,
                    has_baseline: run.has_baseline,
                    approvals: &self.approvals,
                };
                write!(out, "{}", table.render())?;
            }
            ReplayFormat::Json => {
                let entries: Vec<serde_json::Value> = self.kept.iter().map(entry_json).collect();
                let document = serde_json::json!({
                    "summary": self.summary,
                    "entries": entries,
                    "changes": self.changes,
                    "file_errors": run.file_errors.iter().map(|e| serde_json::json!({"source": &*e.source, "error": e.message})).collect::<Vec<_>>(),
                    "seconds": run.seconds,
                    "jobs": run.jobs,
                });
                serde_json::to_writer_pretty(&mut *out, &document)?;
                writeln!(out)?;
            }
            ReplayFormat::Junit => {
                let files: Vec<String> = args.traffic.iter().map(|f| f.display().to_string()).collect();
                write!(out, "{}", render::junit(&self.kept, &files))?;
            }
            ReplayFormat::Jsonl => {}
        }
        Ok(())
    }

    /// The exit status, with why on stderr (each error once): 3 when input could not be
    /// read (a file, or an entry of one), 4 when an entry could not be evaluated (a policy
    /// failed, or a redaction could not be applied), 1 with `--fail-on-change` when a
    /// decision changed from the baseline; the first that applies, in that order. Every
    /// reason that applies is printed.
    fn exit_code(&self, args: &ReplayArgs, file_errors: &[FileError]) -> ExitCode {
        let mut code = None;
        for e in file_errors {
            eprintln!("error: {}: {}", e.source, e.message);
        }
        let unreadable = self.summary.unreadable;
        if args.strict
            && let Some(first) = &self.first_read_error
        {
            eprintln!("error: stopped at the first unreadable entry (--strict): {first}");
        } else if unreadable > 0 {
            eprintln!(
                "error: {unreadable} entr{} could not be read (first: {})",
                if unreadable == 1 { "y" } else { "ies" },
                self.first_read_error.as_deref().unwrap_or("?")
            );
        }
        if unreadable > 0 || !file_errors.is_empty() {
            code = Some(ExitCode::from(EXIT_UNREADABLE));
        }
        let failed = self.summary.entries.errors - unreadable;
        if failed > 0 {
            eprintln!(
                "error: {failed} entr{} could not be evaluated (a policy failed, or a redaction could not be applied)",
                if failed == 1 { "y" } else { "ies" }
            );
            code = code.or(Some(ExitCode::from(EXIT_NOT_EVALUATED)));
        }
        if args.fail_on_change && !self.changes.is_empty() {
            eprintln!("error: {} decision(s) changed from the baseline (--fail-on-change)", self.changes.len());
            code = code.or(Some(ExitCode::from(EXIT_CHANGED)));
        }
        code.unwrap_or(ExitCode::SUCCESS)
    }
}

/// `--fail-on-change` and a decision changed from the baseline.
const EXIT_CHANGED: u8 = 1;
/// A traffic file, or an entry of one, could not be read.
const EXIT_UNREADABLE: u8 = 3;
/// An entry was read but could not be evaluated: a policy failed, or a redaction could not
/// be applied.
const EXIT_NOT_EVALUATED: u8 = 4;

/// `--approve-as` and `--approvals`, checked against the config's `[approvals.groups]`;
/// `None` when neither is given (the replay is then as it always was).
fn approval_script(args: &ReplayArgs, config: &Config) -> Result<Option<ApprovalScript>> {
    if args.approve_as.is_empty() && args.approvals.is_none() {
        return Ok(None);
    }
    let groups = config.approvals.as_ref().map(|a| a.groups.clone()).unwrap_or_default();
    if groups.is_empty() {
        bail!(
            "--approve-as/--approvals: {} has no [approvals.groups], which say who may decide each approver group's \
             approvals (docs/approvals.md)",
            args.config.display()
        );
    }
    Ok(Some(ApprovalScript::new(ApproverGroups::new(groups), &args.approve_as, args.approvals.as_deref())?))
}

/// `OLD.toml`: another config. `NAME=OLD.wasm`: this config with policy NAME's component
/// replaced.
/// With `reuse_instances`, another config gets the same `reuse` default as the one under
/// test (this config's copy already has it).
fn baseline_gate(
    spec: &str,
    config: &Config,
    config_path: &Path,
    engine: &Engine,
    reuse_instances: bool,
) -> Result<Gate> {
    if let Some((name, module)) = spec.split_once('=') {
        let mut old = config.clone();
        let policy = old.policies.get_mut(name).with_context(|| {
            let known: Vec<&str> = config.policies.keys().map(String::as_str).collect();
            format!("--baseline {spec}: no policy `{name}` in {} (it has: {})", config_path.display(), known.join(", "))
        })?;
        // The module path is given relative to where the command runs; config paths are
        // relative to the config, so make it absolute.
        policy.module = std::path::absolute(PathBuf::from(module))?;
        policy.sha256 = None;
        return setup::gate_on_engine(&old, config_path, engine).context("--baseline");
    }
    let path = PathBuf::from(spec);
    let mut old = Config::read(&path).context("--baseline")?;
    if reuse_instances {
        old.reuse_where_unset();
    }
    setup::gate_on_engine(&old, &path, engine).context("--baseline")
}

/// The principal flags `replay` and `bench` share (`--as KIND:ID`, `--on-behalf-of`,
/// `--scope`, `--at`), as an identity mode.
pub(crate) fn principal_flags(flags: &PrincipalArgs) -> Result<IdentityMode> {
    let PrincipalArgs { as_principal, on_behalf_of, scopes, at } = flags;
    let (as_principal, on_behalf_of, at) = (as_principal.as_deref(), on_behalf_of.as_deref(), at.as_deref());
    if let Some(principal) = as_principal {
        let (kind, id) = principal.split_once(':').unwrap_or((principal, ""));
        let kind = match kind {
            "anonymous" => PrincipalKind::Anonymous,
            "user" => PrincipalKind::User,
            "service" => PrincipalKind::Service,
            "agent" => PrincipalKind::Agent,
            other => bail!("--as {principal}: unknown kind `{other}`; use user:ID, service:ID, agent:ID or anonymous"),
        };
        return Ok(IdentityMode::Fixed(Principal {
            kind,
            id: id.to_owned(),
            scopes: scopes.clone(),
            claims: Vec::new(),
            on_behalf_of: on_behalf_of.map(str::to_owned),
            credential_id: Some("replay-override".into()),
        }));
    }
    if on_behalf_of.is_some() || !scopes.is_empty() {
        bail!("--on-behalf-of and --scope describe the principal given with --as KIND:ID; add --as");
    }
    match at {
        None | Some("recorded") => Ok(IdentityMode::Recorded),
        Some("now") => Ok(IdentityMode::At(portcullis_host::now_ms() / 1000)),
        Some(seconds) => seconds
            .parse()
            .map(IdentityMode::At)
            .with_context(|| format!("--at {seconds}: expected `recorded`, `now` or seconds since the Unix epoch")),
    }
}
