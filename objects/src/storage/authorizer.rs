//! The SQLite authorizer that fences object SQL: no transaction control, no
//! ATTACH/DETACH, only allow-listed PRAGMAs, no touching `_torpor_*` tables,
//! and no writes to SQLite's bookkeeping tables.
//!
//! Refusals are decided by SQLite's authorizer callback as each statement is
//! prepared, never by matching on the query text, so comments, quoting and
//! views cannot get around them. Not here: running statements (`sql.rs`), or
//! the function and virtual-table allowlists workerd also keeps (only
//! `load_extension` and non-allow-listed virtual table modules are refused).

use rusqlite::hooks::{AuthAction, AuthContext, Authorization, TransactionOperation};
use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Prefix of the tables the runtime keeps in an object's database.
pub const RESERVED_PREFIX: &str = "_torpor_";

/// PRAGMAs that only read, and take an optional table or index argument.
const PRAGMAS_WITH_ARGUMENT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "quick_check",
    "integrity_check",
    "optimize",
];
/// PRAGMAs that may be read but not set.
const PRAGMAS_READ_ONLY: &[&str] = &[
    "data_version",
    "page_size",
    "page_count",
    "freelist_count",
    "user_version",
    "schema_version",
];
/// Per-connection switches that cannot harm the file or the runtime.
const PRAGMAS_SETTABLE: &[&str] = &[
    "foreign_keys",
    "defer_foreign_keys",
    "case_sensitive_like",
    "ignore_check_constraints",
    "legacy_alter_table",
    "recursive_triggers",
    "reverse_unordered_selects",
];
const VTABLE_MODULES: &[&str] = &["fts5", "fts5vocab", "rtree", "rtree_i32"];

/// State shared between [`super::Storage`] and the callback SQLite holds.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    /// Set while the engine prepares its own statements, which must be
    /// allowed everything (savepoints, `_torpor_kv`, pragmas).
    internal: AtomicBool,
    /// Set when the statement being prepared did DDL, so the writes SQLite
    /// itself issues to `sqlite_sequence` for DROP/ALTER are let through.
    in_ddl: AtomicBool,
    /// What the last refusal was, so the caller's error can say it:
    /// SQLite's own message is only "not authorized".
    last_denial: Mutex<Option<String>>,
}

impl AuthState {
    pub(crate) fn install(conn: &Connection) -> Arc<Self> {
        let state = Arc::new(Self::default());
        let hook = Arc::clone(&state);
        conn.authorizer(Some(move |ctx: AuthContext<'_>| hook.authorize(ctx)));
        state
    }

    /// Lets the engine's own statements through until the guard drops.
    pub(crate) fn internal(&self) -> InternalGuard<'_> {
        let was = self.internal.swap(true, Ordering::Relaxed);
        InternalGuard { state: self, was }
    }

    /// Called before each user statement is prepared.
    pub(crate) fn start_statement(&self) {
        self.in_ddl.store(false, Ordering::Relaxed);
        self.take_denial();
    }

    pub(crate) fn take_denial(&self) -> Option<String> {
        // A poisoned lock only means a panic elsewhere; the text is still fine.
        let mut last = self.last_denial.lock().unwrap_or_else(|e| e.into_inner());
        last.take()
    }

    fn authorize(&self, ctx: AuthContext<'_>) -> Authorization {
        if self.internal.load(Ordering::Relaxed) {
            return Authorization::Allow;
        }
        if let AuthAction::Analyze { table_name } = ctx.action {
            if is_reserved(table_name) {
                // ANALYZE and `PRAGMA optimize` cover every table; Ignore
                // makes SQLite skip the runtime's instead of failing.
                return Authorization::Ignore;
            }
        }
        match self.decide(ctx.action) {
            Ok(()) => Authorization::Allow,
            Err(what) => {
                let mut last = self.last_denial.lock().unwrap_or_else(|e| e.into_inner());
                // Keep the first refusal of a statement: it is the cause.
                last.get_or_insert(what);
                Authorization::Deny
            }
        }
    }

    fn decide(&self, action: AuthAction<'_>) -> Result<(), String> {
        use AuthAction as A;
        let names: &[&str] = match action {
            A::Transaction { operation } => {
                let op = match operation {
                    TransactionOperation::Begin => "BEGIN",
                    TransactionOperation::Rollback => "ROLLBACK",
                    // SQLite passes "COMMIT" (or "END"), which rusqlite
                    // does not name.
                    _ => "COMMIT",
                };
                return Err(format!("{op} is not allowed, use transaction_sync"));
            }
            A::Savepoint { operation, .. } => {
                let op = match operation {
                    TransactionOperation::Begin => "SAVEPOINT",
                    TransactionOperation::Release => "RELEASE",
                    _ => "ROLLBACK TO",
                };
                return Err(format!("{op} is not allowed, use transaction_sync"));
            }
            A::Attach { .. } => return Err("ATTACH is not allowed".to_owned()),
            A::Detach { .. } => return Err("DETACH is not allowed".to_owned()),
            A::Pragma {
                pragma_name,
                pragma_value,
            } => return pragma(pragma_name, pragma_value),
            A::Function { function_name }
                if function_name.eq_ignore_ascii_case("load_extension") =>
            {
                return Err("function load_extension is not allowed".to_owned())
            }
            A::CreateVtable {
                table_name,
                module_name,
            } => {
                if !VTABLE_MODULES
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(module_name))
                {
                    return Err(format!("virtual table module {module_name} is not allowed"));
                }
                &[table_name]
            }
            A::Insert { table_name } | A::Delete { table_name } => {
                return self.write(table_name);
            }
            A::Update { table_name, .. } => return self.write(table_name),
            A::DropTable { table_name } | A::DropTempTable { table_name } => {
                self.in_ddl.store(true, Ordering::Relaxed);
                &[table_name]
            }
            A::AlterTable { table_name, .. } => {
                self.in_ddl.store(true, Ordering::Relaxed);
                &[table_name]
            }
            A::CreateTable { table_name }
            | A::CreateTempTable { table_name }
            | A::Analyze { table_name }
            | A::DropVtable { table_name, .. }
            | A::Read { table_name, .. } => &[table_name],
            A::CreateView { view_name }
            | A::CreateTempView { view_name }
            | A::DropView { view_name }
            | A::DropTempView { view_name } => &[view_name],
            A::Reindex { index_name } => &[index_name],
            A::CreateIndex {
                index_name,
                table_name,
            }
            | A::CreateTempIndex {
                index_name,
                table_name,
            }
            | A::DropIndex {
                index_name,
                table_name,
            }
            | A::DropTempIndex {
                index_name,
                table_name,
            } => &[index_name, table_name],
            A::CreateTrigger {
                trigger_name,
                table_name,
            }
            | A::CreateTempTrigger {
                trigger_name,
                table_name,
            }
            | A::DropTrigger {
                trigger_name,
                table_name,
            }
            | A::DropTempTrigger {
                trigger_name,
                table_name,
            } => &[trigger_name, table_name],
            _ => &[],
        };
        match names.iter().find(|n| is_reserved(n)) {
            Some(name) => Err(format!("{name} is reserved for the runtime")),
            None => Ok(()),
        }
    }

    fn write(&self, table: &str) -> Result<(), String> {
        if is_reserved(table) {
            return Err(format!("{table} is reserved for the runtime"));
        }
        if !has_prefix(table, "sqlite_") {
            return Ok(());
        }
        let lower = table.to_ascii_lowercase();
        let allowed = match lower.as_str() {
            // DDL records itself here; SQLite refuses direct writes on its
            // own, and writable_schema is refused below.
            "sqlite_master" | "sqlite_schema" | "sqlite_temp_master" | "sqlite_temp_schema" => true,
            // DROP TABLE and ALTER TABLE clean up autoincrement counters.
            "sqlite_sequence" => self.in_ddl.load(Ordering::Relaxed),
            // ANALYZE and `PRAGMA optimize` refresh planner statistics, in
            // SQL that SQLite runs through this callback without any prior
            // action to recognise it by; statistics cannot harm the runtime.
            _ => lower.starts_with("sqlite_stat"),
        };
        if allowed {
            Ok(())
        } else {
            Err(format!("writing {table} is not allowed"))
        }
    }
}

pub(crate) struct InternalGuard<'a> {
    state: &'a AuthState,
    was: bool,
}

impl Drop for InternalGuard<'_> {
    fn drop(&mut self) {
        self.state.internal.store(self.was, Ordering::Relaxed);
    }
}

fn pragma(name: &str, value: Option<&str>) -> Result<(), String> {
    let is = |list: &[&str]| list.iter().any(|p| p.eq_ignore_ascii_case(name));
    if is(PRAGMAS_WITH_ARGUMENT) {
        match value {
            Some(arg) if is_reserved(arg) => Err(format!("{arg} is reserved for the runtime")),
            _ => Ok(()),
        }
    } else if is(PRAGMAS_SETTABLE) || (is(PRAGMAS_READ_ONLY) && value.is_none()) {
        Ok(())
    } else if is(PRAGMAS_READ_ONLY) {
        Err(format!("pragma {name} can only be read"))
    } else {
        Err(format!("pragma {name} is not allowed"))
    }
}

/// SQLite names are case-insensitive, so the prefix is too.
pub(crate) fn is_reserved(name: &str) -> bool {
    has_prefix(name, RESERVED_PREFIX)
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::open_temp;
    use super::super::{SqlValue, StorageError};

    fn refused(sql: &str) -> String {
        let (_dir, mut s) = open_temp();
        s.exec("CREATE TABLE t(a)", &[]).unwrap();
        s.begin_event().unwrap();
        let e = s.exec(sql, &[]).unwrap_err();
        let StorageError::NotAuthorized { what } = e else {
            panic!("{sql}: not an authorizer refusal: {e}");
        };
        // The refused statement did not end the event's transaction.
        s.put("k", b"v").unwrap();
        s.commit_event().unwrap();
        what
    }

    #[test]
    fn transaction_control_is_refused() {
        assert_eq!(
            refused("BEGIN"),
            "BEGIN is not allowed, use transaction_sync"
        );
        assert_eq!(
            refused("COMMIT"),
            "COMMIT is not allowed, use transaction_sync"
        );
        assert_eq!(
            refused("ROLLBACK"),
            "ROLLBACK is not allowed, use transaction_sync"
        );
        assert_eq!(
            refused("SAVEPOINT x"),
            "SAVEPOINT is not allowed, use transaction_sync"
        );
        assert_eq!(
            refused("RELEASE x"),
            "RELEASE is not allowed, use transaction_sync"
        );
    }

    #[test]
    fn attach_and_detach_are_refused() {
        assert_eq!(
            refused("ATTACH DATABASE ':memory:' AS other"),
            "ATTACH is not allowed"
        );
        assert_eq!(refused("DETACH DATABASE other"), "DETACH is not allowed");
    }

    #[test]
    fn pragmas_outside_the_allowlist_are_refused() {
        assert_eq!(
            refused("PRAGMA journal_mode=DELETE"),
            "pragma journal_mode is not allowed"
        );
        assert_eq!(
            refused("PRAGMA writable_schema=1"),
            "pragma writable_schema is not allowed"
        );
        assert_eq!(
            refused("PRAGMA user_version = 3"),
            "pragma user_version can only be read"
        );
        assert_eq!(
            refused("PRAGMA table_info(_torpor_kv)"),
            "_torpor_kv is reserved for the runtime"
        );
    }

    #[test]
    fn reserved_tables_are_refused() {
        let reserved = "_torpor_kv is reserved for the runtime";
        assert_eq!(refused("SELECT * FROM _torpor_kv"), reserved);
        // SQLite reports the name as declared, whatever case the query used.
        assert_eq!(refused("select key from _TORPOR_KV"), reserved);
        assert_eq!(
            refused("CREATE TABLE _torpor_x(a)"),
            "_torpor_x is reserved for the runtime"
        );
        assert_eq!(refused("DROP TABLE _torpor_kv"), reserved);
        assert_eq!(
            refused("INSERT INTO _torpor_kv VALUES ('k', x'00')"),
            reserved
        );
        assert_eq!(refused("UPDATE _torpor_kv SET value = x'00'"), reserved);
        assert_eq!(refused("DELETE FROM _torpor_kv"), reserved);
        assert_eq!(refused("ALTER TABLE _torpor_kv RENAME TO kv"), reserved);
        assert_eq!(refused("CREATE INDEX i ON _torpor_kv(value)"), reserved);
    }

    #[test]
    fn reserved_tables_are_refused_through_views_and_triggers() {
        // SQLite authorizes a view's or trigger's body where it is used, not
        // where it is created, so the refusal comes at first use.
        let (_dir, mut s) = open_temp();
        s.exec(
            "CREATE TABLE t(a);
             CREATE VIEW v AS SELECT * FROM _torpor_kv;
             CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM _torpor_kv; END",
            &[],
        )
        .unwrap();
        for sql in ["SELECT * FROM v", "INSERT INTO t VALUES (1)"] {
            let e = s.exec(sql, &[]).unwrap_err();
            assert_eq!(
                e.to_string(),
                "not authorized: _torpor_kv is reserved for the runtime"
            );
        }
    }

    #[test]
    fn writes_to_sqlite_internals_are_refused() {
        let (dir, mut s) = open_temp();
        s.exec(
            "CREATE TABLE a(id INTEGER PRIMARY KEY AUTOINCREMENT); INSERT INTO a DEFAULT VALUES",
            &[],
        )
        .unwrap();
        let e = s.exec("DELETE FROM sqlite_sequence", &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "not authorized: writing sqlite_sequence is not allowed"
        );
        assert!(s.exec("UPDATE sqlite_schema SET sql = ''", &[]).is_err());
        // What SQLite writes there itself for DDL still works.
        s.exec(
            "ALTER TABLE a RENAME TO b; DROP TABLE b; ANALYZE; ANALYZE; PRAGMA optimize",
            &[],
        )
        .unwrap();
        // VACUUM has no authorizer action, but `exec` always runs in a
        // transaction, where SQLite refuses it, so it cannot write a copy
        // of the database anywhere.
        let copy = dir.path().join("copy.sqlite");
        let vacuum = format!("VACUUM INTO '{}'", copy.display());
        assert!(s.exec(&vacuum, &[]).is_err());
        assert!(!copy.exists());
        // Not even registered (rusqlite is built without it); refused if it
        // ever is.
        assert!(s.exec("SELECT load_extension('x')", &[]).is_err());
    }

    #[test]
    fn allowed_pragmas_and_ordinary_sql_work() {
        let (_dir, mut s) = open_temp();
        s.exec("CREATE TABLE t(a INTEGER, b TEXT)", &[]).unwrap();
        let c = s.exec("PRAGMA table_info(t)", &[]).unwrap();
        assert_eq!(c.rows.len(), 2);
        assert_eq!(c.rows[0][1], SqlValue::Text("a".into()));
        s.exec(
            "PRAGMA foreign_keys = OFF; PRAGMA user_version; PRAGMA table_list",
            &[],
        )
        .unwrap();
        s.exec("CREATE TEMP TABLE scratch(x); DROP TABLE scratch", &[])
            .unwrap();
        // The engine's own savepoints and KV statements are unaffected.
        s.transaction_sync(|tx| tx.put("k", b"v")).unwrap();
    }
}
