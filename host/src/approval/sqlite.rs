//! [`SqliteStore`]: approvals in an SQLite file, shared by a running server and the CLI.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{
    Approval, ApprovalError, ApprovalState, ApprovalStore, Decider, NewApproval, RETAIN_AFTER_EXPIRY_MS, RedeemError,
    Redemption, SWEEP_BATCH, Verb, check_redemption, purge_due,
};

/// The schema version this build writes and understands, kept in `PRAGMA user_version`. A
/// file with a newer version is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 2;

/// How long an operation waits for another process (the CLI, a second server) holding the
/// write lock before giving up. Writes are a handful of rows, so this is generous.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
CREATE TABLE approvals (
    id              TEXT PRIMARY KEY NOT NULL,
    digest          TEXT NOT NULL,
    principal_kind  TEXT NOT NULL,
    principal_id    TEXT NOT NULL,
    on_behalf_of    TEXT,
    policy          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    approver_group  TEXT NOT NULL,
    request_line    TEXT NOT NULL,
    created_ms      INTEGER NOT NULL,
    expires_ms      INTEGER NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'used', 'expired')),
    decided_by      TEXT,
    decided_ms      INTEGER,
    note            TEXT,
    used_ms         INTEGER
);
CREATE INDEX approvals_by_digest ON approvals (digest);
CREATE INDEX approvals_by_created ON approvals (created_ms);
";

/// Version 2 (issue 20): who decided (kind, credential, how known), what the inbox shows of
/// the held request (its id, method, host, path, operation, redacted body), and whether its
/// expiry was written to the audit log. Approvals that had already expired when the file is
/// migrated count as recorded, so the first sweep does not report old history.
const SCHEMA_V2: &str = "
ALTER TABLE approvals ADD COLUMN decided_by_kind TEXT;
ALTER TABLE approvals ADD COLUMN decided_by_credential TEXT;
ALTER TABLE approvals ADD COLUMN decided_via TEXT;
ALTER TABLE approvals ADD COLUMN request_id TEXT NOT NULL DEFAULT '';
ALTER TABLE approvals ADD COLUMN method TEXT NOT NULL DEFAULT '';
ALTER TABLE approvals ADD COLUMN host TEXT NOT NULL DEFAULT '';
ALTER TABLE approvals ADD COLUMN path TEXT NOT NULL DEFAULT '';
ALTER TABLE approvals ADD COLUMN operation TEXT;
ALTER TABLE approvals ADD COLUMN body TEXT;
ALTER TABLE approvals ADD COLUMN body_truncated INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN content_type TEXT;
ALTER TABLE approvals ADD COLUMN expiry_recorded_ms INTEGER;
UPDATE approvals SET expiry_recorded_ms = expires_ms
 WHERE expires_ms <= CAST(strftime('%s', 'now') AS INTEGER) * 1000;
CREATE INDEX approvals_unswept ON approvals (expires_ms)
 WHERE expiry_recorded_ms IS NULL AND state IN ('pending', 'approved');
";

/// Added to every file when it is opened (also to files made before it existed): the purge
/// finds expired rows through it instead of scanning the table. An index needs no schema
/// version: older builds read and write the file as before.
const EXPIRY_INDEX: &str = "CREATE INDEX IF NOT EXISTS approvals_by_expiry ON approvals (expires_ms);";

/// The most rows one purge deletes, so a `create` that purges stays short however many
/// approvals expired at once; the rest go at the next purge.
const PURGE_BATCH: i64 = 1000;

const COLUMNS: &str = "id, digest, principal_kind, principal_id, on_behalf_of, policy, reason, approver_group, \
                       request_line, created_ms, expires_ms, state, decided_by, decided_ms, note, used_ms, \
                       decided_by_kind, decided_by_credential, decided_via, request_id, method, host, path, \
                       operation, body, body_truncated, content_type, expiry_recorded_ms";

/// Approvals in an SQLite file, so pending approvals survive a restart and `portcullis
/// approvals` can decide them while a server runs on the same file.
///
/// The file uses WAL journaling (readers never wait for the writer) and a busy timeout
/// (writers from several processes take turns instead of failing). Every operation that
/// checks and then updates runs in one `BEGIN IMMEDIATE` transaction, which takes the
/// file's write lock before reading: two redeems of the same id, from threads or from
/// processes, are serialised, and the second sees the approval already used. Commits use
/// SQLite's default full sync, so a used approval stays used after a power cut.
///
/// Operations block (at most for the busy timeout); async callers may want to call them off
/// their reactor threads.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// When this handle last purged (ms since the Unix epoch; 0: never).
    last_purge_ms: AtomicU64,
}

impl SqliteStore {
    /// Opens the store at `path`, creating the file and its schema when missing. Refuses a
    /// file whose schema is newer than [`SCHEMA_VERSION`], or that is not an SQLite file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ApprovalError> {
        let path = path.as_ref().to_path_buf();
        let open_error = |e: rusqlite::Error| ApprovalError::Open { path: path.clone(), source: Box::new(e) };
        let mut conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // The first read of the file: a file that is not a database fails here.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0)).map_err(open_error)?;
        migrate(&mut conn, &path)?;
        Ok(SqliteStore { path, conn: Mutex::new(conn), last_purge_ms: AtomicU64::new(0) })
    }

    /// The file this store keeps its approvals in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A panic while it was held cannot leave a half-written approval (an
    /// unfinished transaction rolls back when dropped), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Turns an SQLite error into one naming the file and the approval.
    fn error(&self, id: Option<&str>) -> impl Fn(rusqlite::Error) -> ApprovalError + '_ {
        let id = id.map(str::to_owned);
        move |e| ApprovalError::Storage { path: self.path.clone(), id: id.clone(), source: Box::new(e) }
    }

    fn decide(
        &self,
        id: &str,
        verb: Verb,
        by: &Decider,
        note: Option<&str>,
        now_ms: u64,
    ) -> Result<Approval, ApprovalError> {
        let err = self.error(Some(id));
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let mut approval =
            select(&tx, id).map_err(&err)?.ok_or_else(|| ApprovalError::Unknown { id: id.to_owned() })?;
        approval.check_decidable(by, verb, now_ms)?;
        approval.decide(verb, by, note, now_ms);
        tx.execute(
            "UPDATE approvals SET state = ?1, decided_by = ?2, decided_ms = ?3, note = ?4, decided_by_kind = ?5, \
             decided_by_credential = ?6, decided_via = ?7 WHERE id = ?8",
            params![
                approval.state.as_str(),
                approval.decided_by,
                approval.decided_ms.map(ms_to_sql),
                approval.note,
                approval.decided_by_kind,
                approval.decided_by_credential,
                approval.decided_via,
                id
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(approval.as_of(now_ms))
    }
}

/// Creates the schema in a new file, and refuses a file from a newer portcullis. Runs in a
/// write transaction, so two processes opening a new file at once do not both create it.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), ApprovalError> {
    let err = |e: rusqlite::Error| ApprovalError::Open { path: path.to_path_buf(), source: Box::new(e) };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(ApprovalError::NewerSchema { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    if found < 1 {
        tx.execute_batch(SCHEMA_V1).map_err(err)?;
    }
    if found < 2 {
        tx.execute_batch(SCHEMA_V2).map_err(err)?;
    }
    if found < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(err)?;
    }
    tx.execute_batch(EXPIRY_INDEX).map_err(err)?;
    tx.commit().map_err(err)
}

/// Deletes up to [`PURGE_BATCH`] purgeable rows (see [`Approval::is_purgeable`]), through
/// the expiry index; returns how many.
fn purge_batch(tx: &Transaction<'_>, now_ms: u64) -> rusqlite::Result<usize> {
    let before = ms_to_sql(now_ms.saturating_sub(RETAIN_AFTER_EXPIRY_MS));
    tx.execute(
        "DELETE FROM approvals WHERE rowid IN \
         (SELECT rowid FROM approvals WHERE expires_ms <= ?1 ORDER BY expires_ms LIMIT ?2)",
        params![before, PURGE_BATCH],
    )
}

fn select(tx: &Transaction<'_>, id: &str) -> rusqlite::Result<Option<Approval>> {
    tx.query_row(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"), [id], from_row).optional()
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Approval> {
    let state: String = row.get(11)?;
    let state = state
        .parse::<ApprovalState>()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(11, Type::Text, e.into()))?;
    Ok(Approval {
        id: row.get(0)?,
        digest: row.get(1)?,
        principal_kind: row.get(2)?,
        principal_id: row.get(3)?,
        on_behalf_of: row.get(4)?,
        policy: row.get(5)?,
        reason: row.get(6)?,
        group: row.get(7)?,
        request_line: row.get(8)?,
        created_ms: ms_from_sql(row, 9)?,
        expires_ms: ms_from_sql(row, 10)?,
        state,
        decided_by: row.get(12)?,
        decided_ms: row.get::<_, Option<i64>>(13)?.map(|ms| ms.max(0) as u64),
        note: row.get(14)?,
        used_ms: row.get::<_, Option<i64>>(15)?.map(|ms| ms.max(0) as u64),
        decided_by_kind: row.get(16)?,
        decided_by_credential: row.get(17)?,
        decided_via: row.get(18)?,
        request_id: row.get(19)?,
        method: row.get(20)?,
        host: row.get(21)?,
        path: row.get(22)?,
        operation: row.get(23)?,
        body: row.get(24)?,
        body_truncated: row.get::<_, i64>(25)? != 0,
        content_type: row.get(26)?,
        expiry_recorded_ms: row.get::<_, Option<i64>>(27)?.map(|ms| ms.max(0) as u64),
    })
}

/// SQLite integers are signed; times before 1970 do not occur, times past year 292 million
/// are clamped.
fn ms_to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn ms_from_sql(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, i64>(index)?.max(0) as u64)
}

impl ApprovalStore for SqliteStore {
    fn create(&self, new: NewApproval) -> Result<Approval, ApprovalError> {
        let now_ms = new.now_ms;
        let err = self.error(None);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        if purge_due(self.last_purge_ms.load(Ordering::Relaxed), now_ms) {
            self.last_purge_ms.store(now_ms, Ordering::Relaxed);
            purge_batch(&tx, now_ms).map_err(&err)?;
        }
        // Candidates by digest; which of them count as the same ask is decided by the shared
        // rules, newest first.
        let existing = {
            let mut statement = tx
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM approvals WHERE digest = ?1 AND state = 'pending' \
                     ORDER BY created_ms DESC, rowid DESC"
                ))
                .map_err(&err)?;
            let rows = statement.query_map([&new.digest], from_row).map_err(&err)?;
            let mut found = None;
            for row in rows {
                let approval = row.map_err(&err)?;
                if approval.state_at(now_ms) == ApprovalState::Pending && approval.same_ask(&new) {
                    found = Some(approval);
                    break;
                }
            }
            found
        };
        if let Some(approval) = existing {
            return Ok(approval.as_of(now_ms));
        }
        let a = new.into_pending()?;
        let err = self.error(Some(&a.id));
        tx.execute(
            &format!(
                "INSERT INTO approvals ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                 ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)"
            ),
            params![
                a.id,
                a.digest,
                a.principal_kind,
                a.principal_id,
                a.on_behalf_of,
                a.policy,
                a.reason,
                a.group,
                a.request_line,
                ms_to_sql(a.created_ms),
                ms_to_sql(a.expires_ms),
                a.state.as_str(),
                a.decided_by,
                a.decided_ms.map(ms_to_sql),
                a.note,
                a.used_ms.map(ms_to_sql),
                a.decided_by_kind,
                a.decided_by_credential,
                a.decided_via,
                a.request_id,
                a.method,
                a.host,
                a.path,
                a.operation,
                a.body,
                i64::from(a.body_truncated),
                a.content_type,
                a.expiry_recorded_ms.map(ms_to_sql),
            ],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(a.as_of(now_ms))
    }

    fn get(&self, id: &str, now_ms: u64) -> Result<Option<Approval>, ApprovalError> {
        let conn = self.lock();
        let approval = conn
            .query_row(&format!("SELECT {COLUMNS} FROM approvals WHERE id = ?1"), [id], from_row)
            .optional()
            .map_err(self.error(Some(id)))?;
        Ok(approval.map(|a| a.as_of(now_ms)))
    }

    fn list(&self, state: Option<ApprovalState>, now_ms: u64) -> Result<Vec<Approval>, ApprovalError> {
        let err = self.error(None);
        let conn = self.lock();
        // The CASE is `Approval::state_at` in SQL, so the filter sees the state as of now.
        let mut statement = conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM approvals
                 WHERE ?1 IS NULL
                    OR (CASE WHEN state IN ('pending', 'approved') AND expires_ms <= ?2 THEN 'expired' ELSE state END) = ?1
                 ORDER BY created_ms DESC, rowid DESC"
            ))
            .map_err(&err)?;
        let rows = statement
            .query_map(params![state.map(ApprovalState::as_str), ms_to_sql(now_ms)], from_row)
            .map_err(&err)?;
        rows.map(|row| row.map(|a| a.as_of(now_ms)).map_err(&err)).collect()
    }

    fn approve_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.decide(id, Verb::Approve, by, note, now_ms)
    }

    fn reject_as(&self, id: &str, by: &Decider, note: Option<&str>, now_ms: u64) -> Result<Approval, ApprovalError> {
        self.decide(id, Verb::Reject, by, note, now_ms)
    }

    fn sweep_expired(&self, now_ms: u64) -> Result<Vec<Approval>, ApprovalError> {
        let err = self.error(None);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        let swept = {
            let mut statement = tx
                .prepare(&format!(
                    "UPDATE approvals SET expiry_recorded_ms = ?1 WHERE rowid IN \
                     (SELECT rowid FROM approvals WHERE expiry_recorded_ms IS NULL AND state IN ('pending', 'approved') \
                      AND expires_ms <= ?1 ORDER BY expires_ms LIMIT ?2) RETURNING {COLUMNS}"
                ))
                .map_err(&err)?;
            let rows = statement
                .query_map(params![ms_to_sql(now_ms), i64::try_from(SWEEP_BATCH).unwrap_or(i64::MAX)], from_row)
                .map_err(&err)?;
            rows.collect::<rusqlite::Result<Vec<Approval>>>().map_err(&err)?
        };
        tx.commit().map_err(&err)?;
        Ok(swept)
    }

    fn pending_by_group(&self, now_ms: u64) -> Result<Vec<(String, u64)>, ApprovalError> {
        let err = self.error(None);
        let conn = self.lock();
        let mut statement = conn
            .prepare(
                "SELECT approver_group, COUNT(*) FROM approvals WHERE state = 'pending' AND expires_ms > ?1 \
                 GROUP BY approver_group ORDER BY approver_group",
            )
            .map_err(&err)?;
        let rows = statement
            .query_map([ms_to_sql(now_ms)], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?.max(0) as u64)))
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&err)
    }

    fn redeem_all(&self, redemption: &Redemption<'_>, now_ms: u64) -> Result<Vec<Approval>, RedeemError> {
        let first = redemption.ids.first().map(String::as_str);
        let err = |e| RedeemError::Store(self.error(first)(e));
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let mut found = Vec::with_capacity(redemption.ids.len());
        for id in redemption.ids.iter().take(super::MAX_IDS + 1) {
            found.push(select(&tx, id).map_err(err)?);
        }
        if redemption.ids.len() > super::MAX_IDS {
            return Err(RedeemError::TooMany { count: redemption.ids.len() });
        }
        check_redemption(redemption, &found, now_ms)?;
        let mut used = Vec::with_capacity(found.len());
        for mut approval in found.into_iter().flatten() {
            // `state = 'approved'` again, as a guard: under the write lock it always holds.
            let changed = tx
                .execute(
                    "UPDATE approvals SET state = 'used', used_ms = ?1 WHERE id = ?2 AND state = 'approved'",
                    params![ms_to_sql(now_ms), approval.id],
                )
                .map_err(err)?;
            if changed != 1 {
                // Dropping the transaction rolls back the others.
                return Err(RedeemError::AlreadyUsed { id: approval.id });
            }
            approval.mark_used(now_ms);
            used.push(approval);
        }
        tx.commit().map_err(err)?;
        Ok(used)
    }

    fn purge(&self, now_ms: u64) -> Result<usize, ApprovalError> {
        let err = self.error(None);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&err)?;
        self.last_purge_ms.store(now_ms, Ordering::Relaxed);
        let mut total = 0;
        loop {
            let deleted = purge_batch(&tx, now_ms).map_err(&err)?;
            total += deleted;
            if deleted < PURGE_BATCH as usize {
                break;
            }
        }
        tx.commit().map_err(&err)?;
        Ok(total)
    }
}
