//! The admin API: per-object counters (wakes, events, messages, billing), node info, metrics.

use std::time::Duration;

use crate::support::{unique_name, Client, Node};

const STATS_WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_stats_count_upgrades_messages_and_auto_responses() {
    let node = Node::start();
    let name = unique_name("counted");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    for i in 0..3 {
        assert_eq!(client.request(&format!("echo:{i}")).await, i.to_string());
    }
    let stats = node
        .stats_when("Bench", &name, STATS_WAIT, "3 messages in and out", |s| {
            s.ws_messages_in >= 3 && s.ws_messages_out >= 3
        })
        .await;
    assert_eq!(stats.upgrades, 1, "{stats:?}");
    assert_eq!(stats.connections, 1, "{stats:?}");
    assert_eq!(stats.wakes, 1, "{stats:?}");
    assert_eq!(stats.ws_messages_in, 3, "{stats:?}");
    assert_eq!(stats.ws_messages_out, 3, "{stats:?}");
    assert_eq!(stats.events, 4, "one upgrade and three messages: {stats:?}");
    assert_eq!(stats.auto_responses, 0, "{stats:?}");
    // One upgrade plus 3 incoming messages at 20 messages per request.
    assert!(
        (stats.billable_requests - 1.15).abs() < 1e-9,
        "billable_requests should be 1 + 3/20: {stats:?}"
    );

    assert_eq!(client.request("ping").await, "pong");
    assert_eq!(client.request("ping").await, "pong");
    let pinged = node
        .stats_when("Bench", &name, STATS_WAIT, "2 auto-responses", |s| {
            s.auto_responses >= 2
        })
        .await;
    assert_eq!(pinged.auto_responses, 2, "{pinged:?}");
    assert_eq!(
        pinged.events, stats.events,
        "auto-responses are not events: {pinged:?}"
    );
    assert!(
        (pinged.billable_requests - stats.billable_requests).abs() < 1e-9,
        "auto-responses are not billed: before {stats:?}, after {pinged:?}"
    );

    client.close().await;
    node.stats_when("Bench", &name, STATS_WAIT, "no connection left", |s| {
        s.connections == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_never_seen_has_no_wakes() {
    let node = Node::start();
    let stats = node.stats("Bench", "never-seen").await;
    assert_eq!(stats.wakes, 0, "{stats:?}");
    assert_eq!(stats.events, 0, "{stats:?}");
    assert!(!stats.active, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_info_lists_every_configured_worker() {
    let node = Node::builder().workers(3).start();
    let info = node.node_info().await;
    let edge_pid = info.get("edge_pid").and_then(serde_json::Value::as_u64);
    assert!(edge_pid.is_some_and(|p| p > 0), "edge_pid: {info}");
    let workers = info
        .get("workers")
        .and_then(serde_json::Value::as_array)
        .unwrap_or_else(|| panic!("no workers array: {info}"));
    let indices: Vec<u64> = workers
        .iter()
        .map(|w| w.get("index").and_then(serde_json::Value::as_u64).unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2], "{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_prometheus_text() {
    let node = Node::start();
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("m")))).await;
    assert_eq!(client.request("echo:x").await, "x");
    let response = node.admin_get("/metrics").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    assert!(text.contains("torpor_"), "no torpor_ metric in:\n{text}");
    assert!(
        text.lines()
            .all(|l| l.is_empty() || l.starts_with('#') || l.split_whitespace().count() >= 2),
        "not Prometheus text exposition:\n{text}"
    );
}
