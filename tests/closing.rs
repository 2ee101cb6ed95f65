//! Closes the object starts, and sockets the edge fails: the close handshake
//! from the server side, and `websocket_error` before `websocket_close`.

use crate::support::{unique_name, Client, Frame, Node, RawClient, OP_CLOSE};

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
