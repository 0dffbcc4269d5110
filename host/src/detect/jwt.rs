//! JSON Web Tokens (`jwt`).
//!
//! A JWS in compact serialisation (`header.payload.signature`), or a JWE
//! (`header.key.iv.ciphertext.tag`), found when:
//!
//! - the header is base64url (no padding) starting with `eyJ` (the encoding of `{"`), and
//!   decodes to a JSON object with an `"alg"` member (up to 4 KiB of header);
//! - the payload (the second segment) is base64url and not empty; the signature may be
//!   empty (an unsecured JWT, `alg` `none`, ends with a dot);
//! - nothing base64url touches the start, or the end (a trailing `.` that ends a
//!   sentence is not taken when the token already has its segments).
//!
//! Not detected: tokens split across lines or with padding (`=`), the JSON serialisations
//! of JWS/JWE, and headers without `alg`. The token is found whether or not its signature is
//! valid: the host never verifies it here.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::{before, byte, escape_ends_at};

const MAX_HEADER: usize = 4096;

const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn segment_end(b: &[u8], mut j: usize) -> usize {
    while j < b.len() && is_b64url(b[j]) {
        j += 1;
    }
    j
}

/// The end of the JWT starting at `i` (an `e` at a word start), if there is one.
pub(crate) fn at(b: &[u8], i: usize) -> Option<usize> {
    if !b[i..].starts_with(b"eyJ") || (is_b64url(before(b, i)) && !escape_ends_at(b, i)) {
        return None;
    }
    let mut ends = [0usize; 5];
    let mut count = 0;
    let mut j = i;
    loop {
        let e = segment_end(b, j);
        ends[count] = e;
        count += 1;
        if count == 5 || byte(b, e) != b'.' {
            break;
        }
        j = e + 1;
    }
    let header_end = ends[0];
    // Header, then a non-empty payload; 3 segments (JWS) or 5 (JWE).
    if count < 3 || ends[1] == header_end + 1 {
        return None;
    }
    let end = if count == 5 { ends[4] } else { ends[2] };
    if byte(b, end) == b'=' || (count == 5 && byte(b, end) == b'.' && is_b64url(byte(b, end + 1))) {
        return None;
    }
    header_has_alg(&b[i..header_end]).then_some(end)
}

fn header_has_alg(header: &[u8]) -> bool {
    if header.len() > MAX_HEADER {
        return false;
    }
    let mut buf = [0u8; MAX_HEADER * 3 / 4 + 3];
    let Ok(n) = URL_SAFE_LENIENT.decode_slice(header, &mut buf) else { return false };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf[..n]) {
        Ok(map) => map.contains_key("alg"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, DetectorSet, find};

    // {"alg":"HS256","typ":"JWT"}.{"sub":"1234567890","name":"John Doe","iat":1516239022}
    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    fn jwts(text: &str) -> Vec<&str> {
        find(text, DetectorSet::of(&[Detector::Jwt])).iter().map(|f| &text[f.start..f.end]).collect()
    }

    #[test]
    fn tokens() {
        assert_eq!(jwts(&format!("Authorization: Bearer {JWT}")), [JWT]);
        assert_eq!(jwts(&format!(r#"{{"token":"{JWT}"}}"#)), [JWT]);
        assert_eq!(jwts(&format!("token {JWT}. Next")), [JWT]);
        let unsecured = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.";
        assert_eq!(jwts(&format!("t={unsecured} x")), [unsecured]);
        let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kLzcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5XnZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppamavo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.XFBoMYUZodetZdvTiFvSkQ";
        assert_eq!(jwts(&format!("jwe {jwe} end")), [jwe]);
    }

    #[test]
    fn near_misses() {
        for text in [
            "eyJhbGciOiJIUzI1NiJ9",                        // a header alone
            "eyJhbGciOiJIUzI1NiJ9..sig",                   // empty payload
            "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln",     // no alg
            "eyJub3QganNvbg.eyJzdWIiOiIxIn0.c2ln",         // header not JSON
            "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",  // glued
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln==", // padding
            "eyes.on.you",
            "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo=",
        ] {
            assert!(jwts(text).is_empty(), "{text}");
        }
    }
}
