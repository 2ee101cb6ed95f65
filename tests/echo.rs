//! The Echo class: every message comes back unchanged, text as text and binary as binary.

use tokio_tungstenite::tungstenite::Message;

use crate::support::{unique_name, Client, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_message_of_100_kb_is_echoed_as_binary_unchanged() {
    let node = Node::start();
    let mut client = Client::connect(&node.ws_url(&format!("/echo/{}", unique_name("bin")))).await;
    let payload: Vec<u8> = (0..100 * 1024).map(|i: u32| (i * 31 % 251) as u8).collect();
    client.send_binary(payload.clone()).await;
    match client.recv().await {
        Message::Binary(bytes) => {
            assert_eq!(bytes.len(), payload.len(), "echoed length");
            assert!(bytes.as_ref() == payload.as_slice(), "echoed bytes differ");
        }
        other => panic!("expected a binary echo, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_message_is_echoed_as_text() {
    let node = Node::start();
    let mut client = Client::connect(&node.ws_url(&format!("/echo/{}", unique_name("text")))).await;
    for text in ["hello", "héllo wörld €", ""] {
        client.send_text(text).await;
        match client.recv().await {
            Message::Text(echoed) => assert_eq!(echoed.as_str(), text),
            other => panic!("expected a text echo of {text:?}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_echoed_in_order() {
    let node = Node::start();
    let mut client =
        Client::connect(&node.ws_url(&format!("/echo/{}", unique_name("order")))).await;
    for i in 0..200 {
        client.send_text(&format!("m{i}")).await;
    }
    for i in 0..200 {
        assert_eq!(client.recv_text().await, format!("m{i}"));
    }
}

/// Far more than one loop turn's read budget arrives at once: the rest is
/// read on the following turns, nothing lost or reordered, and another
/// socket is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_past_its_read_budget_loses_nothing_and_others_are_served() {
    let node = Node::start();
    let mut flood = Client::connect(&node.ws_url(&format!("/echo/{}", unique_name("flood")))).await;
    let mut other = Client::connect(&node.ws_url(&format!("/echo/{}", unique_name("other")))).await;
    let padding = "x".repeat(1000);
    // 2,000 messages of 1 KB back to back: about eight turns' budget.
    for i in 0..2000 {
        flood.send_text(&format!("{i:05}{padding}")).await;
    }
    assert_eq!(other.request("still here").await, "still here");
    for i in 0..2000 {
        let echoed = flood.recv_text().await;
        assert_eq!(&echoed[..5], format!("{i:05}"), "lost or out of order");
    }
}
