//! Parsing a policy's settings document, and turning parse errors into a [`SettingsError`]
//! that names the setting at fault.
//!
//! `serde_json` errors say what is wrong ("unknown field `x`", "missing field `y`", "invalid
//! type: string, expected u32") and where in the text, but not which setting that is. Rather
//! than wrapping the deserializer to track paths (code that every policy would carry), the
//! path is recovered after the fact, on the error path only: a small scanner walks the JSON
//! text up to the error's position and records the object keys and array indices it is in.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::de::DeserializeOwned;

use crate::{Policy, SettingsError};

impl SettingsError {
    /// A settings error about `setting` (a name or path such as `rules[2].path`; empty for
    /// the document as a whole).
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        SettingsError { setting: setting.into(), message: message.into() }
    }
}

/// Parses and validates a settings document the way the component's `init` does, so that
/// unit tests can check settings natively: `check_settings::<MyPolicy>(r#"{"limit": 0}"#)`.
pub fn check_settings<P: Policy>(json: &str) -> Result<P::Settings, SettingsError> {
    let settings = parse::<P::Settings>(json)?;
    P::validate(&settings)?;
    Ok(settings)
}

/// Parses a settings document into `S`.
///
/// A blank document or `null` yields `S::default()`. `{}` is what the host passes when no
/// settings are configured, so a settings type that does not accept an empty object but does
/// accept `null` (such as `()`) accepts `{}` too.
pub fn parse<S: DeserializeOwned + Default>(json: &str) -> Result<S, SettingsError> {
    let trimmed = json.trim();
    if trimmed.is_empty() || trimmed == "null" {
        return Ok(S::default());
    }
    match serde_json::from_slice::<S>(json.as_bytes()) {
        Ok(settings) => Ok(settings),
        Err(error) => {
            if is_empty_object(trimmed)
                && let Ok(settings) = serde_json::from_slice::<S>(b"null")
            {
                return Ok(settings);
            }
            Err(to_settings_error(json, &error))
        }
    }
}

fn is_empty_object(text: &str) -> bool {
    text.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')).is_some_and(|inside| inside.trim().is_empty())
}

/// Turns a `serde_json` error on `json` into a [`SettingsError`] naming the setting.
fn to_settings_error(json: &str, error: &serde_json::Error) -> SettingsError {
    let text = error.to_string();
    let offset = byte_offset(json, error.line(), error.column());
    let mut path = path_at(&json[..offset]);

    // A missing field is reported once its object has been closed: name the field inside it.
    if let Some(field) = quoted_after(&text, "missing field `") {
        path.push(Segment::Key(field.into()));
    }

    // For errors in the data, the path says where: drop serde_json's "at line 1 column 9".
    // For syntax errors keep it: a path alone does not find a stray comma.
    let message = if error.is_data() {
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        text.strip_suffix(suffix.as_str()).unwrap_or(&text).to_string()
    } else {
        text
    };

    SettingsError { setting: format_path(&path), message }
}

/// The text between `prefix` and the next backtick in `text`, if `text` contains `prefix`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let start = text.find(prefix)? + prefix.len();
    let rest = &text[start..];
    rest.find('`').map(|end| &rest[..end])
}

/// The byte offset just past what serde_json had consumed when it failed: `column` counts the
/// bytes consumed on the 1-based `line`.
fn byte_offset(json: &str, line: usize, column: usize) -> usize {
    let line_start =
        if line <= 1 { 0 } else { json.match_indices('\n').nth(line - 2).map_or(json.len(), |(index, _)| index + 1) };
    let mut offset = (line_start + column).min(json.len());
    while !json.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One step of a settings path.
#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// One container the scanner is inside.
enum Frame {
    /// An object, with the last key read and whether a key (rather than a value) comes next.
    Object { key: Option<String>, expect_key: bool },
    /// An array, with the index of the current element.
    Array { index: usize },
}

/// The path to the innermost value that `prefix` (the consumed part of a JSON text) ends in.
///
/// Not a validating parser: it follows brackets, commas, colons and strings, which is all
/// a path needs, and does something sensible on malformed input.
fn path_at(prefix: &str) -> Vec<Segment> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut chars = prefix.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut raw = String::new();
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        raw.push(c);
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    } else {
                        raw.push(c);
                    }
                }
                if let Some(Frame::Object { key, expect_key: true }) = stack.last_mut() {
                    *key = Some(raw);
                }
            }
            '{' => stack.push(Frame::Object { key: None, expect_key: true }),
            '[' => stack.push(Frame::Array { index: 0 }),
            '}' | ']' => {
                stack.pop();
            }
            ':' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = false;
                }
            }
            ',' => match stack.last_mut() {
                Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                Some(Frame::Array { index }) => *index += 1,
                None => {}
            },
            _ => {}
        }
    }
    stack
        .into_iter()
        .filter_map(|frame| match frame {
            Frame::Object { key, .. } => key.map(Segment::Key),
            Frame::Array { index } => Some(Segment::Index(index)),
        })
        .collect()
}

/// Formats a path the way settings are named in errors: `rules[2].path`.
fn format_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        group: String,
        #[serde(default)]
        limit: u32,
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        path: String,
        #[serde(default)]
        mode: Mode,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Allow,
        Deny,
    }

    fn error(json: &str) -> SettingsError {
        match parse::<Settings>(json) {
            Ok(settings) => panic!("expected an error, parsed {settings:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn valid_document_parses() {
        let settings: Settings = parse(r#"{"group": "g", "rules": [{"path": "/a", "mode": "deny"}]}"#).unwrap();
        assert_eq!(settings.rules[0].mode, Mode::Deny);
    }

    #[test]
    fn blank_and_null_documents_yield_the_default() {
        assert_eq!(parse::<Settings>("  ").unwrap(), Settings::default());
        assert_eq!(parse::<Settings>("null").unwrap(), Settings::default());
    }

    #[test]
    fn unit_settings_accept_an_empty_object() {
        parse::<()>("{}").unwrap();
        parse::<()>("{ }").unwrap();
        assert_eq!(error_of::<()>(r#"{"x": 1}"#).setting, "");
    }

    fn error_of<S: DeserializeOwned + Default + core::fmt::Debug>(json: &str) -> SettingsError {
        parse::<S>(json).unwrap_err()
    }

    #[test]
    fn missing_top_level_field_is_named() {
        let e = error(r#"{"limit": 3}"#);
        assert_eq!(e.setting, "group");
        assert_eq!(e.message, "missing field `group`");
    }

    #[test]
    fn empty_object_for_a_struct_with_required_fields_is_an_error() {
        assert_eq!(error("{}").setting, "group");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = error(r#"{"group": "g", "limitt": 3}"#);
        assert_eq!(e.setting, "limitt");
        assert!(e.message.starts_with("unknown field `limitt`"), "{}", e.message);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = error(r#"{"group": "g", "limit": "ten"}"#);
        assert_eq!(e.setting, "limit");
        assert!(e.message.starts_with("invalid type: string \"ten\""), "{}", e.message);
        assert!(!e.message.contains("line"), "{}", e.message);
    }

    #[test]
    fn wrong_container_type_names_the_field_not_its_element() {
        assert_eq!(error(r#"{"group": ["g"]}"#).setting, "group");
        assert_eq!(error(r#"{"group": "g", "rules": {"path": "/"}}"#).setting, "rules");
    }

    #[test]
    fn nested_errors_name_the_array_element() {
        let json = r#"{"group": "g", "rules": [{"path": "/a"}, {"path": "/b", "mode": "maybe"}]}"#;
        let e = error(json);
        assert_eq!(e.setting, "rules[1].mode");
        assert!(e.message.starts_with("unknown variant `maybe`"), "{}", e.message);

        let e = error(r#"{"group": "g", "rules": [{"path": "/a"}, {"mode": "deny"}]}"#);
        assert_eq!(e.setting, "rules[1].path");

        let e = error(r#"{"group": "g", "rules": [{"path": "/a", "extra": 1}]}"#);
        assert_eq!(e.setting, "rules[0].extra");
    }

    #[test]
    fn multi_line_documents_are_located() {
        let json = "{\n  \"group\": \"g\",\n  \"rules\": [\n    {\"path\": 5}\n  ]\n}";
        assert_eq!(error(json).setting, "rules[0].path");
    }

    #[test]
    fn keys_with_escapes_and_non_ascii_text_are_handled() {
        let e = error("{\"group\": \"gr\u{00fc}n \\\" x\", \"w\u{00e9}ird\": 1}");
        assert_eq!(e.setting, "w\u{00e9}ird");
    }

    #[test]
    fn syntax_errors_keep_their_position() {
        let e = error(r#"{"group": "g",, }"#);
        assert!(e.message.contains("line 1"), "{}", e.message);
    }
}
