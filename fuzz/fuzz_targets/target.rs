//! The canonical request target (`portcullis_host::target`): what routing, the policies and
//! the upstream all see.
//!
//! The bytes are one control byte (which rules) and a target. Checks, beyond "never
//! panics", for every accepted target under the rules chosen:
//! - canonicalising is idempotent: the canonical form canonicalises to itself, and a door
//!   that forwards raw targets (`require_canonical`) accepts it;
//! - the path has no `.` or `..` segment and no empty segment inside it (`//`);
//! - the path has no `%2F`/`%5C` unless `escaped_slashes = "keep-encoded"`, no raw `\`,
//!   no `;` unless `path_parameters = "keep"`, no control byte, no `#`;
//! - every `%` in the path starts an upper-case escape of a byte that is not unreserved;
//! - the decoded path (what the policies see) is the forwarded path percent-decoded (with
//!   `%2F`/`%5C` left as written under `keep-encoded`): same separators, so the same
//!   segments, none of them empty or a dot segment; it holds no control byte;
//! - the query is forwarded byte for byte;
//! - a door forwarding raw targets (`require_canonical`) accepts exactly the targets that
//!   are already canonical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_host::exchange::percent_decode;
use portcullis_host::target::{
    DotSegments, EscapedSlashes, PathParameters, RepeatedSlashes, TargetRules, canonicalize, require_canonical,
};

fuzz_target!(|data: &[u8]| {
    let Some((control, bytes)) = data.split_first() else { return };
    let Ok(target) = std::str::from_utf8(bytes) else { return };
    let rules = TargetRules::default()
        .with_dot_segments(if control & 1 == 0 { DotSegments::Remove } else { DotSegments::Reject })
        .with_escaped_slashes(match (control >> 1) % 3 {
            0 => EscapedSlashes::Reject,
            1 => EscapedSlashes::KeepEncoded,
            _ => EscapedSlashes::Decode,
        })
        .with_path_parameters(if control & 8 == 0 { PathParameters::Reject } else { PathParameters::Keep })
        .with_repeated_slashes(if control & 16 == 0 { RepeatedSlashes::Reject } else { RepeatedSlashes::Merge });
    let Ok(once) = canonicalize(target, &rules) else {
        assert!(require_canonical(target, &rules).is_err(), "refused, yet canonical: {target:?}");
        return;
    };
    let form = once.origin_form();
    // `/a?` is forwarded as `/a`: an empty query is none (but `/a??` has the query `?`).
    let unchanged = form == target || (once.query().is_none() && target.strip_suffix('?') == Some(form.as_str()));
    let accepted = require_canonical(target, &rules).is_ok();
    assert_eq!(accepted, unchanged, "require_canonical({target:?}), canonical {form:?}");
    let sent_query = target.split_once('?').map(|(_, query)| query).filter(|q| !q.is_empty());
    assert_eq!(once.query(), sent_query, "the query changed");
    let twice = canonicalize(&form, &rules).expect("a canonical target is accepted again");
    assert_eq!(twice, once, "not idempotent: {target:?} -> {form:?}");
    assert_eq!(require_canonical(&form, &rules).expect("canonical"), once);

    let path = once.path();
    assert!(path.starts_with('/'), "{path:?}");
    let inner = &path[1..path.len() - usize::from(path.len() > 1 && path.ends_with('/'))];
    if path != "/" {
        for segment in inner.split('/') {
            assert!(!segment.is_empty(), "empty segment in {path:?}");
            assert!(segment != "." && segment != "..", "dot segment in {path:?}");
        }
    }
    let upper = path.to_ascii_uppercase();
    if rules.escaped_slashes != EscapedSlashes::KeepEncoded {
        assert!(!upper.contains("%2F") && !upper.contains("%5C"), "escaped slash in {path:?}");
    }
    assert!(!path.contains('\\') && !path.contains('#'), "{path:?}");
    if rules.path_parameters != PathParameters::Keep {
        assert!(!path.contains(';'), "`;` in {path:?}");
    }
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        assert!(!b.is_ascii_control(), "control byte in {path:?}");
        if *b == b'%' {
            let hex = path.get(i + 1..i + 3).expect("two hex digits after `%`");
            assert_eq!(hex, hex.to_ascii_uppercase(), "lower-case escape in {path:?}");
            let value = u8::from_str_radix(hex, 16).expect("an escape");
            assert!(!(value.is_ascii_alphanumeric() || b"-._~".contains(&value)), "needless escape in {path:?}");
        }
    }
    let decoded = once.decoded_path();
    // Control *bytes* (C0 and DEL); C1 characters such as U+0085 are ordinary UTF-8 here.
    assert!(decoded.starts_with('/') && !decoded.bytes().any(|b| b.is_ascii_control()), "{decoded:?}");
    // Only kept escapes stay encoded in what the policies see (`%252F` decodes to `%2F`).
    let model = percent_decode(&path.replace("%2F", "%252F").replace("%5C", "%255C"), false);
    assert_eq!(decoded, model, "the policies see another path than {path:?}");
    assert_eq!(decoded.matches('/').count(), path.matches('/').count(), "{path:?} -> {decoded:?}");
});
