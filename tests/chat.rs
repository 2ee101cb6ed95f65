//! The ChatRoom class: join, message and leave notices, with each member's name kept in its
//! socket's attachment so that a hibernated room still knows who is leaving.

use std::time::Duration;

use serde_json::json;

use crate::support::{unique_name, Client, Node};

const HIBERNATE_WAIT: Duration = Duration::from_secs(10);
const STATS_WAIT: Duration = Duration::from_secs(5);

async fn recv_json(client: &mut Client) -> serde_json::Value {
    let text = client.recv_text().await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// ada joins, then linus; both have read every join notice.
async fn ada_and_linus(node: &Node, room: &str) -> (Client, Client) {
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    assert_eq!(
        recv_json(&mut ada).await,
        json!({"type": "join", "name": "ada"})
    );
    let mut linus = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=linus"))).await;
    let joined = json!({"type": "join", "name": "linus"});
    assert_eq!(recv_json(&mut ada).await, joined);
    assert_eq!(recv_json(&mut linus).await, joined);
    (ada, linus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_is_announced_to_the_others_as_a_leave() {
    let node = Node::start();
    let room = unique_name("leave");
    let (mut ada, mut linus) = ada_and_linus(&node, &room).await;
    linus.close().await;
    assert_eq!(
        recv_json(&mut ada).await,
        json!({"type": "leave", "name": "linus"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_disconnect_is_announced_to_the_others_as_a_leave() {
    let node = Node::start();
    let room = unique_name("drop");
    let (mut ada, linus) = ada_and_linus(&node, &room).await;
    // Dropping the client closes the TCP connection without a Close frame.
    drop(linus);
    assert_eq!(
        recv_json(&mut ada).await,
        json!({"type": "leave", "name": "linus"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_after_hibernation_carries_the_name_from_the_attachment() {
    let node = Node::builder().hibernate_after("300ms").start();
    let room = unique_name("quietleave");
    let (mut ada, mut linus) = ada_and_linus(&node, &room).await;

    let quiet = node
        .wait_hibernated("ChatRoom", &room, HIBERNATE_WAIT)
        .await;
    linus.close().await;
    assert_eq!(
        recv_json(&mut ada).await,
        json!({"type": "leave", "name": "linus"}),
        "the woken room must know who left"
    );
    node.stats_when("ChatRoom", &room, STATS_WAIT, "a wake for the close", |s| {
        s.wakes > quiet.wakes
    })
    .await;
}
