//! `portcullis serve`: the front doors (reverse proxy, forward-auth, Envoy ext_authz, MCP) and
//! the admin listener, all over one live gate that hot-reloads.
//!
//! Front doors only translate their protocol; authentication, evaluation, approvals and
//! the audit record happen in the library's gate (`Gate::admit` / `Gate::release`).

pub mod admin;
pub mod ext_authz;
pub mod forward_auth;
pub mod hold;
pub mod http;
pub mod inbox;
pub mod jwks;
pub mod live;
pub mod mcp;
pub mod metrics;
pub mod notify;
pub mod preflight;
pub mod proxy;
pub mod tls;
pub mod upstream;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use portcullis_host::audit::AuditSink;
use portcullis_host::config::base_dir;
use portcullis_host::{Config, Engine};
use tokio::net::TcpListener;
use tokio::sync::watch;

use live::{Keep, Live, build_gate, fixed_sections, open_approvals, open_audit};
use metrics::{Metrics, Observed};

/// Loads the config, opens every configured door and serves until SIGINT or SIGTERM.
///
/// With `ready_file`, once every door listens, writes the address each door is bound to
/// there as JSON (`{"proxy": "127.0.0.1:41234", …}`): with `listen = "127.0.0.1:0"` the
/// system picks a free port, and this is how a supervisor or a test learns it without
/// racing another process for a port. The file is removed when the server stops.
pub fn run(config_path: &Path, ready_file: Option<&Path>) -> Result<()> {
    if let Some(path) = ready_file {
        // A file left by an earlier run must not be taken for this one's.
        remove_ready_file(path)?;
    }
    let config = Config::read(config_path)?;
    preflight::require_a_door(&config, config_path)?;
    let engine = Engine::new(&config.engine_config(&base_dir(config_path)))?;
    let metrics = Arc::new(Metrics::new());
    let sink = open_audit(&config, config_path)?;
    let audit: Arc<dyn AuditSink> = Arc::new(Observed { inner: sink, metrics: metrics.clone() });
    let approvals = open_approvals(&config, config_path)?;
    // Checked before any door listens: target URLs, signing keys, TLS files.
    let notifier = notify::Notifier::new(config.approvals.as_ref(), &base_dir(config_path), metrics.clone())
        .with_context(|| config_path.display().to_string())?
        .map(Arc::new);
    let holding = Arc::new(hold::Holding::new(config.holds(), config.max_held(), metrics.clone()));
    let keep = Keep {
        engine,
        approvals,
        notifier,
        holding,
        audit: audit.clone(),
        counters: config.rate_limiter(config_path)?,
        fixed: fixed_sections(&config),
    };
    let gate = build_gate(&config, config_path, &keep)?;
    let live = Live::new(gate, keep, metrics, &config, config_path);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(serve_doors(&config, live, &base_dir(config_path), ready_file));
    if let Some(path) = ready_file
        && let Err(e) = remove_ready_file(path)
    {
        tracing::warn!(error = %format!("{e:#}"), "removing the ready file failed");
    }
    if let Err(e) = audit.flush() {
        tracing::error!(error = %e, "flushing the audit log failed");
    }
    result
}

async fn serve_doors(config: &Config, live: Live, base: &Path, ready_file: Option<&Path>) -> Result<()> {
    // Upstream URLs and their TLS files are checked before any door listens.
    let proxy_upstream =
        config.server.proxy.as_ref().map(|s| upstream::DoorUpstream::for_proxy(s, base)).transpose()?;
    let mcp_upstream = config.server.mcp.as_ref().map(|s| upstream::DoorUpstream::for_mcp(s, base)).transpose()?;
    // So are the listeners' certificates and keys.
    let tls = tls::Doors::load(&config.server, base)?;
    // JWT keys fetched from issuers: loaded before the doors open (an issuer that is down
    // does not stop the start).
    live.start_jwks().await?;
    let (stop, stopped) = watch::channel(false);
    if let Some(notifier) = &live.keep().notifier {
        notifier.start(&stopped);
    }
    let mut tasks = tokio::task::JoinSet::new();
    // Each door's bound address by its config section's name, for the ready file.
    let mut bound = BTreeMap::new();
    if let (Some(mut section), Some(upstream)) = (config.server.proxy.clone(), proxy_upstream) {
        let listener = bind(section.listen, "[server.proxy] listen").await?;
        bound.insert("proxy", announce("proxy", &listener, tls.proxy.is_some(), &format!(" -> {}", section.upstream))?);
        let listener = http::Listener { tcp: listener, tls: tls.proxy.clone(), h2c: section.h2c };
        if listener.tls.is_some() {
            // Callers reach a TLS listener over https, whatever `scheme` says.
            section.scheme = "https".into();
        }
        tasks.spawn(proxy::serve(listener, live.clone(), section, upstream, stopped.clone()));
    }
    if let Some(section) = config.server.forward_auth.clone() {
        let listener = bind(section.listen, "[server.forward_auth] listen").await?;
        bound.insert("forward_auth", announce("forward-auth", &listener, tls.forward_auth.is_some(), "")?);
        let listener = http::Listener { tcp: listener, tls: tls.forward_auth.clone(), h2c: false };
        let (live, stopped) = (live.clone(), stopped.clone());
        tasks.spawn(async move {
            forward_auth::serve(listener, live, section, stopped).await;
            Ok(())
        });
    }
    if let Some(section) = config.server.ext_authz.clone() {
        let listener = bind(section.listen, "[server.ext_authz] listen").await?;
        let extra = " (gRPC envoy.service.auth.v3.Authorization)";
        bound.insert("ext_authz", announce("ext-authz", &listener, tls.ext_authz.is_some(), extra)?);
        let mut stopped = stopped.clone();
        tasks.spawn(ext_authz::serve(listener, tls.ext_authz.clone(), live.clone(), async move {
            let _ = stopped.changed().await;
        }));
    }
    if let Some(section) = config.server.admin.clone() {
        let listener = bind(section.listen, "[server.admin] listen").await?;
        bound.insert("admin", announce("admin", &listener, tls.admin.is_some(), "")?);
        let listener = http::Listener { tcp: listener, tls: tls.admin.clone(), h2c: false };
        tasks.spawn(admin::serve(listener, live.clone(), section, stopped.clone()));
    }
    if let (Some(mut section), Some(upstream)) = (config.server.mcp.clone(), mcp_upstream) {
        let listener = bind(section.listen, "[server.mcp] listen").await?;
        bound.insert("mcp", announce("mcp", &listener, tls.mcp.is_some(), &format!(" -> {}", section.upstream))?);
        // The pin file is relative to the config file's folder.
        if let Some(pins) = section.pins.as_mut() {
            pins.file = pins.file.as_ref().map(|file| base.join(file));
        }
        let listener = http::Listener { tcp: listener, tls: tls.mcp.clone(), h2c: section.h2c };
        if listener.tls.is_some() {
            section.scheme = "https".into();
        }
        // Approvals asked as Multi Round-Trip Requests point at the admin API unless a page is named.
        let admin = bound.get("admin").map(|addr| (*addr, tls.admin.is_some()));
        let mrtr =
            mcp::mrtr::Mrtr::start(&section, config.approvals.as_ref(), admin, base).map_err(anyhow::Error::msg)?;
        tasks.spawn(mcp::serve(listener, live.clone(), section, upstream, stopped.clone(), mrtr));
    }
    tasks.spawn(watch_for_reloads(live.clone(), tls.all(), stopped.clone()));
    if live.keep().approvals.is_some() {
        tasks.spawn(admin::sweep_approvals(live.clone(), stopped.clone()));
    }
    if let Some(path) = ready_file {
        write_ready_file(path, &bound)?;
    }

    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(()),
        Some(done) = tasks.join_next() => match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("a front door stopped unexpectedly: {e}")),
        },
    };
    eprintln!("portcullis: shutting down; finishing requests in flight");
    let _ = stop.send(true);
    // Each door lets its requests finish; long-lived connections (Envoy keeps its gRPC
    // channel open) would hold a door forever, so the wait is bounded.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::error!(error = %format!("{e:#}"), "front door failed while stopping");
            }
        }
    })
    .await;
    if drained.is_err() {
        eprintln!("portcullis: connections still open after 10 s; closing them");
        tasks.abort_all();
    }
    outcome
}

async fn bind(addr: SocketAddr, key: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{key}: cannot listen on {addr}"))
}

/// Logs the address a door is bound to (the port the system picked for port 0), as
/// `https://ADDR` when it listens with TLS, and returns it.
fn announce(door: &str, listener: &TcpListener, tls: bool, extra: &str) -> Result<SocketAddr> {
    let addr = listener.local_addr().with_context(|| format!("{door}: cannot read the address it listens on"))?;
    let scheme = if tls { "https://" } else { "" };
    eprintln!("portcullis: {door} listening on {scheme}{addr}{extra}");
    Ok(addr)
}

/// Writes the doors' bound addresses as one JSON object, aside and renamed into place so a
/// reader never sees half a file.
fn write_ready_file(path: &Path, bound: &BTreeMap<&str, SocketAddr>) -> Result<()> {
    // A `SocketAddr` serialises as its text, "127.0.0.1:41234".
    let text = serde_json::to_string(bound)?;
    let mut aside = PathBuf::from(path);
    aside.as_mut_os_string().push(".new");
    std::fs::write(&aside, text + "\n").with_context(|| format!("--ready-file: cannot write {}", aside.display()))?;
    std::fs::rename(&aside, path).with_context(|| format!("--ready-file: cannot rename {} into place", aside.display()))
}

fn remove_ready_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("--ready-file: cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Reloads on SIGHUP, and when the config or a module changes on disk (checked every
/// second); the listeners' certificates, keys and client CAs likewise (`tls`).
async fn watch_for_reloads(live: Live, tls: Vec<Arc<tls::Acceptor>>, mut stopped: watch::Receiver<bool>) -> Result<()> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let asked = tokio::select! {
            _ = hangup.recv() => true,
            _ = tick.tick() => false,
            _ = stopped.changed() => return Ok(()),
        };
        if asked || live.changed_on_disk() {
            let live = live.clone();
            // Loading compiles components: keep it off the request threads' executor.
            let _ = tokio::task::spawn_blocking(move || live.reload()).await;
        }
        if !tls.is_empty() {
            let tls = tls.clone();
            let _ = tokio::task::spawn_blocking(move || tls::reload(&tls, asked)).await;
        }
    }
}

async fn shutdown_signal() {
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
