//! Where the node's alarm schedule survives restarts and kill -9: a small
//! SQLite file (`data_dir/alarms.sqlite`) with one row per object that has an
//! alarm. Every change is durable before the hold loop moves on.
//!
//! Objects are named by namespace and id here, not by the edge's numbers,
//! which do not outlive the process; the name, when known, comes along.

use rusqlite::{params, Connection};
use std::path::Path;

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

    pub(crate) fn store(
        &self,
        namespace: &str,
        id: &str,
        name: Option<&str>,
        due_ms: u64,
        retry_count: u32,
    ) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO object_alarms(namespace, id, name, due_ms, retry_count)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                namespace,
                id,
                name,
                i64::try_from(due_ms).unwrap_or(i64::MAX),
                retry_count
            ])
            .map(drop)
    }

    pub(crate) fn remove(&self, namespace: &str, id: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM object_alarms WHERE namespace = ?1 AND id = ?2")?
            .execute(params![namespace, id])
            .map(drop)
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
        {
            let store = AlarmStore::open(&path).unwrap();
            store.store("COUNTERS", "a1", Some("a"), 10, 0).unwrap();
            store.store("COUNTERS", "b2", None, 20, 3).unwrap();
            store.store("COUNTERS", "a1", Some("a"), 30, 1).unwrap();
            store.remove("COUNTERS", "b2").unwrap();
        }
        let loaded = AlarmStore::open(&path).unwrap().load().unwrap();
        assert_eq!(loaded.len(), 1);
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
