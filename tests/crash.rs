//! Crash safety: workers SIGKILLed again and again while clients increment
//! Counters. An increment acknowledged to a client is never lost, and none
//! is counted twice, across the kills and a kill -9 of the whole node.

use crate::support::{http_request, unique_name, Node, NETWORK_TIMEOUT};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// POSTs once; the value if the increment was acknowledged (200).
fn increment(node: &Node, path: &str) -> Option<u64> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let response = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT).ok()?;
    (response.status == 200).then(|| response.text().trim().parse().ok())?
}

fn read(node: &Node, path: &str) -> u64 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(response) = http_request(node.http_addr(), request.as_bytes(), NETWORK_TIMEOUT) {
            if response.status == 200 {
                return response.text().trim().parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "GET {path} kept failing");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_increments_survive_repeated_worker_kills_and_a_node_kill() {
    let dir = std::env::temp_dir().join(unique_name("torpor-crash"));
    let paths: Vec<String> = (0..4)
        .map(|i| format!("/counter/{}", unique_name(&format!("crash{i}"))))
        .collect();
    let mut results = Vec::new();
    {
        let node = Arc::new(Node::builder().workers(2).data_dir(&dir).start());
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = paths
            .iter()
            .cloned()
            .map(|path| {
                let (node, stop) = (node.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (mut acked, mut attempts) = (Vec::new(), 0u64);
                    while !stop.load(Ordering::Relaxed) && attempts < 5_000 {
                        attempts += 1;
                        if let Some(value) = increment(&node, &path) {
                            acked.push(value);
                        }
                    }
                    (path, acked, attempts)
                })
            })
            .collect();
        let mut kills = 0;
        for _ in 0..12 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            for pid in node.worker_pids().await.into_iter().flatten() {
                if node.kill_descendant(pid) {
                    kills += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            results.push(client.join().unwrap());
        }
        assert!(kills >= 6, "only {kills} workers were killed");
        for (path, acked, attempts) in &results {
            assert!(
                !acked.is_empty(),
                "{path}: nothing acknowledged in {attempts} attempts"
            );
            assert!(
                acked.windows(2).all(|w| w[0] < w[1]),
                "{path}: an acknowledged value repeated or went back: {acked:?}"
            );
            let value = read(&node, path);
            let last = *acked.last().unwrap();
            assert!(
                value >= last,
                "{path}: acknowledged {last} but reads {value}"
            );
            assert!(
                value <= *attempts,
                "{path}: {value} after only {attempts} attempts"
            );
        }
        // Dropping the node SIGKILLs torpor and its workers.
    }
    let node = Node::builder().data_dir(&dir).start();
    for (path, acked, attempts) in &results {
        let value = read(&node, path);
        let last = *acked.last().unwrap();
        assert!(
            value >= last && value <= *attempts,
            "{path}: after the node restart reads {value}; acknowledged up to {last} in {attempts} attempts"
        );
    }
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
