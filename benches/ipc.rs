//! Edge ⇄ worker IPC benches: encoding and decoding the messages that carry
//! client traffic (`Message`, `Broadcast`) and the largest routine one (a
//! page of `SocketDescriptions`: 512 sockets with 2,000-byte attachments,
//! what a handler that reads every attachment of a room gets at a time).
//! Groups are `ipc/<op>/<message>_<size>`, with the frame's length on the
//! wire as `Throughput::Bytes`.
//!
//! - `encode` appends to a reused buffer, as the edge's per-worker `out`
//!   and the worker's outbox are; a client's `Message` goes through
//!   `encode_message`, as the edge forwards it from its read buffer. The
//!   page is built beforehand: gathering it from the edge's socket slab is
//!   gateway code and is not measured.
//! - `decode` is `decode` alone on a split-off frame (the clone that feeds
//!   it is one reference count).
//! - `split_decode` is the receive path after the read: the frame's bytes
//!   appended to the link buffer (the hold loop copies them there from its
//!   read buffer; the worker reads into it directly), `split_frame`, then
//!   `decode`.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use torpor_proto::ipc::{split_frame, SocketInfo, ToEdge, ToWorker};
use torpor_proto::SocketHandle;

/// Which side decodes the message.
#[derive(Clone, Copy)]
enum Receiver {
    Worker,
    Edge,
}

/// A message as its sender holds it before encoding.
enum Outgoing {
    /// A client's message, borrowed from the edge's read buffer.
    ClientMessage(Bytes),
    ToWorker(ToWorker),
    ToEdge(ToEdge),
}

impl Outgoing {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Outgoing::ClientMessage(payload) => {
                ToWorker::encode_message(out, OBJECT, handle(SENDER_SLOT), true, AT_MS, payload)
            }
            Outgoing::ToWorker(message) => message.encode(out),
            Outgoing::ToEdge(message) => message.encode(out),
        }
    }
}

struct Case {
    name: String,
    receiver: Receiver,
    message: Outgoing,
    /// The frame as it goes on the wire, length prefix included.
    wire: Vec<u8>,
}

const OBJECT: u32 = 7;
const SENDER_SLOT: u32 = 42;
const AT_MS: u64 = 1_764_000_000_000;

fn size_label(bytes: usize) -> String {
    match (bytes / 1024, bytes % 1024) {
        (kib, 0) if kib > 0 => format!("{kib}KiB"),
        _ => format!("{bytes}B"),
    }
}

fn handle(slot: u32) -> SocketHandle {
    SocketHandle {
        edge: 0,
        slot,
        generation: 3,
    }
}

fn text(len: usize) -> Bytes {
    br#"{"type":"chat","room":"lobby","text":"hello there"}"#
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn decode(receiver: Receiver, frame: Bytes) {
    match receiver {
        Receiver::Worker => {
            black_box(ToWorker::decode(frame).expect("a valid frame"));
        }
        Receiver::Edge => {
            black_box(ToEdge::decode(frame).expect("a valid frame"));
        }
    }
}

fn message_case(size: usize) -> Case {
    let payload = text(size);
    let message = Outgoing::ClientMessage(payload.clone());
    let mut wire = Vec::new();
    message.encode(&mut wire);
    let decoded = ToWorker::decode(Bytes::copy_from_slice(&wire[4..])).expect("a valid frame");
    assert_eq!(
        decoded,
        ToWorker::Message {
            object: OBJECT,
            handle: handle(SENDER_SLOT),
            is_text: true,
            auto_response_at_ms: AT_MS,
            payload,
        }
    );
    Case {
        name: format!("message_{}", size_label(size)),
        receiver: Receiver::Worker,
        message,
        wire,
    }
}

/// A chat line to everyone but its sender, the common broadcast.
fn broadcast_case() -> Case {
    let size = 128;
    let message = ToEdge::Broadcast {
        object: OBJECT,
        tag: None,
        except: Some(handle(SENDER_SLOT)),
        is_text: true,
        payload: text(size),
    };
    let mut wire = Vec::new();
    message.encode(&mut wire);
    let decoded = ToEdge::decode(Bytes::copy_from_slice(&wire[4..])).expect("a valid frame");
    assert_eq!(decoded, message);
    Case {
        name: format!("broadcast_{}", size_label(size)),
        receiver: Receiver::Edge,
        message: Outgoing::ToEdge(message),
        wire,
    }
}

/// One page of the bulk socket query (`DescribeSockets`, about 1 MiB):
/// each socket with its own attachment buffer and one tag, as the edge
/// builds them (it copies each socket's attachment out of the slab).
fn describe_sockets_case() -> Case {
    let sockets = 512;
    let attachment_bytes = 2_000;
    let message = ToWorker::SocketDescriptions {
        sockets: (0..sockets)
            .map(|slot| SocketInfo {
                handle: handle(slot),
                tags: vec!["player".to_owned()],
                attachment: Some(Bytes::from(vec![b'a'; attachment_bytes])),
                auto_response_at_ms: AT_MS,
            })
            .collect(),
        more: false,
    };
    let mut wire = Vec::new();
    message.encode(&mut wire);
    let decoded = ToWorker::decode(Bytes::copy_from_slice(&wire[4..])).expect("a valid frame");
    assert_eq!(decoded, message);
    Case {
        name: format!("describe_sockets_{sockets}x{attachment_bytes}B"),
        receiver: Receiver::Worker,
        message: Outgoing::ToWorker(message),
        wire,
    }
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = [16, 1024, 64 * 1024].map(message_case).into();
    cases.push(broadcast_case());
    cases.push(describe_sockets_case());
    cases
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ipc/encode");
    for case in cases() {
        let mut out = Vec::with_capacity(case.wire.len());
        group.throughput(Throughput::Bytes(case.wire.len() as u64));
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                out.clear();
                case.message.encode(&mut out);
                black_box(&out);
            });
        });
        assert_eq!(out, case.wire);
    }
    group.finish();
}

fn decode_only(c: &mut Criterion) {
    let mut group = c.benchmark_group("ipc/decode");
    for case in cases() {
        let frame = Bytes::copy_from_slice(&case.wire[4..]);
        group.throughput(Throughput::Bytes(case.wire.len() as u64));
        group.bench_function(&case.name, |b| {
            b.iter(|| decode(case.receiver, frame.clone()));
        });
    }
    group.finish();
}

fn split_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ipc/split_decode");
    for case in cases() {
        // The worker's starting size; the edge's grows to the same.
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        group.throughput(Throughput::Bytes(case.wire.len() as u64));
        group.bench_function(&case.name, |b| {
            b.iter(|| {
                rbuf.extend_from_slice(black_box(&case.wire));
                let frame = split_frame(&mut rbuf)
                    .expect("a valid frame")
                    .expect("the whole frame is there");
                decode(case.receiver, frame);
            });
        });
        assert!(rbuf.is_empty());
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
    targets = encode, decode_only, split_decode
}
criterion_main!(benches);
