//! Storage engine benches: what an object's KV and SQL calls cost, with and
//! without the durable commit that closes every event (WAL; `commit_event`
//! fsyncs before it returns, `commit_event_unsynced` leaves the fsync to
//! its caller), and what opening an object's database costs.
//!
//! Groups are `storage/<op>/<size>`. Each database lives in a temp dir under
//! `CARGO_TARGET_TMPDIR`, on the same disk as `target/`, rather than in
//! `/tmp`, which may be a tmpfs where fsync costs nothing. Under `CI` the
//! value sizes shrink to one small size, since CI only runs these once as a
//! smoke test (`cargo test --benches`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use tempfile::TempDir;
use torpor_objects::storage::{SqlValue, Storage, StorageLimits};

/// Distinct keys the write benches cycle through: the table stays at a
/// steady size instead of growing with the iteration count.
const KEYS: usize = 1024;
/// Entries per `put_many`, Durable Objects' (and our) batch limit.
const BATCH: usize = 128;
/// Rows per event in `sql_insert_batch`.
const SQL_BATCH: usize = 100;

fn value_sizes() -> &'static [usize] {
    if std::env::var_os("CI").is_some() {
        &[100]
    } else {
        &[100, 4096]
    }
}

fn size_label(bytes: usize) -> String {
    match (bytes / 1024, bytes % 1024) {
        (kib, 0) if kib > 0 => format!("{kib}KiB"),
        _ => format!("{bytes}B"),
    }
}

/// A fresh database in its own temp dir; the dir goes when the guard drops.
fn open() -> (TempDir, Storage) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let storage =
        Storage::open(&dir.path().join("object.sqlite"), StorageLimits::default()).expect("open");
    (dir, storage)
}

fn key(i: usize) -> String {
    format!("key-{:05}", i % KEYS)
}

/// A value of `size` bytes that differs from the one written before under
/// the same key. SQLite skips writing a page whose cell is overwritten with
/// identical bytes, so a constant value makes the commit write (and fsync)
/// nothing: measured here at 5 µs per "durable" put instead of ~100 µs.
fn stamped(size: usize, i: usize) -> Vec<u8> {
    let mut value = vec![b'v'; size];
    let stamp = format!("{i:016x}");
    let n = stamp.len().min(size);
    value[..n].copy_from_slice(&stamp.as_bytes()[..n]);
    value
}

fn kv_put_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/kv_put_commit");
    for &size in value_sizes() {
        let (_dir, mut storage) = open();
        let mut i = 0usize;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(size_label(size), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    (key(i), stamped(size, i))
                },
                |(key, value)| {
                    storage.begin_event().expect("begin");
                    storage.put(&key, &value).expect("put");
                    storage.commit_event().expect("commit");
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn kv_get(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/kv_get");
    for &size in value_sizes() {
        let (_dir, mut storage) = open();
        let value = vec![b'v'; size];
        storage.begin_event().expect("begin");
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(BATCH) {
            let entries: Vec<_> = chunk.iter().map(|&i| (key(i), &value[..])).collect();
            storage.put_many(&entries).expect("fill");
        }
        storage.commit_event().expect("commit");
        // Reads happen inside an event, as a handler's do.
        storage.begin_event().expect("begin");
        let mut i = 0usize;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(size_label(size), |b| {
            b.iter_batched(
                || {
                    i += 1;
                    key(i)
                },
                |key| black_box(storage.get(&key).expect("get").expect("present")),
                BatchSize::SmallInput,
            );
        });
        storage.rollback_event().expect("rollback");
    }
    group.finish();
}

fn kv_put_batch_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/kv_put_batch_commit");
    for &size in value_sizes() {
        let (_dir, mut storage) = open();
        let mut round = 0usize;
        group.throughput(Throughput::Bytes((BATCH * size) as u64));
        group.bench_function(format!("{BATCH}x{}", size_label(size)), |b| {
            b.iter_batched(
                || {
                    round += 1;
                    (0..BATCH)
                        .map(|j| {
                            let i = round * BATCH + j;
                            (key(i), stamped(size, i))
                        })
                        .collect::<Vec<_>>()
                },
                |entries| {
                    storage.begin_event().expect("begin");
                    storage.put_many(&entries).expect("put_many");
                    storage.commit_event().expect("commit");
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

/// A database with the table the SQL benches insert into.
fn open_sql() -> (TempDir, Storage) {
    let (dir, mut storage) = open();
    storage
        .exec(
            "CREATE TABLE events(id INTEGER PRIMARY KEY, at INTEGER NOT NULL, body TEXT NOT NULL)",
            &[],
        )
        .expect("create table");
    (dir, storage)
}

const INSERT: &str = "INSERT INTO events(at, body) VALUES (?1, ?2)";

fn sql_row(i: usize) -> [SqlValue; 2] {
    [
        SqlValue::Integer(i as i64),
        SqlValue::Text(format!("event body {i:08} of about fifty bytes, padded")),
    ]
}

fn sql_insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/sql_insert_commit");
    let (_dir, mut storage) = open_sql();
    let mut i = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("1", |b| {
        b.iter_batched(
            || {
                i += 1;
                sql_row(i)
            },
            |row| {
                storage.begin_event().expect("begin");
                storage.exec(INSERT, &row).expect("insert");
                storage.commit_event().expect("commit");
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("storage/sql_insert_batch");
    let (_dir, mut storage) = open_sql();
    let mut i = 0usize;
    group.throughput(Throughput::Elements(SQL_BATCH as u64));
    group.bench_function(SQL_BATCH.to_string(), |b| {
        b.iter_batched(
            || {
                (0..SQL_BATCH)
                    .map(|_| {
                        i += 1;
                        sql_row(i)
                    })
                    .collect::<Vec<_>>()
            },
            |rows| {
                storage.begin_event().expect("begin");
                for row in &rows {
                    storage.exec(INSERT, row).expect("insert");
                }
                storage.commit_event().expect("commit");
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

/// What a new or reopened object costs the worker's thread: opening
/// an existing database (and closing it, as the cap on open databases
/// does), a new file's first event with its fsyncs inline (a worker with
/// no spare database left), and an event's commit without its fsync (what
/// the worker's thread pays; the fsync runs on the blocking pool).
fn object_lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage/object");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let existing = dir.path().join("existing.sqlite");
    Storage::open(&existing, StorageLimits::default())
        .and_then(Storage::close)
        .expect("make");
    group.bench_function("open_close_existing", |b| {
        b.iter(|| {
            let storage = Storage::open(&existing, StorageLimits::default()).expect("open");
            storage.close().expect("close");
        });
    });
    let mut n = 0usize;
    group.bench_function("new_file_first_event_synced", |b| {
        b.iter_batched(
            || {
                n += 1;
                dir.path().join(format!("new-{n}.sqlite"))
            },
            |path| {
                let mut storage =
                    Storage::open_in_event(&path, StorageLimits::default()).expect("open");
                storage.put("value", b"1").expect("put");
                storage.commit_event().expect("commit");
                storage
            },
            BatchSize::PerIteration,
        );
    });
    let (_dir, mut storage) = open();
    let mut i = 0usize;
    group.bench_function("kv_put_commit_unsynced", |b| {
        b.iter_batched(
            || {
                i += 1;
                (key(i), stamped(100, i))
            },
            |(key, value)| {
                storage.begin_event().expect("begin");
                storage.put(&key, &value).expect("put");
                storage.commit_event_unsynced().expect("commit")
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(
    benches,
    kv_put_commit,
    kv_get,
    kv_put_batch_commit,
    sql_insert,
    object_lifecycle
);
criterion_main!(benches);
