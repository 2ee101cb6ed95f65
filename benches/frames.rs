//! WebSocket frame benches: decoding masked client frames through `Conn`, as
//! the hold loop does after each read, and encoding the unmasked server
//! frames it writes.
//!
//! Groups are `ws/<op>/<size>` with the payload as `Throughput::Bytes`. Not
//! measured: the read and write syscalls, and the hold loop's own work per
//! event (slab lookups, counters, forwarding to a worker).
//!
//! Each bench runs once in well under a millisecond, so CI's smoke run
//! (`cargo test --benches`) needs no smaller sizes.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use torpor_proto::ws::{apply_mask, encode_frame, encode_header, Conn, Event, Limits, OpCode};

const SIZES: [usize; 5] = [16, 125, 1024, 16 * 1024, 64 * 1024];

/// The default `limits.max_message_bytes`, so no size here trips it.
const LIMITS: Limits = Limits {
    max_message_bytes: 1 << 20,
};

/// The hold loop's read buffer (`SCRATCH_BYTES`, private to the gateway): a
/// frame longer than this never arrives in one read.
const SCRATCH_BYTES: usize = 64 * 1024;

/// `apply_mask` XORs whole words whatever the key's value, so a zero key
/// costs what a browser's random one does. Unmasking in place with it leaves
/// the bytes as they were, so one buffer decodes the same every iteration,
/// hot in cache like the hold loop's single read buffer, with no copy
/// to restore it between iterations.
const ZERO_KEY: [u8; 4] = [0; 4];

fn size_label(bytes: usize) -> String {
    match (bytes / 1024, bytes % 1024) {
        (kib, 0) if kib > 0 => format!("{kib}KiB"),
        _ => format!("{bytes}B"),
    }
}

/// ASCII shaped like the JSON chat traffic the edge mostly carries: UTF-8
/// validation takes its ASCII fast path, as it would on such messages.
fn text_payload(len: usize) -> Vec<u8> {
    br#"{"type":"chat","room":"lobby","text":"hello there"}"#
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// A masked client frame, built from the server header encoder plus the
/// mask bit and key, since torpor-proto encodes only server frames.
fn client_frame(opcode: OpCode, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    encode_header(&mut out, true, opcode, payload.len());
    out[1] |= 0x80;
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
    out
}

/// Feeds `reads` to `conn` one `handle_bytes` call each and returns the
/// payload of the one data message they hold, to check a frame before its
/// numbers are trusted.
fn decode_once(conn: &mut Conn, reads: &mut [&mut [u8]]) -> Vec<u8> {
    let mut messages = Vec::new();
    for read in reads {
        conn.handle_bytes(read, &LIMITS, &mut |event| match event {
            Event::Text(p) | Event::Binary(p) => messages.push(p.to_vec()),
            other => panic!("unexpected event {other:?}"),
        })
        .expect("a valid client frame");
    }
    assert_eq!(messages.len(), 1, "one message per frame");
    assert!(conn.is_idle(), "a whole frame leaves no buffer behind");
    messages.remove(0)
}

fn decode_whole(c: &mut Criterion, group_name: &str, opcode: OpCode) {
    let mut group = c.benchmark_group(group_name);
    for size in SIZES {
        let payload = text_payload(size);
        let mut wire = client_frame(opcode, ZERO_KEY, &payload);
        let mut conn = Conn::default();
        assert_eq!(decode_once(&mut conn, &mut [&mut wire]), payload);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(size_label(size), |b| {
            b.iter(|| {
                conn.handle_bytes(black_box(&mut wire), &LIMITS, &mut |event| {
                    black_box(event);
                })
                .expect("a valid client frame")
            });
        });
    }
    group.finish();
}

fn decode_text(c: &mut Criterion) {
    decode_whole(c, "ws/decode_text", OpCode::Text);
}

/// Binary skips UTF-8 validation; the gap to `decode_text` is its cost.
fn decode_binary(c: &mut Criterion) {
    decode_whole(c, "ws/decode_binary", OpCode::Binary);
}

/// A 64 KiB message is 14 bytes more than one read of the hold loop's read
/// buffer, so it arrives in at least two reads and goes through `Conn`'s
/// pending buffer: copied out of the read buffer, grown for the tail, then
/// unmasked there. This is that best case of two reads. The pending path
/// never writes to its input, so the same two buffers serve every iteration.
fn decode_text_split(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws/decode_text_split");
    let size = 64 * 1024;
    let payload = text_payload(size);
    let mut wire = client_frame(OpCode::Text, ZERO_KEY, &payload);
    assert!(wire.len() > SCRATCH_BYTES, "the frame must need two reads");
    let (first, rest) = wire.split_at_mut(SCRATCH_BYTES);
    let mut conn = Conn::default();
    assert_eq!(
        decode_once(&mut conn, &mut [&mut *first, &mut *rest]),
        payload
    );
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function(size_label(size), |b| {
        b.iter(|| {
            for read in [&mut *first, &mut *rest] {
                conn.handle_bytes(black_box(read), &LIMITS, &mut |event| {
                    black_box(event);
                })
                .expect("a valid client frame");
            }
        });
    });
    group.finish();
}

/// As the hold loop's `data_frame` does for every `Send` and `Broadcast`:
/// a fresh `Vec` per frame, turned into `Bytes` so it can be queued shared.
fn encode_text(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws/encode_text");
    for size in SIZES {
        let payload = text_payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(size_label(size), |b| {
            b.iter(|| Bytes::from(encode_frame(OpCode::Text, black_box(&payload))));
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode_text, decode_binary, decode_text_split, encode_text
}
criterion_main!(benches);
