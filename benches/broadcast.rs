//! One broadcast delivered to N sockets, as the hold loop handles
//! `ToEdge::Broadcast`: pick the targets, frame the message once, then hand
//! the same frame to every target. Groups are `broadcast/<path>/<N>` with
//! `Throughput::Elements(N)`, so criterion reports deliveries per second.
//!
//! The hold loop's `queue_frame` has two paths per socket, one bench each:
//! - `write`: the socket's queue is empty (the usual case), so the frame is
//!   written at once, straight from the shared `Bytes`. Here the copy into a
//!   per-socket `Vec` stands for the copy write(2) makes into the socket's
//!   kernel buffer; the syscall itself, which dominates at the edge, is not
//!   measured.
//! - `queue`: the socket has unwritten bytes, so a clone of the `Bytes` (one
//!   reference count, no copy) joins its queue. `OutQueue` below mirrors the
//!   gateway's. Dropping the clone, which the hold loop does once the socket
//!   takes it, happens at the next iteration's turn for the same socket and
//!   is measured too.
//!
//! Target selection is mirrored for the common case, no tag and the sender
//! excepted, over a plain list of slots; the gateway also looks each slot up
//! in its slab and checks its phase, which is left out.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Duration;
use torpor_proto::ws::{encode_frame, OpCode};

const SOCKETS: [usize; 2] = [1_000, 10_000];

/// A chat line, as in the IPC `Broadcast` bench.
const PAYLOAD_BYTES: usize = 128;

/// The gateway's `hold::socket::OutQueue`.
#[derive(Default)]
struct OutQueue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl OutQueue {
    fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// What a flush that wrote everything leaves.
    fn drain(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }
}

fn payload() -> Vec<u8> {
    br#"{"type":"chat","room":"lobby","text":"hello there"}"#
        .iter()
        .copied()
        .cycle()
        .take(PAYLOAD_BYTES)
        .collect()
}

/// As the hold loop's `broadcast` fills its reused `targets` list.
fn select_targets(targets: &mut Vec<u32>, sockets: &[u32], except: Option<u32>) {
    targets.clear();
    targets.extend(sockets.iter().copied().filter(|&s| Some(s) != except));
}

/// As the hold loop's `data_frame`.
fn frame(payload: &[u8]) -> Bytes {
    Bytes::from(encode_frame(OpCode::Text, payload))
}

fn write(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast/write");
    let payload = payload();
    for n in SOCKETS {
        // One more socket than deliveries: the sender is excepted.
        let sockets: Vec<u32> = (0..=n as u32).collect();
        let mut outs: Vec<Vec<u8>> = vec![Vec::with_capacity(PAYLOAD_BYTES + 4); n + 1];
        let mut targets = Vec::new();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(n.to_string(), |b| {
            b.iter(|| {
                select_targets(&mut targets, &sockets, Some(0));
                let frame = frame(black_box(&payload));
                for &slot in &targets {
                    let out = &mut outs[slot as usize];
                    // The socket took the previous broadcast.
                    out.clear();
                    out.extend_from_slice(&frame);
                }
                black_box(&outs);
            });
        });
        assert_eq!(targets.len(), n);
        assert_eq!(outs[n], encode_frame(OpCode::Text, &payload));
    }
    group.finish();
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast/queue");
    let payload = payload();
    for n in SOCKETS {
        let sockets: Vec<u32> = (0..=n as u32).collect();
        let mut queues: Vec<OutQueue> = (0..=n).map(|_| OutQueue::default()).collect();
        let mut targets = Vec::new();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(n.to_string(), |b| {
            b.iter(|| {
                select_targets(&mut targets, &sockets, Some(0));
                let frame = frame(black_box(&payload));
                for &slot in &targets {
                    let queue = &mut queues[slot as usize];
                    queue.drain();
                    queue.push(frame.clone());
                }
                black_box(&queues);
            });
        });
        assert_eq!(queues[n].bytes, encode_frame(OpCode::Text, &payload).len());
        assert!(queues[0].chunks.is_empty());
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
    targets = write, queue
}
criterion_main!(benches);
