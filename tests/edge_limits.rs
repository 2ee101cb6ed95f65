//! Limits at the front door: sockets per client address (429 with
//! Retry-After, freed when a socket closes) and request bodies (413).

use crate::support::{http_request, unique_name, Client, Node, NETWORK_TIMEOUT};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn upgrade_status(node: &Node, path: &str) -> (u16, Option<String>) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let response =
        crate::support::http_request_head(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT)
            .unwrap();
    (response.status, response.header("retry-after"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_past_the_per_address_limit_get_429_until_one_closes() {
    let node = Node::builder()
        .limit("max_connections_per_address", "2")
        .start();
    let path = format!("/echo/{}", unique_name("addr"));
    let mut first = Client::connect(&node.ws_url(&path)).await;
    let _second = Client::connect(&node.ws_url(&format!("/echo/{}", unique_name("other")))).await;
    assert_eq!(upgrade_status(&node, &path), (429, Some("1".to_owned())));
    first.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while upgrade_status(&node, &path).0 == 429 {
        assert!(
            Instant::now() < deadline,
            "the closed socket was not counted off"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_body_over_the_limit_is_413_and_reaches_no_object() {
    let node = Node::builder().limit("max_request_bytes", "1024").start();
    let body = "x".repeat(2048);
    let request = format!(
        "POST /counter/{} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        unique_name("big"),
        body.len()
    );
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.text().contains("1024"), "{}", response.text());
}

/// A connection from `source` (any 127.0.0.0/8 address) to the node.
fn connect_from(source: [u8; 4], node: &Node) -> std::net::TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from((source, 0)).into())
        .unwrap();
    socket.connect(&node.http_addr().into()).unwrap();
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(NETWORK_TIMEOUT)).unwrap();
    stream
}

#[test]
fn a_body_that_never_comes_is_answered_408_at_the_handshake_timeout() {
    let node = Node::builder()
        .limit("handshake_timeout", "\"500ms\"")
        .start();
    let mut stream = connect_from([127, 0, 0, 1], &node);
    let head = format!(
        "POST /counter/{} HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n",
        unique_name("stalled")
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // The edge answers and closes; a read error here is the 5 s test timeout.
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[test]
fn one_address_cannot_take_every_front_door_slot() {
    let node = Node::builder()
        .limit("max_frontdoor_connections", "8")
        .limit("max_frontdoor_connections_per_address", "4")
        .limit("handshake_timeout", "\"30s\"")
        .start();
    // Four half-sent handshakes from one address hold its share.
    let stalled: Vec<_> = (0..4)
        .map(|_| {
            let mut stream = connect_from([127, 0, 0, 1], &node);
            stream
                .write_all(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    // A fifth from it is told to come back, at once.
    let mut fifth = connect_from([127, 0, 0, 1], &node);
    let mut answer = Vec::new();
    fifth.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Another address still gets in.
    let mut fresh = connect_from([127, 0, 0, 2], &node);
    let request = format!(
        "GET /counter/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        unique_name("fresh")
    );
    fresh.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    fresh.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(stalled);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_handshake_timeout() {
    let node = Node::builder()
        .limit("handshake_timeout", "\"500ms\"")
        .start();
    let mut stream = connect_from([127, 0, 0, 1], &node);
    let request = format!(
        "GET /counter/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        unique_name("idle")
    );
    stream.write_all(request.as_bytes()).unwrap();
    let started = Instant::now();
    // The answer, then the end of the stream once the connection has been
    // idle for the timeout; a read error is the 5 s test timeout instead.
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[test]
fn a_plain_request_to_a_websocket_object_gets_426_naming_websocket() {
    let node = Node::start();
    let request = format!(
        "GET /echo/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        unique_name("plain")
    );
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    assert_eq!(response.status, 426, "{}", response.text());
    assert_eq!(response.header("upgrade").as_deref(), Some("websocket"));
}

#[test]
fn the_bench_protocol_is_routed_only_when_asked_for() {
    let node = Node::builder().without_bench_routes().start();
    let request = "GET /bench/anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    assert_eq!(response.status, 404, "{}", response.text());
    let node = Node::start();
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    assert_eq!(response.status, 426, "{}", response.text());
}
