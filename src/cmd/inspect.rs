//! `portcullis inspect`: what a component says about itself, without running its `init`.

use std::process::ExitCode;

use anyhow::Result;
use portcullis_host::{Capability, Engine, EngineConfig, Policy, PolicySpec, Shared, Source};
use serde::Serialize;

use crate::cli::{Format, InspectArgs};

#[derive(Serialize)]
struct Inspection<'a> {
    file: String,
    name: &'a str,
    version: &'a str,
    contract: String,
    phases: Vec<&'static str>,
    needs_request_body: bool,
    needs_response_body: bool,
    imports: Vec<&'static str>,
    sha256: &'a str,
    size_bytes: u64,
}

pub fn run(args: &InspectArgs) -> Result<ExitCode> {
    let engine = Engine::new(&EngineConfig::default())?;
    let mut spec = PolicySpec::new("inspected", Source::File(args.component.clone()));
    // Grant everything so the report can list what the component imports.
    spec.capabilities = Capability::ALL.to_vec();
    let policy = Policy::prepare(&engine, spec, &Shared::default())?;
    let meta = policy.metadata();
    let mut phases = Vec::new();
    if meta.request_phase {
        phases.push("request");
    }
    if meta.response_phase {
        phases.push("response");
    }
    let inspection = Inspection {
        file: args.component.display().to_string(),
        name: &meta.name,
        version: &meta.version,
        contract: format!("{}@{}", portcullis_host::WIT_PACKAGE, policy.contract_version()),
        phases,
        needs_request_body: meta.needs_request_body,
        needs_response_body: meta.needs_response_body,
        imports: policy.imports().iter().map(|c| c.as_str()).collect(),
        sha256: policy.digest(),
        size_bytes: std::fs::metadata(&args.component).map_or(0, |m| m.len()),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&inspection)?),
        Format::Text => {
            let none = |v: &[&str]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
            println!("file                 {}", inspection.file);
            println!("name                 {}", inspection.name);
            println!("version              {}", inspection.version);
            // A 0.1 component loads and decides as before; it just cannot ask for 0.2's
            // masks and targets.
            let older = if policy.contract_version() == portcullis_host::WIT_VERSION {
                String::new()
            } else {
                format!(" (older, still loaded; {} adds masks and name/detector targets)", portcullis_host::WIT_VERSION)
            };
            println!("contract             {}{older}", inspection.contract);
            println!("phases               {}", none(&inspection.phases));
            println!("needs request body   {}", inspection.needs_request_body);
            println!("needs response body  {}", inspection.needs_response_body);
            println!("capabilities used    {}", none(&inspection.imports));
            println!("sha256               {}", inspection.sha256);
            println!("size                 {} bytes", inspection.size_bytes);
        }
    }
    Ok(ExitCode::SUCCESS)
}
