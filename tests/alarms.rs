//! Alarms through the real binary: they wake hibernated objects and start
//! exited workers, survive a kill -9 of the whole node, and retry failed
//! handlers.

use crate::support::{unique_name, Client, Node};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_set_on_an_object_whose_worker_then_exits_fires_and_wakes_it() {
    let node = Node::builder()
        .workers(1)
        .hibernate_after("200ms")
        .worker_idle_exit("300ms")
        .start();
    let name = unique_name("alarm");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("alarm:2000").await, "ok");
    let before = node
        .wait_hibernated("Bench", &name, Duration::from_secs(10))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.worker_pids().await != vec![None] {
        assert!(Instant::now() < deadline, "the idle worker did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fired = client.try_recv(Duration::from_secs(10)).await;
    assert_eq!(fired, Some(Message::Text("alarm:0".into())));
    let after = node.stats("Bench", &name).await;
    assert_eq!(after.wakes, before.wakes + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_alarm_is_retried_two_seconds_later() {
    let node = Node::start();
    let mut client =
        Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("retry")))).await;
    let set = Instant::now();
    assert_eq!(client.request("alarmfail:1:0").await, "ok");
    let fired = client.try_recv(Duration::from_secs(10)).await;
    assert_eq!(
        fired,
        Some(Message::Text("alarm:1".into())),
        "the retry did not run, or ran as a first attempt"
    );
    let waited = set.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after only {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_survives_a_kill_9_of_the_whole_node_and_fires_after_restart() {
    let dir = std::env::temp_dir().join(unique_name("torpor-alarm-restart"));
    let name = unique_name("durable-alarm");
    {
        let node = Node::builder().data_dir(&dir).start();
        let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
        assert_eq!(client.request("alarm:1000").await, "ok");
        // Dropping the node SIGKILLs torpor and its workers.
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let node = Node::builder().data_dir(&dir).start();
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if client.request("get:alarm_fired").await == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late alarm did not fire after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
