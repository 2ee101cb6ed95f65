//! Alarms through the real binary: they wake hibernated objects and start
//! exited workers, survive a kill -9 of the whole node, and retry failed
//! handlers.

use crate::support::{assert_eventually, unique_name, Client, Node};
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

/// The object's database file, opened behind the worker's back: what a
/// crash or a lost message leaves behind is written into it directly.
fn object_database(node: &Node, id: &str) -> rusqlite::Connection {
    rusqlite::Connection::open(node.data_path(&format!("Bench/{id}.sqlite"))).unwrap()
}

fn unix_ms_in(delay: Duration) -> i64 {
    let at = std::time::SystemTime::now() + delay;
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_failed_retry_the_alarm_is_deleted() {
    let dir = std::env::temp_dir().join(unique_name("torpor-alarm-last-retry"));
    let name = unique_name("last-retry");
    let id;
    {
        let node = Node::builder().data_dir(&dir).start();
        let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
        id = client.request(&format!("idof:{name}")).await;
        assert_eq!(client.request("alarmfail:99:60000").await, "ok");
        // Dropping the node SIGKILLs torpor and its workers.
    }
    // Six failed retries take two minutes of backoff: start where they end
    // instead, the alarm long past and its next attempt the last.
    let store = rusqlite::Connection::open(dir.join("alarms.sqlite")).unwrap();
    let scheduled = store
        .execute("UPDATE object_alarms SET due_ms = 0, retry_count = 6", [])
        .unwrap();
    assert_eq!(scheduled, 1);
    drop(store);
    let row = rusqlite::Connection::open(dir.join(format!("Bench/{id}.sqlite"))).unwrap();
    assert_eq!(
        row.execute("UPDATE _torpor_alarm SET at_ms = 1", [])
            .unwrap(),
        1
    );
    drop(row);
    let node = Node::builder().data_dir(&dir).start();
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let mut alarm;
    assert_eventually!(
        {
            alarm = client.request("getalarm").await;
            alarm == "none"
        },
        Duration::from_secs(10),
        "get_alarm still returns {alarm} after the last attempt"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_the_schedule_never_heard_of_is_scheduled_when_the_object_wakes() {
    let node = Node::builder().hibernate_after("200ms").start();
    let name = unique_name("lost-set");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let id = client.request(&format!("idof:{name}")).await;
    assert_eq!(client.request("put:k=v").await, "ok");
    node.wait_hibernated("Bench", &name, Duration::from_secs(10))
        .await;
    // What a worker dying between an event's commit and its SetAlarm
    // reaching the edge leaves: the row holds an alarm, the schedule none.
    let row = object_database(&node, &id);
    row.execute(
        "INSERT INTO _torpor_alarm(id, at_ms) VALUES (1, ?1)",
        [unix_ms_in(Duration::from_millis(300))],
    )
    .unwrap();
    drop(row);
    assert_eq!(client.request("get:k").await, "v");
    let fired = client.try_recv(Duration::from_secs(10)).await;
    assert_eq!(
        fired,
        Some(Message::Text("alarm:0".into())),
        "the woken object's alarm was not scheduled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_the_object_no_longer_holds_wakes_it_but_runs_no_handler() {
    let node = Node::builder().hibernate_after("200ms").start();
    let name = unique_name("stale-alarm");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let id = client.request(&format!("idof:{name}")).await;
    assert_eq!(client.request("alarm:2000").await, "ok");
    let before = node
        .wait_hibernated("Bench", &name, Duration::from_secs(10))
        .await;
    // The schedule holds an alarm the object's row does not, as it would
    // for an event whose commit failed after the schedule heard of it.
    let row = object_database(&node, &id);
    assert_eq!(row.execute("DELETE FROM _torpor_alarm", []).unwrap(), 1);
    drop(row);
    node.stats_when(
        "Bench",
        &name,
        Duration::from_secs(10),
        "the alarm woke the object",
        |s| s.wakes > before.wakes,
    )
    .await;
    assert_eq!(
        client.request("get:alarm_fired").await,
        "",
        "the alarm handler ran for an alarm the object does not hold"
    );
}
