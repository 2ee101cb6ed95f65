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
