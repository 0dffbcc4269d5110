//! Tests across detectors: the API, overlaps, offsets, and arbitrary input.

use super::*;

const CARD: &str = "4111 1111 1111 1111";
const IBAN: &str = "DE89 3704 0044 0532 0130 00";

fn spans(text: &str) -> Vec<(Detector, &str)> {
    find(text, DetectorSet::all()).iter().map(|f| (f.detector, &text[f.start..f.end])).collect()
}

#[test]
fn names_round_trip() {
    for d in Detector::ALL {
        assert_eq!(Detector::from_name(d.name()), Some(d));
        assert_eq!(d.to_string(), d.name());
    }
    assert_eq!(Detector::from_name("Card-Number"), None);
    assert_eq!(Detector::from_name("cards"), None);
}

#[test]
fn sets() {
    let mut set = DetectorSet::default();
    assert!(set.is_empty());
    set.insert(Detector::Iban);
    assert!(set.contains(Detector::Iban) && !set.contains(Detector::CardNumber));
    assert_eq!(set, DetectorSet::of(&[Detector::Iban, Detector::Iban]));
    assert!(Detector::ALL.iter().all(|&d| DetectorSet::all().contains(d)));
    assert!(find("4111111111111111", DetectorSet::default()).is_empty());
}

#[test]
fn free_text_with_everything() {
    let text = format!(
        "Note: customer Zoë paid with {CARD} from {IBAN}; reach her at zoe@example.com or +44 20 7946 0958. \
         Token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln and key AKIAIOSFODNN7EXAMPLE — merci."
    );
    assert_eq!(
        spans(&text),
        [
            (Detector::CardNumber, CARD),
            (Detector::Iban, IBAN),
            (Detector::Email, "zoe@example.com"),
            (Detector::Phone, "+44 20 7946 0958"),
            (Detector::Jwt, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"),
            (Detector::Secret, "AKIAIOSFODNN7EXAMPLE"),
        ]
    );
    // Only the asked-for detectors run.
    let only = find(&text, DetectorSet::of(&[Detector::Email, Detector::Secret]));
    assert_eq!(only.iter().map(|f| f.detector).collect::<Vec<_>>(), [Detector::Email, Detector::Secret]);
}

#[test]
fn whole_values() {
    assert_eq!(spans("4111111111111111"), [(Detector::CardNumber, "4111111111111111")]);
    assert_eq!(spans("bob@example.com"), [(Detector::Email, "bob@example.com")]);
    assert_eq!(spans("+14155550123"), [(Detector::Phone, "+14155550123")]);
    assert_eq!(spans("GB82WEST12345698765432"), [(Detector::Iban, "GB82WEST12345698765432")]);
}

#[test]
fn overlaps_longest_wins() {
    // A card number as an e-mail's local part: the address is longer.
    assert_eq!(spans("4111111111111111@example.com"), [(Detector::Email, "4111111111111111@example.com")]);
    // A phone inside a private key block is swallowed by the block.
    let pem = "-----BEGIN PRIVATE KEY-----\n+14155550123 bob@example.com\n-----END PRIVATE KEY-----";
    assert_eq!(spans(pem), [(Detector::Secret, pem)]);
    let mut out = vec![
        Finding { detector: Detector::Phone, start: 0, end: 5 },
        Finding { detector: Detector::Email, start: 3, end: 10 },
        Finding { detector: Detector::CardNumber, start: 3, end: 10 },
        Finding { detector: Detector::Secret, start: 12, end: 14 },
    ];
    settle_overlaps(&mut out);
    assert_eq!(
        out,
        [
            Finding { detector: Detector::CardNumber, start: 3, end: 10 },
            Finding { detector: Detector::Secret, start: 12, end: 14 },
        ]
    );
}

#[test]
fn find_into_reuses_and_clears() {
    let mut out = Vec::new();
    find_into("nothing to see here, 12 items at 3.50", DetectorSet::all(), &mut out);
    assert!(out.is_empty());
    assert_eq!(out.capacity(), 0, "no allocation when nothing is found");
    find_into("bob@example.com", DetectorSet::all(), &mut out);
    assert_eq!(out.len(), 1);
    find_into("none", DetectorSet::all(), &mut out);
    assert!(out.is_empty(), "cleared");
}

#[test]
fn utf8_around_matches() {
    for (prefix, suffix) in [("é", "ü"), ("日本語 ", " 語"), ("🙂", "🙂"), ("\u{a0}", "\u{2028}")] {
        for value in [CARD, IBAN, "bob@example.com", "+14155550123", "AKIAIOSFODNN7EXAMPLE"] {
            let text = format!("{prefix}{value}{suffix}");
            let found = find(&text, DetectorSet::all());
            assert_eq!(found.len(), 1, "{text}: {found:?}");
            assert!(text.is_char_boundary(found[0].start) && text.is_char_boundary(found[0].end));
            assert_eq!(&text[found[0].start..found[0].end], value);
        }
    }
}

#[test]
fn no_panics_on_arbitrary_input() {
    // A seeded xorshift over bytes from an alphabet rich in the detectors' trigger bytes,
    // made valid UTF-8 lossily; every finding must be sorted, disjoint and on char boundaries.
    const ALPHABET: &[u8] = b"0123456789 -.+()@_AKISgehpkx:lvtwJyzEN\\n\"{}=BGRPVTYE/\xc3\xa9";
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds = [
        "4111111111111111",
        "DE89370400440532013000",
        "a@b.co",
        "+14155550123",
        "-----BEGIN PRIVATE KEY-----",
        "eyJhbGciOiJub25lIn0.eyJ9.",
        "AKIAIOSFODNN7EXAMPLE",
    ];
    let mut out = Vec::new();
    for round in 0..20_000 {
        let len = (next() % 96) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
        if round % 3 == 0 {
            let seed = seeds[(next() % seeds.len() as u64) as usize].as_bytes();
            let at = (next() as usize) % (bytes.len() + 1);
            bytes.splice(at..at, seed.iter().copied());
        }
        if round % 7 == 0 {
            bytes = (0..len).map(|_| next() as u8).collect();
        }
        let text = String::from_utf8_lossy(&bytes);
        find_into(&text, DetectorSet::all(), &mut out);
        let mut last_end = 0;
        for f in &out {
            assert!(f.start >= last_end && f.start < f.end && f.end <= text.len(), "{text:?}: {out:?}");
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
            last_end = f.end;
        }
    }
}
