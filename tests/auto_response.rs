//! Auto-responses configured for binary frames: answered by the edge,
//! never a wake, as text pairs are.

use crate::support::{unique_name, Client, Node};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_auto_response_is_answered_without_waking_the_object() {
    let node = Node::builder().hibernate_after("300ms").start();
    let name = unique_name("mqtt");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("autobinary").await, "ok");
    let before = node
        .wait_hibernated("Bench", &name, Duration::from_secs(10))
        .await;

    for _ in 0..100 {
        client.send_binary(vec![0xC0, 0x00]).await;
    }
    for _ in 0..100 {
        assert_eq!(
            client.recv().await,
            Message::Binary(vec![0xD0, 0x00].into())
        );
    }

    let after = node.stats("Bench", &name).await;
    assert_eq!(
        after.wakes, before.wakes,
        "a binary PINGREQ woke the object"
    );
    assert_eq!(after.auto_responses, before.auto_responses + 100);
    assert!(!after.active);
    // A binary frame that differs by one byte is a real message: echoed by
    // Bench, and a wake.
    client.send_binary(vec![0xC0, 0x01]).await;
    assert_eq!(
        client.recv().await,
        Message::Binary(vec![0xC0, 0x01].into())
    );
    assert_eq!(node.stats("Bench", &name).await.wakes, before.wakes + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_pings_are_answered_in_order_before_the_close() {
    use crate::support::{Frame, RawClient, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
    let node = Node::start();
    let name = unique_name("pipelined");
    let path = format!("/bench/{name}");
    let mut client = Client::connect(&node.ws_url(&path)).await;
    // Bench sets its auto-response on the first message.
    assert_eq!(client.request("echo:x").await, "x");

    let mut raw = RawClient::connect(node.http_addr(), &path);
    let mut bytes = Vec::new();
    for i in 0..300 {
        bytes.extend(Frame::text("ping").encode());
        if i == 150 {
            bytes.extend(Frame::new(OP_PING, b"mid".to_vec()).encode());
        }
    }
    bytes.extend(Frame::close(1000, "").encode());
    raw.write_bytes(&bytes);
    for i in 0..301 {
        let frame = raw.expect_frame();
        if i == 151 {
            assert_eq!(
                (frame.opcode, &frame.payload[..]),
                (OP_PONG, &b"mid"[..]),
                "frame {i}"
            );
        } else {
            assert_eq!(
                (frame.opcode, &frame.payload[..]),
                (OP_TEXT, &b"pong"[..]),
                "frame {i}"
            );
        }
    }
    assert_eq!(raw.expect_frame().opcode, OP_CLOSE);
    raw.expect_eof();
    let stats = node.stats("Bench", &name).await;
    assert_eq!(stats.auto_responses, 300, "{stats:?}");
}
