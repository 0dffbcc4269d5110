//! JWT keys fetched from the issuer (`jwks_url`, `discovery = true`): a real nginx serves the
//! JWKS (and the OpenID discovery document) over TLS from a folder, with a private CA made
//! at test time; `portcullis serve` fetches them through `[identity.jwt.tls] ca_file`. ES256
//! signing keys are made at test time too.
//!
//! Proven: a key rotation at the issuer with no failed request (the first token signed by the
//! new key makes one fetch, shared by concurrent requests); forged `kid`s cannot make it fetch
//! in a loop (nginx's access log counts the fetches); an issuer that goes away leaves the last
//! good keys serving, across a reload, with the failure in `/metrics`, `/readyz` and the log;
//! an issuer with no keys at start is named as not ready and recovers on the next token; and
//! discovery finds the JWKS through `/.well-known/openid-configuration`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::nginx::Nginx;
use common::serve::{Answer, Server, Upstream, send, temp_dir};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Certificates and signing keys, made at test time
// ---------------------------------------------------------------------------------------

/// A private CA (`ca.pem`) and a server certificate for `localhost` and 127.0.0.1
/// (`server.pem`, `server.key`) in `dir/pki`.
fn make_pki(dir: &Path) -> PathBuf {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Portcullis JWKS test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    std::fs::write(pki.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "localhost");
    leaf.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    std::fs::write(pki.join("server.pem"), leaf.signed_by(&key, &issuer).unwrap().pem()).unwrap();
    std::fs::write(pki.join("server.key"), key.serialize_pem()).unwrap();
    pki
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// An ES256 signing key of the issuer's, with its public half as a JWK.
struct SigningKey {
    kid: String,
    private: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    fn new(kid: &str) -> SigningKey {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                         "x": b64url(&point[1..33]), "y": b64url(&point[33..65])});
        let private = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        SigningKey { kid: kid.to_owned(), private, jwk }
    }

    /// A token for alice, who may read invoices, with `kid` in its header.
    fn token_with_kid(&self, issuer: &str, kid: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let claims = json!({"iss": issuer, "sub": "alice", "aud": "invoices-api", "scope": "invoices:read",
                            "exp": now + 600, "iat": now});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.private).unwrap()
    }

    fn token(&self, issuer: &str) -> String {
        self.token_with_kid(issuer, &self.kid)
    }
}

// ---------------------------------------------------------------------------------------
// The issuer (nginx over TLS) and Portcullis in front of an upstream
// ---------------------------------------------------------------------------------------

/// nginx serving `www` over TLS, its issuer URL, and Portcullis's proxy and admin doors.
struct Bench {
    dir: PathBuf,
    www: PathBuf,
    nginx: Option<Nginx>,
    issuer: String,
    server: Server,
    _upstream: Upstream,
}

/// How Portcullis finds the keys.
#[derive(Clone, Copy)]
enum Find {
    Url,
    Discovery,
}

impl Bench {
    /// Starts the issuer serving `keys` (none: no `jwks.json` yet, so it answers 404), and
    /// Portcullis fetching from it with `refetch_cooldown_s = cooldown`.
    fn start(name: &str, find: Find, keys: Option<&[&SigningKey]>, cooldown: u64) -> Bench {
        Bench::start_refreshing(name, find, keys, cooldown, 300)
    }

    /// [`Bench::start`] with `refresh_interval_s = refresh`.
    fn start_refreshing(name: &str, find: Find, keys: Option<&[&SigningKey]>, cooldown: u64, refresh: u64) -> Bench {
        let dir = temp_dir(name);
        let pki = make_pki(&dir);
        let www = dir.join("www");
        std::fs::create_dir_all(www.join(".well-known")).unwrap();
        if let Some(keys) = keys {
            publish(&www, keys);
        }
        let nginx = Nginx::start(&dir, 1, |ports| {
            format!(
                r"    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {pki}/server.pem;
        ssl_certificate_key {pki}/server.key;
        root {www};
        default_type application/json;
        location / {{
            try_files $uri =404;
        }}
    }}",
                port = ports[0],
                pki = pki.display(),
                www = www.display(),
            )
        });
        let issuer = format!("https://127.0.0.1:{}", nginx.port);
        std::fs::write(
            www.join(".well-known/openid-configuration"),
            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/keys/jwks.json"),
                   "id_token_signing_alg_values_supported": ["ES256"]})
            .to_string(),
        )
        .unwrap();
        let upstream = Upstream::start();
        let find = match find {
            Find::Url => format!("jwks_url = \"{issuer}/keys/jwks.json\""),
            Find::Discovery => "discovery = true".to_owned(),
        };
        let config = common::serve::fixture_config(false, "invoices:read")
            + &format!(
                r#"
[[identity.jwt]]
issuer = "{issuer}"
audiences = ["invoices-api"]
{find}
refetch_cooldown_s = {cooldown}
refresh_interval_s = {refresh}

[identity.jwt.tls]
ca_file = "{ca}"

[[routes]]
name = "invoices"
paths = ["/invoices/**"]
policies = ["scopes"]

[server.proxy]
listen = "127.0.0.1:0"
upstream = "http://{upstream}"

[server.admin]
listen = "127.0.0.1:0"
"#,
                ca = pki.join("ca.pem").display(),
                upstream = upstream.addr,
            );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        let server = Server::start(&path, &[]);
        Bench { dir, www, nginx: Some(nginx), issuer, server, _upstream: upstream }
    }

    fn get(&self, token: &str) -> Answer {
        send("GET", &self.server.url("proxy", "/invoices/1"), &[("authorization", &format!("Bearer {token}"))], b"")
    }

    /// How many times the issuer was asked for `path` (nginx's access log).
    fn fetches(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.join("nginx/access.log")).unwrap_or_default();
        log.lines().filter(|line| line.contains(&format!("\"GET {path} "))).count()
    }

    fn admin(&self, path: &str) -> Answer {
        send("GET", &self.server.url("admin", path), &[], b"")
    }

    /// The value of the metric line starting with `prefix` (name and labels), if any.
    fn metric(&self, prefix: &str) -> Option<f64> {
        let text = String::from_utf8_lossy(&self.admin("/metrics").body).into_owned();
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

/// Writes the issuer's JWKS (aside, then renamed: nginx never serves half a file).
fn publish(www: &Path, keys: &[&SigningKey]) {
    let dir = www.join("keys");
    std::fs::create_dir_all(&dir).unwrap();
    let doc = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
    std::fs::write(dir.join("jwks.json.new"), doc.to_string()).unwrap();
    std::fs::rename(dir.join("jwks.json.new"), dir.join("jwks.json")).unwrap();
}

fn assert_status(answer: &Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", String::from_utf8_lossy(&answer.body));
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn a_key_rotation_at_the_issuer_fails_no_request() {
    let (a, b) = (SigningKey::new("key-a"), SigningKey::new("key-b"));
    let bench = Bench::start("jwks-rotation", Find::Url, Some(&[&a]), 1);
    assert_eq!(bench.fetches("/keys/jwks.json"), 1, "fetched once at start");
    for _ in 0..10 {
        assert_status(&bench.get(&a.token(&bench.issuer)), 200, "a token signed by key A");
    }
    // Past the cooldown since the start's fetch, the issuer starts signing with key B.
    std::thread::sleep(Duration::from_millis(1100));
    publish(&bench.www, &[&a, &b]);
    // Eight callers with B's first tokens at once: each waits for the one fetch they cause.
    let url = bench.server.url("proxy", "/invoices/1");
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (url, token) = (url.clone(), b.token(&bench.issuer));
            std::thread::spawn(move || send("GET", &url, &[("authorization", &format!("Bearer {token}"))], b""))
        })
        .collect();
    for caller in callers {
        assert_status(&caller.join().unwrap(), 200, "a first token signed by the new key B");
    }
    assert_eq!(bench.fetches("/keys/jwks.json"), 2, "the concurrent callers shared one fetch");
    // Both keys serve through the rotation; then A is retired, and B's tokens go on passing.
    for i in 0..20 {
        let key = if i % 2 == 0 { &a } else { &b };
        assert_status(&bench.get(&key.token(&bench.issuer)), 200, "tokens of both keys during the rotation");
    }
    publish(&bench.www, &[&b]);
    for _ in 0..10 {
        assert_status(&bench.get(&b.token(&bench.issuer)), 200, "tokens of key B after A is retired");
    }
    let issuer = &bench.issuer;
    assert_eq!(bench.metric(&format!("portcullis_jwks_fetch_total{{issuer=\"{issuer}\",result=\"ok\"}}")), Some(2.0));
    assert_eq!(bench.metric(&format!("portcullis_jwks_keys{{issuer=\"{issuer}\"}}")), Some(2.0));
    let ready = bench.admin("/readyz");
    assert_status(&ready, 200, "/readyz");
    assert_eq!(ready.json()["jwks"][0]["state"], "ok", "{}", ready.json());
}

#[test]
fn forged_kids_cannot_make_it_fetch_in_a_loop() {
    let a = SigningKey::new("key-a");
    let bench = Bench::start("jwks-forged", Find::Url, Some(&[&a]), 60);
    let mut refused = Vec::new();
    for i in 0..50 {
        // Signed by A, under a kid no key has: as a forger would try, 50 times.
        let answer = bench.get(&a.token_with_kid(&bench.issuer, &format!("forged-{i}-{}", i * 7919)));
        refused.push(answer.status);
    }
    assert!(refused.iter().all(|s| *s == 401), "{refused:?}");
    let fetches = bench.fetches("/keys/jwks.json");
    assert!(fetches <= 2, "50 forged kids made {fetches} fetches");
    assert_status(&bench.get(&a.token(&bench.issuer)), 200, "a genuine token after the forgeries");
}

#[test]
fn an_issuer_that_goes_away_leaves_the_last_good_keys_serving_across_a_reload() {
    let a = SigningKey::new("key-a");
    let mut bench = Bench::start("jwks-down", Find::Url, Some(&[&a]), 1);
    assert_status(&bench.get(&a.token(&bench.issuer)), 200, "before the issuer goes away");
    // A reload that keeps the issuer keeps its keys.
    let config = bench.server.config.clone();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text + "\n# reloaded\n").unwrap();
    bench.server.hangup();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    // Other test processes rebuilding the components can cause reloads too: at least one.
    while bench.admin("/readyz").json()["generation"].as_u64() < Some(2) {
        assert!(std::time::Instant::now() < deadline, "no reload:\n{}", bench.server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(bench.nginx.take());
    std::thread::sleep(Duration::from_millis(1100));
    // An unknown kid makes a fetch, which fails: the token is refused, the known key stays.
    let unknown = SigningKey::new("key-c");
    let refused = bench.get(&unknown.token(&bench.issuer));
    assert_status(&refused, 401, "a token of a key the issuer never published");
    for _ in 0..5 {
        assert_status(&bench.get(&a.token(&bench.issuer)), 200, "a known key while the issuer is down");
    }
    let issuer = &bench.issuer;
    let errors = bench.metric(&format!("portcullis_jwks_fetch_total{{issuer=\"{issuer}\",result=\"error\"}}"));
    assert!(errors.is_some_and(|n| n >= 1.0), "{:?}", errors);
    assert!(bench.metric(&format!("portcullis_jwks_age_seconds{{issuer=\"{issuer}\"}}")).is_some_and(|age| age >= 1.0));
    let ready = bench.admin("/readyz");
    assert_status(&ready, 200, "/readyz while old keys serve");
    let entry = &ready.json()["jwks"][0];
    assert_eq!(entry["state"], "stale", "{entry}");
    assert_eq!(entry["issuer"], bench.issuer.as_str());
    assert!(entry["last_error"].as_str().is_some_and(|e| e.contains("/keys/jwks.json")), "{entry}");
    let log = bench.server.log();
    assert!(log.contains("fetching JWT keys failed; the keys fetched before stay in use"), "{log}");
}

#[test]
fn an_issuer_without_keys_at_start_is_not_ready_and_recovers_on_the_next_token() {
    let a = SigningKey::new("key-a");
    let bench = Bench::start("jwks-late", Find::Url, None, 1);
    let ready = bench.admin("/readyz");
    assert_status(&ready, 503, "/readyz with no keys loaded");
    assert!(ready.json()["not_ready"].as_str().is_some_and(|t| t.contains(&bench.issuer)), "{}", ready.json());
    let refused = bench.get(&a.token(&bench.issuer));
    assert_status(&refused, 401, "no keys loaded yet");
    assert!(String::from_utf8_lossy(&refused.body).contains("not loaded yet"), "{refused:?}");
    publish(&bench.www, &[&a]);
    std::thread::sleep(Duration::from_millis(1100));
    assert_status(&bench.get(&a.token(&bench.issuer)), 200, "once the issuer publishes its keys");
    assert_status(&bench.admin("/readyz"), 200, "/readyz once keys are loaded");
}

#[test]
fn discovery_finds_the_jwks_through_the_openid_configuration() {
    let a = SigningKey::new("key-a");
    let bench = Bench::start("jwks-discovery", Find::Discovery, Some(&[&a]), 10);
    assert_eq!(bench.fetches("/.well-known/openid-configuration"), 1);
    assert_eq!(bench.fetches("/keys/jwks.json"), 1);
    assert_status(&bench.get(&a.token(&bench.issuer)), 200, "a token verified with a discovered key");
    let ready = bench.admin("/readyz").json();
    assert_eq!(ready["jwks"][0]["jwks_uri"], format!("{}/keys/jwks.json", bench.issuer), "{ready}");
}

#[test]
fn keys_are_refreshed_in_the_background() {
    let (a, b) = (SigningKey::new("key-a"), SigningKey::new("key-b"));
    let bench = Bench::start_refreshing("jwks-background", Find::Url, Some(&[&a]), 10, 10);
    assert_eq!(bench.fetches("/keys/jwks.json"), 1);
    // The issuer retires key A; no token asks for anything, yet within the interval the
    // new set is fetched and A's tokens stop passing.
    publish(&bench.www, &[&b]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Logged once the set is installed.
    while bench.server.log().matches("JWT keys fetched").count() < 2 {
        assert!(std::time::Instant::now() < deadline, "no background refresh:\n{}", bench.server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(bench.fetches("/keys/jwks.json"), 2);
    assert_status(&bench.get(&b.token(&bench.issuer)), 200, "a token of key B");
    // B was known from the background refresh: its token made no fetch of its own.
    let log = bench.server.log();
    assert!(log.contains("why=\"scheduled\"") && !log.contains("why=\"unknown kid\""), "{log}");
    // A's tokens are refused now (the retired kid makes one fetch, which finds no A either).
    assert_status(&bench.get(&a.token(&bench.issuer)), 401, "a token of the retired key A");
}
