//! `portcullis new`: a policy project that builds to a component and passes its own test.
//!
//! The files are templates under `templates/new/` compiled into the binary, so the command
//! works wherever the binary is copied. `{{name}}`, `{{type}}`, `{{module}}`, `{{sdk}}`,
//! `{{sdk_js}}` (the JavaScript SDK's folder relative to the project, since JavaScript
//! imports are relative paths), `{{lang}}` and `{{unit_tests}}` (the unit-test command) are
//! filled in. Nothing is overwritten: an existing, non-empty folder is an error.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::cli::{Lang, NewArgs};

/// Files every project gets, whatever the language.
const COMMON: &[(&str, &str)] = &[
    ("portcullis.toml", include_str!("../../templates/new/common/portcullis.toml")),
    ("tests/policy.toml", include_str!("../../templates/new/common/tests/policy.toml")),
    ("tests/traffic.jsonl", include_str!("../../templates/new/common/tests/traffic.jsonl")),
    ("README.md", include_str!("../../templates/new/common/README.md")),
    (".gitignore", include_str!("../../templates/new/common/gitignore")),
];

const RUST: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/new/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("../../templates/new/rust/src/lib.rs")),
    // The 64 KiB guest stack (cargo reads it when `portcullis build` runs it here).
    (".cargo/config.toml", include_str!("../../templates/new/rust/cargo/config.toml")),
];

const PYTHON: &[(&str, &str)] = &[
    ("pyproject.toml", include_str!("../../templates/new/python/pyproject.toml")),
    ("{{module}}.py", include_str!("../../templates/new/python/policy.py")),
    ("test_{{module}}.py", include_str!("../../templates/new/python/test_policy.py")),
];

const JS: &[(&str, &str)] = &[
    ("package.json", include_str!("../../templates/new/js/package.json")),
    ("policy.js", include_str!("../../templates/new/js/policy.js")),
    ("policy.test.js", include_str!("../../templates/new/js/policy.test.js")),
];

pub fn run(args: &NewArgs) -> Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && fs::read_dir(&dir).map_or(true, |mut d| d.next().is_some()) {
        bail!("{} already exists and is not empty; choose another NAME or --dir", dir.display());
    }
    let sdk = sdk_dir(args.sdk.as_deref())?;
    let (lang, files, unit_tests) = match args.lang {
        Lang::Rust => ("Rust", RUST, "cargo test"),
        Lang::Python => ("Python", PYTHON, "python3 -m unittest"),
        Lang::Js => ("JavaScript", JS, "node --test"),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let project = dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?;
    let sdk_js = relative(&project, &sdk.join("js"));
    let module = args.name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{type}}", &camel_case(&args.name))
            .replace("{{module}}", &module)
            .replace("{{sdk_js}}", &sdk_js)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{lang}}", lang)
            .replace("{{unit_tests}}", unit_tests)
    };
    for (path, text) in COMMON.iter().chain(files) {
        let path = dir.join(fill(path));
        fs::create_dir_all(path.parent().unwrap_or(&dir)).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(&path, fill(text)).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("created {} ({lang} policy `{}`)", dir.display(), args.name);
    println!("next:\n  cd {}\n  portcullis build\n  {unit_tests}\n  portcullis test tests/", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The guest SDK folder: `--sdk`/`PORTCULLIS_SDK`, else the one of the repository this
/// binary was built from. Made absolute, since the project refers to it from elsewhere.
pub fn sdk_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("guest-sdk"),
    };
    let parts = ["rust/Cargo.toml", "python/portcullis_build.py", "js/build.mjs"];
    if !parts.iter().all(|part| dir.join(part).is_file()) {
        bail!(
            "{} is not the Portcullis guest SDK folder (it needs rust/Cargo.toml, python/portcullis_build.py and \
             js/build.mjs); \
             pass --sdk PATH/TO/portcullis/guest-sdk or set PORTCULLIS_SDK",
            dir.display()
        );
    }
    dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))
}

/// The path from folder `from` to `to` (both absolute), as a JavaScript import wants it:
/// `../../sdk/js`, or `./js` when `to` is inside `from`.
fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".into(); from.len() - common];
    parts.extend(to[common..].iter().map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.first().is_none_or(|p| p != "..") {
        parts.insert(0, ".".into());
    }
    parts.join("/")
}

/// Policy names are also crate, module and component names.
fn check_name(name: &str) -> Result<()> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        bail!(
            "`{name}` is not a policy name: use lower-case letters, digits and single `-`, starting with a letter (e.g. `invoice-guard`)"
        );
    }
    Ok(())
}

/// `invoice-guard` → `InvoiceGuard`, the policy's type name.
fn camel_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(camel_case("invoice-guard2"), "InvoiceGuard2");
        for bad in ["", "Guard", "2fa", "a_b", "a-", "a--b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        check_name("invoice-guard2").unwrap();
    }

    #[test]
    fn relative_paths() {
        let rel = |a: &str, b: &str| relative(Path::new(a), Path::new(b));
        assert_eq!(rel("/tmp/x/guard", "/work/repo/guest-sdk/js"), "../../../work/repo/guest-sdk/js");
        assert_eq!(rel("/work/repo/policies/js/guard", "/work/repo/guest-sdk/js"), "../../../guest-sdk/js");
        assert_eq!(rel("/work/guard", "/work/guard/sdk/js"), "./sdk/js");
    }
}
