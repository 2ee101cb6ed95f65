//! What the supervisor hands its children: the config it read once (not the
//! file as it is later), and the vars and secrets objects read through
//! `Env`, never on a command line.

use crate::support::{assert_eventually, unique_name, wait_for_exit, Client, Node};
use std::time::Duration;

const SECRET_VAR: &str = "TORPOR_IT_SETUP_SECRET";
const SECRET: &str = "s3cret-value-for-the-setup-test";

fn node_with_bindings(greeting: &str) -> Node {
    Node::builder()
        .workers(1)
        .env(SECRET_VAR, SECRET)
        .extra_config(&format!(
            "[vars]\nGREETING = \"{greeting}\"\n\n[secrets]\nTOKEN = \"{SECRET_VAR}\"\n"
        ))
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_read_vars_and_secrets_through_env_and_no_secret_is_on_a_command_line() {
    let node = node_with_bindings("hello");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("env")))).await;
    assert_eq!(client.request("var:GREETING").await, "hello");
    assert_eq!(
        client.request("secretlen:TOKEN").await,
        SECRET.len().to_string()
    );
    let missing = client.request("var:NOPE").await;
    assert!(missing.contains("no var named \"NOPE\""), "{missing}");

    let worker = node.worker_pids().await[0].expect("the worker runs");
    let cmdline = std::fs::read(format!("/proc/{worker}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        !cmdline.contains(SECRET),
        "the secret is on the command line: {cmdline}"
    );
    assert!(cmdline.contains("worker --index 0"), "{cmdline}");

    // A worker started again gets the same setup.
    assert!(node.kill_descendant(worker));
    assert_eventually!(
        node.worker_pids().await[0].is_some_and(|pid| pid != worker),
        Duration::from_secs(10),
        "no new worker"
    );
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("env")))).await;
    assert_eq!(
        client.request("secretlen:TOKEN").await,
        SECRET.len().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_changed_vars() {
    let node = node_with_bindings("hello");
    let name = unique_name("vars");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("var:GREETING").await, "hello");
    let config = std::fs::read_to_string(node.config_path()).unwrap();
    std::fs::write(
        node.config_path(),
        config.replace("GREETING = \"hello\"", "GREETING = \"bonjour\""),
    )
    .unwrap();
    let (code, stdout, stderr) = node.reload().await;
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(client.request("var:GREETING").await, "bonjour");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_runs_on_the_config_the_node_started_with() {
    let node = Node::builder().workers(1).start();
    // The file is broken now; the running node read it once.
    std::fs::write(node.config_path(), "edges = \"many\"\n").unwrap();
    let info = node.node_info().await;
    let edge = info["edges"][0]["pid"].as_u64().expect("edge 0 runs") as u32;
    assert!(node.kill_descendant(edge));
    assert!(wait_for_exit(edge, Duration::from_secs(5)));
    let url = node.ws_url(&format!("/bench/{}", unique_name("restarted")));
    // The new edge listens once it has read its setup.
    assert_eventually!(
        tokio_tungstenite::connect_async(&url).await.is_ok(),
        Duration::from_secs(10),
        "no edge took a connection after the restart"
    );
    let mut client = Client::connect(&url).await;
    assert_eq!(client.request("echo:up").await, "up");
}

#[test]
fn a_secret_whose_variable_is_unset_refuses_to_start_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
             [secrets]\nTOKEN = \"TORPOR_IT_UNSET_VARIABLE\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_torpor"))
        .arg("--config")
        .arg(&config)
        .env_remove("TORPOR_IT_UNSET_VARIABLE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("secrets.TOKEN") && stderr.contains("TORPOR_IT_UNSET_VARIABLE"),
        "{stderr}"
    );
}

#[test]
fn an_edge_started_by_hand_says_the_supervisor_starts_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_torpor"))
        .args(["edge", "--index", "0"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("started by the supervisor"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_node_creates_is_its_users_alone() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::builder().workers(1).start();
    // An object that stores something: its database exists.
    let mut client =
        Client::connect(&node.ws_url(&format!("/bench/{}", unique_name("perm")))).await;
    assert_eq!(client.request("put:k=v").await, "ok");
    let mut checked = 0;
    let mut dirs = vec![node.data_path("")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            // Workers rename spare databases into place and writers rename
            // their files over the old ones: a name listed a moment ago
            // may be gone. Its new name is checked where it now is.
            let metadata = match entry.metadata() {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                other => other.unwrap(),
            };
            let mode = metadata.permissions().mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{} is open to others: {mode:o}",
                entry.path().display()
            );
            checked += 1;
            if metadata.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    // The run directory's sockets, the ledger, the secret, a database...
    assert!(checked >= 6, "only {checked} entries");
}

#[test]
fn an_admin_listener_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("torpor.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"0.0.0.0:0\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_torpor"))
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A node that starts instead would run until killed: bound the wait.
    let exited = wait_for_exit(child.id(), Duration::from_secs(10));
    if !exited {
        // SIGTERM first: the supervisor takes its edges and workers down.
        let _ = std::process::Command::new("kill")
            .arg(child.id().to_string())
            .status();
        if !wait_for_exit(child.id(), Duration::from_secs(5)) {
            let _ = child.kill();
        }
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(exited, "the node started with a public admin listener");
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("listen.admin"), "{stderr}");
}
