//! `loadtest attack`: whether a node under a cheap connection attack still
//! serves everyone else. One kind of attack runs from 127.0.0.2 (`--kind`,
//! `--connections`), and while it holds its connections a fresh client from
//! 127.0.0.3 tries, every 100 ms, to upgrade on `/echo/<name>` and get its
//! first echo back; each try's time from connect to that echo, or why it
//! failed, is the measurement. Beside it: the node's memory and open fds,
//! every process of it (supervisor, edges, workers from `/admin/node`),
//! before, at the peak, at the end of the attack and after it closed.
//!
//! The attacks (the first three of the "Under attack" list):
//! - `stalled-heads`: a partial request head, then one byte every few seconds;
//! - `stalled-bodies`: a whole `POST /counter/<n>` head announcing a 9-byte
//!   body that never comes;
//! - `keepalive-idle`: one `GET /counter/<n>` with keep-alive, the answer
//!   read, then silence; a connection the server closes is opened again
//!   (after a pause) for as long as the attack lasts.
//!
//! Everything runs in this one process, on two threads with a current-thread
//! runtime each (the attack, the fresh client) and the sampling on the main
//! thread: the attack is one client process, as the issue asks, and its
//! connections fit in this process's 20000 fds. Not measured here: the
//! other attacks of the issue, and many attacking addresses.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use crate::admin;
use crate::client::{
    self, decode_frame, encode_frame, ClientError, HandshakeError, Open, Source, Target,
    OPCODE_CLOSE, OPCODE_TEXT,
};
use crate::latency::Recorder;
use crate::results::{mib, Phase, Report, TargetRun};
use crate::rss;
use crate::scenario;
use crate::server::TargetKind;

/// The attacker's and the fresh client's source addresses.
const ATTACK_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const FRESH_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// One process: its 20000 fds, less room for the fresh client, admin calls
/// and the runtime.
pub const MAX_CONNECTIONS: u64 = 19_000;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Tries are 100 ms apart; this many take ten minutes.
pub const MAX_TRIES: u32 = 6000;
pub const TRY_EVERY: Duration = Duration::from_millis(100);
/// A try that has not echoed by then failed.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// An attack connect that has not completed by then failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Between two bytes of a stalled head.
const DRIP_EVERY: Duration = Duration::from_secs(3);
/// Before a keep-alive connection the server closed is opened again, so a
/// node that closes at once (429) is not met by a connect storm.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// How long the attack may take to open its connections before the fresh
/// client starts anyway.
const RAMP_LIMIT: Duration = Duration::from_secs(60);
/// How long the connections get to close at the end before being dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The goal for the fresh client.
const GOAL_P99_MS: f64 = 100.0;
/// Answers from the node are a status line and a few headers.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// Which attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackKind {
    StalledHeads,
    StalledBodies,
    KeepaliveIdle,
}

impl AttackKind {
    pub fn parse(text: &str) -> Result<AttackKind, String> {
        match text {
            "stalled-heads" => Ok(AttackKind::StalledHeads),
            "stalled-bodies" => Ok(AttackKind::StalledBodies),
            "keepalive-idle" => Ok(AttackKind::KeepaliveIdle),
            _ => Err(format!(
                "kind {text:?} is not stalled-heads, stalled-bodies or keepalive-idle"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AttackKind::StalledHeads => "stalled-heads",
            AttackKind::StalledBodies => "stalled-bodies",
            AttackKind::KeepaliveIdle => "keepalive-idle",
        }
    }

    /// What connection `n` sends first.
    pub fn opening(self, host: &str, n: u64) -> Vec<u8> {
        match self {
            // No blank line: the head never ends. The drip goes on the
            // header begun here.
            AttackKind::StalledHeads => {
                format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\nX-Stall: ").into_bytes()
            }
            AttackKind::StalledBodies => {
                format!("POST /counter/{n} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 9\r\n\r\n")
                    .into_bytes()
            }
            AttackKind::KeepaliveIdle => format!(
                "GET /counter/{n} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
            )
            .into_bytes(),
        }
    }
}

/// `loadtest attack` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackOptions {
    pub url: String,
    pub admin: String,
    pub kind: AttackKind,
    pub connections: u64,
    pub duration: Duration,
    pub tries: u32,
    /// Attack connects in flight at once.
    pub concurrency: usize,
    /// The fresh client's object.
    pub name: String,
    pub json: Option<PathBuf>,
}

impl AttackOptions {
    pub fn check(&self) -> Result<(), String> {
        if self.connections > MAX_CONNECTIONS {
            return Err(format!(
                "--connections {} is over {MAX_CONNECTIONS}: the attack is one process with 20000 fds",
                self.connections
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(format!(
                "--duration must be more than 0 and at most {} s",
                MAX_DURATION.as_secs()
            ));
        }
        if self.tries > MAX_TRIES {
            return Err(format!("--tries is at most {MAX_TRIES}"));
        }
        Ok(())
    }
}

/// The attack's counts, shared between its tasks and the sampler.
#[derive(Debug, Default)]
struct AttackCounts {
    connects: AtomicU64,
    /// Connects of the ramp (each connection's first).
    first_connects: AtomicU64,
    connected: AtomicU64,
    /// Connections open now, and the most at once.
    held: AtomicI64,
    held_peak: AtomicI64,
    /// Every connect has been tried once (the ramp is over).
    ramped: AtomicBool,
    /// The attack is closing its connections (samples from now on are not
    /// "during" it).
    closing: AtomicBool,
    /// Why connects failed, and how the server ended connections.
    outcomes: Mutex<BTreeMap<String, u64>>,
    bytes_dripped: AtomicU64,
}

impl AttackCounts {
    fn count(&self, what: impl Into<String>) {
        // A poisoned lock only means a task panicked; the counts stand.
        let mut outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *outcomes.entry(what.into()).or_default() += 1;
    }

    fn outcomes(&self) -> BTreeMap<String, u64> {
        self.outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn opened(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
        let now = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.held_peak.fetch_max(now, Ordering::Relaxed);
    }

    fn closed(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The node's processes, their memory and fds at one moment.
#[derive(Debug, Clone, Default)]
struct NodeSample {
    rss_bytes: u64,
    fds: u64,
    /// `role pid: fds`, for the notes.
    per_process: Vec<String>,
}

/// Every process of the node now (re-read: workers come and go).
fn node_pids(admin: SocketAddr) -> Result<Vec<(&'static str, u32)>, String> {
    let node = admin::node(admin)?;
    let mut pids: Vec<(&'static str, u32)> = Vec::new();
    pids.extend(node.supervisor_pid.map(|p| ("supervisor", p)));
    pids.extend(node.edge_pids().into_iter().map(|p| ("edge", p)));
    pids.extend(node.worker_pids().into_iter().map(|p| ("worker", p)));
    Ok(pids)
}

/// Entries of `/proc/<pid>/fd`.
pub fn open_fds(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&path).map_err(|e| format!("read {path}: {e}"))?;
    Ok(entries.count() as u64)
}

fn sample_node(admin: SocketAddr) -> Result<NodeSample, String> {
    let mut sample = NodeSample::default();
    for (role, pid) in node_pids(admin)? {
        // A worker may exit between the listing and the read: skip it.
        let (Ok(rss), Ok(fds)) = (rss::rss_bytes(pid), open_fds(pid)) else {
            continue;
        };
        sample.rss_bytes += rss;
        sample.fds += fds;
        sample
            .per_process
            .push(format!("{role} {pid}: {fds} fds, {:.1} MiB", mib(rss)));
    }
    Ok(sample)
}

/// What the fresh client saw.
#[derive(Debug, Default)]
struct FreshResults {
    /// Connect → first echo read.
    latency: Recorder,
    /// Connect → 101 read: the front door's part of it.
    upgrade: Recorder,
    failures: BTreeMap<String, u64>,
    tried: u32,
    seconds: f64,
}

pub fn run(opts: &AttackOptions) -> Result<Report, String> {
    opts.check()?;
    let target = Target::parse(&opts.url)?;
    let admin = admin::parse_addr(&opts.admin)?;
    if let Some(limit) = rss::open_files_limit()? {
        if opts.connections + 1000 > limit {
            return Err(format!(
                "{} connections need more than this process's {limit} fds (ulimit -n)",
                opts.connections
            ));
        }
    }
    let before = sample_node(admin)?;
    eprintln!(
        "attack: node {:.1} MiB, {} fds before; {} x {} from {ATTACK_IP}",
        mib(before.rss_bytes),
        before.fds,
        opts.connections,
        opts.kind.name()
    );

    let counts = Arc::new(AttackCounts::default());
    let tries_done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    // The latest the attack may go on: its duration, or the tries (they
    // start when the ramp is over) and the last one's timeout.
    let last_stop = started
        + opts
            .duration
            .max(RAMP_LIMIT + TRY_EVERY * opts.tries + TRY_TIMEOUT);
    let hard_end = last_stop + CLOSE_GRACE + SAMPLE_EVERY;

    let attack = {
        let (counts, tries_done, target) = (counts.clone(), tries_done.clone(), target.clone());
        let (kind, connections, concurrency, duration) =
            (opts.kind, opts.connections, opts.concurrency, opts.duration);
        std::thread::Builder::new()
            .name("attack".into())
            .spawn(move || {
                run_attack(
                    &target,
                    kind,
                    connections,
                    concurrency,
                    (started + duration, last_stop),
                    &counts,
                    &tries_done,
                )
            })
            .map_err(|e| format!("attack thread: {e}"))?
    };
    let fresh = {
        let (counts, tries_done, target) = (counts.clone(), tries_done.clone(), target.clone());
        let (tries, path) = (opts.tries, format!("/echo/{}", opts.name));
        std::thread::Builder::new()
            .name("fresh".into())
            .spawn(move || {
                let result = run_fresh(&target, &path, tries, started, &counts);
                tries_done.store(true, Ordering::Relaxed);
                result
            })
            .map_err(|e| format!("fresh client thread: {e}"))?
    };

    // Sample while the attack runs; the last sample before it closes is
    // "end of attack".
    let mut peak = before.clone();
    let mut end_of_attack: Option<NodeSample> = None;
    let mut sample_errors = 0u64;
    while !attack.is_finished() && Instant::now() < hard_end {
        std::thread::sleep(SAMPLE_EVERY);
        match sample_node(admin) {
            Ok(s) => {
                if s.rss_bytes > peak.rss_bytes {
                    peak.rss_bytes = s.rss_bytes;
                    peak.per_process = s.per_process.clone();
                }
                peak.fds = peak.fds.max(s.fds);
                if !counts.closing.load(Ordering::Relaxed) {
                    end_of_attack = Some(s);
                }
            }
            Err(_) => sample_errors += 1,
        }
        eprintln!(
            "attack: {:.0} s, {} held, {} connects, node {:.1} MiB / {} fds (peak)",
            started.elapsed().as_secs_f64(),
            counts.held.load(Ordering::Relaxed),
            counts.connects.load(Ordering::Relaxed),
            mib(peak.rss_bytes),
            peak.fds
        );
    }
    let attack_seconds = attack
        .join()
        .map_err(|_| "the attack thread panicked".to_string())??;
    let fresh = fresh
        .join()
        .map_err(|_| "the fresh client thread panicked".to_string())??;
    // The node gets a moment to let go of what the attack cost.
    std::thread::sleep(SAMPLE_EVERY);
    // A node that died under the attack still gets its report.
    let after = sample_node(admin).unwrap_or_else(|e| {
        eprintln!("attack: node after the attack: {e}");
        sample_errors += 1;
        NodeSample::default()
    });

    Ok(report(
        opts,
        &counts,
        attack_seconds,
        &fresh,
        [
            &before,
            &peak,
            end_of_attack.as_ref().unwrap_or(&peak),
            &after,
        ],
        sample_errors,
    ))
}

fn report(
    opts: &AttackOptions,
    counts: &AttackCounts,
    attack_seconds: f64,
    fresh: &FreshResults,
    [before, peak, end, after]: [&NodeSample; 4],
    sample_errors: u64,
) -> Report {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut attack_counters = BTreeMap::new();
    attack_counters.insert("connects".into(), load(&counts.connects));
    attack_counters.insert("connected".into(), load(&counts.connected));
    attack_counters.insert(
        "held_peak".into(),
        counts.held_peak.load(Ordering::Relaxed) as f64,
    );
    if opts.kind == AttackKind::StalledHeads {
        attack_counters.insert("bytes_dripped".into(), load(&counts.bytes_dripped));
    }
    let node = [
        ("before", before),
        ("peak", peak),
        ("end_of_attack", end),
        ("after", after),
    ];
    for (when, s) in node {
        attack_counters.insert(format!("node_rss_mib_{when}"), mib(s.rss_bytes));
        attack_counters.insert(format!("node_fds_{when}"), s.fds as f64);
    }
    let attack_phase = Phase {
        name: "attack".into(),
        description: format!(
            "{} connections from {ATTACK_IP}, {}",
            opts.connections,
            opts.kind.name()
        ),
        unit: "connects".into(),
        seconds: attack_seconds,
        operations: counts.connects.load(Ordering::Relaxed),
        // Reconnects (keepalive-idle) make this far more than the ramp.
        per_second: load(&counts.connects) / attack_seconds.max(f64::EPSILON),
        counters: attack_counters,
        failures: counts.outcomes(),
        ..Phase::default()
    };
    let failed: u64 = fresh.failures.values().sum();
    let mut fresh_counters = BTreeMap::new();
    fresh_counters.insert("tried".into(), f64::from(fresh.tried));
    fresh_counters.insert("succeeded".into(), fresh.latency.count() as f64);
    let mut fresh_phase = Phase {
        name: "fresh".into(),
        description: format!(
            "a fresh client from {FRESH_IP} every {} ms during the attack: upgrade on /echo/{} and one echo",
            TRY_EVERY.as_millis(),
            opts.name
        ),
        unit: "tries".into(),
        seconds: fresh.seconds,
        operations: fresh.latency.count(),
        errors: failed,
        failures: fresh.failures.clone(),
        latency_label: "connect → first echo read".into(),
        latency: fresh.latency.latency(),
        counters: fresh_counters,
        ..Phase::default()
    };
    if let Some(l) = fresh.upgrade.latency() {
        fresh_phase
            .more_latencies
            .insert("connect → 101 read".into(), l);
    }
    let mut notes = vec![
        format!("node at its peak: {}", peak.per_process.join("; ")),
        format!("node after: {}", after.per_process.join("; ")),
    ];
    if sample_errors > 0 {
        notes.push(format!("{sample_errors} node samples failed (admin API)"));
    }
    notes.push(goal_text(fresh));
    Report {
        scenario: "attack".into(),
        title: format!(
            "a fresh client while {} x {} attack the node",
            opts.connections,
            opts.kind.name()
        ),
        unix_time: scenario::unix_time(),
        settings: vec![
            ("kind".into(), opts.kind.name().into()),
            ("connections".into(), opts.connections.to_string()),
            (
                "duration".into(),
                format!("{} s", opts.duration.as_secs_f64()),
            ),
            ("tries".into(), opts.tries.to_string()),
            ("concurrency".into(), opts.concurrency.to_string()),
        ],
        host: crate::results::Host::here(None, None),
        targets: vec![TargetRun {
            target: TargetKind::Torpor,
            url: opts.url.clone(),
            server: "torpor: supervisor, edges and workers (/admin/node)".into(),
            phases: vec![attack_phase, fresh_phase],
            notes,
            ..TargetRun::default()
        }],
        ..Report::default()
    }
    .finish()
}

/// Whether the goal was met, in words.
fn goal_text(fresh: &FreshResults) -> String {
    let failed: u64 = fresh.failures.values().sum();
    let p99 = fresh.latency.summary().map(|s| s.p99_ms);
    match p99 {
        Some(p99) if failed == 0 && p99 <= GOAL_P99_MS => {
            format!("goal met: every try echoed, p99 {p99:.1} ms <= {GOAL_P99_MS} ms")
        }
        _ => format!(
            "goal not met: {failed} of {} tries failed, p99 {} (goal: none failed, p99 <= {GOAL_P99_MS} ms)",
            fresh.tried,
            p99.map_or("-".into(), |p| format!("{p:.1} ms"))
        ),
    }
}

/// Whether the fresh client met the goal (for the exit status).
pub fn goal_met(report: &Report) -> bool {
    report
        .targets
        .iter()
        .flat_map(|t| &t.notes)
        .any(|n| n.starts_with("goal met"))
}

/// The attack, on its own runtime; returns how long it ran.
fn run_attack(
    target: &Target,
    kind: AttackKind,
    connections: u64,
    concurrency: usize,
    (until, last_stop): (Instant, Instant),
    counts: &Arc<AttackCounts>,
    tries_done: &Arc<AtomicBool>,
) -> Result<f64, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Rc::new(Ctx {
        target: target.clone(),
        source: Source::new(ATTACK_IP, std::process::id()),
        kind,
        gate: Semaphore::new(concurrency),
        counts: counts.clone(),
        stop: stop_rx,
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let mut tasks = Vec::new();
        for n in 0..connections {
            tasks.push(tokio::task::spawn_local(attack_one(ctx.clone(), n)));
        }
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !counts.ramped.load(Ordering::Relaxed)
                && counts.first_connects.load(Ordering::Relaxed) >= connections
            {
                counts.ramped.store(true, Ordering::Relaxed);
                eprintln!(
                    "attack: ramp over after {:.1} s, {} held",
                    started.elapsed().as_secs_f64(),
                    counts.held.load(Ordering::Relaxed)
                );
            }
            let now = Instant::now();
            if (now >= until && tries_done.load(Ordering::Relaxed)) || now >= last_stop {
                break;
            }
        }
        counts.closing.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        let closing = futures_util::future::join_all(tasks);
        let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
    });
    Ok(started.elapsed().as_secs_f64())
}

struct Ctx {
    target: Target,
    source: Source,
    kind: AttackKind,
    /// Connects in flight at once.
    gate: Semaphore,
    counts: Arc<AttackCounts>,
    stop: watch::Receiver<bool>,
}

/// One attacking connection, for as long as the attack lasts.
async fn attack_one(ctx: Rc<Ctx>, n: u64) {
    let mut stop = ctx.stop.clone();
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let stream = {
            let Ok(_permit) = ctx.gate.acquire().await else {
                return;
            };
            let connect = tokio::time::timeout(CONNECT_TIMEOUT, connect(&ctx));
            let result = tokio::select! {
                r = connect => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            ctx.counts.connects.fetch_add(1, Ordering::Relaxed);
            if first {
                first = false;
                ctx.counts.first_connects.fetch_add(1, Ordering::Relaxed);
            } else {
                ctx.counts.count("reconnects");
            }
            match result {
                Ok(Ok(stream)) => {
                    ctx.counts.opened();
                    Some(stream)
                }
                Ok(Err(e)) => {
                    ctx.counts
                        .count(format!("connect failed: {}", failure_kind(&e)));
                    None
                }
                Err(_) => {
                    ctx.counts.count("connect failed: timeout");
                    None
                }
            }
        };
        if let Some(stream) = stream {
            let ended = hold(&ctx, stream, n, &mut stop).await;
            ctx.counts.closed();
            if let Some(how) = ended {
                ctx.counts.count(how);
            }
        }
        // Only the keep-alive attack comes back; the stalled ones are one
        // connection each, as the issue describes them.
        if ctx.kind != AttackKind::KeepaliveIdle {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn connect(ctx: &Ctx) -> Result<TcpStream, ClientError> {
    let socket = client::bind(&ctx.source)?;
    let stream = socket
        .connect(ctx.target.addr)
        .await
        .map_err(ClientError::Connect)?;
    // The attack's end resets rather than leaving 127.0.0.2's ports in
    // TIME_WAIT for the next run.
    stream.set_zero_linger().map_err(|err| ClientError::Io {
        stage: "linger",
        err,
    })?;
    Ok(stream)
}

/// Sends the attack's bytes and holds the connection until the server ends
/// it (returning how) or the attack stops (`None`).
async fn hold(
    ctx: &Ctx,
    mut stream: TcpStream,
    n: u64,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    if let Err(e) = stream
        .write_all(&ctx.kind.opening(&ctx.target.host, n))
        .await
    {
        return Some(format!("write failed: {}", e.kind()));
    }
    let mut buf = Vec::with_capacity(256);
    let mut status: Option<u16> = None;
    let mut drip = tokio::time::interval_at(tokio::time::Instant::now() + DRIP_EVERY, DRIP_EVERY);
    loop {
        let dripping = ctx.kind == AttackKind::StalledHeads;
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) => {
                    return Some(match status {
                        Some(code) => format!("answered {code}, then closed"),
                        None => "closed by server without an answer".into(),
                    });
                }
                Ok(_) => {
                    if status.is_none() {
                        status = parse_status(&buf);
                    }
                    // Only the head matters; keep the buffer small.
                    if buf.len() > MAX_ANSWER_BYTES {
                        buf.clear();
                    }
                }
                Err(e) => {
                    return Some(match status {
                        Some(code) => format!("answered {code}, then {}", e.kind()),
                        None => format!("{} without an answer", e.kind()),
                    });
                }
            },
            _ = drip.tick(), if dripping => {
                if stream.write_all(b"a").await.is_err() {
                    return Some("drip write failed".into());
                }
                ctx.counts.bytes_dripped.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.wait_for(|s| *s) => {
                // Still held at the end: the attack got what it wanted.
                ctx.counts.count(match status {
                    Some(code) => format!("held to the end (answered {code})"),
                    None => "held to the end".into(),
                });
                return None;
            }
        }
    }
}

/// The status of an HTTP/1.1 status line at the front of `buf`, once whole.
pub fn parse_status(buf: &[u8]) -> Option<u16> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let mut words = line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

/// A failure as a short, low-cardinality kind for the report.
pub fn failure_kind(e: &ClientError) -> String {
    match e {
        ClientError::Connect(err) | ClientError::Io { err, .. } => match err.kind() {
            std::io::ErrorKind::ConnectionRefused => "refused".into(),
            std::io::ErrorKind::ConnectionReset => "reset".into(),
            other => format!("{other}"),
        },
        ClientError::Handshake(HandshakeError::Status { code }) => code.to_string(),
        ClientError::Handshake(_) => "bad handshake".into(),
        ClientError::Timeout(_) => "timeout".into(),
        ClientError::Eof(stage) => format!("closed during {stage}"),
        ClientError::ClosedByServer { code } => {
            format!("close {}", code.map_or("-".into(), |c| c.to_string()))
        }
        ClientError::Bind { .. } | ClientError::NoFreePort { .. } => "bind".into(),
        ClientError::Frame(_) | ClientError::UnexpectedReply { .. } => "bad reply".into(),
    }
}

/// The fresh client: once the attack's ramp is over (or after
/// [`RAMP_LIMIT`]), one try every [`TRY_EVERY`], each on its own task so a
/// slow one does not delay the next.
fn run_fresh(
    target: &Target,
    path: &str,
    tries: u32,
    started: Instant,
    counts: &AttackCounts,
) -> Result<FreshResults, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    while !counts.ramped.load(Ordering::Relaxed) && started.elapsed() < RAMP_LIMIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    let source = Rc::new(Source::new(FRESH_IP, std::process::id()));
    let local = tokio::task::LocalSet::new();
    let begun = Instant::now();
    let outcomes = local.block_on(&runtime, async {
        let first = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for i in 0..tries {
            tokio::time::sleep_until(first + TRY_EVERY * i).await;
            let (target, source, path) = (target.clone(), source.clone(), path.to_owned());
            tasks.push(tokio::task::spawn_local(async move {
                one_try(&target, &source, &path, i).await
            }));
        }
        futures_util::future::join_all(tasks).await
    });
    let mut results = FreshResults {
        tried: tries,
        seconds: begun.elapsed().as_secs_f64(),
        ..FreshResults::default()
    };
    for outcome in outcomes {
        match outcome {
            Ok(Ok((upgraded, echoed))) => {
                results.upgrade.record(upgraded);
                results.latency.record(echoed);
            }
            Ok(Err(kind)) => *results.failures.entry(kind).or_default() += 1,
            Err(_) => *results.failures.entry("task panicked".into()).or_default() += 1,
        }
    }
    Ok(results)
}

/// Connect, upgrade, send `try-<i>` and read it back, within [`TRY_TIMEOUT`].
/// Returns the times from connect to the 101 and to the echo.
async fn one_try(
    target: &Target,
    source: &Source,
    path: &str,
    i: u32,
) -> Result<(Duration, Duration), String> {
    const MASK: [u8; 4] = [0x3c, 0x91, 0x0e, 0x77];
    let begun = Instant::now();
    let attempt = async {
        let mut stream = client::open_stream(
            target,
            Open {
                source,
                path,
                attach_message: None,
                mask: MASK,
                timeout: TRY_TIMEOUT,
            },
        )
        .await
        .map_err(|e| failure_kind(&e))?;
        let upgraded = begun.elapsed();
        let message = format!("try-{i}");
        stream
            .write_all(&encode_frame(OPCODE_TEXT, message.as_bytes(), MASK))
            .await
            .map_err(|e| format!("write: {}", e.kind()))?;
        let mut buf = Vec::with_capacity(64);
        loop {
            if let Some((frame, _)) =
                decode_frame(&buf, client::MAX_REPLY_PAYLOAD_BYTES).map_err(|_| "bad frame")?
            {
                if frame.opcode == OPCODE_CLOSE {
                    return Err(format!(
                        "close {}",
                        client::close_code(frame.payload).map_or("-".into(), |c| c.to_string())
                    ));
                }
                if frame.opcode == OPCODE_TEXT && frame.payload == message.as_bytes() {
                    let took = begun.elapsed();
                    let _ = stream.set_zero_linger();
                    return Ok((upgraded, took));
                }
                return Err("wrong echo".into());
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("closed before the echo".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {}", e.kind())),
            }
        }
    };
    match tokio::time::timeout(TRY_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err("timeout".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_name_themselves() {
        for kind in [
            AttackKind::StalledHeads,
            AttackKind::StalledBodies,
            AttackKind::KeepaliveIdle,
        ] {
            assert_eq!(AttackKind::parse(kind.name()), Ok(kind));
        }
        assert!(AttackKind::parse("slowloris").is_err());
    }

    #[test]
    fn stalled_head_never_ends_and_stalled_body_announces_nine_bytes() {
        let head = AttackKind::StalledHeads.opening("x", 3);
        assert!(head.starts_with(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n"));
        assert!(!head.windows(4).any(|w| w == b"\r\n\r\n"));
        let body = String::from_utf8(AttackKind::StalledBodies.opening("x", 7)).unwrap();
        assert!(body.starts_with("POST /counter/7 HTTP/1.1\r\n"));
        assert!(body.contains("Content-Length: 9\r\n"));
        assert!(body.ends_with("\r\n\r\n"));
        let idle = String::from_utf8(AttackKind::KeepaliveIdle.opening("x", 2)).unwrap();
        assert!(idle.starts_with("GET /counter/2 HTTP/1.1\r\n"));
        assert!(idle.ends_with("\r\n\r\n"));
    }

    #[test]
    fn status_is_read_once_the_line_is_whole() {
        assert_eq!(
            parse_status(b"HTTP/1.1 429 Too Many Requests\r\n"),
            Some(429)
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n"),
            Some(200)
        );
        assert_eq!(parse_status(b"HTTP/1.1 42"), None);
        assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
    }

    #[test]
    fn refused_and_429_are_told_apart() {
        let refused = ClientError::Connect(std::io::ErrorKind::ConnectionRefused.into());
        assert_eq!(failure_kind(&refused), "refused");
        let busy = ClientError::Handshake(HandshakeError::Status { code: 429 });
        assert_eq!(failure_kind(&busy), "429");
        assert_eq!(
            failure_kind(&ClientError::Timeout(Duration::from_secs(5))),
            "timeout"
        );
    }

    #[test]
    fn options_are_bounded() {
        let opts = AttackOptions {
            url: "ws://127.0.0.1:8787".into(),
            admin: "127.0.0.1:9090".into(),
            kind: AttackKind::StalledHeads,
            connections: 10_000,
            duration: Duration::from_secs(30),
            tries: 100,
            concurrency: 256,
            name: "attack-probe".into(),
            json: None,
        };
        assert!(opts.check().is_ok());
        let too_many = AttackOptions {
            connections: 20_000,
            ..opts.clone()
        };
        assert!(too_many.check().unwrap_err().contains("20000 fds"));
        let too_long = AttackOptions {
            duration: Duration::from_secs(3600),
            ..opts.clone()
        };
        assert!(too_long.check().is_err());
        let endless = AttackOptions {
            tries: MAX_TRIES + 1,
            ..opts
        };
        assert!(endless.check().is_err());
    }

    #[test]
    fn goal_needs_every_try_and_a_fast_p99() {
        let mut fresh = FreshResults {
            tried: 2,
            ..FreshResults::default()
        };
        fresh.latency.record(Duration::from_millis(3));
        fresh.latency.record(Duration::from_millis(4));
        assert!(goal_text(&fresh).starts_with("goal met"));
        fresh.failures.insert("429".into(), 1);
        assert!(goal_text(&fresh).starts_with("goal not met"));
    }
}
