//! Keys fetched from an issuer: `jwks_url` or OIDC discovery on an `[[identity.jwt]]` entry.
//!
//! This module does no I/O. It holds, per issuer, a [`KeyRing`]: the last good key set the
//! [`Authenticator`](super::Authenticator) verifies with, and the bookkeeping a server needs
//! to fetch it safely (when the last attempt was, whether one is in flight, why the last
//! one failed). A server (`portcullis serve`, or an embedder's gateway) fetches the
//! documents over TLS and hands the bytes to [`KeyRing::install`]; a failed fetch is
//! reported with [`KeyRing::fail`], which keeps the keys already held.
//!
//! A token naming a `kid` the ring does not hold may mean the issuer rotated its keys.
//! [`Authenticator::remote_keys_wanted`](super::Authenticator::remote_keys_wanted) tells the
//! server which ring to refresh before admitting such a request, and
//! [`KeyRing::claim_refetch`] allows at most one such fetch per cooldown, so forged `kid`s
//! cannot make the server fetch in a loop.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use super::jwt::{Key, jwks_keys};
use crate::config::UpstreamTls;

/// At most this many signing keys are taken from a fetched set (the rest are skipped), so
/// a token without a `kid` is never tried against an unbounded number of keys.
pub const MAX_REMOTE_KEYS: usize = 64;
/// The shortest wait between background refreshes that a `Cache-Control: max-age` can ask
/// for (or the refresh interval, when that is shorter).
pub const MIN_CACHE_AGE: Duration = Duration::from_secs(30);
/// How soon a background refresh is tried again after a failed one (or the refresh
/// interval, when that is shorter).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// Where an issuer's keys are fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksLocation {
    /// A JWKS document at this URL (`jwks_url`).
    Url(String),
    /// An OpenID Connect discovery document at this URL (`{issuer}/.well-known/openid-configuration`),
    /// whose `jwks_uri` names the JWKS (`discovery = true`).
    Discovery(String),
}

impl JwksLocation {
    /// The URL fetched first: the JWKS, or the discovery document.
    pub fn url(&self) -> &str {
        match self {
            JwksLocation::Url(url) | JwksLocation::Discovery(url) => url,
        }
    }
}

/// What to fetch for one issuer, and how often. Two sources are equal when every field is:
/// a reload that keeps an issuer's source keeps its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksSource {
    /// The issuer (`iss`), as configured.
    pub issuer: String,
    /// The JWKS URL, or the discovery document's.
    pub location: JwksLocation,
    /// How the issuer's TLS certificate is checked (`[identity.jwt.tls]`).
    pub tls: UpstreamTls,
    /// The folder `tls`'s relative paths are relative to (the config file's).
    pub base_dir: PathBuf,
    /// The longest time between background refreshes (`refresh_interval_s`).
    pub refresh_interval: Duration,
    /// The shortest time between two fetches caused by unknown `kid`s (`refetch_cooldown_s`).
    pub refetch_cooldown: Duration,
}

impl JwksSource {
    /// When to refresh after a successful fetch whose answer had this `Cache-Control`
    /// header: its `max-age` (0 for `no-cache`/`no-store`), kept between
    /// 30 s (`MIN_CACHE_AGE`) and the refresh interval; the interval without one.
    pub fn next_refresh(&self, cache_control: Option<&str>) -> Duration {
        let interval = self.refresh_interval;
        let floor = MIN_CACHE_AGE.min(interval);
        let Some(header) = cache_control else { return interval };
        let mut age = None;
        for directive in header.split(',').map(str::trim) {
            let lower = directive.to_ascii_lowercase();
            if lower == "no-cache" || lower == "no-store" {
                age = Some(0);
            } else if let Some(value) = lower.strip_prefix("max-age=")
                && let Ok(secs) = value.trim_matches('"').parse::<u64>()
            {
                age = Some(age.map_or(secs, |a: u64| a.min(secs)));
            }
        }
        age.map_or(interval, |secs| Duration::from_secs(secs).clamp(floor, interval))
    }

    /// When to try again after a failed fetch.
    pub fn retry_after_failure(&self) -> Duration {
        RETRY_AFTER_FAILURE.min(self.refresh_interval)
    }
}

/// Whether a caller should fetch now ([`KeyRing::claim_refetch`], [`KeyRing::claim_refresh`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Claim {
    /// Fetch now; then call [`KeyRing::install`] or [`KeyRing::fail`] (which ends the flight).
    Lead,
    /// A fetch is in flight: wait for it rather than starting another.
    Join,
    /// Do not fetch: the cooldown since the last attempt has not passed.
    Skip,
}

/// The keys held for an issuer, as fetched once.
#[derive(Debug)]
pub(crate) struct KeySet {
    pub(crate) keys: Vec<Key>,
    fetched_at: SystemTime,
}

#[derive(Debug, Default)]
struct Book {
    last_attempt: Option<Instant>,
    /// The last fetch caused by an unknown `kid`: the cooldown counts from it.
    last_refetch: Option<Instant>,
    in_flight: bool,
    last_error: Option<String>,
    /// Fetches that ended, ok or not: followers wait for it to change.
    completed: u64,
    /// The JWKS URL last fetched (with discovery, the `jwks_uri` found).
    fetched_url: Option<String>,
}

/// One issuer's fetched keys: read by the authenticator on every token from that issuer,
/// replaced whole by [`KeyRing::install`]. `Send + Sync`; shared as `Arc<KeyRing>`.
#[derive(Debug)]
pub struct KeyRing {
    source: JwksSource,
    keys: RwLock<Option<Arc<KeySet>>>,
    book: Mutex<Book>,
}

/// What [`KeyRing::install`] took from a fetched set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Installed {
    /// How many signing keys are now held.
    pub keys: usize,
    /// Keys left out, each with why (`key 2 (kid "x"): algorithm "RSA-OAEP" not supported`).
    pub skipped: Vec<String>,
}

/// A ring's state, for `/readyz` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct KeyRingStatus {
    /// The issuer.
    pub issuer: String,
    /// The URL fetched first (the JWKS, or the discovery document).
    pub url: String,
    /// With discovery, the JWKS URL the discovery document named (last fetched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Whether keys were ever loaded (tokens from this issuer can only verify with the
    /// static keys until then).
    pub loaded: bool,
    /// How many keys are held.
    pub keys: usize,
    /// Seconds since the keys held were fetched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_s: Option<u64>,
    /// Why the last fetch failed, when it did (the keys held are then older ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl KeyRing {
    /// An empty ring for `source`: nothing loaded until [`KeyRing::install`].
    pub fn new(source: JwksSource) -> KeyRing {
        KeyRing { source, keys: RwLock::new(None), book: Mutex::new(Book::default()) }
    }

    /// What this ring fetches.
    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.source.issuer
    }

    /// Whether keys were ever loaded.
    pub fn is_loaded(&self) -> bool {
        self.current().is_some()
    }

    pub(crate) fn current(&self) -> Option<Arc<KeySet>> {
        self.keys.read().map_or_else(|poisoned| poisoned.into_inner().clone(), |k| k.clone())
    }

    /// Whether a held key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.current().is_some_and(|set| set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many fetches have ended (successfully or not). A caller that joined a flight
    /// waits for this to change.
    pub fn completed(&self) -> u64 {
        self.book().completed
    }

    /// A fetch asked for by a token whose `kid` no held key has (or by any token while
    /// nothing is loaded): [`Claim::Join`] when one is in flight, [`Claim::Lead`] when the
    /// cooldown since the last such fetch has passed (this one is recorded now),
    /// [`Claim::Skip`] otherwise. Scheduled refreshes do not start the cooldown, so a key
    /// rotated in just after one is still fetched on its first token.
    pub fn claim_refetch(&self, now: Instant) -> Claim {
        let mut book = self.book();
        if book.in_flight {
            return Claim::Join;
        }
        if book.last_refetch.is_some_and(|at| now.saturating_duration_since(at) < self.source.refetch_cooldown) {
            return Claim::Skip;
        }
        book.in_flight = true;
        book.last_attempt = Some(now);
        book.last_refetch = Some(now);
        Claim::Lead
    }

    /// A scheduled (background or start-up) fetch: [`Claim::Join`] when one is in flight,
    /// otherwise [`Claim::Lead`] (the cooldown does not apply: these are few by design).
    pub fn claim_refresh(&self, now: Instant) -> Claim {
        let mut book = self.book();
        if book.in_flight {
            return Claim::Join;
        }
        book.in_flight = true;
        book.last_attempt = Some(now);
        Claim::Lead
    }

    /// Replaces the held keys with those of a fetched JWKS document (`jwks_url` names the
    /// URL it came from) and ends the flight. Keys for encryption are left out; keys of an
    /// unsupported type or algorithm, weak keys (RSA under 2048 bits), symmetric keys and
    /// keys past the 64th (`MAX_REMOTE_KEYS`) are left out with a reason. A document with no usable
    /// key is an error, and the keys held before stay.
    pub fn install(&self, jwks: &[u8], jwks_url: &str, now: SystemTime) -> Result<Installed, String> {
        let parsed = std::str::from_utf8(jwks).map_err(|_| "the JWKS is not UTF-8 text".to_owned()).and_then(|text| {
            let (mut keys, mut skipped) = jwks_keys(text)?;
            if keys.len() > MAX_REMOTE_KEYS {
                skipped.push(format!("{} keys past the first {MAX_REMOTE_KEYS}", keys.len() - MAX_REMOTE_KEYS));
                keys.truncate(MAX_REMOTE_KEYS);
            }
            Ok((keys, skipped))
        });
        match parsed {
            Ok((keys, skipped)) => {
                let count = keys.len();
                let set = Arc::new(KeySet { keys, fetched_at: now });
                *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(set);
                let mut book = self.book();
                book.in_flight = false;
                book.last_error = None;
                book.completed += 1;
                book.fetched_url = Some(jwks_url.to_owned());
                Ok(Installed { keys: count, skipped })
            }
            Err(message) => {
                self.fail(format!("{jwks_url}: {message}"));
                Err(message)
            }
        }
    }

    /// Records a failed fetch and ends the flight; the keys held (if any) stay in use.
    pub fn fail(&self, cause: String) {
        let mut book = self.book();
        book.in_flight = false;
        book.last_error = Some(cause);
        book.completed += 1;
    }

    /// Takes over the keys and the bookkeeping of `older`, the ring of the same source in
    /// the configuration this one replaces (a reload), so a reload does not drop the
    /// issuer's keys. Does nothing when the sources differ.
    pub fn adopt(&self, older: &KeyRing) {
        if older.source != self.source || std::ptr::eq(older, self) {
            return;
        }
        let keys = older.current();
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        let old = older.book();
        let mut book = self.book();
        book.last_attempt = old.last_attempt;
        book.last_refetch = old.last_refetch;
        book.last_error.clone_from(&old.last_error);
        book.fetched_url.clone_from(&old.fetched_url);
    }

    /// The ring's state as of `now`.
    pub fn status(&self, now: SystemTime) -> KeyRingStatus {
        let set = self.current();
        let book = self.book();
        KeyRingStatus {
            issuer: self.source.issuer.clone(),
            url: self.source.location.url().to_owned(),
            jwks_uri: match self.source.location {
                JwksLocation::Discovery(_) => book.fetched_url.clone(),
                JwksLocation::Url(_) => None,
            },
            loaded: set.is_some(),
            keys: set.as_ref().map_or(0, |s| s.keys.len()),
            age_s: set.as_ref().map(|s| now.duration_since(s.fetched_at).map_or(0, |d| d.as_secs())),
            last_error: book.last_error.clone(),
        }
    }
}

/// The `jwks_uri` of an OpenID Connect discovery document, checked: the document's
/// `issuer` must be `issuer` exactly (OpenID Connect Discovery §4.3), and the URL must be
/// one [`check_fetch_url`] accepts.
pub fn discovered_jwks_uri(document: &[u8], issuer: &str) -> Result<String, String> {
    let doc: Value =
        serde_json::from_slice(document).map_err(|e| format!("the discovery document is not JSON: {e}"))?;
    let found = doc.get("issuer").and_then(Value::as_str);
    if found != Some(issuer) {
        return Err(format!(
            "the discovery document names issuer {}, not {issuer:?}",
            found.map_or_else(|| "nothing".to_owned(), super::quoted)
        ));
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| "the discovery document has no `jwks_uri`".to_owned())?;
    check_fetch_url(uri).map_err(|m| format!("its jwks_uri {}: {m}", super::quoted(uri)))?;
    Ok(uri.to_owned())
}

/// Whether keys may be fetched from `url`: `https://`, or plain `http://` to a loopback
/// host (`127.0.0.1`, `[::1]`, `localhost`: a local identity provider or a test), never
/// plain HTTP over a network, where anyone on the path could swap the keys.
pub fn check_fetch_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a URL".to_owned())?;
    let host = uri.host().ok_or_else(|| "has no host".to_owned())?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if matches!(host, "127.0.0.1" | "[::1]" | "localhost") => Ok(()),
        Some("http") => Err("must be https:// (plain http:// only to 127.0.0.1, [::1] or localhost)".into()),
        _ => Err("must be an https:// URL".into()),
    }
}

/// The discovery document's URL for `issuer`: its trailing `/` removed, then
/// `/.well-known/openid-configuration` (OpenID Connect Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}
