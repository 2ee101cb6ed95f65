//! Where the node's alarm schedule survives restarts and kill -9: a small
//! SQLite file (`data_dir/alarms.sqlite`) with one row per object that has an
//! alarm. Changes are written by [`AlarmWriter`] on a thread of its own, a
//! batch per commit, so the hold loop (every socket of edge 0) never waits
//! for a disk. A change still in the writer's queue when the edge dies is
//! lost from the schedule, not from the object: its own row is the truth,
//! and the worker tells the schedule again when the object wakes.
//!
//! Objects are named by namespace and id here, not by the edge's numbers,
//! which do not outlive the process; the name, when known, comes along.

use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;

pub(crate) struct AlarmStore {
    conn: Connection,
}

/// One stored alarm.
pub(crate) struct StoredAlarm {
    pub(crate) namespace: String,
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) due_ms: u64,
    pub(crate) retry_count: u32,
}

impl AlarmStore {
    pub(crate) fn open(path: &Path) -> rusqlite::Result<AlarmStore> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS object_alarms(
                namespace TEXT NOT NULL,
                id TEXT NOT NULL,
                name TEXT,
                due_ms INTEGER NOT NULL,
                retry_count INTEGER NOT NULL,
                PRIMARY KEY (namespace, id)
            ) WITHOUT ROWID;",
        )?;
        Ok(AlarmStore { conn })
    }

    pub(crate) fn load(&self) -> rusqlite::Result<Vec<StoredAlarm>> {
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, id, name, due_ms, retry_count FROM object_alarms")?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredAlarm {
                namespace: row.get(0)?,
                id: row.get(1)?,
                name: row.get(2)?,
                due_ms: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                retry_count: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
            })
        })?;
        rows.collect()
    }

    /// Writes `changes` in order, in one transaction: one sync to disk.
    pub(crate) fn apply(&mut self, changes: &[AlarmChange]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for change in changes {
            match change {
                AlarmChange::Store {
                    namespace,
                    id,
                    name,
                    due_ms,
                    retry_count,
                } => tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO object_alarms(namespace, id, name, due_ms, retry_count)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        &**namespace,
                        id,
                        name.as_deref(),
                        i64::try_from(*due_ms).unwrap_or(i64::MAX),
                        retry_count
                    ])
                    .map(drop)?,
                AlarmChange::Remove { namespace, id } => tx
                    .prepare_cached("DELETE FROM object_alarms WHERE namespace = ?1 AND id = ?2")?
                    .execute(params![&**namespace, id])
                    .map(drop)?,
            }
        }
        tx.commit()
    }
}

/// One change to the stored schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AlarmChange {
    /// The object's alarm is due then, as that attempt.
    Store {
        namespace: Arc<str>,
        id: String,
        name: Option<Box<str>>,
        due_ms: u64,
        retry_count: u32,
    },
    /// The object has no alarm.
    Remove { namespace: Arc<str>, id: String },
}

/// Writes the schedule's changes on a thread of its own.
pub(crate) struct AlarmWriter {
    changes: mpsc::Sender<AlarmChange>,
    thread: std::thread::JoinHandle<()>,
}

impl AlarmWriter {
    /// Starts the writer thread, which owns `store` from now on.
    pub(crate) fn spawn(mut store: AlarmStore) -> std::io::Result<AlarmWriter> {
        let (tx, rx) = mpsc::channel::<AlarmChange>();
        let thread = std::thread::Builder::new()
            .name("torpor-alarms".into())
            .spawn(move || {
                // What piled up while the last batch was written goes in
                // the next: under load, many changes share one commit.
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    if let Err(err) = store.apply(&batch) {
                        tracing::error!(%err, changes = batch.len(), "alarm schedule not persisted");
                    }
                }
            })?;
        Ok(AlarmWriter {
            changes: tx,
            thread,
        })
    }

    /// Returns once every change sent is written (or failed to be).
    pub(crate) fn finish(self) {
        drop(self.changes);
        let _ = self.thread.join();
    }

    pub(crate) fn send(&self, change: AlarmChange) {
        if self.changes.send(change).is_err() {
            tracing::error!("the alarm writer is gone; alarm schedule not persisted");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("torpor-alarms-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alarms.sqlite");
        let store_change = |id: &str, name: Option<&str>, due_ms, retry_count| AlarmChange::Store {
            namespace: "COUNTERS".into(),
            id: id.into(),
            name: name.map(Box::from),
            due_ms,
            retry_count,
        };
        {
            let mut store = AlarmStore::open(&path).unwrap();
            store
                .apply(&[
                    store_change("a1", Some("a"), 10, 0),
                    store_change("b2", None, 20, 3),
                ])
                .unwrap();
            store
                .apply(&[
                    store_change("a1", Some("a"), 30, 1),
                    AlarmChange::Remove {
                        namespace: "COUNTERS".into(),
                        id: "b2".into(),
                    },
                ])
                .unwrap();
        }
        let loaded = AlarmStore::open(&path).unwrap().load().unwrap();
        assert_eq!(loaded.len(), 1);
        let mut store = AlarmStore::open(&path).unwrap();
        store
            .apply(&[
                store_change("c3", None, 40, 0),
                AlarmChange::Remove {
                    namespace: "COUNTERS".into(),
                    id: "c3".into(),
                },
            ])
            .unwrap();
        assert_eq!(store.load().unwrap().len(), 1, "the batch applies in order");
        let alarm = &loaded[0];
        assert_eq!(
            (
                alarm.id.as_str(),
                alarm.name.as_deref(),
                alarm.due_ms,
                alarm.retry_count
            ),
            ("a1", Some("a"), 30, 1)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
