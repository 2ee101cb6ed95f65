//! Where the node's alarm schedule survives restarts and kill -9: a small
//! SQLite file (`data_dir/alarms.sqlite`) with one row per object that has an
//! alarm. Every change is durable before the hold loop moves on.
//!
//! Objects are named by class and name here, not by the edge's numbers,
//! which do not outlive the process.

use rusqlite::{params, Connection};
use std::path::Path;

pub(crate) struct AlarmStore {
    conn: Connection,
}

/// One stored alarm.
pub(crate) struct StoredAlarm {
    pub(crate) class: String,
    pub(crate) name: String,
    pub(crate) due_ms: u64,
    pub(crate) retry_count: u32,
}

impl AlarmStore {
    pub(crate) fn open(path: &Path) -> rusqlite::Result<AlarmStore> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS alarms(
                class TEXT NOT NULL,
                name TEXT NOT NULL,
                due_ms INTEGER NOT NULL,
                retry_count INTEGER NOT NULL,
                PRIMARY KEY (class, name)
            ) WITHOUT ROWID;",
        )?;
        Ok(AlarmStore { conn })
    }

    pub(crate) fn load(&self) -> rusqlite::Result<Vec<StoredAlarm>> {
        let mut stmt = self
            .conn
            .prepare("SELECT class, name, due_ms, retry_count FROM alarms")?;
        let rows = stmt.query_map([], |row| {
            Ok(StoredAlarm {
                class: row.get(0)?,
                name: row.get(1)?,
                due_ms: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                retry_count: u32::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            })
        })?;
        rows.collect()
    }

    pub(crate) fn store(
        &self,
        class: &str,
        name: &str,
        due_ms: u64,
        retry_count: u32,
    ) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO alarms(class, name, due_ms, retry_count) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                class,
                name,
                i64::try_from(due_ms).unwrap_or(i64::MAX),
                retry_count
            ])
            .map(drop)
    }

    pub(crate) fn remove(&self, class: &str, name: &str) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached("DELETE FROM alarms WHERE class = ?1 AND name = ?2")?
            .execute(params![class, name])
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
            store.store("Counter", "a", 10, 0).unwrap();
            store.store("Counter", "b", 20, 3).unwrap();
            store.store("Counter", "a", 30, 1).unwrap();
            store.remove("Counter", "b").unwrap();
        }
        let loaded = AlarmStore::open(&path).unwrap().load().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(
            (
                loaded[0].name.as_str(),
                loaded[0].due_ms,
                loaded[0].retry_count
            ),
            ("a", 30, 1)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
