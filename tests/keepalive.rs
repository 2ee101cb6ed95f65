//! The edge keepalive: a client that stops answering (gone without a FIN)
//! is closed and its object hears 1006; one that answers stays.

use crate::support::{unique_name, Client, Frame, Node, RawClient, OP_PONG};

fn node_with_keepalive() -> Node {
    Node::builder()
        .extra_config("[keepalive]\ninterval = \"200ms\"\nmax_missed = 2\n")
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_no_ping_is_closed_and_its_object_hears_1006() {
    let node = node_with_keepalive();
    let name = unique_name("keepalive");
    // Reads (and so answers pings) for as long as the test waits.
    let mut healthy = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(healthy.request("echo:up").await, "up");
    // Upgraded, then silent: what a peer that lost its network looks like.
    let addr = node.http_addr();
    let path = format!("/bench/{name}?tag=announce-close");
    let silent = tokio::task::spawn_blocking(move || RawClient::connect(addr, &path))
        .await
        .unwrap();
    assert_eq!(healthy.request("count").await, "2");

    // Within interval x (max_missed + 1) plus a sweep, the object hears it.
    assert_eq!(healthy.recv_text().await, "closed:1006");
    assert_eq!(healthy.request("count").await, "1", "the healthy one stays");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_answers_the_pings_stays_and_never_wakes_its_object() {
    let node = node_with_keepalive();
    let name = unique_name("answers");
    let addr = node.http_addr();
    let path = format!("/bench/{name}");
    let mut client = tokio::task::spawn_blocking(move || RawClient::connect(addr, &path))
        .await
        .unwrap();
    let stats = node.stats("Bench", &name).await;
    // Answer five pings: five chances to be closed that did not close it.
    let mut client = tokio::task::spawn_blocking(move || {
        for _ in 0..5 {
            let ping = client.read_frame().expect("a keepalive ping");
            assert_eq!(ping.opcode, 0x9, "{ping:?}");
            client.write_frame(&Frame::new(OP_PONG, ping.payload.clone()));
        }
        client
    })
    .await
    .unwrap();
    let after = node.stats("Bench", &name).await;
    assert_eq!(after.events, stats.events, "a ping woke the object");
    assert_eq!(after.connections, 1);
    // Still open: an echo goes through (pings answered on the way).
    let reply = tokio::task::spawn_blocking(move || {
        client.write_frame(&Frame::text("echo:still"));
        loop {
            let frame = client.read_message();
            if frame.opcode != 0x9 {
                return frame;
            }
            client.write_frame(&Frame::new(OP_PONG, frame.payload.clone()));
        }
    })
    .await
    .unwrap();
    assert_eq!(reply.payload, b"still");
}
