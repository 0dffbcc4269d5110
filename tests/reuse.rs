//! Instance reuse, the per-policy trade of isolation for speed: off by default (every call
//! sees a new instance), and when on, state survives between calls (that is the trade), a
//! faulting instance is dropped, each call still has its own deadline, and `max_uses`
//! retires an instance. `test-probe` counts the calls its instance has served.

mod common;

use std::time::Duration;

use common::{component, request};
use portcullis_host::{Fault, Policy, PolicySet, PolicySpec, Reuse, Shared, Source};
use serde_json::json;

fn load(name: &str, settings: serde_json::Value, reuse: Option<Reuse>) -> Policy {
    let mut spec = PolicySpec::new(name, Source::File(component(name)));
    spec.settings = settings;
    spec.limits.timeout_ms = 50;
    spec.reuse = reuse;
    Policy::load(&common::engine(), spec, &Shared::default()).expect("loads")
}

fn calls(labels: &[(String, String)]) -> u32 {
    let (_, value) = labels.iter().find(|(k, _)| k == "instance-calls").expect("instance-calls label");
    value.parse().unwrap()
}

fn req() -> portcullis_host::Request {
    request(json!({"method": "GET", "url": "https://api.test/x", "principal": {"kind": "user", "id": "u"}}))
}

fn served(policy: &Policy, n: usize) -> Vec<u32> {
    (0..n).map(|_| calls(&policy.evaluate_request(&req()).unwrap().labels)).collect()
}

#[test]
fn by_default_every_call_sees_a_new_instance() {
    let probe = load("test-probe", json!({}), None);
    assert_eq!(served(&probe, 4), [1, 1, 1, 1]);
    assert_eq!(probe.reuse(), None);
    assert_eq!(probe.idle_instances(), 0);
}

#[test]
fn a_reused_instance_keeps_its_state_until_max_uses_retires_it() {
    let probe = load("test-probe", json!({}), Some(Reuse { max_uses: 3, max_idle: 1 }));
    assert_eq!(served(&probe, 7), [1, 2, 3, 1, 2, 3, 1]);
    assert_eq!(probe.idle_instances(), 1);
    // The response phase is served from the same instances.
    let response = serde_json::from_value(json!({"status": 200})).unwrap();
    assert_eq!(calls(&probe.evaluate_response(&req(), &response).unwrap().labels), 2);
}

#[test]
fn each_call_of_a_reused_instance_gets_its_own_deadline() {
    // The limit is 50 ms; three calls spread over ~240 ms would trip a deadline that was set
    // once at instantiation.
    let probe = load("test-probe", json!({}), Some(Reuse::default()));
    for expected in 1..=3 {
        assert_eq!(calls(&probe.evaluate_request(&req()).unwrap().labels), expected);
        std::thread::sleep(Duration::from_millis(120));
    }
}

#[test]
fn a_faulting_instance_is_dropped_and_the_next_call_gets_a_new_one() {
    let reuse = Some(Reuse::default());
    for (mode, expect) in [
        ("panic", (|f: &Fault| matches!(f, Fault::Trap(_))) as fn(&Fault) -> bool),
        ("loop", |f| matches!(f, Fault::Timeout(50))),
        ("bad-status", |f| matches!(f, Fault::InvalidReturn(_))),
    ] {
        let bad = load("hostile-misbehave", json!({"on_request": mode}), reuse);
        for _ in 0..2 {
            let fault = bad.evaluate_request(&req()).unwrap_err();
            assert!(expect(&fault), "{mode}: {fault:?}");
            assert_eq!(bad.idle_instances(), 0, "{mode}: a faulted instance was kept");
        }
    }
    let good = load("hostile-misbehave", json!({"on_request": "allow"}), reuse);
    good.evaluate_request(&req()).unwrap();
    assert_eq!(good.idle_instances(), 1);
}

#[test]
fn concurrent_callers_get_instances_of_their_own_and_max_idle_bounds_what_is_kept() {
    let probe = std::sync::Arc::new(load("test-probe", json!({}), Some(Reuse { max_uses: 1000, max_idle: 2 })));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let probe = probe.clone();
            std::thread::spawn(move || served(&probe, 50))
        })
        .collect();
    let seen: Vec<u32> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert_eq!(seen.len(), 200);
    assert!(seen.iter().any(|&c| c > 1), "no instance served a second call under concurrency");
    assert!((1..=2).contains(&probe.idle_instances()), "idle: {}", probe.idle_instances());
}

#[test]
fn reuse_is_set_per_policy_in_the_config_file() {
    let tmp = common::TempDir::new("reuse-config");
    let module = component("test-probe");
    let config = format!(
        "[policies.fresh]\nmodule = {module:?}\n\n[policies.warm]\nmodule = {module:?}\nreuse = {{ max_uses = 2 }}\n\n\
         [[routes]]\npolicies = [\"fresh\", \"warm\"]\n"
    );
    let path = tmp.write("portcullis.toml", config);
    let set = PolicySet::from_config_file(&path).unwrap();
    assert_eq!(set.policy("fresh").unwrap().reuse(), None);
    assert_eq!(set.policy("warm").unwrap().reuse(), Some(Reuse { max_uses: 2, max_idle: 8 }));
    let per_policy = |n: usize| -> Vec<(u32, u32)> {
        (0..n)
            .map(|_| {
                let verdict = set.evaluate_request(&req());
                (calls(&verdict.policies[0].labels), calls(&verdict.policies[1].labels))
            })
            .collect()
    };
    assert_eq!(per_policy(3), [(1, 1), (1, 2), (1, 1)]);

    let bad = tmp.write(
        "bad.toml",
        format!(
            "[policies.warm]\nmodule = {module:?}\nreuse = {{ max_uses = 0 }}\n\n[[routes]]\npolicies = [\"warm\"]\n"
        ),
    );
    let err = PolicySet::from_config_file(&bad).unwrap_err().to_string();
    assert!(err.contains("reuse.max_uses") && err.contains("at least 1"), "{err}");
}

#[test]
fn reused_reference_policies_decide_exactly_as_fresh_ones() {
    // examples/portcullis.toml as it is, and with `reuse = true` on every policy: the Rust
    // SDK then parses the settings once per instance (in `init`) instead of on every call.
    let tmp = common::TempDir::new("reuse-examples");
    let (fresh, warm) = common::example_sets_with(&tmp, "reuse = true");
    assert!(warm.policies().all(|p| p.reuse().is_some()));
    // Twice over, so the second round runs in instances that served the first.
    common::assert_examples_decide_alike(&fresh, &warm, 2);
    assert!(warm.policies().any(|p| p.idle_instances() > 0));
}
