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

/// Settings for the shared [`Engine`]. Start from [`EngineConfig::default`] and change what
/// you need with the `with_*` setters: new settings will be added.
#[derive(Debug, Clone)]
#[non_exhaustive]
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

impl EngineConfig {
    /// With another [`max_instances`](EngineConfig::max_instances).
    #[must_use]
    pub fn with_max_instances(mut self, max_instances: u32) -> EngineConfig {
        self.max_instances = max_instances;
        self
    }

    /// With another [`max_memory_bytes`](EngineConfig::max_memory_bytes).
    #[must_use]
    pub fn with_max_memory_bytes(mut self, max_memory_bytes: usize) -> EngineConfig {
        self.max_memory_bytes = max_memory_bytes;
        self
    }

    /// With another [`cache_dir`](EngineConfig::cache_dir) (`None`: no disk cache).
    #[must_use]
    pub fn with_cache_dir(mut self, cache_dir: Option<PathBuf>) -> EngineConfig {
        self.cache_dir = cache_dir;
        self
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

/// Shows an error and the chain of its causes on one line, `outer: inner: …`, as wasmtime's
/// `{:#}` does. For the messages of errors whose source is a wasmtime error: this crate keeps
/// those as `Box<dyn Error + Send + Sync>` (wasmtime's own type stays out of the API, and the
/// box keeps wasmtime's chain of causes), whose message is only the outermost context, while
/// the message should stay as informative as the whole chain.
pub(crate) struct Causes<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// Failures creating the engine or compiling a component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The configuration is out of range (checked here, before wasmtime sees it).
    #[error("cannot configure the WebAssembly engine: {0}")]
    Config(String),
    /// wasmtime refused the configuration.
    #[error("cannot configure the WebAssembly engine: {}", Causes(source.as_ref()))]
    Wasmtime {
        /// wasmtime's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The component did not compile.
    #[error("cannot compile the component: {}", Causes(source.as_ref()))]
    Compile {
        /// wasmtime's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The epoch ticker thread could not start. Without it no call would ever reach its
    /// deadline, so the engine refuses to start rather than run without time limits.
    #[error("cannot start the epoch ticker thread, without which policy time limits are not enforced: {0}")]
    Ticker(#[source] std::io::Error),
    /// The compile cache folder (or a folder above it) can be written by someone else, who
    /// could then plant native code that this process would run.
    #[error("refusing compile cache folder {}: {problem}; {fix}", dir.display())]
    UntrustedCache {
        /// The folder at fault (the cache folder or one above it).
        dir: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        fix: String,
    },
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
    /// Creates the engine and starts its epoch ticker. Fails when the ticker cannot start,
    /// and when the compile cache folder is one that others could write to (see
    /// [`EngineError::UntrustedCache`]). A cache folder that does not exist is created,
    /// private to the current user; one that cannot be created only turns the cache off.
    pub fn new(config: &EngineConfig) -> Result<Engine, EngineError> {
        Engine::build(config, std::thread::Builder::new())
    }

    /// [`Engine::new`] with the builder of the ticker thread (tests make it fail).
    fn build(config: &EngineConfig, ticker: std::thread::Builder) -> Result<Engine, EngineError> {
        if config.max_memory_bytes < (1 << 20) || config.max_memory_bytes as u64 > 4 << 30 {
            return Err(EngineError::Config(format!(
                "max_memory_bytes is {}, but must be between 1 MiB and 4 GiB (what a 32-bit memory can address)",
                config.max_memory_bytes
            )));
        }
        let cache_dir = match &config.cache_dir {
            Some(dir) => trusted_cache_dir(dir)?,
            None => None,
        };
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
        let inner = wasmtime::Engine::new(&wasm).map_err(|e| EngineError::Wasmtime { source: e.into() })?;
        let ticker = Ticker::start(inner.clone(), ticker).map_err(EngineError::Ticker)?;
        Ok(Engine { inner, cache_dir, max_memory_bytes: config.max_memory_bytes, _ticker: Arc::new(ticker) })
    }

    /// The wasmtime engine underneath. Public only with the `wasmtime-internals` feature (for
    /// benchmarks that measure a bare wasmtime instance beside a policy): wasmtime's types
    /// are not part of this crate's stable API.
    #[cfg(feature = "wasmtime-internals")]
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    /// The wasmtime engine underneath.
    #[cfg(not(feature = "wasmtime-internals"))]
    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
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
    /// compiled before by a compatible engine. The cache key is the SHA-256 of `bytes`,
    /// computed here, so no caller can make the cache load an entry for other bytes. Cache
    /// problems never fail a load: an entry that cannot be read or written is ignored (and
    /// logged).
    ///
    /// Public only with the `wasmtime-internals` feature (it returns a wasmtime type);
    /// policies are compiled by [`Policy::load`](crate::Policy::load).
    #[cfg(any(test, feature = "wasmtime-internals"))]
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, EngineError> {
        self.compile_keyed(bytes, &ContentDigest::of(bytes))
    }

    /// [`Engine::compile`] under a key the caller computed: `ContentDigest::of(bytes)` for
    /// a component (so it is hashed once), or a digest of what a derived component (a
    /// snapshot) was made from. Crate-internal: the key must describe `bytes`.
    pub(crate) fn compile_keyed(&self, bytes: &[u8], key: &ContentDigest) -> Result<Component, EngineError> {
        if let Some(component) = self.cached(key) {
            return Ok(component);
        }
        let component = Component::new(&self.inner, bytes).map_err(|e| EngineError::Compile { source: e.into() })?;
        if let Some(path) = self.cache_path(key)
            && let Err(e) = write_cache_entry(&path, &component)
        {
            tracing::warn!(path = %path.display(), error = %Causes(&e), "cannot write compile cache entry");
        }
        Ok(component)
    }

    /// The component compiled earlier under `key`, when the disk cache has it. An entry
    /// that cannot be read, or that is not a regular file private to this user, is ignored
    /// (and logged), so a broken cache only costs a compile.
    pub(crate) fn cached(&self, key: &ContentDigest) -> Option<Component> {
        let path = self.cache_path(key)?;
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable compile cache entry");
                return None;
            }
        };
        if let Err(problem) = private_file(&metadata) {
            tracing::warn!(path = %path.display(), problem, "ignoring compile cache entry");
            return None;
        }
        // SAFETY: `deserialize_file` runs the file as native code. The path is built from a
        // digest this crate computed (always 64 hex digits, so it stays inside the folder)
        // and the engine's compatibility hash; the folder was checked at start to be
        // writable only by this user (or root); the entry is a regular file (no symlink)
        // owned by this user or root and writable by no one else. wasmtime still checks the
        // header and engine compatibility.
        #[expect(unsafe_code, reason = "loading a compiled component is unsafe; the checks above are why it is sound")]
        let loaded = unsafe { Component::deserialize_file(&self.inner, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable compile cache entry");
                None
            }
        }
    }

    fn cache_path(&self, key: &ContentDigest) -> Option<PathBuf> {
        use std::hash::{Hash, Hasher};
        let dir = self.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner.precompile_compatibility_hash().hash(&mut hasher);
        Some(dir.join(format!("{key}-{:016x}.cwasm", hasher.finish())))
    }
}

/// A SHA-256 digest that keys the compile cache. It can only be made by hashing, so it is
/// always 32 bytes and always names a file of 64 hex digits inside the cache folder.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContentDigest([u8; 32]);

impl ContentDigest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> ContentDigest {
        ContentDigest(Sha256::digest(bytes).into())
    }
}

impl std::fmt::Display for ContentDigest {
    /// Lower-case hex, 64 digits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut hex = [0u8; 64];
        f.write_str(base16ct::lower::encode_str(&self.0, &mut hex).map_err(|_| std::fmt::Error)?)
    }
}

impl std::fmt::Debug for ContentDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentDigest({self})")
    }
}

/// Distinguishes temporary files of concurrent writers within one process.
static TMP_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_cache_entry(path: &Path, component: &Component) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    // Write then rename, so a concurrent loader never sees half a file. The temporary file is
    // new (never an existing file or symlink) and private to this user.
    let serial = TMP_SERIAL.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{serial}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| file.write_all(&bytes));
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
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

/// The cache folder to use: created private when missing (`None`, with a warning, when it
/// cannot be), refused when someone other than this user (or root) could write to it or to
/// a folder above it, since they could then plant or swap native code.
fn trusted_cache_dir(dir: &Path) -> Result<Option<PathBuf>, EngineError> {
    if let Err(e) = create_private_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the compile cache folder: caching is off");
        return Ok(None);
    }
    let real = match dir.canonicalize() {
        Ok(real) => real,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot resolve the compile cache folder: caching is off");
            return Ok(None);
        }
    };
    check_cache_folders(&real)?;
    Ok(Some(real))
}

/// Checks `dir` (already resolved, no symlinks) and every folder above it.
#[cfg(unix)]
fn check_cache_folders(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let untrusted =
        |at: &Path, problem: String, fix: String| EngineError::UntrustedCache { dir: at.to_owned(), problem, fix };
    let stat = |at: &Path| {
        std::fs::metadata(at).map_err(|e| untrusted(at, format!("cannot be read ({e})"), "check the path".into()))
    };
    let metadata = stat(dir)?;
    if metadata.uid() != me && metadata.uid() != 0 {
        return Err(untrusted(
            dir,
            format!("it is owned by user id {}, not by this user (id {me}) or root", metadata.uid()),
            "point `engine.cache_dir` (or PORTCULLIS_CACHE_DIR) at a folder of your own, or set `engine.cache = false`"
                .into(),
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(untrusted(
            dir,
            format!("it is writable by its group or by others (mode {:o})", metadata.mode() & 0o7777),
            format!("run `chmod go-w {}`, or point `engine.cache_dir` at a private folder", dir.display()),
        ));
    }
    // A folder above that others may write to (without the sticky bit, as on /tmp) lets
    // them rename the cache folder away and put their own in its place.
    for above in dir.ancestors().skip(1) {
        let metadata = stat(above)?;
        let mode = metadata.mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(untrusted(
                above,
                format!(
                    "it holds the compile cache folder {} and is writable by its group or by others (mode {:o})",
                    dir.display(),
                    mode & 0o7777
                ),
                format!("run `chmod go-w {0}` or `chmod +t {0}`, or put the cache elsewhere", above.display()),
            ));
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_cache_folders(_dir: &Path) -> Result<(), EngineError> {
    Ok(())
}

/// Whether a cache entry is a regular file that only this user (or root) can write.
fn private_file(metadata: &std::fs::Metadata) -> Result<(), String> {
    if !metadata.file_type().is_file() {
        return Err("not a regular file".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me && metadata.uid() != 0 {
            return Err(format!("owned by user id {}, not by this user", metadata.uid()));
        }
        if metadata.mode() & 0o022 != 0 {
            return Err(format!("writable by its group or others (mode {:o})", metadata.mode() & 0o7777));
        }
    }
    Ok(())
}

/// The lower-case hex SHA-256 of some bytes: a component's identity in the cache, in pins
/// and in every verdict.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ContentDigest::of(bytes).to_string()
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    /// Starts the ticker thread; an error when the thread cannot be spawned, since without
    /// it no deadline would ever fire.
    fn start(engine: wasmtime::Engine, builder: std::thread::Builder) -> std::io::Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        builder.name("portcullis-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(Ticker { stop })
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

    /// The smallest component: the preamble of the component binary format, no sections.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portcullis-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn with_cache(dir: &Path) -> Result<Engine, EngineError> {
        Engine::new(&EngineConfig { cache_dir: Some(dir.to_owned()), max_instances: 4, ..EngineConfig::default() })
    }

    #[test]
    fn cache_keys_are_64_hex_digits_computed_from_the_bytes() {
        let key = ContentDigest::of(b"abc");
        assert_eq!(key.to_string(), sha256_hex(b"abc"));
        assert_eq!(key.to_string().len(), 64);
        assert!(key.to_string().bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[cfg(unix)]
    #[test]
    fn cache_entries_are_private_files_and_others_are_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("entries");
        let engine = with_cache(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "created private");
        engine.compile(EMPTY_COMPONENT).unwrap();
        let key = ContentDigest::of(EMPTY_COMPONENT);
        let path = engine.cache_path(&key).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(engine.cached(&key).is_some());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(engine.cached(&key).is_none(), "an entry others can write is not loaded");
        std::fs::remove_file(&path).unwrap();
        let elsewhere = dir.join("elsewhere.cwasm");
        engine.compile(EMPTY_COMPONENT).unwrap();
        std::fs::rename(&path, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(engine.cached(&key).is_none(), "a symlinked entry is not loaded");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression (issue 16): a cache folder others can write to was used, so anyone who
    /// could write there could plant native code for this process to run.
    #[cfg(unix)]
    #[test]
    fn cache_folders_others_can_write_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = with_cache(&dir).unwrap_err();
        assert!(matches!(err, EngineError::UntrustedCache { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(&*dir.to_string_lossy()) && message.contains("chmod go-w"), "{message}");

        // A folder above it that others may write to (no sticky bit) is refused too.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inner = dir.join("cache");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o700)).unwrap();
        let message = with_cache(&inner).unwrap_err().to_string();
        assert!(message.contains(&format!("refusing compile cache folder {}:", dir.display())), "{message}");
        // With the sticky bit (as on /tmp) others cannot rename it away: accepted.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        with_cache(&inner).unwrap();

        // Owned by another user (only root can arrange that here).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&inner, Some(4242), None).unwrap();
            let message = with_cache(&inner).unwrap_err().to_string();
            assert!(message.contains("owned by user id 4242"), "{message}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Regression (issue 16): a ticker that could not start was only logged, leaving every
    /// policy without a time limit.
    #[test]
    fn an_epoch_ticker_that_cannot_start_fails_the_engine() {
        // A stack of 2^60 bytes cannot be mapped, so the thread cannot be spawned.
        let builder = std::thread::Builder::new().stack_size(1 << 60);
        let err =
            Engine::build(&EngineConfig { cache_dir: None, max_instances: 4, ..EngineConfig::default() }, builder)
                .unwrap_err();
        assert!(matches!(err, EngineError::Ticker(_)), "{err:?}");
        assert!(err.to_string().contains("time limits are not enforced"), "{err}");
    }

    #[test]
    fn memory_caps_a_wasm_memory_cannot_have_are_refused() {
        for bytes in [0, usize::MAX] {
            let config = EngineConfig { cache_dir: None, max_memory_bytes: bytes, ..EngineConfig::default() };
            let err = Engine::new(&config).unwrap_err().to_string();
            assert!(err.contains("max_memory_bytes"), "{err}");
        }
    }

    #[test]
    fn engine_starts_with_defaults() {
        let engine = Engine::new(&EngineConfig { cache_dir: None, ..EngineConfig::default() }).unwrap();
        assert_eq!(engine.max_memory_bytes(), 256 << 20);
    }
}
