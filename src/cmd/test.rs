//! `portcullis test`: test files that replay recorded traffic and assert the decisions,
//! printed like a test runner (a line per case, then `N passed, N failed`).
//!
//! The format is documented in docs/testing-policies.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use portcullis_host::approval::ApproverGroups;
use portcullis_host::decision::DecisionKind;
use portcullis_host::exchange::{Principal, PrincipalKind};
use serde::Deserialize;

use crate::cli::TestArgs;
use crate::replay::approve::{ApprovalRound, ApprovalScript, Outcome};
use crate::replay::select::Selector;
use crate::replay::signature::{PhaseSignature, Signature};
use crate::replay::{EntryOutcome, EntryResult, IdentityMode, Replay};
use crate::setup;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The policy set, relative to the test file.
    config: PathBuf,
    /// Traffic files, relative to the test file.
    traffic: Vec<PathBuf>,
    /// The principal for every entry (default: from the recorded credentials).
    #[serde(default)]
    principal: Option<PrincipalSpec>,
    /// Who answers the approvals entries wait for: `GROUP=KIND:ID`, as `replay --approve-as`.
    #[serde(default)]
    approve_as: Vec<String>,
    /// A file of approvers' decisions, relative to the test file, as `replay --approvals`.
    #[serde(default)]
    approvals: Option<PathBuf>,
    /// The cases.
    #[serde(default, rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    kind: PrincipalKind,
    #[serde(default)]
    id: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    on_behalf_of: Option<String>,
    #[serde(default)]
    claims: BTreeMap<String, String>,
}

impl PrincipalSpec {
    fn principal(&self) -> Principal {
        Principal {
            kind: self.kind,
            id: self.id.clone(),
            scopes: self.scopes.clone(),
            claims: self.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            on_behalf_of: self.on_behalf_of.clone(),
            credential_id: Some("test-override".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    select: Selector,
    expect: Expectation,
    /// Overrides the file's principal for this case.
    #[serde(default)]
    principal: Option<PrincipalSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    decision: DecisionKind,
    /// `request`, `response`, or (default) the entry's overall decision.
    #[serde(default)]
    phase: Option<PhaseName>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    /// Targets that must be among the redactions (`json:/email`, `/email`, `header:x`).
    #[serde(default)]
    redacted: Vec<String>,
    #[serde(default)]
    approver_group: Option<String>,
    /// With scripted approvals: what became of the held entry (`forwarded`, `rejected`,
    /// `not-allowed`, `no-decider`, `refused`).
    #[serde(default)]
    approval: Option<Outcome>,
    /// With scripted approvals: who decided (`KIND:ID`), in every group it waited for.
    #[serde(default)]
    approved_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PhaseName {
    Request,
    Response,
}

pub fn run(args: &TestArgs) -> Result<ExitCode> {
    let files = test_files(&args.paths)?;
    if files.is_empty() {
        bail!(
            "no test files (*.toml) found in {}",
            args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let jobs = match args.jobs {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        match run_file(file, jobs) {
            Ok(results) => {
                for (name, outcome) in results {
                    match outcome {
                        Ok(detail) => {
                            passed += 1;
                            println!("ok    {}: {name} ({detail})", file.display());
                        }
                        Err(why) => {
                            failed += 1;
                            println!("FAIL  {}: {name}\n      {}", file.display(), why.replace('\n', "\n      "));
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAIL  {}: the file could not be run\n      {e:#}", file.display());
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The `.toml` files among `paths` (folders are searched one level deep, sorted).
fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read folder {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml") && !is_config(p))
                .collect();
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            bail!("test file {} does not exist", path.display());
        }
    }
    Ok(files)
}

/// A policy config sitting beside the test files is not a test file.
fn is_config(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| !t.lines().any(|l| l.trim_start().starts_with("[[case]]")))
}

type CaseResult = (String, std::result::Result<String, String>);

fn run_file(path: &Path, jobs: usize) -> Result<Vec<CaseResult>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let test: TestFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid test file {}: {e}", path.display()))?;
    if test.cases.is_empty() {
        bail!("{} has no [[case]]", path.display());
    }
    let dir = portcullis_host::config::base_dir(path);
    let gate = setup::gate_from_config(&dir.join(&test.config))?;
    let script = approval_script(&test, &dir, path)?;
    let traffic: Vec<PathBuf> = test.traffic.iter().map(|t| dir.join(t)).collect();
    for t in &traffic {
        if !t.exists() {
            bail!("traffic file {} (from {}) does not exist", t.display(), path.display());
        }
    }
    // One replay per distinct principal.
    let mut runs: Vec<(Option<PrincipalSpec>, Vec<EntryResult>)> = Vec::new();
    let mut results = Vec::new();
    for case in &test.cases {
        let principal = case.principal.clone().or_else(|| test.principal.clone());
        if !runs.iter().any(|(p, _)| *p == principal) {
            let identity = match &principal {
                Some(p) => IdentityMode::Fixed(p.principal()),
                None => IdentityMode::Recorded,
            };
            let replay = Replay {
                gate: &gate,
                baseline: None,
                identity,
                jobs,
                progress: false,
                keep_originals: false,
                strict: false,
                approvals: script.as_ref(),
            };
            let mut entries = Vec::new();
            let file_errors = replay.run(&traffic, |e| entries.push(e))?;
            if let Some(e) = file_errors.first() {
                bail!("{}: {}", e.source, e.message);
            }
            runs.push((principal.clone(), entries));
        }
        let entries = &runs.iter().find(|(p, _)| *p == principal).map(|(_, e)| e).expect("just added");
        results.push((case.name.clone(), check_case(case, entries)));
    }
    Ok(results)
}

/// The test file's `approve_as` and `approvals`, checked against its config's
/// `[approvals.groups]`; a case that expects an approval outcome needs one of them.
fn approval_script(test: &TestFile, dir: &Path, path: &Path) -> Result<Option<ApprovalScript>> {
    let expects = test.cases.iter().any(|c| c.expect.approval.is_some() || c.expect.approved_by.is_some());
    if test.approve_as.is_empty() && test.approvals.is_none() {
        if expects {
            bail!(
                "{}: a case expects `approval` or `approved_by`, but the file names no approvers (`approve_as` or \
                 `approvals`)",
                path.display()
            );
        }
        return Ok(None);
    }
    let config_path = dir.join(&test.config);
    let config = portcullis_host::Config::read(&config_path)?;
    let groups = config.approvals.as_ref().map(|a| a.groups.clone()).unwrap_or_default();
    if groups.is_empty() {
        bail!("{}: `approve_as`/`approvals` need [approvals.groups] in {}", path.display(), config_path.display());
    }
    let file = test.approvals.as_ref().map(|f| dir.join(f));
    let script = ApprovalScript::new(ApproverGroups::new(groups), &test.approve_as, file.as_deref())
        .with_context(|| format!("{}", path.display()))?;
    Ok(Some(script))
}

fn check_case(case: &Case, entries: &[EntryResult]) -> std::result::Result<String, String> {
    let select = case.select.compile()?;
    let mut selected = 0;
    let mut failures = Vec::new();
    for entry in entries {
        let passage = match &entry.outcome {
            EntryOutcome::Evaluated { passage, .. } => Some(&**passage),
            EntryOutcome::ReadError(_) => None,
        };
        if !select.matches(&entry.source, entry.index, passage) {
            continue;
        }
        selected += 1;
        let id = crate::replay::render::entry_id(entry);
        let passage = match &entry.outcome {
            EntryOutcome::ReadError(e) => {
                failures.push(format!("{id}: could not be read: {e}"));
                continue;
            }
            EntryOutcome::Evaluated { passage, .. } => passage,
        };
        let met = expectation_met(&case.expect, &Signature::of(passage))
            .and_then(|()| approval_met(&case.expect, entry.approval.as_deref()));
        if let Err(why) = met {
            failures.push(format!("{id} {}: {why}", passage.request_line));
        }
    }
    if selected == 0 {
        return Err("selects no entry; check `select`".into());
    }
    if failures.is_empty() {
        return Ok(format!("{selected} entr{}", if selected == 1 { "y" } else { "ies" }));
    }
    let shown: Vec<&String> = failures.iter().take(5).collect();
    let more = if failures.len() > 5 { format!("\n… and {} more", failures.len() - 5) } else { String::new() };
    Err(format!(
        "{} of {selected} selected entries differ:\n{}{more}",
        failures.len(),
        shown.into_iter().cloned().collect::<Vec<_>>().join("\n")
    ))
}

fn expectation_met(expect: &Expectation, sig: &Signature) -> std::result::Result<(), String> {
    let phases: Vec<&PhaseSignature> = match expect.phase {
        Some(PhaseName::Request) => vec![&sig.request],
        Some(PhaseName::Response) => match &sig.response {
            Some(r) => vec![r],
            None => return Err("no response phase ran (no response recorded, or the request was not forwarded)".into()),
        },
        None => std::iter::once(&sig.request).chain(sig.response.as_ref()).collect(),
    };
    let decision = match expect.phase {
        Some(_) => phases[0].decision,
        None => sig.overall(),
    };
    let got = || format!("got {}", describe(&phases, decision));
    if decision != expect.decision {
        return Err(format!("expected {}, {}", expect.decision, got()));
    }
    let deciding = phases.iter().find(|p| p.decision == decision);
    if let Some(code) = &expect.code
        && deciding.and_then(|p| p.code.as_ref()) != Some(code)
    {
        return Err(format!("expected code {code}, {}", got()));
    }
    if let Some(status) = expect.status
        && deciding.and_then(|p| p.status) != Some(status)
    {
        return Err(format!("expected status {status}, {}", got()));
    }
    if let Some(group) = &expect.approver_group
        && deciding.and_then(|p| p.approver_group.as_ref()) != Some(group)
    {
        return Err(format!("expected approver group {group}, {}", got()));
    }
    let redacted: Vec<&String> = phases.iter().flat_map(|p| p.redacted.iter()).collect();
    for target in &expect.redacted {
        let target = if target.starts_with('/') { format!("json:{target}") } else { target.clone() };
        if !redacted.iter().any(|r| **r == target) {
            return Err(format!("expected {target} to be redacted, {}", got()));
        }
    }
    Ok(())
}

/// `expect.approval` and `expect.approved_by` against what became of a held entry.
fn approval_met(expect: &Expectation, round: Option<&ApprovalRound>) -> std::result::Result<(), String> {
    if expect.approval.is_none() && expect.approved_by.is_none() {
        return Ok(());
    }
    let Some(round) = round else {
        return Err("expected an approval outcome, but the entry was not held for approval".into());
    };
    if let Some(outcome) = expect.approval
        && round.outcome != outcome
    {
        return Err(format!("expected approval {}, got {}", outcome.as_str(), round.line()));
    }
    if let Some(by) = &expect.approved_by
        && !round.groups.iter().all(|g| g.by.as_ref() == Some(by))
    {
        return Err(format!("expected every approval decided by {by}, got {}", round.line()));
    }
    Ok(())
}

fn describe(phases: &[&PhaseSignature], overall: DecisionKind) -> String {
    let phase = phases.iter().find(|p| p.decision == overall).unwrap_or(&phases[0]);
    let reason = if phase.reason.is_empty() { String::new() } else { format!(" ({})", phase.reason) };
    format!("{}{reason}", phase.short())
}
