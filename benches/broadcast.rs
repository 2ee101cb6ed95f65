//! One broadcast delivered to N sockets by the real edge core
//! (`torpor::hold::bench`): the worker's `Broadcast` frame is decoded, the
//! targets picked (every socket of the object but the sender), the message
//! framed once and queued on each, and each queue written to its client,
//! which here is a buffer (the write stands for write(2)'s copy into the
//! kernel; the syscall, which dominates at the real edge, is not
//! measured). Groups are `broadcast/write/<N>` with
//! `Throughput::Elements(N)`: criterion reports deliveries per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use torpor::hold::bench::Edge;

const SOCKETS: [usize; 2] = [1_000, 10_000];

/// A chat line, as in the IPC `Broadcast` bench.
const PAYLOAD_BYTES: usize = 128;

fn payload() -> Vec<u8> {
    br#"{"type":"chat","room":"lobby","text":"hello there"}"#
        .iter()
        .copied()
        .cycle()
        .take(PAYLOAD_BYTES)
        .collect()
}

fn write(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast/write");
    let payload = payload();
    for n in SOCKETS {
        let mut edge = Edge::new(n + 1);
        // One more socket than deliveries: the sender is excepted.
        let clients: Vec<_> = (0..=n).map(|_| edge.connect("lobby")).collect();
        edge.broadcast(clients[0], &payload);
        assert!(edge.received(clients[0]).is_empty());
        assert_eq!(edge.received(clients[n]).len(), PAYLOAD_BYTES + 4);
        edge.clear_received();

        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(n.to_string(), |b| {
            b.iter(|| {
                edge.broadcast(clients[0], black_box(&payload));
                // Every socket took it.
                edge.clear_received();
            });
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
    targets = write
}
criterion_main!(benches);
