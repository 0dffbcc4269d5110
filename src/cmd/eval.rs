//! `portcullis eval`: one request (and optionally its response) through one policy or a
//! routed policy set, printing the verdicts and what the redactions did.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use portcullis_host::gate::{Gate, Identity};
use portcullis_host::{
    Capability, Engine, EngineConfig, Exchange, PolicySet, PolicySpec, Request, Response, RouteSpec, Source,
};

use crate::cli::{EvalArgs, Format};
use crate::output;
use crate::setup;

pub fn run(args: &EvalArgs) -> Result<ExitCode> {
    let gate = load_gate(args)?;
    let mut exchange = read_exchange(&args.request)?;
    if let Some(path) = &args.response {
        exchange.response = Some(read_json::<Response>(path, "response")?);
    }
    // A principal written in the request file is used as it is; otherwise the request's
    // credentials are authenticated with the config's [identity] settings, now.
    let identity = Identity::Recorded { now_unix_s: portcullis_host::now_ms() / 1000 };
    let passage = gate.pass(exchange, &identity);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&passage)?),
        Format::Text => print!("{}", output::text(&passage)),
    }
    Ok(ExitCode::SUCCESS)
}

fn load_gate(args: &EvalArgs) -> Result<Gate> {
    if let Some(config) = &args.config {
        return setup::gate_from_config(config);
    }
    let Some(path) = &args.policy else { bail!("give --policy FILE.wasm or --config portcullis.toml") };
    let mut spec = PolicySpec::new(policy_name(path), Source::File(path.clone()));
    if let Some(settings) = &args.settings {
        spec.settings = parse_settings(settings)?;
    }
    for grant in &args.grants {
        let capability = Capability::from_interface(grant).with_context(|| {
            format!("--grant {grant}: unknown capability; choose from log, clock, rate-limit, data")
        })?;
        spec.capabilities.push(capability);
    }
    let engine = Engine::new(&EngineConfig::default())?;
    let route = RouteSpec { name: "all".into(), policies: vec![spec.name.clone()], ..RouteSpec::default() };
    let set = PolicySet::builder(&engine).policy(spec)?.route(route).build()?;
    Ok(Gate::new(Arc::new(set), None))
}

/// `agent_guard.wasm` → `agent-guard`.
fn policy_name(path: &Path) -> String {
    path.file_stem().map_or_else(|| "policy".into(), |s| s.to_string_lossy().replace('_', "-"))
}

fn parse_settings(arg: &str) -> Result<serde_json::Value> {
    let (text, origin) = match arg.strip_prefix('@') {
        Some(file) => {
            (std::fs::read_to_string(file).with_context(|| format!("--settings: cannot read {file}"))?, file.to_owned())
        }
        None => (arg.to_owned(), "--settings".to_owned()),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{origin}: settings must be a JSON object"))?;
    if !value.is_object() {
        bail!("{origin}: settings must be a JSON object such as {{\"approver_group\": \"ops\"}}, not {value}");
    }
    Ok(value)
}

/// Reads a request file, or an exchange file holding `request` and `response`.
fn read_exchange(path: &Path) -> Result<Exchange> {
    let text = read_text(path)?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    if value.get("request").is_some() {
        serde_json::from_value(value)
            .with_context(|| format!("{}: not a valid exchange (see docs/exchange-format.md)", path.display()))
    } else {
        let request: Request = serde_json::from_value(value)
            .with_context(|| format!("{}: not a valid request (see docs/exchange-format.md)", path.display()))?;
        Ok(Exchange { request, response: None })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid {what} (see docs/exchange-format.md)", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("cannot read stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}
