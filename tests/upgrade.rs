//! `torpor upgrade`: each edge process is replaced by one of the binary on
//! disk, which takes over its listener, sockets and their state; no socket
//! closes, nothing a client sent is lost or answered twice, and a binary
//! that cannot take over is refused before anything changes.

use crate::support::{
    echo_until, unique_name, wait_for_exit, Client, Deploy, Node, NETWORK_TIMEOUT,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn edge_pids(info: &serde_json::Value) -> Vec<u32> {
    info["edges"]
        .as_array()
        .expect("edges listed")
        .iter()
        .map(|e| e["pid"].as_u64().expect("an edge pid") as u32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_hands_every_socket_to_new_edges_and_no_message_is_lost() {
    let node = Node::builder()
        .edges(2)
        .workers(2)
        .hibernate_after("300ms")
        .start();
    let busy: Vec<String> = (0..4).map(|i| unique_name(&format!("busy{i}"))).collect();
    let quiet: Vec<String> = (0..4).map(|i| unique_name(&format!("quiet{i}"))).collect();

    let mut quiet_clients = Vec::new();
    for name in &quiet {
        let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
        assert_eq!(client.request("echo:hi").await, "hi");
        quiet_clients.push(client);
    }
    for name in &quiet {
        node.wait_hibernated("Bench", name, NETWORK_TIMEOUT).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut traffic = Vec::new();
    for (i, name) in busy.iter().enumerate() {
        for j in 0..3 {
            let client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
            traffic.push(tokio::spawn(echo_until(
                client,
                format!("c{i}.{j}"),
                stop.clone(),
            )));
        }
    }
    let old_edges = edge_pids(&node.node_info().await);
    // Traffic is flowing before the upgrade starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (code, stdout, stderr) = node.upgrade().await;
    assert_eq!(code, 0, "upgrade failed: {stdout} {stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let swapped = report["edges"].as_array().unwrap();
    assert_eq!(swapped.len(), 2, "{report}");

    // And still flowing after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut busy_clients = Vec::new();
    for task in traffic {
        let (client, sent) = task.await.unwrap();
        assert!(sent > 0, "a client sent nothing");
        busy_clients.push(client);
    }

    let new_edges = edge_pids(&node.node_info().await);
    for (index, (old, new)) in old_edges.iter().zip(&new_edges).enumerate() {
        assert_ne!(old, new, "edge {index} still runs its old process");
        assert_eq!(
            swapped[index]["new_pid"].as_u64(),
            Some(u64::from(*new)),
            "{report}"
        );
        assert!(
            wait_for_exit(*old, Duration::from_secs(10)),
            "edge {index}'s old process {old} did not exit"
        );
    }
    // The same sockets, served by the new processes.
    for client in busy_clients.iter_mut() {
        assert_eq!(client.request("echo:after").await, "after");
    }
    // The hibernated objects' sockets moved too, and their objects wake.
    for (client, name) in quiet_clients.iter_mut().zip(&quiet) {
        assert_eq!(client.request("echo:again").await, "again", "{name}");
    }
    for (i, name) in busy.iter().enumerate() {
        let stats = node.stats("Bench", name).await;
        assert_eq!(stats.connections, 3, "busy{i}: {stats:?}");
    }
    for name in &quiet {
        let stats = node.stats("Bench", name).await;
        assert_eq!(stats.connections, 1, "{name}: {stats:?}");
    }
    // New clients reach the new edges' front doors.
    let name = unique_name("fresh");
    let mut fresh = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(fresh.request("echo:new").await, "new");

    // A second upgrade hands over from the processes the first started.
    let (code, stdout, stderr) = node.upgrade().await;
    assert_eq!(code, 0, "second upgrade failed: {stdout} {stderr}");
    assert_eq!(fresh.request("echo:twice").await, "twice");
    for client in busy_clients.iter_mut().chain(&mut quiet_clients) {
        assert_eq!(client.request("echo:twice").await, "twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_cannot_take_over_is_refused_and_the_old_edges_keep_serving() {
    let deploy = Deploy::new();
    let node = Node::builder()
        .workers(1)
        .program(&deploy.program())
        .start();
    let name = unique_name("edgedeploy");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("echo:before").await, "before");
    let edges = edge_pids(&node.node_info().await);

    deploy.install_script("echo 'torpor: broken build' >&2; exit 3");
    let (code, _, stderr) = node.upgrade().await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("409") && stderr.contains("broken build"),
        "{stderr}"
    );

    let other_handover = format!(
        r#"{{"version":"0.1.0+x","ipc_version":{},"handover_version":999,"classes":["Bench"]}}"#,
        torpor_proto::ipc::VERSION
    );
    deploy.install_script(&format!("echo '{other_handover}'"));
    let (code, _, stderr) = node.upgrade().await;
    assert_ne!(code, 0);
    assert!(stderr.contains("handover version 999"), "{stderr}");

    // A binary that describes itself well but dies as an edge: the old
    // edge gets no acknowledgement and serves on.
    let described = format!(
        r#"{{"version":"0.1.0+x","ipc_version":{},"handover_version":{},"classes":["Bench"]}}"#,
        torpor_proto::ipc::VERSION,
        torpor::hold::transfer::HANDOVER_VERSION
    );
    deploy.install_script(&format!(
        "if [ \"$1\" = describe ]; then echo '{described}'; else exit 7; fi"
    ));
    let (code, _, stderr) = node.upgrade().await;
    assert_ne!(code, 0);
    assert!(stderr.contains("did not take over"), "{stderr}");

    assert_eq!(edge_pids(&node.node_info().await), edges, "nothing changed");
    assert_eq!(client.request("echo:still").await, "still");

    deploy.install_built_binary();
    let (code, stdout, stderr) = node.upgrade().await;
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_ne!(edge_pids(&node.node_info().await), edges);
    assert_eq!(client.request("echo:moved").await, "moved");
}
