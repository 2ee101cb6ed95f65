//! The node's billing ledger: exact per-object usage counts in one SQLite
//! file (`data_dir/ledger.sqlite`), bucketed by UTC hour.
//!
//! The supervisor is its single writer: the edge and workers count in plain
//! `u64`s and hand over deltas, [`Ledger::record`] adds them to the hour's
//! bucket in one durable transaction. `torpor bill` reads it.
//!
//! It is not a price list and not a bill (that is [`crate::billing`]), and
//! not Prometheus: the counts are exact integers (SQLite `INTEGER` in a
//! `STRICT` table, so an overflow is an error, never a silent float), kept per
//! object id, which metrics must never carry as a label.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags};

/// One bucket is one UTC hour.
pub const HOUR_MS: u64 = 3_600_000;

/// Bumped when the table changes shape; a file of another version is refused
/// rather than misread.
const SCHEMA_VERSION: i64 = 1;

/// A reader (`torpor bill`) may meet the writer's checkpoint; wait a little
/// rather than fail.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Column names of [`Usage`], in [`Usage::to_array`] order.
const COLUMNS: [&str; 11] = [
    "requests",
    "rpc_calls",
    "alarms",
    "ws_upgrades",
    "ws_messages_in",
    "ws_messages_out",
    "auto_responses",
    "protocol_pings",
    "active_ms",
    "rows_read",
    "rows_written",
];

/// Raw exact counts of one object (or a sum of objects). Nothing here is
/// priced: [`crate::billing`] decides what is billed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Usage {
    /// HTTP requests to objects, WebSocket upgrades included.
    pub requests: u64,
    /// RPC calls between objects.
    pub rpc_calls: u64,
    /// Alarm invocations, retries included.
    pub alarms: u64,
    /// WebSocket upgrades (also counted in `requests`).
    pub ws_upgrades: u64,
    /// Incoming WebSocket data messages that reached the object.
    pub ws_messages_in: u64,
    /// Outgoing WebSocket messages (counted, not billed).
    pub ws_messages_out: u64,
    /// Incoming messages answered by the edge's auto-response (never a wake).
    pub auto_responses: u64,
    /// Protocol pings answered by the edge.
    pub protocol_pings: u64,
    /// Milliseconds live in memory (billed as 128 MB each).
    pub active_ms: u64,
    /// SQLite rows read.
    pub rows_read: u64,
    /// SQLite rows written.
    pub rows_written: u64,
}

impl Usage {
    fn to_array(&self) -> [u64; 11] {
        [
            self.requests,
            self.rpc_calls,
            self.alarms,
            self.ws_upgrades,
            self.ws_messages_in,
            self.ws_messages_out,
            self.auto_responses,
            self.protocol_pings,
            self.active_ms,
            self.rows_read,
            self.rows_written,
        ]
    }

    fn from_array(a: [u64; 11]) -> Usage {
        Usage {
            requests: a[0],
            rpc_calls: a[1],
            alarms: a[2],
            ws_upgrades: a[3],
            ws_messages_in: a[4],
            ws_messages_out: a[5],
            auto_responses: a[6],
            protocol_pings: a[7],
            active_ms: a[8],
            rows_read: a[9],
            rows_written: a[10],
        }
    }

    /// Adds `other` field by field. Saturates: a sum of ledger rows past
    /// 2^64 is not a bill anyone will pay, and a bill must not panic.
    pub fn add(&mut self, other: &Usage) {
        let mut sum = self.to_array();
        for (s, o) in sum.iter_mut().zip(other.to_array()) {
            *s = s.saturating_add(o);
        }
        *self = Usage::from_array(sum);
    }

    /// True when every count is zero.
    pub fn is_zero(&self) -> bool {
        self.to_array().iter().all(|&v| v == 0)
    }
}

/// What one object did since the last flush, and its database size now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageDelta {
    /// Object class.
    pub class: String,
    /// Object name (or id for unnamed objects).
    pub name: String,
    /// Counts to add.
    pub usage: Usage,
    /// Latest size of the object's database, a gauge; `None` when unknown
    /// (the bucket keeps what it had).
    pub stored_bytes: Option<u64>,
}

/// One object's sums over a window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObjectTotals {
    /// Object class.
    pub class: String,
    /// Object name.
    pub name: String,
    /// Counts summed over the buckets overlapping the window.
    pub usage: Usage,
    /// Last size known at or before the window's end (0 if never reported).
    pub stored_bytes: u64,
}

/// A ledger that cannot be opened, written or read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The directory for the file could not be made.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be opened or set up.
    #[error("cannot open ledger {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file was written by another schema version.
    #[error("ledger schema version is {found}, this build reads {expected}")]
    Schema {
        /// In the file.
        found: i64,
        /// What this build reads.
        expected: i64,
    },
    /// A delta does not fit a SQLite integer.
    #[error("{field} delta is {value}, over the ledger's limit {}", i64::MAX)]
    TooLarge {
        /// The column.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// The file holds something that is not a count.
    #[error("ledger holds {value} in {field}, not a count")]
    NotACount {
        /// The column.
        field: &'static str,
        /// The value.
        value: i64,
    },
    /// SQLite failed (an add past 2^63 - 1 lands here too).
    #[error("ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The node's usage ledger; see the module docs.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`, usually
    /// `data_dir/ledger.sqlite`; WAL, `synchronous = FULL`.
    pub fn open(path: &Path) -> Result<Ledger, LedgerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| LedgerError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let open_error = |source| LedgerError::Open {
            path: path.to_owned(),
            source,
        };
        // No SQLITE_OPEN_URI: the path is a file name, never a URI with options.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(open_error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // WAL lets `torpor bill` read while the node writes.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(open_error)?;
        // FULL: a commit fsyncs before `record` returns, so counts the
        // supervisor has flushed survive a power cut.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        let found: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(open_error)?;
        if found != 0 && found != SCHEMA_VERSION {
            return Err(LedgerError::Schema {
                found,
                expected: SCHEMA_VERSION,
            });
        }
        // STRICT: an add that overflows i64 turns into a REAL in SQLite,
        // which a STRICT INTEGER column refuses; the CHECKs refuse negatives.
        // `stored_bytes` is NULL in an hour where no size was reported.
        let counts: String = COLUMNS
            .iter()
            .map(|c| format!("{c} INTEGER NOT NULL DEFAULT 0 CHECK ({c} >= 0),\n"))
            .collect();
        conn.execute_batch(&format!(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS usage (
                class TEXT NOT NULL,
                name TEXT NOT NULL,
                hour_start_ms INTEGER NOT NULL,
                {counts}
                stored_bytes INTEGER CHECK (stored_bytes >= 0),
                PRIMARY KEY (class, name, hour_start_ms)
             ) STRICT, WITHOUT ROWID;
             PRAGMA user_version = {SCHEMA_VERSION};
             COMMIT;"
        ))
        .map_err(open_error)?;
        Ok(Ledger { conn })
    }

    /// Adds the deltas to the bucket of `at_unix_ms` (buckets are one UTC
    /// hour) in ONE transaction, durable on return. A delta's
    /// `stored_bytes`, when set, replaces the bucket's (the last size seen in
    /// the hour). On error nothing of the batch is kept.
    pub fn record(&mut self, at_unix_ms: u64, deltas: &[UsageDelta]) -> Result<(), LedgerError> {
        let hour = to_i64("hour_start_ms", at_unix_ms - at_unix_ms % HOUR_MS)?;
        let columns = COLUMNS.join(", ");
        let placeholders: String = (4..4 + COLUMNS.len()).map(|i| format!(", ?{i}")).collect();
        let adds: String = COLUMNS
            .iter()
            .map(|c| format!("{c} = {c} + excluded.{c}, "))
            .collect();
        let sql = format!(
            "INSERT INTO usage (class, name, hour_start_ms, {columns}, stored_bytes)
             VALUES (?1, ?2, ?3{placeholders}, ?{stored})
             ON CONFLICT (class, name, hour_start_ms) DO UPDATE SET
             {adds}stored_bytes = coalesce(excluded.stored_bytes, stored_bytes)",
            stored = 4 + COLUMNS.len(),
        );
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(&sql)?;
            for delta in deltas {
                let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(15);
                values.push(delta.class.clone().into());
                values.push(delta.name.clone().into());
                values.push(hour.into());
                for (field, value) in COLUMNS.iter().zip(delta.usage.to_array()) {
                    values.push(to_i64(field, value)?.into());
                }
                values.push(match delta.stored_bytes {
                    Some(bytes) => to_i64("stored_bytes", bytes)?.into(),
                    None => rusqlite::types::Value::Null,
                });
                insert.execute(rusqlite::params_from_iter(values))?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Sums per object over buckets overlapping `[from_ms, to_ms)` (`None` =
    /// unbounded), optionally of one class, ordered by class, name.
    ///
    /// An object is listed when it has a bucket in the window, or when a
    /// non-zero size reported before the window carries into it (it is
    /// billed storage then, with zero counts). `stored_bytes` is the last
    /// size reported in a bucket starting before `to_ms`.
    pub fn totals(
        &self,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
        class: Option<&str>,
    ) -> Result<Vec<ObjectTotals>, LedgerError> {
        let (lower, upper) = hour_bounds(from_ms, to_ms);
        let sums: String = COLUMNS.iter().map(|c| format!(", sum({c})")).collect();
        let mut objects: BTreeMap<(String, String), ObjectTotals> = BTreeMap::new();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT class, name{sums} FROM usage
             WHERE hour_start_ms >= ?1 AND hour_start_ms < ?2 AND (?3 IS NULL OR class = ?3)
             GROUP BY class, name"
        ))?;
        let mut rows = stmt.query(params![lower, upper, class])?;
        while let Some(row) = rows.next()? {
            let class: String = row.get(0)?;
            let name: String = row.get(1)?;
            let mut counts = [0u64; 11];
            for (i, (count, field)) in counts.iter_mut().zip(COLUMNS).enumerate() {
                *count = to_u64(field, row.get(i + 2)?)?;
            }
            objects.insert(
                (class.clone(), name.clone()),
                ObjectTotals {
                    class,
                    name,
                    usage: Usage::from_array(counts),
                    stored_bytes: 0,
                },
            );
        }
        // SQLite returns the bare column `stored_bytes` from the row that
        // holds max(hour_start_ms): the last size known before the end.
        let mut stmt = self.conn.prepare_cached(
            "SELECT class, name, stored_bytes, max(hour_start_ms) FROM usage
             WHERE stored_bytes IS NOT NULL AND hour_start_ms < ?1
               AND (?2 IS NULL OR class = ?2)
             GROUP BY class, name",
        )?;
        let mut rows = stmt.query(params![upper, class])?;
        while let Some(row) = rows.next()? {
            let class: String = row.get(0)?;
            let name: String = row.get(1)?;
            let stored = to_u64("stored_bytes", row.get(2)?)?;
            match objects.get_mut(&(class.clone(), name.clone())) {
                Some(object) => object.stored_bytes = stored,
                None if stored > 0 => {
                    objects.insert(
                        (class.clone(), name.clone()),
                        ObjectTotals {
                            class,
                            name,
                            usage: Usage::default(),
                            stored_bytes: stored,
                        },
                    );
                }
                None => {}
            }
        }
        Ok(objects.into_values().collect())
    }

    /// Storage over `[from_ms, to_ms)` in byte-hours (divide by 1e9 × 730 for
    /// GB-months); the window ends at `to_ms` or now, whichever is earlier,
    /// so a bill for the running month charges only what was stored so far.
    /// See [`Ledger::storage_byte_hours_at`] for exactly how.
    pub fn storage_byte_hours(
        &self,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
        class: Option<&str>,
    ) -> Result<u128, LedgerError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.storage_byte_hours_at(from_ms, to_ms, class, now_ms)
    }

    /// [`Ledger::storage_byte_hours`] with an explicit now.
    ///
    /// Each object's size is a step function of time: the size reported in
    /// hour bucket `h` (the last one seen in that hour) holds from the start
    /// of `h` until the start of the next bucket that reports a size; the
    /// last one is carried forward to the end of the window. Before its
    /// first report an object stores nothing. The window is
    /// `[from_ms or 0, min(to_ms, now_ms))`, clipped to the millisecond.
    /// The integral is summed exactly in byte-milliseconds over all objects
    /// and divided by 3,600,000 once at the end, rounding down (less than
    /// one byte-hour lost in total).
    pub fn storage_byte_hours_at(
        &self,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
        class: Option<&str>,
        now_ms: u64,
    ) -> Result<u128, LedgerError> {
        let start = from_ms.unwrap_or(0);
        let end = to_ms.map_or(now_ms, |to| to.min(now_ms));
        if end <= start {
            return Ok(0);
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT class, name, hour_start_ms, stored_bytes FROM usage
             WHERE stored_bytes IS NOT NULL AND hour_start_ms < ?1
               AND (?2 IS NULL OR class = ?2)
             ORDER BY class, name, hour_start_ms",
        )?;
        let mut rows = stmt.query(params![clamp_i64(end), class])?;
        let mut byte_ms: u128 = 0;
        // The open step: (object, its start, its size).
        let mut open: Option<((String, String), u64, u64)> = None;
        let step = |from: u64, until: u64, bytes: u64| -> u128 {
            let overlap = until.min(end).saturating_sub(from.max(start));
            u128::from(bytes) * u128::from(overlap)
        };
        while let Some(row) = rows.next()? {
            let key: (String, String) = (row.get(0)?, row.get(1)?);
            let hour = to_u64("hour_start_ms", row.get(2)?)?;
            let bytes = to_u64("stored_bytes", row.get(3)?)?;
            if let Some((open_key, since, size)) = open.take() {
                // The same object's next report ends the step; another
                // object's first report means the previous one ran to the end.
                let until = if open_key == key { hour } else { end };
                byte_ms += step(since, until, size);
            }
            open = Some((key, hour, bytes));
        }
        if let Some((_, since, size)) = open {
            byte_ms += step(since, end, size);
        }
        Ok(byte_ms / u128::from(HOUR_MS))
    }
}

/// Bucket starts overlapping `[from, to)`: a bucket `[h, h + 1 h)` overlaps
/// when `h + 1 h > from` and `h < to`; as `h` is a whole hour, the first is
/// `h >= floor(from / 1 h) * 1 h`.
fn hour_bounds(from_ms: Option<u64>, to_ms: Option<u64>) -> (i64, i64) {
    let lower = from_ms.map_or(i64::MIN, |from| clamp_i64(from - from % HOUR_MS));
    let upper = to_ms.map_or(i64::MAX, clamp_i64);
    (lower, upper)
}

/// A bound past i64 is past any bucket anyway.
fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_i64(field: &'static str, value: u64) -> Result<i64, LedgerError> {
    i64::try_from(value).map_err(|_| LedgerError::TooLarge { field, value })
}

fn to_u64(field: &'static str, value: i64) -> Result<u64, LedgerError> {
    u64::try_from(value).map_err(|_| LedgerError::NotACount { field, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-11-01T00:00:00Z
    const NOV_1: u64 = 1_730_419_200_000;

    fn delta(class: &str, name: &str, usage: Usage, stored_bytes: Option<u64>) -> UsageDelta {
        UsageDelta {
            class: class.into(),
            name: name.into(),
            usage,
            stored_bytes,
        }
    }

    fn requests(n: u64) -> Usage {
        Usage {
            requests: n,
            ..Usage::default()
        }
    }

    fn every_field(base: u64) -> Usage {
        let mut a = [0u64; 11];
        for (i, v) in a.iter_mut().enumerate() {
            *v = base + i as u64;
        }
        Usage::from_array(a)
    }

    fn open() -> (tempfile::TempDir, Ledger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.sqlite")).unwrap();
        (dir, ledger)
    }

    #[test]
    fn record_then_totals_round_trips_exact_integers() {
        let (_dir, mut ledger) = open();
        // Past 2^53, where a float would round.
        let big = (1u64 << 53) + 1;
        ledger
            .record(NOV_1, &[delta("Room", "a", every_field(big), Some(4096))])
            .unwrap();
        ledger
            .record(NOV_1 + 10, &[delta("Room", "a", every_field(1), None)])
            .unwrap();
        let totals = ledger.totals(None, None, None).unwrap();
        let mut want = every_field(big);
        want.add(&every_field(1));
        assert_eq!(
            totals,
            vec![ObjectTotals {
                class: "Room".into(),
                name: "a".into(),
                usage: want,
                stored_bytes: 4096,
            }]
        );
        assert_eq!(totals[0].usage.requests, (1u64 << 53) + 2);
        let version: i64 = ledger
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn deltas_land_in_their_utc_hour() {
        let (_dir, mut ledger) = open();
        ledger
            .record(NOV_1, &[delta("R", "a", requests(1), None)])
            .unwrap();
        ledger
            .record(NOV_1 + HOUR_MS - 1, &[delta("R", "a", requests(2), None)])
            .unwrap();
        ledger
            .record(NOV_1 + HOUR_MS, &[delta("R", "a", requests(4), None)])
            .unwrap();
        let hours: Vec<(i64, i64)> = ledger
            .conn
            .prepare("SELECT hour_start_ms, requests FROM usage ORDER BY hour_start_ms")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let h = NOV_1 as i64;
        assert_eq!(hours, vec![(h, 3), (h + HOUR_MS as i64, 4)]);
    }

    #[test]
    fn windows_take_the_buckets_they_overlap() {
        let (_dir, mut ledger) = open();
        for hour in 0..5 {
            ledger
                .record(
                    NOV_1 + hour * HOUR_MS,
                    &[delta("R", "a", requests(1 << hour), None)],
                )
                .unwrap();
        }
        let sum = |from, to| -> u64 {
            ledger
                .totals(from, to, None)
                .unwrap()
                .iter()
                .map(|o| o.usage.requests)
                .sum()
        };
        assert_eq!(sum(None, None), 0b11111);
        assert_eq!(sum(Some(NOV_1 + HOUR_MS), None), 0b11110);
        assert_eq!(sum(None, Some(NOV_1 + 2 * HOUR_MS)), 0b00011);
        // A window starting mid-hour still takes that hour's bucket; one
        // ending exactly at an hour does not take the next.
        assert_eq!(
            sum(Some(NOV_1 + HOUR_MS + 1), Some(NOV_1 + 3 * HOUR_MS)),
            0b00110
        );
        assert_eq!(
            sum(Some(NOV_1 + 3 * HOUR_MS + 5), Some(NOV_1 + 3 * HOUR_MS + 6)),
            0b01000
        );
        assert_eq!(sum(Some(NOV_1 + 9 * HOUR_MS), None), 0);
    }

    #[test]
    fn class_filter_and_order_by_class_then_name() {
        let (_dir, mut ledger) = open();
        ledger
            .record(
                NOV_1,
                &[
                    delta("Room", "b", requests(1), None),
                    delta("Counter", "z", requests(2), None),
                    delta("Room", "a", requests(3), None),
                ],
            )
            .unwrap();
        let all: Vec<(String, String)> = ledger
            .totals(None, None, None)
            .unwrap()
            .into_iter()
            .map(|o| (o.class, o.name))
            .collect();
        assert_eq!(
            all,
            [("Counter", "z"), ("Room", "a"), ("Room", "b")]
                .map(|(c, n)| (c.to_owned(), n.to_owned()))
        );
        let rooms = ledger.totals(None, None, Some("Room")).unwrap();
        assert_eq!(rooms.len(), 2);
        assert!(rooms.iter().all(|o| o.class == "Room"));
        assert!(ledger.totals(None, None, Some("Nope")).unwrap().is_empty());
    }

    #[test]
    fn stored_bytes_is_the_last_size_before_the_window_end_and_carries_in() {
        let (_dir, mut ledger) = open();
        ledger
            .record(NOV_1, &[delta("R", "a", requests(1), Some(100))])
            .unwrap();
        ledger
            .record(NOV_1 + 5, &[delta("R", "a", requests(1), Some(150))])
            .unwrap();
        ledger
            .record(
                NOV_1 + 2 * HOUR_MS,
                &[delta("R", "a", requests(1), Some(300))],
            )
            .unwrap();
        let at = |from, to| ledger.totals(from, to, None).unwrap();
        assert_eq!(at(None, None)[0].stored_bytes, 300);
        assert_eq!(at(None, Some(NOV_1 + HOUR_MS))[0].stored_bytes, 150);
        // No activity after hour 2, but its data is still stored: listed
        // with zero counts.
        let later = at(Some(NOV_1 + 10 * HOUR_MS), None);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].stored_bytes, 300);
        assert!(later[0].usage.is_zero());
    }

    #[test]
    fn storage_carries_the_last_size_forward_through_quiet_hours() {
        let (_dir, mut ledger) = open();
        let now = NOV_1 + 100 * HOUR_MS;
        // 1000 bytes from hour 0, 3000 from hour 3 (the last size in hour 3
        // wins), another object of another class 500 from hour 1.
        ledger
            .record(NOV_1 + 10, &[delta("R", "a", Usage::default(), Some(1000))])
            .unwrap();
        ledger
            .record(
                NOV_1 + 3 * HOUR_MS,
                &[delta("R", "a", Usage::default(), Some(2000))],
            )
            .unwrap();
        ledger
            .record(
                NOV_1 + 3 * HOUR_MS + 9,
                &[delta("R", "a", Usage::default(), Some(3000))],
            )
            .unwrap();
        ledger
            .record(
                NOV_1 + HOUR_MS,
                &[delta("C", "b", Usage::default(), Some(500))],
            )
            .unwrap();
        let bh = |from, to, class| ledger.storage_byte_hours_at(from, to, class, now).unwrap();
        let to = Some(NOV_1 + 5 * HOUR_MS);
        // R/a: 3 h × 1000 + 2 h × 3000; C/b: 4 h × 500.
        assert_eq!(bh(None, to, Some("R")), 3 * 1000 + 2 * 3000);
        assert_eq!(bh(None, to, Some("C")), 4 * 500);
        assert_eq!(bh(None, to, None), 9000 + 2000);
        // Clipped to the millisecond: half an hour of each size.
        let half = HOUR_MS / 2;
        assert_eq!(
            bh(
                Some(NOV_1 + 2 * HOUR_MS + half),
                Some(NOV_1 + 3 * HOUR_MS + half),
                Some("R")
            ),
            500 + 1500
        );
        // No `to`: carried up to now.
        assert_eq!(bh(Some(NOV_1 + 99 * HOUR_MS), None, Some("R")), 3000);
        // A `to` in the future stops at now.
        assert_eq!(
            bh(
                Some(NOV_1 + 99 * HOUR_MS),
                Some(now + 50 * HOUR_MS),
                Some("R")
            ),
            3000
        );
        // Before the first report nothing was stored; empty windows are 0.
        assert_eq!(bh(None, Some(NOV_1), None), 0);
        assert_eq!(
            bh(Some(NOV_1 + 4 * HOUR_MS), Some(NOV_1 + 4 * HOUR_MS), None),
            0
        );
    }

    #[test]
    fn recorded_counts_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("ledger.sqlite");
        {
            let mut ledger = Ledger::open(&path).unwrap();
            ledger
                .record(NOV_1, &[delta("R", "a", every_field(7), Some(9))])
                .unwrap();
        }
        let ledger = Ledger::open(&path).unwrap();
        let totals = ledger.totals(None, None, None).unwrap();
        assert_eq!(totals[0].usage, every_field(7));
        assert_eq!(totals[0].stored_bytes, 9);
        let mode: String = ledger
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn an_overflowing_add_is_refused_and_the_batch_rolled_back() {
        let (_dir, mut ledger) = open();
        ledger
            .record(NOV_1, &[delta("R", "a", requests(i64::MAX as u64), None)])
            .unwrap();
        let err = ledger
            .record(
                NOV_1,
                &[
                    delta("R", "b", requests(5), None),
                    delta("R", "a", requests(1), None),
                ],
            )
            .unwrap_err();
        assert!(matches!(err, LedgerError::Sqlite(_)), "{err}");
        let totals = ledger.totals(None, None, None).unwrap();
        assert_eq!(totals.len(), 1, "R/b of the failed batch must not be kept");
        assert_eq!(totals[0].usage.requests, i64::MAX as u64);
        let err = ledger
            .record(NOV_1, &[delta("R", "a", requests(u64::MAX), None)])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("requests delta is 18446744073709551615"),
            "{err}"
        );
    }

    #[test]
    fn a_ledger_of_another_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 7)
            .unwrap();
        let err = Ledger::open(&path).unwrap_err();
        assert!(err.to_string().contains("version is 7"), "{err}");
    }
}
