//! Per-object storage through the real binary: the implicit transaction per
//! event, the output gate, and durability across hibernation and restarts.

use crate::support::{http_request, unique_name, Client, Node, NETWORK_TIMEOUT};
use std::time::Duration;

fn post(node: &Node, path: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    assert_eq!(response.status, 200, "POST {path}: {}", response.text());
    response.text()
}

fn get(node: &Node, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).unwrap();
    assert_eq!(response.status, 200, "GET {path}: {}", response.text());
    response.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handlers_writes_roll_back_and_its_messages_never_leave() {
    let node = Node::start();
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("tx")))).await;
    assert_eq!(client.request("put:kept=1").await, "ok");
    client.send_text("putfail:kept=2").await;
    client.send_text("putfail:new=3").await;
    // The next reply is the answer to this, not "sent before failing".
    assert_eq!(client.request("get:kept").await, "1");
    assert_eq!(client.request("get:new").await, "");
    assert_eq!(client.try_recv(Duration::from_millis(200)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_incrementing_one_counter_sum_exactly() {
    let node = Node::start();
    let path = format!("/counter/{}", unique_name("sum"));
    let node = std::sync::Arc::new(node);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let node = node.clone();
        let path = path.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            (0..10)
                .map(|_| post(&node, &path).parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        }));
    }
    let mut seen = Vec::new();
    for task in tasks {
        seen.extend(task.await.unwrap());
    }
    seen.sort_unstable();
    // Every increment answered a distinct value: none lost, none counted twice.
    assert_eq!(seen, (1..=500).collect::<Vec<u64>>());
    assert_eq!(get(&node, &path), "500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_survives_hibernation_and_a_node_restart() {
    let dir = std::env::temp_dir().join(unique_name("torpor-restart"));
    let path = format!("/counter/{}", unique_name("durable"));
    {
        let node = Node::builder()
            .hibernate_after("200ms")
            .data_dir(&dir)
            .start();
        assert_eq!(post(&node, &path), "1");
        let name = path.trim_start_matches("/counter/");
        node.wait_hibernated("Counter", name, Duration::from_secs(10))
            .await;
        assert_eq!(post(&node, &path), "2");
    }
    let node = Node::builder().data_dir(&dir).start();
    assert_eq!(get(&node, &path), "2");
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An object that only reads what it never stored leaves no database
/// behind: a million GETs of new names must not be a million files.
#[test]
fn reading_a_new_object_creates_no_file_and_its_first_write_does() {
    let node = Node::start();
    let name = unique_name("readonly");
    let request = |method: &str| {
        let text = format!(
            "{method} /counter/{name} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        crate::support::http_request(node.http_addr(), text.as_bytes(), NETWORK_TIMEOUT).unwrap()
    };
    let read = request("GET");
    assert_eq!((read.status, read.text()), (200, "0".to_owned()));
    let id = read.header("x-torpor-object-id").unwrap();
    let file = node.data_path(&format!("Counter/{id}.sqlite"));
    assert!(!file.exists(), "{} was created by a read", file.display());
    let written = request("POST");
    assert_eq!((written.status, written.text()), (200, "1".to_owned()));
    assert!(file.exists(), "{} missing after a write", file.display());
    assert_eq!(request("GET").text(), "1");
}

/// Descriptors `pid` holds on object databases (the file, its WAL, its WAL
/// index), counted from `/proc/PID/fd`.
fn database_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.to_string_lossy().contains(".sqlite"))
        .count()
}

/// A worker keeps at most `limits.max_open_databases_per_worker` object
/// databases open however many objects are live: past it the least
/// recently used one closes, and its object, still live, reopens it on its
/// next storage call and finds everything it stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_open_databases_stay_under_the_cap_and_reopen_on_demand() {
    const CAP: usize = 4;
    const OBJECTS: usize = 12;
    // Hibernation would close the databases too: not within this test.
    let node = Node::builder()
        .workers(1)
        .hibernate_after("60s")
        .limit("max_open_databases_per_worker", &CAP.to_string())
        .start();
    let prefix = unique_name("capped");
    for i in 0..OBJECTS {
        assert_eq!(post(&node, &format!("/counter/{prefix}-{i}")), "1");
    }
    let worker = node.worker_pids().await[0].expect("the worker is up");
    // Closes run on the worker's blocking pool, just after the open that
    // asked for them. Three descriptors per open database at most.
    crate::support::assert_eventually!(
        database_fds(worker) <= 3 * CAP,
        Duration::from_secs(3),
        "worker {worker} holds {} database descriptors for {OBJECTS} live objects, cap {CAP}",
        database_fds(worker)
    );
    // Every object is still live, and the closed
    // ones open again with what they stored.
    for i in 0..OBJECTS {
        assert_eq!(post(&node, &format!("/counter/{prefix}-{i}")), "2");
    }
    crate::support::assert_eventually!(
        database_fds(worker) <= 3 * CAP,
        Duration::from_secs(3),
        "worker {worker} holds {} database descriptors after the reopens, cap {CAP}",
        database_fds(worker)
    );
}
