//! Calls between objects through the real binary: a fetch through a stub,
//! RPC chains, the documented refusal of cycles, and ids that workers derive
//! exactly as the edge does.

use crate::support::{http_request, unique_name, Client, Node, NETWORK_TIMEOUT};

async fn bench(node: &Node, name: &str) -> Client {
    Client::connect(&node.ws_url(&format!("/bench/{name}"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rpc_chain_a_to_b_to_c_works() {
    let node = Node::start();
    let (a, b, c) = (unique_name("a"), unique_name("b"), unique_name("c"));
    let mut client = bench(&node, &a).await;
    assert_eq!(
        client.request(&format!("rpc:{b}:echo:\"hi\"")).await,
        "\"hi\""
    );
    assert_eq!(
        client.request(&format!("rpc:{b}:whoami:null")).await,
        format!("\"{b}\"")
    );
    let forward = format!(r#"rpc:{b}:forward:{{"to":"{c}","method":"whoami","args":null}}"#);
    assert_eq!(client.request(&forward).await, format!("\"{c}\""));
    let stats = node.stats("Bench", &b).await;
    assert!(
        stats.billable_requests >= 3.0,
        "rpc calls are billed: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cycle_fails_at_once_with_a_clear_error() {
    let node = Node::start();
    let (a, b) = (unique_name("a"), unique_name("b"));
    let mut client = bench(&node, &a).await;
    // A -> B -> A: A's handler is waiting on B, so B's call back into A
    // would wait for itself. It fails at once instead of hanging.
    let cycle = format!(r#"rpc:{b}:forward:{{"to":"{a}","method":"whoami","args":null}}"#);
    let answer = client.request(&cycle).await;
    assert!(answer.starts_with("err:"), "{answer}");
    assert!(answer.contains("call cycle"), "{answer}");
    // A call into itself is the shortest cycle.
    let answer = client.request(&format!("rpc:{a}:whoami:null")).await;
    assert!(answer.contains("call cycle"), "{answer}");
    // Nothing is stuck.
    assert_eq!(client.request("echo:still here").await, "still here");
    let mut other = bench(&node, &b).await;
    assert_eq!(other.request("echo:b too").await, "b too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_fetch_reaches_the_other_objects_fetch() {
    let node = Node::start();
    let counter = unique_name("via-stub");
    let mut client = bench(&node, &unique_name("caller")).await;
    assert_eq!(
        client.request(&format!("fetchcounter:{counter}")).await,
        "1"
    );
    assert_eq!(
        client.request(&format!("fetchcounter:{counter}")).await,
        "2"
    );
    let request =
        format!("GET /counter/{counter} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    assert_eq!(response.text(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_derive_the_same_ids_as_the_edge() {
    let node = Node::builder().workers(2).start();
    let target = unique_name("target");
    let request = format!("GET /bench/{target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    let from_edge = response.header("x-torpor-object-id").unwrap();
    // Objects spread over both workers by hash each derive the id.
    for i in 0..6 {
        let mut client = bench(&node, &unique_name(&format!("deriver{i}"))).await;
        assert_eq!(client.request(&format!("idof:{target}")).await, from_edge);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stub_fetch_returns_the_callees_error_responses_and_an_rpc_fails() {
    let node = Node::start();
    let mut client = bench(&node, &unique_name("caller")).await;
    let counter = unique_name("refuses");
    // Counter refuses the method with its own 405 and message.
    assert_eq!(
        client
            .request(&format!("fetchstatus:COUNTERS:{counter}:DELETE:/"))
            .await,
        "405 use GET or POST"
    );
    // A fetch handler that fails is the runtime's 500, still a response.
    let answer = client
        .request(&format!("fetchstatus:BENCH:{}:GET:/fail", unique_name("b")))
        .await;
    assert!(answer.starts_with("500 handler error: "), "{answer}");
    assert_eq!(
        client
            .request(&format!("fetchstatus:COUNTERS:{counter}:GET:/"))
            .await,
        "200 0"
    );
    // An RPC whose method fails stays an error.
    let answer = client
        .request(&format!("rpc:{}:nosuchmethod:null", unique_name("b")))
        .await;
    assert!(
        answer.starts_with("err:call failed with status 500"),
        "{answer}"
    );
}
