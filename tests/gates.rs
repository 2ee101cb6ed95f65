//! The output gate and instance resets through the real binary: what an
//! event sends leaves once its commit is durable and never when it fails,
//! whatever the other objects of its worker do meanwhile.

use crate::support::{unique_name, Client, Node};

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
