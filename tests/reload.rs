//! `torpor reload`: the workers are replaced by the binary on disk while the
//! edges hold every socket; nothing a client sent is lost or answered twice,
//! and a binary that cannot serve is refused before anything changes.

use crate::support::{
    assert_eventually, echo_until, unique_name, Client, Deploy, Node, NETWORK_TIMEOUT,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn pid_of(client: &mut Client) -> String {
    client.request("pid").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_replaces_the_workers_while_every_socket_stays_open_and_no_message_is_lost() {
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
    let mut before = Vec::new();
    for name in &quiet {
        node.wait_hibernated("Bench", name, NETWORK_TIMEOUT).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut traffic = Vec::new();
    for (i, name) in busy.iter().enumerate() {
        for j in 0..3 {
            let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
            if j == 0 {
                before.push(pid_of(&mut client).await);
            }
            traffic.push(tokio::spawn(echo_until(
                client,
                format!("c{i}.{j}"),
                stop.clone(),
            )));
        }
    }
    // Traffic is flowing before the reload starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (code, stdout, stderr) = node.reload().await;
    assert_eq!(code, 0, "reload failed: {stdout} {stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let replaced = report["workers"].as_array().unwrap();
    assert_eq!(replaced.len(), 2, "{report}");
    assert!(replaced.iter().all(|w| w["clean"] == true), "{report}");

    // And still flowing after it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut busy_clients = Vec::new();
    for task in traffic {
        let (client, sent) = task.await.unwrap();
        assert!(sent > 0, "a client sent nothing");
        busy_clients.push(client);
    }

    let info = node.node_info().await;
    for worker in info["workers"].as_array().unwrap() {
        assert_eq!(worker["version"], report["version"], "{info}");
    }
    let pids_after = node.worker_pids().await;
    let old: Vec<u32> = replaced
        .iter()
        .map(|w| w["old_pid"].as_u64().unwrap() as u32)
        .collect();
    for (index, pid) in pids_after.iter().enumerate() {
        let pid = pid.unwrap_or_else(|| panic!("worker {index} is down after the reload"));
        assert!(
            !old.contains(&pid),
            "worker {index} still runs its old process {pid}"
        );
    }
    for (i, client) in busy_clients.iter_mut().step_by(3).enumerate() {
        let now = pid_of(client).await;
        assert_ne!(
            now, before[i],
            "busy object {i} is served by its old worker"
        );
    }
    // The hibernated objects' sockets survived too, and wake in the new workers.
    for (client, name) in quiet_clients.iter_mut().zip(&quiet) {
        assert_eq!(client.request("echo:again").await, "again", "{name}");
        let pid = pid_of(client).await;
        assert!(
            !old.iter().any(|p| p.to_string() == pid),
            "{name} woke in an old worker"
        );
    }
    for name in busy.iter().chain(&quiet) {
        let stats = node.stats("Bench", name).await;
        assert!(stats.connections >= 1, "{name}: {stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_cannot_serve_is_refused_and_the_old_workers_keep_serving() {
    let deploy = Deploy::new();
    let node = Node::builder()
        .workers(1)
        .program(&deploy.program())
        .start();
    let name = unique_name("deploy");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let pid = pid_of(&mut client).await;

    deploy.install_script("echo 'torpor: broken build' >&2; exit 3");
    let (code, _, stderr) = node.reload().await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("409") && stderr.contains("broken build"),
        "{stderr}"
    );

    let old_ipc = r#"{"version":"0.0.1+old","ipc_version":1,"classes":["Bench"]}"#;
    deploy.install_script(&format!("echo '{old_ipc}'"));
    let (code, _, stderr) = node.reload().await;
    assert_ne!(code, 0);
    assert!(stderr.contains("ipc version 1"), "{stderr}");

    // This build's IPC version: only the missing class is wrong.
    let no_bench = format!(
        r#"{{"version":"0.1.0+x","ipc_version":{},"classes":["ChatRoom","Counter","Echo","GameRelay","Presence"]}}"#,
        torpor_proto::ipc::VERSION
    );
    deploy.install_script(&format!("echo '{no_bench}'"));
    let (code, _, stderr) = node.reload().await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("class \\\"Bench\\\"") && stderr.contains("does not have"),
        "{stderr}"
    );

    // Nothing changed: the same worker answers on the same socket.
    assert_eq!(pid_of(&mut client).await, pid);
    assert_eq!(client.request("echo:still").await, "still");
    // A worker that dies now comes back from the binary the node runs, not
    // from the refused file at the deploy path.
    let worker: u32 = pid.parse().unwrap();
    assert!(node.kill_descendant(worker));
    assert_eventually!(
        node.worker_pids().await[0].is_some_and(|p| p != worker),
        Duration::from_secs(10),
        "no new worker"
    );
    let restarted = pid_of(&mut client).await;
    assert_ne!(restarted, pid);
    assert_eq!(client.request("echo:restarted").await, "restarted");
    let pid = restarted;

    // A good binary goes through, and the socket stays.
    deploy.install_built_binary();
    let (code, stdout, stderr) = node.reload().await;
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_ne!(pid_of(&mut client).await, pid);
    assert_eq!(client.request("version").await, "0.1.0+dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_the_edges_would_need_is_refused() {
    let node = Node::builder().workers(1).start();
    let name = unique_name("config");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let pid = pid_of(&mut client).await;

    let config = std::fs::read_to_string(node.config_path()).unwrap();
    std::fs::write(
        node.config_path(),
        format!("{config}\n[limits]\nmax_message_bytes = 4096\n"),
    )
    .unwrap();
    let (code, _, stderr) = node.reload().await;
    assert_ne!(code, 0);
    assert!(stderr.contains("limits changed"), "{stderr}");
    assert_eq!(pid_of(&mut client).await, pid);

    // A worker-only key is applied.
    std::fs::write(
        node.config_path(),
        format!("handler_timeout = \"20s\"\n{config}"),
    )
    .unwrap();
    let (code, stdout, stderr) = node.reload().await;
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_ne!(pid_of(&mut client).await, pid, "served by the old worker");
}
