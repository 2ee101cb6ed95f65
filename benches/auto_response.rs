//! The auto-response path of the real edge core (`torpor::hold::bench`):
//! a read holding masked `ping` text frames goes through the socket's
//! session, each message matches the object's auto-response, and the
//! answers are queued and written to the client, which here is a buffer
//! (the write stands for write(2)'s copy into the kernel; the syscall is
//! not measured). Groups are `auto_response/ping/<pings per read>`, with
//! `Throughput::Elements` counting pings answered.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use torpor::hold::bench::{client_frame, Edge};

const TEXT: u8 = 0x1;

/// A client's `ping` masked with a zero key: unmasking in place leaves it
/// as it was, so one read buffer serves every iteration with no copy to
/// restore it.
fn ping_frame() -> Vec<u8> {
    let mut frame = client_frame(TEXT, b"ping");
    // Header (2 bytes), then the 4-byte key, then the payload.
    frame[2..6].fill(0);
    frame[6..].copy_from_slice(b"ping");
    frame
}

fn ping(c: &mut Criterion) {
    let mut group = c.benchmark_group("auto_response/ping");
    for pings in [1usize, 64] {
        let mut edge = Edge::new(16);
        let client = edge.connect("room");
        edge.set_auto_response(client, b"ping", b"pong");
        let mut read = ping_frame().repeat(pings);
        edge.client_sends(client, &mut read);
        let answer = [0x81, 4, b'p', b'o', b'n', b'g'];
        assert_eq!(edge.received(client), answer.repeat(pings));
        edge.clear_received();

        group.throughput(Throughput::Elements(pings as u64));
        group.bench_function(format!("{pings}_per_read"), |b| {
            b.iter(|| {
                edge.client_sends(client, black_box(&mut read));
                // The client took the answers.
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
    targets = ping
}
criterion_main!(benches);
