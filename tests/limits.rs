//! Limits: an oversized attachment is refused with a clear error and the socket lives on;
//! an oversized message (whole or in fragments) closes the socket with 1009.

use crate::support::{unique_name, Client, Frame, Node, RawClient};

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
