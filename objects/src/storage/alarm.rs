//! The object's one alarm, kept in a hidden one-row table so that setting it
//! is part of the event's transaction: a failed handler's `set_alarm` rolls
//! back with its other writes. The node-level schedule that fires alarms is
//! the edge's; this row is what `get_alarm` reads.

use super::{Storage, StorageError};
use rusqlite::OptionalExtension;

impl Storage {
    /// The alarm's time in Unix milliseconds, if one is set.
    pub fn alarm(&mut self) -> Result<Option<u64>, StorageError> {
        self.check_event()?;
        let _internal = self.auth.internal();
        let at: Option<i64> = self
            .conn
            .prepare_cached("SELECT at_ms FROM _torpor_alarm WHERE id = 1")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)).optional())
            .map_err(|e| self.sql_error(e))?;
        Ok(at.map(|ms| u64::try_from(ms).unwrap_or(0)))
    }

    /// Sets (overwriting) or clears the alarm.
    pub fn set_alarm(&mut self, at_ms: Option<u64>) -> Result<(), StorageError> {
        self.check_event()?;
        let _internal = self.auth.internal();
        let result = match at_ms {
            Some(at) => self
                .conn
                .prepare_cached("INSERT OR REPLACE INTO _torpor_alarm(id, at_ms) VALUES (1, ?1)")
                .and_then(|mut stmt| stmt.execute([i64::try_from(at).unwrap_or(i64::MAX)])),
            None => self
                .conn
                .prepare_cached("DELETE FROM _torpor_alarm WHERE id = 1")
                .and_then(|mut stmt| stmt.execute([])),
        };
        result.map(drop).map_err(|e| self.sql_error(e))
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::{Storage, StorageLimits};

    #[test]
    fn the_alarm_is_set_overwritten_cleared_and_rolled_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Storage::open(&dir.path().join("a.sqlite"), StorageLimits::default()).unwrap();
        assert_eq!(s.alarm().unwrap(), None);
        s.set_alarm(Some(10)).unwrap();
        s.set_alarm(Some(20)).unwrap();
        assert_eq!(s.alarm().unwrap(), Some(20));
        s.begin_event().unwrap();
        s.set_alarm(None).unwrap();
        assert_eq!(s.alarm().unwrap(), None);
        s.rollback_event().unwrap();
        assert_eq!(s.alarm().unwrap(), Some(20));
        // User SQL cannot reach it.
        assert!(s.exec("SELECT * FROM _torpor_alarm", &[]).is_err());
    }
}
