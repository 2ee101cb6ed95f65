//! A handler that returns an error or panics fails that event only: the
//! socket stays open, its attachment stays, the worker process lives on, and
//! the next message is served.

use crate::support::{unique_name, Client, Node};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_panicking_handler_fails_only_its_event() {
    let node = Node::builder().workers(1).start();
    let name = unique_name("failing");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("attach:kept").await, "ok");
    let pids_before = node.worker_pids().await;

    client.send_text("fail:on purpose").await;
    client.send_text("panic:on purpose").await;
    assert_eq!(
        client.try_recv(Duration::from_millis(300)).await,
        None,
        "a failed handler sent something"
    );

    assert_eq!(client.request("echo:after").await, "after");
    assert_eq!(client.request("getattach").await, "kept");
    assert_eq!(
        node.worker_pids().await,
        pids_before,
        "the worker process was replaced after a handler failure"
    );
    let stats = node.stats("Bench", &name).await;
    assert_eq!(stats.connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_object_does_not_disturb_another() {
    let node = Node::builder().workers(1).start();
    let mut victim = Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("a")))).await;
    let mut bystander =
        Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("b")))).await;
    victim.send_text("panic:now").await;
    assert_eq!(bystander.request("echo:fine").await, "fine");
    assert_eq!(victim.request("echo:fine too").await, "fine too");
}
