//! `portcullis bench`: a config's policies measured on the user's own recorded traffic:
//! p50/p99 per policy and phase, and decisions per second through the whole gate.
//!
//! Traffic is read (and principals established) exactly as `replay` does it, but held in
//! memory first so reading is never timed. Everything runs on the calling thread.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use portcullis_host::Engine;
use portcullis_host::config::base_dir;
use portcullis_host::exchange::{Exchange, Request};
use portcullis_host::gate::Identity;
use portcullis_host::{Config, Policy, PolicySet};
use serde::Serialize;

use crate::cli::{BenchArgs, Format};
use crate::setup;

/// Latency figures of one measured thing, in microseconds.
#[derive(Debug, Serialize)]
struct Stats {
    calls: usize,
    p50_us: f64,
    p99_us: f64,
    mean_us: f64,
    per_second: f64,
}

impl Stats {
    fn of(mut samples: Vec<u64>) -> Stats {
        samples.sort_unstable();
        let calls = samples.len();
        let at = |q: usize| samples.get((calls.saturating_sub(1) * q) / 100).copied().unwrap_or(0) as f64 / 1e3;
        let total: u64 = samples.iter().sum();
        let mean_ns = if calls == 0 { 0.0 } else { total as f64 / calls as f64 };
        Stats {
            calls,
            p50_us: at(50),
            p99_us: at(99),
            mean_us: mean_ns / 1e3,
            per_second: if total == 0 { 0.0 } else { calls as f64 * 1e9 / total as f64 },
        }
    }
}

/// One policy's figures for one phase.
#[derive(Debug, Serialize)]
struct PolicyStats {
    policy: String,
    phase: &'static str,
    /// How its calls get an instance: `fresh`, `fresh, pre-initialised` or `reused`, since
    /// that is most of what a call costs.
    instances: &'static str,
    /// Calls that faulted (they count as denies in the gate); timed like the others.
    faults: usize,
    #[serde(flatten)]
    stats: Stats,
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    files: usize,
    entries: usize,
    unreadable: usize,
    rounds: u32,
    load_ms: f64,
    gate: Stats,
    policies: Vec<PolicyStats>,
}

/// An entry ready to measure: as read, and its request with the principal established.
struct Prepared {
    exchange: Exchange,
    identified: Option<Request>,
}

pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    let identity_mode = super::replay::principal_flags(&args.principal)?;
    for file in &args.traffic {
        if !file.exists() {
            bail!("traffic file {} does not exist", file.display());
        }
    }
    let started = Instant::now();
    let config = Config::read(&args.config)?;
    let engine = Engine::new(&config.engine_config(&base_dir(&args.config)))?;
    let gate = setup::gate_on_engine(&config, &args.config, &engine)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let (entries, unreadable) = read_entries(&args.traffic)?;
    if entries.is_empty() {
        bail!("no readable entry in the traffic given ({unreadable} unreadable)");
    }
    let prepared: Vec<(Prepared, Identity)> = entries
        .into_iter()
        .map(|exchange| {
            let identity = identity_mode.identity(&exchange);
            let mut request = exchange.request.clone();
            let identified = gate.identify(&mut request, &identity).ok().map(|()| request);
            (Prepared { exchange, identified }, identity)
        })
        .collect();

    let mut samples = PolicySamples::new(gate.policy_set());
    let mut gate_samples = Vec::with_capacity(prepared.len() * args.rounds as usize);
    for round in 0..=args.rounds {
        let timed = round > 0; // round 0 warms caches and the pool
        for (entry, identity) in &prepared {
            let exchange = entry.exchange.clone();
            let t = Instant::now();
            let passage = gate.pass(exchange, identity);
            let ns = t.elapsed().as_nanos() as u64;
            std::hint::black_box(passage);
            if timed {
                gate_samples.push(ns);
            }
            samples.measure(gate.policy_set(), entry, timed);
        }
    }
    let report = Report {
        files: args.traffic.len(),
        entries: prepared.len(),
        unreadable,
        rounds: args.rounds,
        load_ms,
        gate: Stats::of(gate_samples),
        policies: samples.into_stats(),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => print!("{}", render(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Each policy's own timings, per phase: `(samples in ns, faults)` by policy, in the order
/// routes list them.
struct PolicySamples<'a> {
    order: Vec<&'a Arc<Policy>>,
    request: Vec<(Vec<u64>, usize)>,
    response: Vec<(Vec<u64>, usize)>,
}

impl<'a> PolicySamples<'a> {
    /// Every policy of the set, once, in the order routes list them.
    fn new(set: &'a PolicySet) -> Self {
        let mut order: Vec<&Arc<Policy>> = Vec::new();
        for route in set.routes() {
            for p in route.policies() {
                if !order.iter().any(|q| q.name() == p.name()) {
                    order.push(p);
                }
            }
        }
        let empty = vec![(Vec::new(), 0); order.len()];
        PolicySamples { order, request: empty.clone(), response: empty }
    }

    /// Calls each policy on the entry's route directly, in each phase it takes part in;
    /// records the times when `timed`.
    fn measure(&mut self, set: &PolicySet, entry: &Prepared, timed: bool) {
        let Some(request) = &entry.identified else { return };
        let route = set.route(request);
        let Some(route) = route.route() else { return };
        for policy in route.policies() {
            let index = self.order.iter().position(|p| p.name() == policy.name()).unwrap_or(0);
            if policy.metadata().request_phase {
                let t = Instant::now();
                let outcome = policy.evaluate_request(request);
                let ns = t.elapsed().as_nanos() as u64;
                if timed {
                    self.request[index].0.push(ns);
                    self.request[index].1 += usize::from(outcome.is_err());
                }
            }
            if let (true, Some(response)) = (policy.metadata().response_phase, &entry.exchange.response) {
                let t = Instant::now();
                let outcome = policy.evaluate_response(request, response);
                let ns = t.elapsed().as_nanos() as u64;
                if timed {
                    self.response[index].0.push(ns);
                    self.response[index].1 += usize::from(outcome.is_err());
                }
            }
        }
    }

    /// The figures of every policy and phase that was called.
    fn into_stats(self) -> Vec<PolicyStats> {
        let mut policies = Vec::new();
        let phases = self.request.into_iter().zip(self.response);
        for (policy, (request, response)) in self.order.into_iter().zip(phases) {
            for (phase, (samples, faults)) in [("request", request), ("response", response)] {
                if !samples.is_empty() {
                    policies.push(PolicyStats {
                        policy: policy.name().to_owned(),
                        phase,
                        instances: instance_mode(policy),
                        faults,
                        stats: Stats::of(samples),
                    });
                }
            }
        }
        policies
    }
}

/// Reads every entry of every file; unreadable entries are counted and left out.
fn read_entries(files: &[impl AsRef<Path>]) -> Result<(Vec<Exchange>, usize)> {
    let mut entries = Vec::new();
    let mut unreadable = 0;
    for file in files {
        let path = file.as_ref();
        portcullis_host::adapters::traffic::read_traffic(path, |item| match item.result {
            Ok(exchange) => entries.push(exchange),
            Err(_) => unreadable += 1,
        })
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok((entries, unreadable))
}

fn instance_mode(policy: &Policy) -> &'static str {
    match (policy.reuse().is_some(), policy.preinitialised()) {
        (true, _) => "reused",
        (false, true) => "fresh, pre-initialised",
        (false, false) => "fresh",
    }
}

fn micros(us: f64) -> String {
    if us >= 1000.0 { format!("{:.2} ms", us / 1e3) } else { format!("{us:.1} µs") }
}

fn render(r: &Report) -> String {
    let mut out = format!(
        "Benchmarked {} entries from {} file(s), {} round(s) each, on one core{}\n",
        r.entries,
        r.files,
        r.rounds,
        if r.unreadable > 0 { format!(" ({} unreadable entries left out)", r.unreadable) } else { String::new() }
    );
    let _ = write!(out, "Loaded the config and its policies in {:.1} ms\n\n", r.load_ms);
    let names: Vec<String> = r.policies.iter().map(|p| format!("policy {} ({})", p.policy, p.phase)).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0).max(34);
    let _ = writeln!(out, "  {:<width$} {:>8} {:>10} {:>10} {:>10}  instances", "", "calls", "p50", "p99", "mean");
    let row = |name: &str, s: &Stats| {
        format!(
            "  {name:<width$} {:>8} {:>10} {:>10} {:>10}\n",
            s.calls,
            micros(s.p50_us),
            micros(s.p99_us),
            micros(s.mean_us)
        )
    };
    out.push_str(&row("gate, whole entry", &r.gate));
    for (p, name) in r.policies.iter().zip(&names) {
        let mut line = row(name, &p.stats);
        line.insert_str(line.len() - 1, &format!("  {}", p.instances));
        if p.faults > 0 {
            line.insert_str(line.len() - 1, &format!("  {} faulted", p.faults));
        }
        out.push_str(&line);
    }
    let _ = writeln!(
        out,
        "\nDecisions per second through the gate: {:.0} (one core; an entry is both phases of one exchange)",
        r.gate.per_second
    );
    out
}
