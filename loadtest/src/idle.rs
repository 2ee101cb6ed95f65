//! `loadtest idle`: how much edge memory an idle WebSocket costs.
//!
//! The parent samples the edge's RSS, spawns `--processes` copies of itself
//! (`loadtest idle-client`), each of which opens its share of the connections
//! from its own source address 127.0.0.(10+i), says `ready`, and then holds them
//! without a single read or write until its stdin closes. The parent samples the
//! RSS again and reports growth per connection. Several processes are needed
//! because each may hold fewer than 20000 file descriptors; distinct source
//! addresses keep one address's ~28000 ephemeral ports from running out.
//!
//! The child → parent protocol is lines on the child's stdout:
//! `fail <count> <reason>` (any number), `retries <count>`, then
//! `ready <opened> <failed> <open-millis>`. The parent → child signal is the end
//! of the child's stdin. Every wait here has a deadline.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{self, ClientError, Open, Source, Target};
use crate::report::{mib, IdleReport};
use crate::{admin, rss};

/// Below the 20000 descriptors a process may hold, with room for the
/// runtime's own (epoll, stdio, eventfd).
pub const MAX_CONNECTIONS_PER_PROCESS: u64 = 19_000;
/// Descriptors a client process needs besides its sockets.
const SPARE_FDS: u64 = 64;
/// Process `i` binds its sockets to 127.0.0.(FIRST_SOURCE_OCTET + i).
const FIRST_SOURCE_OCTET: u32 = 10;
const MAX_PROCESSES: u32 = 254 - FIRST_SOURCE_OCTET + 1;
/// The bench object class and the prefix of its names.
const CLASS: &str = "Bench";
const ROOM_PREFIX: &str = "idle-";

/// How long the parent waits for every child's `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a child keeps opening; below READY_TIMEOUT so that a child with
/// stragglers still reports what it got.
const OPEN_DEADLINE: Duration = Duration::from_secs(240);
/// One connection attempt: connect, upgrade and attach.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits before the retries of a transiently failed connection (a full SYN
/// backlog drops SYNs; the kernel's own retransmit would take a second).
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];
/// Lets the server finish whatever follows the last upgrade before measuring.
const SETTLE: Duration = Duration::from_secs(2);
const RSS_SAMPLES: usize = 3;
const RSS_SAMPLE_GAP: Duration = Duration::from_secs(1);
/// How long children get to exit after their stdin closes before being killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// A child gives up holding this long after the parent should have released it.
const HOLD_SLACK: Duration = Duration::from_secs(120);
/// Distinct failure reasons a child reports; the rest are lumped together.
const MAX_FAILURE_REASONS: usize = 16;

/// `loadtest idle` flags.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub url: String,
    pub admin: String,
    pub connections: u64,
    pub rooms: u32,
    pub attach_bytes: usize,
    pub processes: u32,
    pub hold: Duration,
    pub edge_pid: Option<u32>,
    pub json: Option<PathBuf>,
    /// Connections in flight (connecting or handshaking) per process.
    pub concurrency: usize,
}

/// `loadtest idle-client` flags: one child's share of the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub url: String,
    pub rooms: u32,
    /// Global index of this child's first connection; connection `k` joins
    /// room `k % rooms`, so rooms fill evenly across children.
    pub first_index: u64,
    pub connections: u64,
    pub attach_bytes: usize,
    pub source_ip: Ipv4Addr,
    pub concurrency: usize,
    pub open_deadline: Duration,
    /// Holding ends by itself this long after `ready`.
    pub hold_deadline: Duration,
}

impl ClientOptions {
    /// The command-line flags that `main` parses back into these options.
    pub fn to_args(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        vec![
            "--url".into(),
            self.url.clone(),
            "--rooms".into(),
            self.rooms.to_string(),
            "--first-index".into(),
            self.first_index.to_string(),
            "--connections".into(),
            self.connections.to_string(),
            "--attach-bytes".into(),
            self.attach_bytes.to_string(),
            "--source-ip".into(),
            self.source_ip.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--open-deadline".into(),
            ms(self.open_deadline),
            "--hold-deadline".into(),
            ms(self.hold_deadline),
        ]
    }
}

/// Splits the run over child processes, or says why it cannot be run.
pub fn plan(opts: &IdleOptions) -> Result<Vec<ClientOptions>, String> {
    if opts.rooms == 0 {
        return Err("--rooms must be at least 1".into());
    }
    if opts.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if opts.processes == 0 || opts.processes > MAX_PROCESSES {
        return Err(format!(
            "--processes is {}, must be 1..={MAX_PROCESSES} (one source address 127.0.0.x each)",
            opts.processes
        ));
    }
    let processes = u64::from(opts.processes);
    if opts.connections < processes {
        return Err(format!(
            "--connections {} is fewer than --processes {}",
            opts.connections, opts.processes
        ));
    }
    let per_process = opts.connections.div_ceil(processes);
    if per_process > MAX_CONNECTIONS_PER_PROCESS {
        let needed = opts.connections.div_ceil(MAX_CONNECTIONS_PER_PROCESS);
        return Err(format!(
            "{} connections over {} processes is {per_process} per process, above the limit of \
             {MAX_CONNECTIONS_PER_PROCESS} (each process may hold 20000 file descriptors): \
             raise --processes to at least {needed}",
            opts.connections, opts.processes
        ));
    }
    let hold_deadline = READY_TIMEOUT + SETTLE + RSS_SAMPLE_GAP * 4 + opts.hold + HOLD_SLACK;
    let (base, extra) = (opts.connections / processes, opts.connections % processes);
    let mut first_index = 0;
    let children = (0..opts.processes)
        .map(|i| {
            let connections = base + u64::from(u64::from(i) < extra);
            let source_ip =
                Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + FIRST_SOURCE_OCTET + i);
            let child = ClientOptions {
                url: opts.url.clone(),
                rooms: opts.rooms,
                first_index,
                connections,
                attach_bytes: opts.attach_bytes,
                source_ip,
                concurrency: opts.concurrency,
                open_deadline: OPEN_DEADLINE,
                hold_deadline,
            };
            first_index += connections;
            child
        })
        .collect();
    Ok(children)
}

/// Runs the whole measurement as the parent and returns the report.
pub fn run(opts: &IdleOptions) -> Result<IdleReport, String> {
    // Fail on a bad url here, not in every child.
    Target::parse(&opts.url)?;
    let plan = plan(opts)?;
    let admin_addr = admin::parse_addr(&opts.admin)?;
    let edge_pid = match opts.edge_pid {
        Some(pid) => pid,
        None => admin::edge_pid(admin_addr)?,
    };
    let rss_before = rss::rss_bytes(edge_pid)?;
    println!(
        "edge pid {edge_pid}, rss {:.1} MiB; opening {} connections over {} rooms from {} processes",
        mib(rss_before),
        opts.connections,
        opts.rooms,
        opts.processes
    );

    let started = Instant::now();
    let mut fleet = Fleet::spawn(&plan)?;
    let tally = fleet.wait_ready(READY_TIMEOUT)?;
    let open_seconds = started.elapsed().as_secs_f64();
    println!(
        "opened {} of {} in {open_seconds:.2} s ({} failed, {} retries); settling {} s",
        tally.opened,
        opts.connections,
        tally.failed,
        tally.retries,
        SETTLE.as_secs()
    );

    std::thread::sleep(SETTLE);
    let (samples, rss_after) = rss::sample_rss(edge_pid, RSS_SAMPLES, RSS_SAMPLE_GAP)?;
    let server_connections = server_connections(admin_addr, opts.rooms);
    let client_rss_bytes = fleet.rss_total();
    println!(
        "edge rss {:.1} MiB; holding {:.1} s",
        mib(rss_after),
        opts.hold.as_secs_f64()
    );
    std::thread::sleep(opts.hold);
    let rss_end = rss::rss_bytes(edge_pid)?;
    fleet.shutdown();

    Ok(IdleReport {
        scenario: "idle",
        url: opts.url.clone(),
        connections_requested: opts.connections,
        connections_opened: tally.opened,
        connections_failed: tally.failed,
        failures: tally.failures,
        connect_retries: tally.retries,
        rooms: opts.rooms,
        attach_bytes: opts.attach_bytes,
        processes: opts.processes,
        edge_pid,
        edge_rss_before_bytes: rss_before,
        edge_rss_after_bytes: rss_after,
        edge_rss_after_samples_bytes: samples,
        edge_rss_end_of_hold_bytes: rss_end,
        edge_rss_growth_bytes: 0,
        bytes_per_connection: 0.0,
        bytes_per_connection_beyond_attachment: 0.0,
        open_seconds,
        connections_per_second: 0.0,
        hold_seconds: opts.hold.as_secs_f64(),
        server_connections,
        client_rss_bytes,
    }
    .derive())
}

/// The server's own count of sockets over all rooms; `None` (with a note on
/// stderr) if the admin API cannot say, since it only cross-checks `opened`.
fn server_connections(admin_addr: std::net::SocketAddr, rooms: u32) -> Option<u64> {
    let mut total = 0;
    for room in 0..rooms {
        match admin::object_connections(admin_addr, CLASS, &format!("{ROOM_PREFIX}{room}")) {
            Ok(n) => total += n,
            Err(e) => {
                eprintln!("note: server connection count unavailable: {e}");
                return None;
            }
        }
    }
    Some(total)
}

/// What the children reported before `ready`, summed.
#[derive(Debug, Default)]
struct Tally {
    opened: u64,
    failed: u64,
    retries: u64,
    failures: BTreeMap<String, u64>,
}

enum Event {
    Line(String),
    Closed,
}

struct Member {
    child: Child,
    stdin: Option<ChildStdin>,
}

/// The client processes. Dropping it ends them, so no error path leaves
/// children holding sockets.
struct Fleet {
    members: Vec<Member>,
    events: mpsc::Receiver<(usize, Event)>,
}

impl Fleet {
    fn spawn(plan: &[ClientOptions]) -> Result<Fleet, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let (tx, events) = mpsc::channel();
        let mut fleet = Fleet {
            members: Vec::with_capacity(plan.len()),
            events,
        };
        for (i, opts) in plan.iter().enumerate() {
            let mut child = Command::new(&exe)
                .arg("idle-client")
                .args(opts.to_args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("spawn client process {i}: {e}"))?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take();
            fleet.members.push(Member { child, stdin });
            let stdout = stdout.ok_or_else(|| format!("client process {i} has no stdout pipe"))?;
            let tx = tx.clone();
            // One reader thread per child keeps waits simple (recv_timeout);
            // it ends when the child's stdout does.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((i, Event::Line(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((i, Event::Closed));
            });
        }
        Ok(fleet)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<Tally, String> {
        let deadline = Instant::now() + timeout;
        let mut tally = Tally::default();
        let mut ready = vec![false; self.members.len()];
        while ready.iter().any(|r| !r) {
            let left = deadline.saturating_duration_since(Instant::now());
            let (i, event) = match self.events.recv_timeout(left) {
                Ok(got) => got,
                Err(_) => {
                    let missing = ready.iter().filter(|r| !**r).count();
                    return Err(format!(
                        "{missing} of {} client processes not ready after {} s",
                        ready.len(),
                        timeout.as_secs()
                    ));
                }
            };
            let line = match event {
                Event::Line(line) => line,
                Event::Closed if ready.get(i) == Some(&true) => continue,
                Event::Closed => {
                    let status = self
                        .members
                        .get_mut(i)
                        .and_then(|m| m.child.try_wait().ok())
                        .map_or("status unknown".to_string(), |status| match status {
                            Some(status) => status.to_string(),
                            None => "still running".to_string(),
                        });
                    return Err(format!("client process {i} exited before ready ({status})"));
                }
            };
            // `fail <count> <reason>`: the reason may hold spaces, so at most
            // three pieces; the other lines are numbers only.
            let mut words = line.splitn(3, ' ');
            let number = |w: Option<&str>| -> Result<u64, String> {
                w.and_then(|w| w.parse().ok())
                    .ok_or_else(|| format!("client process {i} said {line:?}"))
            };
            match words.next() {
                Some("fail") => {
                    let count = number(words.next())?;
                    let reason = words.next().unwrap_or("unknown").to_string();
                    *tally.failures.entry(reason).or_default() += count;
                }
                Some("retries") => tally.retries += number(words.next())?,
                Some("ready") => {
                    let mut numbers = words.flat_map(|w| w.split(' '));
                    tally.opened += number(numbers.next())?;
                    tally.failed += number(numbers.next())?;
                    if let Some(flag) = ready.get_mut(i) {
                        *flag = true;
                    }
                }
                _ => eprintln!("client process {i}: {line}"),
            }
        }
        Ok(tally)
    }

    /// The client processes' RSS summed: the generator's own footprint.
    fn rss_total(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| rss::rss_bytes(m.child.id()).ok())
            .sum()
    }

    /// Closes every child's stdin (its signal to close its sockets and exit),
    /// then kills by pid whichever has not exited within EXIT_GRACE.
    fn shutdown(&mut self) {
        for member in &mut self.members {
            drop(member.stdin.take());
        }
        let deadline = Instant::now() + EXIT_GRACE;
        let mut running: Vec<&mut Member> = self.members.iter_mut().collect();
        while !running.is_empty() && Instant::now() < deadline {
            running.retain_mut(|m| matches!(m.child.try_wait(), Ok(None)));
            if !running.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for member in running {
            eprintln!(
                "client process {} did not exit within {} s; killing it",
                member.child.id(),
                EXIT_GRACE.as_secs()
            );
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
        self.members.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs one client process: opens its share, reports, holds, closes.
pub fn run_client(opts: &ClientOptions) -> Result<(), String> {
    let target = Target::parse(&opts.url)?;
    if opts.rooms == 0 || opts.concurrency == 0 {
        return Err("--rooms and --concurrency must be at least 1".into());
    }
    if let Some(limit) = rss::open_files_limit()? {
        if opts.connections + SPARE_FDS > limit {
            return Err(format!(
                "{} connections need {} file descriptors, the limit is {limit}: \
                 raise --processes",
                opts.connections,
                opts.connections + SPARE_FDS
            ));
        }
    }
    let attach_message: Option<Arc<[u8]>> = (opts.attach_bytes > 0).then(|| {
        let mut message = b"attach:".to_vec();
        message.resize(message.len() + opts.attach_bytes, b'a');
        message.into()
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let started = Instant::now();
    let opened = runtime.block_on(open_all(Arc::new(target), opts, attach_message));
    let open_ms = started.elapsed().as_millis();
    // The sockets were taken out of the reactor; the runtime has nothing left to do.
    drop(runtime);

    let report = |out: &mut dyn Write| -> std::io::Result<()> {
        for (reason, count) in &opened.failures {
            writeln!(out, "fail {count} {reason}")?;
        }
        writeln!(out, "retries {}", opened.retries)?;
        writeln!(
            out,
            "ready {} {} {open_ms}",
            opened.streams.len(),
            opened.failed
        )?;
        out.flush()
    };
    report(&mut std::io::stdout().lock()).map_err(|e| format!("cannot report to parent: {e}"))?;

    // Hold: nothing is read or written on the sockets. Stdin is read on a
    // thread so the wait below can have a deadline.
    let (tx, released) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        loop {
            match std::io::stdin().read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    if released.recv_timeout(opts.hold_deadline).is_err() {
        eprintln!(
            "client {}: parent did not release us within {} s; closing",
            opts.source_ip,
            opts.hold_deadline.as_secs()
        );
    }
    drop(opened.streams);
    Ok(())
}

/// The outcome of one child's opening phase.
struct Opened {
    streams: Vec<std::net::TcpStream>,
    failed: u64,
    retries: u64,
    failures: BTreeMap<String, u64>,
}

impl Opened {
    fn fail(&mut self, reason: String, count: u64) {
        self.failed += count;
        // Reasons travel as one line to the parent.
        let reason = reason.replace(['\r', '\n'], " ");
        let key =
            if self.failures.len() < MAX_FAILURE_REASONS || self.failures.contains_key(&reason) {
                reason
            } else {
                "other".to_string()
            };
        *self.failures.entry(key).or_default() += count;
    }
}

/// Opens `opts.connections` connections, at most `opts.concurrency` at once,
/// until done or `opts.open_deadline` passes.
async fn open_all(target: Arc<Target>, opts: &ClientOptions, attach: Option<Arc<[u8]>>) -> Opened {
    let total = opts.connections;
    let mut opened = Opened {
        // Capacity for all up front: a Vec<TcpStream> is 4 bytes a connection.
        streams: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
        failed: 0,
        retries: 0,
        failures: BTreeMap::new(),
    };
    let source = Arc::new(Source::new(
        opts.source_ip,
        std::process::id().wrapping_mul(7919),
    ));
    let deadline = tokio::time::Instant::now() + opts.open_deadline;
    let mut in_flight = JoinSet::new();
    let mut next = 0u64;
    loop {
        while in_flight.len() < opts.concurrency && next < total {
            let index = opts.first_index + next;
            let path = format!("/bench/{ROOM_PREFIX}{}", index % u64::from(opts.rooms));
            in_flight.spawn(open_with_retry(
                Arc::clone(&target),
                path,
                attach.clone(),
                Arc::clone(&source),
                mask_for(index),
            ));
            next += 1;
        }
        match tokio::time::timeout_at(deadline, in_flight.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok((result, retries)))) => {
                opened.retries += retries;
                match result {
                    Ok(stream) => opened.streams.push(stream),
                    Err(e) => opened.fail(e.to_string(), 1),
                }
            }
            Ok(Some(Err(join_error))) => opened.fail(format!("task failed: {join_error}"), 1),
            Err(_) => {
                let abandoned = in_flight.len() as u64 + (total - next);
                in_flight.abort_all();
                opened.fail(
                    format!("not open after {} s", opts.open_deadline.as_secs()),
                    abandoned,
                );
                break;
            }
        }
    }
    opened
}

/// One connection, retried after transient failures. Returns the retry count too.
async fn open_with_retry(
    target: Arc<Target>,
    path: String,
    attach: Option<Arc<[u8]>>,
    source: Arc<Source>,
    mask: [u8; 4],
) -> (Result<std::net::TcpStream, ClientError>, u64) {
    let mut retries = 0;
    loop {
        let open = Open {
            source: &source,
            path: &path,
            attach_message: attach.as_deref(),
            mask,
            timeout: ATTEMPT_TIMEOUT,
        };
        match client::open(&target, open).await {
            Err(e) if e.is_transient() => match BACKOFF.get(retries) {
                Some(wait) => {
                    tokio::time::sleep(*wait).await;
                    retries += 1;
                }
                None => return (Err(e), retries as u64),
            },
            result => return (result, retries as u64),
        }
    }
}

/// A masking key per connection. RFC 6455 wants unpredictable keys against
/// cache poisoning by intermediaries; on loopback with no proxy a cheap
/// well-mixed value is enough, and it keeps the run reproducible.
fn mask_for(index: u64) -> [u8; 4] {
    let mixed = index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let [a, b, c, d, ..] = mixed.to_be_bytes();
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(connections: u64, processes: u32) -> IdleOptions {
        IdleOptions {
            url: "ws://127.0.0.1:8787".into(),
            admin: "127.0.0.1:9090".into(),
            connections,
            rooms: 100,
            attach_bytes: 0,
            processes,
            hold: Duration::from_secs(10),
            edge_pid: None,
            json: None,
            concurrency: 256,
        }
    }

    #[test]
    fn connections_are_split_evenly_with_distinct_sources() {
        let plan = plan(&opts(15_002, 4)).unwrap();
        let counts: Vec<u64> = plan.iter().map(|c| c.connections).collect();
        assert_eq!(counts, [3751, 3751, 3750, 3750]);
        let firsts: Vec<u64> = plan.iter().map(|c| c.first_index).collect();
        assert_eq!(firsts, [0, 3751, 7502, 11252]);
        let sources: Vec<String> = plan.iter().map(|c| c.source_ip.to_string()).collect();
        assert_eq!(
            sources,
            ["127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"]
        );
    }

    #[test]
    fn too_many_connections_per_process_says_how_many_processes() {
        let err = plan(&opts(40_000, 2)).unwrap_err();
        assert!(err.contains("20000 per process"), "{err}");
        assert!(err.contains("raise --processes to at least 3"), "{err}");
        assert!(plan(&opts(38_000, 2)).is_ok());
    }

    #[test]
    fn impossible_splits_are_refused() {
        assert!(plan(&opts(3, 4)).is_err());
        assert!(plan(&opts(1000, 0)).is_err());
        assert!(plan(&opts(100_000, 246)).is_err());
        let mut no_rooms = opts(1000, 1);
        no_rooms.rooms = 0;
        assert!(plan(&no_rooms).is_err());
    }

    #[test]
    fn child_flags_round_trip_through_the_command_line() {
        let child = plan(&opts(1000, 2)).unwrap().remove(1);
        let args = child.to_args();
        assert_eq!(args[0], "--url");
        assert!(args.windows(2).any(|w| w == ["--source-ip", "127.0.0.11"]));
        assert!(args.windows(2).any(|w| w == ["--first-index", "500"]));
    }

    #[test]
    fn failure_reasons_are_capped_and_flattened() {
        let mut opened = Opened {
            streams: Vec::new(),
            failed: 0,
            retries: 0,
            failures: BTreeMap::new(),
        };
        for i in 0..MAX_FAILURE_REASONS + 5 {
            opened.fail(format!("reason\n{i}"), 2);
        }
        assert_eq!(opened.failed, 2 * (MAX_FAILURE_REASONS as u64 + 5));
        assert_eq!(opened.failures.len(), MAX_FAILURE_REASONS + 1);
        assert_eq!(opened.failures.get("other"), Some(&10));
        assert!(opened.failures.keys().all(|k| !k.contains('\n')));
    }

    #[test]
    fn masks_differ_between_neighbours() {
        assert_ne!(mask_for(0), mask_for(1));
        assert_ne!(mask_for(1), mask_for(2));
    }
}
