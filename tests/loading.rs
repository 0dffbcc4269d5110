//! Loading checks: what is refused, with which words, and the compile cache.

mod common;

use std::sync::Arc;

use common::{TempDir, component};
use portcullis_host::{Capability, ContractError, Engine, EngineConfig, LoadError, Policy, PolicySpec, Shared, Source};
use serde_json::json;

fn load(spec: PolicySpec) -> Result<Policy, LoadError> {
    Policy::load(&common::engine(), spec, &Shared::default())
}

fn bytes_spec(label: &str, bytes: Vec<u8>) -> PolicySpec {
    PolicySpec::new("p", Source::Bytes { label: label.into(), bytes: Arc::from(bytes) })
}

fn contract_error(result: Result<Policy, LoadError>) -> (ContractError, String) {
    match result {
        Err(err @ LoadError::Contract { .. }) => {
            let text = err.to_string();
            let LoadError::Contract { error, .. } = err else { unreachable!() };
            (error, text)
        }
        Err(other) => panic!("expected a contract error, got: {other}"),
        Ok(_) => panic!("expected a contract error, but it loaded"),
    }
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let (error, text) = contract_error(load(bytes_spec("notes.txt", b"hello, world".to_vec())));
    assert_eq!(error, ContractError::NotWasm);
    assert!(text.contains("policy `p`") && text.contains("notes.txt"), "{text}");
}

#[test]
fn a_core_module_is_refused_with_the_fix() {
    let module = wat::parse_str("(module (func (export \"on-request\")))").unwrap();
    let (error, text) = contract_error(load(bytes_spec("core.wasm", module)));
    assert_eq!(error, ContractError::CoreModule);
    assert!(text.contains("wasm32-wasip2"), "the error says how to build a component: {text}");
}

#[test]
fn a_component_for_another_world_is_refused() {
    let (error, text) = contract_error(load(PolicySpec::new("o", Source::File(component("hostile-other-world")))));
    assert!(matches!(error, ContractError::WrongWorld { .. }), "{error:?}");
    assert!(text.contains("portcullis:policy/handler"), "{text}");
    assert!(text.contains("example:other/greeter"), "the error lists what it exports: {text}");
}

#[test]
fn another_contract_version_is_refused_naming_both_versions() {
    let (error, text) = contract_error(load(PolicySpec::new("f", Source::File(component("hostile-future-contract")))));
    assert!(matches!(error, ContractError::IncompatibleVersion { .. }), "{error:?}");
    assert!(text.contains("0.2.0") && text.contains("0.1.0"), "{text}");
}

#[test]
fn a_component_importing_wasi_is_refused() {
    let (error, text) = contract_error(load(PolicySpec::new("w", Source::File(component("hostile-wasi-user")))));
    let ContractError::ForeignImport { import } = &error else { panic!("{error:?}") };
    assert!(import.starts_with("wasi:"), "{import}");
    assert!(text.contains("no filesystem, network, environment"), "{text}");
}

#[test]
fn an_ungranted_capability_is_refused_and_granting_it_loads() {
    let mut spec = PolicySpec::new("rl", Source::File(component("rate-limit")));
    spec.settings = json!({"limit": 1, "window_seconds": 1});
    let (error, text) = contract_error(load(spec.clone()));
    assert!(matches!(error, ContractError::NotGranted { capability: Capability::RateLimit, .. }), "{error:?}");
    assert!(text.contains("\"rate-limit\"") && text.contains("capabilities"), "{text}");

    spec.capabilities = vec![Capability::RateLimit];
    let policy = load(spec).expect("loads once granted");
    assert_eq!(policy.imports(), [Capability::RateLimit]);
}

#[test]
fn a_pin_must_match_the_digest() {
    let path = component("agent-guard");
    let digest = portcullis_host::sha256_hex(&std::fs::read(&path).unwrap());
    let mut spec = PolicySpec::new("g", Source::File(path));
    spec.settings = json!({"approver_group": "ops"});
    spec.sha256 = Some("0".repeat(64));
    let err = load(spec.clone()).unwrap_err().to_string();
    assert!(err.contains(&digest) && err.contains(&"0".repeat(64)) && err.contains("sha256"), "{err}");

    spec.sha256 = Some(format!("sha256:{}", digest.to_uppercase()));
    assert_eq!(load(spec).expect("a matching pin loads").digest(), digest);
}

#[test]
fn a_missing_file_names_the_policy_and_path() {
    let err = load(PolicySpec::new("ghost", Source::File("/nonexistent/ghost.wasm".into()))).unwrap_err().to_string();
    assert!(err.contains("ghost") && err.contains("/nonexistent/ghost.wasm"), "{err}");
}

#[test]
fn limits_beyond_the_engine_are_refused() {
    let mut spec = PolicySpec::new("g", Source::File(component("agent-guard")));
    spec.limits.memory_mb = 100_000;
    let err = load(spec).unwrap_err().to_string();
    assert!(err.contains("memory_mb") && err.contains("100000"), "{err}");
}

#[test]
fn compiled_components_are_cached_by_digest_and_reused() {
    let cache = TempDir::new("cache");
    let engine = Engine::new(&EngineConfig::default().with_cache_dir(Some(cache.path().to_owned()))).unwrap();
    let path = component("scopes");
    let digest = portcullis_host::sha256_hex(&std::fs::read(&path).unwrap());
    let mut spec = PolicySpec::new("s", Source::File(path));
    spec.preinit = Some(false); // the snapshot's own cache entry is tested in tests/preinit.rs
    Policy::load(&engine, spec.clone(), &Shared::default()).unwrap();
    let entries: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with(&digest) && entries[0].ends_with(".cwasm"), "{entries:?}");

    // A second load comes from the cache; a corrupt entry is ignored and rewritten.
    Policy::load(&engine, spec.clone(), &Shared::default()).unwrap();
    std::fs::write(cache.path().join(&entries[0]), b"garbage").unwrap();
    Policy::load(&engine, spec, &Shared::default()).expect("a corrupt cache entry does not fail a load");
    assert!(std::fs::metadata(cache.path().join(&entries[0])).unwrap().len() > 100, "the entry was rewritten");
}

#[test]
fn a_component_with_no_exports_is_refused() {
    let empty = wat::parse_str("(component)").unwrap();
    let (error, text) = contract_error(load(bytes_spec("empty.wasm", empty)));
    assert!(matches!(error, ContractError::WrongWorld { .. }), "{error:?}");
    assert!(text.contains("portcullis:policy/handler") && text.contains("empty.wasm"), "{text}");
}

/// The right interface name, but only one function in it (and of the wrong type): the
/// load fails naming the policy and what is missing, not at the first request.
#[test]
fn a_component_missing_the_contracts_functions_is_refused() {
    let partial = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $h (export "on-request" (func $f)))
            (export "portcullis:policy/handler@0.1.0" (instance $h)))"#,
    )
    .unwrap();
    let Err(err) = load(bytes_spec("partial.wasm", partial)) else {
        panic!("a component without the contract's functions loaded");
    };
    let text = err.to_string();
    assert!(matches!(err, LoadError::Link { .. }), "{text}");
    // Names the first missing function, e.g. "... does not have export `metadata`".
    assert!(text.contains("policy `p`") && text.contains("partial.wasm") && text.contains("`metadata`"), "{text}");
}
