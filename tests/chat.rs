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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_of_control_characters_is_refused_and_the_room_still_takes_joins() {
    let node = Node::start();
    let room = unique_name("flood");
    let (mut ada, mut linus) = ada_and_linus(&node, &room).await;
    // Each control character becomes six bytes of JSON ("\u0001").
    ada.send_text(&"\u{1}".repeat(1 << 20)).await;
    let refused = recv_json(&mut ada).await;
    let shown: String = refused.to_string().chars().take(200).collect();
    assert_eq!(refused["type"], "error", "{shown}");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("limit 4096")),
        "{shown}"
    );
    ada.send_text("after").await;
    let said = json!({"type": "message", "name": "ada", "text": "after"});
    assert_eq!(recv_json(&mut linus).await, said, "linus heard the flood");
    // Joins still work, and the history holds only what was said.
    let mut grace = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=grace"))).await;
    assert_eq!(recv_json(&mut grace).await, said);
    assert_eq!(
        recv_json(&mut grace).await,
        json!({"type": "join", "name": "grace"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_history_is_over_the_outbound_limit_upgrades_then_closes_1008() {
    let node = Node::builder()
        .limit("max_outbound_queue_bytes", "8192")
        .start();
    let room = unique_name("history");
    let (mut ada, _linus) = ada_and_linus(&node, &room).await;
    for _ in 0..3 {
        ada.send_text(&"x".repeat(4000)).await;
        assert_eq!(recv_json(&mut ada).await["type"], "message");
    }
    // The replay (12 KB) is over the limit: the upgrade still completes, and
    // the client is told why it is closed, instead of a bare 500.
    let mut grace = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=grace"))).await;
    assert_eq!(grace.recv_close_code().await, 1008);
    // The others hear grace join, then leave.
    assert_eq!(recv_json(&mut ada).await["type"], "join");
    assert_eq!(
        recv_json(&mut ada).await,
        json!({"type": "leave", "name": "grace"})
    );
}
