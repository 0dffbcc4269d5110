//! JWT keys fetched from issuers (`jwks_url`, `discovery = true` on `[[identity.jwt]]`):
//! fetched once at start, refreshed in the background, refreshed before admitting a token
//! whose `kid` is unknown (at most once per cooldown, every request waiting for that one
//! fetch), and kept when a fetch fails.
//!
//! The library holds each issuer's keys in a `KeyRing` and says which ring a request wants
//! refreshed; this module does the fetching, over the same TLS client as the doors'
//! upstreams (`[identity.jwt.tls]`), and counts `portcullis_jwks_fetch_total{issuer,result}`.
//! A ring survives a reload when its issuer keeps the same source: the new configuration's
//! ring takes over the old one's keys, and the same background task keeps refreshing it.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use http::{StatusCode, Uri};
use portcullis_host::Request;
use portcullis_host::gate::Gate;
use portcullis_host::identity::{Claim, JwksLocation, KeyRing, KeyRingStatus, discovered_jwks_uri};
use tokio::sync::watch;

use super::metrics::Metrics;
use super::upstream::UpstreamClient;

/// How long one document may take, connect to last byte.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS or discovery document read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// How long a request whose token has an unknown `kid` waits for the refresh it caused (or
/// joined) before it is judged with the keys there are.
const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(2);
/// How long `serve` waits at start for every issuer's first fetch before it opens the doors
/// anyway (an issuer that is down does not stop the server: its tokens get 401 until a fetch
/// succeeds, and `/readyz` names it).
const START_WAIT: Duration = Duration::from_secs(10);

/// One issuer's ring and what fetches it: kept across reloads while the source is the same.
struct Driver {
    /// The ring of the gate currently serving.
    ring: Mutex<Arc<KeyRing>>,
    client: UpstreamClient,
    /// Counts fetches that ended; requests that joined a fetch wait for it to change.
    done: watch::Sender<u64>,
}

impl Driver {
    fn ring(&self) -> Arc<KeyRing> {
        self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Every issuer's fetched keys, for the live gate.
pub struct Jwks {
    drivers: Mutex<Vec<Arc<Driver>>>,
    metrics: Arc<Metrics>,
    /// Set once `serve` runs: background tasks are spawned on it.
    runtime: Mutex<Option<tokio::runtime::Handle>>,
}

/// The drivers for a new gate's rings, built (TLS files read) but not yet in use.
pub struct Prepared(Vec<Arc<Driver>>);

impl Jwks {
    /// No issuer yet.
    pub fn new(metrics: Arc<Metrics>) -> Jwks {
        Jwks { drivers: Mutex::new(Vec::new()), metrics, runtime: Mutex::new(None) }
    }

    fn drivers(&self) -> Vec<Arc<Driver>> {
        self.drivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The drivers `gate` needs: for an issuer whose source is unchanged, the running driver
    /// (its new ring takes over the old one's keys when [`Jwks::use_prepared`] runs); for a
    /// new source, a new driver whose TLS client is built now, so a bad `[identity.jwt.tls]`
    /// file refuses the configuration.
    pub fn prepare(&self, gate: &Gate) -> Result<Prepared> {
        let Some(authenticator) = gate.authenticator() else { return Ok(Prepared(Vec::new())) };
        let running = self.drivers();
        let mut out = Vec::new();
        for ring in authenticator.key_rings() {
            let same = running.iter().find(|d| d.ring().source() == ring.source());
            let client = if let Some(driver) = same {
                driver.client.clone()
            } else {
                let source = ring.source();
                let key = format!("[identity.jwt] issuer {:?}: tls", source.issuer);
                UpstreamClient::new(&source.tls, &source.base_dir, false, &key)?
            };
            let driver = Arc::new(Driver { ring: Mutex::new(ring), client, done: watch::channel(0).0 });
            out.push(driver);
        }
        Ok(Prepared(out))
    }

    /// Puts prepared drivers in use (with the gate they were prepared for): rings of
    /// unchanged sources take over the keys held, background refreshes start for new
    /// sources, and those of sources no longer configured stop.
    pub fn use_prepared(&self, prepared: Prepared) {
        let mut drivers = self.drivers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Vec::new();
        for fresh in prepared.0 {
            let ring = fresh.ring();
            if let Some(old) = drivers.iter().find(|d| d.ring().source() == ring.source()) {
                ring.adopt(&old.ring());
                *old.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ring;
                next.push(old.clone());
            } else {
                self.spawn_refresher(&fresh);
                next.push(fresh);
            }
        }
        *drivers = next;
    }

    fn spawn_refresher(&self, driver: &Arc<Driver>) {
        if let Some(runtime) = self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            runtime.spawn(refresher(Arc::downgrade(driver), self.metrics.clone()));
        }
    }

    /// At `serve`'s start: starts every issuer's background refresh, which fetches at once,
    /// and waits (up to 10 s) for those first fetches, so the doors open with keys loaded.
    /// An issuer that cannot be reached does not stop the start.
    pub async fn start(&self) {
        let drivers = self.drivers();
        let mut waits = Vec::new();
        {
            let mut runtime = self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *runtime = Some(tokio::runtime::Handle::current());
        }
        for driver in &drivers {
            waits.push(driver.done.subscribe());
            self.spawn_refresher(driver);
        }
        let _ = tokio::time::timeout(START_WAIT, async {
            for mut wait in waits {
                let _ = wait.changed().await;
            }
        })
        .await;
    }

    /// Before `gate` admits `request`: when its bearer token's issuer fetches its keys and
    /// none are loaded, or the token's `kid` is unknown, refreshes that issuer's keys (at
    /// most once per `refetch_cooldown_s`; requests arriving meanwhile share the fetch) and
    /// waits for it, up to 2 s. Then the gate judges the token with the keys there are.
    pub async fn before_admission(&self, gate: &Gate, request: &Request) {
        let Some(authenticator) = gate.authenticator() else { return };
        let Some(ring) = authenticator.remote_keys_wanted(&request.headers) else { return };
        let Some(driver) = self.drivers().into_iter().find(|d| d.ring().source() == ring.source()) else { return };
        // The live gate's ring is the one refreshed; a request that took the gate a reload
        // has just replaced gets what it fetched too.
        let current = driver.ring();
        let mut wait = driver.done.subscribe();
        match current.claim_refetch(Instant::now()) {
            Claim::Skip => return,
            Claim::Join => {}
            // Its own task, so the fetch ends (and ends the flight) even if this request's
            // caller goes away.
            _ => {
                tokio::spawn(fetch(driver.clone(), current.clone(), self.metrics.clone(), "unknown kid"));
            }
        }
        let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, wait.changed()).await;
        if !Arc::ptr_eq(&current, &ring) {
            ring.adopt(&current);
        }
    }

    /// Every issuer's keys, for `/readyz` and the metrics.
    pub fn statuses(&self) -> Vec<KeyRingStatus> {
        let now = SystemTime::now();
        self.drivers().iter().map(|d| d.ring().status(now)).collect()
    }

    /// Sets the key-set gauges (age, count) from the rings, before `/metrics` is encoded.
    pub fn observe(&self) {
        for status in self.statuses() {
            self.metrics.jwks_state(&status.issuer, status.age_s, status.keys);
        }
    }
}

/// Refreshes one issuer in the background until its driver is dropped (the issuer left the
/// configuration): at once when nothing is loaded, then after `refresh_interval_s` (or a
/// shorter `Cache-Control: max-age`, not under 30 s), and 30 s after a failure.
async fn refresher(driver: Weak<Driver>, metrics: Arc<Metrics>) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        let Some(live) = driver.upgrade() else { return };
        let ring = live.ring();
        wait = match ring.claim_refresh(Instant::now()) {
            Claim::Lead => fetch(live, ring, metrics.clone(), "scheduled").await,
            // Another fetch (an unknown kid's) is under way: look again soon.
            _ => Duration::from_secs(1),
        };
    }
}

/// One fetch that holds the ring's flight: the keys installed, or the failure recorded (the
/// keys held stay), counted and logged; then everyone waiting is woken. Returns when to
/// refresh next.
async fn fetch(driver: Arc<Driver>, ring: Arc<KeyRing>, metrics: Arc<Metrics>, why: &'static str) -> Duration {
    let source = ring.source().clone();
    let result = fetch_keys(&driver.client, &ring).await;
    let next = match result {
        Ok((installed, cache_control, url)) => {
            for reason in &installed.skipped {
                tracing::warn!(issuer = %source.issuer, url = %url, "JWKS {reason}: skipped");
            }
            tracing::info!(issuer = %source.issuer, url = %url, keys = installed.keys, why, "JWT keys fetched");
            metrics.jwks_fetched(&source.issuer, true);
            source.next_refresh(cache_control.as_deref())
        }
        Err(cause) => {
            let held = if ring.is_loaded() {
                "the keys fetched before stay in use"
            } else {
                "no keys are loaded: this issuer's tokens are refused until a fetch succeeds"
            };
            tracing::warn!(issuer = %source.issuer, error = %cause, why, "fetching JWT keys failed; {held}");
            metrics.jwks_fetched(&source.issuer, false);
            source.retry_after_failure()
        }
    };
    // A reload during the fetch gave the driver a new ring: it takes what this one got.
    let current = driver.ring();
    if !Arc::ptr_eq(&current, &ring) {
        current.adopt(&ring);
    }
    driver.done.send_modify(|n| *n += 1);
    next
}

/// Fetches (with discovery, the discovery document first) and installs the JWKS. Every
/// failure is recorded on the ring with its cause before it is returned.
async fn fetch_keys(
    client: &UpstreamClient,
    ring: &KeyRing,
) -> std::result::Result<(portcullis_host::identity::Installed, Option<String>, String), String> {
    let source = ring.source();
    let fetched = async {
        let jwks_url = match &source.location {
            JwksLocation::Url(url) => url.clone(),
            JwksLocation::Discovery(url) => {
                let (document, _) = get(client, url).await?;
                discovered_jwks_uri(&document, &source.issuer).map_err(|m| format!("{url}: {m}"))?
            }
            other => return Err(format!("unsupported key location {other:?}")),
        };
        let (body, cache_control) = get(client, &jwks_url).await?;
        Ok((body, cache_control, jwks_url))
    }
    .await;
    match fetched {
        Ok((body, cache_control, url)) => match ring.install(&body, &url, SystemTime::now()) {
            Ok(installed) => Ok((installed, cache_control, url)),
            // `install` recorded the failure.
            Err(message) => Err(format!("{url}: {message}")),
        },
        Err(cause) => {
            ring.fail(cause.clone());
            Err(cause)
        }
    }
}

/// GETs one document: its body and `Cache-Control`, or why not (naming the URL).
async fn get(client: &UpstreamClient, url: &str) -> std::result::Result<(bytes::Bytes, Option<String>), String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url}: not a URL: {e}"))?;
    let (status, headers, body) =
        client.get_bytes(&uri, FETCH_TIMEOUT, MAX_DOCUMENT_BYTES).await.map_err(|e| format!("{url}: {e}"))?;
    if status != StatusCode::OK {
        return Err(format!("{url}: answered {status}"));
    }
    let cache_control = headers.get(http::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Ok((body, cache_control))
}
