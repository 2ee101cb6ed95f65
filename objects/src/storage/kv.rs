//! The KV API of Durable Objects (`get`, `put`, `delete`, `list`,
//! `deleteAll`) over the hidden table `_torpor_kv`, with its limits.
//!
//! Keys are strings ordered by their UTF-8 bytes (the column is
//! `COLLATE BINARY`, i.e. `memcmp`); values are bytes, and `*_json` helpers
//! store serde values as JSON. Row counts: each key asked for by `get*` is a
//! row read, each key written or deleted is a row written, and each entry
//! `list` returns is a row read. Not here: structured clone, or caching.

use super::{Storage, StorageError};
use rusqlite::types::{ToSqlOutput, ValueRef};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;

pub use torpor_sdk::ListOptions;

impl Storage {
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.check_key(key)?;
        self.check_event()?;
        self.counts.rows_read += 1;
        self.kv_get(key)
    }

    /// The entries found, in key order; missing keys are left out.
    pub fn get_many<K: AsRef<str>>(
        &mut self,
        keys: &[K],
    ) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        self.check_batch(keys.len())?;
        for key in keys {
            self.check_key(key.as_ref())?;
        }
        self.check_event()?;
        self.counts.rows_read += keys.len() as u64;
        let mut found = BTreeMap::new();
        for key in keys {
            let key = key.as_ref();
            if let Some(value) = self.kv_get(key)? {
                found.insert(key.to_owned(), value);
            }
        }
        Ok(found.into_iter().collect())
    }

    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.check_entry(key, value)?;
        self.check_event()?;
        self.kv_put(key, value)?;
        self.counts.rows_written += 1;
        Ok(())
    }

    /// Writes all entries or none.
    pub fn put_many<K: AsRef<str>, V: AsRef<[u8]>>(
        &mut self,
        entries: &[(K, V)],
    ) -> Result<(), StorageError> {
        self.check_batch(entries.len())?;
        for (key, value) in entries {
            self.check_entry(key.as_ref(), value.as_ref())?;
        }
        self.atomic(|s| {
            for (key, value) in entries {
                s.kv_put(key.as_ref(), value.as_ref())?;
            }
            s.counts.rows_written += entries.len() as u64;
            Ok(())
        })
    }

    /// Whether the key existed.
    pub fn delete(&mut self, key: &str) -> Result<bool, StorageError> {
        self.check_key(key)?;
        self.check_event()?;
        let deleted = self.kv_delete(key)?;
        self.counts.rows_written += u64::from(deleted);
        Ok(deleted)
    }

    /// How many of the keys existed; deletes all or none.
    pub fn delete_many<K: AsRef<str>>(&mut self, keys: &[K]) -> Result<usize, StorageError> {
        self.check_batch(keys.len())?;
        for key in keys {
            self.check_key(key.as_ref())?;
        }
        self.atomic(|s| {
            let mut deleted = 0;
            for key in keys {
                deleted += usize::from(s.kv_delete(key.as_ref())?);
            }
            s.counts.rows_written += deleted as u64;
            Ok(deleted)
        })
    }

    /// Entries in key order (descending if `reverse`), filtered as
    /// `options` says.
    pub fn list(&mut self, options: &ListOptions) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        if options.start.is_some() && options.start_after.is_some() {
            return Err(StorageError::StartWithStartAfter);
        }
        let limit = match options.limit {
            Some(0) => return Err(StorageError::ListLimitZero),
            Some(n) => i64::try_from(n).unwrap_or(i64::MAX),
            None => -1,
        };
        self.check_event()?;
        let mut sql = String::from("SELECT key, value FROM _torpor_kv WHERE 1");
        let mut bounds: Vec<Vec<u8>> = Vec::new();
        if let Some(prefix) = options.prefix.as_deref().filter(|p| !p.is_empty()) {
            // Every valid UTF-8 key starting with `prefix` sorts below
            // `prefix` + 0xFF, a byte UTF-8 never contains; and every key
            // that does not start with it but sorts above `prefix` differs
            // inside the prefix, so sorts above that bound too.
            let mut upper = prefix.as_bytes().to_vec();
            upper.push(0xFF);
            sql.push_str(" AND key >= ? AND key < ?");
            bounds.push(prefix.as_bytes().to_vec());
            bounds.push(upper);
        }
        for (bound, op) in [
            (&options.start, ">="),
            (&options.start_after, ">"),
            (&options.end, "<"),
        ] {
            if let Some(b) = bound {
                sql.push_str(" AND key ");
                sql.push_str(op);
                sql.push_str(" ?");
                bounds.push(b.as_bytes().to_vec());
            }
        }
        sql.push_str(if options.reverse {
            " ORDER BY key DESC LIMIT ?"
        } else {
            " ORDER BY key ASC LIMIT ?"
        });
        let _internal = self.auth.internal();
        let rows = (|| {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut i = 1;
            for b in &bounds {
                // Bound as TEXT from raw bytes: the prefix bound is not
                // valid UTF-8, and BINARY collation compares bytes anyway.
                stmt.raw_bind_parameter(i, ToSqlOutput::Borrowed(ValueRef::Text(b)))?;
                i += 1;
            }
            stmt.raw_bind_parameter(i, limit)?;
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?));
            }
            Ok(out)
        })()
        .map_err(|e| self.sql_error(e))?;
        drop(_internal);
        self.counts.rows_read += rows.len() as u64;
        Ok(rows)
    }

    /// Deletes every key and every table, view, index and trigger the
    /// object's SQL created, atomically. Other `_torpor_*` tables (the
    /// runtime's) are left alone; clearing the alarm is the runtime's call.
    pub fn delete_all(&mut self) -> Result<(), StorageError> {
        self.atomic(|s| {
            let _internal = s.auth.internal();
            let result = (|| {
                let deleted = s.conn.execute("DELETE FROM _torpor_kv", [])?;
                // Tables are dropped parent and child alike; deferring
                // foreign keys lets the order not matter (the pragma ends
                // with the transaction).
                s.conn.execute_batch("PRAGMA defer_foreign_keys = ON")?;
                let mut objects: Vec<(String, String)> = s
                    .conn
                    .prepare(
                        "SELECT type, name FROM sqlite_schema WHERE type IN ('view', 'trigger', 'table')
                         ORDER BY CASE WHEN type <> 'table' THEN 0
                                       WHEN sql LIKE 'CREATE VIRTUAL%' THEN 1 ELSE 2 END",
                    )?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()?;
                objects.retain(|(_, name)| {
                    !super::authorizer::is_reserved(name)
                        && !name.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("sqlite_"))
                });
                for (kind, name) in objects {
                    let quoted = name.replace('"', "\"\"");
                    // IF EXISTS: dropping a virtual table drops its shadow
                    // tables, which are still in the list.
                    s.conn
                        .execute_batch(&format!("DROP {kind} IF EXISTS \"{quoted}\""))?;
                }
                Ok(deleted)
            })();
            drop(_internal);
            let deleted = result.map_err(|e| s.sql_error(e))?;
            s.counts.rows_written += deleted as u64;
            Ok(())
        })
    }

    /// `get` decoding the value as JSON.
    pub fn get_json<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, StorageError> {
        match self.get(key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// `put` of the value encoded as JSON.
    pub fn put_json<T: Serialize + ?Sized>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value)?;
        self.put(key, &bytes)
    }

    fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let _internal = self.auth.internal();
        self.conn
            .prepare_cached("SELECT value FROM _torpor_kv WHERE key = ?1")
            .and_then(|mut stmt| {
                let mut rows = stmt.query([key])?;
                rows.next()?.map(|r| r.get(0)).transpose()
            })
            .map_err(|e| self.sql_error(e))
    }

    fn kv_put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        let _internal = self.auth.internal();
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO _torpor_kv(key, value) VALUES (?1, ?2)")
            .and_then(|mut stmt| stmt.execute(rusqlite::params![key, value]))
            .map(drop)
            .map_err(|e| self.sql_error(e))
    }

    fn kv_delete(&self, key: &str) -> Result<bool, StorageError> {
        let _internal = self.auth.internal();
        self.conn
            .prepare_cached("DELETE FROM _torpor_kv WHERE key = ?1")
            .and_then(|mut stmt| stmt.execute([key]))
            .map(|n| n > 0)
            .map_err(|e| self.sql_error(e))
    }

    fn check_key(&self, key: &str) -> Result<(), StorageError> {
        let limit = self.limits.max_key_bytes;
        if key.len() > limit {
            return Err(StorageError::KeyTooLarge {
                bytes: key.len(),
                limit,
            });
        }
        Ok(())
    }

    fn check_entry(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.check_key(key)?;
        let limit = self.limits.max_value_bytes;
        if value.len() > limit {
            return Err(StorageError::ValueTooLarge {
                bytes: value.len(),
                limit,
            });
        }
        Ok(())
    }

    fn check_batch(&self, keys: usize) -> Result<(), StorageError> {
        let limit = self.limits.max_batch_keys;
        if keys > limit {
            return Err(StorageError::BatchTooLarge { keys, limit });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open_temp, open_temp_with};
    use super::super::{SqlValue, StorageLimits};
    use super::*;
    use proptest::prelude::*;

    /// What Durable Objects' `list` returns, computed on a `BTreeMap` whose
    /// `String` order is UTF-8 byte order.
    fn model_list(model: &BTreeMap<String, Vec<u8>>, o: &ListOptions) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = model
            .iter()
            .filter(|(k, _)| o.prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
            .filter(|(k, _)| o.start.as_ref().is_none_or(|s| *k >= s))
            .filter(|(k, _)| o.start_after.as_ref().is_none_or(|s| *k > s))
            .filter(|(k, _)| o.end.as_ref().is_none_or(|e| *k < e))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if o.reverse {
            out.reverse();
        }
        out.truncate(o.limit.unwrap_or(usize::MAX));
        out
    }

    /// Few, short keys from a small alphabet, so prefixes of each other and
    /// collisions are common; the non-ASCII letters order differently by
    /// bytes than by UTF-16 or by code point.
    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop::sample::select(vec!["a", "b", "ab", "é", "\u{ff5e}", "😀", "\u{7f}", ""]),
            0..4,
        )
        .prop_map(|parts| parts.concat())
    }

    #[derive(Clone, Debug)]
    enum Op {
        Put(String, Vec<u8>),
        Delete(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (key(), proptest::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| Op::Put(k, v)),
            1 => key().prop_map(Op::Delete),
        ]
    }

    fn options() -> impl Strategy<Value = ListOptions> {
        (
            proptest::option::of(key()),
            proptest::option::of(key()),
            any::<bool>(),
            proptest::option::of(key()),
            any::<bool>(),
            proptest::option::of(1usize..6),
        )
            .prop_map(|(prefix, start, after, end, reverse, limit)| ListOptions {
                prefix,
                start: start.clone().filter(|_| !after),
                start_after: start.filter(|_| after),
                end,
                reverse,
                limit,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn list_matches_a_btreemap_model(
            ops in proptest::collection::vec(op(), 0..40),
            queries in proptest::collection::vec(options(), 1..20),
        ) {
            let (_dir, mut s) = open_temp();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        s.put(&k, &v).unwrap();
                        model.insert(k, v);
                    }
                    Op::Delete(k) => {
                        prop_assert_eq!(s.delete(&k).unwrap(), model.remove(&k).is_some());
                    }
                }
            }
            for o in queries {
                prop_assert_eq!(s.list(&o).unwrap(), model_list(&model, &o), "{:?}", o);
            }
        }
    }

    #[test]
    fn get_many_is_sorted_and_skips_missing_keys() {
        let (_dir, mut s) = open_temp();
        s.put_many(&[("b", b"2".as_slice()), ("a", b"1"), ("é", b"3")])
            .unwrap();
        let got = s.get_many(&["é", "zz", "a", "b"]).unwrap();
        let keys: Vec<_> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "é"]);
        assert_eq!(s.delete_many(&["a", "zz"]).unwrap(), 1);
        assert!(!s.delete("a").unwrap());
    }

    #[test]
    fn json_helpers_round_trip() {
        let (_dir, mut s) = open_temp();
        s.put_json("n", &vec![1, 2, 3]).unwrap();
        assert_eq!(s.get_json::<Vec<i32>>("n").unwrap(), Some(vec![1, 2, 3]));
        assert_eq!(s.get_json::<Vec<i32>>("missing").unwrap(), None);
        assert!(matches!(
            s.get_json::<String>("n"),
            Err(StorageError::Json(_))
        ));
    }

    #[test]
    fn each_kv_limit_is_an_error_naming_the_number() {
        let (_dir, mut s) = open_temp();
        let long = "k".repeat(2100);
        let e = s.put(&long, b"v").unwrap_err();
        assert_eq!(e.to_string(), "key is 2100 bytes, limit 2048");
        assert!(s.get(&long).unwrap_err().to_string().contains("2048"));

        let e = s.put("k", &vec![0; 131_073]).unwrap_err();
        assert_eq!(e.to_string(), "value is 131073 bytes, limit 131072");
        s.put("k", &vec![0; 131_072]).unwrap();

        let keys: Vec<String> = (0..129).map(|i| format!("k{i}")).collect();
        let e = s.get_many(&keys).unwrap_err();
        assert_eq!(e.to_string(), "batch has 129 keys, limit 128");
        assert!(s
            .delete_many(&keys)
            .unwrap_err()
            .to_string()
            .contains("128"));
        let entries: Vec<(String, Vec<u8>)> = keys.iter().map(|k| (k.clone(), vec![])).collect();
        assert!(s
            .put_many(&entries)
            .unwrap_err()
            .to_string()
            .contains("128"));
        s.put_many(&entries[..128]).unwrap();

        let zero = ListOptions {
            limit: Some(0),
            ..ListOptions::default()
        };
        assert_eq!(
            s.list(&zero).unwrap_err().to_string(),
            "list limit is 0, it must be at least 1"
        );
        let both = ListOptions {
            start: Some("a".into()),
            start_after: Some("a".into()),
            ..ListOptions::default()
        };
        assert!(matches!(
            s.list(&both),
            Err(StorageError::StartWithStartAfter)
        ));
    }

    #[test]
    fn a_failing_put_many_writes_nothing() {
        let (_dir, mut s) = open_temp_with(StorageLimits {
            max_value_bytes: 4,
            ..StorageLimits::default()
        });
        let r = s.put_many(&[("a", b"ok".as_slice()), ("b", b"too long")]);
        assert!(matches!(
            r,
            Err(StorageError::ValueTooLarge { bytes: 8, limit: 4 })
        ));
        assert_eq!(s.get("a").unwrap(), None);
    }

    #[test]
    fn delete_all_removes_keys_and_user_tables() {
        let (_dir, mut s) = open_temp();
        s.put("k", b"v").unwrap();
        s.exec(
            "CREATE TABLE parent(id INTEGER PRIMARY KEY AUTOINCREMENT);
             CREATE TABLE child(p REFERENCES parent(id));
             CREATE VIEW v AS SELECT * FROM child;
             CREATE INDEX child_p ON child(p);
             CREATE VIRTUAL TABLE docs USING fts5(body);
             INSERT INTO docs VALUES ('hello');
             INSERT INTO parent DEFAULT VALUES; INSERT INTO child VALUES (1);",
            &[],
        )
        .unwrap();
        s.begin_event().unwrap();
        s.delete_all().unwrap();
        s.commit_event().unwrap();
        assert_eq!(s.get("k").unwrap(), None);
        let left = s
            .exec(
                "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite%' ORDER BY name",
                &[],
            )
            .unwrap();
        let names: Vec<_> = left.rows.iter().map(|r| r[0].clone()).collect();
        // The alarm is not data: delete_all keeps it, as Durable Objects do.
        assert_eq!(
            names,
            [
                SqlValue::Text("_torpor_alarm".into()),
                SqlValue::Text("_torpor_kv".into())
            ]
        );
        s.put("k", b"again").unwrap();
    }
}
