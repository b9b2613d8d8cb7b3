//! The trial store: one SQLite file (rusqlite, SQLite bundled), WAL mode,
//! foreign keys on, `synchronous = FULL` (a committed trial survives power
//! loss), the schema versioned by `PRAGMA user_version` with ordered
//! migrations, and `PRAGMA application_id` marking the file as ours.
//!
//! Crash safety: the console writes a trial when it starts (`running`) and
//! updates it when it ends; the next console session turns every `running`
//! trial it finds into `aborted` ([`TrialStore::recover_unfinished`]), so a
//! crash or power loss never loses a trial and never counts one as a success.
//!
//! Refused with a clear error (exit 2 at the CLI), nothing written: a file
//! that is not an SQLite database or fails `quick_check`, another
//! application's database, a schema newer than this build knows, a
//! database another process keeps locked, and a second console on the same
//! store (an exclusive `flock` on `<db>.console-lock`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ToSql};
use serde::Serialize;

/// `PRAGMA application_id` of an mvla trial store ("mvla").
pub const APPLICATION_ID: i32 = 0x6d76_6c61;

/// How long a statement waits for another connection's lock before the
/// store reports it as locked (a report running beside the console holds
/// read transactions of milliseconds; 2 s is far beyond that).
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The schema, one migration per version: `MIGRATIONS[i]` takes the schema
/// from version i to i + 1. Never edit a released migration; append one.
const MIGRATIONS: &[&str] = &[
    // v1
    "CREATE TABLE plans (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        file TEXT,
        seed INTEGER NOT NULL,
        created_utc TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('console', 'sim')),
        started_utc TEXT NOT NULL,
        ended_utc TEXT,
        host TEXT,
        config_path TEXT,
        plan_id TEXT REFERENCES plans(id)
    );
    CREATE TABLE trials (
        id INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        plan_id TEXT REFERENCES plans(id),
        plan_index INTEGER,
        plan_total INTEGER,
        scenario TEXT NOT NULL,
        boxes INTEGER,
        side TEXT,
        pattern TEXT,
        distance TEXT,
        simulated INTEGER NOT NULL CHECK (simulated IN (0, 1)),
        started_utc TEXT NOT NULL,
        started_mono_ns INTEGER NOT NULL,
        ended_utc TEXT,
        ended_mono_ns INTEGER,
        duration_s REAL,
        status TEXT NOT NULL CHECK (status IN ('running', 'success', 'failure', 'aborted')),
        failure_code TEXT CHECK (failure_code IS NULL OR failure_code IN
            ('FORWARD_BIAS', 'WRONG_DIR', 'EARLY_STOP', 'DRIFT', 'GROUNDING_FAIL', 'COLLISION', 'OTHER')),
        ended_by TEXT,
        note TEXT,
        operator TEXT,
        robot_id TEXT,
        model_digest TEXT NOT NULL,
        model_dir TEXT NOT NULL,
        backend TEXT NOT NULL,
        config_digest TEXT,
        mvla_version TEXT NOT NULL,
        git_commit TEXT,
        episodes TEXT,
        session_log_path TEXT,
        session_log_sha256 TEXT,
        frames INTEGER,
        inferences INTEGER,
        latency_p50_ms REAL,
        latency_p99_ms REAL,
        chunk_age_p50_ms REAL,
        chunk_age_p99_ms REAL,
        ticks_nominal INTEGER,
        ticks_degraded INTEGER,
        ticks_hold INTEGER,
        ticks_stop INTEGER,
        ticks_estop INTEGER,
        deadline_misses INTEGER,
        link_errors INTEGER,
        final_x_m REAL,
        final_y_m REAL,
        final_yaw_rad REAL,
        trajectory TEXT,
        CHECK ((status = 'failure') = (failure_code IS NOT NULL))
    );
    CREATE INDEX trials_by_scenario ON trials(scenario);
    CREATE INDEX trials_by_status ON trials(status);",
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("trial store {path}: no such file (a console or `mvla sim trials --db` creates it)")]
    Missing { path: String },
    #[error("trial store {path}: not a readable SQLite database (corrupt, or another kind of file); left as it is")]
    NotADatabase {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("trial store {path}: an SQLite database of another application (application_id {found:#x}, mvla's is {APPLICATION_ID:#x}); left as it is")]
    Foreign { path: String, found: i32 },
    #[error("trial store {path}: schema version {found} is newer than this mvla knows ({SCHEMA_VERSION}); use a newer mvla, nothing was changed")]
    NewerSchema { path: String, found: i64 },
    #[error("trial store {path}: schema version {found} is older than this mvla's ({SCHEMA_VERSION}); open it once with `mvla trial` (or `mvla sim trials --db`) to migrate it, then report")]
    OlderSchema { path: String, found: i64 },
    #[error("trial store {path}: integrity check failed: {detail}; left as it is")]
    Corrupt { path: String, detail: String },
    #[error("trial store {path}: locked by another process (held for over {}s); is another console or tool writing it?", BUSY_TIMEOUT.as_secs())]
    Locked {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("trial store {path}: another `mvla trial` console has it open (lock {lock})")]
    SecondConsole { path: String, lock: String },
    #[error("trial store {path}: {what}")]
    Sql {
        path: String,
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("trial store {path}: {what}")]
    Io {
        path: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("trial store {path}: trial {id} is not running (ended already, or no such trial)")]
    NotRunning { path: String, id: i64 },
}

impl StoreError {
    /// Errors about the file given (exit 2) rather than a failure while
    /// working (exit 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(
            self,
            Self::Sql { .. } | Self::Io { .. } | Self::NotRunning { .. }
        )
    }
}

/// What an opener intends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The operator console: creates the file if missing, takes the console
    /// lock, recovers unfinished trials.
    Console,
    /// A batch writer (`mvla sim trials --db`): creates the file if missing,
    /// writes finished trials only.
    Writer,
    /// Reports: the file must exist.
    Read,
}

macro_rules! trial_row {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        /// One trial, as stored (every column of `trials` but `id`, which is
        /// the field of that name).
        #[derive(Debug, Clone, Default, PartialEq, Serialize)]
        pub struct TrialRow {
            pub id: i64,
            $($(#[$doc])* pub $name: $ty,)*
        }

        impl TrialRow {
            /// The stored columns, in order (not `id`).
            pub const COLUMNS: &'static [&'static str] = &[$(stringify!($name),)*];

            fn params(&self) -> Vec<&dyn ToSql> {
                vec![$(&self.$name as &dyn ToSql,)*]
            }

            fn from_row(row: &rusqlite::Row) -> rusqlite::Result<Self> {
                Ok(Self {
                    id: row.get("id")?,
                    $($name: row.get(stringify!($name))?,)*
                })
            }
        }
    };
}

trial_row! {
    session_id: String,
    plan_id: Option<String>,
    /// 1-based position in the plan's randomised order.
    plan_index: Option<i64>,
    plan_total: Option<i64>,
    scenario: String,
    boxes: Option<i64>,
    side: Option<String>,
    pattern: Option<String>,
    distance: Option<String>,
    /// The world was the simulator's.
    simulated: bool,
    started_utc: String,
    /// CLOCK_MONOTONIC at the start (ns; orders trials within a boot).
    started_mono_ns: i64,
    ended_utc: Option<String>,
    ended_mono_ns: Option<i64>,
    duration_s: Option<f64>,
    /// running / success / failure / aborted ([`super::Status`]).
    status: String,
    failure_code: Option<String>,
    /// operator / time_limit / judge / quit / recovered.
    ended_by: Option<String>,
    note: Option<String>,
    operator: Option<String>,
    robot_id: Option<String>,
    model_digest: String,
    model_dir: String,
    /// The policy backend as the controller described it (tract / TensorRT with engine names).
    backend: String,
    config_digest: Option<String>,
    mvla_version: String,
    git_commit: Option<String>,
    /// JSON `[{"path", "sha256", "rows"}, …]`: the HDF5 episodes recorded
    /// (one, or more when the frame source started a new episode mid-trial).
    episodes: Option<String>,
    session_log_path: Option<String>,
    session_log_sha256: Option<String>,
    frames: Option<i64>,
    inferences: Option<i64>,
    /// Capture → chunk.
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    chunk_age_p50_ms: Option<f64>,
    chunk_age_p99_ms: Option<f64>,
    ticks_nominal: Option<i64>,
    ticks_degraded: Option<i64>,
    ticks_hold: Option<i64>,
    ticks_stop: Option<i64>,
    ticks_estop: Option<i64>,
    deadline_misses: Option<i64>,
    link_errors: Option<i64>,
    final_x_m: Option<f64>,
    final_y_m: Option<f64>,
    final_yaw_rad: Option<f64>,
    /// JSON `[[t_s, x_m, y_m, yaw_rad], …]` where the base reports poses.
    trajectory: Option<String>,
}

impl TrialRow {
    pub fn status(&self) -> Option<super::Status> {
        super::Status::parse(&self.status)
    }
}

#[derive(Debug, Clone, Default)]
pub struct SessionRow {
    pub id: String,
    /// "console" or "sim".
    pub kind: &'static str,
    pub started_utc: String,
    pub host: Option<String>,
    pub config_path: Option<String>,
    pub plan_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PlanRow {
    pub id: String,
    pub name: String,
    pub file: Option<String>,
    pub seed: u64,
    pub created_utc: String,
    /// The plan file's text (or the command line's scenarios as TOML).
    pub body: String,
}

/// Report filters; every one optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// `started_utc` ≥ this (ISO-8601 prefix compare, e.g. "2026-12-01").
    pub since: Option<String>,
    /// `started_utc` < this.
    pub until: Option<String>,
    /// Shell-style glob over the scenario name.
    pub scenario_glob: Option<String>,
    /// Model digest prefix.
    pub model: Option<String>,
    pub plan_id: Option<String>,
    pub simulated: Option<bool>,
}

pub struct TrialStore {
    conn: Connection,
    path: PathBuf,
    /// Held for a console's lifetime (released by the kernel if it dies).
    _console_lock: Option<std::fs::File>,
}

impl std::fmt::Debug for TrialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrialStore")
            .field("path", &self.path)
            .finish()
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl TrialStore {
    pub fn open(path: &Path, access: Access) -> Result<Self, StoreError> {
        let p = path.display().to_string();
        let exists = path.exists();
        if access == Access::Read && !exists {
            return Err(StoreError::Missing { path: p });
        }
        if exists && !path.is_file() {
            return Err(StoreError::Io {
                path: p,
                what: "not a regular file".into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        let console_lock = match access {
            Access::Console => Some(take_console_lock(path)?),
            _ => None,
        };
        // A report only reads (a store it may not write, a read-only copy).
        let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
            | match access {
                Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
                _ => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            };
        let conn = Connection::open_with_flags(path, flags).map_err(|source| StoreError::Sql {
            path: p.clone(),
            what: "open".into(),
            source,
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|source| StoreError::Sql {
                path: p.clone(),
                what: "busy timeout".into(),
                source,
            })?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
            _console_lock: console_lock,
        };
        store.check_and_migrate(access)?;
        // A file that claims our schema version must have its columns.
        let mut want = vec!["id".to_string()];
        want.extend(TrialRow::COLUMNS.iter().map(|c| c.to_string()));
        let have = store.table_columns()?;
        if have != want {
            let missing: Vec<&String> = want.iter().filter(|c| !have.contains(c)).collect();
            let extra: Vec<&String> = have.iter().filter(|c| !want.contains(c)).collect();
            return Err(StoreError::Corrupt {
                path: p,
                detail: format!(
                    "table trials does not have schema v{SCHEMA_VERSION}'s columns (missing {missing:?}, extra {extra:?}, or another order)"
                ),
            });
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, what: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        let what = what.to_string();
        move |source| {
            if is_busy(&source) {
                StoreError::Locked {
                    path: self.path.display().to_string(),
                    source,
                }
            } else {
                StoreError::Sql {
                    path: self.path.display().to_string(),
                    what: what.clone(),
                    source,
                }
            }
        }
    }

    /// Identify the file, refuse what is not ours or too new, then bring
    /// the schema up to date in one transaction.
    fn check_and_migrate(&self, access: Access) -> Result<(), StoreError> {
        let p = || self.path.display().to_string();
        // The first reads of the file: a non-database fails here.
        fn first_read<T: rusqlite::types::FromSql>(
            store: &TrialStore,
            sql: &str,
        ) -> Result<T, StoreError> {
            store
                .conn
                .query_row(sql, [], |r| r.get(0))
                .map_err(|source| {
                    let path = store.path.display().to_string();
                    if is_busy(&source) {
                        StoreError::Locked { path, source }
                    } else {
                        StoreError::NotADatabase { path, source }
                    }
                })
        }
        let app = first_read::<i64>(self, "PRAGMA application_id")? as i32;
        let version: i64 = first_read(self, "PRAGMA user_version")?;
        let objects: i64 = first_read(self, "PRAGMA schema_version")?;
        let check: String = first_read(self, "PRAGMA quick_check")?;
        if check != "ok" {
            return Err(StoreError::Corrupt {
                path: p(),
                detail: check,
            });
        }
        let empty = objects == 0 && app == 0 && version == 0;
        if !empty && app != APPLICATION_ID {
            return Err(StoreError::Foreign {
                path: p(),
                found: app,
            });
        }
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: p(),
                found: version,
            });
        }
        if access == Access::Read {
            if version < SCHEMA_VERSION {
                return Err(StoreError::OlderSchema {
                    path: p(),
                    found: version,
                });
            }
            return Ok(());
        }
        // WAL: readers (a report during a session) never block the console's writes.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(self.err("journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("trial store {}: journal mode {mode}, not WAL", p());
        }
        self.conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
            .map_err(self.err("pragmas"))?;
        if version < SCHEMA_VERSION {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(self.err("begin migration"))?;
            let migrated = (|| -> Result<(), StoreError> {
                // Read again under the write lock: another writer may have
                // migrated between the first read and BEGIN IMMEDIATE.
                let version: i64 = self
                    .conn
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(self.err("schema version"))?;
                if version > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: p(),
                        found: version,
                    });
                }
                for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                    self.conn
                        .execute_batch(sql)
                        .map_err(self.err(&format!("migration to schema v{}", i + 1)))?;
                }
                self.conn
                    .execute_batch(&format!(
                        "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};"
                    ))
                    .map_err(self.err("schema version"))?;
                Ok(())
            })();
            match migrated {
                Ok(()) => self
                    .conn
                    .execute_batch("COMMIT")
                    .map_err(self.err("commit migration"))?,
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Mark every trial left `running` (a crash or power loss of an earlier
    /// console) `aborted`; returns how many. Only a console calls this: it
    /// holds the console lock, so no other console's trial is running.
    pub fn recover_unfinished(&self, now_utc: &str) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE trials SET status = 'aborted', ended_by = 'recovered', ended_utc = ?1,
                 note = trim(coalesce(note, '') || ' [unfinished when its session ended (crash or power loss); recovered as aborted]')
                 WHERE status = 'running'",
                [now_utc],
            )
            .map_err(self.err("recovering unfinished trials"))
    }

    pub fn insert_plan(&self, plan: &PlanRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO plans (id, name, file, seed, created_utc, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![plan.id, plan.name, plan.file, plan.seed as i64, plan.created_utc, plan.body],
            )
            .map_err(self.err("inserting the plan"))?;
        Ok(())
    }

    pub fn begin_session(&self, s: &SessionRow) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO sessions (id, kind, started_utc, host, config_path, plan_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![s.id, s.kind, s.started_utc, s.host, s.config_path, s.plan_id],
            )
            .map_err(self.err("inserting the session"))?;
        Ok(())
    }

    pub fn end_session(&self, id: &str, ended_utc: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE sessions SET ended_utc = ?1 WHERE id = ?2",
                [ended_utc, id],
            )
            .map_err(self.err("ending the session"))?;
        Ok(())
    }

    fn insert_sql() -> String {
        let cols = TrialRow::COLUMNS.join(", ");
        let marks: Vec<String> = (1..=TrialRow::COLUMNS.len())
            .map(|i| format!("?{i}"))
            .collect();
        format!("INSERT INTO trials ({cols}) VALUES ({})", marks.join(", "))
    }

    /// Write a trial (normally `running`, at its start); returns its id.
    pub fn insert_trial(&self, row: &TrialRow) -> Result<i64, StoreError> {
        self.conn
            .execute(
                &Self::insert_sql(),
                rusqlite::params_from_iter(row.params()),
            )
            .map_err(self.err("inserting a trial"))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Write the whole row of a running trial (its end); refuses a trial
    /// that is not `running` any more.
    pub fn end_trial(&self, row: &TrialRow) -> Result<(), StoreError> {
        let sets: Vec<String> = TrialRow::COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = ?{}", i + 1))
            .collect();
        let sql = format!(
            "UPDATE trials SET {} WHERE id = ?{} AND status = 'running'",
            sets.join(", "),
            TrialRow::COLUMNS.len() + 1
        );
        let mut params = row.params();
        params.push(&row.id);
        let n = self
            .conn
            .execute(&sql, rusqlite::params_from_iter(params))
            .map_err(self.err("ending a trial"))?;
        if n != 1 {
            return Err(StoreError::NotRunning {
                path: self.path.display().to_string(),
                id: row.id,
            });
        }
        Ok(())
    }

    /// Add a note to a stored trial (the console's note between trials).
    pub fn append_note(&self, id: i64, text: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE trials SET note = CASE WHEN note IS NULL OR note = '' THEN ?1 ELSE note || '; ' || ?1 END WHERE id = ?2",
                rusqlite::params![text, id],
            )
            .map_err(self.err("adding a note"))?;
        Ok(())
    }

    pub fn trial(&self, id: i64) -> Result<Option<TrialRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM trials WHERE id = ?1")
            .map_err(self.err("reading a trial"))?;
        let mut rows = stmt
            .query_map([id], TrialRow::from_row)
            .map_err(self.err("reading a trial"))?;
        rows.next().transpose().map_err(self.err("reading a trial"))
    }

    /// Trials matching `f`, oldest first.
    pub fn trials(&self, f: &Filter) -> Result<Vec<TrialRow>, StoreError> {
        let mut sql = "SELECT * FROM trials WHERE 1".to_string();
        let mut args: Vec<Box<dyn ToSql>> = Vec::new();
        // `clause` has one `{}` where the argument's placeholder goes.
        let mut cond = |clause: &str, v: Box<dyn ToSql>| {
            args.push(v);
            sql += &format!(" AND {}", clause.replace("{}", &format!("?{}", args.len())));
        };
        if let Some(s) = &f.since {
            cond("started_utc >= {}", Box::new(s.clone()));
        }
        if let Some(s) = &f.until {
            cond("started_utc < {}", Box::new(s.clone()));
        }
        if let Some(g) = &f.scenario_glob {
            cond("scenario GLOB {}", Box::new(g.clone()));
        }
        if let Some(m) = &f.model {
            cond("instr(model_digest, {}) = 1", Box::new(m.clone()));
        }
        if let Some(p) = &f.plan_id {
            cond("plan_id = {}", Box::new(p.clone()));
        }
        if let Some(s) = f.simulated {
            cond("simulated = {}", Box::new(s));
        }
        sql += " ORDER BY started_utc, started_mono_ns, id";
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(self.err("querying trials"))?;
        let rows = stmt
            .query_map(
                rusqlite::params_from_iter(args.iter().map(|b| b.as_ref())),
                TrialRow::from_row,
            )
            .map_err(self.err("querying trials"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(self.err("reading trials"))
    }

    /// The columns of the `trials` table as the database has them.
    pub fn table_columns(&self) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name FROM pragma_table_info('trials') ORDER BY cid")
            .map_err(self.err("table info"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err("table info"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(self.err("table info"))
    }
}

fn take_console_lock(db: &Path) -> Result<std::fs::File, StoreError> {
    use std::os::fd::AsRawFd;
    // One lock per file, whatever path (symlink, `..`) names it.
    let canonical = match (db.parent(), db.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(db)
                .or_else(|_| std::fs::canonicalize(dir).map(|d| d.join(name)))
                .unwrap_or_else(|_| db.to_path_buf())
        }
        _ => db.to_path_buf(),
    };
    let mut name = canonical.as_os_str().to_owned();
    name.push(".console-lock");
    let lock = PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|source| StoreError::Io {
            path: db.display().to_string(),
            what: format!("console lock {}", lock.display()),
            source,
        })?;
    // SAFETY: flock on a descriptor we own; LOCK_NB never blocks. The lock
    // goes with the descriptor (kernel-released when the process dies).
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(StoreError::SecondConsole {
            path: db.display().to_string(),
            lock: lock.display().to_string(),
        });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn row(scenario: &str, status: &str) -> TrialRow {
        TrialRow {
            session_id: "s1".into(),
            scenario: scenario.into(),
            started_utc: "2026-12-02T10:00:00Z".into(),
            status: status.into(),
            failure_code: (status == "failure").then(|| "COLLISION".into()),
            model_digest: "abc123".into(),
            model_dir: "m".into(),
            backend: "tract (CPU)".into(),
            mvla_version: "0.1.0".into(),
            ..Default::default()
        }
    }

    fn session(store: &TrialStore) {
        store
            .begin_session(&SessionRow {
                id: "s1".into(),
                kind: "console",
                started_utc: "2026-12-02T10:00:00Z".into(),
                ..Default::default()
            })
            .unwrap();
    }

    #[test]
    fn the_struct_and_the_table_have_the_same_columns() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrialStore::open(&dir.path().join("t.sqlite"), Access::Writer).unwrap();
        let mut want = vec!["id".to_string()];
        want.extend(TrialRow::COLUMNS.iter().map(|c| c.to_string()));
        assert_eq!(store.table_columns().unwrap(), want);
    }

    #[test]
    fn a_trial_round_trips_and_ends_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrialStore::open(&dir.path().join("t.sqlite"), Access::Console).unwrap();
        session(&store);
        let mut r = row("1box_hori_left_core_medium", "running");
        r.id = store.insert_trial(&r).unwrap();
        r.status = "success".into();
        r.final_x_m = Some(1.5);
        store.end_trial(&r).unwrap();
        assert_eq!(store.trial(r.id).unwrap().unwrap(), r);
        // A second end of the same trial is refused.
        assert!(matches!(
            store.end_trial(&r),
            Err(StoreError::NotRunning { .. })
        ));
    }

    #[test]
    fn the_schema_refuses_a_failure_without_a_code_and_an_unknown_status() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrialStore::open(&dir.path().join("t.sqlite"), Access::Writer).unwrap();
        session(&store);
        let mut r = row("x", "failure");
        r.failure_code = None;
        assert!(store.insert_trial(&r).is_err());
        assert!(store.insert_trial(&row("x", "won")).is_err());
        let mut r = row("x", "success");
        r.session_id = "no such session".into();
        assert!(store.insert_trial(&r).is_err(), "foreign keys are on");
    }

    #[test]
    fn filters_select_by_scenario_model_and_date() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrialStore::open(&dir.path().join("t.sqlite"), Access::Writer).unwrap();
        session(&store);
        let mut a = row("1box_hori_left_core_medium", "success");
        a.model_digest = "aaaa11".into();
        let mut b = row("2box_hori_right_core_far", "failure");
        b.started_utc = "2026-12-03T09:00:00Z".into();
        store.insert_trial(&a).unwrap();
        store.insert_trial(&b).unwrap();
        let n = |f: Filter| store.trials(&f).unwrap().len();
        assert_eq!(n(Filter::default()), 2);
        let one = |set: fn(&mut Filter)| {
            let mut f = Filter::default();
            set(&mut f);
            n(f)
        };
        assert_eq!(one(|f| f.scenario_glob = Some("1box_*".into())), 1);
        assert_eq!(one(|f| f.model = Some("aaaa".into())), 1);
        assert_eq!(one(|f| f.since = Some("2026-12-03".into())), 1);
        assert_eq!(one(|f| f.until = Some("2026-12-03".into())), 1);
        assert_eq!(one(|f| f.simulated = Some(true)), 0);
    }
}
