//! Per-object storage: one SQLite file per object, holding a hidden KV table
//! and whatever tables the object's own SQL creates, behind the limits and
//! the authorizer of Durable Objects' SQLite-backed storage.
//!
//! [`Storage`] is synchronous and thread-confined: the worker owns one per
//! live object and runs that object's events one at a time. The runtime
//! brackets every event with [`Storage::begin_event`] and
//! [`Storage::commit_event`] (or [`Storage::rollback_event`] when the handler
//! fails), which gives the implicit transaction of the output gate: every KV
//! and SQL call in between is one atomic, durable commit. Outside an event
//! each call commits on its own (SQLite autocommit; batch calls are still
//! atomic). Not here: scheduling, alarms, billing ledgers, or any async.
//!
//! [`Storage::commit_event_unsynced`] splits the commit from its fsync
//! ([`PendingSync`]), so that a worker can wait for the disk on another
//! thread while it runs other objects' events: the fsyncs of many objects
//! then overlap, and the file system commits them together.

mod alarm;
mod authorizer;
mod error;
mod kv;
mod spares;
mod sql;

pub use authorizer::RESERVED_PREFIX;
pub use error::StorageError;
pub use kv::ListOptions;
pub use spares::Spares;
pub use sql::{Cursor, SqlValue};

use authorizer::AuthState;
use rusqlite::config::DbConfig;
use rusqlite::hooks::Wal;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags};
use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a statement waits on a lock held by another connection (a
/// backup or an inspection tool, or the object's previous connection still
/// closing) before failing. An object's open database is locked for as long
/// as it is open, so such tools see it once the object hibernates.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL frames past which a commit is followed by a checkpoint: SQLite's own
/// default, which the WAL hook below takes over.
const AUTOCHECKPOINT_FRAMES: i32 = 1000;

thread_local! {
    /// Set around an unsynced COMMIT: the WAL hook must not checkpoint then
    /// (synchronous is OFF, so the checkpoint would not fsync), only note.
    static DEFERRING: Cell<bool> = const { Cell::new(false) };
    /// Frames in the WAL after the last unsynced COMMIT that wrote any.
    static FRAMES_WRITTEN: Cell<Option<i32>> = const { Cell::new(None) };
}

/// Runs after every commit that wrote WAL frames, on the committing thread.
/// Replaces SQLite's autocheckpoint hook, which would checkpoint inside an
/// unsynced commit without fsyncing the database file before it resets the
/// WAL.
fn wal_committed(wal: &Wal, frames: i32) -> rusqlite::Result<()> {
    if DEFERRING.with(Cell::get) {
        FRAMES_WRITTEN.with(|written| written.set(Some(frames)));
    } else if frames >= AUTOCHECKPOINT_FRAMES {
        // As SQLite's own hook: a checkpoint that cannot run now (a reader
        // holds the WAL) runs after a later commit.
        let _ = wal.checkpoint();
    }
    Ok(())
}

/// The fsyncs that make an unsynced commit durable: its WAL frames, and the
/// directory entry of a WAL file created since the database was opened.
/// Holds its own file descriptors, so the database may close meanwhile.
#[must_use = "the commit is not durable until sync returns"]
#[derive(Debug)]
pub struct PendingSync {
    wal: File,
    dir: Option<File>,
}

impl PendingSync {
    /// Blocks until the commit is on disk.
    pub fn sync(self) -> std::io::Result<()> {
        self.wal.sync_data()?;
        if let Some(dir) = self.dir {
            dir.sync_all()?;
        }
        Ok(())
    }
}

/// Storage limits of one object; `Default` is DESIGN's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Keys per `get_many`/`put_many`/`delete_many`.
    pub max_batch_keys: usize,
    /// Largest string, blob or row in SQL (SQLite's `SQLITE_LIMIT_LENGTH`).
    pub max_sql_value_bytes: usize,
    pub max_database_bytes: u64,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 2048,
            max_value_bytes: 128 * 1024,
            max_batch_keys: 128,
            max_sql_value_bytes: 2_000_000,
            max_database_bytes: 10_000_000_000,
        }
    }
}

/// Rows read and written since the storage was opened, summed over KV and
/// SQL calls, including calls whose event later rolled back (the work was
/// done). What one call adds is documented on [`Cursor`] and in `kv.rs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub rows_read: u64,
    pub rows_written: u64,
}

/// One object's open database. Dropping it closes the file, so a hibernated
/// object holds no file descriptor. Drop it only between events (or after
/// [`Storage::rollback_event`]): an event leaves synchronous OFF until it
/// ends, and the checkpoint of a close must fsync.
pub struct Storage {
    conn: Connection,
    auth: Arc<AuthState>,
    limits: StorageLimits,
    path: PathBuf,
    /// The tables exist and are committed; a new file gets them inside its
    /// first event, so that they cost no commit of their own.
    has_schema: bool,
    /// The directory has been fsynced since the WAL could have been created.
    dir_synced: bool,
    event_open: bool,
    /// Open `transaction_sync` blocks; each is a SAVEPOINT named by depth.
    savepoint_depth: usize,
    counts: RowCounts,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("path", &self.conn.path())
            .field("event_open", &self.event_open)
            .field("savepoint_depth", &self.savepoint_depth)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// Opens (creating if missing) the object's database at `path`, with its
    /// parent directories.
    pub fn open(path: &Path, limits: StorageLimits) -> Result<Storage, StorageError> {
        let mut storage = Self::open_file(path, limits)?;
        storage.ensure_schema()?;
        Ok(storage)
    }

    /// [`Self::open`], then [`Self::begin_event`]: a new file's tables are
    /// created inside the event's transaction and commit with its writes,
    /// one WAL commit where a separate schema commit would cost another.
    pub fn open_in_event(path: &Path, limits: StorageLimits) -> Result<Storage, StorageError> {
        let mut storage = Self::open_file(path, limits)?;
        storage.begin_event()?;
        Ok(storage)
    }

    fn open_file(path: &Path, limits: StorageLimits) -> Result<Storage, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // No SQLITE_OPEN_URI: the path is a file name, never a URI that could
        // carry its own options.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(StorageError::Sqlite)?;
        Self::configure(&conn, &limits).map_err(|e| error::from_sqlite(e, &limits, None))?;
        // Installed last, so the setup above needs no exemption.
        let auth = AuthState::install(&conn);
        Ok(Storage {
            conn,
            auth,
            limits,
            path: path.to_path_buf(),
            has_schema: false,
            dir_synced: false,
            event_open: false,
            savepoint_depth: 0,
            counts: RowCounts::default(),
        })
    }

    fn configure(conn: &Connection, limits: &StorageLimits) -> rusqlite::Result<()> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Room for every `list` variant (up to 32) next to the other KV and
        // savepoint statements.
        conn.set_prepared_statement_cache_capacity(64);
        // Switching a new file to WAL writes its header through a rollback
        // journal, fsynced (synchronous is FULL by default): the header must
        // be on disk before any WAL frame is, or recovery would find a
        // database of zero pages and delete the WAL.
        // Before the first access: in WAL mode SQLite then keeps the WAL
        // index in the connection's memory instead of a shared-memory
        // file, which saves a file, its descriptor and its mmap per open
        // database, and holds the file lock between transactions instead
        // of taking it for each one. One instance per object means one
        // connection per file; another opener waits (busy timeout) until
        // the object closes it.
        conn.pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |r| r.get::<_, String>(0))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        // FULL: a WAL commit fsyncs before it returns, which is what the
        // output gate promises before releasing an event's messages. An
        // event's commit turns it OFF and fsyncs by itself instead
        // (`commit_event_unsynced`); checkpoints always run under FULL.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.wal_hook(Some(wal_committed));
        // Durable Objects turns foreign keys on; object code may turn them off.
        conn.pragma_update(None, "foreign_keys", true)?;
        // Refuses writable_schema, shadow-table writes and other ways SQL
        // could corrupt the file, beneath the authorizer.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let max_pages = limits.max_database_bytes / u64::try_from(page_size.max(1)).unwrap_or(1);
        conn.pragma_update_and_check(None, "max_page_count", max_pages.max(1), |r| {
            r.get::<_, i64>(0)
        })?;
        let length = i32::try_from(limits.max_sql_value_bytes).unwrap_or(i32::MAX);
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length)?;
        Ok(())
    }

    /// Creates the engine's tables if they are missing: in the open
    /// transaction if there is one, else in one commit of their own. On an
    /// existing file it writes nothing.
    fn ensure_schema(&mut self) -> Result<(), StorageError> {
        if self.has_schema {
            return Ok(());
        }
        let _internal = self.auth.internal();
        self.conn
            .execute_batch(
                "SAVEPOINT _torpor_schema;
                CREATE TABLE IF NOT EXISTS _torpor_kv(
                    key TEXT COLLATE BINARY PRIMARY KEY,
                    value BLOB NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS _torpor_alarm(
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    at_ms INTEGER NOT NULL
                );
                RELEASE _torpor_schema;",
            )
            .map_err(|e| self.sql_error(e))?;
        // Inside an event the tables are only there once it commits.
        self.has_schema = self.conn.is_autocommit();
        Ok(())
    }

    /// Closes the file, reporting what dropping would swallow. An open
    /// event is rolled back first.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.rollback_event()?;
        self.conn.close().map_err(|(_, e)| StorageError::Sqlite(e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn limits(&self) -> &StorageLimits {
        &self.limits
    }

    pub fn row_counts(&self) -> RowCounts {
        self.counts
    }

    /// Opens the event's implicit transaction.
    pub fn begin_event(&mut self) -> Result<(), StorageError> {
        if self.event_open {
            return Err(StorageError::EventAlreadyOpen);
        }
        if !self.conn.is_autocommit() {
            // Only a transaction_sync that panicked outside an event leaves
            // this; nothing in it was ever reported committed.
            self.internal_sql("ROLLBACK")?;
            self.savepoint_depth = 0;
        }
        // Only outside a transaction may it change; back to FULL when the
        // event ends.
        self.internal_sql("PRAGMA synchronous=OFF")?;
        // IMMEDIATE takes the write lock now, so a lock conflict fails the
        // event before the handler runs rather than at its first write.
        if let Err(e) = self.internal_sql("BEGIN IMMEDIATE") {
            self.restore_synchronous();
            return Err(e);
        }
        self.event_open = true;
        if let Err(e) = self.ensure_schema() {
            let _ = self.rollback_event();
            return Err(e);
        }
        Ok(())
    }

    /// Commits the event; on `Ok` its writes are durable on disk. On `Err`
    /// they are rolled back and the event is over.
    pub fn commit_event(&mut self) -> Result<(), StorageError> {
        match self.commit_event_unsynced()? {
            Some(pending) => pending.sync().map_err(StorageError::Sync),
            None => Ok(()),
        }
    }

    /// Commits the event without waiting for the disk: its writes are
    /// visible at once, and durable once the returned [`PendingSync`] (none
    /// if the event wrote nothing) has synced. Until then nothing may be
    /// released that depends on them. If the sync fails, the database must
    /// be closed: SQLite holds the commit as done. On `Err` the writes are
    /// rolled back and the event is over.
    pub fn commit_event_unsynced(&mut self) -> Result<Option<PendingSync>, StorageError> {
        if !self.event_open {
            return Err(StorageError::NoEvent);
        }
        if self.savepoint_depth > 0 {
            return Err(StorageError::EventInsideTransactionSync {
                depth: self.savepoint_depth,
            });
        }
        self.event_open = false;
        if self.conn.is_autocommit() {
            self.after_rollback();
            return Err(StorageError::EventAborted);
        }
        DEFERRING.with(|d| d.set(true));
        FRAMES_WRITTEN.with(|f| f.set(None));
        let committed = self.internal_sql("COMMIT");
        DEFERRING.with(|d| d.set(false));
        let frames = FRAMES_WRITTEN.with(Cell::take);
        if let Err(e) = committed {
            if !self.conn.is_autocommit() {
                // Best effort: the commit error is the one to report.
                let _ = self.internal_sql("ROLLBACK");
            }
            self.after_rollback();
            return Err(e);
        }
        self.has_schema = true;
        self.restore_synchronous();
        let Some(frames) = frames else {
            return Ok(None);
        };
        if frames >= AUTOCHECKPOINT_FRAMES {
            // Under FULL again: it fsyncs the WAL, then the database file.
            let _internal = self.auth.internal();
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
        self.pending_sync().map(Some).map_err(StorageError::Sync)
    }

    fn pending_sync(&mut self) -> std::io::Result<PendingSync> {
        let mut wal_path = self.path.clone().into_os_string();
        wal_path.push("-wal");
        let wal = File::open(wal_path)?;
        let dir = match (self.dir_synced, self.path.parent()) {
            (false, Some(dir)) => {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                Some(File::open(dir)?)
            }
            _ => None,
        };
        // Once this sync has run the entry is durable; if it fails, the
        // caller closes the database, and a new `Storage` syncs again.
        self.dir_synced = true;
        Ok(PendingSync { wal, dir })
    }

    /// Back to FULL, so that what runs outside an event (autocommit calls,
    /// checkpoints, the checkpoint of a close) fsyncs as it did.
    fn restore_synchronous(&self) {
        if let Err(err) = self.internal_sql("PRAGMA synchronous=FULL") {
            tracing::warn!(%err, "cannot set synchronous back to FULL");
        }
    }

    /// After the event's transaction is gone: FULL again, and the tables
    /// the event would have created made now, for the calls outside events.
    fn after_rollback(&mut self) {
        self.restore_synchronous();
        if !self.has_schema {
            if let Err(err) = self.ensure_schema() {
                tracing::warn!(%err, "cannot create the storage tables");
            }
        }
    }

    /// Undoes everything since `begin_event`, including open
    /// `transaction_sync` blocks. Safe to call with no event open (as after
    /// a handler panic), when it rolls back whatever is open.
    pub fn rollback_event(&mut self) -> Result<(), StorageError> {
        self.event_open = false;
        self.savepoint_depth = 0;
        let rolled_back = if self.conn.is_autocommit() {
            Ok(())
        } else {
            self.internal_sql("ROLLBACK")
        };
        self.after_rollback();
        rolled_back
    }

    /// Runs `f` atomically: its writes are kept if it returns `Ok` and undone
    /// alone if it returns `Err`, while the surrounding event goes on. It is
    /// a SAVEPOINT, so it nests in the event and in other
    /// `transaction_sync` blocks; outside an event it commits on `Ok`.
    pub fn transaction_sync<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Storage) -> Result<T, E>,
        E: From<StorageError>,
    {
        self.begin_savepoint()?;
        match f(self) {
            Ok(value) => {
                self.end_savepoint(true)?;
                Ok(value)
            }
            Err(e) => {
                self.end_savepoint(false)?;
                Err(e)
            }
        }
    }

    /// The opening half of [`Self::transaction_sync`], for a caller that
    /// cannot hand over a closure (the sdk reaches storage anew on each
    /// call). Every call must be paired with one [`Self::end_savepoint`].
    pub fn begin_savepoint(&mut self) -> Result<(), StorageError> {
        self.check_event()?;
        let name = format!("_torpor_sp_{}", self.savepoint_depth);
        self.internal_sql(&format!("SAVEPOINT {name}"))?;
        self.savepoint_depth += 1;
        Ok(())
    }

    /// Closes the innermost block: keeps its writes if `commit`, else undoes
    /// them alone.
    pub fn end_savepoint(&mut self, commit: bool) -> Result<(), StorageError> {
        let depth = self
            .savepoint_depth
            .checked_sub(1)
            .ok_or(StorageError::NoSavepoint)?;
        self.savepoint_depth = depth;
        let name = format!("_torpor_sp_{depth}");
        if commit {
            return self.internal_sql(&format!("RELEASE {name}"));
        }
        if self.conn.is_autocommit() {
            // SQLite already rolled back the whole transaction (after a
            // full disk, say), savepoint included.
            return Ok(());
        }
        // ROLLBACK TO keeps the savepoint open; RELEASE then drops it.
        self.internal_sql(&format!("ROLLBACK TO {name}"))?;
        self.internal_sql(&format!("RELEASE {name}"))
    }

    /// [`Self::transaction_sync`] for the engine's own multi-statement calls.
    fn atomic<T>(
        &mut self,
        f: impl FnOnce(&mut Storage) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.transaction_sync(f)
    }

    /// Fails when SQLite has already rolled the event back by itself (after
    /// a full disk or I/O error): further writes would autocommit one by one
    /// and break the event's atomicity.
    fn check_event(&self) -> Result<(), StorageError> {
        if self.event_open && self.conn.is_autocommit() {
            return Err(StorageError::EventAborted);
        }
        Ok(())
    }

    /// Runs one statement of the engine's own, past the authorizer.
    fn internal_sql(&self, sql: &str) -> Result<(), StorageError> {
        let _internal = self.auth.internal();
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.raw_execute())
            .map(drop)
            .map_err(|e| self.sql_error(e))
    }

    fn sql_error(&self, e: rusqlite::Error) -> StorageError {
        error::from_sqlite(e, &self.limits, self.auth.take_denial())
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::{Storage, StorageLimits};

    pub(crate) fn open_temp() -> (tempfile::TempDir, Storage) {
        open_temp_with(StorageLimits::default())
    }

    pub(crate) fn open_temp_with(limits: StorageLimits) -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("Class/id.sqlite"), limits).unwrap();
        (dir, storage)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::open_temp;
    use super::*;

    fn count(s: &mut Storage) -> i64 {
        match s
            .exec("SELECT count(*) FROM t", &[])
            .unwrap()
            .one()
            .unwrap()[0]
        {
            SqlValue::Integer(n) => n,
            ref other => panic!("not an integer: {other:?}"),
        }
    }

    #[test]
    fn open_creates_parent_dirs_and_uses_wal() {
        let (dir, mut s) = open_temp();
        assert!(dir.path().join("Class/id.sqlite").exists());
        let _internal = s.auth.internal();
        let mode: String = s
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = s
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        drop(_internal);
        s.put("k", b"v").unwrap();
    }

    #[test]
    fn an_open_database_keeps_its_wal_index_in_memory_not_in_a_file() {
        let (dir, mut s) = open_temp();
        s.begin_event().unwrap();
        s.put("k", b"v").unwrap();
        s.commit_event().unwrap();
        let db = dir.path().join("Class/id.sqlite");
        assert!(dir.path().join("Class/id.sqlite-wal").exists());
        assert!(
            !dir.path().join("Class/id.sqlite-shm").exists(),
            "a shared-memory file costs every open database a file, a descriptor and a mapping"
        );
        // Another connection waits for the object's, as long as it is open.
        let other = Connection::open(&db).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        assert!(other
            .query_row("SELECT count(*) FROM _torpor_kv", [], |r| r
                .get::<_, i64>(0))
            .is_err());
        drop(s);
        let rows: i64 = other
            .query_row("SELECT count(*) FROM _torpor_kv", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn dropping_storage_closes_the_file() {
        let (dir, mut s) = open_temp();
        s.put("k", b"v").unwrap();
        let wal = dir.path().join("Class/id.sqlite-wal");
        assert!(wal.exists());
        drop(s);
        // The last connection's close checkpoints and removes the WAL.
        assert!(!wal.exists());
    }

    #[test]
    fn rollback_event_undoes_kv_and_sql_writes() {
        let (_dir, mut s) = open_temp();
        s.exec("CREATE TABLE t(a)", &[]).unwrap();
        s.begin_event().unwrap();
        s.put("k", b"v").unwrap();
        s.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
        s.rollback_event().unwrap();
        assert_eq!(s.get("k").unwrap(), None);
        assert_eq!(count(&mut s), 0);
    }

    #[test]
    fn commit_event_keeps_writes_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/id.sqlite");
        let mut s = Storage::open(&path, StorageLimits::default()).unwrap();
        s.begin_event().unwrap();
        s.put("k", b"v").unwrap();
        s.exec("CREATE TABLE t(a); INSERT INTO t VALUES (1)", &[])
            .unwrap();
        s.commit_event().unwrap();
        s.close().unwrap();
        let mut s = Storage::open(&path, StorageLimits::default()).unwrap();
        assert_eq!(s.get("k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(count(&mut s), 1);
    }

    #[test]
    fn a_deferred_foreign_key_fails_the_commit_and_rolls_the_event_back() {
        let (_dir, mut s) = open_temp();
        s.begin_event().unwrap();
        s.put("k", b"v").unwrap();
        // Checked at COMMIT: every statement succeeds, the commit does not.
        s.exec(
            "CREATE TABLE parents(id INTEGER PRIMARY KEY);
             CREATE TABLE children(parent REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED);
             INSERT INTO children VALUES (1);",
            &[],
        )
        .unwrap();
        assert!(s.commit_event().is_err());
        assert_eq!(s.get("k").unwrap(), None);
        assert!(s.exec("SELECT * FROM children", &[]).is_err());
        // The next event starts cleanly.
        s.begin_event().unwrap();
        s.put("k", b"w").unwrap();
        s.commit_event().unwrap();
        assert_eq!(s.get("k").unwrap(), Some(b"w".to_vec()));
    }

    #[test]
    fn transaction_sync_rolls_back_alone_while_the_event_commits() {
        let (_dir, mut s) = open_temp();
        s.begin_event().unwrap();
        s.exec("CREATE TABLE t(a)", &[]).unwrap();
        s.put("before", b"1").unwrap();
        let r: Result<(), StorageError> = s.transaction_sync(|tx| {
            tx.put("inside", b"2")?;
            tx.exec("INSERT INTO t VALUES (1)", &[])?;
            Err(StorageError::NoEvent)
        });
        assert!(r.is_err());
        s.transaction_sync(|tx| {
            tx.put("kept", b"3")?;
            // Nested blocks roll back on their own too.
            let inner: Result<(), StorageError> = tx.transaction_sync(|tx| {
                tx.put("nested", b"4")?;
                Err(StorageError::NoEvent)
            });
            assert!(inner.is_err());
            Ok::<_, StorageError>(())
        })
        .unwrap();
        s.commit_event().unwrap();
        assert_eq!(s.get("before").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get("inside").unwrap(), None);
        assert_eq!(s.get("nested").unwrap(), None);
        assert_eq!(s.get("kept").unwrap(), Some(b"3".to_vec()));
        assert_eq!(count(&mut s), 0);
    }

    #[test]
    fn event_calls_are_checked() {
        let (_dir, mut s) = open_temp();
        assert!(matches!(s.commit_event(), Err(StorageError::NoEvent)));
        s.begin_event().unwrap();
        assert!(matches!(
            s.begin_event(),
            Err(StorageError::EventAlreadyOpen)
        ));
        let r = s.transaction_sync(|tx| tx.commit_event());
        assert!(matches!(
            r,
            Err(StorageError::EventInsideTransactionSync { depth: 1 })
        ));
        s.commit_event().unwrap();
        s.rollback_event().unwrap();
        assert!(matches!(
            s.end_savepoint(true),
            Err(StorageError::NoSavepoint)
        ));
    }

    fn synchronous(s: &Storage) -> i64 {
        let _internal = s.auth.internal();
        s.conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn an_event_commits_unsynced_and_its_pending_sync_makes_it_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/id.sqlite");
        let mut s = Storage::open(&path, StorageLimits::default()).unwrap();
        assert_eq!(synchronous(&s), 2, "FULL outside events");
        s.begin_event().unwrap();
        assert_eq!(synchronous(&s), 0, "OFF inside: the commit does not fsync");
        s.put("k", b"v").unwrap();
        let pending = s.commit_event_unsynced().unwrap().expect("it wrote");
        assert_eq!(synchronous(&s), 2, "FULL again once the event is over");
        // The first commit since the open also syncs the WAL's directory
        // entry; later ones only the WAL.
        assert!(pending.dir.is_some());
        pending.sync().unwrap();
        s.begin_event().unwrap();
        s.put("k", b"w").unwrap();
        let pending = s.commit_event_unsynced().unwrap().expect("it wrote");
        assert!(pending.dir.is_none());
        pending.sync().unwrap();
        // An event that writes nothing has nothing to wait for.
        s.begin_event().unwrap();
        assert_eq!(s.get("k").unwrap(), Some(b"w".to_vec()));
        assert!(s.commit_event_unsynced().unwrap().is_none());
        s.close().unwrap();
        let mut s = Storage::open(&path, StorageLimits::default()).unwrap();
        assert_eq!(s.get("k").unwrap(), Some(b"w".to_vec()));
    }

    #[test]
    fn a_rolled_back_event_leaves_synchronous_full() {
        let (_dir, mut s) = open_temp();
        s.begin_event().unwrap();
        s.put("k", b"v").unwrap();
        s.rollback_event().unwrap();
        assert_eq!(synchronous(&s), 2);
    }

    #[test]
    fn a_new_database_gets_its_tables_in_its_first_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/id.sqlite");
        let mut s = Storage::open_in_event(&path, StorageLimits::default()).unwrap();
        s.put("k", b"v").unwrap();
        s.set_alarm(Some(7)).unwrap();
        s.commit_event().unwrap();
        s.close().unwrap();
        let mut s = Storage::open(&path, StorageLimits::default()).unwrap();
        assert_eq!(s.get("k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(s.alarm().unwrap(), Some(7));
    }

    #[test]
    fn a_failed_first_event_still_leaves_working_storage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/id.sqlite");
        let mut s = Storage::open_in_event(&path, StorageLimits::default()).unwrap();
        s.put("k", b"v").unwrap();
        s.rollback_event().unwrap();
        // Outside an event, as the runtime's alarm bookkeeping runs.
        assert_eq!(s.get("k").unwrap(), None);
        assert_eq!(s.alarm().unwrap(), None);
        s.set_alarm(None).unwrap();
        s.begin_event().unwrap();
        s.put("k", b"w").unwrap();
        s.commit_event().unwrap();
        assert_eq!(s.get("k").unwrap(), Some(b"w".to_vec()));
    }

    #[test]
    fn a_commit_past_the_checkpoint_threshold_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/id.sqlite");
        let mut s = Storage::open(&path, StorageLimits::default()).unwrap();
        let wal = dir.path().join("c/id.sqlite-wal");
        let value = vec![7u8; 100_000];
        // 25 values of ~25 pages each: past 1000 frames, a checkpoint
        // restarts the WAL, which then stays far below 1000 pages.
        for i in 0..60 {
            s.begin_event().unwrap();
            s.put(&format!("k{i}"), &value).unwrap();
            s.commit_event().unwrap();
        }
        let wal_pages = std::fs::metadata(&wal).unwrap().len() / 4096;
        assert!(wal_pages < 1100, "the WAL grew to {wal_pages} pages");
        let _internal = s.auth.internal();
        let (log, checkpointed): (i64, i64) = s
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert!(log < 1000 && checkpointed <= log, "{log} {checkpointed}");
    }

    #[test]
    fn split_savepoints_nest_like_transaction_sync() {
        let (_dir, mut s) = open_temp();
        s.begin_event().unwrap();
        s.begin_savepoint().unwrap();
        s.put("outer", b"1").unwrap();
        s.begin_savepoint().unwrap();
        s.put("inner", b"2").unwrap();
        s.end_savepoint(false).unwrap();
        s.end_savepoint(true).unwrap();
        s.commit_event().unwrap();
        assert_eq!(s.get("outer").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get("inner").unwrap(), None);
    }
}
