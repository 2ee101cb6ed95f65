//! The output gate and instance resets through the real binary: what an
//! event sends leaves once its commit is durable and never when it fails,
//! whatever the other objects of its worker do meanwhile.

use crate::support::{assert_eventually, unique_name, Client, Node, NETWORK_TIMEOUT};

async fn bench(node: &Node, name: &str) -> Client {
    Client::connect(&node.ws_url(&format!("/bench/{name}"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_objects_gate_holds_while_another_object_of_its_worker_runs_an_event() {
    // One worker: the callee's event runs in the same process while the
    // caller's handler waits for it.
    let node = Node::builder().workers(1).start();
    let (a, b, c) = (unique_name("a"), unique_name("b"), unique_name("c"));
    let mut client = bench(&node, &a).await;

    client.send_text(&format!("aroundcall:{b}")).await;
    assert_eq!(client.recv_text().await, "before call");
    assert_eq!(client.recv_text().await, "after call");
    assert_eq!(client.recv_text().await, "done");

    client.send_text(&format!("aroundcall:{c}:fail")).await;
    // The next message is the answer to this: the failed event sent nothing,
    // neither before its call nor after, and its write rolled back. Nothing
    // of the first event came twice either.
    assert_eq!(client.request("get:aroundcall").await, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_runs_inside_the_transaction_and_gate_of_the_event_that_needs_it() {
    let node = Node::start();
    let name = unique_name("inits");
    // While this socket is open, Bench's `new` stores how many instances
    // were created and broadcasts the count.
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}?tag=count-inits"))).await;
    client.send_text("panic:reset").await;
    client.send_text("inits").await;
    assert_eq!(client.recv_text().await, "constructed:1");
    assert_eq!(client.recv_text().await, "1/1");

    // This event creates the instance and panics: the count `new` wrote
    // rolls back and its broadcast never leaves.
    client.send_text("panic:reset").await;
    client.send_text("panic:in the event that ran new").await;
    client.send_text("inits").await;
    assert_eq!(client.recv_text().await, "constructed:2");
    assert_eq!(client.recv_text().await, "2/2");

    // A handler error is no different when its event ran `new`: the
    // instance goes with the rolled-back count instead of keeping it in
    // memory.
    client.send_text("panic:reset").await;
    client.send_text("fail:in the event that ran new").await;
    client.send_text("inits").await;
    assert_eq!(client.recv_text().await, "constructed:3");
    assert_eq!(client.recv_text().await, "3/3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_resets_the_instance() {
    let node = Node::start();
    let mut client = bench(&node, &unique_name("commit")).await;
    assert_eq!(client.request("remember:kept").await, "ok");
    assert_eq!(client.request("recall").await, "kept");
    // The handler succeeds; the commit fails on a deferred foreign key.
    client.send_text("breakcommit:lost").await;
    // The next message answers this: the failed event sent nothing, and
    // the instance that remembered "lost" is gone.
    assert_eq!(client.request("recall").await, "");
    assert_eq!(client.request("echo:still served").await, "still served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_fails_the_event_and_resets_the_object_without_a_panic() {
    let node = Node::builder().workers(1).start();
    let mut client = bench(&node, &unique_name("abort")).await;
    let pids = node.worker_pids().await;
    assert_eq!(client.request("remember:kept").await, "ok");
    client.send_text("abort:on purpose").await;
    // The next message answers this: the aborted event sent nothing, and
    // a fresh instance remembers nothing.
    assert_eq!(client.request("recall").await, "");
    assert_eq!(
        client.request("get:aborted").await,
        "",
        "its write rolled back"
    );
    // An aborted RPC is a failed call, answered 500 with the reason.
    let answer = client
        .request(&format!("rpc:{}:abort:\"called\"", unique_name("callee")))
        .await;
    assert!(
        answer.starts_with("err:call failed with status 500"),
        "{answer}"
    );
    assert!(answer.contains("object aborted: \"called\""), "{answer}");
    assert_eq!(node.worker_pids().await, pids, "the worker lives on");
    assert_eventually!(
        node.stderr_lines()
            .iter()
            .any(|l| l.contains("object aborted") && l.contains("on purpose")),
        NETWORK_TIMEOUT,
        "the abort and its reason are logged"
    );
    let panics: Vec<String> = node
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("panicked"))
        .collect();
    assert!(panics.is_empty(), "an abort is not a panic: {panics:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_event_timeout_set_by_the_object_fails_a_slow_handler() {
    let node = Node::start();
    let mut client = bench(&node, &unique_name("timeout")).await;
    assert_eq!(client.request("wstimeout").await, "none");
    // Seven days is the most, as in Durable Objects.
    assert_eq!(client.request("wstimeout:604800000").await, "604800000");
    let answer = client.request("wstimeout:604800001").await;
    assert!(answer.starts_with("err:"), "{answer}");
    assert_eq!(client.request("wstimeout").await, "604800000");
    assert_eq!(client.request("wstimeout:0").await, "none");

    assert_eq!(client.request("wstimeout:200").await, "200");
    assert_eq!(client.request("remember:kept").await, "ok");
    // Far below the node's handler timeout (30 s), far above the object's.
    client.send_text("sleep:3000").await;
    // The next message answers this, not "slept": the slow event failed at
    // 200 ms and its instance was reset, timeout included.
    assert_eq!(client.request("recall").await, "");
    assert_eq!(client.request("wstimeout").await, "none");
    assert_eq!(client.request("sleep:300").await, "slept");
}
