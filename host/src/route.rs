//! Which requests a route covers: host patterns, path globs, methods and operations.
//!
//! Patterns are compiled once when the set is built. Matching a request allocates nothing
//! but the lower-cased host, at most once per request and only when a route names hosts,
//! and takes time linear in the path for each pattern segment (at worst path segments ×
//! pattern segments comparisons), so no glob and no path can make matching expensive.

use std::cell::OnceCell;

use crate::exchange::Request;

/// The most segments a routed path may have. A longer path is covered by no route, and
/// [`crate::set::PolicySet`] refuses it with 414 `path-too-long` before routing (it never
/// falls through to a later route or to `unmatched`). Real APIs use a few dozen at most;
/// the cap keeps routing cheap whatever the glob.
pub const MAX_PATH_SEGMENTS: usize = 256;

/// Whether a path has more than [`MAX_PATH_SEGMENTS`] segments.
pub(crate) fn path_too_long(path: &str) -> bool {
    let path = path.strip_prefix('/').unwrap_or(path);
    // Stop counting at the cap: a path of a million segments costs no more than one of 257.
    path.bytes().filter(|&b| b == b'/').take(MAX_PATH_SEGMENTS).count() >= MAX_PATH_SEGMENTS
}

/// A path glob: `*` matches within one segment (`/invoices/*`, `/files/*.pdf`), `**` as a
/// whole segment matches any number of segments, including none (`/api/**`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Any,
    Pattern(String),
}

impl PathGlob {
    /// Compiles a glob; it must start with `/`. Consecutive `**` segments are merged (they
    /// match what one does).
    pub fn new(glob: &str) -> Result<PathGlob, String> {
        if !glob.starts_with('/') {
            return Err(format!("path glob `{glob}` must start with `/` (e.g. `/invoices/**`)"));
        }
        let mut segments: Vec<Segment> = Vec::new();
        for s in glob[1..].split('/') {
            let segment = if s == "**" { Segment::Any } else { Segment::Pattern(s.to_owned()) };
            if segment == Segment::Any && segments.last() == Some(&Segment::Any) {
                continue;
            }
            segments.push(segment);
        }
        Ok(PathGlob { text: glob.to_owned(), segments })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (starting with `/`) matches. Exact for any length; a caller that
    /// routes should refuse paths over [`MAX_PATH_SEGMENTS`] first (as the policy set does).
    ///
    /// The classic two-pointer wildcard algorithm over segments, with `**` as the star:
    /// on a mismatch only the most recent `**` takes one more segment, because whatever an
    /// earlier `**` could absorb the later one can too. So each (pattern segment, path
    /// segment) pair is compared at most once per restart: O(path × pattern) at worst,
    /// with no recursion and no allocation.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.strip_prefix('/').unwrap_or(path);
        let pattern = &self.segments;
        // `at`: byte offset of the next path segment, `None` once every segment is used.
        let mut p = 0;
        let mut at = Some(0);
        // The last `**` seen: the pattern index after it and where its match ends so far.
        let mut star: Option<(usize, Option<usize>)> = None;
        loop {
            match (pattern.get(p), at) {
                (None, None) => return true,
                (Some(Segment::Any), _) => {
                    star = Some((p + 1, at));
                    p += 1;
                    continue;
                }
                (Some(Segment::Pattern(glob)), Some(start)) => {
                    let (segment, next) = segment_at(path, start);
                    if wildcard(glob, segment) {
                        p += 1;
                        at = next;
                        continue;
                    }
                }
                _ => {}
            }
            // Mismatch: let the last `**` absorb one more segment, or fail.
            match star {
                Some((after, Some(start))) => {
                    let next = segment_at(path, start).1;
                    star = Some((after, next));
                    p = after;
                    at = next;
                }
                _ => return false,
            }
        }
    }
}

/// The segment of `path` starting at byte `start`, and where the next one starts.
fn segment_at(path: &str, start: usize) -> (&str, Option<usize>) {
    let rest = &path[start..];
    match rest.find('/') {
        Some(i) => (&rest[..i], Some(start + i + 1)),
        None => (rest, None),
    }
}

/// `*` matches any run of characters (within one segment or label); everything else is
/// literal. Linear in the text for each piece between stars: the first and last pieces are
/// anchored, and each middle piece is taken at its leftmost occurrence (what a later star
/// could absorb, it absorbs), with no backtracking and no allocation.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let (Some(first_star), Some(last_star)) = (pattern.find('*'), pattern.rfind('*')) else {
        return pattern == text;
    };
    let (first, last) = (&pattern[..first_star], &pattern[last_star + 1..]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    if first_star == last_star {
        return true;
    }
    for piece in pattern[first_star + 1..last_star].split('*') {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    true
}

/// A host pattern: `api.example.com`, `*.example.com` (any subdomain, not the apex), or
/// `*` (any host). Compared case-insensitively, without the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// Compiles a host pattern.
    pub fn new(pattern: &str) -> Result<HostPattern, String> {
        let p = pattern.trim().to_ascii_lowercase();
        if p.is_empty() || p.contains('/') {
            return Err(format!(
                "host pattern `{pattern}` must be a host name such as `api.example.com` or `*.example.com`"
            ));
        }
        Ok(HostPattern(p))
    }

    /// Whether `host` (lower-case, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        wildcard(&self.0, host)
    }
}

/// What a route covers. Every list that is empty matches everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Matcher {
    /// Hosts.
    pub hosts: Vec<HostPattern>,
    /// Path globs.
    pub paths: Vec<PathGlob>,
    /// Upper-case methods.
    pub methods: Vec<String>,
    /// Operation names (OpenAPI operationId or MCP tool name); `*` wildcards allowed.
    pub operations: Vec<String>,
}

impl Matcher {
    /// Whether the request is covered.
    pub fn matches(&self, request: &Request) -> bool {
        self.covers(request, &OnceCell::new())
    }

    /// Whether the request is covered, with its lower-cased host made at most once in
    /// `host` and shared by every route a request is matched against.
    pub(crate) fn covers(&self, request: &Request, host: &OnceCell<String>) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(&request.method)))
            && (self.paths.is_empty() || self.paths.iter().any(|g| g.matches(&request.path)))
            && (self.hosts.is_empty() || {
                let host = host.get_or_init(|| request.host());
                self.hosts.iter().any(|h| h.matches(host))
            })
            && (self.operations.is_empty()
                || request.operation.as_deref().is_some_and(|op| self.operations.iter().any(|p| wildcard(p, op))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_globs() {
        let g = PathGlob::new("/invoices/*").unwrap();
        assert!(g.matches("/invoices/42"));
        assert!(!g.matches("/invoices/42/lines"));
        assert!(!g.matches("/invoices"));
        let g = PathGlob::new("/api/**").unwrap();
        assert!(g.matches("/api"));
        assert!(g.matches("/api/a/b/c"));
        assert!(!g.matches("/apix"));
        let g = PathGlob::new("/**/export").unwrap();
        assert!(g.matches("/export"));
        assert!(g.matches("/a/b/export"));
        assert!(!g.matches("/a/b/export/x"));
        let g = PathGlob::new("/files/*.pdf").unwrap();
        assert!(g.matches("/files/a.pdf"));
        assert!(!g.matches("/files/a.txt"));
        assert!(PathGlob::new("invoices").is_err());
    }

    #[test]
    fn consecutive_double_stars_merge_and_still_match_what_one_does() {
        let g = PathGlob::new("/a/**/**/b").unwrap();
        assert_eq!(g.segments.len(), 3);
        assert!(g.matches("/a/b") && g.matches("/a/x/y/b") && !g.matches("/a/x"));
    }

    /// The old recursive matcher, kept as the reference: obviously right, exponential.
    fn reference(pattern: &[Segment], parts: &[&str]) -> bool {
        match pattern.split_first() {
            None => parts.is_empty(),
            Some((Segment::Any, rest)) => (0..=parts.len()).any(|skip| reference(rest, &parts[skip..])),
            Some((Segment::Pattern(p), rest)) => match parts.split_first() {
                Some((first, tail)) => reference_wildcard(p.as_bytes(), first.as_bytes()) && reference(rest, tail),
                None => false,
            },
        }
    }

    /// Character-by-character `*` matching, by recursion.
    fn reference_wildcard(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|skip| reference_wildcard(rest, &t[skip..])),
            Some((c, rest)) => t.split_first().is_some_and(|(d, tail)| c == d && reference_wildcard(rest, tail)),
        }
    }

    /// A small deterministic generator (xorshift), so the test needs no dependency and
    /// every run checks the same cases.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    #[test]
    fn matcher_agrees_with_the_reference_on_generated_globs_and_paths() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let glob_segments = ["**", "*", "a", "b", "a*", "*b", "a*b", "*a*", "", "ab", "**", "b*a*"];
        let path_segments = ["a", "b", "ab", "ba", "aab", "", "abab", "x"];
        let mut matched = 0;
        for _ in 0..20_000 {
            let glob: Vec<&str> = (0..=rng.below(5)).map(|_| rng.pick(&glob_segments)).collect();
            let path: Vec<&str> = (0..=rng.below(7)).map(|_| rng.pick(&path_segments)).collect();
            let (glob, path) = (format!("/{}", glob.join("/")), format!("/{}", path.join("/")));
            let compiled = PathGlob::new(&glob).unwrap();
            let parts: Vec<&str> = path[1..].split('/').collect();
            let expected = reference(&compiled.segments, &parts);
            assert_eq!(compiled.matches(&path), expected, "glob {glob} against {path}");
            matched += usize::from(expected);
        }
        assert!(matched > 1000, "the generator must produce matches too ({matched})");
    }

    #[test]
    fn wildcard_agrees_with_the_reference() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let pattern: String = (0..rng.below(7)).map(|_| rng.pick(&["a", "b", "*", "ab"])).collect();
            let text: String = (0..rng.below(8)).map(|_| rng.pick(&["a", "b", "ab", "ba"])).collect();
            let expected = reference_wildcard(pattern.as_bytes(), text.as_bytes());
            assert_eq!(wildcard(&pattern, &text), expected, "pattern {pattern:?} against {text:?}");
        }
    }

    /// Regression (issue 16): two `**` against 16,000 segments took 16.7 s with the
    /// recursive matcher. Now it is a few pattern-length scans of the path.
    #[test]
    fn two_double_stars_against_a_very_long_path_finish_and_are_right() {
        let long = "/a".repeat(16_000);
        // Quadratic for the recursive matcher: the second `**` retried at every `a`.
        assert!(!PathGlob::new("/**/a/**/x").unwrap().matches(&long));
        assert!(!PathGlob::new("/**/a/**/a/**/x").unwrap().matches(&long));
        assert!(PathGlob::new("/**/a/**/a").unwrap().matches(&long));
        let g = PathGlob::new("/**/b/**/c").unwrap();
        assert!(!g.matches(&long));
        assert!(g.matches(&format!("{long}/b{long}/c")));
        let g = PathGlob::new("/**/*b*/**/*c*").unwrap();
        assert!(!g.matches(&format!("{long}/b{long}")));
        // Within one segment too: many stars against a long segment.
        let segment = format!("/{}", "a".repeat(100_000));
        assert!(!PathGlob::new("/*a*a*a*a*a*b").unwrap().matches(&segment));
    }

    #[test]
    fn path_too_long_counts_segments_up_to_the_cap() {
        assert!(!path_too_long("/"));
        assert!(!path_too_long(&"/a".repeat(MAX_PATH_SEGMENTS)));
        assert!(path_too_long(&"/a".repeat(MAX_PATH_SEGMENTS + 1)));
        assert!(path_too_long(&"/".repeat(MAX_PATH_SEGMENTS + 1)), "empty segments count");
        assert!(path_too_long(&"/a".repeat(1_000_000)));
    }

    #[test]
    fn host_patterns() {
        let p = HostPattern::new("*.Example.com").unwrap();
        assert!(p.matches("api.example.com"));
        assert!(!p.matches("example.com"));
        assert!(HostPattern::new("*").unwrap().matches("anything"));
    }

    #[test]
    fn wildcard_pieces() {
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXc"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("ab*ba", "aba"));
    }
}
