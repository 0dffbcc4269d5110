//! The cost of the canonical request target every door computes (`portcullis_host::target`),
//! against baselines measured in the same run: parsing the same target into an `http::Uri`
//! (what every HTTP door does anyway), and percent-decoding its path and query (what the
//! doors did before the target was canonicalised). After criterion finishes, the medians are
//! printed as ratios to the `Uri` baseline.
//!
//!   cargo bench --bench target

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use criterion::Criterion;
use portcullis_host::exchange::{parse_query, percent_decode};
use portcullis_host::target::{TargetRules, canonicalize};

const GROUP: &str = "target";

/// A typical API target: 95 bytes, a few segments, an id, a query of four parameters.
const TYPICAL: &str = "/v1/customers/cus_8f3a9b2c/invoices/inv-1001/lines?expand=tax&limit=50&starting_after=li_42&x=1";

/// One with work in it: dot segments, escapes to normalise, a non-ASCII name.
const DOTTED: &str = "/v1/customers/./cus_8f3a9b2c/../cus_8f3a9b2c/files/caf%c3%a9%20menu.pdf?download=1";

fn benches(c: &mut Criterion) {
    let rules = TargetRules::default();
    let mut group = c.benchmark_group(GROUP);
    group.bench_function("uri_parse", |b| b.iter(|| black_box(TYPICAL).parse::<http::Uri>().unwrap()));
    group.bench_function("percent_decode", |b| {
        b.iter(|| {
            let (path, query) = black_box(TYPICAL).split_once('?').unwrap();
            (percent_decode(path, false), parse_query(query))
        });
    });
    group.bench_function("canonicalize", |b| b.iter(|| canonicalize(black_box(TYPICAL), &rules).unwrap()));
    group.bench_function("canonicalize_with_pairs", |b| {
        b.iter(|| {
            let target = canonicalize(black_box(TYPICAL), &rules).unwrap();
            let pairs = target.query_pairs();
            (target, pairs)
        });
    });
    group.bench_function("canonicalize_dotted", |b| b.iter(|| canonicalize(black_box(DOTTED), &rules).unwrap()));
    group.finish();
}

/// Criterion's median estimate (ns) for one benchmark of this run.
fn median_ns(id: &str) -> Option<f64> {
    common::criterion_median_ns(GROUP, id)
}

fn print_ratios() {
    let Some(base) = median_ns("uri_parse") else { return };
    println!("\n{GROUP}: medians of this run, as ratios to parsing the same target into an http::Uri ({base:.1} ns)");
    for id in ["uri_parse", "percent_decode", "canonicalize", "canonicalize_with_pairs", "canonicalize_dotted"] {
        if let Some(ns) = median_ns(id) {
            println!("  {id:<24} {ns:>9.1} ns  {:>6.2}×", ns / base);
        }
    }
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
    // In `cargo test --benches` mode each function ran once and there is nothing to compare.
    if !std::env::args().any(|a| a == "--test") {
        print_ratios();
    }
}
