//! The JSONL reader over arbitrary bytes.
//!
//! Must never panic, and an in-memory read never fails as a whole. Each exchange read is
//! written back in its JSON form, one line, and read again: the result must be the same
//! exchange (JSON bodies compared as JSON values, floats to the last few bits, since the
//! JSON form re-encodes them). Reading through a tiny buffer gives the same items.
#![no_main]

use std::io::{BufReader, Cursor};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portcullis_host::Exchange;
use portcullis_host::adapters::jsonl::read_jsonl;
use portcullis_host::adapters::traffic::{Format, TrafficItem};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz.jsonl");
    let mut items: Vec<TrafficItem> = Vec::new();
    let summary = read_jsonl(Cursor::new(data), source, |item| items.push(item)).expect("in-memory read failed");
    assert_eq!(summary.items, items.len());
    assert_eq!(summary.errors, items.iter().filter(|i| i.result.is_err()).count());
    assert_eq!(summary.format, Format::Jsonl);

    let mut small: Vec<TrafficItem> = Vec::new();
    read_jsonl(BufReader::with_capacity(7, Cursor::new(data)), source, |item| small.push(item)).unwrap();
    assert_eq!(items, small);

    for item in &items {
        let Ok(exchange) = &item.result else { continue };
        assert!(!exchange.request.id.is_empty());
        let line = serde_json::to_string(exchange).expect("an exchange read must serialise");
        assert!(!line.contains('\n'));
        let mut again: Vec<TrafficItem> = Vec::new();
        read_jsonl(Cursor::new(line.as_bytes()), source, |item| again.push(item)).unwrap();
        assert_eq!(again.len(), 1, "{line}");
        let reread = match &again[0].result {
            Ok(exchange) => exchange,
            Err(err) => panic!("written form does not read back: {err}\n{line}"),
        };
        assert_same(exchange, reread, &line);
    }
});

fn assert_same(a: &Exchange, b: &Exchange, line: &str) {
    let (mut a, mut b) = (a.clone(), b.clone());
    let bodies = |e: &mut Exchange| {
        let mut out = Vec::new();
        for body in [e.request.body.as_mut(), e.response.as_mut().and_then(|r| r.body.as_mut())] {
            out.push(body.map(|body| std::mem::take(&mut body.bytes)));
        }
        out
    };
    let (bodies_a, bodies_b) = (bodies(&mut a), bodies(&mut b));
    assert_eq!(a, b, "exchange changed on a round trip through its JSON form: {line}");
    for (x, y) in bodies_a.iter().zip(&bodies_b) {
        match (x, y) {
            (Some(x), Some(y)) if x != y => {
                let (Ok(vx), Ok(vy)) = (serde_json::from_slice::<Value>(x), serde_json::from_slice::<Value>(y)) else {
                    panic!("body bytes changed on a round trip: {line}");
                };
                assert!(close(&vx, &vy), "JSON body changed on a round trip: {line}");
            }
            (x, y) => assert_eq!(x, y, "{line}"),
        }
    }
}

/// JSON equality with floats compared to a relative 1e-12 (serde_json's default float
/// parsing is not always correctly rounded).
fn close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && close(vx, vy))
        }
        _ => a == b,
    }
}
