//! Entry selectors: which replayed entries a test case (or a scripted approval decision)
//! is about. The syntax is the test files' `select` table (docs/testing-policies.md).

use std::path::Path;

use portcullis_host::gate::Passage;
use portcullis_host::route::{HostPattern, PathGlob};
use serde::Deserialize;

/// `select = { … }`: every key given must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Entry indices (0-based, within their file).
    #[serde(default)]
    pub index: Option<OneOrMany<usize>>,
    /// A traffic file's name (e.g. `capture.har`).
    #[serde(default)]
    pub file: Option<String>,
    /// A method or a list of them (any case).
    #[serde(default)]
    pub method: Option<OneOrMany<String>>,
    /// A path glob, or a list of them.
    #[serde(default)]
    pub path: Option<OneOrMany<String>>,
    /// A host pattern.
    #[serde(default)]
    pub host: Option<String>,
    /// The operation name.
    #[serde(default)]
    pub operation: Option<String>,
}

/// One value or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// One.
    One(T),
    /// Several.
    Many(Vec<T>),
}

impl<T: PartialEq> OneOrMany<T> {
    fn contains(&self, value: &T) -> bool {
        match self {
            OneOrMany::One(v) => v == value,
            OneOrMany::Many(vs) => vs.contains(value),
        }
    }
}

/// A selector with its patterns parsed, ready to match entries.
#[derive(Debug, Clone)]
pub struct Compiled {
    selector: Selector,
    paths: Vec<PathGlob>,
    host: Option<HostPattern>,
}

impl Selector {
    /// Parses the path globs and the host pattern; the error names the key.
    pub fn compile(&self) -> Result<Compiled, String> {
        let paths: Vec<PathGlob> = match &self.path {
            None => Vec::new(),
            Some(OneOrMany::One(p)) => vec![PathGlob::new(p).map_err(|e| format!("select.path: {e}"))?],
            Some(OneOrMany::Many(ps)) => ps
                .iter()
                .map(|p| PathGlob::new(p))
                .collect::<Result<_, _>>()
                .map_err(|e| format!("select.path: {e}"))?,
        };
        let host = self.host.as_deref().map(HostPattern::new).transpose().map_err(|e| format!("select.host: {e}"))?;
        Ok(Compiled { selector: self.clone(), paths, host })
    }
}

impl Compiled {
    /// Whether the entry `index` of `source` matches; `passage` is `None` for an entry that
    /// could not be read (selected only by index or file, so a case reports it).
    pub fn matches(&self, source: &str, index: usize, passage: Option<&Passage>) -> bool {
        let s = &self.selector;
        if let Some(wanted) = &s.index
            && !wanted.contains(&index)
        {
            return false;
        }
        if let Some(file) = &s.file {
            let name = Path::new(source).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            if &name != file {
                return false;
            }
        }
        let Some(passage) = passage else {
            return s.method.is_none() && s.path.is_none() && s.host.is_none() && s.operation.is_none();
        };
        let Some(request) = request_of(passage) else { return false };
        s.method.as_ref().is_none_or(|m| match m {
            OneOrMany::One(v) => v.eq_ignore_ascii_case(&request.0),
            OneOrMany::Many(vs) => vs.iter().any(|v| v.eq_ignore_ascii_case(&request.0)),
        }) && (self.paths.is_empty() || self.paths.iter().any(|g| g.matches(&request.1)))
            && self.host.as_ref().is_none_or(|h| h.matches(&request.2))
            && s.operation.as_ref().is_none_or(|op| request.3.as_deref() == Some(op.as_str()))
    }
}

/// (method, path, host, operation) of the evaluated request.
fn request_of(passage: &Passage) -> Option<(String, String, String, Option<String>)> {
    let (method, path) = passage.request_line.split_once(' ')?;
    // With an operation (an MCP tool, an OpenAPI operationId) the line is `METHOD path operation`.
    let path = match &passage.operation {
        Some(operation) => path.strip_suffix(operation.as_str()).and_then(|p| p.strip_suffix(' ')).unwrap_or(path),
        None => path,
    };
    Some((method.to_owned(), path.to_owned(), passage.host.clone(), passage.operation.clone()))
}
