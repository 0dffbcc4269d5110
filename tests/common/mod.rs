//! Shared test support: builds the policy components once (with the same script the demo
//! and CI use) and hands out paths, engines and requests.
#![allow(dead_code)]

pub mod serve;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use portcullis_host::{Engine, EngineConfig, Request};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder of built components, building them on first use with
/// `scripts/build-policies.sh`. Cargo's own lock serialises concurrent builds from
/// several test binaries; the script replaces each component atomically.
pub fn policies_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = root().join("scripts/build-policies.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed:\n{}\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        root().join("target/policies")
    })
}

/// The path of a built component, e.g. `component("agent-guard")`.
pub fn component(name: &str) -> PathBuf {
    let path = policies_dir().join(format!("{name}.wasm"));
    assert!(path.exists(), "{} was not built by scripts/build-policies.sh", path.display());
    path
}

/// A fresh engine whose compile cache, `target/test-cache`, is shared by every test
/// process (entries are written atomically), so each component compiles once per run.
pub fn engine() -> Engine {
    let cache = root().join("target/test-cache");
    Engine::new(&EngineConfig { cache_dir: Some(cache), ..EngineConfig::default() }).expect("engine")
}

/// The shared recorded traffic folder (`../shared/traffic`).
pub fn traffic_dir() -> PathBuf {
    let dir = root().join("../shared/traffic");
    assert!(dir.exists(), "the shared traffic folder {} is missing", dir.display());
    dir
}

/// The HAR captures of the shared traffic folder, sorted.
pub fn shared_captures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(traffic_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "har"))
        .collect();
    files.sort();
    files
}

/// Runs the `portcullis` command from the repository root, with the components built and
/// the tests' shared compile cache, plus `env`.
pub fn portcullis_cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    policies_dir();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.args(args).current_dir(root()).env("PORTCULLIS_CACHE_DIR", root().join("target/test-cache"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run portcullis")
}

/// A request from its JSON form.
pub fn request(json: serde_json::Value) -> Request {
    serde_json::from_value(json).expect("valid request JSON")
}

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("portcullis-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file inside and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
