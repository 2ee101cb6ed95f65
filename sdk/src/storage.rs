//! An object's durable storage: a key-value API and SQL over the object's
//! own SQLite database.
//!
//! Every event runs in one implicit transaction: what a handler writes
//! commits when it returns `Ok`, and rolls back if it fails or panics. What
//! it sends to clients is held until that commit is durable (the output gate).

use crate::host::Host;
use crate::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Options of [`Storage::list`], as Durable Objects has them. Keys are
/// ordered by their UTF-8 bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only keys that start with this.
    pub prefix: Option<String>,
    /// Keys at or after this (not with `start_after`).
    pub start: Option<String>,
    /// Keys after this (not with `start`).
    pub start_after: Option<String>,
    /// Keys before this.
    pub end: Option<String>,
    /// Descending order.
    pub reverse: bool,
    /// At most this many keys (at least 1).
    pub limit: Option<usize>,
}

/// A value in SQL parameters and rows.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// INTEGER.
    Integer(i64),
    /// REAL.
    Real(f64),
    /// TEXT.
    Text(String),
    /// BLOB.
    Blob(Vec<u8>),
}

impl From<i64> for SqlValue {
    fn from(v: i64) -> SqlValue {
        SqlValue::Integer(v)
    }
}
impl From<f64> for SqlValue {
    fn from(v: f64) -> SqlValue {
        SqlValue::Real(v)
    }
}
impl From<&str> for SqlValue {
    fn from(v: &str) -> SqlValue {
        SqlValue::Text(v.to_owned())
    }
}
impl From<String> for SqlValue {
    fn from(v: String) -> SqlValue {
        SqlValue::Text(v)
    }
}
impl From<i32> for SqlValue {
    fn from(v: i32) -> SqlValue {
        SqlValue::Integer(v.into())
    }
}
impl From<u32> for SqlValue {
    fn from(v: u32) -> SqlValue {
        SqlValue::Integer(v.into())
    }
}
impl From<bool> for SqlValue {
    fn from(v: bool) -> SqlValue {
        SqlValue::Integer(v.into())
    }
}
impl From<&[u8]> for SqlValue {
    fn from(v: &[u8]) -> SqlValue {
        SqlValue::Blob(v.to_vec())
    }
}
impl From<Vec<u8>> for SqlValue {
    fn from(v: Vec<u8>) -> SqlValue {
        SqlValue::Blob(v)
    }
}
impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> SqlValue {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// The result of [`Sql::exec`]: all rows, with what the statement cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cursor {
    /// Column names of the result.
    pub column_names: Vec<String>,
    /// The rows.
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows read, as billed.
    pub rows_read: u64,
    /// Rows written, as billed.
    pub rows_written: u64,
}

impl Cursor {
    /// The only row; an error unless there is exactly one.
    pub fn one(&self) -> Result<&[SqlValue]> {
        match self.rows.as_slice() {
            [row] => Ok(row),
            rows => Err(crate::Error::Storage(format!(
                "expected exactly one row, got {}",
                rows.len()
            ))),
        }
    }

    /// The rows, owned.
    pub fn to_vec(&self) -> Vec<Vec<SqlValue>> {
        self.rows.clone()
    }

    /// Each row as a `T`, from an object keyed by column name.
    pub fn rows_as<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.rows
            .iter()
            .map(|row| {
                let object: serde_json::Map<String, serde_json::Value> = self
                    .column_names
                    .iter()
                    .cloned()
                    .zip(row.iter().map(to_json))
                    .collect();
                Ok(serde_json::from_value(serde_json::Value::Object(object))?)
            })
            .collect()
    }
}

fn to_json(value: &SqlValue) -> serde_json::Value {
    match value {
        SqlValue::Null => serde_json::Value::Null,
        SqlValue::Integer(i) => (*i).into(),
        SqlValue::Real(f) => serde_json::Number::from_f64(*f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        SqlValue::Text(s) => s.clone().into(),
        SqlValue::Blob(b) => b.iter().map(|&x| serde_json::Value::from(x)).collect(),
    }
}

/// What the runtime does for storage calls. Not for object authors.
#[doc(hidden)]
pub trait StorageBackend {
    fn get(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>>;
    fn put(&self, entries: &[(&str, &[u8])]) -> Result<()>;
    fn delete(&self, keys: &[&str]) -> Result<usize>;
    fn list(&self, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>>;
    fn delete_all(&self) -> Result<()>;
    fn exec(&self, query: &str, params: &[SqlValue]) -> Result<Cursor>;
    fn database_size(&self) -> Result<u64>;
    fn savepoint(&self) -> Result<()>;
    fn alarm(&self) -> Result<Option<u64>>;
    fn set_alarm(&self, at_ms: Option<u64>) -> Result<()>;
    fn release(&self, commit: bool) -> Result<()>;
}

/// The object's storage; from [`State::storage`](crate::State::storage).
#[derive(Clone)]
pub struct Storage {
    host: Rc<dyn Host>,
}

impl Storage {
    pub(crate) fn new(host: Rc<dyn Host>) -> Storage {
        Storage { host }
    }

    fn backend(&self) -> Result<&dyn StorageBackend> {
        self.host.storage()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.backend()?.get(&[key])?.pop().map(|(_, v)| v))
    }

    /// The value under `key`, deserialized from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get(key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Up to 128 keys at once; absent keys are left out.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
        self.backend()?.get(keys)
    }

    /// Stores `value` under `key` (keys up to 2 KiB, values up to 128 KiB).
    pub fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        self.backend()?.put(&[(key, value)])
    }

    /// Stores `value` as JSON.
    pub fn put_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        self.put(key, &bytes)
    }

    /// Up to 128 entries at once, atomically.
    pub fn put_many(&self, entries: &[(&str, &[u8])]) -> Result<()> {
        self.backend()?.put(entries)
    }

    /// Removes `key`; whether it was there.
    pub fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.backend()?.delete(&[key])? > 0)
    }

    /// Removes up to 128 keys; how many were there.
    pub fn delete_many(&self, keys: &[&str]) -> Result<usize> {
        self.backend()?.delete(keys)
    }

    /// Keys and values in order, per `options`.
    pub fn list(&self, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>> {
        self.backend()?.list(options)
    }

    /// Removes everything the object stored, atomically: every key, and
    /// every table, view and trigger its SQL created (indexes go with their
    /// tables). The alarm is kept; [`delete_alarm`](Self::delete_alarm)
    /// removes it. Like every write, it takes effect when the event
    /// commits.
    pub fn delete_all(&self) -> Result<()> {
        self.backend()?.delete_all()
    }

    /// When the alarm is set for, if it is.
    pub fn get_alarm(&self) -> Result<Option<SystemTime>> {
        Ok(self
            .backend()?
            .alarm()?
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }

    /// Sets the object's one alarm, replacing any other. A time in the past
    /// fires at once. Takes effect when the event commits.
    pub fn set_alarm(&self, at: SystemTime) -> Result<()> {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.backend()?.set_alarm(Some(ms))
    }

    /// Removes the alarm.
    pub fn delete_alarm(&self) -> Result<()> {
        self.backend()?.set_alarm(None)
    }

    /// The SQL API.
    pub fn sql(&self) -> Sql {
        Sql {
            storage: self.clone(),
        }
    }

    /// Runs `f` atomically inside the event: if it returns an error, its
    /// writes are rolled back and the rest of the event's are kept.
    pub fn transaction_sync<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let backend = self.backend()?;
        backend.savepoint()?;
        match f() {
            Ok(value) => {
                backend.release(true)?;
                Ok(value)
            }
            Err(err) => {
                backend.release(false)?;
                Err(err)
            }
        }
    }
}

/// SQL over the object's database.
pub struct Sql {
    storage: Storage,
}

impl Sql {
    /// Runs `query` (one or more statements) with `?` parameters; returns
    /// the last statement's rows. Transaction control, ATTACH, most PRAGMAs
    /// and tables named `_torpor_*` are refused.
    pub fn exec(&self, query: &str, params: &[SqlValue]) -> Result<Cursor> {
        self.storage.backend()?.exec(query, params)
    }

    /// Bytes the database takes.
    pub fn database_size(&self) -> Result<u64> {
        self.storage.backend()?.database_size()
    }
}
