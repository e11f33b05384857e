//! The store: one SQLite file holding runs, snapshots, accounts, findings and their
//! history, and deliveries.
//!
//! Numbered migrations run on open; a store written by a newer version is refused. WAL
//! journaling, `BEGIN IMMEDIATE` for every write, and a snapshot is written in one
//! transaction, so a crash leaves the last good one intact. The file is created
//! readable by its owner only: it holds personal data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use thiserror::Error;
use tracing::{debug, instrument, warn};

use crate::activity::Member;
use crate::hub::{HubFetched, Invite, Listing};
use crate::reconcile::{Finding, Kind, Outcome, Resolved};
use crate::report::InputFile;
use crate::scim::{Account, Completeness, Fetched};

/// Schema migrations, applied in order; `PRAGMA user_version` holds how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id              INTEGER PRIMARY KEY,
    command         TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    finished_at     TEXT,
    as_of           TEXT,
    status          TEXT NOT NULL,
    stage           TEXT NOT NULL,
    reason          TEXT,
    snapshot_id     INTEGER,
    accepted_drops  TEXT NOT NULL DEFAULT '',
    outcome_json    TEXT,
    report_dir      TEXT,
    manifest_sha256 TEXT,
    exit_code       INTEGER
);
CREATE TABLE snapshots (
    id              INTEGER PRIMARY KEY,
    run_id          INTEGER NOT NULL REFERENCES runs(id),
    taken_at        TEXT NOT NULL,
    source_url      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('complete', 'incomplete')),
    reason          TEXT,
    total_results   INTEGER,
    pages           INTEGER NOT NULL,
    accounts        INTEGER NOT NULL,
    active_accounts INTEGER NOT NULL
);
CREATE TABLE accounts (
    snapshot_id  INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    user_name    TEXT,
    active       INTEGER NOT NULL,
    role         TEXT,
    team         TEXT,
    account_json TEXT NOT NULL,
    raw_json     TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, id)
);
CREATE TABLE inputs (
    run_id  INTEGER NOT NULL REFERENCES runs(id),
    role    TEXT NOT NULL,
    path    TEXT NOT NULL,
    format  TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    rows    INTEGER NOT NULL,
    PRIMARY KEY (run_id, role)
);
CREATE TABLE findings (
    run_id       INTEGER NOT NULL REFERENCES runs(id),
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    severity     TEXT NOT NULL,
    finding_json TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE finding_history (
    key          TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    first_run    INTEGER NOT NULL,
    first_as_of  TEXT,
    last_run     INTEGER NOT NULL,
    resolved_run INTEGER
);
CREATE TABLE deliveries (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES runs(id),
    at      TEXT NOT NULL,
    method  TEXT NOT NULL,
    status  TEXT NOT NULL,
    detail  TEXT
);
"#,
    // Retention: a pruned snapshot keeps its row (counts) but not its accounts; a pruned
    // run keeps its row (counts, manifest hash) but not its findings or report directory.
    r#"
ALTER TABLE snapshots ADD COLUMN pruned_at TEXT;
ALTER TABLE runs ADD COLUMN pruned_at TEXT;
"#,
    // The Hub members and invites read with a snapshot, each listing with its own
    // completeness.
    r#"
CREATE TABLE hub_listings (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    listing     TEXT NOT NULL CHECK (listing IN ('members', 'invites')),
    source_url  TEXT NOT NULL,
    org         TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('complete', 'incomplete')),
    reason      TEXT,
    count       INTEGER,
    pages       INTEGER NOT NULL,
    items       INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, listing)
);
CREATE TABLE hub_members (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    username    TEXT,
    email       TEXT,
    member_json TEXT NOT NULL,
    raw_json    TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, position)
);
CREATE TABLE hub_invites (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    invitee     TEXT,
    invite_json TEXT NOT NULL,
    raw_json    TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, position)
);
"#,
];

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("store `{path}`: {cause}")]
    Sqlite {
        path: String,
        #[source]
        cause: rusqlite::Error,
    },
    #[error("store `{path}`: {cause}")]
    Io {
        path: String,
        #[source]
        cause: std::io::Error,
    },
    #[error(
        "store `{path}` has schema version {found}, newer than this hubreview ({known}); \
         use a newer hubreview"
    )]
    TooNew {
        path: String,
        found: i64,
        known: usize,
    },
    #[error("store `{path}`: {what}")]
    Corrupt { path: String, what: String },
    #[error("no store at `{path}` yet; `hubreview run` or `hubreview snapshot` creates it")]
    Missing { path: String },
    #[error(
        "store `{path}` has schema version {found}, older than this hubreview ({known}); \
         the next `hubreview run` (or any command that writes the store) migrates it"
    )]
    NeedsMigration {
        path: String,
        found: i64,
        known: usize,
    },
}

/// A stored run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    pub command: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub as_of: Option<NaiveDate>,
    /// `running`, `complete`, `incomplete` or `failed`.
    pub status: String,
    /// The last step done: `started`, `snapshot`, `reconcile`, `report` or `send`.
    pub stage: String,
    pub reason: Option<String>,
    pub snapshot_id: Option<i64>,
    pub accepted_drops: Vec<String>,
    pub report_dir: Option<PathBuf>,
    pub exit_code: Option<i32>,
    /// Whether retention removed its snapshot's accounts, findings and report directory.
    pub pruned: bool,
}

/// Open findings per kind in one reconciled run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrendPoint {
    pub run_id: i64,
    pub as_of: Option<NaiveDate>,
    pub counts: Vec<(Kind, Option<usize>)>,
    /// Kinds this run checked only in part: their count is what was found.
    pub partial: Vec<Kind>,
    /// Findings open in an earlier run that this run found resolved.
    pub resolved: usize,
}

impl TrendPoint {
    /// The run's open findings of `kind`; `None` when it was not evaluated.
    pub fn count(&self, kind: Kind) -> Option<usize> {
        self.counts
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, n)| *n)
    }

    /// The count for a table cell: `none` when not evaluated, marked `*` when the run
    /// checked the kind only in part.
    pub fn cell(&self, kind: Kind, none: &str) -> String {
        match self.count(kind) {
            Some(n) if self.partial.contains(&kind) => format!("{n}*"),
            Some(n) => n.to_string(),
            None => none.to_owned(),
        }
    }
}

/// Open findings per kind; `None` for a kind that was not evaluated.
type KindCounts = Vec<(Kind, Option<usize>)>;

/// A stored snapshot, without its accounts.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub id: i64,
    pub run_id: i64,
    pub taken_at: DateTime<Utc>,
    pub source_url: String,
    pub completeness: Completeness,
    pub total_results: Option<u64>,
    pub pages: u32,
    pub accounts: u64,
    pub active_accounts: u64,
    /// Whether retention removed its accounts; only the counts remain.
    pub pruned: bool,
}

/// How long old runs are kept; see [`Store::prune`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep the data of this many newest runs.
    pub keep_runs: Option<u64>,
    /// Keep the data of runs started less than this many days ago.
    pub keep_days: Option<u64>,
}

/// A run whose data retention removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    pub run_id: i64,
    pub snapshot_id: Option<i64>,
    /// Its report directory, for the caller to remove.
    pub report_dir: Option<PathBuf>,
}

/// What [`Store::inspect`] found, without changing anything.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub schema_version: i64,
    pub known_version: usize,
    pub writable: bool,
    pub runs: u64,
    /// `ok`, or the first problem `PRAGMA quick_check` reports.
    pub quick_check: String,
}

pub struct Store {
    conn: Connection,
    path: String,
}

type Result<T> = std::result::Result<T, StoreError>;

impl Store {
    /// Opens (creating, owner-only) the store at `path` and brings its schema up to date.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub fn open(path: &Path) -> Result<Store> {
        let shown = path.display().to_string();
        let io = |cause| StoreError::Io {
            path: shown.clone(),
            cause,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        create_private(path).map_err(io)?;
        let conn = Connection::open(path).map_err(|cause| StoreError::Sqlite {
            path: shown.clone(),
            cause,
        })?;
        Store::init(conn, shown)
    }

    /// Connects to a store that must already exist, creating and migrating nothing.
    fn connect_existing(path: &Path) -> Result<Store> {
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::Missing { path: shown });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|cause| StoreError::Sqlite {
            path: shown.clone(),
            cause,
        })?;
        let store = Store { conn, path: shown };
        store
            .conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Opens an existing store for reading only: nothing is created, migrated or written,
    /// so commands that only read need not take the run lock.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub fn open_existing(path: &Path) -> Result<Store> {
        let store = Store::connect_existing(path)?;
        store
            .conn
            .pragma_update(None, "query_only", true)
            .map_err(|e| store.err(e))?;
        let found = store.schema_version()?;
        if found > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: store.path.clone(),
                found,
                known: MIGRATIONS.len(),
            });
        }
        if found < MIGRATIONS.len() as i64 {
            return Err(StoreError::NeedsMigration {
                path: store.path.clone(),
                found,
                known: MIGRATIONS.len(),
            });
        }
        Ok(store)
    }

    /// Looks at an existing store without changing it: its schema version, whether this
    /// process may write it (a write transaction is begun and rolled back), how many runs
    /// it holds, and `PRAGMA quick_check`.
    #[instrument(skip_all, fields(path = %path.display()))]
    pub fn inspect(path: &Path) -> Result<Inspection> {
        let store = Store::connect_existing(path)?;
        let schema_version = store.schema_version()?;
        let read_only = store.conn.is_readonly("main").map_err(|e| store.err(e))?;
        let writable = !read_only
            && store
                .conn
                .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
                .is_ok();
        let runs = if schema_version >= 1 {
            store
                .conn
                .query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
                .map_err(|e| store.err(e))? as u64
        } else {
            0
        };
        let quick_check = store
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0))
            .map_err(|e| store.err(e))?;
        Ok(Inspection {
            schema_version,
            known_version: MIGRATIONS.len(),
            writable,
            runs,
            quick_check,
        })
    }

    /// `PRAGMA integrity_check`: `ok`, or the problems found.
    pub fn integrity_check(&self) -> Result<String> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(|e| self.err(e))?;
        let lines = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(lines.join("; "))
    }

    fn schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// An in-memory store, for tests.
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|cause| StoreError::Sqlite {
            path: ":memory:".into(),
            cause,
        })?;
        Store::init(conn, ":memory:".into())
    }

    fn init(conn: Connection, path: String) -> Result<Store> {
        let mut store = Store { conn, path };
        store
            .conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| store.err(e))?;
        store
            .conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| store.err(e))?;
        store
            .conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| store.err(e))?;
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, cause: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    fn corrupt(&self, what: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    cause: e,
                })?;
            tx.execute_batch(sql)
                .and_then(|_| tx.pragma_update(None, "user_version", (i + 1) as i64))
                .and_then(|_| tx.commit())
                .map_err(|e| StoreError::Sqlite {
                    path: self.path.clone(),
                    cause: e,
                })?;
            debug!(migration = i + 1, "store migrated");
        }
        Ok(())
    }

    /// Marks runs left `running` by a crashed process as failed.
    pub fn fail_interrupted_runs(&self) -> Result<usize> {
        self.conn
            .execute(
                "UPDATE runs SET status = 'failed', reason = 'interrupted: the process ended \
                 before the run finished', finished_at = ?1 WHERE status = 'running'",
                params![now_text()],
            )
            .map_err(|e| self.err(e))
    }

    /// Starts a run and returns its id.
    pub fn begin_run(&self, command: &str, as_of: Option<NaiveDate>) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (command, started_at, as_of, status, stage) \
                 VALUES (?1, ?2, ?3, 'running', 'started')",
                params![command, now_text(), as_of.map(|d| d.to_string())],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn set_stage(&self, run_id: i64, stage: &str) -> Result<()> {
        self.exec(
            "UPDATE runs SET stage = ?2 WHERE id = ?1",
            params![run_id, stage],
        )
    }

    pub fn set_as_of(&self, run_id: i64, as_of: NaiveDate) -> Result<()> {
        self.exec(
            "UPDATE runs SET as_of = ?2 WHERE id = ?1",
            params![run_id, as_of.to_string()],
        )
    }

    /// Records that `source`'s size-drop guard tripped in this run and was overridden.
    pub fn add_accepted_drop(&self, run_id: i64, source: &str) -> Result<()> {
        let current: String = self
            .conn
            .query_row(
                "SELECT accepted_drops FROM runs WHERE id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let mut drops: Vec<&str> = current.split(',').filter(|d| !d.is_empty()).collect();
        drops.push(source);
        drops.sort_unstable();
        drops.dedup();
        self.exec(
            "UPDATE runs SET accepted_drops = ?2 WHERE id = ?1",
            params![run_id, drops.join(",")],
        )
    }

    /// Ends a run: `complete`, `incomplete` or `failed`, with the exit code it gave.
    pub fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        reason: Option<&str>,
        exit_code: i32,
    ) -> Result<()> {
        self.exec(
            "UPDATE runs SET status = ?2, reason = ?3, exit_code = ?4, finished_at = ?5 \
             WHERE id = ?1",
            params![run_id, status, reason, exit_code, now_text()],
        )
    }

    pub fn set_report(&self, run_id: i64, dir: &Path, manifest_sha256: &str) -> Result<()> {
        self.exec(
            "UPDATE runs SET report_dir = ?2, manifest_sha256 = ?3 WHERE id = ?1",
            params![run_id, dir.display().to_string(), manifest_sha256],
        )
    }

    pub fn record_delivery(
        &self,
        run_id: i64,
        method: &str,
        status: &str,
        detail: &str,
    ) -> Result<()> {
        self.exec(
            "INSERT INTO deliveries (run_id, at, method, status, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run_id, now_text(), method, status, detail],
        )
    }

    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        self.conn
            .execute(sql, params)
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Writes a snapshot and all its accounts in one transaction, and links it to the run.
    #[instrument(skip_all, fields(run_id, accounts = fetched.accounts.len()))]
    pub fn save_snapshot(
        &mut self,
        run_id: i64,
        source_url: &str,
        taken_at: DateTime<Utc>,
        fetched: &Fetched,
    ) -> Result<i64> {
        self.save_snapshot_with_hub(run_id, source_url, taken_at, fetched, None)
    }

    /// Stores a snapshot and, when the Hub API was read, its members and invites with
    /// their completeness, all in one transaction.
    #[instrument(skip_all, fields(run_id))]
    pub fn save_snapshot_with_hub(
        &mut self,
        run_id: i64,
        source_url: &str,
        taken_at: DateTime<Utc>,
        fetched: &Fetched,
        hub: Option<&HubFetched>,
    ) -> Result<i64> {
        let path = self.path.clone();
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let active = fetched.accounts.iter().filter(|(a, _)| a.active).count() as i64;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            "INSERT INTO snapshots (run_id, taken_at, source_url, status, reason, \
             total_results, pages, accounts, active_accounts) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run_id,
                taken_at.to_rfc3339(),
                source_url,
                if fetched.completeness.is_complete() {
                    "complete"
                } else {
                    "incomplete"
                },
                fetched.completeness.reason(),
                fetched.total_results.map(|t| t as i64),
                fetched.pages,
                fetched.accounts.len() as i64,
                active,
            ],
        )
        .map_err(err)?;
        let snapshot_id = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO accounts (snapshot_id, id, user_name, active, role, team, \
                     account_json, raw_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            for (account, raw) in &fetched.accounts {
                let json = serde_json::to_string(account).unwrap_or_default();
                insert
                    .execute(params![
                        snapshot_id,
                        account.id,
                        account.user_name,
                        account.active,
                        account.role,
                        account.team,
                        json,
                        raw,
                    ])
                    .map_err(err)?;
            }
        }
        if let Some(hub) = hub {
            save_hub(&tx, snapshot_id, hub).map_err(err)?;
        }
        tx.execute(
            "UPDATE runs SET snapshot_id = ?2, stage = 'snapshot' WHERE id = ?1",
            params![run_id, snapshot_id],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(snapshot_id)
    }

    /// What was recorded of each Hub listing read with a snapshot (no items): empty when
    /// the Hub API was not read for it.
    pub fn hub_listings(&self, snapshot_id: i64) -> Result<Vec<HubListingRow>> {
        let mut listings = self
            .conn
            .prepare(
                "SELECT listing, source_url, org, status, reason, count, pages, items \
                 FROM hub_listings WHERE snapshot_id = ?1 ORDER BY listing",
            )
            .map_err(|e| self.err(e))?;
        listings
            .query_map(params![snapshot_id], |r| {
                let status: String = r.get(3)?;
                let reason: Option<String> = r.get(4)?;
                Ok(HubListingRow {
                    listing: r.get(0)?,
                    url: r.get(1)?,
                    org: r.get(2)?,
                    completeness: if status == "complete" {
                        Completeness::Complete
                    } else {
                        Completeness::Incomplete {
                            reason: reason.unwrap_or_else(|| "no reason recorded".into()),
                        }
                    },
                    count: r.get::<_, Option<i64>>(5)?.map(|c| c as u64),
                    pages: r.get::<_, i64>(6)? as u32,
                    items: r.get::<_, i64>(7)? as u64,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// The Hub members and invites stored with a snapshot; `None` when the Hub API was not
    /// read for it.
    #[instrument(skip_all, fields(snapshot_id))]
    pub fn hub(&self, snapshot_id: i64) -> Result<Option<HubSnapshot>> {
        let rows = self.hub_listings(snapshot_id)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut snapshot = HubSnapshot {
            url: first.url.clone(),
            org: first.org.clone(),
            members: Listing::empty(),
            invites: Listing::empty(),
        };
        for row in rows {
            if row.listing == "members" {
                let items: Vec<Member> = self.hub_items(
                    "SELECT member_json, raw_json FROM hub_members WHERE snapshot_id = ?1 \
                     ORDER BY position",
                    snapshot_id,
                )?;
                snapshot.members = Listing::stored(items, row.count, row.pages, row.completeness);
            } else {
                let items: Vec<Invite> = self.hub_items(
                    "SELECT invite_json, raw_json FROM hub_invites WHERE snapshot_id = ?1 \
                     ORDER BY position",
                    snapshot_id,
                )?;
                snapshot.invites = Listing::stored(items, row.count, row.pages, row.completeness);
            }
        }
        Ok(Some(snapshot))
    }

    fn hub_items<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        snapshot_id: i64,
    ) -> Result<Vec<T>> {
        let mut statement = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let texts = statement
            .query_map(params![snapshot_id], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        texts
            .iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| {
                    self.corrupt(format!(
                        "a Hub item of snapshot {snapshot_id} does not read: {e}"
                    ))
                })
            })
            .collect()
    }

    pub fn snapshot(&self, id: i64) -> Result<Option<SnapshotRow>> {
        self.snapshot_where("id = ?1", params![id])
    }

    /// The newest snapshot, complete or not.
    pub fn latest_snapshot(&self) -> Result<Option<SnapshotRow>> {
        self.snapshot_where("1 = 1", [])
    }

    /// The newest complete snapshot that still holds its accounts.
    pub fn latest_complete_snapshot(&self) -> Result<Option<SnapshotRow>> {
        self.snapshot_where("status = 'complete' AND pruned_at IS NULL", [])
    }

    /// The newest complete snapshot older than `before` that still holds its accounts.
    pub fn previous_complete_snapshot(&self, before: i64) -> Result<Option<SnapshotRow>> {
        self.snapshot_where(
            "status = 'complete' AND pruned_at IS NULL AND id < ?1",
            params![before],
        )
    }

    fn snapshot_where(
        &self,
        condition: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<SnapshotRow>> {
        let sql = format!(
            "SELECT id, run_id, taken_at, source_url, status, reason, total_results, pages, \
             accounts, active_accounts, pruned_at FROM snapshots WHERE {condition} \
             ORDER BY id DESC LIMIT 1"
        );
        let row = self
            .conn
            .query_row(&sql, params, snapshot_from_row)
            .optional()
            .map_err(|e| self.err(e))?;
        row.transpose().map_err(|what| self.corrupt(what))
    }

    /// Snapshots, newest first.
    pub fn snapshots(&self, limit: usize) -> Result<Vec<SnapshotRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, run_id, taken_at, source_url, status, reason, total_results, pages, \
                 accounts, active_accounts, pruned_at FROM snapshots ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], snapshot_from_row)
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|r| r.map_err(|what| self.corrupt(what)))
            .collect()
    }

    /// The accounts of a snapshot, in SCIM id order.
    pub fn accounts(&self, snapshot_id: i64) -> Result<Vec<Account>> {
        let mut stmt = self
            .conn
            .prepare("SELECT account_json FROM accounts WHERE snapshot_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let texts = stmt
            .query_map(params![snapshot_id], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        texts
            .iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| {
                    self.corrupt(format!(
                        "an account of snapshot {snapshot_id} is unreadable: {e}"
                    ))
                })
            })
            .collect()
    }

    /// Records an input file (its path, format, hash and row count) with a run.
    pub fn record_input(&self, run_id: i64, role: &str, input: &InputFile) -> Result<()> {
        self.exec(
            "INSERT OR REPLACE INTO inputs (run_id, role, path, format, sha256, rows) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                run_id,
                role,
                input.path.display().to_string(),
                input.format,
                input.sha256,
                input.rows as i64
            ],
        )
    }

    pub fn input(&self, run_id: i64, role: &str) -> Result<Option<InputFile>> {
        self.conn
            .query_row(
                "SELECT path, format, sha256, rows FROM inputs WHERE run_id = ?1 AND role = ?2",
                params![run_id, role],
                |r| {
                    Ok(InputFile {
                        path: PathBuf::from(r.get::<_, String>(0)?),
                        format: r.get(1)?,
                        sha256: r.get(2)?,
                        rows: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The input of `role` most recently used by a run that was reconciled, with that
    /// run's id: the baseline of the export size guard. Inputs of runs refused or never
    /// reconciled do not count, so a refused export never becomes the baseline.
    pub fn last_reconciled_input(&self, role: &str) -> Result<Option<(i64, InputFile)>> {
        self.conn
            .query_row(
                "SELECT i.run_id, i.path, i.format, i.sha256, i.rows FROM inputs i \
                 JOIN runs r ON r.id = i.run_id \
                 WHERE i.role = ?1 AND r.outcome_json IS NOT NULL \
                 ORDER BY i.run_id DESC LIMIT 1",
                params![role],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        InputFile {
                            path: PathBuf::from(r.get::<_, String>(1)?),
                            format: r.get(2)?,
                            sha256: r.get(3)?,
                            rows: r.get::<_, i64>(4)? as u64,
                        },
                    ))
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Saves a run's findings and outcome, and moves each finding's history on, in one
    /// transaction.
    #[instrument(skip_all, fields(run_id, findings = outcome.findings.len()))]
    pub fn save_outcome(&mut self, run_id: i64, as_of: NaiveDate, outcome: &Outcome) -> Result<()> {
        let path = self.path.clone();
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let summary = serde_json::json!({
            "counts": outcome.counts.iter().map(|(k, v)| (k.as_str(), v)).collect::<std::collections::BTreeMap<_, _>>(),
            "seats": outcome.seats,
            "not_evaluated": outcome.not_evaluated.iter().map(|(k, v)| (k.as_str(), v)).collect::<std::collections::BTreeMap<_, _>>(),
            "partial": outcome.partial.iter().map(|(k, v)| (k.as_str(), v)).collect::<std::collections::BTreeMap<_, _>>(),
        });
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute("DELETE FROM findings WHERE run_id = ?1", params![run_id])
            .map_err(err)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO findings (run_id, key, kind, severity, finding_json) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
            // A finding that comes back after it was resolved starts a new open period.
            let mut history = tx
                .prepare(
                    "INSERT INTO finding_history (key, kind, first_run, first_as_of, last_run) \
                     VALUES (?1, ?2, ?3, ?4, ?3) \
                     ON CONFLICT (key) DO UPDATE SET last_run = excluded.last_run, \
                     first_run = CASE WHEN resolved_run IS NULL THEN first_run \
                     ELSE excluded.first_run END, \
                     first_as_of = CASE WHEN resolved_run IS NULL THEN first_as_of \
                     ELSE excluded.first_as_of END, \
                     resolved_run = NULL \
                     RETURNING first_as_of",
                )
                .map_err(err)?;
            for finding in &outcome.findings {
                let first_as_of: Option<String> = history
                    .query_row(
                        params![
                            finding.key,
                            finding.kind.as_str(),
                            run_id,
                            as_of.to_string()
                        ],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                // Drift is an event of its own run, not a state that stays open.
                let mut finding = finding.clone();
                if finding.kind != Kind::Drift {
                    finding.first_seen = first_as_of.and_then(|d| d.parse().ok());
                    finding.days_open = finding.first_seen.map(|d| (as_of - d).num_days());
                }
                let json = serde_json::to_string(&finding).unwrap_or_default();
                insert
                    .execute(params![
                        run_id,
                        finding.key,
                        finding.kind.as_str(),
                        finding.severity.as_str(),
                        json
                    ])
                    .map_err(err)?;
            }
        }
        // A finding of an evaluated kind that is open but was not seen this run is resolved;
        // a kind checked only in part resolves nothing (what was not checked may be open).
        for (kind, count) in &outcome.counts {
            if count.is_some() && *kind != Kind::Drift && !outcome.partial.contains_key(kind) {
                tx.execute(
                    "UPDATE finding_history SET resolved_run = ?1 \
                     WHERE kind = ?2 AND resolved_run IS NULL AND last_run < ?1",
                    params![run_id, kind.as_str()],
                )
                .map_err(err)?;
            }
        }
        tx.execute(
            "UPDATE runs SET outcome_json = ?2, stage = 'reconcile', as_of = ?3 WHERE id = ?1",
            params![run_id, summary.to_string(), as_of.to_string()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// A run's findings and outcome, if it was reconciled.
    pub fn outcome(&self, run_id: i64) -> Result<Option<Outcome>> {
        let summary: Option<String> = self
            .conn
            .query_row(
                "SELECT outcome_json FROM runs WHERE id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        let Some(summary) = summary else {
            return Ok(None);
        };
        let summary: serde_json::Value = serde_json::from_str(&summary)
            .map_err(|e| self.corrupt(format!("run {run_id} outcome is unreadable: {e}")))?;
        let by_kind = |field: &str| {
            summary[field]
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((Kind::parse(k)?, v.clone())))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        let counts = by_kind("counts")
            .into_iter()
            .map(|(k, v)| (k, v.as_u64().map(|n| n as usize)))
            .collect();
        let not_evaluated = by_kind("not_evaluated")
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let partial = by_kind("partial")
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let seats = serde_json::from_value(summary["seats"].clone())
            .map_err(|e| self.corrupt(format!("run {run_id} seat summary is unreadable: {e}")))?;

        let mut stmt = self
            .conn
            .prepare("SELECT finding_json FROM findings WHERE run_id = ?1 ORDER BY rowid")
            .map_err(|e| self.err(e))?;
        let texts = stmt
            .query_map(params![run_id], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let findings = texts
            .iter()
            .map(|t| serde_json::from_str::<Finding>(t))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.corrupt(format!("a finding of run {run_id} is unreadable: {e}")))?;
        let resolved = self.resolved(run_id)?;
        Ok(Some(Outcome {
            findings,
            counts,
            seats,
            not_evaluated,
            partial,
            resolved,
        }))
    }

    /// The findings that run `run_id` found resolved, with how long each was open and,
    /// for a leaver whose account was deactivated or removed, the time to deprovision.
    pub fn resolved(&self, run_id: i64) -> Result<Vec<Resolved>> {
        const STILL_A_MEMBER: &str = crate::reconcile::STILL_A_MEMBER;
        let (resolved_on, snapshot_id): (Option<String>, Option<i64>) = self
            .conn
            .query_row(
                "SELECT as_of, snapshot_id FROM runs WHERE id = ?1",
                params![run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or((None, None));
        let resolved_on: Option<NaiveDate> = resolved_on.and_then(|d| d.parse().ok());
        let mut stmt = self
            .conn
            .prepare(
                "SELECT h.key, h.kind, h.first_as_of, r.as_of, f.finding_json \
                 FROM finding_history h \
                 LEFT JOIN runs r ON r.id = h.last_run \
                 LEFT JOIN findings f ON f.run_id = h.last_run AND f.key = h.key \
                 WHERE h.resolved_run = ?1 ORDER BY h.kind, h.key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        // Who this run still finds in the organization without a SCIM account: a leaver
        // removed from SCIM but still a member has not been deprovisioned.
        let mut members_left = std::collections::HashSet::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT finding_json FROM findings WHERE run_id = ?1 \
                     AND kind = 'not_provisioned'",
                )
                .map_err(|e| self.err(e))?;
            let texts = stmt
                .query_map(params![run_id], |r| r.get::<_, String>(0))
                .map_err(|e| self.err(e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| self.err(e))?;
            for text in texts {
                if let Ok(f) = serde_json::from_str::<Finding>(&text) {
                    members_left.extend(
                        [f.email, f.docker_id]
                            .into_iter()
                            .flatten()
                            .map(|v| v.trim().to_lowercase()),
                    );
                }
            }
        }
        let mut out = Vec::new();
        for (key, kind, first, last, json) in rows {
            let Some(kind) = Kind::parse(&kind) else {
                return Err(self.corrupt(format!("finding `{key}` has unknown kind `{kind}`")));
            };
            let finding: Option<Finding> = match json {
                Some(text) => Some(serde_json::from_str(&text).map_err(|e| {
                    self.corrupt(format!(
                        "finding `{key}` of its last run is unreadable: {e}"
                    ))
                })?),
                None => None,
            };
            let first_seen: Option<NaiveDate> = first.and_then(|d| d.parse().ok());
            let days = |from: Option<NaiveDate>| match (from, resolved_on) {
                (Some(a), Some(b)) => Some((b - a).num_days()),
                _ => None,
            };
            let mut entry = Resolved {
                key,
                kind,
                first_seen,
                last_seen: last.and_then(|d| d.parse().ok()),
                resolved_on,
                days_open: days(first_seen),
                days_to_deprovision: None,
                deprovision_counted_from: None,
                account_now: None,
                finding,
            };
            if kind == Kind::TerminatedActive {
                let account = entry.finding.as_ref().and_then(|f| f.account_id.clone());
                let state = match (account, snapshot_id) {
                    (Some(id), Some(snapshot)) => self
                        .conn
                        .query_row(
                            "SELECT active FROM accounts WHERE snapshot_id = ?1 AND id = ?2",
                            params![snapshot, id],
                            |r| r.get::<_, bool>(0),
                        )
                        .optional()
                        .map_err(|e| self.err(e))?
                        .map(|active| if active { "active" } else { "deactivated" })
                        .or(Some("removed")),
                    _ => None,
                };
                let still_member = entry.finding.as_ref().is_some_and(|f| {
                    [&f.email, &f.docker_id]
                        .into_iter()
                        .flatten()
                        .any(|v| members_left.contains(&v.trim().to_lowercase()))
                });
                let state = match state {
                    Some("deactivated" | "removed") if still_member => Some(STILL_A_MEMBER),
                    other => other,
                };
                entry.account_now = state.map(str::to_owned);
                if matches!(state, Some("deactivated" | "removed")) {
                    let termination = entry
                        .finding
                        .as_ref()
                        .and_then(|f| f.evidence.get("termination_date"))
                        .and_then(|d| d.parse::<NaiveDate>().ok());
                    let (from, label) = match termination {
                        Some(d) => (Some(d), "termination date"),
                        None => (first_seen, "first seen"),
                    };
                    entry.days_to_deprovision = days(from);
                    entry.deprovision_counted_from = Some(label.to_owned());
                }
            }
            out.push(entry);
        }
        Ok(out)
    }

    pub fn run(&self, id: i64) -> Result<Option<RunRow>> {
        Ok(self
            .runs_where("id = ?1", params![id], 1)?
            .into_iter()
            .next())
    }

    /// The newest run that took a snapshot.
    pub fn latest_run_with_snapshot(&self) -> Result<Option<RunRow>> {
        Ok(self
            .runs_where("snapshot_id IS NOT NULL", [], 1)?
            .into_iter()
            .next())
    }

    /// The newest run that wrote a report.
    pub fn latest_run_with_report(&self) -> Result<Option<RunRow>> {
        Ok(self
            .runs_where("report_dir IS NOT NULL", [], 1)?
            .into_iter()
            .next())
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>> {
        self.runs_where("1 = 1", [], limit)
    }

    fn runs_where(
        &self,
        condition: &str,
        params: impl rusqlite::Params,
        limit: usize,
    ) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT id, command, started_at, finished_at, as_of, status, stage, reason, \
             snapshot_id, accepted_drops, report_dir, exit_code, pruned_at FROM runs \
             WHERE {condition} ORDER BY id DESC LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, Option<String>>(10)?,
                    r.get::<_, Option<i32>>(11)?,
                    r.get::<_, Option<String>>(12)?.is_some(),
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|r| {
                Ok(RunRow {
                    id: r.0,
                    command: r.1,
                    started_at: parse_time(&r.2).map_err(|w| self.corrupt(w))?,
                    finished_at: r
                        .3
                        .as_deref()
                        .map(parse_time)
                        .transpose()
                        .map_err(|w| self.corrupt(w))?,
                    as_of: r.4.as_deref().and_then(|d| d.parse().ok()),
                    status: r.5,
                    stage: r.6,
                    reason: r.7,
                    snapshot_id: r.8,
                    accepted_drops: r
                        .9
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    report_dir: r.10.map(PathBuf::from),
                    exit_code: r.11,
                    pruned: r.12,
                })
            })
            .collect()
    }

    /// Open findings per kind for the last `limit` reconciled runs, oldest first.
    pub fn trend(&self, limit: usize) -> Result<Vec<TrendPoint>> {
        self.trend_through(i64::MAX, limit)
    }
}

impl Store {
    /// When the newest run that completed (reconciled its snapshot) finished.
    pub fn last_success(&self) -> Result<Option<DateTime<Utc>>> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT finished_at FROM runs WHERE status = 'complete' \
                 AND finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        text.as_deref()
            .map(parse_time)
            .transpose()
            .map_err(|w| self.corrupt(w))
    }

    /// The runs whose data `retention` lets go, oldest first, as of `now`.
    ///
    /// A run is let go when it is neither among the `keep_runs` newest runs nor started
    /// within `keep_days` days (a limit that is not set keeps nothing by itself; with
    /// neither set, nothing is let go). Whatever the limits, a run still `running`, a run
    /// already pruned, and the run of the newest complete snapshot (the baseline of the
    /// next run's drift and drop guard) are kept.
    pub fn prunable(&self, retention: Retention, now: DateTime<Utc>) -> Result<Vec<RunRow>> {
        if retention.keep_runs.is_none() && retention.keep_days.is_none() {
            return Ok(Vec::new());
        }
        let baseline = self.latest_complete_snapshot()?.map(|s| s.run_id);
        let runs = self.runs_where("1 = 1", [], usize::MAX >> 1)?;
        let cutoff = retention
            .keep_days
            .map(|d| now - chrono::Duration::days(i64::try_from(d).unwrap_or(i64::MAX / 2)));
        let mut out: Vec<RunRow> = runs
            .into_iter()
            .enumerate()
            .filter(|(newest_first, run)| {
                let kept_by_count = retention
                    .keep_runs
                    .is_some_and(|n| (*newest_first as u64) < n);
                let kept_by_age = cutoff.is_some_and(|c| run.started_at >= c);
                !kept_by_count
                    && !kept_by_age
                    && run.status != "running"
                    && !run.pruned
                    && Some(run.id) != baseline
            })
            .map(|(_, run)| run)
            .collect();
        out.reverse();
        Ok(out)
    }

    /// Removes the data of the runs `retention` lets go (see [`Store::prunable`]): each
    /// one's snapshot accounts and findings, in one transaction per run. Kept: every run's
    /// row (status, counts, seat summary, exit code, manifest SHA-256), its inputs' hashes,
    /// its deliveries, each snapshot's row with its counts, and the finding history.
    /// Returns what was pruned, with the report directories for the caller to remove.
    #[instrument(skip_all)]
    pub fn prune(&mut self, retention: Retention, now: DateTime<Utc>) -> Result<Vec<Pruned>> {
        let runs = self.prunable(retention, now)?;
        let path = self.path.clone();
        let err = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let stamp = now.to_rfc3339();
        let mut pruned = Vec::new();
        for run in runs {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            if let Some(snapshot_id) = run.snapshot_id {
                for table in ["accounts", "hub_members", "hub_invites"] {
                    tx.execute(
                        &format!("DELETE FROM {table} WHERE snapshot_id = ?1"),
                        params![snapshot_id],
                    )
                    .map_err(err)?;
                }
                tx.execute(
                    "UPDATE snapshots SET pruned_at = ?2 WHERE id = ?1",
                    params![snapshot_id, stamp],
                )
                .map_err(err)?;
            }
            tx.execute("DELETE FROM findings WHERE run_id = ?1", params![run.id])
                .map_err(err)?;
            tx.execute(
                "UPDATE runs SET pruned_at = ?2 WHERE id = ?1",
                params![run.id, stamp],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            debug!(run_id = run.id, "run pruned");
            pruned.push(Pruned {
                run_id: run.id,
                snapshot_id: run.snapshot_id,
                report_dir: run.report_dir,
            });
        }
        Ok(pruned)
    }

    /// The SHA-256 of a snapshot's content: each account's SCIM resource exactly as it
    /// was received, in SCIM id order (byte order), each followed by a newline. Anyone
    /// with the store can recompute it:
    /// `sqlite3 hubreview.db "SELECT raw_json FROM accounts WHERE snapshot_id = 7 ORDER BY id" | sha256sum`.
    #[instrument(skip(self))]
    pub fn snapshot_sha256(&self, snapshot_id: i64) -> Result<String> {
        use sha2::{Digest, Sha256};

        let mut stmt = self
            .conn
            .prepare("SELECT raw_json FROM accounts WHERE snapshot_id = ?1 ORDER BY id")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query(params![snapshot_id]).map_err(|e| self.err(e))?;
        let mut hasher = Sha256::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let raw = row.get_ref(0).map_err(|e| self.err(e))?;
            let bytes = raw
                .as_bytes()
                .map_err(|e| self.corrupt(format!("snapshot {snapshot_id}: {e}")))?;
            hasher.update(bytes);
            hasher.update(b"\n");
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Open findings per kind for the last `limit` reconciled runs up to and including
    /// `run_id`, oldest first: the trend a report of that run shows.
    pub fn trend_through(&self, run_id: i64, limit: usize) -> Result<Vec<TrendPoint>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, as_of FROM runs WHERE outcome_json IS NOT NULL AND id <= ?1 \
                 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let ids = stmt
            .query_map(params![run_id, limit as i64], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for (id, as_of) in ids.into_iter().rev() {
            let (counts, partial, resolved) = self.counts(id)?;
            out.push(TrendPoint {
                run_id: id,
                as_of: as_of.and_then(|d| d.parse().ok()),
                counts,
                partial,
                resolved,
            });
        }
        Ok(out)
    }

    /// A run's open findings per kind, the kinds it checked only in part, and how many
    /// findings it resolved, read from its stored outcome without its findings.
    fn counts(&self, run_id: i64) -> Result<(KindCounts, Vec<Kind>, usize)> {
        let summary: Option<String> = self
            .conn
            .query_row(
                "SELECT outcome_json FROM runs WHERE id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?
            .flatten();
        let Some(summary) = summary else {
            return Ok((Vec::new(), Vec::new(), 0));
        };
        let summary: serde_json::Value = serde_json::from_str(&summary)
            .map_err(|e| self.corrupt(format!("run {run_id} outcome is unreadable: {e}")))?;
        let not_evaluated = summary["not_evaluated"].as_object();
        let resolved = self.resolved(run_id)?.len();
        let counts = summary["counts"]
            .as_object()
            .map(|counts| {
                counts
                    .iter()
                    .filter_map(|(k, v)| {
                        let kind = Kind::parse(k)?;
                        let skipped = not_evaluated.is_some_and(|n| n.contains_key(k));
                        let count = v.as_u64().filter(|_| !skipped).map(|n| n as usize);
                        Some((kind, count))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let partial = summary["partial"]
            .as_object()
            .map(|o| o.keys().filter_map(|k| Kind::parse(k)).collect())
            .unwrap_or_default();
        Ok((counts, partial, resolved))
    }

    /// When each finding of a run was first seen (the review date of the first run that
    /// had it), by finding key.
    pub fn first_seen(&self, run_id: i64) -> Result<BTreeMap<String, NaiveDate>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT f.key, h.first_as_of FROM findings f \
                 JOIN finding_history h ON h.key = f.key WHERE f.run_id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![run_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, date)| Some((key, date?.parse().ok()?)))
            .collect())
    }

    /// The newest run before `run_id` that wrote a report, with its manifest's SHA-256:
    /// the link a new manifest records, so runs form a chain.
    pub fn previous_manifest(&self, run_id: i64) -> Result<Option<(i64, String)>> {
        self.conn
            .query_row(
                "SELECT id, manifest_sha256 FROM runs WHERE id < ?1 \
                 AND manifest_sha256 IS NOT NULL AND manifest_sha256 != '' \
                 ORDER BY id DESC LIMIT 1",
                params![run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The newest review date of a reconciled run other than `except`, with its run.
    pub fn latest_reconciled_as_of(&self, except: Option<i64>) -> Result<Option<(i64, NaiveDate)>> {
        let row: Option<(i64, Option<String>)> = self
            .conn
            .query_row(
                "SELECT id, as_of FROM runs WHERE outcome_json IS NOT NULL AND as_of IS NOT NULL \
                 AND id != ?1 ORDER BY as_of DESC, id DESC LIMIT 1",
                params![except.unwrap_or(-1)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(row.and_then(|(id, d)| Some((id, d?.parse().ok()?))))
    }

    /// The report directory run `run_id` recorded, and the SHA-256 of its manifest.
    pub fn manifest_record(&self, run_id: i64) -> Result<Option<(PathBuf, String)>> {
        let row: Option<(Option<String>, Option<String>)> = self
            .conn
            .query_row(
                "SELECT report_dir, manifest_sha256 FROM runs WHERE id = ?1",
                params![run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(match row {
            Some((Some(dir), Some(sha256))) if !sha256.is_empty() => {
                Some((PathBuf::from(dir), sha256))
            }
            _ => None,
        })
    }

    /// The run that wrote its report into `dir`, with the SHA-256 of the manifest it
    /// recorded. `dir` is compared as stored and, when both exist, canonicalized.
    pub fn report_record(&self, dir: &Path) -> Result<Option<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, report_dir, manifest_sha256 FROM runs \
                 WHERE report_dir IS NOT NULL ORDER BY id DESC",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        let wanted = dir.canonicalize().ok();
        Ok(rows.into_iter().find_map(|(id, stored, sha256)| {
            let stored = PathBuf::from(stored);
            let same = stored == dir || wanted.is_some() && stored.canonicalize().ok() == wanted;
            same.then(|| (id, sha256.unwrap_or_default()))
        }))
    }
}

/// One Hub listing as recorded with a snapshot: where it came from, whether it is
/// complete, and how many items it holds.
#[derive(Debug, Clone)]
pub struct HubListingRow {
    /// `members` or `invites`.
    pub listing: String,
    pub url: String,
    pub org: String,
    pub completeness: Completeness,
    /// The `count` the server announced, if it did.
    pub count: Option<u64>,
    pub pages: u32,
    /// Items received.
    pub items: u64,
}

/// The Hub members and invites stored with a snapshot.
#[derive(Debug, Clone)]
pub struct HubSnapshot {
    pub url: String,
    pub org: String,
    pub members: Listing<Member>,
    pub invites: Listing<Invite>,
}

fn save_hub(
    tx: &rusqlite::Transaction<'_>,
    snapshot_id: i64,
    hub: &HubFetched,
) -> rusqlite::Result<()> {
    let status = |c: &Completeness| {
        if c.is_complete() {
            "complete"
        } else {
            "incomplete"
        }
    };
    let mut listing = tx.prepare(
        "INSERT INTO hub_listings (snapshot_id, listing, source_url, org, status, reason, \
         count, pages, items) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    listing.execute(params![
        snapshot_id,
        "members",
        hub.url,
        hub.org,
        status(&hub.members.completeness),
        hub.members.completeness.reason(),
        hub.members.count.map(|c| c as i64),
        hub.members.pages,
        hub.members.items.len() as i64,
    ])?;
    listing.execute(params![
        snapshot_id,
        "invites",
        hub.url,
        hub.org,
        status(&hub.invites.completeness),
        hub.invites.completeness.reason(),
        hub.invites.count.map(|c| c as i64),
        hub.invites.pages,
        hub.invites.items.len() as i64,
    ])?;
    let mut member = tx.prepare(
        "INSERT INTO hub_members (snapshot_id, position, username, email, member_json, \
         raw_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (i, (m, raw)) in hub.members.items.iter().enumerate() {
        member.execute(params![
            snapshot_id,
            i as i64 + 1,
            m.username,
            m.email,
            serde_json::to_string(m).unwrap_or_default(),
            raw,
        ])?;
    }
    let mut invite = tx.prepare(
        "INSERT INTO hub_invites (snapshot_id, position, invitee, invite_json, raw_json) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (i, (v, raw)) in hub.invites.items.iter().enumerate() {
        invite.execute(params![
            snapshot_id,
            i as i64 + 1,
            v.invitee,
            serde_json::to_string(v).unwrap_or_default(),
            raw,
        ])?;
    }
    Ok(())
}

fn snapshot_from_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<std::result::Result<SnapshotRow, String>> {
    let taken_at: String = r.get(2)?;
    let status: String = r.get(4)?;
    let reason: Option<String> = r.get(5)?;
    let completeness = if status == "complete" {
        Completeness::Complete
    } else {
        Completeness::Incomplete {
            reason: reason.unwrap_or_else(|| "no reason recorded".into()),
        }
    };
    let row = SnapshotRow {
        id: r.get(0)?,
        run_id: r.get(1)?,
        taken_at: match parse_time(&taken_at) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        },
        source_url: r.get(3)?,
        completeness,
        total_results: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
        pages: r.get(7)?,
        accounts: r.get::<_, i64>(8)? as u64,
        active_accounts: r.get::<_, i64>(9)? as u64,
        pruned: r.get::<_, Option<String>>(10)?.is_some(),
    };
    Ok(Ok(row))
}

fn parse_time(text: &str) -> std::result::Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("timestamp `{text}` is unreadable: {e}"))
}

fn now_text() -> String {
    Utc::now().to_rfc3339()
}

/// Creates `path` readable and writable by its owner only, if it does not exist yet, and
/// takes group and other access away from one made earlier with a wider mode (and from
/// its `-wal` and `-shm` files), so that the personal data it holds stays the owner's.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        tighten(&file)?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            // Never through a symlink: the mode of whatever it points at is not ours to
            // change (SQLite then refuses the link itself).
            let mut side_options = std::fs::OpenOptions::new();
            side_options
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
            match side_options.open(&side) {
                Ok(side) => tighten(&side)?,
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        fn tighten(file: &std::fs::File) -> std::io::Result<()> {
            let mode = file.metadata()?.permissions().mode();
            if mode & 0o077 != 0 {
                warn!(
                    mode = format!("{:o}", mode & 0o777),
                    "the store was readable by others; made it owner-only (0600)"
                );
                file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
            }
            Ok(())
        }
    }
    #[cfg(not(unix))]
    drop(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::Account;

    fn account(id: &str, active: bool) -> Account {
        Account {
            id: id.into(),
            user_name: Some(format!("{id}@example.test")),
            external_id: None,
            employee_number: None,
            display_name: None,
            given_name: None,
            family_name: None,
            active,
            emails: vec![],
            groups: vec![],
            role: None,
            team: None,
            org: None,
            created: None,
            last_modified: None,
        }
    }

    fn fetched(ids: &[&str], completeness: Completeness) -> Fetched {
        Fetched {
            accounts: ids
                .iter()
                .map(|id| (account(id, true), format!(r#"{{"id":"{id}"}}"#)))
                .collect(),
            total_results: Some(ids.len() as u64),
            pages: 1,
            completeness,
        }
    }

    #[test]
    fn a_snapshot_round_trips_with_its_accounts() {
        let mut store = Store::open_in_memory().unwrap();
        let run = store.begin_run("run", None).unwrap();
        let id = store
            .save_snapshot(
                run,
                "http://127.0.0.1/x",
                Utc::now(),
                &fetched(&["b", "a"], Completeness::Complete),
            )
            .unwrap();
        let row = store.latest_snapshot().unwrap().unwrap();
        assert_eq!(row.id, id);
        assert_eq!(row.accounts, 2);
        assert!(row.completeness.is_complete());
        let ids: Vec<_> = store
            .accounts(id)
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(store.run(run).unwrap().unwrap().snapshot_id, Some(id));
    }

    fn hub_fetched(members: Completeness, invites: Completeness) -> crate::hub::HubFetched {
        let member = |name: &str| {
            let raw = serde_json::json!({"username": name, "email": format!("{name}@x.example"),
                "last_logged_in_at": "2026-11-01T00:00:00Z"});
            let parsed = crate::hub::parse_member(raw.as_object().unwrap(), 1).unwrap();
            (parsed, raw.to_string())
        };
        let raw = serde_json::json!({"id": "i1", "invitee": "new@x.example",
            "created_at": "2025-11-30T00:00:00Z"});
        let invite = crate::hub::parse_invite(raw.as_object().unwrap(), 1).unwrap();
        crate::hub::HubFetched {
            url: "http://127.0.0.1:1".into(),
            org: "acme".into(),
            members: Listing {
                items: vec![member("b"), member("a")],
                count: Some(2),
                pages: 1,
                completeness: members,
            },
            invites: Listing {
                items: vec![(invite, raw.to_string())],
                count: None,
                pages: 1,
                completeness: invites,
            },
        }
    }

    #[test]
    fn hub_members_and_invites_are_stored_with_the_snapshot_each_with_its_completeness() {
        let mut store = Store::open_in_memory().unwrap();
        let run = store.begin_run("run", None).unwrap();
        let without = store
            .save_snapshot(
                run,
                "x",
                Utc::now(),
                &fetched(&["a"], Completeness::Complete),
            )
            .unwrap();
        assert!(
            store.hub(without).unwrap().is_none(),
            "not read, not stored"
        );

        let run = store.begin_run("run", None).unwrap();
        let gap = Completeness::Incomplete {
            reason: "page 2 failed".into(),
        };
        let id = store
            .save_snapshot_with_hub(
                run,
                "x",
                Utc::now(),
                &fetched(&["a"], Completeness::Complete),
                Some(&hub_fetched(Completeness::Complete, gap.clone())),
            )
            .unwrap();
        let hub = store.hub(id).unwrap().unwrap();
        assert_eq!(hub.org, "acme");
        assert!(hub.members.completeness.is_complete());
        assert_eq!(hub.members.count, Some(2));
        let names: Vec<_> = hub
            .members
            .values()
            .iter()
            .map(|m| m.username.clone().unwrap())
            .collect();
        assert_eq!(names, ["b", "a"], "in the order the API listed them");
        assert_eq!(hub.invites.completeness, gap);
        assert_eq!(hub.invites.items.len(), 1);
        assert_eq!(
            count(
                &store,
                "SELECT count(*) FROM hub_members WHERE raw_json LIKE '%username%'"
            ),
            2,
            "the members as received are kept"
        );
    }

    #[test]
    fn a_snapshot_whose_hub_rows_cannot_be_written_leaves_nothing_behind() {
        let mut store = Store::open_in_memory().unwrap();
        let run = store.begin_run("run", None).unwrap();
        store.conn.execute_batch("DROP TABLE hub_invites").unwrap();
        let saved = store.save_snapshot_with_hub(
            run,
            "x",
            Utc::now(),
            &fetched(&["a"], Completeness::Complete),
            Some(&hub_fetched(Completeness::Complete, Completeness::Complete)),
        );
        assert!(saved.is_err());
        assert_eq!(count(&store, "SELECT count(*) FROM snapshots"), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM accounts"), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM hub_members"), 0);
    }

    #[test]
    fn the_previous_complete_snapshot_skips_incomplete_ones() {
        let mut store = Store::open_in_memory().unwrap();
        let run = store.begin_run("run", None).unwrap();
        let good = store
            .save_snapshot(
                run,
                "u",
                Utc::now(),
                &fetched(&["a"], Completeness::Complete),
            )
            .unwrap();
        let bad = store
            .save_snapshot(
                run,
                "u",
                Utc::now(),
                &fetched(
                    &[],
                    Completeness::Incomplete {
                        reason: "page failed".into(),
                    },
                ),
            )
            .unwrap();
        let newest = store
            .save_snapshot(
                run,
                "u",
                Utc::now(),
                &fetched(&["a"], Completeness::Complete),
            )
            .unwrap();
        assert_eq!(
            store
                .previous_complete_snapshot(newest)
                .unwrap()
                .unwrap()
                .id,
            good
        );
        let latest_bad = store.snapshot(bad).unwrap().unwrap();
        assert_eq!(latest_bad.completeness.reason(), Some("page failed"));
    }

    #[test]
    fn the_size_guard_baseline_is_the_last_input_of_a_reconciled_run() {
        let mut store = Store::open_in_memory().unwrap();
        let input = |rows: u64| InputFile {
            path: "okta.csv".into(),
            format: "okta".into(),
            sha256: format!("{rows:064x}"),
            rows,
        };
        let as_of = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        let outcome = crate::reconcile::reconcile(&crate::reconcile::Inputs {
            accounts: &[],
            previous: None,
            previous_snapshot: None,
            people: &[],
            members: None,
            invites: None,
            unavailable: Vec::new(),
            review: &crate::config::ReviewConfig::default(),
            exceptions: None,
            as_of,
        })
        .unwrap();
        assert!(store.last_reconciled_input("idp").unwrap().is_none());

        let reconciled = store.begin_run("run", Some(as_of)).unwrap();
        store.record_input(reconciled, "idp", &input(100)).unwrap();
        store.save_outcome(reconciled, as_of, &outcome).unwrap();
        let refused = store.begin_run("run", Some(as_of)).unwrap();
        store.record_input(refused, "idp", &input(10)).unwrap();

        let (run, last) = store.last_reconciled_input("idp").unwrap().unwrap();
        assert_eq!((run, last.rows), (reconciled, 100));
        assert_eq!(last.sha256, format!("{:064x}", 100));
        assert_eq!(store.input(refused, "idp").unwrap().unwrap().rows, 10);
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer than this hubreview"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn the_store_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_store_made_earlier_with_mode_0644_is_made_owner_only_on_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let wal = dir.path().join("s.db-wal");
        std::fs::write(&wal, b"").unwrap();
        for file in [&path, &wal] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        drop(Store::open(&path).unwrap());
        for file in [&path, &wal] {
            if file.exists() {
                let mode = std::fs::metadata(file).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            }
        }
    }

    fn keyed_outcome(findings: &[(&str, Kind)], not_evaluated: &[Kind]) -> Outcome {
        let findings: Vec<Finding> = findings
            .iter()
            .map(|(key, kind)| {
                let mut f = crate::report::tests::finding(
                    *kind,
                    crate::reconcile::Severity::High,
                    "x@example.test",
                    "X",
                );
                f.key = key.to_string();
                f
            })
            .collect();
        let counts = Kind::ALL
            .into_iter()
            .map(|kind| {
                let n = findings.iter().filter(|f| f.kind == kind).count();
                (kind, (!not_evaluated.contains(&kind)).then_some(n))
            })
            .collect();
        Outcome {
            partial: Default::default(),
            findings,
            counts,
            seats: Default::default(),
            resolved: Vec::new(),
            not_evaluated: not_evaluated
                .iter()
                .map(|k| (*k, "no data".to_string()))
                .collect(),
        }
    }

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn the_snapshot_hash_covers_each_raw_resource_in_id_order() {
        use sha2::{Digest, Sha256};

        let mut store = Store::open_in_memory().unwrap();
        let run = store.begin_run("run", None).unwrap();
        let id = store
            .save_snapshot(
                run,
                "u",
                Utc::now(),
                &fetched(&["b", "a"], Completeness::Complete),
            )
            .unwrap();
        let same = store
            .save_snapshot(
                run,
                "u",
                Utc::now(),
                &fetched(&["a", "b"], Completeness::Complete),
            )
            .unwrap();
        let other = store
            .save_snapshot(
                run,
                "u",
                Utc::now(),
                &fetched(&["a", "c"], Completeness::Complete),
            )
            .unwrap();

        let expected: String = Sha256::digest(b"{\"id\":\"a\"}\n{\"id\":\"b\"}\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(store.snapshot_sha256(id).unwrap(), expected);
        assert_eq!(store.snapshot_sha256(same).unwrap(), expected);
        assert_ne!(store.snapshot_sha256(other).unwrap(), expected);
    }

    #[test]
    fn the_trend_stops_at_the_run_reported_and_marks_kinds_not_evaluated() {
        let mut store = Store::open_in_memory().unwrap();
        let mut runs = Vec::new();
        for (i, date) in ["2026-11-09", "2026-11-16", "2026-11-23", "2026-11-30"]
            .iter()
            .enumerate()
        {
            let run = store.begin_run("run", None).unwrap();
            let findings: Vec<(String, Kind)> = (0..=i)
                .map(|n| (format!("shadow:{n}"), Kind::Shadow))
                .collect();
            let refs: Vec<(&str, Kind)> = findings.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            store
                .save_outcome(run, day(date), &keyed_outcome(&refs, &[Kind::IdleSeat]))
                .unwrap();
            runs.push(run);
        }
        // A run without an outcome is not a point.
        store.begin_run("snapshot", None).unwrap();

        let trend = store.trend_through(runs[2], 2).unwrap();

        let ids: Vec<i64> = trend.iter().map(|p| p.run_id).collect();
        assert_eq!(ids, [runs[1], runs[2]]);
        assert_eq!(trend[1].as_of, Some(day("2026-11-23")));
        let count = |kind| trend[1].counts.iter().find(|(k, _)| *k == kind).unwrap().1;
        assert_eq!(count(Kind::Shadow), Some(3));
        assert_eq!(count(Kind::IdleSeat), None);
        assert_eq!(store.trend_through(runs[3], 12).unwrap().len(), 4);
    }

    #[test]
    fn first_seen_is_the_review_date_of_the_first_run_with_the_finding() {
        let mut store = Store::open_in_memory().unwrap();
        let first = store.begin_run("run", None).unwrap();
        store
            .save_outcome(
                first,
                day("2026-11-23"),
                &keyed_outcome(&[("shadow:a", Kind::Shadow)], &[]),
            )
            .unwrap();
        let second = store.begin_run("run", None).unwrap();
        store
            .save_outcome(
                second,
                day("2026-11-30"),
                &keyed_outcome(
                    &[("shadow:a", Kind::Shadow), ("shadow:b", Kind::Shadow)],
                    &[],
                ),
            )
            .unwrap();

        let seen = store.first_seen(second).unwrap();

        assert_eq!(seen.len(), 2);
        assert_eq!(seen["shadow:a"], day("2026-11-23"));
        assert_eq!(seen["shadow:b"], day("2026-11-30"));
        assert_eq!(store.first_seen(first).unwrap().len(), 1);
    }

    #[test]
    fn the_previous_manifest_is_the_newest_earlier_report_and_a_report_is_found_by_its_dir() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_memory().unwrap();
        let first = store.begin_run("run", None).unwrap();
        let skipped = store.begin_run("run", None).unwrap();
        let third = store.begin_run("run", None).unwrap();
        store
            .set_report(first, &dir.path().join("one"), &"a1".repeat(32))
            .unwrap();
        store
            .set_report(third, &dir.path().join("three"), &"c3".repeat(32))
            .unwrap();

        assert_eq!(store.previous_manifest(first).unwrap(), None);
        assert_eq!(
            store.previous_manifest(third).unwrap(),
            Some((first, "a1".repeat(32)))
        );
        assert_eq!(
            store.previous_manifest(skipped).unwrap(),
            Some((first, "a1".repeat(32)))
        );
        assert_eq!(
            store.report_record(&dir.path().join("three")).unwrap(),
            Some((third, "c3".repeat(32)))
        );
        std::fs::create_dir(dir.path().join("one")).unwrap();
        std::fs::create_dir(dir.path().join("three")).unwrap();
        let dotted = dir.path().join("one").join("..").join("three");
        assert_eq!(
            store.report_record(&dotted).unwrap().map(|r| r.0),
            Some(third),
            "the same directory by another path"
        );
        assert_eq!(store.report_record(&dir.path().join("two")).unwrap(), None);
    }

    #[test]
    fn interrupted_runs_are_marked_failed() {
        let store = Store::open_in_memory().unwrap();
        let run = store.begin_run("run", None).unwrap();
        assert_eq!(store.fail_interrupted_runs().unwrap(), 1);
        let row = store.run(run).unwrap().unwrap();
        assert_eq!(row.status, "failed");
    }

    /// A store of runs 1 to 6: complete, incomplete, complete, complete, incomplete, and
    /// one still running (its snapshot incomplete so far); each with a snapshot of one account and, when complete, one
    /// finding and a report. Run `i` started `days[i - 1]` days before `now`.
    fn six_runs(days: [i64; 6], now: DateTime<Utc>) -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let complete = [true, false, true, true, false, false];
        for (i, is_complete) in complete.into_iter().enumerate() {
            let run = store.begin_run("run", None).unwrap();
            let completeness = if is_complete {
                Completeness::Complete
            } else {
                Completeness::Incomplete {
                    reason: "page failed".into(),
                }
            };
            let id = format!("acct{}", i + 1);
            store
                .save_snapshot(run, "u", now, &fetched(&[&id], completeness))
                .unwrap();
            if is_complete {
                let findings = crate::reconcile::drift(&[], &[account(&id, true)], "run 1");
                let outcome = Outcome {
                    partial: Default::default(),
                    findings,
                    counts: [(Kind::Drift, Some(1))].into_iter().collect(),
                    seats: Default::default(),
                    resolved: Default::default(),
                    not_evaluated: Default::default(),
                };
                store.save_outcome(run, now.date_naive(), &outcome).unwrap();
                store
                    .set_report(
                        run,
                        Path::new(&format!("reports/r{run}")),
                        &format!("sha{run}"),
                    )
                    .unwrap();
            }
            if i < 5 {
                let status = if is_complete {
                    "complete"
                } else {
                    "incomplete"
                };
                store.finish_run(run, status, None, 0).unwrap();
            }
            let started = (now - chrono::Duration::days(days[i])).to_rfc3339();
            store
                .conn
                .execute(
                    "UPDATE runs SET started_at = ?2 WHERE id = ?1",
                    params![run, started],
                )
                .unwrap();
        }
        store
    }

    fn count(store: &Store, sql: &str) -> i64 {
        store.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn pruned_ids(pruned: &[Pruned]) -> Vec<i64> {
        pruned.iter().map(|p| p.run_id).collect()
    }

    #[test]
    fn retention_by_count_prunes_exactly_the_older_runs_and_keeps_their_history() {
        let now = Utc::now();
        let mut store = six_runs([0; 6], now);
        let history_before = count(&store, "SELECT count(*) FROM finding_history");
        let retention = Retention {
            keep_runs: Some(2),
            keep_days: None,
        };
        let pruned = store.prune(retention, now).unwrap();
        // Runs 6 and 5 are the newest two; run 4 holds the newest complete snapshot, the
        // next run's baseline, and is kept whatever the limits say.
        assert_eq!(pruned_ids(&pruned), [1, 2, 3]);
        assert_eq!(
            pruned[0].report_dir.as_deref(),
            Some(Path::new("reports/r1"))
        );
        for run in 1..=6 {
            let row = store.run(run).unwrap().unwrap();
            let snapshot = store.snapshot(row.snapshot_id.unwrap()).unwrap().unwrap();
            let accounts = store.accounts(snapshot.id).unwrap().len();
            let findings = count(
                &store,
                &format!("SELECT count(*) FROM findings WHERE run_id = {run}"),
            );
            if run <= 3 {
                assert!(row.pruned && snapshot.pruned, "run {run} is pruned");
                assert_eq!((accounts, findings), (0, 0), "run {run}'s data is gone");
            } else {
                assert!(!row.pruned && !snapshot.pruned, "run {run} is kept");
                assert_eq!(accounts, 1, "run {run} keeps its accounts");
            }
            // Kept for every run: the snapshot's counts and the manifest hash.
            assert_eq!(
                snapshot.accounts, 1,
                "run {run}'s snapshot row keeps its count"
            );
        }
        let manifests = count(
            &store,
            "SELECT count(*) FROM runs WHERE manifest_sha256 IS NOT NULL",
        );
        assert_eq!(manifests, 3, "every complete run's manifest hash is kept");
        assert_eq!(
            count(&store, "SELECT count(*) FROM finding_history"),
            history_before
        );
        assert_eq!(store.integrity_check().unwrap(), "ok");
        assert!(
            store.prune(retention, now).unwrap().is_empty(),
            "a second pass has nothing left to prune"
        );
    }

    #[test]
    fn retention_by_age_keeps_runs_started_within_keep_days() {
        let now = Utc::now();
        let mut store = six_runs([40, 31, 30, 20, 10, 0], now);
        let retention = Retention {
            keep_runs: None,
            keep_days: Some(30),
        };
        // Run 3 started exactly 30 days ago: within the limit.
        assert_eq!(pruned_ids(&store.prune(retention, now).unwrap()), [1, 2]);
    }

    #[test]
    fn with_both_limits_a_run_is_kept_when_either_keeps_it() {
        let now = Utc::now();
        let mut store = six_runs([40, 35, 33, 32, 31, 0], now);
        let retention = Retention {
            keep_runs: Some(3),
            keep_days: Some(30),
        };
        // Kept by count: 6, 5, 4. Kept by age: 6. Nothing else is within 30 days.
        assert_eq!(pruned_ids(&store.prune(retention, now).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn without_limits_nothing_is_pruned() {
        let now = Utc::now();
        let mut store = six_runs([400; 6], now);
        assert!(store.prune(Retention::default(), now).unwrap().is_empty());
    }

    #[test]
    fn a_pruned_snapshot_is_never_the_baseline_of_drift() {
        let now = Utc::now();
        let mut store = six_runs([0; 6], now);
        store
            .prune(
                Retention {
                    keep_runs: Some(1),
                    keep_days: None,
                },
                now,
            )
            .unwrap();
        // Run 6 (snapshot 6) is running; its previous complete snapshot was 4, kept as
        // the baseline; before 4, every complete snapshot is pruned and none is offered.
        assert_eq!(store.previous_complete_snapshot(6).unwrap().unwrap().id, 4);
        assert!(store.previous_complete_snapshot(4).unwrap().is_none());
    }

    #[test]
    fn a_reader_refuses_a_store_that_needs_migrating_and_never_creates_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        assert!(matches!(
            Store::open_existing(&path),
            Err(StoreError::Missing { .. })
        ));
        assert!(!path.exists(), "reading must not create the store");
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        drop(conn);
        let err = Store::open_existing(&path).err().unwrap();
        assert!(
            matches!(err, StoreError::NeedsMigration { found: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("migrates it"), "{err}");
    }

    #[test]
    fn a_reader_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        let reader = Store::open_existing(&path).unwrap();
        assert!(reader.begin_run("run", None).is_err());
    }

    fn leaver(id: &str) -> Finding {
        Finding {
            kind: Kind::TerminatedActive,
            severity: crate::reconcile::Severity::Critical,
            key: format!("terminated_active:{id}"),
            account_id: Some(id.into()),
            docker_id: None,
            email: Some(format!("{id}@example.test")),
            name: None,
            role: None,
            team: None,
            person_email: None,
            person_status: Some("SUSPENDED".into()),
            match_basis: String::new(),
            reason: String::new(),
            evidence: std::collections::BTreeMap::from([(
                "termination_date".to_string(),
                "2026-11-01".to_string(),
            )]),
            exception: None,
            first_seen: None,
            days_open: None,
        }
    }

    fn outcome(findings: Vec<Finding>) -> Outcome {
        Outcome {
            partial: Default::default(),
            findings,
            counts: Kind::ALL.iter().map(|k| (*k, Some(0))).collect(),
            seats: Default::default(),
            not_evaluated: Default::default(),
            resolved: Vec::new(),
        }
    }

    /// A run with a complete snapshot of `accounts` (id, active), reconciled on `as_of`
    /// with `findings`.
    fn reconciled_run(
        store: &mut Store,
        accounts: &[(&str, bool)],
        as_of: &str,
        findings: Vec<Finding>,
    ) -> i64 {
        let run = store.begin_run("run", Some(day(as_of))).unwrap();
        let fetched = Fetched {
            accounts: accounts
                .iter()
                .map(|(id, active)| (account(id, *active), "{}".to_string()))
                .collect(),
            total_results: Some(accounts.len() as u64),
            pages: 1,
            completeness: Completeness::Complete,
        };
        store.save_snapshot(run, "u", Utc::now(), &fetched).unwrap();
        store
            .save_outcome(run, day(as_of), &outcome(findings))
            .unwrap();
        run
    }

    #[test]
    fn a_finding_open_over_several_runs_counts_its_days_from_the_first() {
        let mut store = Store::open_in_memory().unwrap();
        reconciled_run(&mut store, &[("a", true)], "2026-11-10", vec![leaver("a")]);
        let second = reconciled_run(&mut store, &[("a", true)], "2026-11-24", vec![leaver("a")]);
        let found = store.outcome(second).unwrap().unwrap();
        assert_eq!(found.findings[0].first_seen, Some(day("2026-11-10")));
        assert_eq!(found.findings[0].days_open, Some(14));
        assert!(found.resolved.is_empty());
    }

    // Regression: a leaver removed from SCIM but still a member of the organization was
    // reported as deprovisioned ("account removed") while the same run listed the person
    // as not_provisioned.
    #[test]
    fn a_leaver_out_of_scim_but_still_a_member_is_not_deprovisioned() {
        let mut store = Store::open_in_memory().unwrap();
        reconciled_run(&mut store, &[("a", true)], "2026-11-10", vec![leaver("a")]);
        let mut member = leaver("a");
        member.kind = Kind::NotProvisioned;
        member.key = "not_provisioned:a".into();
        member.account_id = None;
        let second = reconciled_run(&mut store, &[], "2026-11-17", vec![member]);
        let resolved = store.outcome(second).unwrap().unwrap().resolved;
        assert_eq!(resolved.len(), 1);
        let r = &resolved[0];
        assert_eq!(r.key, "terminated_active:a");
        assert_eq!(
            r.account_now.as_deref(),
            Some(crate::reconcile::STILL_A_MEMBER)
        );
        assert_eq!(r.days_to_deprovision, None, "no time to deprovision");
    }

    #[test]
    fn a_resolved_leaver_shows_the_time_to_deprovision_from_the_termination_date() {
        let mut store = Store::open_in_memory().unwrap();
        reconciled_run(&mut store, &[("a", true)], "2026-11-10", vec![leaver("a")]);
        let second = reconciled_run(&mut store, &[("a", false)], "2026-11-17", vec![]);
        let resolved = store.outcome(second).unwrap().unwrap().resolved;
        assert_eq!(resolved.len(), 1);
        let r = &resolved[0];
        assert_eq!(r.key, "terminated_active:a");
        assert_eq!(r.first_seen, Some(day("2026-11-10")));
        assert_eq!(r.last_seen, Some(day("2026-11-10")));
        assert_eq!(r.resolved_on, Some(day("2026-11-17")));
        assert_eq!(r.days_open, Some(7));
        assert_eq!(r.days_to_deprovision, Some(16));
        assert_eq!(
            r.deprovision_counted_from.as_deref(),
            Some("termination date")
        );
        assert_eq!(r.account_now.as_deref(), Some("deactivated"));
    }

    #[test]
    fn a_leaver_resolved_while_the_account_stays_active_is_no_deprovisioning() {
        let mut store = Store::open_in_memory().unwrap();
        reconciled_run(&mut store, &[("a", true)], "2026-11-10", vec![leaver("a")]);
        let second = reconciled_run(&mut store, &[("a", true)], "2026-11-17", vec![]);
        let r = &store.outcome(second).unwrap().unwrap().resolved[0];
        assert_eq!(r.account_now.as_deref(), Some("active"));
        assert_eq!(r.days_to_deprovision, None);

        let third = reconciled_run(&mut store, &[], "2026-11-18", vec![]);
        assert!(
            store.outcome(third).unwrap().unwrap().resolved.is_empty(),
            "resolved once, listed once"
        );
    }

    #[test]
    fn a_finding_that_comes_back_after_it_was_resolved_starts_a_new_open_period() {
        let mut store = Store::open_in_memory().unwrap();
        reconciled_run(&mut store, &[("a", true)], "2026-11-01", vec![leaver("a")]);
        reconciled_run(&mut store, &[("a", false)], "2026-11-08", vec![]);
        let third = reconciled_run(&mut store, &[("a", true)], "2026-11-15", vec![leaver("a")]);
        let found = store.outcome(third).unwrap().unwrap();
        assert_eq!(found.findings[0].first_seen, Some(day("2026-11-15")));
        assert_eq!(found.findings[0].days_open, Some(0));
    }

    #[test]
    fn a_kind_not_evaluated_in_a_run_resolves_none_of_its_findings() {
        let mut store = Store::open_in_memory().unwrap();
        reconciled_run(&mut store, &[("a", true)], "2026-11-10", vec![leaver("a")]);
        let run = store.begin_run("run", Some(day("2026-11-17"))).unwrap();
        let mut blind = outcome(vec![]);
        blind.counts.insert(Kind::TerminatedActive, None);
        store.save_outcome(run, day("2026-11-17"), &blind).unwrap();
        assert!(store.resolved(run).unwrap().is_empty());
    }

    // Regression: leavers found through the members list were resolved by a run that
    // could not read that list.
    #[test]
    fn a_kind_checked_in_part_resolves_none_of_its_findings_and_is_kept_as_partial() {
        let mut store = Store::open_in_memory().unwrap();
        reconciled_run(&mut store, &[("a", true)], "2026-11-10", vec![leaver("a")]);
        let run = store.begin_run("run", Some(day("2026-11-17"))).unwrap();
        let mut part = outcome(vec![]);
        part.counts.insert(Kind::TerminatedActive, Some(0));
        part.partial
            .insert(Kind::TerminatedActive, "the members list failed".into());
        store.save_outcome(run, day("2026-11-17"), &part).unwrap();
        assert!(store.resolved(run).unwrap().is_empty());
        let loaded = store.outcome(run).unwrap().unwrap();
        assert_eq!(loaded.partial, part.partial);
    }

    // Regression: a `-wal` file that was a symlink had its target's mode changed.
    #[cfg(unix)]
    #[test]
    fn a_symlinked_wal_file_is_not_followed_to_change_its_target() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.txt");
        std::fs::write(&target, b"x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = dir.path().join("hub.db");
        std::os::unix::fs::symlink(&target, dir.path().join("hub.db-wal")).unwrap();
        create_private(&store).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}
