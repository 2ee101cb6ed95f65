//! `Node`: one `torpor` process on a temp config (ports 0, fresh data dir) and the guard that
//! kills it, and every process it started, by pid when the test ends or panics.

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::http_get;

/// Longest wait for the `torpor ready` line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Admin requests are loopback and small.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How many stderr lines to keep for a start-up failure message.
const STDERR_TAIL_LINES: usize = 60;

// No [[namespaces]] or [[routes]] are written unless a test appends them
// with `extra_config`: the binary's defaults are exactly config/torpor.toml's
// (a unit test holds them equal), so the tests exercise the shipped classes
// and routes.

/// Builds the temp config of a node. Keys left unset keep the binary's defaults.
#[derive(Debug, Default, Clone)]
pub struct NodeBuilder {
    edges: Option<u32>,
    workers: Option<u32>,
    hibernate_after: Option<String>,
    worker_idle_exit: Option<String>,
    handler_timeout: Option<String>,
    /// `[limits]` keys, as TOML values (`"4096"`, `"\"10s\""`).
    limits: Vec<(String, String)>,
    /// A data dir that outlives the node (for restarts); the caller removes it.
    data_dir: Option<std::path::PathBuf>,
    /// Raw TOML appended after everything else.
    extra_config: Vec<String>,
    /// Environment variables set on the `torpor` process.
    env: Vec<(String, String)>,
    /// The binary to run instead of the built `torpor` (a copy a test
    /// replaces to rehearse a deploy).
    program: Option<PathBuf>,
    /// Leave `bench_routes` at the binary's default (off).
    without_bench: bool,
    /// Run `torpor dev` on this wrangler config instead of a Torpor config
    /// (only the data dir applies of the rest).
    dev: Option<PathBuf>,
}

impl NodeBuilder {
    pub fn edges(mut self, edges: u32) -> Self {
        self.edges = Some(edges);
        self
    }

    pub fn workers(mut self, workers: u32) -> Self {
        self.workers = Some(workers);
        self
    }

    /// A duration string such as `"300ms"`.
    pub fn hibernate_after(mut self, duration: &str) -> Self {
        self.hibernate_after = Some(duration.to_owned());
        self
    }

    /// A duration string such as `"1s"`.
    pub fn handler_timeout(mut self, duration: &str) -> Self {
        self.handler_timeout = Some(duration.to_owned());
        self
    }

    /// A duration string such as `"2s"`.
    pub fn worker_idle_exit(mut self, duration: &str) -> Self {
        self.worker_idle_exit = Some(duration.to_owned());
        self
    }

    /// Keeps the data in `dir`, which outlives this node, so that another
    /// node can be started on it; the test removes it.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Sets `[limits] key = value`; `value` is TOML (`"4096"`, `"\"10s\""`).
    pub fn limit(mut self, key: &str, value: &str) -> Self {
        self.limits.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Appends raw TOML after the rest of the config. It lands after the
    /// `[limits]` table, so it must open tables of its own (`[[namespaces]]`,
    /// `[[routes]]`). A config with any `[[routes]]` (or `[[namespaces]]`)
    /// replaces all the default ones: list everything the test needs.
    pub fn extra_config(mut self, text: &str) -> Self {
        self.extra_config.push(text.to_owned());
        self
    }

    /// Sets an environment variable on the `torpor` process (and so on its
    /// workers).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the node without `/bench/{name}`, as the shipped config does.
    pub fn without_bench_routes(mut self) -> Self {
        self.without_bench = true;
        self
    }

    /// Runs `torpor dev WRANGLER_CONFIG` on loopback ports and a temp data
    /// dir instead of a node on a Torpor config.
    pub fn dev(mut self, wrangler_config: &Path) -> Self {
        self.dev = Some(wrangler_config.to_owned());
        self
    }

    /// Runs `program` instead of the built `torpor`.
    pub fn program(mut self, program: &Path) -> Self {
        self.program = Some(program.to_owned());
        self
    }

    fn config_text(&self, data_dir: &Path) -> String {
        // The tests speak the Bench protocol; the binary routes it only
        // when asked.
        let mut text = format!(
            "data_dir = {}\nbench_routes = {}\n",
            toml_string(&data_dir.to_string_lossy()),
            !self.without_bench
        );
        if let Some(workers) = self.workers {
            text += &format!("workers = {workers}\n");
        }
        if let Some(edges) = self.edges {
            text += &format!("edges = {edges}\n");
        }
        if let Some(d) = &self.hibernate_after {
            text += &format!("hibernate_after = {}\n", toml_string(d));
        }
        if let Some(d) = &self.worker_idle_exit {
            text += &format!("worker_idle_exit = {}\n", toml_string(d));
        }
        if let Some(d) = &self.handler_timeout {
            text += &format!("handler_timeout = {}\n", toml_string(d));
        }
        text += "\n[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n";
        if !self.limits.is_empty() {
            text += "\n[limits]\n";
            for (key, value) in &self.limits {
                text += &format!("{key} = {value}\n");
            }
        }
        for extra in &self.extra_config {
            text += "\n";
            text += extra;
            text += "\n";
        }
        text
    }

    /// Starts `torpor` and waits (bounded) for its ready line.
    pub fn start(self) -> Node {
        let dir = temp_dir();
        let data_dir = self.data_dir.clone().unwrap_or_else(|| dir.join("data"));
        let config_path = dir.join("torpor.toml");
        let config = self.config_text(&data_dir);
        std::fs::write(&config_path, &config).unwrap();

        let program = self
            .program
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_torpor")));
        let mut command = Command::new(&program);
        match &self.dev {
            Some(wrangler) => command
                .arg("dev")
                .arg(wrangler)
                .args([
                    "--http",
                    "127.0.0.1:0",
                    "--admin",
                    "127.0.0.1:0",
                    "--data-dir",
                ])
                .arg(&data_dir),
            None => command.arg("--config").arg(&config_path),
        };
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_installed(&mut command, &program);
        let pid = child.id();

        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let tail = Arc::clone(&stderr_tail);
        let lines = Arc::clone(&stderr_lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[torpor {pid} stderr] {line}");
                lines.lock().unwrap().push(line.clone());
                let mut tail = tail.lock().unwrap();
                if tail.len() == STDERR_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });

        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[torpor {pid} stdout] {line}");
                if line.starts_with("torpor ready ") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(line);
                    }
                }
            }
        });

        // From here on the guard owns the child: a failed start still kills it.
        let mut node = Node {
            child,
            stderr_lines,
            dir,
            data_dir,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = node.child.try_wait().ok().flatten();
                // Give the stderr reader a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(200));
                let tail: Vec<String> = stderr_tail.lock().unwrap().iter().cloned().collect();
                panic!(
                    "torpor did not print its ready line ({e}); exit status {status:?}\n\
                     config:\n{config}\nlast stderr lines:\n{}",
                    tail.join("\n")
                );
            }
        };
        let (http, admin) = parse_ready_line(&line)
            .unwrap_or_else(|| panic!("cannot parse the ready line {line:?}"));
        node.http_addr = http;
        node.admin_addr = admin;
        node
    }
}

/// One running `torpor`; killed with everything it started when dropped.
pub struct Node {
    child: Child,
    /// Everything the node and its children wrote to stderr so far.
    stderr_lines: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
    data_dir: PathBuf,
    http_addr: SocketAddr,
    admin_addr: SocketAddr,
}

/// The per-object counters of `GET /admin/objects/{class}/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectStats {
    pub wakes: u64,
    pub events: u64,
    pub ws_messages_in: u64,
    pub ws_messages_out: u64,
    pub auto_responses: u64,
    pub upgrades: u64,
    pub connections: u64,
    pub active: bool,
    pub billable_requests: f64,
}

impl ObjectStats {
    fn from_json(json: &serde_json::Value) -> Self {
        let int = |key: &str| {
            json.get(key)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or_else(|| panic!("object stats lack integer field {key:?}: {json}"))
        };
        ObjectStats {
            wakes: int("wakes"),
            events: int("events"),
            ws_messages_in: int("ws_messages_in"),
            ws_messages_out: int("ws_messages_out"),
            auto_responses: int("auto_responses"),
            upgrades: int("upgrades"),
            connections: int("connections"),
            active: json
                .get("active")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or_else(|| panic!("object stats lack bool field \"active\": {json}")),
            billable_requests: json
                .get("billable_requests")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or_else(|| {
                    panic!("object stats lack number field \"billable_requests\": {json}")
                }),
        }
    }
}

impl Node {
    /// The config file this node runs on.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("torpor.toml")
    }

    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// A node with the binary's defaults (apart from ports and data dir).
    pub fn start() -> Node {
        NodeBuilder::default().start()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr lines (logs, panic messages) of the node and everything
    /// it started, so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr_lines.lock().unwrap().clone()
    }

    /// A path inside the node's data directory.
    pub fn data_path(&self, relative: &str) -> PathBuf {
        self.data_dir.join(relative)
    }

    /// `ws://HTTP_ADDR{path}`; `path` starts with `/`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.http_addr, path)
    }

    /// `GET path` on the admin listener (off the async runtime's threads).
    pub async fn admin_get(&self, path: &str) -> super::HttpResponse {
        let addr = self.admin_addr;
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || http_get(addr, &owned, ADMIN_TIMEOUT))
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("admin GET {path} failed: {e}"))
    }

    /// Runs `torpor reload` against this node; (exit code, stdout, stderr).
    pub async fn reload(&self) -> (i32, String, String) {
        self.deploy("reload").await
    }

    /// Runs `torpor upgrade` against this node; (exit code, stdout, stderr).
    pub async fn upgrade(&self) -> (i32, String, String) {
        self.deploy("upgrade").await
    }

    async fn deploy(&self, what: &str) -> (i32, String, String) {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_torpor"));
        command
            .arg(what)
            .arg("--config")
            .arg(self.config_path())
            .arg("--admin")
            .arg(self.admin_addr.to_string())
            .kill_on_drop(true);
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("torpor {what} answers within 60 s"))
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// `GET /admin/objects/{class}/{name}` as JSON; an unknown object (404) reads as all zeros.
    pub async fn object_stats(&self, class: &str, name: &str) -> serde_json::Value {
        let path = format!("/admin/objects/{class}/{name}");
        let response = self.admin_get(&path).await;
        match response.status {
            200 => response.json(),
            404 => serde_json::json!({
                "wakes": 0, "events": 0, "ws_messages_in": 0, "ws_messages_out": 0,
                "auto_responses": 0, "upgrades": 0, "connections": 0,
                "active": false, "billable_requests": 0.0,
            }),
            status => panic!("admin GET {path} returned {status}: {}", response.text()),
        }
    }

    /// `object_stats` parsed into its typed fields.
    pub async fn stats(&self, class: &str, name: &str) -> ObjectStats {
        ObjectStats::from_json(&self.object_stats(class, name).await)
    }

    /// Polls the object's counters until `done` holds and returns them; panics after
    /// `timeout` showing the last counters and `what`.
    pub async fn stats_when(
        &self,
        class: &str,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&ObjectStats) -> bool,
    ) -> ObjectStats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats(class, name).await;
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "{class}/{name}: {what} not true within {timeout:?}; last stats {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the object is hibernated (`active` false, at least one wake) and returns
    /// its counters at that moment; panics after `timeout`.
    pub async fn wait_hibernated(&self, class: &str, name: &str, timeout: Duration) -> ObjectStats {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats(class, name).await;
            if !stats.active && stats.wakes > 0 {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "{class}/{name} did not hibernate within {timeout:?}; last stats {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /admin/node` as JSON.
    pub async fn node_info(&self) -> serde_json::Value {
        let response = self.admin_get("/admin/node").await;
        assert_eq!(response.status, 200, "GET /admin/node: {}", response.text());
        response.json()
    }

    /// The worker pids of `/admin/node`, one per worker index, `None` while a worker is down.
    pub async fn worker_pids(&self) -> Vec<Option<u32>> {
        worker_pids_of(&self.node_info().await)
    }

    /// Sends SIGKILL to `pid` if it descends from this node's `torpor` process (never to
    /// anything else). Returns whether it was sent.
    pub fn kill_descendant(&self, pid: u32) -> bool {
        if !is_descendant(pid, self.child.id()) {
            return false;
        }
        kill_pids(&[pid]);
        true
    }

    /// Everything this node started that is still alive: `/admin/node` pids that descend
    /// from it, plus every descendant found in `/proc`.
    fn descendants(&self) -> BTreeSet<u32> {
        let root = self.child.id();
        let mut pids: BTreeSet<u32> = proc_descendants(root);
        if let Ok(response) = http_get(self.admin_addr, "/admin/node", Duration::from_secs(1)) {
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&response.body) {
                let listed = worker_pids_of(&json).into_iter().flatten().chain(
                    json.get("edge_pid")
                        .and_then(|p| p.as_u64())
                        .map(|p| p as u32),
                );
                pids.extend(listed.filter(|&p| p != root && is_descendant(p, root)));
            }
        }
        pids
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let descendants = self.descendants();
        let _ = self.child.kill();
        let pids: Vec<u32> = descendants.into_iter().collect();
        kill_pids(&pids);
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "torpor test failed; its config and data are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn worker_pids_of(json: &serde_json::Value) -> Vec<Option<u32>> {
    let workers = json
        .get("workers")
        .and_then(serde_json::Value::as_array)
        .unwrap_or_else(|| panic!("/admin/node has no \"workers\" array: {json}"));
    workers
        .iter()
        .map(|w| {
            w.get("pid")
                .and_then(serde_json::Value::as_u64)
                .map(|p| p as u32)
        })
        .collect()
}

/// `torpor ready http=127.0.0.1:PORT admin=127.0.0.1:PORT`
fn parse_ready_line(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let mut http = None;
    let mut admin = None;
    for word in line.split_whitespace() {
        if let Some(addr) = word.strip_prefix("http=") {
            http = addr.parse().ok();
        } else if let Some(addr) = word.strip_prefix("admin=") {
            admin = addr.parse().ok();
        }
    }
    Some((http?, admin?))
}

fn kill_pids(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg("-9")
        .args(pids.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

fn is_descendant(mut pid: u32, root: u32) -> bool {
    for _ in 0..16 {
        match parent_of(pid) {
            Some(parent) if parent == root => return true,
            Some(parent) if parent > 1 => pid = parent,
            _ => return false,
        }
    }
    false
}

fn proc_descendants(root: u32) -> BTreeSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != root && is_descendant(pid, root))
        .collect()
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn temp_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "torpor-it-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits (bounded, blocking) until `pid` is gone or a zombie.
/// Spawns `command`, whose program a test may have just copied into place:
/// another test's fork can hold the copy's write descriptor until its exec
/// closes it, and exec then fails with ETXTBSY. Retried a bounded number of
/// times, as the window is the length of one fork and exec.
fn spawn_installed(command: &mut Command, program: &Path) -> std::process::Child {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        match command.spawn() {
            Ok(child) => return child,
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot spawn {}: {e}", program.display()),
        }
    }
}

pub fn wait_for_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                let state = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next().map(str::to_owned));
                if state.as_deref() == Some("Z") {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A process's peak resident memory (VmHWM of `/proc/PID/status`), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}
