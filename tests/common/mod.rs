//! Shared test support: builds the policy components once (with the same script the demo
//! and CI use) and hands out paths, engines and requests.
#![allow(dead_code)]

pub mod mcp_sdk;
pub mod nginx;
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
    Engine::new(&EngineConfig::default().with_cache_dir(Some(cache))).expect("engine")
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

/// `examples/portcullis.toml` loaded twice: as it is, and with `line` (e.g. `reuse = true`)
/// added to every policy's table.
pub fn example_sets_with(tmp: &TempDir, line: &str) -> (portcullis_host::PolicySet, portcullis_host::PolicySet) {
    let text = std::fs::read_to_string(root().join("examples/portcullis.toml")).unwrap();
    let modules = root().join("target/policies");
    let text = text.replace("../target/policies", modules.to_str().unwrap());
    let changed: String = text
        .lines()
        .map(|l| {
            let header = l.starts_with("[policies.") && l.matches('.').count() == 1;
            if header { format!("{l}\n{line}\n") } else { format!("{l}\n") }
        })
        .collect();
    assert_eq!(changed.matches(line).count(), 4, "every policy gets `{line}`");
    policies_dir();
    let as_is = portcullis_host::PolicySet::from_config_file(&tmp.write("as-is.toml", text)).unwrap();
    let changed = portcullis_host::PolicySet::from_config_file(&tmp.write("changed.toml", changed)).unwrap();
    (as_is, changed)
}

/// The decisions and what each policy said, without timings and digests.
fn gist(verdict: &portcullis_host::Verdict) -> String {
    let policies: Vec<_> = verdict
        .policies
        .iter()
        .map(|p| (p.policy.clone(), p.decision, p.code.clone(), p.reason.clone(), p.labels.clone()))
        .collect();
    format!("{:?} {:?} {policies:?}", verdict.decision, verdict.decided_by)
}

/// Asserts that two sets decide every request of `examples/requests/` alike in both phases
/// (decision, deciding policy, and each policy's code, reason and labels), `rounds` times
/// over, and that the examples reach allow, deny, redact and approval.
pub fn assert_examples_decide_alike(a: &portcullis_host::PolicySet, b: &portcullis_host::PolicySet, rounds: usize) {
    let mut examples: Vec<_> =
        std::fs::read_dir(root().join("examples/requests")).unwrap().map(|e| e.unwrap().path()).collect();
    examples.sort();
    let response = serde_json::from_value(serde_json::json!({
        "status": 200, "headers": {"content-type": "application/json", "x-internal-user": "u1"},
        "body": {"json": {"customers": [{"email": "a@example.com", "phone": "1", "name": "A"}]}}
    }))
    .unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for round in 0..rounds {
        for file in &examples {
            let exchange: portcullis_host::Exchange =
                serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
            let request = &exchange.request;
            let (x, y) = (a.evaluate_request(request), b.evaluate_request(request));
            assert_eq!(gist(&x), gist(&y), "{} (round {round}), request phase", file.display());
            kinds.insert(format!("{:?}", x.kind()));
            let (x, y) = (a.evaluate_response(request, &response), b.evaluate_response(request, &response));
            assert_eq!(gist(&x), gist(&y), "{} (round {round}), response phase", file.display());
            kinds.insert(format!("{:?}", x.kind()));
        }
    }
    assert!(kinds.len() >= 4, "the examples should reach allow, deny, redact and approval: {kinds:?}");
}

/// Criterion's median estimate (ns) for one benchmark of the current run, for the benches
/// that print ratios to a baseline measured in the same run.
pub fn criterion_median_ns(group: &str, id: &str) -> Option<f64> {
    let path = root().join("target/criterion").join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

/// Reads one HTTP/1.1 request from `stream` (a hand-written server's connection) and parses
/// its body (`Content-Length` long) as JSON: `Value::Null` when it is not JSON, `None` when
/// the connection ends first.
pub fn read_json_request(stream: &mut std::net::TcpStream) -> Option<serde_json::Value> {
    use std::io::Read as _;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while buffer.len() < head_end + length {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    Some(serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(serde_json::Value::Null))
}
