//! Limits at the front door: sockets per client address (429 with
//! Retry-After, freed when a socket closes) and request bodies (413).

use crate::support::{http_request, unique_name, Client, Node, NETWORK_TIMEOUT};
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
