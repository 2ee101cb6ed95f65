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

/// Pipelined broadcasts from every socket reach the edge in batches, where
/// each socket's frames are gathered into one write: every socket must still
/// see every broadcast once, all in the one order the object sent them, with
/// a direct reply in its place among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_broadcasts_reaches_every_socket_in_the_objects_order() {
    const SENDERS: usize = 10;
    const PER_SENDER: usize = 30;
    const MIDDLE: usize = PER_SENDER / 2;
    let node = Node::start();
    let name = unique_name("burst");
    let mut clients = connect_all(&node, &format!("/bench/{name}"), SENDERS).await;

    for (sender, client) in clients.iter_mut().enumerate() {
        for i in 0..PER_SENDER {
            client.send_text(&format!("bcast:{sender}-{i}")).await;
            if i == MIDDLE {
                client.send_text(&format!("echo:reply-{sender}")).await;
            }
        }
    }
    let received = join_all(clients.iter_mut().map(|c| async {
        let mut got = Vec::with_capacity(SENDERS * PER_SENDER + 1);
        for _ in 0..SENDERS * PER_SENDER + 1 {
            got.push(c.recv_text().await);
        }
        got
    }))
    .await;

    let broadcasts = |got: &[String]| -> Vec<String> {
        got.iter()
            .filter(|m| !m.starts_with("reply-"))
            .cloned()
            .collect()
    };
    let order = broadcasts(&received[0]);
    for sender in 0..SENDERS {
        let mine: Vec<&String> = order
            .iter()
            .filter(|m| m.starts_with(&format!("{sender}-")))
            .collect();
        let expected: Vec<String> = (0..PER_SENDER).map(|i| format!("{sender}-{i}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "sender {sender}");
    }
    for (socket, got) in received.iter().enumerate() {
        assert_eq!(broadcasts(got), order, "socket {socket} saw another order");
        let at = |text: &str| got.iter().position(|m| m == text);
        let reply = at(&format!("reply-{socket}"));
        assert!(
            reply.is_some()
                && at(&format!("{socket}-{MIDDLE}")) < reply
                && reply < at(&format!("{socket}-{}", MIDDLE + 1)),
            "socket {socket}: its echo reply is out of place in {got:?}"
        );
    }
    let extra = join_all(
        clients
            .iter_mut()
            .map(|c| c.try_recv(Duration::from_millis(300))),
    )
    .await;
    assert!(
        extra.iter().all(Option::is_none),
        "sockets got more than they were sent: {extra:?}"
    );
}
