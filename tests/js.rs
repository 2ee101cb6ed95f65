//! JavaScript Durable Objects apps (tests/apps/), run unchanged: the chat
//! room's class reached through a route, over real WebSockets.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{unique_name, Client, Node, NodeBuilder};

fn app_main(app: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/apps")
        .join(app)
        .join("src/index.js")
}

/// A node whose `/rooms/{name}` reaches the chat app's `ChatRoom`.
fn chat_node() -> NodeBuilder {
    let main = app_main("chat");
    Node::builder().extra_config(&format!(
        "[vars]\nGREETING = \"welcome\"\n\
         [[apps]]\nname = \"chat\"\nmain = {main:?}\n\
         [[namespaces]]\nname = \"ROOMS\"\nclass = \"ChatRoom\"\napp = \"chat\"\n\
         [[routes]]\npath = \"/rooms/{{name}}\"\nnamespace = \"ROOMS\"\n"
    ))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_chat_room_broadcasts_and_keeps_names_in_attachments() {
    let node = chat_node().start();
    let room = unique_name("js-chat");
    let mut ada =
        Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada&role=admin"))).await;
    let hello = json(&ada.recv_text().await);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["greeting"], "welcome");
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "join", "name": "ada"})
    );

    let mut linus = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=linus"))).await;
    assert_eq!(json(&linus.recv_text().await)["type"], "hello");
    assert_eq!(json(&linus.recv_text().await)["name"], "linus");
    assert_eq!(json(&ada.recv_text().await)["name"], "linus");

    ada.send_text("hi all").await;
    for client in [&mut ada, &mut linus] {
        assert_eq!(
            json(&client.recv_text().await),
            serde_json::json!({"type": "message", "name": "ada", "text": "hi all"})
        );
    }
    ada.send_text("whoami").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "whoami", "name": "ada", "tags": ["admin"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_chat_room_hibernates_answers_ping_asleep_and_wakes_with_its_state() {
    let node = chat_node().hibernate_after("1s").start();
    let room = unique_name("js-sleep");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    ada.recv_text().await;
    ada.recv_text().await;
    ada.send_text("before sleep").await;
    assert_eq!(json(&ada.recv_text().await)["text"], "before sleep");

    let asleep = node
        .wait_hibernated("ChatRoom", &room, Duration::from_secs(10))
        .await;
    assert_eq!(ada.request("ping").await, "pong");
    let still = node.stats("ChatRoom", &room).await;
    assert_eq!(still.wakes, asleep.wakes, "ping woke the room");

    ada.send_text("after sleep").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "message", "name": "ada", "text": "after sleep"}),
        "the name came back from the attachment"
    );
    let mut late = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=late"))).await;
    let hello = json(&late.recv_text().await);
    let texts: Vec<&str> = hello["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["before sleep", "after sleep"],
        "SQL storage kept the history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_exception_in_a_socket_handler_is_logged_with_its_stack() {
    let node = chat_node().start();
    let room = unique_name("js-boom");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    ada.recv_text().await;
    ada.recv_text().await;
    ada.send_text("boom").await;
    // The worker's log line, then the stack's frames under it.
    crate::support::assert_eventually!(
        {
            let lines = node.stderr_lines();
            lines
                .iter()
                .any(|l| l.contains("Error: the room was asked to fail"))
                && lines.iter().any(|l| l.contains("chat/src/index.js:57:"))
        },
        Duration::from_secs(5),
        "the exception and its file:line reach the log"
    );
}
