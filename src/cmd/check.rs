//! `portcullis check`: the `nginx -t` of Portcullis. Loads a config exactly as `serve`
//! would (every policy loaded, linked and initialised with its settings; routes, identity,
//! doors, TLS files, audit and approvals checked), prints what `serve` would run, and exits
//! non-zero with `serve`'s own error when something is wrong. It binds no port and writes
//! nothing, so it can run beside the server before a reload.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use portcullis_host::Config;
use portcullis_host::gate::Gate;

use crate::cli::CheckArgs;
use crate::serve::preflight::{self, Preflight};

/// Checks the config; prints the plan unless `--quiet`.
pub fn run(args: &CheckArgs) -> Result<ExitCode> {
    let checked = preflight::run(&args.config)?;
    if !args.quiet {
        print!("{}", plan(&args.config.display().to_string(), &checked));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `serve` would run, as text: policies, routes, identity, doors, audit, approvals.
fn plan(name: &str, checked: &Preflight) -> String {
    let mut out = format!("{name}: ok\n");
    policies(&mut out, &checked.gate);
    routes(&mut out, &checked.config);
    identity(&mut out, &checked.config);
    doors(&mut out, &checked.config);
    let config = &checked.config;
    let audit = config.audit.as_ref().map_or_else(|| "off".to_owned(), |a| a.path.display().to_string());
    let approvals = config.approvals.as_ref().map_or_else(
        || "off (require-approval decisions are refused)".to_owned(),
        |a| match &a.store {
            Some(store) => format!("sqlite {}", store.display()),
            None => match &a.url_env {
                Some(var) => format!("postgres (url from ${var})"),
                None => "postgres (url in the file)".to_owned(),
            },
        },
    );
    let _ = writeln!(out, "\naudit: {audit}\napprovals: {approvals}");
    let pseudonyms = match (&config.redaction.pseudonym_key_env, &config.redaction.pseudonym_key_file) {
        (Some(var), _) => format!("key from ${var}"),
        (None, Some(file)) => format!("key from {}", file.display()),
        (None, None) => "no key ([redaction] pseudonym_key_env or _file): pseudonym masks are refused".to_owned(),
    };
    let _ = writeln!(out, "pseudonyms: {pseudonyms}");
    if let Some(section) = config.approvals.as_ref().filter(|a| !a.notify.is_empty()) {
        let _ = writeln!(out, "notify:");
        for line in crate::serve::notify::Notifier::describe(section) {
            let _ = writeln!(out, "  {line}");
        }
    }
    let holds = config.holds();
    if !holds.is_empty() {
        let _ =
            writeln!(out, "holds (requests kept open while approvers decide; at most {} at once):", config.max_held());
        for line in holds.describe() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn policies(out: &mut String, gate: &Gate) {
    let set = gate.policy_set();
    let _ = writeln!(out, "\npolicies (loaded, linked, initialised):");
    let width = set.policies().map(|p| p.name().len()).max().unwrap_or(0);
    for policy in set.policies() {
        let mut notes = vec![format!("contract {}", policy.contract_version())];
        if policy.preinitialised() {
            notes.push("pre-initialised".into());
        }
        if policy.reuse().is_some() {
            notes.push("reused instances".into());
        }
        if policy.fail_open() {
            notes.push("FAIL-OPEN".into());
        }
        let digest = policy.digest().get(..12).unwrap_or(policy.digest());
        let _ =
            writeln!(out, "  {:width$}  {}  sha256:{digest}…  ({})", policy.name(), policy.source(), notes.join(", "));
    }
}

fn routes(out: &mut String, config: &Config) {
    let _ = writeln!(out, "\nroutes (first match wins):");
    for (i, route) in config.routes.iter().enumerate() {
        let name = route.name.clone().unwrap_or_else(|| format!("routes[{i}]"));
        let any = |list: &[String]| if list.is_empty() { "*".to_owned() } else { list.join(",") };
        let mut what = format!("{} {}{}", any(&route.methods), any(&route.hosts), any(&route.paths));
        if !route.operations.is_empty() {
            let _ = write!(what, " operations {}", route.operations.join(","));
        }
        let _ = writeln!(out, "  {name}: {what} -> {}", route.policies.join(", "));
    }
    let _ = writeln!(out, "  unmatched: {:?}", config.routing.unmatched);
}

fn identity(out: &mut String, config: &Config) {
    let identity = &config.identity;
    let mut kinds = Vec::new();
    for jwt in &identity.jwt {
        let keys = match (&jwt.jwks_url, jwt.discovery) {
            (Some(url), _) => format!(" (keys fetched from {url})"),
            (None, true) => " (keys found by OIDC discovery)".to_owned(),
            (None, false) => String::new(),
        };
        kinds.push(format!("JWT issuer {}{keys}", jwt.issuer));
    }
    if !identity.client_certs.is_empty() {
        kinds.push(format!("{} client certificate(s)", identity.client_certs.len()));
    }
    if !identity.api_keys.is_empty() {
        kinds.push(format!("{} API key(s)", identity.api_keys.len()));
    }
    if let Some(headers) = &identity.trusted_headers {
        kinds.push(format!("trusted headers ({})", headers.id));
    }
    let text = if kinds.is_empty() { "none: every caller is anonymous".to_owned() } else { kinds.join("; ") };
    let _ = writeln!(out, "\nidentity: {text}");
}

fn doors(out: &mut String, config: &Config) {
    let server = &config.server;
    let _ = writeln!(out, "\ndoors:");
    let scheme = |tls: bool| if tls { "https" } else { "http" };
    if let Some(s) = &server.proxy {
        let _ = writeln!(out, "  proxy         {}://{} -> {}", scheme(s.tls.is_some()), s.listen, s.upstream);
    }
    if let Some(s) = &server.forward_auth {
        let _ = writeln!(out, "  forward-auth  {}://{} (asked by {:?})", scheme(s.tls.is_some()), s.listen, s.proxy);
    }
    if let Some(s) = &server.ext_authz {
        let _ = writeln!(out, "  ext-authz     {}://{} (gRPC)", scheme(s.tls.is_some()), s.listen);
    }
    if let Some(s) = &server.mcp {
        let _ = writeln!(out, "  mcp           {}://{}{} -> {}", scheme(s.tls.is_some()), s.listen, s.path, s.upstream);
        let origins = if s.allowed_origins.is_empty() { "none".to_owned() } else { s.allowed_origins.join(", ") };
        let _ = writeln!(out, "                browser origins allowed: {origins}");
        mcp_door(out, config, s);
    }
    if let Some(s) = &server.admin {
        let _ = writeln!(out, "  admin         {}://{}", scheme(s.tls.is_some()), s.listen);
    }
}

/// The MCP door's 2026-07-28 settings: pinned tool definitions, where approvals send a person,
/// and the OAuth resource-server role.
fn mcp_door(out: &mut String, config: &Config, s: &portcullis_host::config::McpSection) {
    use portcullis_host::adapters::mcp_pins::PinsMode;
    let pins = s.pins.clone().unwrap_or_default();
    let file = pins.file.as_ref().map(|f| format!(", file {}", f.display())).unwrap_or_default();
    let mode = match pins.mode {
        PinsMode::Learn => "learnt on first sight",
        PinsMode::File => "only those in the file",
        PinsMode::Off => "off",
    };
    let _ = writeln!(out, "                tool definitions pinned: {mode}{file}");
    if config.approvals.is_some() {
        let admin = config.server.admin.as_ref().map(|a| (a.listen, a.tls.is_some()));
        let page = match crate::serve::mcp::mrtr::url_template(s, config.approvals.as_ref(), admin) {
            Ok(Some(url)) => format!("asked by URL at {url}"),
            Ok(None) => "the -32004 error (no approval page known)".to_owned(),
            Err(e) => format!("error: {e}"),
        };
        let keys = if s.request_state_keys.is_empty() {
            "a per-process key".to_owned()
        } else {
            let ids: Vec<&str> = s.request_state_keys.iter().map(|k| k.id.as_str()).collect();
            format!("keys {}", ids.join(", "))
        };
        let _ = writeln!(out, "                2026 approvals: {page}; requestState sealed with {keys}");
    }
    match &s.oauth {
        Some(oauth) => {
            let exchange = oauth
                .exchange
                .as_ref()
                .map_or(String::new(), |e| format!("; tokens exchanged at {} (RFC 8693)", e.token_endpoint));
            let _ = writeln!(
                out,
                "                OAuth resource {} (authorization servers: {}){exchange}",
                oauth.resource,
                oauth.authorization_servers.join(", ")
            );
        }
        None => {
            let _ = writeln!(
                out,
                "                OAuth resource server: off (the caller's token is still never forwarded)"
            );
        }
    }
}
