//! The auto-response path as the hold loop runs it: a read holding masked
//! `ping` text frames goes through `Conn`, each message is compared with the
//! object's auto-response request, and the response frame goes out without
//! waking the object. Groups are `auto_response/ping/<pings per read>`, with
//! `Throughput::Elements` counting pings answered.
//!
//! `Edge::on_event` below mirrors the text/binary arm of `on_ws_event` in
//! `gateway/src/hold/mod.rs` for a socket in the `Open` phase, and `AutoReply`
//! mirrors the gateway's: the pong is framed once, when the object sets the
//! pair, and each answer clones that `Bytes`. What differs, being I/O or
//! private to the gateway:
//! - the answer is copied into an output `Vec`, where the hold loop's
//!   `queue_frame` hands it to write(2): one syscall per answer, so 64 in the
//!   64-ping batch, none of which is counted here;
//! - the read(2) that fills the read buffer is not done;
//! - the slab lookup, generation and phase checks, and the `mem::take` of the
//!   socket's `Conn` and the read buffer around `handle_bytes` are left out.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use torpor_proto::ipc::AutoResponse;
use torpor_proto::ws::{apply_mask, encode_frame, encode_header, Conn, Event, Limits, OpCode};

const LIMITS: Limits = Limits {
    max_message_bytes: 1 << 20,
};

/// `apply_mask` costs the same for any key, and a zero key unmasks in
/// place to the same bytes: one read buffer serves every iteration, still
/// reading `ping`, with no copy to restore it.
const ZERO_KEY: [u8; 4] = [0; 4];

/// The gateway's `hold::object::AutoReply`.
struct AutoReply {
    pair: AutoResponse,
    frame: Bytes,
}

impl AutoReply {
    /// As the hold loop handles `ToEdge::SetAutoResponse`.
    fn new(pair: AutoResponse) -> AutoReply {
        let opcode = if pair.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        let frame = Bytes::from(encode_frame(opcode, &pair.response));
        AutoReply { pair, frame }
    }
}

/// The state `on_ws_event` touches for one socket of one object.
struct Edge {
    auto_reply: Option<Box<AutoReply>>,
    object_auto_responses: u64,
    edge_auto_responses: u64,
    socket_auto_response_at_ms: u64,
    now_ms: u64,
    /// Stands for the socket: what write(2) would have been given.
    out: Vec<u8>,
}

impl Edge {
    fn on_event(&mut self, event: Event<'_>) {
        match event {
            Event::Text(payload) | Event::Binary(payload) => {
                let is_text = matches!(event, Event::Text(_));
                if let Some(auto) = self.auto_reply.as_ref() {
                    if is_text != auto.pair.binary && auto.pair.request == payload {
                        let frame = auto.frame.clone();
                        self.object_auto_responses += 1;
                        self.edge_auto_responses += 1;
                        self.socket_auto_response_at_ms = self.now_ms;
                        self.out.extend_from_slice(&frame);
                        return;
                    }
                }
                unreachable!("every message here is the auto-response request");
            }
            other => unreachable!("only text frames are sent, got {other:?}"),
        }
    }
}

fn ping_frame() -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(&mut out, true, OpCode::Text, 4);
    out[1] |= 0x80;
    out.extend_from_slice(&ZERO_KEY);
    let start = out.len();
    out.extend_from_slice(b"ping");
    apply_mask(&mut out[start..], ZERO_KEY, 0);
    out
}

fn ping(c: &mut Criterion) {
    let mut group = c.benchmark_group("auto_response/ping");
    for pings in [1usize, 64] {
        let mut read: Vec<u8> = ping_frame().repeat(pings);
        let mut conn = Conn::default();
        let mut edge = Edge {
            auto_reply: Some(Box::new(AutoReply::new(AutoResponse {
                binary: false,
                request: Bytes::from_static(b"ping"),
                response: Bytes::from_static(b"pong"),
            }))),
            object_auto_responses: 0,
            edge_auto_responses: 0,
            socket_auto_response_at_ms: 0,
            now_ms: 1_764_000_000_000,
            out: Vec::new(),
        };

        conn.handle_bytes(&mut read, &LIMITS, &mut |event| edge.on_event(event))
            .expect("valid pings");
        assert_eq!(edge.out, encode_frame(OpCode::Text, b"pong").repeat(pings));
        assert_eq!(edge.edge_auto_responses, pings as u64);
        assert!(conn.is_idle());

        group.throughput(Throughput::Elements(pings as u64));
        group.bench_function(format!("{pings}_per_read"), |b| {
            b.iter(|| {
                // The socket took the previous answers.
                edge.out.clear();
                conn.handle_bytes(black_box(&mut read), &LIMITS, &mut |event| {
                    edge.on_event(event)
                })
                .expect("valid pings");
                black_box(&edge.out);
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
