//! RFC 6455 on the server side, driven with raw bytes: every malformed frame gets its close
//! code, control frames are answered by the edge, fragments are joined, unknown routes 404.

use crate::support::{
    http_request_head, unique_name, upgrade_response, Frame, Node, RawClient, NETWORK_TIMEOUT,
    OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
};

/// A node and a raw client upgraded on a fresh `/echo/{name}` object.
fn echo_client() -> (Node, RawClient) {
    let node = Node::start();
    let raw = RawClient::connect(node.http_addr(), &format!("/echo/{}", unique_name("raw")));
    (node, raw)
}

#[test]
fn unmasked_client_frame_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::text("hello").unmasked());
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn invalid_utf8_in_a_text_message_is_closed_with_1007() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::text(vec![0xC3, 0x28]));
    assert_eq!(raw.expect_close_code(), 1007);
}

#[test]
fn invalid_utf8_split_across_fragments_is_closed_with_1007() {
    let (_node, mut raw) = echo_client();
    // "a" then the first two bytes of U+20AC: a legitimate cut inside a code point...
    raw.write_frame(&Frame::text(vec![b'a', 0xE2, 0x82]).fin(false));
    // ...that the next fragment does not complete.
    raw.write_frame(&Frame::continuation(vec![0x28]).fin(true));
    assert_eq!(raw.expect_close_code(), 1007);
}

#[test]
fn valid_code_point_split_across_fragments_is_echoed_whole() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::text(vec![b'a', 0xE2, 0x82]).fin(false));
    raw.write_frame(&Frame::continuation(vec![0xAC, b'b']).fin(true));
    let reply = raw.read_message();
    assert_eq!(
        reply.opcode, OP_TEXT,
        "the echo of a text message is text: {reply:?}"
    );
    assert_eq!(String::from_utf8(reply.payload).unwrap(), "a€b");
}

#[test]
fn reserved_opcode_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(0x3, "what"));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn reserved_control_opcode_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(0xB, ""));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn reserved_bit_without_an_extension_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::text("compressed?").rsv(0b100));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn continuation_without_a_first_fragment_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::continuation("orphan"));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn new_message_inside_a_fragmented_one_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::text("first half").fin(false));
    raw.write_frame(&Frame::text("another message"));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn fragmented_control_frame_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(OP_PING, "hi").fin(false));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn control_frame_over_125_bytes_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(OP_PING, vec![b'p'; 126]));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn close_with_a_code_that_must_not_be_sent_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    // 1005 is reserved for "no status" and must never appear on the wire.
    raw.write_frame(&Frame::close(1005, ""));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn close_with_a_code_below_1000_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::close(999, ""));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn close_with_a_one_byte_payload_is_closed_with_1002() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(OP_CLOSE, vec![0x03]));
    assert_eq!(raw.expect_close_code(), 1002);
}

#[test]
fn close_with_an_invalid_utf8_reason_is_closed_with_1007() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(OP_CLOSE, vec![0x03, 0xE8, 0xC3, 0x28]));
    assert_eq!(raw.expect_close_code(), 1007);
}

#[test]
fn client_close_is_echoed_and_then_the_connection_ends() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::close(1000, "bye"));
    let reply = raw.expect_frame();
    assert_eq!(
        reply.opcode, OP_CLOSE,
        "expected a Close reply, got {reply:?}"
    );
    assert_eq!(
        reply.close_code(),
        Some(1000),
        "the Close reply echoes the code: {reply:?}"
    );
    raw.expect_eof();
}

#[test]
fn ping_is_answered_with_a_pong_carrying_its_payload() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(OP_PING, "hi"));
    let reply = raw.expect_frame();
    assert_eq!(reply.opcode, OP_PONG, "expected a Pong, got {reply:?}");
    assert!(reply.fin);
    assert_eq!(reply.payload, b"hi");
}

#[test]
fn ping_between_fragments_is_answered_before_the_whole_message() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::text("Hel").fin(false));
    raw.write_frame(&Frame::new(OP_PING, "p1"));
    raw.write_frame(&Frame::continuation("lo").fin(true));
    let first = raw.read_message();
    assert_eq!(
        (first.opcode, first.payload.as_slice()),
        (OP_PONG, &b"p1"[..]),
        "the pong comes first: {first:?}"
    );
    let second = raw.read_message();
    assert_eq!(
        (second.opcode, second.payload.as_slice()),
        (OP_TEXT, &b"Hello"[..]),
        "then the joined message: {second:?}"
    );
}

#[test]
fn fragmented_binary_message_is_echoed_joined() {
    let (_node, mut raw) = echo_client();
    raw.write_frame(&Frame::new(OP_BINARY, vec![0, 1, 2]).fin(false));
    raw.write_frame(&Frame::continuation(vec![]).fin(false));
    raw.write_frame(&Frame::continuation(vec![0xFF, 0xFE]).fin(true));
    let reply = raw.read_message();
    assert_eq!(
        (reply.opcode, reply.payload.as_slice()),
        (OP_BINARY, &[0, 1, 2, 0xFF, 0xFE][..])
    );
}

#[test]
fn frames_split_across_tcp_writes_are_reassembled() {
    let (_node, mut raw) = echo_client();
    let bytes = Frame::text("split in pieces").encode();
    for piece in bytes.chunks(3) {
        raw.write_bytes(piece);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let reply = raw.read_message();
    assert_eq!(
        (reply.opcode, reply.payload.as_slice()),
        (OP_TEXT, &b"split in pieces"[..])
    );
}

#[test]
fn unknown_route_is_answered_404() {
    let node = Node::start();
    let response = upgrade_response(node.http_addr(), "/nowhere/x");
    assert_eq!(
        response.status, 404,
        "upgrade to an unknown route: {}",
        response.head
    );
}

#[test]
fn request_head_over_16_kib_is_answered_431() {
    let node = Node::start();
    let filler = "f".repeat(20 * 1024);
    let request = format!(
        "GET /echo/big HTTP/1.1\r\nHost: {}\r\nX-Filler: {filler}\r\n\r\n",
        node.http_addr()
    );
    let response = http_request_head(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT)
        .unwrap_or_else(|e| panic!("request with a 20 KiB head failed: {e}"));
    assert_eq!(response.status, 431, "{}", response.head);
}

#[test]
fn upgrade_without_a_key_is_answered_400() {
    let node = Node::start();
    let request = format!(
        "GET /echo/nokey HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
        node.http_addr()
    );
    let response = http_request_head(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT)
        .unwrap_or_else(|e| panic!("upgrade without a key failed: {e}"));
    assert_eq!(response.status, 400, "{}", response.head);
}

#[test]
fn upgrade_with_an_unsupported_version_is_refused_naming_version_13() {
    let node = Node::start();
    let request = format!(
        "GET /echo/v8 HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        node.http_addr()
    );
    let response = http_request_head(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT)
        .unwrap_or_else(|e| panic!("upgrade with version 8 failed: {e}"));
    assert_eq!(
        response.status, 426,
        "RFC 6455 4.2.2: an unsupported version gets 426 Upgrade Required: {}",
        response.head
    );
    assert_eq!(
        response.header("sec-websocket-version").as_deref(),
        Some("13"),
        "the refusal must name the supported version: {}",
        response.head
    );
}
