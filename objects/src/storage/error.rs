//! `StorageError`: the one error type of the storage engine, and the mapping
//! from SQLite's result codes onto it.
//!
//! Not here: what the sdk shows an object author (the worker converts) or
//! which wire status an error becomes.

use std::path::PathBuf;

/// Everything a storage call can fail with. Messages are lowercase and carry
/// the numbers, so a log line alone says what was over which limit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("key is {bytes} bytes, limit {limit}")]
    KeyTooLarge { bytes: usize, limit: usize },
    #[error("value is {bytes} bytes, limit {limit}")]
    ValueTooLarge { bytes: usize, limit: usize },
    #[error("batch has {keys} keys, limit {limit}")]
    BatchTooLarge { keys: usize, limit: usize },
    #[error("list limit is 0, it must be at least 1")]
    ListLimitZero,
    #[error("list options start and start_after cannot be combined")]
    StartWithStartAfter,
    #[error("sql value is {bytes} bytes, limit {limit}")]
    SqlValueTooLarge { bytes: usize, limit: usize },
    /// SQLite's own `SQLITE_TOOBIG`: a string, blob or row built inside SQL
    /// went past the limit; SQLite does not say by how much.
    #[error("sql string, blob or row is over the limit of {limit} bytes")]
    SqlRowTooLarge { limit: usize },
    #[error("database is full, limit {limit} bytes")]
    DatabaseFull { limit: u64 },
    #[error("not authorized: {what}")]
    NotAuthorized { what: String },
    #[error("query has {expected} parameters, {given} given")]
    ParameterCount { expected: usize, given: usize },
    #[error("only the last statement of a query may take parameters")]
    ParametersNotLast,
    #[error("an event transaction is already open")]
    EventAlreadyOpen,
    #[error("no event transaction is open")]
    NoEvent,
    #[error("no transaction_sync block is open")]
    NoSavepoint,
    #[error("cannot end the event inside {depth} open transaction_sync blocks")]
    EventInsideTransactionSync { depth: usize },
    /// SQLite rolled the event's transaction back by itself after an error
    /// (disk full, I/O); continuing would autocommit the rest of the event.
    #[error("the event transaction was rolled back by sqlite after an earlier error")]
    EventAborted,
    /// The fsync that makes a commit durable failed; the commit may or may
    /// not be on disk, so the database must be closed.
    #[error("cannot sync the commit to disk: {0}")]
    Sync(#[source] std::io::Error),
    #[error("cannot create storage directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // The inner error's text is part of the message (not a `source`) so the
    // one line an object author sees says what went wrong.
    #[error("json: {0}")]
    Json(serde_json::Error),
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

impl StorageError {
    /// True when the fault is the engine's or the machine's, not the object
    /// code's: the runtime should reset the object rather than only fail the
    /// event.
    pub fn is_internal(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Self::EventAborted | Self::CreateDir { .. } => true,
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::SystemIoFailure
                    | C::DatabaseCorrupt
                    | C::NotADatabase
                    | C::CannotOpen
                    | C::OutOfMemory
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::FileLockingProtocolFailed
            ),
            _ => false,
        }
    }
}

/// Turns a SQLite error into the variant that names the limit when SQLite's
/// code says which limit was hit; `denial` is what the authorizer last
/// refused, if anything.
pub(crate) fn from_sqlite(
    err: rusqlite::Error,
    limits: &super::StorageLimits,
    denial: Option<String>,
) -> StorageError {
    use rusqlite::ErrorCode as C;
    if let rusqlite::Error::SqliteFailure(e, ref msg) = err {
        match e.code {
            C::AuthorizationForStatementDenied => {
                let what = denial
                    .or_else(|| msg.clone())
                    .unwrap_or_else(|| "statement refused".to_owned());
                return StorageError::NotAuthorized { what };
            }
            C::DiskFull => {
                return StorageError::DatabaseFull {
                    limit: limits.max_database_bytes,
                }
            }
            C::TooBig => {
                return StorageError::SqlRowTooLarge {
                    limit: limits.max_sql_value_bytes,
                }
            }
            _ => {}
        }
    }
    StorageError::Sqlite(err)
}
