//! Worker processes: a killed or idle-exited worker drops no client socket; the edge keeps
//! the sockets and the next message is served by a new worker.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;

use crate::support::{assert_eventually, peak_rss_kib, unique_name, wait_for_exit, Client, Node};

const WORKER_WAIT: Duration = Duration::from_secs(15);

/// Sends `echo:{prefix}-{i}` until one of them is answered, on the same socket, never
/// reconnecting. The first messages after a worker dies may be lost. Returns the attempts.
async fn echo_until_served(client: &mut Client, prefix: &str, attempts: usize) -> usize {
    let mut sent = Vec::new();
    for attempt in 0..attempts {
        let payload = format!("{prefix}-{attempt}");
        client.send_text(&format!("echo:{payload}")).await;
        sent.push(payload);
        match client.try_recv(Duration::from_secs(1)).await {
            None => continue,
            Some(Message::Text(text)) if sent.iter().any(|p| p == text.as_str()) => {
                return attempt + 1;
            }
            Some(other) => panic!(
                "after the worker died the socket got {other:?}, expected an echo of one of {sent:?}"
            ),
        }
    }
    panic!("none of {attempts} echo messages ({sent:?}) was answered after the worker died");
}

/// Reads and drops late echoes of `prefix` until the socket is quiet for 500 ms.
async fn drain_late_echoes(client: &mut Client, prefix: &str) {
    while let Some(message) = client.try_recv(Duration::from_millis(500)).await {
        match message {
            Message::Text(text) if text.as_str().starts_with(prefix) => {}
            other => panic!("unexpected message while draining late echoes: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_workers_drops_no_client_socket() {
    let node = Node::builder().workers(2).start();
    let name = unique_name("crash");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("echo:before").await, "before");

    let old: BTreeSet<u32> = node.worker_pids().await.into_iter().flatten().collect();
    assert!(
        !old.is_empty(),
        "no worker pid listed while an object is live: {}",
        node.node_info().await
    );
    for &pid in &old {
        assert!(
            node.kill_descendant(pid),
            "worker pid {pid} from /admin/node is not a descendant of torpor {}",
            node.pid()
        );
    }
    for &pid in &old {
        let gone = tokio::task::spawn_blocking(move || wait_for_exit(pid, Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(gone, "worker {pid} survived SIGKILL");
    }

    echo_until_served(&mut client, "after", 20).await;
    drain_late_echoes(&mut client, "after").await;
    assert_eq!(
        client.request("echo:again").await,
        "again",
        "the same socket keeps working"
    );

    let mut pids: Vec<Option<u32>>;
    assert_eventually!(
        {
            pids = node.worker_pids().await;
            let live: Vec<u32> = pids.iter().flatten().copied().collect();
            !live.is_empty() && live.iter().all(|pid| !old.contains(pid))
        },
        WORKER_WAIT,
        "new worker pids should replace the killed {old:?}; /admin/node lists {pids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_exit_and_the_next_message_starts_one_again() {
    let node = Node::builder()
        .workers(2)
        .hibernate_after("300ms")
        .worker_idle_exit("2s")
        .start();
    let name = unique_name("idle");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("echo:one").await, "one");

    let mut pids: Vec<Option<u32>>;
    assert_eventually!(
        {
            pids = node.worker_pids().await;
            pids.iter().all(Option::is_none)
        },
        WORKER_WAIT,
        "every worker should exit after 2 s with no live object; /admin/node lists {pids:?}"
    );

    assert_eq!(
        client.request("echo:two").await,
        "two",
        "the socket held by the edge is served by a restarted worker"
    );
    assert_eventually!(
        {
            pids = node.worker_pids().await;
            pids.iter().any(Option::is_some)
        },
        WORKER_WAIT,
        "a worker should run again after the wake; /admin/node lists {pids:?}"
    );
    let stats = node
        .stats_when(
            "Bench",
            &name,
            Duration::from_secs(5),
            "a second wake",
            |s| s.wakes >= 2,
        )
        .await;
    assert_eq!(
        stats.wakes, 2,
        "one wake before and one after the worker exit: {stats:?}"
    );
}

/// The soft open-files limit of a process, from `/proc/PID/limits`.
fn soft_open_files(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no open files line in {limits}"));
    let mut numbers = line["Max open files".len()..].split_whitespace();
    (
        numbers.next().unwrap().to_owned(),
        numbers.next().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_raises_its_open_files_limit_to_the_hard_one() {
    // Started with the usual soft default, far below the hard limit.
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("torpor-low-limit");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -Sn 256\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_torpor")
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let node = Node::builder().program(&wrapper).start();
    let info = node.node_info().await;
    let mut pids = vec![node.pid()];
    pids.extend(
        info["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["pid"].as_u64())
            .map(|p| p as u32),
    );
    pids.extend(node.worker_pids().await.into_iter().flatten());
    assert!(pids.len() >= 4, "{info}");
    for pid in pids {
        let (soft, hard) = soft_open_files(pid);
        assert_eq!(soft, hard, "process {pid} kept a soft limit of {soft}");
    }
}

/// A worker busy for a while is sent no more than the edge's byte budget:
/// the edge stops reading the senders, and TCP holds the rest at the
/// clients, instead of the worker's inbox growing with everything they send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_worker_is_sent_no_more_than_the_edges_byte_budget() {
    let node = Node::builder()
        .workers(1)
        .limit("max_bytes_in_flight", "1048576")
        // The echoes wait at the edge while this test is still sending.
        .limit("max_outbound_queue_bytes", "67108864")
        .start();
    let name = unique_name("budget");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("echo:warm").await, "warm");
    let worker = node.worker_pids().await[0].expect("the worker runs");
    let before = peak_rss_kib(worker);
    // The object sleeps; 40 MB of echoes arrive behind it.
    client.send_text("sleep:1500").await;
    let chunk = "x".repeat(200_000);
    for i in 0..200 {
        client.send_text(&format!("echo:{i:03}{chunk}")).await;
    }
    assert_eq!(client.recv_text().await, "slept");
    for i in 0..200 {
        let echoed = client.recv_text().await;
        assert_eq!(&echoed[..3], format!("{i:03}"), "lost or out of order");
    }
    let grown_mib = peak_rss_kib(worker).saturating_sub(before) / 1024;
    assert!(grown_mib < 12, "the worker's peak grew by {grown_mib} MiB");
}

/// Live objects are what an attacker naming new objects makes a worker
/// hold until they hibernate (10 s by default): at tens of thousands a
/// second each one's cost is what bounds the worker's memory. Measured as
/// the growth of the worker's peak RSS over a few thousand live Presence
/// objects that never touch storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_object_costs_its_worker_a_few_kib() {
    const OBJECTS: u64 = 4000;
    let node = Node::builder().workers(1).hibernate_after("120s").start();
    let prefix = unique_name("live");
    let touch = |i: u64| {
        use std::io::{BufRead, BufReader, Read, Write};
        let mut stream = std::net::TcpStream::connect(node.http_addr()).unwrap();
        stream
            .set_read_timeout(Some(crate::support::NETWORK_TIMEOUT))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        (i * 100..(i + 1) * 100).for_each(|n| {
            let request = format!("GET /presence/{prefix}-{n} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                assert!(!line.is_empty(), "connection closed");
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
        });
    };
    // The first hundred wake the worker and warm its allocator.
    touch(0);
    let worker = node.worker_pids().await[0].expect("the worker is up");
    let before = peak_rss_kib(worker);
    for batch in 1..=OBJECTS / 100 {
        touch(batch);
    }
    let per_object = (peak_rss_kib(worker) - before) * 1024 / OBJECTS;
    // 10.3 KiB each before the mailbox carried boxed events and the task
    // boxed its handler's futures, 3.5 KiB after.
    assert!(
        per_object < 6 * 1024,
        "each live object costs its worker {per_object} bytes"
    );
}
