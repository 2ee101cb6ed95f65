//! The SQL API of Durable Objects (`sql.exec`, its cursor, `databaseSize`)
//! on the object's own database, behind the authorizer.
//!
//! `exec` runs every `;`-separated statement of the query in order, inside
//! one savepoint (so a failing query leaves no partial effects), and returns
//! the rows of the last statement. Parameters bind to the one statement
//! that has placeholders, which must be the last, as in Durable Objects.
//! Rows are read in full before `exec` returns: there is no lazy cursor, so
//! nothing stays prepared between calls. Not here: prepared-statement
//! handles or streaming of large results.

use super::{Storage, StorageError};
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Batch, StatementStatus, ToSql};

pub use torpor_sdk::{Cursor, SqlValue};

fn value_from_ref(value: ValueRef<'_>) -> SqlValue {
    match value {
        ValueRef::Null => SqlValue::Null,
        ValueRef::Integer(i) => SqlValue::Integer(i),
        ValueRef::Real(f) => SqlValue::Real(f),
        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
    }
}

fn byte_len(value: &SqlValue) -> usize {
    match value {
        SqlValue::Text(t) => t.len(),
        SqlValue::Blob(b) => b.len(),
        _ => 0,
    }
}

/// Binds the SDK's value without copying it (the orphan rule keeps
/// `ToSql` off the SDK's type itself).
struct Param<'a>(&'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            SqlValue::Null => ValueRef::Null,
            SqlValue::Integer(i) => ValueRef::Integer(*i),
            SqlValue::Real(f) => ValueRef::Real(*f),
            SqlValue::Text(t) => ValueRef::Text(t.as_bytes()),
            SqlValue::Blob(b) => ValueRef::Blob(b),
        }))
    }
}

impl Storage {
    /// Runs `query` (one or more statements) with `params` bound to its
    /// last statement, and returns that statement's rows.
    pub fn exec(&mut self, query: &str, params: &[SqlValue]) -> Result<Cursor, StorageError> {
        let limit = self.limits.max_sql_value_bytes;
        if let Some(bytes) = params.iter().map(byte_len).find(|&n| n > limit) {
            return Err(StorageError::SqlValueTooLarge { bytes, limit });
        }
        let cursor = self.atomic(|s| s.exec_statements(query, params))?;
        self.counts.rows_read += cursor.rows_read;
        self.counts.rows_written += cursor.rows_written;
        Ok(cursor)
    }

    fn exec_statements(&self, query: &str, params: &[SqlValue]) -> Result<Cursor, StorageError> {
        let mut cursor = Cursor::default();
        let mut batch = Batch::new(&self.conn, query);
        let mut bound = false;
        loop {
            // Each statement is prepared (and so authorized) only after the
            // one before it ran, as a later one may use a table an earlier
            // one created.
            self.auth.start_statement();
            let mut stmt = match batch.next() {
                Ok(Some(stmt)) => stmt,
                Ok(None) => break,
                Err(e) => return Err(self.sql_error(e)),
            };
            if bound {
                return Err(StorageError::ParametersNotLast);
            }
            let expected = stmt.parameter_count();
            if expected > 0 {
                if expected != params.len() {
                    return Err(StorageError::ParameterCount {
                        expected,
                        given: params.len(),
                    });
                }
                for (i, p) in params.iter().enumerate() {
                    stmt.raw_bind_parameter(i + 1, Param(p))
                        .map_err(|e| self.sql_error(e))?;
                }
                bound = true;
            }
            let column_names: Vec<String> =
                stmt.column_names().into_iter().map(str::to_owned).collect();
            let changes_before = self.conn.total_changes();
            let mut rows_out = Vec::new();
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().map_err(|e| self.sql_error(e))? {
                let values = (0..column_names.len())
                    .map(|i| row.get_ref(i).map(value_from_ref))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| self.sql_error(e))?;
                rows_out.push(values);
            }
            drop(rows);
            let scanned =
                u64::try_from(stmt.get_status(StatementStatus::FullscanStep)).unwrap_or(0);
            cursor.rows_read += scanned.max(rows_out.len() as u64);
            cursor.rows_written += self.conn.total_changes().saturating_sub(changes_before);
            cursor.column_names = column_names;
            cursor.rows = rows_out;
        }
        if !bound && !params.is_empty() {
            return Err(StorageError::ParameterCount {
                expected: 0,
                given: params.len(),
            });
        }
        Ok(cursor)
    }

    /// Bytes the database takes: page count times page size.
    pub fn database_size(&self) -> Result<u64, StorageError> {
        let _internal = self.auth.internal();
        let pages = |name: &str| {
            self.conn
                .pragma_query_value(None, name, |r| r.get::<_, i64>(0))
                .map_err(|e| self.sql_error(e))
        };
        let size = pages("page_count")?.saturating_mul(pages("page_size")?);
        Ok(u64::try_from(size).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open_temp, open_temp_with};
    use super::super::StorageLimits;
    use super::*;

    #[test]
    fn cursor_has_column_names_and_one() {
        let (_dir, mut s) = open_temp();
        s.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)", &[])
            .unwrap();
        let c = s.exec("SELECT id, name AS label FROM t", &[]).unwrap();
        assert_eq!(c.column_names, ["id", "label"]);
        assert_eq!(
            c.one().unwrap_err().to_string(),
            "expected exactly one row, got 0"
        );
        s.exec("INSERT INTO t(name) VALUES (?)", &["a".into()])
            .unwrap();
        let c = s.exec("SELECT id, name FROM t", &[]).unwrap();
        assert_eq!(
            c.one().unwrap(),
            [SqlValue::Integer(1), SqlValue::Text("a".into())]
        );
        s.exec("INSERT INTO t(name) VALUES (?)", &["b".into()])
            .unwrap();
        let c = s.exec("SELECT id, name FROM t", &[]).unwrap();
        assert_eq!(
            c.one().unwrap_err().to_string(),
            "expected exactly one row, got 2"
        );
        assert_eq!(c.to_vec().len(), 2);
    }

    #[test]
    fn rows_as_deserializes_rows_keyed_by_column() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Row {
            id: i64,
            name: Option<String>,
            score: f64,
            data: Vec<u8>,
        }
        let (_dir, mut s) = open_temp();
        let c = s
            .exec(
                "CREATE TABLE t(id INTEGER, name TEXT, score REAL, data BLOB);
                 INSERT INTO t VALUES (1, 'a', 1.5, x'0102'), (2, NULL, 2, x'');
                 SELECT * FROM t ORDER BY id",
                &[],
            )
            .unwrap();
        let rows: Vec<Row> = c.rows_as().unwrap();
        assert_eq!(
            rows,
            [
                Row {
                    id: 1,
                    name: Some("a".into()),
                    score: 1.5,
                    data: vec![1, 2]
                },
                Row {
                    id: 2,
                    name: None,
                    score: 2.0,
                    data: vec![]
                },
            ]
        );
    }

    #[test]
    fn rows_written_and_rows_read_are_counted() {
        let (_dir, mut s) = open_temp();
        s.exec("CREATE TABLE t(a INTEGER PRIMARY KEY, b)", &[])
            .unwrap();
        let c = s
            .exec("INSERT INTO t VALUES (1, 'x'), (2, 'y'), (3, 'z')", &[])
            .unwrap();
        assert_eq!(c.rows_written, 3);
        assert_eq!(c.rows_read, 0);
        let c = s.exec("SELECT * FROM t", &[]).unwrap();
        assert_eq!((c.rows_read, c.rows_written), (3, 0));
        let c = s.exec("SELECT * FROM t WHERE a = ?", &[2.into()]).unwrap();
        assert_eq!(c.rows_read, 1);
        // An unindexed filter scans all three rows but returns one.
        let c = s.exec("SELECT * FROM t WHERE b = 'z'", &[]).unwrap();
        assert_eq!((c.rows.len(), c.rows_read), (1, 2));
        let c = s
            .exec("UPDATE t SET b = 'w'; DELETE FROM t WHERE a = 1", &[])
            .unwrap();
        assert_eq!(c.rows_written, 4);
        assert_eq!(s.row_counts().rows_written, 7);
    }

    #[test]
    fn multi_statement_returns_the_last_rows_and_binds_the_last() {
        let (_dir, mut s) = open_temp();
        let c = s
            .exec(
                "CREATE TABLE t(a); INSERT INTO t VALUES (1); SELECT a + ? AS b FROM t; -- done",
                &[10.into()],
            )
            .unwrap();
        assert_eq!(c.column_names, ["b"]);
        assert_eq!(c.rows, [[SqlValue::Integer(11)]]);
        assert!(matches!(
            s.exec("SELECT ?; SELECT 1", &[1.into()]),
            Err(StorageError::ParametersNotLast)
        ));
        assert!(matches!(
            s.exec("SELECT 1", &[1.into()]),
            Err(StorageError::ParameterCount {
                expected: 0,
                given: 1
            })
        ));
        assert_eq!(s.exec("  -- nothing\n", &[]).unwrap(), Cursor::default());
    }

    #[test]
    fn a_failing_query_leaves_no_partial_effects() {
        let (_dir, mut s) = open_temp();
        s.exec("CREATE TABLE t(a)", &[]).unwrap();
        assert!(s
            .exec("INSERT INTO t VALUES (1); SELECT * FROM nope", &[])
            .is_err());
        let c = s.exec("SELECT count(*) FROM t", &[]).unwrap();
        assert_eq!(c.rows, [[SqlValue::Integer(0)]]);
    }

    #[test]
    fn sql_value_size_is_an_error_naming_the_limit() {
        let (_dir, mut s) = open_temp();
        s.exec("CREATE TABLE t(a)", &[]).unwrap();
        let big = SqlValue::Blob(vec![0; 2_000_001]);
        let e = s.exec("INSERT INTO t VALUES (?)", &[big]).unwrap_err();
        assert_eq!(e.to_string(), "sql value is 2000001 bytes, limit 2000000");
        // Values built inside SQL meet SQLite's own length limit.
        let e = s
            .exec("INSERT INTO t VALUES (zeroblob(2000001))", &[])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "sql string, blob or row is over the limit of 2000000 bytes"
        );
        // The limit is on the whole row too, so leave room for its header.
        s.exec("INSERT INTO t VALUES (zeroblob(1999000))", &[])
            .unwrap();
    }

    #[test]
    fn database_size_limit_is_an_error_naming_the_limit() {
        let (_dir, mut s) = open_temp_with(StorageLimits {
            max_database_bytes: 64 * 1024,
            ..StorageLimits::default()
        });
        let before = s.database_size().unwrap();
        assert!(before > 0 && before <= 64 * 1024, "{before}");
        s.exec("CREATE TABLE t(a)", &[]).unwrap();
        s.begin_event().unwrap();
        let e = s
            .exec("INSERT INTO t VALUES (zeroblob(100000))", &[])
            .unwrap_err();
        assert_eq!(e.to_string(), "database is full, limit 65536 bytes");
        // SQLite rolled the whole event back; the rest of the event must not
        // autocommit piecemeal.
        assert!(matches!(s.put("x", b"y"), Err(StorageError::EventAborted)));
        assert!(matches!(s.commit_event(), Err(StorageError::EventAborted)));
        assert_eq!(s.get("x").unwrap(), None);
        let e = s.put("k", &vec![0; 100_000]).unwrap_err();
        assert!(matches!(e, StorageError::DatabaseFull { limit: 65536 }));
        s.put("small", b"fits").unwrap();
    }
}
