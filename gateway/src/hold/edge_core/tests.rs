//! The edge's rules, run on the real core with a simulated clock, a
//! scripted worker and clients made of buffers.

use super::harness::*;
use super::*;
use proptest::prelude::*;
use torpor_proto::ipc::{SocketInfo, ToWorker};

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

fn received(h: &Harness, socket: Socket) -> Vec<ServerFrame> {
    server_frames(&h.peer(socket).received).expect("valid frames")
}

/// The messages the worker got, as (handle, text).
fn messages(inbox: &[ToWorker]) -> Vec<(SocketHandle, String)> {
    inbox
        .iter()
        .filter_map(|m| match m {
            ToWorker::Message {
                handle, payload, ..
            } => Some((*handle, String::from_utf8_lossy(payload).into_owned())),
            _ => None,
        })
        .collect()
}

/// The closes the worker was told of, as (handle, code, clean).
fn closes(inbox: &[ToWorker]) -> Vec<(SocketHandle, u16, bool)> {
    inbox
        .iter()
        .filter_map(|m| match m {
            ToWorker::Closed {
                handle,
                code,
                was_clean,
                ..
            } => Some((*handle, *code, *was_clean)),
            _ => None,
        })
        .collect()
}

/// The worker's `Done` for `events` events of `object`.
fn done(object: u32, events: u32) -> ToEdge {
    ToEdge::Done {
        object,
        events,
        rows_read: 0,
        rows_written: 0,
        stored_bytes: None,
        active_us: 0,
    }
}

fn send(h: &mut Harness, socket: Socket, text: &str) {
    h.worker_sends(ToEdge::Send {
        handle: socket.handle,
        is_text: true,
        payload: Bytes::copy_from_slice(text.as_bytes()),
    });
}

#[test]
fn a_message_reaches_the_worker_and_its_answer_the_client() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    let inbox = h.take_inbox();
    assert!(inbox.is_empty(), "nothing after the upgrade: {inbox:?}");
    h.client_sends(socket, &client_frame(true, TEXT, b"hello"));
    let inbox = h.take_inbox();
    assert_eq!(messages(&inbox), [(socket.handle, "hello".to_owned())]);
    send(&mut h, socket, "hi back");
    assert_eq!(texts(&received(&h, socket)), ["hi back"]);
}

#[test]
fn a_message_split_at_every_byte_arrives_whole() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    let mut bytes = client_frame(false, TEXT, b"frag");
    bytes.extend(client_frame(true, 0x0, b"mented"));
    for byte in bytes {
        h.client_sends(socket, &[byte]);
    }
    assert_eq!(
        messages(&h.take_inbox()),
        [(socket.handle, "fragmented".to_owned())]
    );
}

#[test]
fn pings_are_answered_at_the_edge_and_never_reach_the_worker() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    let mut pings = Vec::new();
    for i in 0..60u8 {
        pings.extend(client_frame(true, PING, &[i]));
    }
    h.client_sends(socket, &pings);
    let pongs = received(&h, socket);
    assert_eq!(pongs.len(), 60);
    assert!(pongs
        .iter()
        .enumerate()
        .all(|(i, p)| p.opcode == PONG && p.payload == [i as u8]));
    assert!(messages(&h.take_inbox()).is_empty());
}

#[test]
fn an_auto_response_is_sent_without_the_worker() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    h.worker_sends(ToEdge::SetAutoResponse {
        object: socket.object,
        pair: Some(AutoResponse {
            request: Bytes::from_static(b"ping"),
            response: Bytes::from_static(b"pong"),
            binary: false,
        }),
    });
    h.client_sends(socket, &client_frame(true, TEXT, b"ping"));
    h.client_sends(socket, &client_frame(true, BINARY, b"ping"));
    assert_eq!(texts(&received(&h, socket)), ["pong"]);
    let inbox = h.take_inbox();
    assert_eq!(messages(&inbox).len(), 1, "the binary one is a message");
    match &inbox[..] {
        [ToWorker::Message {
            auto_response_at_ms,
            ..
        }] => assert_eq!(*auto_response_at_ms, h.now_ms),
        other => panic!("expected one message, got {other:?}"),
    }
}

#[test]
fn a_close_from_the_client_is_answered_reported_clean_and_ended() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    h.client_sends(socket, &client_frame(true, CLOSE, &[0x0f, 0xa0]));
    assert_eq!(closes(&h.take_inbox()), [(socket.handle, 4000, true)]);
    let frames = received(&h, socket);
    assert_eq!(frames.last().and_then(ServerFrame::close_code), Some(4000));
    assert!(
        !h.is_open(socket),
        "both Closes are through: the edge let go"
    );
    assert!(h.peer(socket).closed);
}

#[test]
fn a_close_the_client_never_answers_ends_at_the_deadline() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    h.worker_sends(ToEdge::Close {
        handle: socket.handle,
        code: 4001,
        reason: "bye".into(),
    });
    let frames = received(&h, socket);
    assert_eq!(frames.last().and_then(ServerFrame::close_code), Some(4001));
    // Data after our Close is not for the object (RFC 6455 §5.5.1).
    h.client_sends(socket, &client_frame(true, TEXT, b"late"));
    assert!(messages(&h.take_inbox()).is_empty());
    h.advance(CLOSE_TIMEOUT - Duration::from_millis(1));
    assert!(h.is_open(socket), "the client still has time to answer");
    h.advance(Duration::from_millis(1));
    assert!(!h.is_open(socket));
    assert!(h.peer(socket).closed);
}

#[test]
fn protocol_errors_close_with_their_code_and_tell_the_object() {
    let cases: [(&str, Vec<u8>, u16); 3] = [
        ("unmasked", vec![0x81, 0x02, b'h', b'i'], 1002),
        ("bad utf-8", client_frame(true, TEXT, &[0xff, 0xfe]), 1007),
        (
            "too big",
            client_frame(true, BINARY, &vec![0; MAX_MESSAGE + 1]),
            1009,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut h = Harness::new(options());
        let socket = h.connect("room", &[]);
        h.client_sends(socket, &bytes);
        assert_eq!(
            closes(&h.take_inbox()),
            [(socket.handle, code, false)],
            "{what}"
        );
        let frames = received(&h, socket);
        assert_eq!(
            frames.last().and_then(ServerFrame::close_code),
            Some(code),
            "{what}"
        );
        assert!(!h.client_sends(socket, b"more"), "{what}: read no more");
    }
}

#[test]
fn a_socket_that_sends_more_pings_a_second_than_allowed_is_closed_with_1008() {
    let mut options = options();
    options.max_pings_per_second = 10;
    let mut h = Harness::new(options);
    let flooder = h.connect("room", &[]);
    let calm = h.connect("room", &[]);
    let mut pings = Vec::new();
    for _ in 0..11 {
        pings.extend(client_frame(true, PING, b""));
    }
    h.client_sends(calm, &pings[..10 * 6]);
    h.advance(Duration::from_secs(1));
    h.client_sends(calm, &pings[..10 * 6]);
    h.client_sends(flooder, &pings);
    assert!(h.is_open(calm), "ten a second is allowed, every second");
    assert_eq!(closes(&h.take_inbox()), [(flooder.handle, 1008, false)]);
    let frames = received(&h, flooder);
    assert_eq!(frames.iter().filter(|f| f.opcode == PONG).count(), 10);
    assert_eq!(frames.last().and_then(ServerFrame::close_code), Some(1008));
}

#[test]
fn a_broadcast_to_a_tag_reaches_its_sockets_but_not_the_one_excepted() {
    let mut h = Harness::new(options());
    let red = h.connect("room", &["red"]);
    let red_too = h.connect("room", &["red", "big"]);
    let blue = h.connect("room", &["blue"]);
    h.worker_sends(ToEdge::Broadcast {
        object: red.object,
        tag: Some("red".into()),
        except: Some(red.handle),
        is_text: true,
        payload: Bytes::from_static(b"to red"),
    });
    assert!(received(&h, red).is_empty());
    assert_eq!(texts(&received(&h, red_too)), ["to red"]);
    assert!(received(&h, blue).is_empty());
}

#[test]
fn a_sender_is_paused_at_its_objects_events_in_flight_and_resumed_at_half() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    let max = h.core.options().max_events_in_flight;
    for i in 0..max {
        assert!(h.client_sends(socket, &client_frame(true, TEXT, format!("{i}").as_bytes())));
    }
    assert!(
        !h.client_sends(socket, &client_frame(true, TEXT, b"over")),
        "paused with {max} in flight"
    );
    h.worker_sends(done(socket.object, 1));
    assert!(!h.core.wants_bytes(socket.slot, socket.generation));
    h.worker_sends(done(socket.object, max / 2 - 1));
    assert!(h.core.wants_bytes(socket.slot, socket.generation));
}

#[test]
fn a_fast_sender_is_paused_at_its_objects_share_of_the_bytes_in_flight() {
    let mut options = options();
    options.max_events_in_flight = 10_000;
    let mut h = Harness::new(options);
    let fast = h.connect("fast", &[]);
    let other = h.connect("other", &[]);
    let message = client_frame(true, BINARY, &[7; 16_000]);
    let mut sent = 0u32;
    while h.client_sends(fast, &message) {
        sent += 1;
        assert!(sent < 1000, "never paused");
    }
    // A sixteenth of the edge's 1 MiB, but at least 1 MiB: 1 MiB.
    assert_eq!(sent, 66, "paused once 1 MiB was in flight");
    assert!(
        h.client_sends(other, &client_frame(true, TEXT, b"me too")),
        "another object's sockets are still read"
    );
    h.worker_sends(done(fast.object, sent / 2 + 1));
    assert!(
        h.core.wants_bytes(fast.slot, fast.generation),
        "half answered"
    );
}

#[test]
fn a_client_that_does_not_read_is_closed_at_its_limit_with_1008() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    let reader = h.connect("room", &[]);
    h.peer_at(socket.slot).expect("peer").room = 10_000;
    let chunk = "x".repeat(4096);
    let mut sent = 0;
    while h.is_open(socket) {
        h.worker_sends(ToEdge::Broadcast {
            object: socket.object,
            tag: None,
            except: None,
            is_text: true,
            payload: Bytes::copy_from_slice(chunk.as_bytes()),
        });
        sent += 1;
        assert!(h.queued(socket) <= LIMIT, "{} queued", h.queued(socket));
        assert!(sent < 100, "never closed");
    }
    assert_eq!(closes(&h.take_inbox()), [(socket.handle, 1008, false)]);
    assert_eq!(
        texts(&received(&h, reader)).len(),
        sent,
        "the reader lost nothing"
    );
}

#[test]
fn keepalive_finds_a_silent_client_within_its_window_and_spares_one_that_answers() {
    let mut options = options();
    options.keepalive_interval = Duration::from_secs(30);
    options.keepalive_max_missed = 2;
    let mut h = Harness::new(options);
    let silent = h.connect("room", &[]);
    let answering = h.connect("room", &[]);
    let pings = |frames: Vec<ServerFrame>| frames.iter().filter(|f| f.opcode == PING).count();
    for sweep in 1..=2 {
        h.advance(Duration::from_secs(30));
        assert_eq!(pings(received(&h, silent)), sweep);
        h.client_sends(answering, &client_frame(true, PONG, b""));
    }
    assert_eq!(
        pings(received(&h, answering)),
        1,
        "pinged while quiet, then not: it spoke since"
    );
    assert!(h.is_open(silent));
    h.advance(Duration::from_secs(30));
    assert!(!h.is_open(silent), "dead after 3 intervals of silence");
    assert!(h.is_open(answering));
    assert_eq!(closes(&h.take_inbox()), [(silent.handle, 1006, false)]);
}

#[test]
fn a_lost_worker_fails_its_requests_with_503_and_resets_its_objects() {
    let mut h = Harness::new(options());
    let mut answer = h.request("room", false);
    h.core.link_down(0);
    h.settle();
    let reply = answer.try_recv().expect("answered");
    assert_eq!(reply.status, 503);
    // The next request starts a worker and activates the object again.
    let _next = h.request("room", false);
    assert!(h
        .effects
        .iter()
        .any(|e| matches!(e, Effect::StartWorker(0))));
}

#[test]
fn a_hibernating_object_is_evicted_and_its_next_message_activates_it_again() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &[]);
    h.take_inbox();
    h.worker_sends(done(socket.object, 1));
    h.worker_sends(ToEdge::Idle {
        object: socket.object,
        handled: 1,
        active_us: 0,
    });
    let inbox = h.take_inbox();
    assert!(matches!(inbox[..], [ToWorker::Evict { .. }]), "{inbox:?}");
    h.client_sends(socket, &client_frame(true, TEXT, b"wake"));
    let inbox = h.take_inbox();
    match &inbox[..] {
        [ToWorker::Activate { sockets, .. }, ToWorker::Message { .. }] => {
            assert_eq!(*sockets, 1, "the count, not the list");
        }
        other => panic!("expected Activate then Message, got {other:?}"),
    }
    let listed = h.query(ToEdge::ListSockets {
        object: socket.object,
        tag: None,
    });
    assert_eq!(
        listed,
        ToWorker::SocketList {
            handles: vec![socket.handle]
        }
    );
}

#[test]
fn a_core_suspended_and_resumed_owes_every_client_and_worker_what_it_owed() {
    use super::handover::CoreState;
    let mut h = Harness::new(options());
    let talker = h.connect("room", &["red"]);
    h.worker_sends(ToEdge::SetAttachment {
        handle: talker.handle,
        attachment: Some(Bytes::from_static(b"{\"name\":\"ada\"}")),
    });
    h.worker_sends(ToEdge::SetAutoResponse {
        object: talker.object,
        pair: Some(AutoResponse {
            request: Bytes::from_static(b"ping"),
            response: Bytes::from_static(b"pong"),
            binary: false,
        }),
    });
    let closing = h.connect("room", &[]);
    h.worker_sends(ToEdge::Close {
        handle: closing.handle,
        code: 4002,
        reason: String::new(),
    });
    let halfway = h.connect("room", &[]);
    let frame = client_frame(true, TEXT, b"split across processes");
    h.client_sends(halfway, &frame[..9]);
    let slow = h.connect("room", &[]);
    h.peer_at(slow.slot).expect("peer").room = 10;
    send(&mut h, slow, "queued while the edge moves");
    let mut half_send = Vec::new();
    ToEdge::Send {
        handle: talker.handle,
        is_text: true,
        payload: Bytes::from_static(b"half sent by the worker"),
    }
    .encode(&mut half_send);
    assert!(h.core.link_bytes(0, &half_send[..7]));
    h.take_inbox();

    assert!(h.core.can_move());
    h.core.end_what_cannot_move();
    let bytes = h.core.suspend().encode().expect("encoded");
    let state = CoreState::decode(&bytes).expect("decoded");
    assert_eq!(
        state.connections(),
        [talker.slot, closing.slot, halfway.slot, slow.slot]
    );
    assert_eq!(state.links(), [0]);
    h.core = EdgeCore::resume(options(), state, h.now, h.now_ms).expect("resumed");
    h.core.resumed();
    h.settle();

    h.client_sends(halfway, &frame[9..]);
    assert_eq!(
        messages(&h.take_inbox()),
        [(halfway.handle, "split across processes".to_owned())]
    );
    assert!(h.core.link_bytes(0, &half_send[7..]));
    h.settle();
    assert_eq!(texts(&received(&h, talker)), ["half sent by the worker"]);
    h.client_sends(talker, &client_frame(true, TEXT, b"ping"));
    assert_eq!(
        texts(&received(&h, talker)),
        ["half sent by the worker", "pong"]
    );
    h.client_reads(slow, 1000);
    assert_eq!(texts(&received(&h, slow)), ["queued while the edge moves"]);
    h.advance(CLOSE_TIMEOUT);
    assert!(!h.is_open(closing), "its close deadline came with it");
    assert!(h.is_open(talker));

    // Hibernated and woken, the object finds its socket's tags and
    // attachment, kept across the move.
    let o = h.core.objects.get(talker.object).expect("the object");
    let (in_flight, sent) = (o.in_flight, o.sent);
    h.worker_sends(done(talker.object, in_flight));
    h.worker_sends(ToEdge::Idle {
        object: talker.object,
        handled: sent,
        active_us: 0,
    });
    assert!(matches!(h.take_inbox()[..], [ToWorker::Evict { .. }]));
    h.client_sends(talker, &client_frame(true, TEXT, b"wake"));
    let inbox = h.take_inbox();
    let Some(ToWorker::Activate { sockets: 3, .. }) = inbox.first() else {
        panic!("expected an Activate of three sockets, got {inbox:?}");
    };
    // Query links are not handed over: the worker opens a new one.
    assert!(h.core.query_link_up(0, BytesMut::new()));
    let ToWorker::SocketDescription { socket: Some(info) } = h.query(ToEdge::DescribeSocket {
        object: talker.object,
        handle: talker.handle,
    }) else {
        panic!("the talker is described");
    };
    assert_eq!(info.tags, ["red"]);
    assert_eq!(info.attachment.as_deref(), Some(&b"{\"name\":\"ada\"}"[..]));
}

#[test]
fn objects_that_hold_nothing_are_forgotten_past_the_bound_and_come_back_when_asked_for() {
    let mut h = Harness::new(options());
    let kept = h.connect("kept", &[]);
    let count = IDLE_OBJECTS_KEPT + 100;
    for i in 0..count {
        let mut answer = h.request(&format!("n{i}"), false);
        let inbox = h.take_inbox();
        let Some(ToWorker::Fetch {
            object, request_id, ..
        }) = inbox.iter().find(|m| matches!(m, ToWorker::Fetch { .. }))
        else {
            panic!("no fetch in {inbox:?}");
        };
        let (object, request_id) = (*object, *request_id);
        h.worker_sends(ToEdge::FetchResponse {
            request_id,
            status: 200,
            headers: Vec::new(),
            body: Bytes::new(),
        });
        h.worker_sends(ToEdge::Done {
            object,
            events: 1,
            rows_read: 0,
            rows_written: 0,
            stored_bytes: None,
            active_us: 0,
        });
        h.worker_sends(ToEdge::Idle {
            object,
            handled: 1,
            active_us: 0,
        });
        assert_eq!(answer.try_recv().map(|r| r.status), Ok(200));
    }
    assert!(h.core.objects.len() > IDLE_OBJECTS_KEPT);
    h.advance(Duration::from_secs(1));
    let held = h.core.objects.len();
    assert!(
        held <= IDLE_OBJECTS_KEPT / 2 + 1,
        "{held} objects held after the sweep"
    );
    assert!(
        h.core.objects.get(kept.object).is_some(),
        "one with a socket stays"
    );
    // A forgotten object asked for again is numbered anew and served.
    h.take_inbox();
    let _answer = h.request("n0", false);
    let inbox = h.take_inbox();
    assert!(
        matches!(inbox.first(), Some(ToWorker::Activate { name: Some(name), .. }) if name == "n0"),
        "{inbox:?}"
    );
    h.client_sends(kept, &client_frame(true, TEXT, b"still here"));
    assert_eq!(messages(&h.take_inbox()).len(), 1);
}

/// One step of a hostile client's life.
#[derive(Clone, Debug)]
enum Step {
    /// Bytes, split where the network split them.
    Bytes(Vec<u8>),
    /// A well-formed frame, maybe not the last of its message.
    Frame(bool, u8, Vec<u8>),
    /// The client reads this much.
    Read(usize),
    /// The object sends it this many bytes.
    Sent(usize),
    Advance(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Step::Bytes),
        (
            any::<bool>(),
            prop::sample::select(vec![0x0, TEXT, BINARY, CLOSE, PING, PONG, 0x3, 0xB]),
            prop::collection::vec(any::<u8>(), 0..200),
        )
            .prop_map(|(fin, op, payload)| Step::Frame(fin, op, payload)),
        (0usize..20_000).prop_map(Step::Read),
        (0usize..20_000).prop_map(Step::Sent),
        (0u64..10_000).prop_map(Step::Advance),
    ]
}

fn attach(h: &mut Harness, socket: Socket, attachment: &[u8]) {
    h.worker_sends(ToEdge::SetAttachment {
        handle: socket.handle,
        attachment: Some(Bytes::copy_from_slice(attachment)),
    });
}

fn listed(h: &mut Harness, object: u32, tag: Option<&str>) -> Vec<SocketHandle> {
    match h.query(ToEdge::ListSockets {
        object,
        tag: tag.map(str::to_owned),
    }) {
        ToWorker::SocketList { mut handles } => {
            handles.sort_unstable_by_key(|h| h.slot);
            handles
        }
        other => panic!("expected a socket list, got {other:?}"),
    }
}

fn described(h: &mut Harness, object: u32, handle: SocketHandle) -> Option<SocketInfo> {
    match h.query(ToEdge::DescribeSocket { object, handle }) {
        ToWorker::SocketDescription { socket } => socket,
        other => panic!("expected a description, got {other:?}"),
    }
}

#[test]
fn a_query_lists_the_objects_sockets_by_tag_and_no_other_objects() {
    let mut h = Harness::new(options());
    let red = h.connect("room", &["red"]);
    let both = h.connect("room", &["red", "blue"]);
    let plain = h.connect("room", &[]);
    let elsewhere = h.connect("other", &["red"]);
    let object = red.object;
    assert_eq!(
        listed(&mut h, object, None),
        [red.handle, both.handle, plain.handle]
    );
    assert_eq!(
        listed(&mut h, object, Some("red")),
        [red.handle, both.handle]
    );
    assert_eq!(listed(&mut h, object, Some("blue")), [both.handle]);
    assert_eq!(listed(&mut h, object, Some("green")), []);
    assert_eq!(listed(&mut h, elsewhere.object, None), [elsewhere.handle]);
    assert_eq!(listed(&mut h, 999, None), [], "an unknown object has none");
}

#[test]
fn a_tag_whose_last_socket_closed_lists_nothing_and_tags_survive_a_handover() {
    let mut h = Harness::new(options());
    let red = h.connect("room", &["red"]);
    let blue = h.connect("room", &["blue"]);
    let object = red.object;
    h.client_sends(red, &client_frame(true, CLOSE, &[0x03, 0xe8]));
    h.advance(CLOSE_TIMEOUT * 2);
    assert_eq!(listed(&mut h, object, Some("red")), []);
    assert_eq!(listed(&mut h, object, Some("blue")), [blue.handle]);

    let bytes = h.core.suspend().encode().expect("encoded");
    let state = super::handover::CoreState::decode(&bytes).expect("decoded");
    h.core = EdgeCore::resume(options(), state, h.now, h.now_ms).expect("resumed");
    h.core.resumed();
    h.settle();
    // Query links are not handed over: the worker opens its own again.
    assert!(h.core.query_link_up(0, BytesMut::new()));
    assert_eq!(listed(&mut h, object, Some("blue")), [blue.handle]);
    assert_eq!(listed(&mut h, object, Some("red")), []);
}

#[test]
fn a_socket_is_described_to_its_own_object_only_and_a_stale_handle_not_at_all() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &["red"]);
    let other = h.connect("other", &[]);
    attach(&mut h, socket, b"{\"name\":\"ada\"}");
    let info = described(&mut h, socket.object, socket.handle).expect("described");
    assert_eq!(info.handle, socket.handle);
    assert_eq!(info.tags, ["red"]);
    assert_eq!(info.attachment.as_deref(), Some(&b"{\"name\":\"ada\"}"[..]));
    assert_eq!(info.auto_response_at_ms, 0);
    assert_eq!(described(&mut h, other.object, socket.handle), None);
    let stale = SocketHandle {
        generation: socket.handle.generation + 1,
        ..socket.handle
    };
    assert_eq!(described(&mut h, socket.object, stale), None);
    h.client_sends(socket, &client_frame(true, CLOSE, &[0x03, 0xe8]));
    h.advance(CLOSE_TIMEOUT * 2);
    assert_eq!(listed(&mut h, socket.object, None), []);
    assert_eq!(described(&mut h, socket.object, socket.handle), None);
}

#[test]
fn a_confirm_is_answered_once_the_frames_before_it_are_applied() {
    let mut h = Harness::new(options());
    let sockets: Vec<Socket> = (0..3).map(|_| h.connect("room", &[])).collect();
    h.take_inbox();
    // In one read, as a worker's burst arrives: the attachments, then the
    // question.
    let mut bytes = Vec::new();
    for (i, socket) in sockets.iter().enumerate() {
        ToEdge::SetAttachment {
            handle: socket.handle,
            attachment: Some(Bytes::from(format!("player {i}"))),
        }
        .encode(&mut bytes);
    }
    ToEdge::Confirm { token: 41 }.encode(&mut bytes);
    if !h.core.link_bytes(0, &bytes) {
        h.settle();
    }
    h.settle();
    assert_eq!(h.take_inbox(), [ToWorker::Confirmed { token: 41 }]);
    for (i, socket) in sockets.iter().enumerate() {
        let info = described(&mut h, socket.object, socket.handle).expect("described");
        assert_eq!(info.attachment, Some(Bytes::from(format!("player {i}"))));
    }
}

#[test]
fn a_closed_socket_reports_its_tags_and_attachment_with_its_close() {
    let mut h = Harness::new(options());
    let socket = h.connect("room", &["red"]);
    attach(&mut h, socket, b"kept");
    h.take_inbox();
    h.client_sends(socket, &client_frame(true, CLOSE, &[0x03, 0xe8]));
    let inbox = h.take_inbox();
    let closed = inbox
        .iter()
        .find_map(|m| match m {
            ToWorker::Closed {
                handle,
                tags,
                attachment,
                ..
            } => Some((*handle, tags.clone(), attachment.clone())),
            _ => None,
        })
        .expect("the close reached the worker");
    assert_eq!(
        closed,
        (
            socket.handle,
            vec!["red".to_owned()],
            Some(Bytes::from_static(b"kept"))
        )
    );
}

/// 100 sockets with 16,000-byte attachments: over one page of the bulk
/// answer, which the worker reads page by page.
fn big_room(h: &mut Harness) -> Vec<Socket> {
    (0..100)
        .map(|i| {
            let socket = h.connect("big", &[]);
            attach(h, socket, &[b'a' + (i % 26) as u8; 16_000]);
            socket
        })
        .collect()
}

fn big_options() -> HoldOptions {
    HoldOptions {
        max_attachment_bytes: 16 * 1024,
        max_connections_per_object: 1000,
        ..options()
    }
}

#[test]
fn the_bulk_description_pages_through_every_socket_once() {
    let mut h = Harness::new(big_options());
    let sockets = big_room(&mut h);
    let object = sockets[0].object;
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let ToWorker::SocketDescriptions { sockets, more } =
            h.query(ToEdge::DescribeSockets { object, after })
        else {
            panic!("expected descriptions");
        };
        pages += 1;
        after = sockets.last().map(|s| s.handle.slot);
        seen.extend(sockets);
        if !more {
            break;
        }
    }
    assert!(pages > 1, "100 x 16 KB is more than one page");
    assert_eq!(seen.len(), sockets.len());
    for (info, socket) in seen.iter().zip(&sockets) {
        assert_eq!(info.handle, socket.handle, "by slot, each once");
        let i = socket.slot - sockets[0].slot;
        assert_eq!(
            info.attachment.as_deref(),
            Some(&[b'a' + (i % 26) as u8; 16_000][..])
        );
    }
}

#[test]
fn a_query_link_whose_answers_go_unread_is_dropped_not_grown() {
    let mut h = Harness::new(big_options());
    let object = big_room(&mut h)[0].object;
    let mut query = Vec::new();
    ToEdge::DescribeSockets {
        object,
        after: None,
    }
    .encode(&mut query);
    let dropped = (0..64).any(|_| !h.core.query_bytes(0, &query));
    assert!(dropped, "64 unread pages of 1 MiB");
    assert!(h.core.query_output(0).is_empty(), "what it held is freed");
}

#[test]
fn a_query_link_that_sends_anything_but_queries_is_dropped() {
    let mut h = Harness::new(options());
    let mut bytes = Vec::new();
    ToEdge::StayUp.encode(&mut bytes);
    assert!(!h.core.query_bytes(0, &bytes));
    assert!(
        !h.core.query_bytes(0, &[]),
        "nothing is taken once it is down"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever a client sends, split however, read however slowly, the
    /// edge does not panic, never holds more for it than its limit, writes
    /// only well-formed frames ending with at most one Close, and tells
    /// the object of the end at most once, with a code a close may carry.
    #[test]
    fn any_client_leaves_the_edge_sound(
        steps in prop::collection::vec(step(), 1..60),
        ping_room in 0usize..4096,
    ) {
        let mut options = options();
        options.keepalive_interval = Duration::from_secs(3);
        options.max_pings_per_second = 5;
        let mut h = Harness::new(options);
        let socket = h.connect("room", &[]);
        h.peer_at(socket.slot).expect("peer").room = ping_room;
        for step in steps {
            match step {
                Step::Bytes(bytes) => {
                    h.client_sends(socket, &bytes);
                }
                Step::Frame(fin, opcode, payload) => {
                    let frame = client_frame(fin, opcode, &payload);
                    let cut = payload.len() % (frame.len() + 1);
                    h.client_sends(socket, &frame[..cut]);
                    h.client_sends(socket, &frame[cut..]);
                }
                Step::Read(n) => h.client_reads(socket, n),
                Step::Sent(n) => {
                    if h.is_open(socket) {
                        send(&mut h, socket, &"y".repeat(n));
                    }
                }
                Step::Advance(ms) => h.advance(Duration::from_millis(ms)),
            }
            prop_assert!(h.queued(socket) <= LIMIT + 20_000 + 64, "{} queued", h.queued(socket));
            h.worker_sends(done(socket.object, 1000));
        }
        h.client_gone(socket);
        h.advance(CLOSE_TIMEOUT);
        prop_assert!(!h.is_open(socket), "the socket outlived its client");
        let frames = server_frames(&h.peer(socket).received);
        // A write cut short by a full client may leave a partial frame;
        // what was fully taken must parse.
        let frames = match frames {
            Ok(frames) => frames,
            Err(_) => server_frames(&h.peer(socket).received[..complete_prefix(&h.peer(socket).received)])
                .map_err(TestCaseError::fail)?,
        };
        let close_at = frames.iter().position(|f| f.opcode == CLOSE);
        if let Some(at) = close_at {
            prop_assert_eq!(at, frames.len() - 1, "frames after the Close");
        }
        let reported = closes(&h.take_inbox());
        prop_assert!(reported.len() <= 1, "closed twice: {:?}", reported);
        for (_, code, _) in reported {
            prop_assert!(
                matches!(code, 1000..=1003 | 1005..=1011 | 3000..=4999),
                "close code {}", code
            );
        }
    }
}

/// The length of the longest prefix of `bytes` made of whole frames.
fn complete_prefix(bytes: &[u8]) -> usize {
    let mut end = 0;
    let mut rest = bytes;
    while rest.len() >= 2 {
        let (len, header) = match rest[1] & 0x7f {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                let mut n = [0; 8];
                n.copy_from_slice(&rest[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if rest.len() < header + len {
            break;
        }
        end += header + len;
        rest = &rest[header + len..];
    }
    end
}
