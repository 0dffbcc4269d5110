//! Pre-initialised policies: fresh instances start from a snapshot taken after `init`, so a
//! policy's settings are parsed once at load instead of on every call, while every
//! evaluation still runs in an instance of its own. `test-probe` reports how often `init`
//! ran in the state its instance started from (`init-runs`) and how many calls the instance
//! served (`instance-calls`).

mod common;

use common::{TempDir, component, request};
use portcullis_host::{Engine, EngineConfig, LoadError, Policy, PolicySet, PolicySpec, Reuse, Shared, Source};
use serde_json::json;

fn spec(name: &str, settings: serde_json::Value, preinit: Option<bool>) -> PolicySpec {
    let mut spec = PolicySpec::new(name, Source::File(component(name)));
    spec.settings = settings;
    spec.preinit = preinit;
    spec
}

fn load(spec: PolicySpec) -> Result<Policy, LoadError> {
    Policy::load(&common::engine(), spec, &Shared::default())
}

fn label(labels: &[(String, String)], name: &str) -> u32 {
    let (_, value) = labels.iter().find(|(k, _)| k == name).unwrap_or_else(|| panic!("label {name}: {labels:?}"));
    value.parse().unwrap()
}

/// `(init-runs, instance-calls)` of `n` request-phase calls.
fn served(policy: &Policy, n: usize) -> Vec<(u32, u32)> {
    let req = request(json!({"method": "GET", "url": "https://api.test/x", "principal": {"kind": "user", "id": "u"}}));
    (0..n)
        .map(|_| {
            let labels = policy.evaluate_request(&req).unwrap().labels;
            (label(&labels, "init-runs"), label(&labels, "instance-calls"))
        })
        .collect()
}

#[test]
fn fresh_instances_start_where_init_left_off_and_never_see_an_earlier_call() {
    let probe = load(spec("test-probe", json!({}), None)).unwrap();
    assert!(probe.preinitialised(), "a small component is snapshotted by default");
    // `init` ran once, in the snapshot; each call's own state is gone by the next call.
    assert_eq!(served(&probe, 4), [(1, 1); 4]);
}

#[test]
fn preinit_false_runs_the_component_as_shipped() {
    let probe = load(spec("test-probe", json!({}), Some(false))).unwrap();
    assert!(!probe.preinitialised());
    assert_eq!(served(&probe, 3), [(0, 1); 3]);
}

#[test]
fn a_reused_snapshot_instance_is_not_initialised_twice() {
    let mut reused = spec("test-probe", json!({}), None);
    reused.reuse = Some(Reuse { max_uses: 3, max_idle: 1 });
    let probe = load(reused).unwrap();
    assert!(probe.preinitialised());
    assert_eq!(served(&probe, 4), [(1, 1), (1, 2), (1, 3), (1, 1)]);

    // Without a snapshot the host calls `init` on each instance it will reuse, once.
    let mut reused = spec("test-probe", json!({}), Some(false));
    reused.reuse = Some(Reuse { max_uses: 2, max_idle: 1 });
    let probe = load(reused).unwrap();
    assert_eq!(served(&probe, 3), [(1, 1), (1, 2), (1, 1)]);
}

#[test]
fn snapshots_are_cached_per_component_and_settings() {
    let tmp = TempDir::new("preinit-cache");
    let engine = Engine::new(&EngineConfig::default().with_cache_dir(Some(tmp.path().to_path_buf()))).expect("engine");
    let entries = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "cwasm"))
            .count()
    };
    let load_with = |settings| Policy::load(&engine, spec("test-probe", settings, None), &Shared::default()).unwrap();

    let first = load_with(json!({}));
    assert!(first.preinitialised());
    assert_eq!(entries(), 2, "the component and its snapshot with these settings");
    drop(load_with(json!({})));
    assert_eq!(entries(), 2, "the same settings reuse the cached snapshot");
    // A corrupt snapshot entry is ignored: the snapshot is taken again and rewritten.
    let corrupt: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    for path in &corrupt {
        std::fs::write(path, b"garbage").unwrap();
    }
    assert!(load_with(json!({})).preinitialised());
    assert!(corrupt.iter().all(|p| std::fs::metadata(p).unwrap().len() > 100), "the entries were rewritten");
    let other = load_with(json!({"request_body": true}));
    assert_eq!(entries(), 3, "other settings, another snapshot");
    assert!(other.metadata().needs_request_body, "metadata is read from the component itself");
    assert_eq!(served(&other, 2), [(1, 1); 2]);
}

#[test]
fn a_snapshot_keeps_what_init_parsed_and_decides_as_the_component_as_shipped() {
    // The reference policies keep their parsed settings in `init` (the Rust SDK does), so a
    // pre-initialised fresh instance decides from the kept settings and one run as shipped
    // parses them on every call: both must decide everything alike.
    let tmp = TempDir::new("preinit-examples");
    let (snapshotted, shipped) = common::example_sets_with(&tmp, "preinit = false");
    assert!(snapshotted.policies().all(|p| p.preinitialised()));
    assert!(shipped.policies().all(|p| !p.preinitialised()));
    common::assert_examples_decide_alike(&snapshotted, &shipped, 1);
}

#[test]
fn preinit_is_a_switch_in_the_config_file() {
    let tmp = TempDir::new("preinit-config");
    let module = component("test-probe");
    let config = format!(
        "[policies.snap]\nmodule = {module:?}\n\n[policies.plain]\nmodule = {module:?}\npreinit = false\n\n\
         [[routes]]\npolicies = [\"snap\", \"plain\"]\n"
    );
    let set = PolicySet::from_config_file(&tmp.write("portcullis.toml", config)).unwrap();
    assert!(set.policy("snap").unwrap().preinitialised());
    assert!(!set.policy("plain").unwrap().preinitialised());

    let bad = tmp.write(
        "bad.toml",
        format!("[policies.p]\nmodule = {module:?}\npreinit = \"yes\"\n\n[[routes]]\npolicies = [\"p\"]\n"),
    );
    let err = PolicySet::from_config_file(&bad).unwrap_err().to_string();
    assert!(err.contains("preinit") && err.contains("bad.toml"), "{err}");
}
