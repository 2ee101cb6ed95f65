//! Closes the object starts, and sockets the edge fails: the close handshake
//! from the server side, and `websocket_error` before `websocket_close`.

use crate::support::{
    peak_rss_kib, unique_name, Client, Frame, Node, RawClient, OP_CLOSE, OP_PING, OP_PONG,
};

#[test]
fn a_close_from_the_object_waits_for_the_clients_close_then_ends() {
    let node = Node::start();
    let mut raw = RawClient::connect(node.http_addr(), &format!("/bench/{}", unique_name("c")));
    raw.write_frame(&Frame::text("close:4000"));
    let close = raw.expect_frame();
    assert_eq!(
        close.opcode, OP_CLOSE,
        "expected the object's Close, got {close:?}"
    );
    assert_eq!(close.close_code(), Some(4000));
    // The edge keeps the connection for our reply (RFC 6455 §5.5.1)...
    raw.write_frame(&Frame::close(4000, ""));
    // ...and ends it once the reply is in.
    raw.expect_eof();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_failed_by_the_edge_reaches_websocket_error() {
    let node = Node::start();
    let name = unique_name("err");
    let mut watcher = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let mut raw = RawClient::connect(node.http_addr(), &format!("/bench/{name}"));
    assert_eq!(watcher.request("count").await, "2");
    raw.write_frame(&Frame::text("x").unmasked());
    assert_eq!(raw.expect_close_code(), 1002);
    // The close event is ahead of this request in the object's mailbox.
    assert_eq!(
        watcher.request("lasterror").await,
        "client frame is not masked"
    );
    assert_eq!(watcher.request("count").await, "1");
}

/// Data and FIN in one readiness event: the edge must read on to the FIN
/// (edge-triggered epoll raises no second event), not stop after the data
/// and leave the socket in CLOSE_WAIT, listed and broadcast to, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_followed_at_once_by_fin_is_handled_and_the_close_reported() {
    let node = Node::start();
    let name = unique_name("fin");
    let mut watcher = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    const SOCKETS: usize = 20;
    let addr = node.http_addr();
    let path = format!("/bench/{name}?tag=announce-close");
    // Kept open until the end: a client that went away entirely would
    // answer the edge's next write with a RST, which raises an event.
    let _clients = tokio::task::spawn_blocking(move || {
        let mut clients = Vec::new();
        for i in 0..SOCKETS {
            let mut client = RawClient::connect(addr, &path);
            // The socket is open when its echo comes back.
            client.write_frame(&Frame::text("echo:open"));
            // Earlier sockets' closes are announced to this one too.
            let mut reply = client.read_message().payload;
            while reply.starts_with(b"closed:") {
                reply = client.read_message().payload;
            }
            assert_eq!(reply, b"open");
            // WebSocket has no half-close: after the FIN the edge closes
            // the socket, but only once what came before it is handled.
            client.write_frame(&Frame::text(format!("put:last{i}=said")));
            client.shutdown_write();
            clients.push(client);
        }
        clients
    })
    .await
    .unwrap();
    for i in 0..SOCKETS {
        assert_eq!(
            watcher.recv_text().await,
            "closed:1006",
            "close {i} of {SOCKETS} was not reported"
        );
    }
    assert_eq!(watcher.request("count").await, "1");
    for i in 0..SOCKETS {
        assert_eq!(watcher.request(&format!("get:last{i}")).await, "said");
    }
}

/// A client that floods pings and never reads holds one pong at the edge,
/// not one per ping (RFC 6455 §5.5.3 lets a server answer only the newest
/// of those it has not answered yet). Queued one by one, the pongs of 3 M
/// pings once held about 130 MB at the edge, until the client was closed at
/// the outbound limit. Now it stays open, and what it sends after the
/// flood still reaches its object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_pings_without_reading_holds_one_pong() {
    // With no ping limit: the default closes such a client (test below).
    let node = Node::builder().limit("max_pings_per_second", "0").start();
    let name = unique_name("pingflood");
    let mut watcher = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let edge = node.node_info().await["edges"][0]["pid"].as_u64().unwrap() as u32;
    let before = peak_rss_kib(edge);
    let addr = node.http_addr();
    let path = format!("/bench/{name}?tag=announce-close");
    let flooder = tokio::task::spawn_blocking(move || {
        let mut client = RawClient::connect(addr, &path);
        // Far more pongs than the kernel's buffers hold: 3 M pings, 18 MB,
        // written in 1 MB bursts and not read.
        let ping = Frame::new(OP_PING, Vec::new()).encode();
        let burst: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 175_000)
            .collect();
        for _ in 0..18 {
            client.write_bytes(&burst);
        }
        client.write_frame(&Frame::text("echo:after the flood"));
        let mut pongs = 0u64;
        loop {
            let frame = client.read_message();
            match frame.opcode {
                OP_PONG => pongs += 1,
                _ => {
                    assert_eq!(frame.payload, b"after the flood", "after {pongs} pongs");
                    return (client, pongs);
                }
            }
        }
    });
    let (flooder, pongs) = flooder.await.unwrap();
    assert!(pongs >= 1, "the newest ping was not answered");
    let grown_mib = peak_rss_kib(edge).saturating_sub(before) / 1024;
    assert!(grown_mib < 16, "the edge's peak grew by {grown_mib} MiB");
    // Never closed: the object still counts both sockets.
    assert_eq!(watcher.request("count").await, "2");
    drop(flooder);
}

/// A client that sends more protocol pings a second than allowed is closed
/// with 1008, its object told; one that stays under the limit is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flooder_is_closed_with_1008_and_its_object_told() {
    let node = Node::builder().limit("max_pings_per_second", "50").start();
    let name = unique_name("pinglimit");
    let mut watcher = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let addr = node.http_addr();
    let path = format!("/bench/{name}?tag=announce-close");
    let flooder = tokio::task::spawn_blocking(move || {
        let mut client = RawClient::connect(addr, &path);
        let ping = Frame::new(OP_PING, Vec::new()).encode();
        client.write_bytes(&ping.repeat(1000));
        client.expect_close_code()
    });
    assert_eq!(flooder.await.unwrap(), 1008);
    assert_eq!(watcher.recv_text().await, "closed:1008");
    assert_eq!(watcher.request("count").await, "1", "the flooder is gone");
}
