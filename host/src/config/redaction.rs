//! `[redaction]`: settings of the host's redaction applier, today the key of keyed
//! pseudonyms (the `pseudonym` mask of contract 0.2).
//!
//! The key is a secret: it is read from an environment variable or a file, never written in
//! the config itself, and never logged. Without it a policy that asks for a pseudonym makes
//! the host refuse the message (fail closed), naming the keys below.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::mask::{MIN_PSEUDONYM_KEY_BYTES, PseudonymKey};

/// `[redaction]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedactionSection {
    /// The environment variable that holds the pseudonym key (at least 16 bytes).
    pub pseudonym_key_env: Option<String>,
    /// A file that holds the pseudonym key (at least 16 bytes; one trailing newline is not
    /// part of it), relative to the config's folder.
    pub pseudonym_key_file: Option<PathBuf>,
}

impl RedactionSection {
    /// The configured pseudonym key, read from its variable or file; `None` when neither is
    /// set. Errors name the key and say what is wrong, never the key's bytes.
    pub fn pseudonym_key(&self, base_dir: &Path) -> Result<Option<PseudonymKey>, String> {
        let bytes = match (&self.pseudonym_key_env, &self.pseudonym_key_file) {
            (Some(_), Some(_)) => {
                return Err("[redaction] sets both `pseudonym_key_env` and `pseudonym_key_file`; keep one".to_owned());
            }
            (None, None) => return Ok(None),
            (Some(var), None) => std::env::var_os(var)
                .ok_or_else(|| format!("[redaction] pseudonym_key_env: the environment variable `{var}` is not set"))?
                .into_encoded_bytes(),
            (None, Some(file)) => {
                let path = base_dir.join(file);
                let mut bytes = std::fs::read(&path)
                    .map_err(|e| format!("[redaction] pseudonym_key_file: cannot read `{}`: {e}", path.display()))?;
                if bytes.ends_with(b"\n") {
                    bytes.pop();
                    if bytes.ends_with(b"\r") {
                        bytes.pop();
                    }
                }
                bytes
            }
        };
        let which = if self.pseudonym_key_env.is_some() { "pseudonym_key_env" } else { "pseudonym_key_file" };
        PseudonymKey::new(&bytes).map(Some).ok_or_else(|| {
            format!(
                "[redaction] {which}: the key has {} bytes, but a pseudonym key needs at least {MIN_PSEUDONYM_KEY_BYTES}",
                bytes.len()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_from_a_file_and_errors_that_name_the_setting() {
        let dir = std::env::temp_dir().join(format!("portcullis-redaction-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("key"), b"0123456789abcdef0123\n").unwrap();
        std::fs::write(dir.join("short"), b"short\n").unwrap();
        let section = |file: &str| RedactionSection { pseudonym_key_file: Some(file.into()), ..Default::default() };
        assert!(RedactionSection::default().pseudonym_key(&dir).unwrap().is_none());
        let key = section("key").pseudonym_key(&dir).unwrap().unwrap();
        let same = PseudonymKey::new(b"0123456789abcdef0123").unwrap();
        assert_eq!(key.pseudonym("v"), same.pseudonym("v"), "the trailing newline is not part of the key");
        let err = section("short").pseudonym_key(&dir).unwrap_err();
        assert!(err.contains("pseudonym_key_file") && err.contains("16"), "{err}");
        let err = section("missing").pseudonym_key(&dir).unwrap_err();
        assert!(err.contains("pseudonym_key_file") && err.contains("missing"), "{err}");
        let env = RedactionSection {
            pseudonym_key_env: Some("PORTCULLIS_TEST_SURELY_UNSET_KEY".into()),
            ..Default::default()
        };
        let err = env.pseudonym_key(&dir).unwrap_err();
        assert!(err.contains("PORTCULLIS_TEST_SURELY_UNSET_KEY") && err.contains("not set"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
