//! Issue 6's comparison suite, one criterion run, every figure beside its baseline:
//!
//! - `decide_agent_guard`, `decide_scopes`: the whole request corpus (the shared traffic and
//!   synthetic requests, each as five kinds of caller) through native Rust, Cedar, Rego
//!   (interpreter and compiled VM) and the Wasm component (reused and fresh instance);
//!   every variant is first checked to decide exactly alike on every request;
//! - `redact_1k`, `redact_64k`, `redact_1m`: JSON-pointer redaction of a response and a
//!   request body against a serde_json `Value` parse + write of the same body;
//! - `policy_set`: one route with 1, 4 and 16 policies (fresh instances, all allow);
//! - `instance_floor`: a store and an instance of each component created and dropped with no
//!   call, the floor under any fresh decision;
//! - `replay`: the shared traffic through a gate with the header-only policies (`scopes`,
//!   `agent-guard`) as an agent acting for a user, against reading it alone, with fresh
//!   instances and with `reuse`;
//! - `cold_start`: 10 policies loaded from a warm compile cache (with and without creating
//!   the engine), against reading and hashing their files.
//!
//! Then the memory of live instances is measured and the ratio table and the issue's
//! targets are printed. Run it all with `scripts/bench.sh` (it builds the components).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use portcullis_compare::cedar::{CedarGuard, CedarScopes};
use portcullis_compare::native::{NativeGuard, NativeScopes};
use portcullis_compare::rego::{RegoInterpreter, RegoVm, Rules};
use portcullis_compare::*;
use portcullis_host::decision::{Action, Redaction, Target};
use portcullis_host::exchange::{Body, Exchange};
use portcullis_host::{Capability, Engine, PolicySet, PolicySpec, Request, Response, RouteSpec};

const VARIANTS: [&str; 6] = ["native", "cedar", "rego_interpreter", "rego_vm", "wasm_reused", "wasm_fresh"];
const SIZES: [(&str, usize); 3] = [("1k", 1 << 10), ("64k", 64 << 10), ("1m", 1 << 20)];
const SET_SIZES: [usize; 3] = [1, 4, 16];

fn decide(c: &mut Criterion, group: &str, requests: &[Request], variants: &mut [&mut dyn Variant]) {
    let compared = check_agreement(variants, requests).unwrap_or_else(|e| panic!("{group}: {e}"));
    eprintln!("{group}: {} variants agree on all {} requests ({compared} comparisons)", variants.len(), requests.len());
    let mut g = c.benchmark_group(group);
    // Each iteration is the whole corpus (milliseconds): flat sampling keeps the run short.
    g.throughput(Throughput::Elements(requests.len() as u64)).sampling_mode(SamplingMode::Flat).sample_size(30);
    for v in variants.iter_mut() {
        let name = v.name();
        g.bench_function(name, |b| {
            b.iter(|| {
                for r in requests {
                    black_box(v.decide(black_box(r)));
                }
            })
        });
    }
    g.finish();
}

fn decisions(c: &mut Criterion, engine: &Engine, requests: &[Request]) {
    let guard = load_wasm(engine, "agent-guard", AGENT_GUARD_SETTINGS);
    let rules = Rules::agent_guard(&guard_settings());
    decide(
        c,
        "decide_agent_guard",
        requests,
        &mut [
            &mut NativeGuard(guard_settings()),
            &mut CedarGuard::new(guard_settings()),
            &mut RegoInterpreter::new(&rules),
            &mut RegoVm::new(&rules),
            &mut WasmReused(guard.reusable_instance().unwrap()),
            &mut WasmFresh(&guard),
        ],
    );
    let scopes = load_wasm(engine, "scopes", SCOPES_SETTINGS);
    let rules = Rules::scopes(&scope_settings());
    decide(
        c,
        "decide_scopes",
        requests,
        &mut [
            &mut NativeScopes(scope_settings()),
            &mut CedarScopes::new(scope_settings()),
            &mut RegoInterpreter::new(&rules),
            &mut RegoVm::new(&rules),
            &mut WasmReused(scopes.reusable_instance().unwrap()),
            &mut WasmFresh(&scopes),
        ],
    );
}

/// A customer list of about `size` bytes, as an API returns it.
fn json_body(size: usize) -> Vec<u8> {
    let mut out = String::from("{\"page\":1,\"customers\":[");
    let mut i = 0;
    while out.len() + 260 < size || i == 0 {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"id\":\"c-{i:06}\",\"name\":\"Customer {i}\",\"email\":\"customer{i}@example.com\",\"phone\":\"+1-555-{:04}\",\
             \"address\":{{\"street\":\"{i} Main Street\",\"city\":\"Springfield\",\"zip\":\"{:05}\"}},\"tags\":[\"b2b\",\"eu\"],\
             \"balance\":{}.{:02},\"active\":true}}",
            i % 10_000,
            i % 100_000,
            i * 7 % 10_000,
            i % 100
        ));
        i += 1;
    }
    out.push_str("],\"next\":null}");
    while out.len() < size {
        out.insert(out.len() - 1, ' ');
    }
    out.into_bytes()
}

fn redactions() -> Vec<Redaction> {
    vec![
        Redaction { target: Target::JsonPointer("/customers/*/email".into()), action: Action::Remove },
        Redaction {
            target: Target::JsonPointer("/customers/*/phone".into()),
            action: Action::Replace("[redacted]".into()),
        },
    ]
}

/// The same two fields by member name at any depth (contract 0.2's `json-name`), which
/// makes the applier look at every member instead of following the pointers.
fn name_redactions() -> Vec<Redaction> {
    vec![
        Redaction { target: Target::JsonName("email".into()), action: Action::Remove },
        Redaction { target: Target::JsonName("phone".into()), action: Action::Replace("[redacted]".into()) },
    ]
}

fn redaction(c: &mut Criterion) {
    let redactions = redactions();
    let by_name = name_redactions();
    for (label, size) in SIZES {
        let bytes = json_body(size);
        let body = Body { content_type: Some("application/json".into()), bytes: bytes.clone(), truncated: false };
        let headers = vec![("content-type".to_owned(), "application/json".to_owned())];
        let response = Response { status: 200, headers: headers.clone(), body: Some(body.clone()) };
        let mut request: Request = serde_json::from_value(serde_json::json!({
            "method": "POST", "url": "https://crm.example.com/import", "headers": {"content-type": "application/json"}
        }))
        .unwrap();
        request.body = Some(body);
        // The redaction must change what it targets and keep valid JSON.
        let mut check = response.clone();
        let applied = portcullis_host::redact::apply_to_response(&mut check, &redactions).expect("redacts");
        assert!(applied.body_changed && !applied.changes.is_empty());
        let mut named = response.clone();
        portcullis_host::redact::apply_to_response(&mut named, &by_name).expect("redacts by name");
        assert_eq!(named.body, check.body, "names and pointers redact this body alike");
        serde_json::from_slice::<serde_json::Value>(&check.body.unwrap().bytes).expect("still JSON");

        let mut g = c.benchmark_group(format!("redact_{label}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        if size >= 1 << 20 {
            g.sample_size(30).measurement_time(Duration::from_secs(6));
        }
        g.bench_function("serde_parse_write", |b| {
            b.iter(|| {
                let value: serde_json::Value = serde_json::from_slice(black_box(&bytes)).unwrap();
                black_box(serde_json::to_vec(&value).unwrap())
            })
        });
        g.bench_function("response", |b| {
            b.iter_batched_ref(
                || response.clone(),
                |r| portcullis_host::redact::apply_to_response(r, &redactions).unwrap(),
                BatchSize::LargeInput,
            )
        });
        g.bench_function("request", |b| {
            b.iter_batched_ref(
                || request.clone(),
                |r| portcullis_host::redact::apply_to_request(r, &redactions).unwrap(),
                BatchSize::LargeInput,
            )
        });
        g.bench_function("response_json_name", |b| {
            b.iter_batched_ref(
                || response.clone(),
                |r| portcullis_host::redact::apply_to_response(r, &by_name).unwrap(),
                BatchSize::LargeInput,
            )
        });
        g.finish();
    }
}

fn user_request() -> Request {
    let mut r: Request = serde_json::from_value(serde_json::json!({
        "method": "GET", "url": "https://api.example.com/invoices/inv-1001",
        "headers": {"host": "api.example.com", "accept": "application/json", "user-agent": "crm-sync/4.2"}
    }))
    .unwrap();
    r.principal = principals()[1].clone();
    r
}

fn policy_set(c: &mut Criterion, engine: &Engine) {
    let request = user_request();
    let mut g = c.benchmark_group("policy_set");
    for n in SET_SIZES {
        let mut builder = PolicySet::builder(engine);
        let mut names = Vec::new();
        for i in 0..n {
            let (component, settings) =
                if i % 2 == 0 { ("scopes", SCOPES_SETTINGS) } else { ("agent-guard", AGENT_GUARD_SETTINGS) };
            let name = format!("{component}-{i}");
            builder = builder.policy(spec(name.clone(), component, settings)).unwrap();
            names.push(name);
        }
        let set = builder
            .route(RouteSpec { name: "invoices".into(), policies: names, ..RouteSpec::default() })
            .build()
            .unwrap();
        let verdict = set.evaluate_request(&request);
        assert!(verdict.is_allowed() && verdict.policies.len() == n, "all {n} policies run and allow: {verdict:?}");
        g.bench_function(format!("{n}"), |b| b.iter(|| set.evaluate_request(black_box(&request))));
    }
    g.finish();
}

fn read_all(files: &[std::path::PathBuf], mut each: impl FnMut(Exchange)) {
    for file in files {
        portcullis_host::adapters::traffic::read_traffic(file, |item| {
            if let Ok(exchange) = item.result {
                each(exchange);
            }
        })
        .unwrap();
    }
}

fn replay(c: &mut Criterion, engine: &Engine) {
    let gate = header_only_gate(engine, false);
    let warm = header_only_gate(engine, true);
    let identity = replay_identity();
    let files = traffic_files();
    let mut exchanges = Vec::new();
    read_all(&files, |e| exchanges.push(e));
    let evaluated = exchanges.iter().filter(|e| gate.pass((*e).clone(), &identity).request.is_some()).count();
    assert_eq!(evaluated, exchanges.len(), "every entry reaches the policies");
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(exchanges.len() as u64));
    g.bench_function("read", |b| b.iter(|| read_all(&files, |e| drop(black_box(e)))));
    g.bench_function("evaluate", |b| {
        b.iter_batched(
            || exchanges.clone(),
            |batch| {
                for e in batch {
                    black_box(gate.pass(e, &identity));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("read_and_evaluate", |b| {
        b.iter(|| read_all(&files, |e| drop(black_box(gate.pass(e, &identity)))))
    });
    g.bench_function("read_and_evaluate_reused", |b| {
        b.iter(|| read_all(&files, |e| drop(black_box(warm.pass(e, &identity)))))
    });
    g.finish();
}

/// What a fresh decision cannot go below: a store and an instance of the policy's
/// component, created and dropped (the memory reset) with no call at all.
fn instance_floor(c: &mut Criterion, engine: &Engine) {
    let mut g = c.benchmark_group("instance_floor");
    for name in ["agent-guard", "scopes"] {
        let bytes = std::fs::read(component(name)).unwrap();
        let compiled = engine.compile(&bytes).unwrap();
        let mut linker = wasmtime::component::Linker::<()>::new(engine.wasmtime());
        linker.define_unknown_imports_as_traps(&compiled).unwrap();
        let pre = linker.instantiate_pre(&compiled).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut store = wasmtime::Store::new(engine.wasmtime(), ());
                store.set_epoch_deadline(1_000_000); // the engine interrupts on epochs
                black_box(pre.instantiate(&mut store).unwrap());
            })
        });
    }
    g.finish();
}

/// Ten policies over the four reference components, with the settings and grants each needs.
fn ten_specs() -> Vec<PolicySpec> {
    let pii = r#"{"fields": ["/author/firstname", "/*/name"], "mask": "[redacted]"}"#;
    let rate = r#"{"limit": 100, "window_seconds": 60}"#;
    (0..10)
        .map(|i| {
            let (component, settings) = match i % 4 {
                0 => ("agent-guard", AGENT_GUARD_SETTINGS),
                1 => ("scopes", SCOPES_SETTINGS),
                2 => ("pii-redact", pii),
                _ => ("rate-limit", rate),
            };
            let mut s = spec(format!("{component}-{i}"), component, settings);
            if component == "rate-limit" {
                s.capabilities = vec![Capability::RateLimit];
            }
            s
        })
        .collect()
}

fn load_ten(engine: &Engine) -> PolicySet {
    let mut builder = PolicySet::builder(engine);
    for s in ten_specs() {
        builder = builder.policy(s).unwrap();
    }
    builder.build().unwrap()
}

fn cold_start(c: &mut Criterion, engine: &Engine) {
    drop(load_ten(engine)); // warms the compile cache
    let files: Vec<_> = ten_specs().into_iter().map(|s| component(&s.name[..s.name.rfind('-').unwrap()])).collect();
    let mut g = c.benchmark_group("cold_start");
    g.sample_size(20).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(4));
    g.bench_function("read_and_hash", |b| {
        b.iter(|| {
            for f in &files {
                black_box(portcullis_host::sha256_hex(&std::fs::read(f).unwrap()));
            }
        })
    });
    g.bench_function("ten_policies", |b| b.iter(|| load_ten(engine)));
    g.bench_function("engine_and_ten_policies", |b| b.iter(|| load_ten(&portcullis_compare::engine())));
    g.finish();
}

/// Resident set size of this process in bytes.

// ------------------------------------------------------------------------------------
// The report: medians of this run as ratios to their baselines, and the issue's targets.
// ------------------------------------------------------------------------------------

fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = root().join("target/criterion").join(group).join(id).join("new/estimates.json");
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    value["median"]["point_estimate"].as_f64()
}

struct Goal {
    what: String,
    met: bool,
    figure: String,
}

fn report(requests: usize, body_sizes: &[usize], replay_entries: usize, memory: &[(&str, (f64, f64))]) {
    let mut targets = Vec::new();
    println!("\n=== Portcullis comparison suite: medians of this run, as ratios to their baselines ===");
    for (group, rule) in [("decide_agent_guard", "agent-guard"), ("decide_scopes", "scopes")] {
        let Some(base) = median_ns(group, "native") else { continue };
        let per = |id| median_ns(group, id).map(|ns| ns / requests as f64);
        println!("\n{rule}: per decision over {requests} requests (native = 1.0×)");
        for id in VARIANTS {
            if let Some(ns) = per(id) {
                println!("  {id:<18} {:>10.3} µs {:>9.1}× native", ns / 1000.0, ns / (base / requests as f64));
            }
        }
        if let (Some(fresh), Some(cedar)) = (per("wasm_fresh"), per("cedar")) {
            let r = fresh / cedar;
            println!("  wasm_fresh / cedar     {r:>6.2}×   (target ≤ 0.7×)");
            let mut figure = format!("{:.2} µs vs {:.2} µs = {r:.2}×", fresh / 1e3, cedar / 1e3);
            if let Some(floor) = median_ns("instance_floor", rule) {
                println!(
                    "  instance alone (floor) {:>6.2}×   {:.3} µs: store + instance + reset, no call",
                    floor / cedar,
                    floor / 1e3
                );
                figure.push_str(&format!("; floor (instance alone) {:.2} µs = {:.2}×", floor / 1e3, floor / cedar));
            }
            targets.push(Goal { what: format!("{rule}: fresh isolated ≤ 0.7× Cedar"), met: r <= 0.7, figure });
        }
        if let (Some(reused), Some(vm)) = (per("wasm_reused"), per("rego_vm")) {
            let r = reused / vm;
            println!("  wasm_reused / rego_vm  {r:>6.2}×   (target ≤ 1.0×)");
            targets.push(Goal {
                what: format!("{rule}: reused ≤ 1.0× regorus RVM"),
                met: r <= 1.0,
                figure: format!("{:.2} µs vs {:.2} µs = {r:.2}×", reused / 1e3, vm / 1e3),
            });
        }
    }
    println!(
        "\nJSON redaction (2 pointers with *, remove + replace; the same 2 fields by json-name) vs serde_json Value parse + write"
    );
    for ((label, _), bytes) in SIZES.iter().zip(body_sizes) {
        let group = format!("redact_{label}");
        let Some(base) = median_ns(&group, "serde_parse_write") else { continue };
        let mbps = |ns: f64| *bytes as f64 / ns * 1e3;
        println!("  {label:>4} serde parse+write {:>10.1} µs {:>8.0} MB/s   1.0×", base / 1e3, mbps(base));
        for id in ["response", "request", "response_json_name"] {
            if let Some(ns) = median_ns(&group, id) {
                println!(
                    "  {label:>4} redact {id:<18} {:>10.1} µs {:>8.0} MB/s {:>5.2}×",
                    ns / 1e3,
                    mbps(ns),
                    ns / base
                );
                if *label == "1m" && id == "response" {
                    targets.push(Goal {
                        what: "1 MiB JSON redaction ≥ 300 MB/s".into(),
                        met: mbps(ns) >= 300.0,
                        figure: format!("{:.0} MB/s", mbps(ns)),
                    });
                    targets.push(Goal {
                        what: "1 MiB JSON redaction ≤ 2× serde_json parse+write".into(),
                        met: ns / base <= 2.0,
                        figure: format!("{:.2}× ({:.0} MB/s vs {:.0} MB/s)", ns / base, mbps(ns), mbps(base)),
                    });
                }
            }
        }
    }
    if let Some(one) = median_ns("policy_set", "1") {
        println!("\nOne route with N policies (fresh instances, all allow), vs 1 policy");
        for n in SET_SIZES {
            if let Some(ns) = median_ns("policy_set", &n.to_string()) {
                println!(
                    "  {n:>2} policies {:>10.2} µs {:>6.1}×   {:.2} µs per policy",
                    ns / 1e3,
                    ns / one,
                    ns / 1e3 / n as f64
                );
            }
        }
    }
    if let Some(read) = median_ns("replay", "read") {
        println!("\nReplay of the shared traffic ({replay_entries} entries), header-only policies, one core");
        let rate = |ns: f64| replay_entries as f64 / ns * 1e9;
        println!("  read only           {:>10.0} entries/s   1.0× time", rate(read));
        for id in ["evaluate", "read_and_evaluate", "read_and_evaluate_reused"] {
            if let Some(ns) = median_ns("replay", id) {
                println!("  {id:<19} {:>10.0} entries/s {:>5.1}× time", rate(ns), ns / read);
            }
        }
        if let Some(ns) = median_ns("replay", "read_and_evaluate") {
            let mut figure = format!("{:.0} entries/s ({:.1} µs/entry)", rate(ns), ns / 1e3 / replay_entries as f64);
            if let Some(warm) = median_ns("replay", "read_and_evaluate_reused") {
                figure.push_str(&format!("; with reuse {:.0}/s", rate(warm)));
            }
            targets.push(Goal {
                what: "replay ≥ 50,000 entries/s per core (header-only)".into(),
                met: rate(ns) >= 50_000.0,
                figure,
            });
        }
    }
    if let Some(base) = median_ns("cold_start", "read_and_hash") {
        println!("\nCold start of 10 policies from a warm compile cache, vs reading and hashing their files");
        println!("  read_and_hash            {:>8.2} ms   1.0×", base / 1e6);
        for id in ["ten_policies", "engine_and_ten_policies"] {
            if let Some(ns) = median_ns("cold_start", id) {
                println!("  {id:<24} {:>8.2} ms {:>5.1}×", ns / 1e6, ns / base);
            }
        }
        if let Some(ns) = median_ns("cold_start", "engine_and_ten_policies") {
            targets.push(Goal {
                what: "cold start of 10 cached policies ≤ 20 ms".into(),
                met: ns <= 20e6,
                figure: format!("{:.2} ms with the engine", ns / 1e6),
            });
        }
    }
    println!("\nMemory per live instance (after one call each)");
    println!("  {:<12} {:>12} {:>26}", "", "private", "resident (+ shared image)");
    for (name, (resident, private)) in memory {
        println!("  {name:<12} {:>8.1} KiB {:>22.1} KiB", private / 1024.0, resident / 1024.0);
        targets.push(Goal {
            what: format!("memory per live instance ≤ 64 KiB ({name})"),
            met: *private <= 65536.0,
            figure: format!(
                "{:.1} KiB private ({:.1} KiB resident with shared image pages)",
                private / 1024.0,
                resident / 1024.0
            ),
        });
    }
    println!("\nTargets of issue 6");
    for t in &targets {
        println!("  {:<8} {:<52} {}", if t.met { "met" } else { "NOT MET" }, t.what, t.figure);
    }
}

fn main() {
    let mut criterion = Criterion::default().output_directory(&root().join("target/criterion")).configure_from_args();
    let test_mode = std::env::args().any(|a| a == "--test");
    let engine = engine();
    let requests = corpus();
    decisions(&mut criterion, &engine, &requests);
    instance_floor(&mut criterion, &engine);
    redaction(&mut criterion);
    policy_set(&mut criterion, &engine);
    replay(&mut criterion, &engine);
    cold_start(&mut criterion, &engine);
    criterion.final_summary();
    if test_mode {
        return;
    }
    let memory = [
        (
            "agent-guard",
            memory_per_instance(&load_wasm(&engine, "agent-guard", AGENT_GUARD_SETTINGS), &user_request(), 200),
        ),
        ("scopes", memory_per_instance(&load_wasm(&engine, "scopes", SCOPES_SETTINGS), &user_request(), 200)),
    ];
    let sizes: Vec<usize> = SIZES.iter().map(|(_, s)| json_body(*s).len()).collect();
    let mut entries = 0;
    read_all(&traffic_files(), |_| entries += 1);
    report(requests.len(), &sizes, entries, &memory);
}
