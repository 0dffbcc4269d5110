//! Host patterns and path globs as the reference policies take them in settings.
//!
//! Hosts: `api.example.com` (exactly, ignoring case), `*.example.com` (any subdomain, not
//! the domain itself), or `*` (any). Paths (`/invoices/*`, `/admin/**`): `*` is exactly one path segment, `**` any number of segments (none too),
//! other segments match literally, and empty segments are ignored, so `/a//b` is `/a/b`.
//! Whole-segment wildcards only: a glob cannot say `inv*`, which keeps matching predictable
//! for the people who write settings and read audit logs.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Whether `host` (lower-case, no port) is `pattern`, a subdomain of `example.com` for the
/// pattern `*.example.com`, or anything for `*`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host.ends_with(&domain.to_ascii_lowercase())
                && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Why `glob` is not a usable path glob, if it is not (for a settings error).
pub fn check_glob(glob: &str) -> Result<(), String> {
    if !glob.starts_with('/') {
        return Err(format!("`{glob}` must start with /"));
    }
    match glob.split('/').find(|segment| segment.contains('*') && *segment != "*" && *segment != "**") {
        Some(segment) => Err(format!("`{glob}`: `{segment}` mixes * with text; * and ** must be whole segments")),
        None => Ok(()),
    }
}

/// Whether `path` matches `glob`.
pub fn glob_matches(glob: &str, path: &str) -> bool {
    let glob: Vec<&str> = segments(glob).collect();
    let path: Vec<&str> = segments(path).collect();
    matches_from(&glob, &path)
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

fn matches_from(glob: &[&str], path: &[&str]) -> bool {
    match glob.split_first() {
        None => path.is_empty(),
        // `**` takes none, one, or more segments: try each split (globs are short).
        Some((&"**", rest)) => (0..=path.len()).any(|skip| matches_from(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            Some((first, path_rest)) => (*segment == "*" || segment == first) && matches_from(rest, path_rest),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches("*", "anything.test"));
        assert!(host_matches("API.example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "eu.api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
    }

    #[test]
    fn whole_segment_wildcards() {
        assert!(glob_matches("/payments/**", "/payments"));
        assert!(glob_matches("/payments/**", "/payments/7/card"));
        assert!(glob_matches("/payments/*/card", "/payments/7/card"));
        assert!(!glob_matches("/payments/*", "/payments/7/card"));
        assert!(glob_matches("/a/b", "/a//b/"));
        assert!(check_glob("/a/*/b").is_ok());
        assert!(check_glob("a/b").unwrap_err().contains("must start with /"));
        assert!(check_glob("/inv*").unwrap_err().contains("mixes * with text"));
    }
}
