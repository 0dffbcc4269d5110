//! The wasmtime engine, configured once for isolation and speed, and its compile cache.
//!
//! Every evaluation runs in a fresh instance, so instantiation is on the hot path: the
//! pooling allocator keeps memory slots mapped and resets them copy-on-write, concurrency
//! support is off (it costs ~0.6 µs per call and policies are synchronous), and epochs
//! bound each call's time from a background ticker. Compiling a component takes from
//! milliseconds (Rust) to seconds (Python, JS), so compiled components are cached on disk
//! by content digest.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// How often the background ticker advances the epoch. Call deadlines are counted in these
/// ticks, so a time limit is honoured to within about one tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Settings for the shared [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How many policy instances may be alive at once across all threads. Each costs
    /// address space (not memory) while idle. When all are busy, an evaluation fails
    /// closed instead of waiting.
    pub max_instances: u32,
    /// The largest linear memory any policy may be granted. Per-policy limits
    /// (`limits.memory_mb`) are enforced below this.
    pub max_memory_bytes: usize,
    /// Where compiled components are cached (`None`: no disk cache). The folder must be
    /// trusted: a compiled component is native code.
    pub cache_dir: Option<PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { max_instances: 1000, max_memory_bytes: 256 << 20, cache_dir: default_cache_dir() }
    }
}

/// The default compile cache folder: `$PORTCULLIS_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/portcullis`, else `~/.cache/portcullis`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PORTCULLIS_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("portcullis"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache").join("portcullis"))
}

/// Failures creating the engine or compiling a component.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the WebAssembly engine: {0}")]
    Config(String),
    /// The component did not compile.
    #[error("cannot compile the component: {0}")]
    Compile(String),
}

/// The shared wasmtime engine plus its ticker and compile cache. Cheap to clone; one per
/// process is enough.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    cache_dir: Option<PathBuf>,
    max_memory_bytes: usize,
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("cache_dir", &self.cache_dir).finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates the engine and starts its epoch ticker.
    pub fn new(config: &EngineConfig) -> Result<Engine, EngineError> {
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        let instances = config.max_instances.max(1);
        pool.total_component_instances(instances)
            // Guests written in Python need ~14–38 core instances per component; Rust ~2.
            .total_core_instances(instances.saturating_mul(4))
            .max_core_instances_per_component(64)
            .total_memories(instances.saturating_mul(2))
            .max_memories_per_component(8)
            .total_tables(instances.saturating_mul(2))
            .max_tables_per_component(8)
            .table_elements(20_000)
            .max_memory_size(config.max_memory_bytes)
            // Keep small guests' pages mapped between instances: resetting them with
            // memset is cheaper than page faults on the next instantiation.
            .linear_memory_keep_resident(2 << 20)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = wasmtime::Config::new();
        wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool))
            .concurrency_support(false)
            .epoch_interruption(true)
            .memory_init_cow(true)
            .wasm_component_model(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .max_wasm_stack(512 << 10);
        let inner = wasmtime::Engine::new(&wasm).map_err(|e| EngineError::Config(format!("{e:#}")))?;
        let ticker = Ticker::start(inner.clone());
        Ok(Engine {
            inner,
            cache_dir: config.cache_dir.clone(),
            max_memory_bytes: config.max_memory_bytes,
            _ticker: Arc::new(ticker),
        })
    }

    /// The wasmtime engine underneath.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// The largest memory a policy may be granted.
    pub fn max_memory_bytes(&self) -> usize {
        self.max_memory_bytes
    }

    /// The compile cache folder, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache_dir.as_deref()
    }

    /// Compiles a component, or loads it from the disk cache when the same bytes were
    /// compiled before by a compatible engine. Cache problems never fail a load: a cache
    /// entry that cannot be read or written is ignored (and logged).
    pub fn compile(&self, bytes: &[u8], digest: &str) -> Result<Component, EngineError> {
        if let Some(component) = self.cached(digest) {
            return Ok(component);
        }
        let component =
            Component::new(&self.inner, bytes).map_err(|e| EngineError::Compile(format!("{e:#}")))?;
        if let Some(path) = self.cache_path(digest)
            && let Err(e) = write_cache_entry(&path, &component)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compile cache entry");
        }
        Ok(component)
    }

    /// The component compiled earlier under `digest`, when the disk cache has it. An entry
    /// that cannot be read is ignored (and logged), so a broken cache only costs a compile.
    pub fn cached(&self, digest: &str) -> Option<Component> {
        let path = self.cache_path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this engine serialised into its own cache folder (named by
        // the component's digest and the engine's compatibility hash); `deserialize_file`
        // still checks the header and engine compatibility.
        match unsafe { Component::deserialize_file(&self.inner, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable compile cache entry");
                None
            }
        }
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner.precompile_compatibility_hash().hash(&mut hasher);
        Some(dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish())))
    }
}

fn write_cache_entry(path: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    // Write then rename, so a concurrent loader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// The lower-case hex SHA-256 of some bytes: a component's identity in the cache, in pins
/// and in every verdict.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: wasmtime::Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let spawned = std::thread::Builder::new().name("portcullis-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        });
        if let Err(e) = spawned {
            // Without the ticker no deadline would ever fire; say so loudly. Calls still
            // fail closed on memory and traps.
            tracing::error!(error = %e, "cannot start the epoch ticker: policy time limits are not enforced");
        }
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn engine_starts_with_defaults() {
        let engine = Engine::new(&EngineConfig { cache_dir: None, ..EngineConfig::default() }).unwrap();
        assert_eq!(engine.max_memory_bytes(), 256 << 20);
    }
}
