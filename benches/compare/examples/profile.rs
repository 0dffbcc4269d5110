//! Runs one thing from the suite in a loop, for a profiler: the suite's criterion runs are
//! too short and too mixed for `perf record`.
//!
//!   cargo build --release --example profile      # from benches/compare/
//!   perf record -g ../../target/release/examples/profile fresh 5
//!   perf report --no-children
//!
//! What: `fresh` / `reused` (agent-guard over the request corpus), `scopes-fresh`,
//! `scopes-reused`, `read` (reading the shared traffic), `replay` (reading and gating it with
//! the header-only policies, as the suite's `replay/read_and_evaluate`), `replay-reused`
//! (the same with `reuse` on both policies). The second argument
//! is how many seconds to run (default 5). Prints the mean time per item at the end.

use std::time::{Duration, Instant};

use portcullis_compare::*;
use portcullis_host::exchange::Exchange;

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "fresh".into());
    let seconds: u64 = args.next().map(|s| s.parse().expect("seconds")).unwrap_or(5);
    let engine = engine();
    let corpus = corpus();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut items = 0u64;
    let mut run = |each: &mut dyn FnMut() -> u64| {
        while Instant::now() < deadline {
            items += each();
        }
    };
    match what.as_str() {
        "fresh" | "reused" | "scopes-fresh" | "scopes-reused" => {
            let (name, settings) = if what.starts_with("scopes") {
                ("scopes", SCOPES_SETTINGS)
            } else {
                ("agent-guard", AGENT_GUARD_SETTINGS)
            };
            let policy = load_wasm(&engine, name, settings);
            eprintln!("{name}: pre-initialised: {}", policy.preinitialised());
            if what.ends_with("reused") {
                let mut instance = policy.reusable_instance().expect("instance");
                run(&mut || {
                    for r in &corpus {
                        std::hint::black_box(instance.evaluate_request(r).expect("call"));
                    }
                    corpus.len() as u64
                });
            } else {
                run(&mut || {
                    for r in &corpus {
                        std::hint::black_box(policy.evaluate_request(r).expect("call"));
                    }
                    corpus.len() as u64
                });
            }
        }
        "read" | "replay" | "replay-reused" => {
            let files = traffic_files();
            let gate = header_only_gate(&engine, what == "replay-reused");
            let identity = replay_identity();
            let gating = what != "read";
            run(&mut || {
                let mut n = 0;
                for file in &files {
                    portcullis_host::adapters::traffic::read_traffic(file, |item| {
                        if let Ok(exchange) = item.result {
                            let exchange: Exchange = exchange;
                            if gating {
                                std::hint::black_box(gate.pass(exchange, &identity));
                            } else {
                                std::hint::black_box(exchange);
                            }
                            n += 1;
                        }
                    })
                    .expect("traffic");
                }
                n
            });
        }
        "memory" => {
            use portcullis_host::Shared;
            for (name, settings) in [("agent-guard", AGENT_GUARD_SETTINGS), ("scopes", SCOPES_SETTINGS)] {
                for preinit in [Some(false), None] {
                    let mut s = spec(name.into(), name, settings);
                    s.preinit = preinit;
                    let policy = portcullis_host::Policy::load(&engine, s, &Shared::default()).unwrap();
                    let (resident, private) = memory_per_instance(&policy, &corpus[0], 200);
                    println!(
                        "{name} preinit={preinit:?}: resident {:.1} KiB, private (RssAnon) {:.1} KiB per instance",
                        resident / 1024.0,
                        private / 1024.0
                    );
                }
            }
            items = 1;
        }
        other => panic!("unknown `{other}`: fresh, reused, scopes-fresh, scopes-reused, read, replay, replay-reused"),
    }
    let per = start.elapsed().as_secs_f64() / items as f64;
    println!("{what}: {items} items, {:.2} µs each", per * 1e6);
}
