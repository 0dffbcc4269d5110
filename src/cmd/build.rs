//! `portcullis build`: any policy project to a component, calling the language's own
//! toolchain (cargo for Rust, componentize-py for Python, componentize-js for JavaScript)
//! and naming what to install when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

use crate::cli::BuildArgs;

const TRIPLE: &str = "wasm32-wasip2";

pub fn run(args: &BuildArgs) -> Result<ExitCode> {
    let dir = &args.dir;
    let started = Instant::now();
    let (name, out) = if dir.join("Cargo.toml").is_file() {
        let name = project_name(&dir.join("Cargo.toml"), "package")?;
        let out = args.out.clone().unwrap_or_else(|| dir.join("target").join(format!("{name}.wasm")));
        build_rust(dir, &name, &out, args.jobs)?;
        (name, out)
    } else if dir.join("pyproject.toml").is_file() {
        let name = project_name(&dir.join("pyproject.toml"), "project")?;
        let out = args.out.clone().unwrap_or_else(|| dir.join("target").join(format!("{name}.wasm")));
        build_python(dir, &out, args.sdk.as_deref())?;
        (name, out)
    } else if dir.join("package.json").is_file() {
        let name = package_name(&dir.join("package.json"))?;
        let out = args.out.clone().unwrap_or_else(|| dir.join("target").join(format!("{name}.wasm")));
        build_js(dir, &out, args.sdk.as_deref())?;
        (name, out)
    } else {
        bail!(
            "{} has no Cargo.toml (Rust), pyproject.toml (Python) or package.json (JavaScript); \
             `portcullis new --lang rust|python|js NAME` starts one",
            dir.display()
        );
    };
    let size = std::fs::metadata(&out).map_or(0, |m| m.len());
    println!("built `{name}`: {} ({size} bytes, {:.1} s)", out.display(), started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// `[package] name` or `[project] name`.
fn project_name(manifest: &Path, table: &str) -> Result<String> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    doc.get(table)
        .and_then(|t| t.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{} has no `[{table}] name`", manifest.display()))
}

/// `name` of a package.json.
fn package_name(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", manifest.display()))?;
    doc.get("name")
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{} has no `name`", manifest.display()))
}

fn build_rust(dir: &Path, name: &str, out: &Path, jobs: Option<usize>) -> Result<()> {
    if let Ok(installed) = Command::new("rustup").args(["target", "list", "--installed"]).output()
        && installed.status.success()
        && !String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == TRIPLE)
    {
        bail!("the Rust target {TRIPLE} is not installed; run `rustup target add {TRIPLE}`");
    }
    let target_dir = rust_target_dir(dir)?;
    let manifest = std::path::absolute(dir.join("Cargo.toml")).context("resolving the project folder")?;
    let mut cargo = Command::new("cargo");
    cargo
        .args(["build", "--release", "--target", TRIPLE, "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        // Cargo reads `.cargo/config.toml` from the folder it runs in, not the manifest's:
        // run it in the project, so the scaffold's 64 KiB guest stack flag applies however
        // `portcullis build DIR` was called.
        .current_dir(dir);
    if let Some(jobs) = jobs.filter(|&n| n > 0) {
        cargo.arg("--jobs").arg(jobs.to_string());
    }
    let status = cargo.status().map_err(|e| missing(e, "cargo", "install Rust with rustup (https://rustup.rs)"))?;
    if !status.success() {
        bail!("cargo build failed for {} (its errors are above)", dir.display());
    }
    let artifact = target_dir.join(TRIPLE).join("release").join(format!("{}.wasm", name.replace('-', "_")));
    if !artifact.is_file() {
        bail!("cargo built no component at {}; is `crate-type` \"cdylib\" in [lib]?", artifact.display());
    }
    place(&artifact, out)
}

/// Where cargo builds a Rust project: `CARGO_TARGET_DIR`, else `PORTCULLIS_TARGET_DIR`,
/// else one folder per user (`$XDG_CACHE_HOME/portcullis/target`, or
/// `~/.cache/portcullis/target`), shared by every policy project. The SDK, serde and
/// wit-bindgen are then compiled once for all projects with the same profile and flags (the
/// scaffold's), so a second project's first build takes seconds, not a minute. Cargo locks
/// the folder, so builds of two projects wait for each other rather than clash; each
/// component is copied out to the project's own `target/` at once. Without a home folder,
/// the project's own `target/`.
fn rust_target_dir(dir: &Path) -> Result<PathBuf> {
    let given = std::env::var_os("CARGO_TARGET_DIR").or_else(|| std::env::var_os("PORTCULLIS_TARGET_DIR"));
    let shared = given.map(PathBuf::from).or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(cache.join("portcullis").join("target"))
    });
    let target = shared.unwrap_or_else(|| dir.join("target"));
    std::path::absolute(&target).with_context(|| format!("resolving {}", target.display()))
}

fn build_python(dir: &Path, out: &Path, sdk: Option<&Path>) -> Result<()> {
    let sdk = super::new::sdk_dir(sdk)?;
    let repo_venv = sdk.parent().map(|repo| repo.join("target/python-venv/bin"));
    // componentize-py: COMPONENTIZE_PY, else on PATH, else the repository's venv that
    // scripts/build-python-policies.sh fills.
    let (componentize_py, python) = match std::env::var_os("COMPONENTIZE_PY") {
        Some(command) => (PathBuf::from(command), PathBuf::from("python3")),
        None if Command::new("componentize-py").arg("--version").output().is_ok() => {
            (PathBuf::from("componentize-py"), PathBuf::from("python3"))
        }
        None => match repo_venv.filter(|bin| bin.join("componentize-py").is_file()) {
            Some(bin) => (bin.join("componentize-py"), bin.join("python3")),
            None => bail!(
                "componentize-py is not installed; run scripts/build-python-policies.sh once (it installs the pinned \
                 version into target/python-venv), or `pip install componentize-py==0.25.1`, or set COMPONENTIZE_PY"
            ),
        },
    };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let status = Command::new(&python)
        .arg(sdk.join("python/portcullis_build.py"))
        .arg("--componentize-py")
        .arg(&componentize_py)
        .arg("build")
        .arg(dir)
        .arg(out)
        .status()
        .map_err(|e| missing(e, &python.display().to_string(), "install python3 (3.11 or newer)"))?;
    if !status.success() {
        bail!("componentize-py failed for {} (its errors are above)", dir.display());
    }
    // The bindings the project's unit tests import (`wit_world`), in its own target/ (not
    // the repository's): the scaffold's test file puts them and the SDK on its path.
    let bindings = dir.join("target").join("python-bindings");
    let status = Command::new(&python)
        .arg(sdk.join("python/portcullis_build.py"))
        .arg("--componentize-py")
        .arg(&componentize_py)
        .arg("bindings")
        .arg(&bindings)
        .status()
        .map_err(|e| missing(e, &python.display().to_string(), "install python3 (3.11 or newer)"))?;
    if !status.success() {
        bail!(
            "componentize-py could not write the unit tests' bindings to {} (its errors are above)",
            bindings.display()
        );
    }
    Ok(())
}

/// Runs the JavaScript SDK's builder (guest-sdk/js/build.mjs), which stages the project
/// with the SDK, writes the WIT world for its capabilities and calls componentize-js.
fn build_js(dir: &Path, out: &Path, sdk: Option<&Path>) -> Result<()> {
    let sdk = super::new::sdk_dir(sdk)?;
    let node = Command::new("node")
        .args(["-p", "process.versions.node.split('.')[0]"])
        .output()
        .map_err(|e| missing(e, "node", "install Node.js 18 or later (e.g. apt-get install nodejs npm)"))?;
    let major: u32 = String::from_utf8_lossy(&node.stdout).trim().parse().unwrap_or(0);
    if major < 18 {
        bail!("node {major} is too old; componentize-js needs Node.js 18 or later");
    }
    let tools = sdk.parent().map(|repo| repo.join("target/js-tools/node_modules/@bytecodealliance/componentize-js"));
    if std::env::var_os("COMPONENTIZE_JS").is_none() && !tools.as_ref().is_some_and(|t| t.is_dir()) {
        bail!(
            "componentize-js is not installed; run scripts/build-js-policies.sh once in the Portcullis repository (it \
             installs the pinned version into target/js-tools), or set COMPONENTIZE_JS to a componentize-js package folder"
        );
    }
    let status = Command::new("node")
        .arg(sdk.join("js/build.mjs"))
        .arg(dir)
        .arg(out)
        .status()
        .map_err(|e| missing(e, "node", "install Node.js 18 or later"))?;
    if !status.success() {
        bail!("componentize-js failed for {} (its errors are above)", dir.display());
    }
    Ok(())
}

/// Copies `from` next to `to` and renames it into place: a server watching `to` never
/// loads a half-written component.
fn place(from: &Path, to: &Path) -> Result<()> {
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(
        ".{}.{}",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("policy.wasm"),
        std::process::id()
    ));
    std::fs::copy(from, &tmp).with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).with_context(|| format!("renaming into {}", to.display()))?;
    Ok(())
}

fn missing(err: std::io::Error, tool: &str, fix: &str) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::NotFound {
        anyhow!("`{tool}` was not found; {fix}")
    } else {
        anyhow!("running `{tool}`: {err}")
    }
}
