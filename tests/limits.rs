//! Limits: an oversized attachment is refused with a clear error and the socket lives on; an
//! oversized message (whole or in fragments) closes the socket with 1009; tags drop duplicates;
//! a full object answers 503; a stalled handshake or a client that never reads is dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{
    unique_name, upgrade_response, Client, Frame, Node, RawClient, NETWORK_TIMEOUT,
};

const SMALL_MESSAGE_LIMIT: usize = 4096;

fn small_message_node() -> Node {
    Node::builder()
        .limit("max_message_bytes", &SMALL_MESSAGE_LIMIT.to_string())
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_over_the_limit_is_refused_and_the_socket_stays_usable() {
    let node = Node::start();
    let name = unique_name("bigattach");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;

    let big = "x".repeat(3000);
    let reply = client.request(&format!("attach:{big}")).await;
    assert!(
        reply.starts_with("err:"),
        "an oversized attachment must be refused, got {reply:?}"
    );
    assert!(
        reply.contains("2048"),
        "the error should name the limit 2048: {reply:?}"
    );
    assert!(
        reply.contains("3002"),
        "the error should name the serialized size 3002 (3000 chars as a JSON string): {reply:?}"
    );

    assert_eq!(client.request("echo:still here").await, "still here");
    assert_eq!(
        client.request("getattach").await,
        "",
        "a refused attachment must not be stored"
    );
    assert_eq!(client.request("attach:small").await, "ok");
    assert_eq!(client.request("getattach").await, "small");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_of_exactly_the_limit_is_accepted_and_one_byte_more_is_not() {
    let node = Node::start();
    let name = unique_name("edgeattach");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;

    // 2046 chars serialize as a 2048-byte JSON string.
    let fits = "y".repeat(2046);
    assert_eq!(client.request(&format!("attach:{fits}")).await, "ok");
    assert_eq!(client.request("getattach").await, fits);

    let too_big = "z".repeat(2047);
    let reply = client.request(&format!("attach:{too_big}")).await;
    assert!(
        reply.starts_with("err:"),
        "2049 serialized bytes must be refused, got {reply:?}"
    );
    assert!(
        reply.contains("2048"),
        "the error should name the limit: {reply:?}"
    );
    assert_eq!(
        client.request("getattach").await,
        fits,
        "a refused attachment leaves the previous one in place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_the_limit_is_closed_with_1009() {
    let node = small_message_node();
    let name = unique_name("bigmsg");
    let mut client = Client::connect(&node.ws_url(&format!("/echo/{name}"))).await;

    let under = "a".repeat(SMALL_MESSAGE_LIMIT);
    assert_eq!(
        client.request(&under).await,
        under,
        "a message at the limit is echoed"
    );

    client.send_text(&"b".repeat(5000)).await;
    assert_eq!(client.recv_close_code().await, 1009);
}

#[test]
fn fragmented_message_over_the_limit_is_closed_with_1009() {
    let node = small_message_node();
    let mut raw = RawClient::connect(node.http_addr(), "/echo/fragments");
    let part = vec![b'c'; 2000];
    raw.write_frame(&Frame::text(part.clone()).fin(false));
    raw.write_frame(&Frame::continuation(part.clone()).fin(false));
    raw.write_frame(&Frame::continuation(part).fin(true));
    assert_eq!(
        raw.expect_close_code(),
        1009,
        "6000 bytes in three fragments exceed max_message_bytes = 4096"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_tags_are_dropped_and_no_tag_reads_empty() {
    let node = Node::start();
    let name = unique_name("tags");
    let mut tagged =
        Client::connect(&node.ws_url(&format!("/bench/{name}?tag=a&tag=b&tag=a"))).await;
    assert_eq!(tagged.request("tags").await, "a,b");
    let mut untagged = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(untagged.request("tags").await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_past_the_connection_limit_is_answered_503() {
    let node = Node::builder()
        .limit("max_connections_per_object", "3")
        .start();
    let name = unique_name("full");
    let path = format!("/bench/{name}");
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Client::connect(&node.ws_url(&path)).await);
    }
    let addr = node.http_addr();
    let refused = tokio::task::spawn_blocking(move || upgrade_response(addr, &path))
        .await
        .unwrap();
    assert_eq!(
        refused.status, 503,
        "the 4th socket of a 3-socket object: {}",
        refused.head
    );
    assert_eq!(clients[0].request("count").await, "3");
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let node = Node::builder()
        .limit("handshake_timeout", "\"500ms\"")
        .start();
    let mut stream = TcpStream::connect_timeout(&node.http_addr(), NETWORK_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(NETWORK_TIMEOUT)).unwrap();
    stream
        .write_all(b"GET /echo/slow HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the edge kept a half-sent handshake open past {NETWORK_TIMEOUT:?} \
             (handshake_timeout = 500ms): {e}"
        ),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "dropped too early, after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_and_the_others_lose_nothing() {
    let node = Node::builder()
        .limit("max_outbound_queue_bytes", "65536")
        .start();
    let name = unique_name("slow");
    let path = format!("/bench/{name}");
    let mut fast = Client::connect(&node.ws_url(&path)).await;
    // Upgraded, then never read again.
    let addr = node.http_addr();
    let slow_path = path.clone();
    let slow = tokio::task::spawn_blocking(move || RawClient::connect(addr, &slow_path))
        .await
        .unwrap();
    assert_eq!(fast.request("count").await, "2");

    // 40 broadcasts of 256 KiB: far more than the slow client's kernel buffers and queue.
    let payload = "s".repeat(256 * 1024);
    for i in 0..40 {
        fast.send_text(&format!("bcast:{i}{payload}")).await;
        let got = fast.recv_text().await;
        assert!(
            got.starts_with(&i.to_string()) && got.len() == payload.len() + i.to_string().len(),
            "the reading client lost or mangled broadcast {i} ({} bytes)",
            got.len()
        );
    }

    node.stats_when(
        "Bench",
        &name,
        Duration::from_secs(10),
        "the slow client dropped",
        |s| s.connections == 1,
    )
    .await;
    assert_eq!(fast.request("count").await, "1");
    drop(slow);
}
