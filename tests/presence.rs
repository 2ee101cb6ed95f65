//! The Presence class: every member sees the sorted list of users online on each join and
//! leave, `GET` lists them, and the names come from attachments, so a hibernated room still
//! knows who is leaving.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;

use crate::support::{http_request, unique_name, Client, Node, NETWORK_TIMEOUT};

const HIBERNATE_WAIT: Duration = Duration::from_secs(10);
const STATS_WAIT: Duration = Duration::from_secs(5);

async fn recv_json(client: &mut Client) -> serde_json::Value {
    let text = client.recv_text().await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

fn online(users: &[&str]) -> serde_json::Value {
    json!({"type": "presence", "online": users})
}

async fn join(node: &Node, room: &str, user: &str) -> Client {
    Client::connect(&node.ws_url(&format!("/presence/{room}?user={user}"))).await
}

/// `GET path` on the node's HTTP listener: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let response = tokio::task::spawn_blocking(move || {
        http_request(addr, request.as_bytes(), NETWORK_TIMEOUT)
    })
    .await
    .unwrap()
    .unwrap();
    (response.status, response.text())
}

async fn get_online(node: &Node, room: &str) -> serde_json::Value {
    let (status, body) = get(node.http_addr(), &format!("/presence/{room}")).await;
    assert_eq!(status, 200, "GET /presence/{room}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
}

/// ada joins, then linus; both have read every list.
async fn ada_and_linus(node: &Node, room: &str) -> (Client, Client) {
    let mut ada = join(node, room, "ada").await;
    assert_eq!(recv_json(&mut ada).await, online(&["ada"]));
    let mut linus = join(node, room, "linus").await;
    assert_eq!(recv_json(&mut ada).await, online(&["ada", "linus"]));
    assert_eq!(recv_json(&mut linus).await, online(&["ada", "linus"]));
    (ada, linus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_who_join_both_see_the_list_and_get_shows_it() {
    let node = Node::start();
    let room = unique_name("presence");
    let (_ada, _linus) = ada_and_linus(&node, &room).await;
    assert_eq!(
        get_online(&node, &room).await,
        json!({"online": ["ada", "linus"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abrupt_disconnect_updates_the_list_of_the_others() {
    let node = Node::start();
    let room = unique_name("presence-drop");
    let (mut ada, linus) = ada_and_linus(&node, &room).await;
    // Dropping the client closes the TCP connection without a Close frame.
    drop(linus);
    assert_eq!(recv_json(&mut ada).await, online(&["ada"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_after_hibernation_takes_the_names_from_the_attachments() {
    let node = Node::builder().hibernate_after("300ms").start();
    let room = unique_name("presence-quiet");
    let (mut ada, mut linus) = ada_and_linus(&node, &room).await;

    let quiet = node
        .wait_hibernated("Presence", &room, HIBERNATE_WAIT)
        .await;
    linus.close().await;
    assert_eq!(
        recv_json(&mut ada).await,
        online(&["ada"]),
        "the woken room must know who is still online"
    );
    node.stats_when("Presence", &room, STATS_WAIT, "a wake for the close", |s| {
        s.wakes > quiet.wakes
    })
    .await;
    assert_eq!(get_online(&node, &room).await, json!({"online": ["ada"]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_connected_twice_counts_once_until_both_sockets_leave() {
    let node = Node::start();
    let room = unique_name("presence-twice");
    let (mut ada, mut linus) = ada_and_linus(&node, &room).await;
    let mut ada_again = join(&node, &room, "ada").await;
    for client in [&mut ada, &mut linus, &mut ada_again] {
        assert_eq!(recv_json(client).await, online(&["ada", "linus"]));
    }
    assert_eq!(
        get_online(&node, &room).await,
        json!({"online": ["ada", "linus"]})
    );

    ada.close().await;
    for client in [&mut linus, &mut ada_again] {
        assert_eq!(
            recv_json(client).await,
            online(&["ada", "linus"]),
            "ada still has a socket open"
        );
    }
    drop(ada_again);
    assert_eq!(recv_json(&mut linus).await, online(&["linus"]));
    assert_eq!(get_online(&node, &room).await, json!({"online": ["linus"]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_by_the_edge_and_other_messages_with_the_list() {
    let node = Node::start();
    let room = unique_name("presence-ping");
    let mut ada = join(&node, &room, "ada").await;
    assert_eq!(recv_json(&mut ada).await, online(&["ada"]));
    assert_eq!(ada.request("ping").await, "pong");
    ada.send_text("who").await;
    assert_eq!(recv_json(&mut ada).await, online(&["ada"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_overlong_user_is_refused_with_400() {
    let node = Node::start();
    let room = unique_name("presence-bad");
    let long = "x".repeat(65);
    for query in ["", "?user=", &format!("?user={long}")] {
        let path = format!("/presence/{room}{query}");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let addr = node.http_addr();
        let response = tokio::task::spawn_blocking(move || {
            crate::support::http_request_head(addr, request.as_bytes(), NETWORK_TIMEOUT)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(response.status, 400, "upgrade to {path}: {}", response.head);
    }
    let max = "y".repeat(64);
    let mut client = join(&node, &room, &max).await;
    assert_eq!(recv_json(&mut client).await, online(&[&max]));
}
