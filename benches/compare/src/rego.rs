//! The two rules in Rego (`rules/*.rego`), run by `regorus` two ways: its interpreter on
//! a compiled policy (`CompiledPolicy::eval_with_input`) and its register VM (RVM) on a
//! program compiled from it. Each returns the whole outcome as a document (decision,
//! status, code, reason, approval, labels); per call the glue builds the input document
//! from the request and reads the outcome back.

use std::collections::BTreeMap;
use std::sync::Arc;

use portcullis_host::{Outcome, PrincipalKind, Request};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;
use regorus::{CompiledPolicy, Engine, Rc, Value};

use crate::{GuardSettings, ScopeSettings, Variant, allow, approval, deny};

/// Which rule, with its Rego text, entry point and data document.
pub struct Rules {
    name: &'static str,
    text: &'static str,
    entry: &'static str,
    data: Value,
}

impl Rules {
    /// `agent-guard` with its settings as `data.settings`.
    pub fn agent_guard(settings: &GuardSettings) -> Rules {
        let data = serde_json::json!({"settings": {
            "approver_group": settings.approver_group,
            "ttl_seconds": settings.ttl_seconds,
            "deny_without_on_behalf_of": settings.deny_without_on_behalf_of,
        }});
        Rules {
            name: "agent_guard.rego",
            text: include_str!("../rules/agent_guard.rego"),
            entry: "data.agent_guard.outcome",
            data: Value::from(data),
        }
    }

    /// `scopes` with its rules prepared as `data.rules` (methods upper-cased, globs split
    /// around their one `**`) and `data.default`.
    pub fn scopes(settings: &ScopeSettings) -> Rules {
        let rules: Vec<serde_json::Value> = settings
            .rules
            .iter()
            .map(|rule| {
                let segs: Vec<&str> = crate::segments(&rule.path).collect();
                let doubles = segs.iter().filter(|s| **s == "**").count();
                assert!(doubles <= 1, "scopes glob {} has more than one ** (Rego has no recursion)", rule.path);
                let (prefix, suffix, double) = match segs.iter().position(|s| *s == "**") {
                    Some(at) => (segs[..at].to_vec(), segs[at + 1..].to_vec(), true),
                    None => (segs.clone(), Vec::new(), false),
                };
                serde_json::json!({
                    "methods": rule.methods.iter().map(|m| m.to_ascii_uppercase()).collect::<Vec<_>>(),
                    "prefix": prefix, "suffix": suffix, "double": double, "scopes": rule.scopes,
                })
            })
            .collect();
        let data = serde_json::json!({"rules": rules, "default": settings.default});
        Rules {
            name: "scopes.rego",
            text: include_str!("../rules/scopes.rego"),
            entry: "data.scopes.outcome",
            data: Value::from(data),
        }
    }

    fn compile(&self) -> CompiledPolicy {
        let mut engine = Engine::new();
        engine.add_policy(self.name.into(), self.text.into()).unwrap_or_else(|e| panic!("{}: {e}", self.name));
        engine.add_data(self.data.clone()).expect("data");
        let entry: Rc<str> = self.entry.into();
        engine.compile_with_entrypoint(&entry).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

/// The interpreter, on a policy compiled once.
pub struct RegoInterpreter {
    policy: CompiledPolicy,
}

impl RegoInterpreter {
    /// Compiles the rules.
    pub fn new(rules: &Rules) -> Self {
        RegoInterpreter { policy: rules.compile() }
    }
}

impl Variant for RegoInterpreter {
    fn name(&self) -> &'static str {
        "rego_interpreter"
    }
    fn decide(&mut self, request: &Request) -> Outcome {
        let result = self.policy.eval_with_input(input(request)).expect("Rego evaluation");
        outcome(&result)
    }
}

/// The register VM (RVM), one VM kept for every call with the program and data loaded.
pub struct RegoVm {
    vm: RegoVM,
}

impl RegoVm {
    /// Compiles the rules to an RVM program and loads it.
    pub fn new(rules: &Rules) -> Self {
        let policy = rules.compile();
        let program: Arc<Program> = Compiler::compile_from_policy(&policy, &[rules.entry])
            .unwrap_or_else(|e| panic!("{} to RVM: {e}", rules.name));
        let mut vm = RegoVM::new();
        vm.load_program(program);
        vm.set_data(rules.data.clone()).expect("RVM data");
        RegoVm { vm }
    }
}

impl Variant for RegoVm {
    fn name(&self) -> &'static str {
        "rego_vm"
    }
    fn decide(&mut self, request: &Request) -> Outcome {
        self.vm.set_input(input(request));
        let result = self.vm.execute().expect("RVM evaluation");
        outcome(&result)
    }
}

fn s(text: &str) -> Value {
    Value::from(text)
}

/// The input document: `{method, path, principal: {kind, id, on_behalf_of, scopes}}`.
pub fn input(request: &Request) -> Value {
    let p = &request.principal;
    let kind = match p.kind {
        PrincipalKind::Anonymous => "anonymous",
        PrincipalKind::User => "user",
        PrincipalKind::Service => "service",
        PrincipalKind::Agent => "agent",
    };
    let mut principal = BTreeMap::new();
    principal.insert(s("kind"), s(kind));
    principal.insert(s("id"), s(&p.id));
    principal.insert(s("on_behalf_of"), p.on_behalf_of.as_deref().map(s).unwrap_or(Value::Null));
    principal.insert(s("scopes"), Value::from(p.scopes.iter().map(|x| s(x)).collect::<Vec<_>>()));
    let mut doc = BTreeMap::new();
    doc.insert(s("method"), s(&request.method));
    doc.insert(s("path"), s(&request.path));
    doc.insert(s("principal"), Value::from(principal));
    Value::from(doc)
}

/// The outcome document back into an [`Outcome`].
fn outcome(result: &Value) -> Outcome {
    let text = |key: &str| result[key].as_string().map(|s| s.to_string()).unwrap_or_default();
    let rule = text("rule");
    match text("decision").as_str() {
        "allow" => allow(&rule),
        "deny" => {
            let missing = result["missing"].as_string().ok().map(|s| s.to_string());
            let mut o = deny(&text("code"), text("reason"), &rule, missing.as_deref());
            if let portcullis_host::Decision::Deny(d) = &mut o.decision {
                d.status = result["status"].as_u64().unwrap_or(0) as u16;
            }
            o
        }
        "require-approval" => {
            approval(text("reason"), &text("approver_group"), result["ttl_seconds"].as_u32().unwrap_or(0), &rule)
        }
        other => deny("rego-undefined", format!("Rego returned no outcome ({other}): {result:?}"), "none", None),
    }
}
