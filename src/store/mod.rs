//! The store: every SQL statement in `recall` lives under this module.
//!
//! SQLite (bundled) is the embedded default: WAL, a busy timeout so a second
//! process waits instead of failing, foreign keys on, and versioned
//! migrations applied when a store is opened. Callers see typed rows and
//! intent-named methods, never SQL, so a PostgreSQL store for clinic chains
//! can implement the same methods later.
//!
//! Submodules group the methods by who calls them: [`scan`] reads facts for
//! ticks, [`ticks`] writes tick results, [`outbox`] serves the dispatcher,
//! [`ingest`] adds customers and their history, [`queries`] answers `status`
//! and `log`.

pub mod attribution;
pub mod health;
pub mod import;
pub mod ingest;
mod migrations;
pub mod models;
pub mod onboarding;
pub mod outbox;
pub mod privacy;
pub mod queries;
pub mod record;
pub mod report;
pub mod scan;
pub mod shared;
pub mod simulate;
pub mod story;
pub mod tasks;
pub mod ticks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::base::clock::Timestamp;
use crate::base::perm;

/// How long a statement waits for another writer before giving up, unless
/// `RECALL_BUSY_TIMEOUT` (a duration such as "5s") says otherwise. Past it,
/// the service tries again with backoff; one-shot commands fail.
fn busy_timeout() -> Duration {
    std::env::var("RECALL_BUSY_TIMEOUT")
        .ok()
        .and_then(|text| humantime::parse_duration(text.trim()).ok())
        .unwrap_or(Duration::from_secs(60))
}

/// Errors at the store's boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} has schema version {found}, newer than this recall knows ({known}): upgrade recall"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("the database {path} does not exist: run `recall init` first")]
    Missing { path: PathBuf },
    #[error(
        "a tick at {at} would go back in time: the last tick ran at {last}; ticks must move forward"
    )]
    TimeBackwards { at: String, last: String },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
}

pub type Result<T> = std::result::Result<T, StoreError>;

impl StoreError {
    /// Another connection held the database past the busy timeout: worth
    /// trying again later, unlike a broken or missing database.
    pub fn is_busy(&self) -> bool {
        let source = match self {
            StoreError::Sql(e) | StoreError::Open { source: e, .. } => e,
            _ => return false,
        };
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

/// A connection to the database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub fn create(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // The database's folder is the owner's alone, whatever the umask.
            perm::create_dir(dir, perm::PRIVATE_FOLDER).map_err(|source| {
                StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                }
            })?;
        }
        Self::open_with(path, OpenFlags::default())
    }

    /// Opens an existing database and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::open_with(path, OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE)
    }

    fn open_with(path: &Path, flags: OpenFlags) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        // Customers' personal data: the owner only. SQLite gives the -wal and
        // -shm files the database file's mode.
        make_private(path);
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// A second connection to the same database, for reading a consistent
    /// snapshot while this one writes.
    pub fn reader(&self) -> Result<scan::Reader> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open {
            path: self.path.clone(),
            source,
        })?;
        conn.busy_timeout(busy_timeout())?;
        stable_plans(&conn)?;
        conn.pragma_update(None, "cache_size", -32_768)?;
        Ok(scan::Reader::new(conn))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Copies every page in the write-ahead log into the database file and
    /// empties the log (`wal_checkpoint(TRUNCATE)`), so erased data is not
    /// left in old page versions of either file. Another process reading
    /// at that moment can keep the log from being emptied; the next
    /// checkpoint finishes the job. Returns whether the log was emptied.
    pub fn checkpoint(&self) -> Result<bool> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// The schema version this build writes.
    pub fn schema_version() -> i64 {
        migrations::MIGRATIONS.len() as i64
    }

    fn migrate(&mut self) -> Result<()> {
        let known = Self::schema_version();
        let found: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found,
                known,
            });
        }
        if found == known {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Re-read inside the write lock: another process may have migrated.
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (index, sql) in migrations::MIGRATIONS
            .iter()
            .enumerate()
            .skip(found as usize)
        {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The clinic with this code, created with these details if missing.
    /// Returns its id.
    pub fn ensure_clinic(
        &self,
        code: &str,
        name: &str,
        timezone: &str,
        now: Timestamp,
    ) -> Result<i64> {
        let existing: Option<(i64, String, String)> = self
            .conn
            .query_row(
                "SELECT id, name, timezone FROM clinics WHERE code = ?1",
                [code],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((id, stored_name, stored_timezone)) = existing {
            // An UPDATE takes the write lock even when it changes nothing:
            // only write when something changed, so starting on a database
            // another process is writing needs no lock.
            if stored_name != name || stored_timezone != timezone {
                self.conn.execute(
                    "UPDATE clinics SET name = ?2, timezone = ?3 WHERE id = ?1",
                    params![id, name, timezone],
                )?;
            }
            return Ok(id);
        }
        self.conn.execute(
            "INSERT INTO clinics (code, name, timezone, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![code, name, timezone, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }
}

impl Store {
    /// Copies the database to `target` with SQLite's online backup: a
    /// consistent copy while other connections keep working.
    pub fn backup_to(&self, target: &Path) -> Result<()> {
        let mut copy = Connection::open(target).map_err(|source| StoreError::Open {
            path: target.to_path_buf(),
            source,
        })?;
        let backup = rusqlite::backup::Backup::new(&self.conn, &mut copy)?;
        backup.run_to_completion(1024, Duration::from_millis(0), None)?;
        drop(backup);
        // A copy that cannot be read is no backup.
        let check: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(StoreError::Sql(rusqlite::Error::InvalidQuery));
        }
        Ok(())
    }
}

/// What a [`ProcessLock`] guards. One holder per database at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// Running ticks: two processes must not judge the same customers at once.
    Tick,
    /// Dispatching: there is one dispatcher per database, so the one that
    /// starts may requeue messages a crashed dispatcher left in `sending`.
    Dispatch,
}

/// Held while a process ticks or dispatches; released when dropped (or when
/// the process dies: the operating system releases the lock).
#[derive(Debug)]
pub struct ProcessLock {
    file: std::fs::File,
}

impl ProcessLock {
    /// Writes this process's id into the lock file, so `recall reload` can
    /// find the service.
    pub fn record_pid(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        self.file.set_len(0)?;
        self.file.seek(std::io::SeekFrom::Start(0))?;
        write!(self.file, "{}", std::process::id())?;
        self.file.flush()
    }
}

impl Store {
    fn lock_path(&self, kind: LockKind) -> PathBuf {
        let suffix = match kind {
            LockKind::Tick => "tick.lock",
            LockKind::Dispatch => "dispatch.lock",
        };
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{suffix}"));
        PathBuf::from(name)
    }

    /// The process id the holder of a lock recorded, if any.
    pub fn lock_holder(&self, kind: LockKind) -> Option<u32> {
        std::fs::read_to_string(self.lock_path(kind))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Takes the lock of this kind for this database, or `None` if another
    /// process holds it.
    pub fn try_lock(&self, kind: LockKind) -> Result<Option<ProcessLock>> {
        let path = self.lock_path(kind);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, perm::PRIVATE_FILE);
        let file = options
            .open(&path)
            .map_err(|source| StoreError::CreateDir {
                path: path.clone(),
                source,
            })?;
        // A lock file an older version left to the umask is made private too.
        #[cfg(unix)]
        let _ = file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
            perm::PRIVATE_FILE,
        ));
        match file.try_lock() {
            Ok(()) => Ok(Some(ProcessLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => {
                Err(StoreError::CreateDir { path, source })
            }
        }
    }
}

/// Pragmas every connection that writes gets.
/// Creates the database file with mode 0600 if it is missing, and takes
/// group and other permissions off it and its -wal and -shm files if it is
/// not (databases made before recall did this). Best effort: a file owned
/// by another user is left as it is.
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if !path.exists()
            && path
                .parent()
                .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir())
        {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(PathBuf::from(name));
        }
        for file in files {
            if let Ok(meta) = std::fs::metadata(&file)
                && meta.is_file()
                && meta.permissions().mode() & 0o077 != 0
            {
                let mode = meta.permissions().mode() & 0o700;
                if let Err(e) =
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))
                {
                    tracing::warn!(file = %file.display(), error = %e,
                        "cannot make the database readable by its owner only");
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout())?;
    // Deleted and overwritten content is zeroed, not left in free space: a
    // forgotten customer's phone number must not be found in the file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // 8 KiB pages for new databases (a no-op on existing ones): measured on a
    // 1M-customer clinic, a daily tick takes a fifth less time than with 4 KiB.
    conn.pragma_update(None, "page_size", 8192)?;
    // Set only when it is not WAL yet: opening a database another process
    // is writing must not need anything but reads.
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    // FULL: a committed message status survives power loss, so a restart
    // never sends a message twice because its "sent" was lost.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache: a tick's inserts touch index pages all over the
    // customer-ordered indexes, and the default 2 MiB thrashes on big clinics.
    conn.pragma_update(None, "cache_size", -65_536)?;
    stable_plans(conn)?;
    Ok(())
}

/// One query plan per statement, whatever values are bound to it (SQLite's
/// query planner stability guarantee). Without it SQLite plans some
/// statements for the values bound at the time (a parameter that is 0 or
/// 1, a constant a partial index names) and prepares them again whenever a
/// value changes; rusqlite's statement cache clears the values each time a
/// statement is handed back, so such statements were prepared anew on
/// every use. Measured: an import's upsert and attribution's queries spent
/// more than half their time in the SQL parser.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_applies_migrations_and_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/recall.db");
        let store = Store::create(&path).unwrap();
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, Store::schema_version());
        let mode: String = store
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = store
            .conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        drop(store);
        // Reopening is a no-op migration.
        Store::open(&path).unwrap();
    }

    #[test]
    fn open_refuses_a_missing_database() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(&dir.path().join("nope.db")).unwrap_err();
        assert!(err.to_string().contains("recall init"), "{err}");
    }

    #[test]
    fn open_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let store = Store::create(&path).unwrap();
        store.conn.pragma_update(None, "user_version", 999).unwrap();
        drop(store);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 999, .. })
        ));
    }

    #[test]
    fn transitions_are_append_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("r.db")).unwrap();
        let clinic = store
            .ensure_clinic("main", "诊所", "Asia/Shanghai", 0)
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        let id = ingest
            .add_customer(clinic, &ingest::NewCustomer::named("C1", "王丽"), 100)
            .unwrap();
        ingest.commit().unwrap();
        let err = store
            .conn
            .execute(
                "UPDATE transitions SET to_pool = 'churned' WHERE customer_id = ?1",
                [id],
            )
            .unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
    }

    #[test]
    fn outreach_takes_the_cancelled_expired_and_stale_statuses_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let mut store = Store::create(&path).unwrap();
        let clinic = store
            .ensure_clinic("main", "诊所", "Asia/Shanghai", 0)
            .unwrap();
        let mut ingest = store.ingest().unwrap();
        let id = ingest
            .add_customer(clinic, &ingest::NewCustomer::named("C1", "王丽"), 100)
            .unwrap();
        ingest.commit().unwrap();
        let insert = |conn: &Connection, status: &str| {
            conn.execute(
                "INSERT INTO outreach (customer_id, rule_id, action_index, pool, channel, template,
                    content, status, created_at, due_at, updated_at)
                 VALUES (?1, 'r', 0, 'new', 'sms', 't', 'x', ?2, 0, 0, 0)",
                params![id, status],
            )
        };
        // On this connection (reloaded after the migration) and on a new one.
        insert(&store.conn, "cancelled").unwrap();
        insert(&store.conn, "expired").unwrap();
        insert(&store.conn, "stale").unwrap();
        assert!(insert(&store.conn, "bogus").is_err());
        drop(store);
        let again = Store::open(&path).unwrap();
        insert(&again.conn, "expired").unwrap();
        insert(&again.conn, "stale").unwrap();
        assert!(insert(&again.conn, "bogus").is_err());
        let check: String = again
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    #[test]
    fn locks_are_exclusive_per_kind_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let a = Store::create(&path).unwrap();
        let b = Store::open(&path).unwrap();
        let tick = a.try_lock(LockKind::Tick).unwrap();
        assert!(tick.is_some());
        assert!(b.try_lock(LockKind::Tick).unwrap().is_none());
        assert!(b.try_lock(LockKind::Dispatch).unwrap().is_some());
        drop(tick);
        assert!(b.try_lock(LockKind::Tick).unwrap().is_some());
    }

    #[test]
    fn ensure_clinic_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(&dir.path().join("r.db")).unwrap();
        let a = store
            .ensure_clinic("main", "A", "Asia/Shanghai", 0)
            .unwrap();
        let b = store
            .ensure_clinic("main", "B", "Asia/Shanghai", 0)
            .unwrap();
        assert_eq!(a, b);
    }
}
