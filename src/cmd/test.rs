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
use crate::replay::{EntryOutcome, EntryResult, FileError, IdentityMode, Replay};
use crate::setup;

/// A test file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// The policy set, relative to the test file.
    config: PathBuf,
    /// Traffic files, relative to the test file; `*` and `?` match within a path
    /// component (`captures/*.har`).
    traffic: Vec<String>,
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
            Ok(FileReport { notes, broken, results }) => {
                for note in notes {
                    println!("note  {}: {}", file.display(), note.replace('\n', "\n      "));
                }
                for why in broken {
                    failed += 1;
                    println!("FAIL  {}: {}", file.display(), why.replace('\n', "\n      "));
                }
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
                println!("FAIL  {}: the file could not be run\n      {}", file.display(), crate::error_text(&e));
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

/// What running one test file gave.
struct FileReport {
    /// Said about the traffic, not failures: empty files, unreadable entries.
    notes: Vec<String>,
    /// Traffic files that could not be read to the end: each a failure.
    broken: Vec<String>,
    /// Each case and how it went.
    results: Vec<CaseResult>,
}

fn run_file(path: &Path, jobs: usize) -> Result<FileReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let test: TestFile =
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid test file {}: {e}", path.display()))?;
    if test.cases.is_empty() {
        bail!("{} has no [[case]]", path.display());
    }
    let dir = portcullis_host::config::base_dir(path);
    let gate = setup::gate_from_config(&dir.join(&test.config))?;
    let script = approval_script(&test, &dir, path)?;
    let mut traffic = Vec::new();
    for pattern in &test.traffic {
        traffic.extend(traffic_files(&dir, pattern).with_context(|| format!("{}: traffic", path.display()))?);
    }
    // An empty file (no bytes, or only blank space) is said once, not replayed: it has
    // nothing to decide, and a HAR reader would call it broken JSON.
    let mut notes = Vec::new();
    let mut empty = Vec::new();
    traffic.retain(|t| {
        let is_empty = std::fs::read(t).is_ok_and(|bytes| bytes.iter().all(u8::is_ascii_whitespace));
        if is_empty {
            empty.push(t.display().to_string());
        }
        !is_empty
    });
    // One replay per distinct principal.
    let mut runs: Vec<(Option<PrincipalSpec>, Vec<EntryResult>)> = Vec::new();
    let mut results = Vec::new();
    let mut broken = Vec::new();
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
            if runs.is_empty() {
                // Said once per test file, from its first replay (the others read the same).
                broken = file_errors
                    .iter()
                    .map(|e| format!("traffic {} could not be read to its end: {}", e.source, e.message))
                    .collect();
                notes = traffic_notes(&traffic, &empty, &entries, &file_errors);
            }
            runs.push((principal.clone(), entries));
        }
        let entries = &runs.iter().find(|(p, _)| *p == principal).map(|(_, e)| e).expect("just added");
        results.push((case.name.clone(), check_case(case, entries)));
    }
    Ok(FileReport { notes, broken, results })
}

/// The files one `traffic` item names: a path, or a pattern whose `*` and `?` match within
/// one path component (`captures/*.har`, `*/day-?.jsonl`), sorted. A path that does not
/// exist, or a pattern that matches nothing, is an error.
fn traffic_files(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>> {
    if !pattern.contains(['*', '?']) {
        let file = dir.join(pattern);
        if !file.exists() {
            bail!("{} does not exist", file.display());
        }
        return Ok(vec![file]);
    }
    let mut found = vec![dir.to_path_buf()];
    for part in Path::new(pattern).components() {
        let part = part.as_os_str().to_string_lossy();
        if !part.contains(['*', '?']) {
            found = found.into_iter().map(|p| p.join(&*part)).filter(|p| p.exists()).collect();
            continue;
        }
        let mut next = Vec::new();
        for folder in found.iter().filter(|p| p.is_dir()) {
            let entries =
                std::fs::read_dir(folder).with_context(|| format!("cannot read folder {}", folder.display()))?;
            for entry in entries.filter_map(std::result::Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Like a shell: `*` does not match hidden files.
                if !name.starts_with('.') && wildcard(&part, &name) {
                    next.push(entry.path());
                }
            }
        }
        found = next;
    }
    found.retain(|p| p.is_file());
    found.sort();
    if found.is_empty() {
        bail!("`{pattern}` matches no file (in {})", dir.display());
    }
    Ok(found)
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` one.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // The classic two-pointer match, backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// What a test file's traffic says besides its decisions: files with no entries, and
/// entries that could not be read (how many, and why, for the first few). Neither fails
/// the test file; a case that selects an unreadable entry fails.
fn traffic_notes(
    traffic: &[PathBuf],
    empty: &[String],
    entries: &[EntryResult],
    file_errors: &[FileError],
) -> Vec<String> {
    let mut notes: Vec<String> =
        empty.iter().map(|f| format!("traffic {f} is empty (no entries); the other files ran")).collect();
    for file in traffic {
        let source = file.display().to_string();
        let read = entries.iter().filter(|e| *e.source == *source).count();
        if read == 0 && !file_errors.iter().any(|e| *e.source == *source) {
            notes.push(format!("traffic {source} has no entries; the other files ran"));
        }
    }
    let unreadable: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.outcome {
            // The reader's message names the file and the line or entry index.
            EntryOutcome::ReadError(why) => Some(why.clone()),
            EntryOutcome::Evaluated { .. } => None,
        })
        .collect();
    if !unreadable.is_empty() {
        let more =
            if unreadable.len() > 3 { format!("\n… and {} more", unreadable.len() - 3) } else { String::new() };
        notes.push(format!(
            "{} entr{} could not be read; a case that selects by method, path, host or operation skips {}:\n{}{more}",
            unreadable.len(),
            if unreadable.len() == 1 { "y" } else { "ies" },
            if unreadable.len() == 1 { "it" } else { "them" },
            unreadable.iter().take(3).cloned().collect::<Vec<_>>().join("\n")
        ));
    }
    notes
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
                failures.push(format!("could not be read: {e}"));
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

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards_match_within_a_name() {
        for (pattern, name) in [("*.har", "a.har"), ("*", "x"), ("day-?.jsonl", "day-3.jsonl"), ("a*b*c", "aXbYc")] {
            assert!(wildcard(pattern, name), "{pattern} {name}");
        }
        for (pattern, name) in [("*.har", "a.hars"), ("day-?.jsonl", "day-10.jsonl"), ("a*b", "ac"), ("?", "")] {
            assert!(!wildcard(pattern, name), "{pattern} {name}");
        }
    }
}
