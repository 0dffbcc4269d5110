//! Everything `serve` checks before it listens, in one place: `portcullis check` runs it
//! alone (a config is checked in CI and before a reload exactly as `serve` would load it),
//! and `serve` runs it first.
//!
//! It reads the config, loads, links and initialises every policy with its settings,
//! builds the routes and the identity configuration, and checks each door's settings: its
//! upstream URL, its TLS files, and where the audit log and the approval store go. It binds
//! no port and writes no file, so it can run beside the server it is checking.

use std::path::Path;

use anyhow::{Context, Result, bail};
use portcullis_host::config::base_dir;
use portcullis_host::gate::Gate;
use portcullis_host::{Config, Engine};

/// A config checked as `serve` would load it.
pub struct Preflight {
    /// The parsed config.
    pub config: Config,
    /// The gate built from it: every policy loaded and initialised, routes and identity
    /// built.
    pub gate: Gate,
}

/// Checks the config at `config_path` without listening or writing anything.
pub fn run(config_path: &Path) -> Result<Preflight> {
    let config = Config::read(config_path)?;
    require_a_door(&config, config_path)?;
    let base = base_dir(config_path);
    let engine = Engine::new(&config.engine_config(&base))?;
    let gate = crate::setup::gate_on_engine(&config, config_path, &engine)?;
    check_key_fetchers(&gate, config_path)?;
    check_listeners(&config, config_path, &base)?;
    check_upstreams(&config, config_path, &base)?;
    check_audit(&config, config_path, &base)?;
    check_approvals(&config, config_path, &base)?;
    super::notify::preflight(config.approvals.as_ref(), &base, config_path)?;
    Ok(Preflight { config, gate })
}

/// `serve` with no door would start and do nothing: refused, naming the sections to add.
pub fn require_a_door(config: &Config, config_path: &Path) -> Result<()> {
    let server = &config.server;
    if server.proxy.is_none()
        && server.forward_auth.is_none()
        && server.ext_authz.is_none()
        && server.admin.is_none()
        && server.mcp.is_none()
    {
        bail!(
            "{} opens no front door: add [server.proxy], [server.forward_auth], [server.ext_authz], [server.mcp] or \
             [server.admin] (see docs/front-doors.md)",
            config_path.display()
        );
    }
    Ok(())
}

/// `[server.mcp.pins]` as `serve` reads it: the keys, and in `file` mode the pin file.
fn check_pins(section: &portcullis_host::config::McpSection, base: &Path) -> Result<()> {
    use portcullis_host::adapters::mcp_pins::{PinSet, PinsMode};
    let Some(pins) = &section.pins else { return Ok(()) };
    pins.check().map_err(anyhow::Error::msg)?;
    if let (PinsMode::File, Some(file)) = (pins.mode, &pins.file) {
        PinSet::load(&base.join(file)).context("[server.mcp.pins] file")?;
    }
    Ok(())
}

/// Each door's upstream URL parsed and its client built (TLS files read) exactly as `serve`
/// builds them before listening.
fn check_upstreams(config: &Config, config_path: &Path, base: &Path) -> Result<()> {
    let file = || config_path.display().to_string();
    if let Some(section) = &config.server.proxy {
        super::upstream::DoorUpstream::for_proxy(section, base).with_context(file)?;
    }
    if let Some(section) = &config.server.mcp {
        super::upstream::DoorUpstream::for_mcp(section, base).with_context(file)?;
        check_pins(section, base).with_context(file)?;
        section.check_origins().map_err(anyhow::Error::msg).with_context(file)?;
        if let Some(oauth) = &section.oauth {
            oauth.check().map_err(anyhow::Error::msg).with_context(file)?;
            anyhow::ensure!(
                !config.identity.jwt.is_empty(),
                "{}: [server.mcp.oauth] needs an [[identity.jwt]] issuer: nothing would verify the bearer tokens",
                file()
            );
            if let Some(exchange) = &oauth.exchange {
                anyhow::ensure!(
                    std::env::var(&exchange.client_secret_env).is_ok_and(|v| !v.is_empty()),
                    "{}: [server.mcp.oauth.exchange] client_secret_env: the environment variable {} is not set",
                    file(),
                    exchange.client_secret_env
                );
            }
        }
        let admin = config.server.admin.as_ref();
        let warnings = super::mcp::mrtr::preflight(section, config.approvals.as_ref(), admin, base)
            .map_err(anyhow::Error::msg)
            .with_context(file)?;
        for warning in warnings {
            eprintln!("portcullis: warning: {warning}");
        }
    }
    Ok(())
}

/// The TLS client of every issuer whose keys are fetched (`jwks_url`, `discovery`), built as
/// `serve` builds it: a bad `[identity.jwt.tls]` file is caught here, not at start.
fn check_key_fetchers(gate: &Gate, config_path: &Path) -> Result<()> {
    let Some(authenticator) = gate.authenticator() else { return Ok(()) };
    for ring in authenticator.key_rings() {
        let source = ring.source();
        let key = format!("[identity.jwt] issuer {:?}: tls", source.issuer);
        super::upstream::UpstreamClient::new(&source.tls, &source.base_dir, false, &key)
            .with_context(|| config_path.display().to_string())?;
    }
    Ok(())
}

/// Every listener's certificate, key and client CA loaded as `serve` loads them.
fn check_listeners(config: &Config, config_path: &Path, base: &Path) -> Result<()> {
    super::tls::Doors::load(&config.server, base).with_context(|| config_path.display().to_string())?;
    Ok(())
}

/// The audit log's folder must exist; an existing log must be a file this user can append
/// to. Checked without opening it for writing.
fn check_audit(config: &Config, config_path: &Path, base: &Path) -> Result<()> {
    let Some(section) = &config.audit else { return Ok(()) };
    if section.path.as_os_str() == "-" {
        return Ok(());
    }
    let path = base.join(&section.path);
    let key = || format!("{}: [audit] path {}", config_path.display(), path.display());
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => bail!("{}: is a folder, not a file", key()),
        Ok(meta) if meta.permissions().readonly() => bail!("{}: is read-only", key()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => folder_exists(&path).with_context(key),
        Err(e) => Err(e).with_context(key),
    }
}

/// An existing approval store is opened (its schema checked); a missing one needs its
/// folder, where `serve` will create it.
fn check_approvals(config: &Config, config_path: &Path, base: &Path) -> Result<()> {
    let Some(section) = &config.approvals else { return Ok(()) };
    let Some(path) = section.sqlite_path(base) else { return Ok(()) };
    let key = || format!("{}: [approvals] store {}", config_path.display(), path.display());
    if path.exists() {
        portcullis_host::approval::SqliteStore::open(&path).with_context(key)?;
        Ok(())
    } else {
        folder_exists(&path).with_context(key)
    }
}

fn folder_exists(path: &Path) -> Result<()> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if folder.is_dir() { Ok(()) } else { bail!("its folder {} does not exist", folder.display()) }
}
