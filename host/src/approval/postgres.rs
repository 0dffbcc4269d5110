//! [`PostgresStore`]: approvals in a PostgreSQL database shared by several replicas.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

use super::{
    Approval, ApprovalError, ApprovalState, ApprovalStore, Decider, NewApproval, RETAIN_AFTER_EXPIRY_MS, RedeemError,
    Redemption, SWEEP_BATCH, Verb, check_redemption, purge_due,
};
use crate::state::{Backoff, Health, HealthCell, OnError, StateError, Worker, redact_url};

/// The schema version this build writes and understands, kept in the row `approvals` of
/// `portcullis_schema_version`. A database with a newer version is refused.
pub const POSTGRES_SCHEMA_VERSION: i64 = 2;

/// Serialises schema creation and migration across replicas starting at once.
const MIGRATION_LOCK: i64 = 0x706f_7274_6375_6c6c; // "portcull"

const SCHEMA_V1: &str = "
CREATE TABLE portcullis_approvals (
    id              TEXT PRIMARY KEY,
    digest          TEXT NOT NULL,
    principal_kind  TEXT NOT NULL,
    principal_id    TEXT NOT NULL,
    on_behalf_of    TEXT,
    policy          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    approver_group  TEXT NOT NULL,
    request_line    TEXT NOT NULL,
    created_ms      BIGINT NOT NULL,
    expires_ms      BIGINT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'used', 'expired')),
    decided_by      TEXT,
    decided_ms      BIGINT,
    note            TEXT,
    used_ms         BIGINT,
    seq             BIGSERIAL NOT NULL
);
CREATE INDEX portcullis_approvals_by_digest ON portcullis_approvals (digest);
CREATE INDEX portcullis_approvals_by_created ON portcullis_approvals (created_ms, seq);
CREATE INDEX portcullis_approvals_by_expiry ON portcullis_approvals (expires_ms);
";

/// Version 2 (issue 20), as for SQLite: who decided, what the inbox shows, and whether the
/// expiry was recorded (approvals already expired at the migration count as recorded).
const SCHEMA_V2: &str = "
ALTER TABLE portcullis_approvals ADD COLUMN decided_by_kind TEXT;
ALTER TABLE portcullis_approvals ADD COLUMN decided_by_credential TEXT;
ALTER TABLE portcullis_approvals ADD COLUMN decided_via TEXT;
ALTER TABLE portcullis_approvals ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
ALTER TABLE portcullis_approvals ADD COLUMN method TEXT NOT NULL DEFAULT '';
ALTER TABLE portcullis_approvals ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE portcullis_approvals ADD COLUMN path TEXT NOT NULL DEFAULT '';
ALTER TABLE portcullis_approvals ADD COLUMN operation TEXT;
ALTER TABLE portcullis_approvals ADD COLUMN body TEXT;
ALTER TABLE portcullis_approvals ADD COLUMN body_truncated BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE portcullis_approvals ADD COLUMN content_type TEXT;
ALTER TABLE portcullis_approvals ADD COLUMN expiry_recorded_ms BIGINT;
UPDATE portcullis_approvals SET expiry_recorded_ms = expires_ms
 WHERE expires_ms <= (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT;
CREATE INDEX portcullis_approvals_unswept ON portcullis_approvals (expires_ms)
 WHERE expiry_recorded_ms IS NULL AND state IN ('pending', 'approved');
";

/// The most rows one purge statement deletes (as for SQLite).
const PURGE_BATCH: i64 = 1000;

const COLUMNS: &str = "id, digest, principal_kind, principal_id, on_behalf_of, policy, reason, approver_group, \
                       request_line, created_ms, expires_ms, state, decided_by, decided_ms, note, used_ms, \
                       decided_by_kind, decided_by_credential, decided_via, request_id, method, host, path, \
                       operation, body, body_truncated, content_type, expiry_recorded_ms";

/// How to reach PostgreSQL: what `[approvals]` says.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user[:password]@host:port/database` (or a `key=value` string).
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// The budget of one operation, waiting for a connection included.
    pub timeout: Duration,
    /// What a request that needs an approval meets when the database is away.
    pub on_error: OnError,
}

/// Approvals in PostgreSQL, so every replica (and `portcullis approvals`) sees the same
/// ones: an approval created through one replica can be approved through a second and
/// redeemed through a third.
///
/// The schema is versioned (`portcullis_schema_version`) and created or migrated at open,
/// in a transaction holding an advisory lock, so replicas starting together do not race.
/// Every check-then-update locks the rows it reads (`SELECT … FOR UPDATE`) in one
/// transaction: two redeems of one approval, from any replicas, are serialised and the
/// second finds it used; a retry's approvals are used together or not at all. Creates of
/// one request take a transaction-scoped advisory lock on its digest, so a retry flood
/// across replicas still makes one pending approval. Expired rows are purged from `create`
/// at most once a minute per replica, as with SQLite.
///
/// Operations run on the store's own thread (a current-thread runtime with a
/// `deadpool-postgres` pool), and a caller waits at most the configured timeout: an
/// operation that has not answered by then is reported as a store failure (the work may
/// still finish on the server: a redeem that commits after its caller gave up uses the
/// approval without forwarding, which fails closed).
#[derive(Debug)]
pub struct PostgresStore {
    worker: Worker,
    pool: Pool,
    timeout: Duration,
    shown: PathBuf,
    health: Arc<HealthCell>,
    backoff: Backoff,
    on_error: OnError,
    last_purge_ms: Arc<AtomicU64>,
}

/// Turns a client or pool error into a [`StateError`].
fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

impl PostgresStore {
    /// Connects, creates or migrates the schema, and refuses a database whose schema is
    /// newer than [`POSTGRES_SCHEMA_VERSION`]. Waits up to ten seconds for the database.
    pub fn open(settings: &PostgresSettings) -> Result<PostgresStore, ApprovalError> {
        let shown = PathBuf::from(redact_url(&settings.url));
        let open_error = |e: String| ApprovalError::Open { path: shown.clone(), source: e.into() };
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(|e| open_error(format!("{e}")))?;
        config.connect_timeout(settings.timeout.max(Duration::from_secs(1)));
        if config.get_application_name().is_none() {
            config.application_name("portcullis");
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let worker = Worker::start("portcullis-postgres").map_err(|e| open_error(e.to_string()))?;
        let timeout = settings.timeout;
        let pool_size = settings.pool_size.max(1);
        let pool = worker
            .call(Duration::from_secs(10), Duration::from_secs(10), async move {
                let pool = Pool::builder(manager)
                    .max_size(pool_size)
                    .runtime(Runtime::Tokio1)
                    .wait_timeout(Some(timeout))
                    .create_timeout(Some(timeout.max(Duration::from_secs(1))))
                    .recycle_timeout(Some(timeout))
                    .build()
                    .map_err(backend)?;
                let mut client = pool.get().await.map_err(backend)?;
                let migrated = migrate(&mut client).await.map_err(backend)?;
                drop(client);
                Ok((pool, migrated))
            })
            .map_err(|e| open_error(e.to_string()))?;
        let (pool, found) = pool;
        if found > POSTGRES_SCHEMA_VERSION {
            return Err(ApprovalError::NewerSchema { path: shown, found, supported: POSTGRES_SCHEMA_VERSION });
        }
        Ok(PostgresStore {
            worker,
            pool,
            timeout,
            shown,
            health: Arc::new(HealthCell::new("approvals", "postgres", settings.on_error)),
            backoff: Backoff::new(25, 1000),
            on_error: settings.on_error,
            last_purge_ms: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Runs `work` with a pooled connection on the store's thread, within the budget.
    fn run<T, F>(&self, work: impl FnOnce(deadpool_postgres::Object) -> F + Send + 'static) -> Result<T, StateError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, tokio_postgres::Error>> + Send + 'static,
    {
        let now = crate::now_ms();
        if let Err(e) = self.backoff.check(now) {
            self.health.failed(&e.to_string());
            return Err(e);
        }
        let pool = self.pool.clone();
        let result = self.worker.call(self.timeout, self.timeout * 4, async move {
            let client = pool.get().await.map_err(backend)?;
            work(client).await.map_err(backend)
        });
        match &result {
            Ok(_) => {
                self.backoff.success();
                self.health.ok();
            }
            Err(e) => {
                self.backoff.failure(crate::now_ms(), &e.to_string());
                self.health.failed(&e.to_string());
            }
        }
        result
    }

    /// A store failure naming the database (without credentials) and the approval.
    fn storage(&self, id: Option<&str>) -> impl Fn(StateError) -> ApprovalError + '_ {
        let id = id.map(str::to_owned);
        move |e| ApprovalError::Storage { path: self.shown.clone(), id: id.clone(), source: Box::new(e) }
    }

    fn decide(
        &self,
        id: &str,
        verb: Verb,
        by: &Decider,
        note: Option<&str>,
        now_ms: u64,
    ) -> Result<Approval, ApprovalError> {
        let (id_owned, by, note) = (id.to_owned(), by.clone(), note.map(str::to_owned));
        let result = self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let Some(mut approval) = select(&tx, &id_owned, true).await? else {
                return Ok(Err(ApprovalError::Unknown { id: id_owned }));
            };
            if let Err(e) = approval.check_decidable(&by, verb, now_ms) {
                return Ok(Err(e));
            }
            approval.decide(verb, &by, note.as_deref(), now_ms);
            tx.execute(
                "UPDATE portcullis_approvals SET state = $1, decided_by = $2, decided_ms = $3, note = $4, \
                 decided_by_kind = $5, decided_by_credential = $6, decided_via = $7 WHERE id = $8",
                &[
                    &approval.state.as_str(),
                    &approval.decided_by,
                    &approval.decided_ms.map(ms_to_sql),
                    &approval.note,
                    &approval.decided_by_kind,
                    &approval.decided_by_credential,
                    &approval.decided_via,
                    &id_owned,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Ok(approval.as_of(now_ms)))
        });
        result.map_err(self.storage(Some(id)))?
    }
}

/// Creates the schema in an empty database and migrates an older one, under an advisory
/// lock; returns the version found (newer than this build's: the caller refuses it).
async fn migrate(client: &mut deadpool_postgres::Object) -> Result<i64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS portcullis_schema_version (component TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    )
    .await?;
    let found: i64 = tx
        .query_opt("SELECT version FROM portcullis_schema_version WHERE component = 'approvals'", &[])
        .await?
        .map_or(0, |row| row.get(0));
    if found > POSTGRES_SCHEMA_VERSION {
        return Ok(found);
    }
    if found < 1 {
        tx.batch_execute(SCHEMA_V1).await?;
    }
    if found < 2 {
        tx.batch_execute(SCHEMA_V2).await?;
    }
    // Later versions: `if found < 3 { … }`, each step in this same transaction.
    tx.execute(
        "INSERT INTO portcullis_schema_version (component, version) VALUES ('approvals', $1) \
         ON CONFLICT (component) DO UPDATE SET version = EXCLUDED.version",
        &[&POSTGRES_SCHEMA_VERSION],
    )
    .await?;
    tx.commit().await?;
    Ok(found.max(POSTGRES_SCHEMA_VERSION))
}

async fn select(
    client: &impl GenericClient,
    id: &str,
    for_update: bool,
) -> Result<Option<Approval>, tokio_postgres::Error> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let row =
        client.query_opt(&format!("SELECT {COLUMNS} FROM portcullis_approvals WHERE id = $1{lock}"), &[&id]).await?;
    row.as_ref().map(from_row).transpose()
}

fn from_row(row: &Row) -> Result<Approval, tokio_postgres::Error> {
    let state: String = row.try_get(11)?;
    Ok(Approval {
        id: row.try_get(0)?,
        digest: row.try_get(1)?,
        principal_kind: row.try_get(2)?,
        principal_id: row.try_get(3)?,
        on_behalf_of: row.try_get(4)?,
        policy: row.try_get(5)?,
        reason: row.try_get(6)?,
        group: row.try_get(7)?,
        request_line: row.try_get(8)?,
        created_ms: row.try_get::<_, i64>(9)?.max(0) as u64,
        expires_ms: row.try_get::<_, i64>(10)?.max(0) as u64,
        // The CHECK constraint keeps the column to these words.
        state: state.parse().unwrap_or(ApprovalState::Rejected),
        decided_by: row.try_get(12)?,
        decided_ms: row.try_get::<_, Option<i64>>(13)?.map(|ms| ms.max(0) as u64),
        note: row.try_get(14)?,
        used_ms: row.try_get::<_, Option<i64>>(15)?.map(|ms| ms.max(0) as u64),
        decided_by_kind: row.try_get(16)?,
        decided_by_credential: row.try_get(17)?,
        decided_via: row.try_get(18)?,
        request_id: row.try_get(19)?,
        method: row.try_get(20)?,
        host: row.try_get(21)?,
        path: row.try_get(22)?,
        operation: row.try_get(23)?,
        body: row.try_get(24)?,
        body_truncated: row.try_get(25)?,
        content_type: row.try_get(26)?,
        expiry_recorded_ms: row.try_get::<_, Option<i64>>(27)?.map(|ms| ms.max(0) as u64),
    })
}

fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// Deletes up to [`PURGE_BATCH`] purgeable rows; returns how many.
async fn purge_batch(client: &impl GenericClient, now_ms: u64) -> Result<u64, tokio_postgres::Error> {
    let before = ms_to_sql(now_ms.saturating_sub(RETAIN_AFTER_EXPIRY_MS));
    client
        .execute(
            "DELETE FROM portcullis_approvals WHERE id IN \
             (SELECT id FROM portcullis_approvals WHERE expires_ms <= $1 ORDER BY expires_ms LIMIT $2)",
            &[&before, &PURGE_BATCH],
        )
        .await
}

impl ApprovalStore for PostgresStore {
    fn create(&self, new: NewApproval) -> Result<Approval, ApprovalError> {
        let now_ms = new.now_ms;
        let purge = purge_due(self.last_purge_ms.load(Ordering::Relaxed), now_ms);
        if purge {
            self.last_purge_ms.store(now_ms, Ordering::Relaxed);
        }
        // The id is made here: a random source failing is not the database's fault.
        let pending = new.clone().into_pending()?;
        let result = self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            if purge {
                purge_batch(&tx, now_ms).await?;
            }
            // One create at a time per request, across replicas.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&new.digest]).await?;
            let rows = tx
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM portcullis_approvals WHERE digest = $1 AND state = 'pending' \
                         ORDER BY created_ms DESC, seq DESC"
                    ),
                    &[&new.digest],
                )
                .await?;
            for row in &rows {
                let approval = from_row(row)?;
                if approval.state_at(now_ms) == ApprovalState::Pending && approval.same_ask(&new) {
                    return Ok(approval.as_of(now_ms));
                }
            }
            let a = pending;
            tx.execute(
                &format!(
                    "INSERT INTO portcullis_approvals ({COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                     $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
                ),
                &[
                    &a.id,
                    &a.digest,
                    &a.principal_kind,
                    &a.principal_id,
                    &a.on_behalf_of,
                    &a.policy,
                    &a.reason,
                    &a.group,
                    &a.request_line,
                    &ms_to_sql(a.created_ms),
                    &ms_to_sql(a.expires_ms),
                    &a.state.as_str(),
                    &a.decided_by,
                    &a.decided_ms.map(ms_to_sql),
                    &a.note,
                    &a.used_ms.map(ms_to_sql),
                    &a.decided_by_kind,
                    &a.decided_by_credential,
                    &a.decided_via,
                    &a.request_id,
                    &a.method,
                    &a.host,
                    &a.path,
                    &a.operation,
                    &a.body,
                    &a.body_truncated,
                    &a.content_type,
                    &a.expiry_recorded_ms.map(ms_to_sql),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(a.as_of(now_ms))
        });
        result.map_err(self.storage(None))
    }

    fn get(&self, id: &str, now_ms: u64) -> Result<Option<Approval>, ApprovalError> {
        let owned = id.to_owned();
        let result = self.run(move |client| async move { select(&client, &owned, false).await });
        Ok(result.map_err(self.storage(Some(id)))?.map(|a| a.as_of(now_ms)))
    }

    fn list(&self, state: Option<ApprovalState>, now_ms: u64) -> Result<Vec<Approval>, ApprovalError> {
        let state = state.map(|s| s.as_str().to_owned());
        let result = self.run(move |client| async move {
            // The CASE is `Approval::state_at` in SQL, so the filter sees the state as of now.
            let rows = client
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM portcullis_approvals
                         WHERE $1::TEXT IS NULL
                            OR (CASE WHEN state IN ('pending', 'approved') AND expires_ms <= $2 THEN 'expired' ELSE state END) = $1
                         ORDER BY created_ms DESC, seq DESC"
                    ),
                    &[&state, &ms_to_sql(now_ms)],
                )
                .await?;
            rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()
        });
        Ok(result.map_err(self.storage(None))?.into_iter().map(|a| a.as_of(now_ms)).collect())
    }

    fn approve_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.decide(id, Verb::Approve, by, note, now_ms)
    }

    fn reject_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.decide(id, Verb::Reject, by, note, now_ms)
    }

    fn sweep_expired(&self, now_ms: u64) -> Result<Vec<Approval>, ApprovalError> {
        let batch = i64::try_from(SWEEP_BATCH).unwrap_or(i64::MAX);
        let result = self.run(move |client| async move {
            // One statement; rows another replica is marking are skipped, so each expiry is
            // returned to one sweeper only.
            let rows = client
                .query(
                    &format!(
                        "UPDATE portcullis_approvals SET expiry_recorded_ms = $1 WHERE id IN \
                         (SELECT id FROM portcullis_approvals WHERE expiry_recorded_ms IS NULL \
                          AND state IN ('pending', 'approved') AND expires_ms <= $1 ORDER BY expires_ms LIMIT $2 \
                          FOR UPDATE SKIP LOCKED) RETURNING {COLUMNS}"
                    ),
                    &[&ms_to_sql(now_ms), &batch],
                )
                .await?;
            rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()
        });
        result.map_err(self.storage(None))
    }

    fn pending_by_group(&self, now_ms: u64) -> Result<Vec<(String, u64)>, ApprovalError> {
        let result = self.run(move |client| async move {
            let rows = client
                .query(
                    "SELECT approver_group, COUNT(*) FROM portcullis_approvals WHERE state = 'pending' \
                     AND expires_ms > $1 GROUP BY approver_group ORDER BY approver_group",
                    &[&ms_to_sql(now_ms)],
                )
                .await?;
            Ok(rows.iter().map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1).max(0) as u64)).collect())
        });
        result.map_err(self.storage(None))
    }

    fn redeem_all(&self, redemption: &Redemption<'_>, now_ms: u64) -> Result<Vec<Approval>, RedeemError> {
        if redemption.ids.len() > super::MAX_IDS {
            return Err(RedeemError::TooMany { count: redemption.ids.len() });
        }
        let ids: Vec<String> = redemption.ids.to_vec();
        let digest = redemption.digest.to_owned();
        let principal = redemption.principal.clone();
        let groups: Option<Vec<String>> = redemption.groups.map(<[String]>::to_vec);
        let first = ids.first().cloned();
        let result = self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            // Locked in id order, so two bundles sharing ids cannot deadlock.
            let rows = tx
                .query(
                    &format!("SELECT {COLUMNS} FROM portcullis_approvals WHERE id = ANY($1) ORDER BY id FOR UPDATE"),
                    &[&ids],
                )
                .await?;
            let mut by_id: HashMap<String, Approval> = HashMap::with_capacity(rows.len());
            for row in &rows {
                let approval = from_row(row)?;
                by_id.insert(approval.id.clone(), approval);
            }
            let found: Vec<Option<Approval>> = ids.iter().map(|id| by_id.get(id).cloned()).collect();
            let redemption =
                Redemption { ids: &ids, digest: &digest, principal: &principal, groups: groups.as_deref() };
            if let Err(e) = check_redemption(&redemption, &found, now_ms) {
                return Ok(Err(e));
            }
            let used: Vec<String> = tx
                .query(
                    "UPDATE portcullis_approvals SET state = 'used', used_ms = $1 \
                     WHERE id = ANY($2) AND state = 'approved' AND used_ms IS NULL RETURNING id",
                    &[&ms_to_sql(now_ms), &ids],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if used.len() != ids.len() {
                // Cannot happen under the row locks; dropping the transaction rolls back.
                let id = ids.iter().find(|id| !used.contains(id)).cloned().unwrap_or_default();
                return Ok(Err(RedeemError::AlreadyUsed { id }));
            }
            tx.commit().await?;
            let mut approvals: Vec<Approval> = found.into_iter().flatten().collect();
            for approval in &mut approvals {
                approval.mark_used(now_ms);
            }
            Ok(Ok(approvals))
        });
        result.map_err(|e| RedeemError::Store(self.storage(first.as_deref())(e)))?
    }

    fn purge(&self, now_ms: u64) -> Result<usize, ApprovalError> {
        self.last_purge_ms.store(now_ms, Ordering::Relaxed);
        let result = self.run(move |mut client| async move {
            let tx = client.transaction().await?;
            let mut total = 0;
            loop {
                let deleted = purge_batch(&tx, now_ms).await?;
                total += deleted;
                if deleted < PURGE_BATCH as u64 {
                    break;
                }
            }
            tx.commit().await?;
            Ok(total as usize)
        });
        result.map_err(self.storage(None))
    }

    fn on_error(&self) -> OnError {
        self.on_error
    }

    fn health(&self) -> Option<Health> {
        Some(self.health.health())
    }
}
