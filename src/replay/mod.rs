//! Replaying recorded traffic through a gate (and optionally a baseline gate), in parallel
//! when asked, delivering results in input order.

pub mod approve;
pub mod diff;
pub mod mcp;
pub mod render;
pub mod select;
pub mod signature;
pub mod summary;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use anyhow::Result;
use portcullis_host::Exchange;
use portcullis_host::adapters::traffic::Locator;
use portcullis_host::exchange::Principal;
use portcullis_host::gate::{Gate, Identity, Passage};

use self::approve::{ApprovalRound, ApprovalScript};

/// How the principal of each entry is established.
#[derive(Debug, Clone)]
pub enum IdentityMode {
    /// From the recorded credentials (or a principal recorded in JSONL), with tokens
    /// checked at the entry's recorded time (or now, when none was recorded).
    Recorded,
    /// From the recorded credentials, with tokens checked at this time.
    At(u64),
    /// This principal for every entry.
    Fixed(Principal),
}

impl IdentityMode {
    /// The identity an entry is evaluated with.
    pub fn identity(&self, exchange: &Exchange) -> Identity {
        match self {
            IdentityMode::Fixed(p) => Identity::Fixed(p.clone()),
            IdentityMode::At(t) => Identity::Credentials { now_unix_s: *t },
            IdentityMode::Recorded => {
                let recorded = exchange.request.received_at_ms / 1000;
                let now = if recorded > 0 { recorded } else { portcullis_host::now_ms() / 1000 };
                Identity::Recorded { now_unix_s: now }
            }
        }
    }
}

/// One replayed entry.
#[derive(Debug, Clone)]
pub struct EntryResult {
    /// The file it came from, as given.
    pub source: Arc<str>,
    /// Its 0-based index in that file (entry for HAR, non-blank line for JSONL).
    pub index: usize,
    /// Where it is in the file: a HAR entry index (0-based) or a JSONL line (1-based).
    pub at: Locator,
    /// How reports name it: `capture.har#3` (HAR entry index, 0-based), the JSONL line's
    /// own request `id` when it has one, else `calls.jsonl:7` (JSONL line, 1-based).
    pub name: String,
    /// What happened.
    pub outcome: EntryOutcome,
    /// The entry as recorded, when the replay keeps originals (for redaction diffs).
    pub original: Option<Box<Exchange>>,
    /// With scripted approvals: how the approvals it waited for were answered, and what
    /// became of it.
    pub approval: Option<Box<ApprovalRound>>,
    /// For a recorded MCP call: its protocol generation and whether it was a Multi
    /// Round-Trip retry.
    pub mcp: Option<mcp::McpEntry>,
}

/// What happened to one entry.
#[derive(Debug, Clone)]
pub enum EntryOutcome {
    /// The entry could not be read (file, index and field are in the message).
    ReadError(String),
    /// It was evaluated, and with the baseline too when one was given.
    Evaluated {
        /// With the policies under test.
        passage: Box<Passage>,
        /// With the baseline policies.
        baseline: Option<Box<Passage>>,
    },
}

/// A read error for a whole file (it could not be opened or stopped parsing).
#[derive(Debug, Clone)]
pub struct FileError {
    /// The file.
    pub source: Arc<str>,
    /// Why.
    pub message: String,
}

/// What to replay and how.
pub struct Replay<'a> {
    /// The policies under test.
    pub gate: &'a Gate,
    /// The baseline, for `--baseline`.
    pub baseline: Option<&'a Gate>,
    /// Who the entries are evaluated as.
    pub identity: IdentityMode,
    /// Worker threads (1: evaluate on the calling thread).
    pub jobs: usize,
    /// Show a progress bar on stderr once the run takes longer than a second.
    pub progress: bool,
    /// Keep each recorded entry beside its result (for `--show-redactions`).
    pub keep_originals: bool,
    /// Stop at the first entry that cannot be read (it is still reported).
    pub strict: bool,
    /// Who answers the approvals entries wait for (`--approve-as`, `--approvals`).
    pub approvals: Option<&'a ApprovalScript>,
}

/// Entries handed to a worker at a time: large enough that channel traffic is noise next
/// to evaluation, small enough that workers stay evenly busy on short files.
const CHUNK: usize = 32;

/// A chunk of read entries from one file, numbered so results can be put back in order.
struct Work {
    seq: u64,
    source: Arc<str>,
    entries: Vec<Read>,
}

/// One entry as read: its index, where it is, and the exchange or why it is unreadable.
type Read = (usize, Locator, Result<Exchange, String>);

impl Replay<'_> {
    /// Replays every file in order, calling `each` with every entry's result in input
    /// order. Returns the file-level errors (the other files still run).
    pub fn run(&self, files: &[impl AsRef<Path> + Sync], mut each: impl FnMut(EntryResult)) -> Result<Vec<FileError>> {
        let progress = Progress::new(self.progress);
        let file_errors = if self.jobs <= 1 {
            self.read_all(files, |source, entries| {
                for read in entries {
                    each(self.evaluate_one(&source, read));
                    progress.advance(1);
                }
            })
        } else {
            self.run_parallel(files, &progress, &mut each)?
        };
        progress.finish();
        Ok(file_errors)
    }

    /// Reads the files in order, handing entries to `chunk` in runs of at most [`CHUNK`]
    /// from one file; stops after the first unreadable entry when strict.
    fn read_all(&self, files: &[impl AsRef<Path>], mut chunk: impl FnMut(Arc<str>, Vec<Read>)) -> Vec<FileError> {
        let mut file_errors = Vec::new();
        let mut stopped = false;
        for file in files {
            if stopped {
                break;
            }
            let path = file.as_ref();
            let source: Arc<str> = path.display().to_string().into();
            let mut entries = Vec::with_capacity(CHUNK);
            let read = portcullis_host::adapters::traffic::read_traffic(path, |item| {
                stopped = self.strict && item.result.is_err();
                entries.push((item.index, item.at, item.result.map_err(|e| e.to_string())));
                if entries.len() == CHUNK {
                    chunk(source.clone(), std::mem::replace(&mut entries, Vec::with_capacity(CHUNK)));
                }
                if stopped { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
            });
            if !entries.is_empty() {
                chunk(source.clone(), entries);
            }
            if let Err(e) = read {
                // The error names the file itself; reports put the path in front once.
                let message = e.to_string();
                let message = message.strip_prefix(&format!("{source}: ")).map_or(message.clone(), str::to_owned);
                file_errors.push(FileError { source, message });
            }
        }
        file_errors
    }

    /// One reader thread, `jobs` workers, and the calling thread putting results back in
    /// input order. The work queue is bounded, so memory stays flat however long the input.
    fn run_parallel(
        &self,
        files: &[impl AsRef<Path> + Sync],
        progress: &Progress,
        each: &mut impl FnMut(EntryResult),
    ) -> Result<Vec<FileError>> {
        let (work_tx, work_rx) = mpsc::sync_channel::<Work>(self.jobs * 4);
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = mpsc::channel::<(u64, Vec<EntryResult>)>();
        std::thread::scope(|scope| {
            for _ in 0..self.jobs {
                let done_tx = done_tx.clone();
                let work_rx = &work_rx;
                scope.spawn(move || {
                    loop {
                        let next = work_rx.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                        let Ok(work) = next else { break };
                        let results =
                            work.entries.into_iter().map(|read| self.evaluate_one(&work.source, read)).collect();
                        if done_tx.send((work.seq, results)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let reader = scope.spawn(move || {
                let mut seq = 0;
                self.read_all(files, |source, entries| {
                    // A send fails only when every worker has gone; the results say so below.
                    let _ = work_tx.send(Work { seq, source, entries });
                    seq += 1;
                })
            });
            let mut next = 0u64;
            let mut waiting = BTreeMap::new();
            for (seq, results) in done_rx {
                waiting.insert(seq, results);
                while let Some(results) = waiting.remove(&next) {
                    progress.advance(results.len());
                    results.into_iter().for_each(&mut *each);
                    next += 1;
                }
            }
            let file_errors = reader.join().map_err(|_| anyhow::anyhow!("the traffic reader thread panicked"))?;
            if !waiting.is_empty() {
                anyhow::bail!("a replay worker panicked; results after entry chunk {next} were not reported");
            }
            Ok(file_errors)
        })
    }

    fn evaluate_one(&self, source: &Arc<str>, (index, at, entry): Read) -> EntryResult {
        let name = entry_name(source, at, entry.as_ref().ok());
        let original = match (&entry, self.keep_originals) {
            (Ok(exchange), true) => Some(Box::new(exchange.clone())),
            _ => None,
        };
        let mut approval = None;
        let mcp = entry.as_ref().ok().and_then(mcp::McpEntry::of);
        let outcome = match entry {
            Err(message) => EntryOutcome::ReadError(message),
            Ok(exchange) => {
                let identity = self.identity.identity(&exchange);
                let baseline = self.baseline.map(|gate| Box::new(gate.pass(exchange.clone(), &identity)));
                let passage = match self.approvals {
                    Some(script) => {
                        let passage = Box::new(self.gate.pass(exchange.clone(), &identity));
                        approval =
                            script.round(self.gate, &exchange, &identity, (source, index), &passage).map(Box::new);
                        passage
                    }
                    None => Box::new(self.gate.pass(exchange, &identity)),
                };
                EntryOutcome::Evaluated { passage, baseline }
            }
        };
        EntryResult { source: source.clone(), index, at, name, outcome, original, approval, mcp }
    }
}

/// An entry's name in reports: `capture.har#3` for HAR (the entry index, 0-based, as in
/// `log.entries[3]`); for JSONL the line's own request `id` when it gives one, else
/// `calls.jsonl:7` (the line number, 1-based), as docs/traffic-formats.md describes.
pub fn entry_name(source: &str, at: Locator, exchange: Option<&Exchange>) -> String {
    let path = Path::new(source);
    let file = path.file_name().map_or_else(|| source.to_owned(), |f| f.to_string_lossy().into_owned());
    match at {
        Locator::Entry(index) => format!("{file}#{index}"),
        Locator::Line(line) => {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            match exchange.map(|e| e.request.id.as_str()) {
                Some(id) if !id.is_empty() && id != format!("{stem}:{line}") => id.to_owned(),
                _ => format!("{file}:{line}"),
            }
        }
    }
}

/// A progress bar that appears only when a run takes longer than a second and stderr is
/// a terminal.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    /// Whether the bar was given its terminal (once; it stays hidden when stderr is not
    /// a terminal).
    shown: std::cell::Cell<bool>,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} entries replayed ({per_sec}) {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Progress { bar, started: Instant::now(), shown: std::cell::Cell::new(false) }
    }

    fn advance(&self, n: usize) {
        if let Some(bar) = &self.bar {
            if !self.shown.get() && self.started.elapsed().as_secs() >= 1 {
                bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                self.shown.set(true);
            }
            bar.inc(n as u64);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
