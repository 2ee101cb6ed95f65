//! Fan-out: a broadcast reaches every socket of an object exactly once, sender included.

use std::time::Duration;

use futures_util::future::join_all;

use crate::support::{unique_name, Client, Node};

const SOCKETS: usize = 50;

async fn connect_all(node: &Node, path: &str, count: usize) -> Vec<Client> {
    let url = node.ws_url(path);
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(Client::connect(&url).await);
    }
    clients
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_reaches_each_of_fifty_sockets_exactly_once() {
    let node = Node::start();
    let name = unique_name("fanout");
    let mut clients = connect_all(&node, &format!("/bench/{name}"), SOCKETS).await;

    assert_eq!(clients[0].request("count").await, SOCKETS.to_string());

    let sender = 17;
    clients[sender].send_text("bcast:hello-17").await;
    let received = join_all(clients.iter_mut().map(Client::recv_text)).await;
    for (i, text) in received.iter().enumerate() {
        assert_eq!(text, "hello-17", "socket {i} (sender is {sender})");
    }

    // No socket gets a second copy.
    let extra = join_all(
        clients
            .iter_mut()
            .map(|c| c.try_recv(Duration::from_millis(300))),
    )
    .await;
    let duplicates: Vec<(usize, String)> = extra
        .into_iter()
        .enumerate()
        .filter_map(|(i, m)| m.map(|m| (i, format!("{m:?}"))))
        .collect();
    assert!(
        duplicates.is_empty(),
        "sockets got more than one message: {duplicates:?}"
    );

    assert_eq!(
        clients[SOCKETS - 1].request("count").await,
        SOCKETS.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_from_two_senders_each_arrive_once_everywhere() {
    let node = Node::start();
    let name = unique_name("fanout2");
    let mut clients = connect_all(&node, &format!("/bench/{name}"), 10).await;

    clients[0].send_text("bcast:from-0").await;
    clients[9].send_text("bcast:from-9").await;
    let received = join_all(clients.iter_mut().map(|c| async {
        let mut got = vec![c.recv_text().await, c.recv_text().await];
        got.sort();
        got
    }))
    .await;
    for (i, got) in received.iter().enumerate() {
        assert_eq!(got, &["from-0", "from-9"], "socket {i}");
    }
    let extra = join_all(
        clients
            .iter_mut()
            .map(|c| c.try_recv(Duration::from_millis(300))),
    )
    .await;
    assert!(
        extra.iter().all(Option::is_none),
        "sockets got more than two messages: {extra:?}"
    );
}
