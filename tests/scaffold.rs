//! `portcullis new` and `portcullis build`: a new project of each language builds to a
//! component, passes its own unit tests (natively: `cargo test`, `python3 -m unittest`,
//! `node --test`) and its traffic test; a change to the policy makes the traffic test fail.
//! A new Rust component starts with as little memory as the reference policies (the 64 KiB
//! guest stack of the scaffold's .cargo/config.toml).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::TempDir;

fn portcullis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(dir)
        // Rust projects share the repository's target folder, so the SDK and its
        // dependencies (built the same way by scripts/build-policies.sh) are reused.
        .env("CARGO_TARGET_DIR", common::root().join("target"))
        .output()
        .expect("run portcullis")
}

/// The initial memory pages (64 KiB each) of every memory defined in the component's core
/// modules, as wasmparser reads them.
fn initial_pages(component: &Path) -> Vec<u64> {
    let bytes = std::fs::read(component).unwrap();
    let mut pages = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        if let wasmparser::Payload::MemorySection(memories) = payload.unwrap() {
            pages.extend(memories.into_iter().map(|m| m.unwrap().initial));
        }
    }
    pages
}

/// The project's unit tests, run natively as its README says.
fn unit_tests(lang: &str, project: &Path) -> String {
    let mut command = match lang {
        "rust" => {
            let mut cargo = Command::new("cargo");
            // The repository's target folder: the tests make no new one.
            cargo.args(["test", "--quiet"]).env("CARGO_TARGET_DIR", common::root().join("target"));
            cargo
        }
        "python" => {
            let mut python = Command::new("python3");
            python.args(["-m", "unittest"]);
            python
        }
        _ => {
            let mut node = Command::new("node");
            node.arg("--test");
            node
        }
    };
    ok(command.current_dir(project).output().expect("run the unit tests"), &format!("{lang} unit tests"))
}

fn ok(output: Output, what: &str) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// Scaffolds `name`, builds it, runs its test; then breaks the rule with `edit` (in
/// `file`), rebuilds, and expects the test to fail on the write case.
fn round_trip(lang: &str, name: &str, file: &str, edit: (&str, &str)) {
    common::policies_dir();
    let tmp = TempDir::new(&format!("new-{lang}"));
    ok(portcullis(tmp.path(), &["new", "--lang", lang, name]), "new");
    let project = tmp.path().join(name);
    for file in ["portcullis.toml", "tests/policy.toml", "tests/traffic.jsonl", "README.md", file] {
        assert!(project.join(file).is_file(), "{file} was not created");
    }
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let unit_command = match lang {
        "rust" => "cargo test",
        "python" => "python3 -m unittest",
        _ => "node --test",
    };
    assert!(readme.contains(unit_command), "the README does not say how to run the unit tests:\n{readme}");
    let again = portcullis(tmp.path(), &["new", "--lang", lang, name]);
    assert!(!again.status.success(), "new overwrote an existing project");

    let built = ok(portcullis(&project, &["build", "--jobs", "2"]), "build");
    assert!(built.contains(&format!("target/{name}.wasm")), "{built}");
    if lang == "rust" {
        assert!(project.join(".cargo/config.toml").is_file(), "no .cargo/config.toml with the stack flag");
        let reference = initial_pages(&common::component("agent-guard"));
        assert_eq!(reference, [4], "the reference policy's memory");
        assert_eq!(
            initial_pages(&project.join(format!("target/{name}.wasm"))),
            reference,
            "the new component's memory"
        );
    }
    if lang == "python" {
        assert!(project.join("target/python-bindings/wit_world").is_dir(), "build wrote no bindings into the project");
    }
    let unit = unit_tests(lang, &project);
    assert!(lang != "python" || unit.contains("Ran 4 tests"), "{unit}");
    let tested = ok(portcullis(&project, &["test", "tests/"]), "test");
    assert!(tested.contains("3 passed, 0 failed"), "{tested}");

    let path = project.join(file);
    let source = std::fs::read_to_string(&path).unwrap();
    assert!(source.contains(edit.0), "{file} has no {:?}", edit.0);
    std::fs::write(&path, source.replace(edit.0, edit.1)).unwrap();
    ok(portcullis(&project, &["build"]), "rebuild");
    let broken = portcullis(&project, &["test", "tests/"]);
    let text = String::from_utf8_lossy(&broken.stdout);
    assert!(
        !broken.status.success() && text.contains("agents may not write"),
        "the changed policy still passed:\n{text}"
    );
}

#[test]
fn a_new_rust_policy_builds_and_passes_its_test() {
    round_trip(
        "rust",
        "note-guard",
        "src/lib.rs",
        (r#"["GET", "HEAD", "OPTIONS"]"#, r#"["GET", "HEAD", "OPTIONS", "DELETE"]"#),
    );
}

#[test]
fn a_new_python_policy_builds_and_passes_its_test() {
    round_trip(
        "python",
        "ticket-guard",
        "ticket_guard.py",
        (r#"["GET", "HEAD", "OPTIONS"]"#, r#"["GET", "HEAD", "OPTIONS", "DELETE"]"#),
    );
}

#[test]
fn a_new_javascript_policy_builds_and_passes_its_tests() {
    let edit = (r"['GET', 'HEAD', 'OPTIONS']", r"['GET', 'HEAD', 'OPTIONS', 'DELETE']");
    // Its native unit tests pass out of the box, before and without a build.
    let tmp = TempDir::new("new-js-native");
    ok(portcullis(tmp.path(), &["new", "--lang", "js", "memo-guard"]), "new");
    let unit = Command::new("node")
        .arg("--test")
        .current_dir(tmp.path().join("memo-guard"))
        .output()
        .expect("run node --test");
    ok(unit, "node --test");
    round_trip("js", "invoice-guard", "policy.js", edit);
}

#[test]
fn build_says_what_kind_of_project_it_needs() {
    let tmp = TempDir::new("build-empty");
    let out = portcullis(tmp.path(), &["build"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && ["Cargo.toml", "pyproject.toml", "package.json"].iter().all(|m| text.contains(m)),
        "{text}"
    );
    let out = portcullis(tmp.path(), &["new", "Bad_Name"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a policy name"));
}
