//! `portcullis check`: a good config prints what `serve` would run and exits 0 without
//! binding or writing anything; each kind of broken config exits 2 with the error `serve`
//! gives, naming the file and the key. Real components from `policies/`.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::Output;

use common::{TempDir, component, portcullis_cli};

/// A config with the reference policies, two routes, API-key identity and the doors given.
fn config(doors: &str) -> String {
    let module = |name: &str| component(name).display().to_string();
    format!(
        r#"
[[identity.api_keys]]
name = "k1"
sha256 = "{sha}"
id = "crm-sync"
scopes = ["invoices:read"]

[policies.scopes]
module = "{scopes}"
settings = {{ default = "deny", rules = [{{ methods = ["GET"], path = "/invoices/**", scopes = ["invoices:read"] }}] }}

[policies.agent-guard]
module = "{guard}"
settings = {{ approver_group = "finance", ttl_seconds = 600 }}

[[routes]]
name = "invoices"
methods = ["GET", "POST"]
paths = ["/invoices/**"]
policies = ["scopes", "agent-guard"]

[[routes]]
paths = ["/health"]
policies = ["scopes"]

{doors}
"#,
        sha = portcullis_host::sha256_hex(b"key-one-0000000000000001"),
        scopes = module("scopes"),
        guard = module("agent-guard"),
    )
}

fn check(path: &Path) -> Output {
    portcullis_cli(&["check", "--config", &path.display().to_string()], &[])
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_good_config_prints_what_serve_would_run_without_binding_or_writing() {
    let tmp = TempDir::new("check-good");
    // The proxy's port is held by another listener, as it is by the live server when
    // `check` runs before a reload: `check` must not try to bind it.
    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let doors = format!(
        "[server.proxy]\nlisten = \"127.0.0.1:{port}\"\nupstream = \"http://127.0.0.1:9000/api\"\n\n\
         [server.admin]\nlisten = \"127.0.0.1:9090\"\n\n[audit]\npath = \"logs/audit.jsonl\"\n\n\
         [approvals]\nstore = \"approvals.sqlite\"\n"
    );
    std::fs::create_dir(tmp.path().join("logs")).expect("logs dir");
    let path = tmp.write("portcullis.toml", config(&doors));
    let output = check(&path);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "check failed: {stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    for expected in [
        "scopes",
        "agent-guard",
        "invoices: GET,POST */invoices/** -> scopes, agent-guard",
        "routes[1]: * */health -> scopes",
        &format!("proxy         http://127.0.0.1:{port} -> http://127.0.0.1:9000/api"),
        "admin         http://127.0.0.1:9090",
        "1 API key(s)",
        "audit: logs/audit.jsonl",
        "approvals: sqlite approvals.sqlite",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    // Nothing written: no audit log, no approval store.
    assert!(!tmp.path().join("logs/audit.jsonl").exists());
    assert!(!tmp.path().join("approvals.sqlite").exists());

    let quiet = portcullis_cli(&["check", "--quiet", "--config", &path.display().to_string()], &[]);
    assert!(quiet.status.success());
    assert!(quiet.stdout.is_empty(), "--quiet printed {}", String::from_utf8_lossy(&quiet.stdout));
    drop(busy);
}

/// Each broken config: what to change in the good one, and what the error must name.
#[test]
fn each_broken_config_exits_2_naming_the_file_and_the_key() {
    let proxy = "[server.proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9000\"\n";
    let good = config(proxy);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("no door", config(""), vec!["opens no front door", "[server.proxy]"]),
        (
            "a missing component",
            good.replace(&component("agent-guard").display().to_string(), "/nonexistent/agent-guard.wasm"),
            vec!["agent-guard", "/nonexistent/agent-guard.wasm"],
        ),
        (
            "a route naming an unknown policy",
            good.replace("policies = [\"scopes\"]", "policies = [\"scopes\", \"ghost\"]"),
            vec!["ghost"],
        ),
        (
            "settings the policy's init refuses",
            good.replace("ttl_seconds = 600", "ttl_seconds = \"soon\""),
            vec!["agent-guard"],
        ),
        (
            "an identity key file that cannot be read",
            good.replace(
                "[[identity.api_keys]]",
                "[[identity.jwt]]\nissuer = \"https://id.example\"\npublic_key_file = \"keys/missing.pem\"\n\n[[identity.api_keys]]",
            ),
            vec!["identity.jwt[0].public_key_file", "keys/missing.pem"],
        ),
        (
            "an upstream that is not http(s)",
            good.replace("upstream = \"http://127.0.0.1:9000\"", "upstream = \"ftp://127.0.0.1:9000\""),
            vec!["[server.proxy] upstream", "ftp://"],
        ),
        (
            "an upstream CA file that cannot be read",
            good.replace("upstream = \"http://127.0.0.1:9000\"", "upstream = \"https://127.0.0.1:9000\"")
                + "\n[server.proxy.upstream_tls]\nca_file = \"certs/missing-ca.pem\"\n",
            vec!["[server.proxy.upstream_tls]", "certs/missing-ca.pem"],
        ),
        (
            "a listener certificate that cannot be read",
            good.clone() + "\n[server.proxy.tls]\ncert_file = \"certs/none.pem\"\nkey_file = \"certs/none.key\"\n",
            vec!["[server.proxy.tls]", "certs/none.pem"],
        ),
        (
            "an issuer's JWKS CA file that cannot be read",
            good.replace(
                "[[identity.api_keys]]",
                "[[identity.jwt]]\nissuer = \"https://id.example\"\njwks_url = \"https://id.example/jwks.json\"\n\
                 [identity.jwt.tls]\nca_file = \"certs/issuer-ca.pem\"\n\n[[identity.api_keys]]",
            ),
            vec!["id.example", "certs/issuer-ca.pem"],
        ),
        ("an unknown key", good.replace("[server.proxy]\n", "[server.proxy]\nlisten_twice = 1\n"), vec!["listen_twice"]),
        (
            "an audit log in a folder that does not exist",
            format!("{good}\n[audit]\npath = \"no-such-dir/audit.jsonl\"\n"),
            vec!["[audit] path", "no-such-dir"],
        ),
    ];
    for (what, text_of_config, needles) in cases {
        let tmp = TempDir::new("check-bad");
        let path = tmp.write("portcullis.toml", &text_of_config);
        let output = check(&path);
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{what}: expected exit 2, got {:?}\n{stdout}{stderr}", output.status);
        assert!(stderr.contains("portcullis.toml"), "{what}: the error does not name the file:\n{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{what}: the error does not name {needle:?}:\n{stderr}");
        }
        assert!(stdout.is_empty(), "{what}: printed a plan for a broken config:\n{stdout}");
    }
}

/// The example unit's commands are ones this binary understands (`check --quiet --config`,
/// `serve --config`), so the unit does not rot when the command line changes.
#[test]
fn the_systemd_units_commands_parse() {
    let unit = std::fs::read_to_string(common::root().join("examples/systemd/portcullis.service")).expect("unit");
    let commands: Vec<&str> = unit
        .lines()
        .filter_map(|line| line.split_once('=').filter(|(key, _)| key.starts_with("Exec")).map(|(_, v)| v))
        .filter_map(|value| value.strip_prefix("/usr/local/bin/portcullis "))
        .collect();
    assert_eq!(commands.len(), 3, "ExecStartPre, ExecStart and ExecReload run portcullis:\n{unit}");
    for command in commands {
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.push("--help");
        let output = portcullis_cli(&args, &[]);
        assert!(output.status.success(), "`portcullis {command}` does not parse: {}", text(&output).1);
    }
}
