//! Detectors by value (`portcullis_host::detect`, issue 22) on a realistic 1 MiB JSON body,
//! beside the plain JSON-pointer redaction of the same body in the same run:
//!
//! - `redact_plain`: `redact::apply_to_response` removing `/records/*/email` and replacing
//!   `/records/*/phone` (the figure BENCHMARKS.md gives for redaction);
//! - `detect_all`: `detect::find_into` with every detector over the raw body;
//! - `detect_<name>`: each detector alone.
//!
//! The body: customer records with names, ids, dates, amounts, UUIDs, free-text notes, an
//! e-mail and a phone on every record, and a card number, an IBAN, a JWT or a key in a few.
//! After criterion finishes, the medians are printed as MB/s.
//!
//!   cargo bench --bench detect

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use portcullis_host::decision::{Action, Redaction, Target};
use portcullis_host::detect::{self, Detector, DetectorSet};
use portcullis_host::{Body, Response};

const GROUP: &str = "detect_1m";
const SIZE: usize = 1 << 20;

const FIRST: [&str; 12] =
    ["Alice", "Bruno", "Chloé", "Dmitri", "Emma", "Farah", "Gustav", "Hana", "Ines", "Jonas", "Kenji", "Léa"];
const LAST: [&str; 10] =
    ["Smith", "Müller", "Dubois", "Rossi", "García", "Novak", "Tanaka", "Jansen", "Silva", "O'Brien"];
const NOTES: [&str; 8] = [
    "Customer called about invoice INV-2026-0042; wants the late fee waived. Agreed 15% discount until 2026-12-31.",
    "Delivery to the side entrance, ring twice. Parcel 3 of 4 arrived damaged (photo ref IMG_20261103_101522).",
    "Upgraded to plan v2.4.1 on 03/11/2026, prorated 12.50 EUR. Next review in Q1; see ticket #48213.",
    "Prefers contact in the afternoon. Asked why order 4839201847561023 was split into two shipments.",
    "Paid 1,249.00 by bank transfer, reference 2026-11-0093-AB. Account manager: team EMEA-2.",
    "Requested GDPR export; sent on 2026-11-20 to the address on file. Checksum sha256 9f86d081884c7d65.",
    "Left a voicemail: will call back regarding the 3 missing items from order 771-2201-88.",
    "No further action. Build 10.4.3.2205 fixed the sync issue reported last week.",
];
/// Sensitive values placed in some notes (about one record in eight).
const SENSITIVE: [&str; 6] = [
    "Card on file 4111 1111 1111 1111, exp 12/28.",
    "Refund to IBAN DE89 3704 0044 0532 0130 00 approved.",
    "Pasted token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJlX2J5dGVz in the chat, rotated.",
    "Shared key AKIAIOSFODNN7EXAMPLE by mistake; revoked.",
    "Alternative card 5555555555554444 for the renewal.",
    "Second account GB82WEST12345698765432 for payouts.",
];

/// A JSON body of `size` bytes (padded with spaces before the closing brace).
fn body(size: usize) -> String {
    let mut out = String::from("{\"records\":[");
    let mut i = 0usize;
    while out.len() < size - 800 {
        if i > 0 {
            out.push(',');
        }
        let (first, last) = (FIRST[i % FIRST.len()], LAST[(i / 3) % LAST.len()]);
        let mut note = NOTES[(i * 7) % NOTES.len()].to_owned();
        if i % 8 == 3 {
            note.push(' ');
            note.push_str(SENSITIVE[(i / 8) % SENSITIVE.len()]);
        }
        write!(
            out,
            "{{\"id\":\"cus_{:08x}\",\"name\":\"{first} {last}\",\"email\":\"{}.{}{}@example.com\",\
             \"phone\":\"+44 20 7946 {:04}\",\"created\":\"2026-{:02}-{:02}T{:02}:{:02}:00Z\",\
             \"amount\":{}.{:02},\"currency\":\"EUR\",\"uuid\":\"{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}\",\
             \"tags\":[\"tier-{}\",\"eu\"],\"note\":\"{}\"}}",
            i.wrapping_mul(2_654_435_761) as u32,
            first.to_lowercase(),
            last.to_lowercase().replace(['\'', 'ü', 'í'], ""),
            i % 100,
            i % 10_000,
            i % 12 + 1,
            i % 28 + 1,
            i % 24,
            i % 60,
            (i * 37) % 5000,
            i % 100,
            i.wrapping_mul(0x9e37_79b9) as u32,
            i % 0xffff,
            i % 0xfff,
            (i * 3) % 0xfff,
            i * 1_000_003,
            i % 4,
            note.replace('"', "\\\""),
        )
        .unwrap();
        i += 1;
    }
    out.push_str("],\"next\":null}");
    while out.len() < size {
        out.insert(out.len() - 1, ' ');
    }
    out
}

fn redactions() -> Vec<Redaction> {
    vec![
        Redaction { target: Target::JsonPointer("/records/*/email".into()), action: Action::Remove },
        Redaction {
            target: Target::JsonPointer("/records/*/phone".into()),
            action: Action::Replace("[redacted]".into()),
        },
    ]
}

fn benches(c: &mut Criterion, text: &str) {
    let response = Response {
        status: 200,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body: Some(Body {
            content_type: Some("application/json".into()),
            bytes: text.as_bytes().to_vec(),
            truncated: false,
        }),
    };
    let redactions = redactions();
    let mut check = response.clone();
    let applied = portcullis_host::redact::apply_to_response(&mut check, &redactions).expect("redacts");
    assert!(applied.body_changed, "the plain redaction changes the body");

    let mut g = c.benchmark_group(GROUP);
    g.throughput(Throughput::Bytes(text.len() as u64)).sample_size(30).measurement_time(Duration::from_secs(5));
    g.bench_function("redact_plain", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |r| portcullis_host::redact::apply_to_response(r, &redactions).unwrap(),
            BatchSize::LargeInput,
        );
    });
    let mut out = Vec::new();
    g.bench_function("detect_all", |b| {
        b.iter(|| {
            detect::find_into(black_box(text), DetectorSet::all(), &mut out);
            out.len()
        });
    });
    for d in Detector::ALL {
        g.bench_function(format!("detect_{}", d.name()), |b| {
            b.iter(|| {
                detect::find_into(black_box(text), DetectorSet::of(&[d]), &mut out);
                out.len()
            });
        });
    }
    g.finish();
}

/// Criterion's median estimate (ns) for one benchmark of this run.
fn median_ns(id: &str) -> Option<f64> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/criterion")
        .join(GROUP)
        .join(id)
        .join("new/estimates.json");
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn main() {
    let text = body(SIZE);
    let found = detect::find(&text, DetectorSet::all());
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion, &text);
    criterion.final_summary();
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let mut counts = std::collections::BTreeMap::new();
    for f in &found {
        *counts.entry(f.detector.name()).or_insert(0) += 1;
    }
    println!("\n{GROUP}: {} bytes, findings with every detector: {counts:?}", text.len());
    println!("medians of this run, as MB/s (10^6 bytes per second):");
    let ids = ["redact_plain", "detect_all"]
        .into_iter()
        .map(str::to_owned)
        .chain(Detector::ALL.iter().map(|d| format!("detect_{}", d.name())));
    for id in ids {
        if let Some(ns) = median_ns(&id) {
            println!("  {id:<20} {:>8.2} ms  {:>7.0} MB/s", ns / 1e6, text.len() as f64 / ns * 1e3);
        }
    }
}
