//! Which requests a route covers: host patterns, path globs, methods and operations.
//!
//! Patterns are compiled once when the set is built; matching a request allocates nothing.

use crate::exchange::Request;

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
    /// Compiles a glob; it must start with `/`.
    pub fn new(glob: &str) -> Result<PathGlob, String> {
        if !glob.starts_with('/') {
            return Err(format!("path glob `{glob}` must start with `/` (e.g. `/invoices/**`)"));
        }
        let segments = glob[1..]
            .split('/')
            .map(|s| if s == "**" { Segment::Any } else { Segment::Pattern(s.to_owned()) })
            .collect();
        Ok(PathGlob { text: glob.to_owned(), segments })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (starting with `/`) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.strip_prefix('/').unwrap_or(path);
        let parts: Vec<&str> = path.split('/').collect();
        match_segments(&self.segments, &parts)
    }
}

fn match_segments(pattern: &[Segment], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((Segment::Any, rest)) => (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..])),
        Some((Segment::Pattern(p), rest)) => match parts.split_first() {
            Some((first, tail)) => wildcard(p, first) && match_segments(rest, tail),
            None => false,
        },
    }
}

/// `*` matches any run of characters (within one segment or label); everything else is
/// literal.
pub(crate) fn wildcard(pattern: &str, text: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('*').collect();
    if pieces.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
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
            return Err(format!("host pattern `{pattern}` must be a host name such as `api.example.com` or `*.example.com`"));
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
pub struct Matcher {
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
        (self.methods.is_empty() || self.methods.iter().any(|m| m == "*" || m.eq_ignore_ascii_case(&request.method)))
            && (self.paths.is_empty() || self.paths.iter().any(|g| g.matches(&request.path)))
            && (self.hosts.is_empty() || {
                let host = request.host();
                self.hosts.iter().any(|h| h.matches(&host))
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
