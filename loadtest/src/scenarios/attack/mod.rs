//! `loadtest attack`: whether a node under a cheap attack still serves
//! everyone else. One kind of attack runs from 127.0.0.2 (`--kind`), and
//! while it runs a fresh client from 127.0.0.3 tries, every 100 ms, to
//! upgrade on `/echo/<name>` and get its first echo back; each try's time
//! from connect to that echo, or why it failed, is the measurement. Beside
//! it: the node's memory and open fds, its whole process tree summed,
//! before, at the peak, at the end of the attack and after it closed, and
//! with `--data-dir` the files the node keeps on disk.
//!
//! The attacks (the "Under attack" list):
//! - `stalled-heads`: a partial request head, then one byte every few seconds;
//! - `stalled-bodies`: a whole `POST /counter/<n>` head announcing a 9-byte
//!   body that never comes;
//! - `keepalive-idle`: one `GET /counter/<n>` with keep-alive, the answer
//!   read, then silence; a connection the server closes is opened again
//!   (after a pause) for as long as the attack lasts;
//! - `ping-flood`: upgraded sockets (`/echo/<run>-flood-<n>`) with a small
//!   SO_RCVBUF writing empty pings without pause and never reading;
//! - `fast-sender`: upgraded sockets (`/echo/<run>-fast-<n>`) writing large
//!   binary frames back to back, the echoes read as they come (or never);
//! - `object-names`: `--count` GETs of `/presence/<run>-<n>`, each a new
//!   object, over a few keep-alive connections;
//! - `counters`: `--count` POSTs to `/counter/<run>-<n>`, each a new
//!   object that stores (a database file in data_dir);
//! - `matches`: GameRelay matches (`/games/<run>-m<m>?tick_ms=10`) whose
//!   players keep them active, every player getting a tick every 10 ms.
//!
//! The kinds with a count end when it is done (or at `--duration`); the
//! others last `--duration`, and at least until the fresh client's tries
//! are over.
//!
//! Everything runs in this one process, on two threads with a current-thread
//! runtime each (the attack, the fresh client) and the sampling on the main
//! thread: the attack is one client process, as the issue asks, and its
//! connections fit in this process's 20000 fds. Not measured here: many
//! attacking addresses.

mod held;
mod matches;
mod node;
mod requests;
mod sockets;
pub mod table;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{watch, Semaphore};

use crate::fleet::run::unix_time;
use crate::measure::latency::Recorder;
use crate::measure::rss;
use crate::report::model::{Phase, Report, TargetKind, TargetRun};
use crate::report::text::mib;
use crate::wire::admin;
use crate::wire::client::{
    self, decode_frame, encode_frame, ClientError, HandshakeError, Open, Source, Target,
    OPCODE_CLOSE, OPCODE_TEXT,
};
use node::{DiskUsage, NodeSample};

/// The attacker's and the fresh client's source addresses.
const ATTACK_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const FRESH_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// One process: its 20000 fds, less room for the fresh client, admin calls
/// and the runtime.
pub const MAX_CONNECTIONS: u64 = 19_000;
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// A kind with a count may need longer: a node on one core made about 160
/// storing counters a second, so the 100,000 take over ten minutes.
pub const MAX_COUNTED_DURATION: Duration = Duration::from_secs(3600);
/// Tries are 100 ms apart; this many take ten minutes.
pub const MAX_TRIES: u32 = 6000;
pub const TRY_EVERY: Duration = Duration::from_millis(100);
/// A try that has not echoed by then failed.
const TRY_TIMEOUT: Duration = Duration::from_secs(5);
/// An attack connect that has not completed by then failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Before a connection the server closed is opened again, so a node that
/// closes at once (429) is not met by a connect storm.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// How long the attack may take to open its connections before the fresh
/// client starts anyway.
const RAMP_LIMIT: Duration = Duration::from_secs(60);
/// How long the connections get to close at the end before being dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The tick intervals GameRelay accepts.
pub const TICK_MS: std::ops::RangeInclusive<u64> = 10..=10_000;
/// Ten times the million names.
pub const MAX_COUNT: u64 = 10_000_000;
/// The largest limits.max_message_bytes a node may be configured with.
pub const MAX_FRAME_BYTES: usize = 32 << 20;
/// The goal for the fresh client.
const GOAL_P99_MS: f64 = 100.0;

/// Which attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttackKind {
    StalledHeads,
    StalledBodies,
    KeepaliveIdle,
    PingFlood,
    FastSender,
    ObjectNames,
    Counters,
    Matches,
}

impl AttackKind {
    pub const ALL: [AttackKind; 8] = [
        AttackKind::StalledHeads,
        AttackKind::StalledBodies,
        AttackKind::KeepaliveIdle,
        AttackKind::PingFlood,
        AttackKind::FastSender,
        AttackKind::ObjectNames,
        AttackKind::Counters,
        AttackKind::Matches,
    ];

    pub fn parse(text: &str) -> Result<AttackKind, String> {
        AttackKind::ALL
            .into_iter()
            .find(|k| k.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = AttackKind::ALL.iter().map(|k| k.name()).collect();
                format!("kind {text:?} is not one of {}", names.join(", "))
            })
    }

    pub fn name(self) -> &'static str {
        match self {
            AttackKind::StalledHeads => "stalled-heads",
            AttackKind::StalledBodies => "stalled-bodies",
            AttackKind::KeepaliveIdle => "keepalive-idle",
            AttackKind::PingFlood => "ping-flood",
            AttackKind::FastSender => "fast-sender",
            AttackKind::ObjectNames => "object-names",
            AttackKind::Counters => "counters",
            AttackKind::Matches => "matches",
        }
    }

    /// `--count` when not given (the numbers); `None` for the kinds
    /// without a count.
    pub fn default_count(self) -> Option<u64> {
        match self {
            AttackKind::ObjectNames => Some(1_000_000),
            AttackKind::Counters => Some(100_000),
            _ => None,
        }
    }

    /// Whether the attack is a count of operations, over when they are done.
    fn is_counted(self) -> bool {
        self.default_count().is_some()
    }

    /// `--connections` when not given: the numbers.
    pub fn default_connections(self) -> u64 {
        match self {
            AttackKind::StalledHeads | AttackKind::StalledBodies | AttackKind::KeepaliveIdle => {
                10_000
            }
            AttackKind::PingFlood => 20,
            AttackKind::FastSender => 1,
            // Well under the front door's 256 per address.
            AttackKind::ObjectNames | AttackKind::Counters => 32,
            // 50 matches of 2 players.
            AttackKind::Matches => 100,
        }
    }

    /// Whether a connection the node ended is opened again. The stalled
    /// ones are one connection each, as the issue describes them.
    fn reconnects(self) -> bool {
        !matches!(self, AttackKind::StalledHeads | AttackKind::StalledBodies)
    }

    /// What the attack phase counts as its operations.
    fn unit(self) -> &'static str {
        match self {
            AttackKind::StalledHeads | AttackKind::StalledBodies | AttackKind::KeepaliveIdle => {
                "connects"
            }
            AttackKind::PingFlood => "pings",
            AttackKind::FastSender => "frames",
            AttackKind::ObjectNames | AttackKind::Counters => "requests",
            AttackKind::Matches => "ticks",
        }
    }
}

/// `loadtest attack` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackOptions {
    pub url: String,
    pub admin: String,
    pub kind: AttackKind,
    /// The attack's connections (its tasks), each reopened if its kind does.
    pub connections: u64,
    pub duration: Duration,
    pub tries: u32,
    /// Attack connects in flight at once.
    pub concurrency: usize,
    /// The fresh client's object.
    pub name: String,
    /// The node's data_dir, to count its files before and after.
    pub data_dir: Option<PathBuf>,
    /// ping-flood: each socket's SO_RCVBUF.
    pub rcvbuf_bytes: u32,
    /// fast-sender: each data frame's payload.
    pub frame_bytes: usize,
    /// fast-sender: whether the echoes are read.
    pub read_replies: bool,
    /// object-names, counters: requests in all (0 for the other kinds).
    pub count: u64,
    /// matches: players per match (`connections` is matches x players).
    pub players: u32,
    /// matches: the tick interval each match is asked for.
    pub tick_ms: u64,
    pub json: Option<PathBuf>,
}

impl AttackOptions {
    /// matches: how many (the last one short if players do not divide).
    pub fn matches(&self) -> u64 {
        self.connections.div_ceil(u64::from(self.players.max(1)))
    }

    pub fn check(&self) -> Result<(), String> {
        if self.connections > MAX_CONNECTIONS {
            return Err(format!(
                "--connections {} is over {MAX_CONNECTIONS}: the attack is one process with 20000 fds",
                self.connections
            ));
        }
        let longest = if self.kind.is_counted() {
            MAX_COUNTED_DURATION
        } else {
            MAX_DURATION
        };
        if self.duration.is_zero() || self.duration > longest {
            return Err(format!(
                "--duration must be more than 0 and at most {} s for {}",
                longest.as_secs(),
                self.kind.name()
            ));
        }
        if self.tries > MAX_TRIES {
            return Err(format!("--tries is at most {MAX_TRIES}"));
        }
        if !TICK_MS.contains(&self.tick_ms) {
            return Err(format!(
                "--tick-ms must be {} to {} (GameRelay's range)",
                TICK_MS.start(),
                TICK_MS.end()
            ));
        }
        if self.players == 0 {
            return Err("--players must be at least 1".into());
        }
        if self.count > MAX_COUNT {
            return Err(format!("--count is at most {MAX_COUNT}"));
        }
        if self.frame_bytes == 0 || self.frame_bytes > MAX_FRAME_BYTES {
            return Err(format!(
                "--frame-bytes must be more than 0 and at most {MAX_FRAME_BYTES} (the node's largest message limit)"
            ));
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
    /// "during" it, and the fresh client starts no more tries).
    closing: AtomicBool,
    /// Why connects failed, and how the server ended connections.
    outcomes: Mutex<BTreeMap<String, u64>>,
    bytes_dripped: AtomicU64,
    /// The kind's own operations (pings, frames, requests, ticks).
    ops: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    /// The kind's other counts, by name, for the report.
    tallies: Mutex<BTreeMap<&'static str, u64>>,
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

    fn tally(&self, what: &'static str, n: u64) {
        let mut tallies = self
            .tallies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *tallies.entry(what).or_default() += n;
    }

    fn tallies(&self) -> BTreeMap<&'static str, u64> {
        self.tallies
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

/// What the attack thread hands back.
#[derive(Debug, Default)]
struct AttackResults {
    seconds: f64,
    /// The kind's own latency, when it has one.
    latency: Recorder,
}

/// The node's state at the four moments the report compares.
#[derive(Debug, Default)]
struct NodeMoments {
    before: NodeSample,
    peak: NodeSample,
    end_of_attack: NodeSample,
    after: NodeSample,
    disk_before: Option<DiskUsage>,
    disk_after: Option<DiskUsage>,
    sample_errors: u64,
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
    let disk = || opts.data_dir.as_deref().map(node::disk_usage).transpose();
    let disk_before = disk()?;
    let before = node::sample(admin)?;
    eprintln!(
        "attack: node {:.1} MiB, {} fds, {} processes before; {} x {} from {ATTACK_IP}",
        mib(before.rss_bytes),
        before.fds,
        before.processes,
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
        let opts = opts.clone();
        std::thread::Builder::new()
            .name("attack".into())
            .spawn(move || {
                run_attack(
                    &target,
                    &opts,
                    (started + opts.duration, last_stop),
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
        match node::sample(admin) {
            Ok(s) => {
                if s.rss_bytes > peak.rss_bytes {
                    peak.rss_bytes = s.rss_bytes;
                    peak.per_process = s.per_process.clone();
                }
                peak.fds = peak.fds.max(s.fds);
                peak.processes = peak.processes.max(s.processes);
                if !counts.closing.load(Ordering::Relaxed) {
                    end_of_attack = Some(s);
                }
            }
            Err(_) => sample_errors += 1,
        }
        let work = match opts.kind.unit() {
            "connects" => String::new(),
            unit => format!(", {} {unit}", counts.ops.load(Ordering::Relaxed)),
        };
        eprintln!(
            "attack: {:.0} s, {} held, {} connects{work}, node {:.1} MiB / {} fds (peak)",
            started.elapsed().as_secs_f64(),
            counts.held.load(Ordering::Relaxed),
            counts.connects.load(Ordering::Relaxed),
            mib(peak.rss_bytes),
            peak.fds
        );
    }
    let attack = attack
        .join()
        .map_err(|_| "the attack thread panicked".to_string())??;
    let fresh = fresh
        .join()
        .map_err(|_| "the fresh client thread panicked".to_string())??;
    // The node gets a moment to let go of what the attack cost.
    std::thread::sleep(SAMPLE_EVERY);
    // A node that died under the attack still gets its report.
    let after = node::sample(admin).unwrap_or_else(|e| {
        eprintln!("attack: node after the attack: {e}");
        sample_errors += 1;
        NodeSample::default()
    });
    let disk_after = disk().unwrap_or_else(|e| {
        eprintln!("attack: data_dir after the attack: {e}");
        None
    });

    // An attack shorter than a sample (a small --count) is over before the
    // first one; what it left behind is then the most seen.
    if after.rss_bytes > peak.rss_bytes {
        peak.rss_bytes = after.rss_bytes;
        peak.per_process = after.per_process.clone();
    }
    peak.fds = peak.fds.max(after.fds);
    peak.processes = peak.processes.max(after.processes);
    let moments = NodeMoments {
        end_of_attack: end_of_attack.unwrap_or_else(|| peak.clone()),
        before,
        peak,
        after,
        disk_before,
        disk_after,
        sample_errors,
    };
    Ok(report(opts, &counts, &attack, &fresh, &moments))
}

fn report(
    opts: &AttackOptions,
    counts: &AttackCounts,
    attack: &AttackResults,
    fresh: &FreshResults,
    node: &NodeMoments,
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
    for (name, value) in [
        ("bytes_sent", &counts.bytes_sent),
        ("bytes_received", &counts.bytes_received),
    ] {
        if value.load(Ordering::Relaxed) > 0 {
            attack_counters.insert(name.into(), load(value));
        }
    }
    for (name, value) in counts.tallies() {
        attack_counters.insert(name.into(), value as f64);
    }
    if opts.kind == AttackKind::Matches {
        // What each player got against what its match was asked for.
        let per_player =
            load(&counts.ops) / (opts.connections as f64 * attack.seconds).max(f64::EPSILON);
        attack_counters.insert("ticks_per_second_per_player".into(), per_player);
        attack_counters.insert(
            "ticks_per_second_asked".into(),
            1000.0 / opts.tick_ms as f64,
        );
    }
    for (when, s) in [
        ("before", &node.before),
        ("peak", &node.peak),
        ("end_of_attack", &node.end_of_attack),
        ("after", &node.after),
    ] {
        attack_counters.insert(format!("node_rss_mib_{when}"), mib(s.rss_bytes));
        attack_counters.insert(format!("node_fds_{when}"), s.fds as f64);
        attack_counters.insert(format!("node_processes_{when}"), s.processes as f64);
    }
    for (when, disk) in [("before", node.disk_before), ("after", node.disk_after)] {
        if let Some(disk) = disk {
            attack_counters.insert(format!("data_files_{when}"), disk.files as f64);
            attack_counters.insert(format!("data_mib_{when}"), mib(disk.bytes));
        }
    }
    let operations = operations(opts.kind, counts);
    let attack_phase = Phase {
        name: "attack".into(),
        description: format!("{} from {ATTACK_IP}", describe(opts)),
        unit: opts.kind.unit().into(),
        seconds: attack.seconds,
        operations,
        // Reconnects (keepalive-idle) make connects far more than the ramp.
        per_second: operations as f64 / attack.seconds.max(f64::EPSILON),
        latency_label: attack_latency_label(opts.kind).into(),
        latency: attack.latency.latency(),
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
        format!("node at its peak: {}", node.peak.per_process.join("; ")),
        format!("node after: {}", node.after.per_process.join("; ")),
    ];
    if let Some(dir) = &opts.data_dir {
        notes.push(match (node.disk_before, node.disk_after) {
            (Some(b), Some(a)) => format!(
                "data_dir {}: {} files, {:.1} MiB before; {} files, {:.1} MiB after",
                dir.display(),
                b.files,
                mib(b.bytes),
                a.files,
                mib(a.bytes)
            ),
            _ => format!("data_dir {}: not readable after the attack", dir.display()),
        });
    }
    if node.sample_errors > 0 {
        notes.push(format!(
            "{} node samples failed (admin API)",
            node.sample_errors
        ));
    }
    notes.push(goal_text(fresh));
    let mut settings = vec![
        ("kind".into(), opts.kind.name().into()),
        ("connections".into(), opts.connections.to_string()),
        (
            "duration".into(),
            format!("{} s", opts.duration.as_secs_f64()),
        ),
        ("tries".into(), opts.tries.to_string()),
        ("concurrency".into(), opts.concurrency.to_string()),
    ];
    settings.extend(kind_settings(opts));
    if let Some(dir) = &opts.data_dir {
        settings.push(("data_dir".into(), dir.display().to_string()));
    }
    Report {
        scenario: "attack".into(),
        title: format!("a fresh client while {} attack the node", describe(opts)),
        unix_time: unix_time(),
        settings,
        host: crate::fleet::server::this_host(None, None),
        targets: vec![TargetRun {
            target: TargetKind::Torpor,
            url: opts.url.clone(),
            server: "torpor: supervisor, edges, workers and their children".into(),
            phases: vec![attack_phase, fresh_phase],
            notes,
            ..TargetRun::default()
        }],
        ..Report::default()
    }
    .finish()
}

/// The attack phase's operations: connects for the kinds that only hold
/// connections, the kind's own unit for the others.
fn operations(kind: AttackKind, counts: &AttackCounts) -> u64 {
    if kind.unit() == "connects" {
        counts.connects.load(Ordering::Relaxed)
    } else {
        counts.ops.load(Ordering::Relaxed)
    }
}

/// The attack in a few words, for the title.
fn describe(opts: &AttackOptions) -> String {
    let n = opts.connections;
    match opts.kind {
        AttackKind::StalledHeads | AttackKind::StalledBodies | AttackKind::KeepaliveIdle => {
            format!("{n} x {}", opts.kind.name())
        }
        AttackKind::PingFlood => format!(
            "{n} x ping-flood (empty pings without pause, never read, SO_RCVBUF {} bytes)",
            opts.rcvbuf_bytes
        ),
        AttackKind::FastSender => format!(
            "{n} x fast-sender ({}-byte frames to an echo object without pause, replies {})",
            opts.frame_bytes,
            if opts.read_replies {
                "read"
            } else {
                "never read"
            }
        ),
        AttackKind::ObjectNames => format!(
            "{} GETs of /presence/<new name> (a new object each) over {n} keep-alive connections",
            opts.count
        ),
        AttackKind::Counters => format!(
            "{} POSTs to /counter/<new name> (a new object that stores, each) over {n} keep-alive connections",
            opts.count
        ),
        AttackKind::Matches => format!(
            "{} GameRelay matches of {} players ticking every {} ms",
            opts.matches(),
            opts.players,
            opts.tick_ms
        ),
    }
}

/// The settings of the kind only, for the report.
fn kind_settings(opts: &AttackOptions) -> Vec<(String, String)> {
    match opts.kind {
        AttackKind::StalledHeads | AttackKind::StalledBodies | AttackKind::KeepaliveIdle => {
            Vec::new()
        }
        AttackKind::PingFlood => vec![("rcvbuf_bytes".into(), opts.rcvbuf_bytes.to_string())],
        AttackKind::FastSender => vec![
            ("frame_bytes".into(), opts.frame_bytes.to_string()),
            ("read_replies".into(), opts.read_replies.to_string()),
        ],
        AttackKind::ObjectNames | AttackKind::Counters => {
            vec![("count".into(), opts.count.to_string())]
        }
        AttackKind::Matches => vec![
            ("matches".into(), opts.matches().to_string()),
            ("players".into(), opts.players.to_string()),
            ("tick_ms".into(), opts.tick_ms.to_string()),
        ],
    }
}

/// What the attack phase's latency measures, if the kind has one.
fn attack_latency_label(kind: AttackKind) -> &'static str {
    match kind {
        AttackKind::StalledHeads
        | AttackKind::StalledBodies
        | AttackKind::KeepaliveIdle
        | AttackKind::PingFlood
        | AttackKind::FastSender => "",
        AttackKind::ObjectNames | AttackKind::Counters => "request written → answer read",
        AttackKind::Matches => "gap between two ticks of a player",
    }
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

/// The attack, on its own runtime.
fn run_attack(
    target: &Target,
    opts: &AttackOptions,
    (until, last_stop): (Instant, Instant),
    counts: &Arc<AttackCounts>,
    tries_done: &Arc<AtomicBool>,
) -> Result<AttackResults, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let started = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = opts.connections;
    let ctx = Rc::new(Ctx {
        target: target.clone(),
        source: Source::new(ATTACK_IP, std::process::id()),
        kind: opts.kind,
        opts: opts.clone(),
        run_id: run_id(unix_time(), std::process::id()),
        gate: Semaphore::new(opts.concurrency),
        counts: counts.clone(),
        stop: stop_rx,
        next: Cell::new(0),
        latency: RefCell::new(Recorder::new()),
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
            let over = if opts.kind.is_counted() {
                now >= until || tasks.iter().all(tokio::task::JoinHandle::is_finished)
            } else {
                now >= until && tries_done.load(Ordering::Relaxed)
            };
            if over || now >= last_stop {
                break;
            }
        }
        counts.closing.store(true, Ordering::Relaxed);
        let _ = stop_tx.send(true);
        let closing = futures_util::future::join_all(tasks);
        let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
    });
    Ok(AttackResults {
        seconds: started.elapsed().as_secs_f64(),
        latency: ctx.latency.take(),
    })
}

/// What the attack's tasks share (one thread: `Rc`, `Cell`).
struct Ctx {
    target: Target,
    source: Source,
    kind: AttackKind,
    opts: AttackOptions,
    /// Begins every object name of this run, so no run meets the objects
    /// (stored settings, counters) of the one before.
    run_id: String,
    /// Connects in flight at once.
    gate: Semaphore,
    counts: Arc<AttackCounts>,
    stop: watch::Receiver<bool>,
    /// The next operation number to hand out, for kinds with a count.
    next: Cell<u64>,
    /// The kind's own latency, when it has one.
    latency: RefCell<Recorder>,
}

/// One attacking connection, for as long as the attack lasts: opened,
/// handed to its kind, and opened again after the node ends it if the kind
/// reconnects.
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
            let ended = session(&ctx, stream, n, &mut stop).await;
            ctx.counts.closed();
            if let Some(how) = ended {
                ctx.counts.count(how);
            }
        }
        let done = ctx.kind.is_counted() && ctx.next.get() >= ctx.opts.count;
        if !ctx.kind.reconnects() || done {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// What connection `n` does once connected, by kind; returns how the node
/// ended it, or `None` when the attack stopped first.
async fn session(
    ctx: &Ctx,
    stream: TcpStream,
    n: u64,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    match ctx.kind {
        AttackKind::StalledHeads | AttackKind::StalledBodies | AttackKind::KeepaliveIdle => {
            held::hold(ctx, stream, n, stop).await
        }
        AttackKind::PingFlood => sockets::ping_flood(ctx, stream, n, stop).await,
        AttackKind::FastSender => sockets::fast_send(ctx, stream, n, stop).await,
        AttackKind::ObjectNames | AttackKind::Counters => {
            requests::keep_asking(ctx, stream, stop).await
        }
        AttackKind::Matches => matches::play(ctx, stream, n, stop).await,
    }
}

/// `atk<unix time>p<pid>`: one run's object name prefix.
pub fn run_id(unix_time: u64, pid: u32) -> String {
    format!("atk{unix_time}p{pid}")
}

async fn connect(ctx: &Ctx) -> Result<TcpStream, ClientError> {
    let socket = client::bind(&ctx.source)?;
    if ctx.kind == AttackKind::PingFlood {
        // Before connect, so the window the node sees is small from the
        // first segment on.
        socket
            .set_recv_buffer_size(ctx.opts.rcvbuf_bytes)
            .map_err(|err| ClientError::Io {
                stage: "rcvbuf",
                err,
            })?;
    }
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
/// slow one does not delay the next. An attack that ends first (one with a
/// count, done) ends the tries too: a try after it measures a quiet node.
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
            if counts.closing.load(Ordering::Relaxed) {
                break;
            }
            let (target, source, path) = (target.clone(), source.clone(), path.to_owned());
            tasks.push(tokio::task::spawn_local(async move {
                one_try(&target, &source, &path, i).await
            }));
        }
        futures_util::future::join_all(tasks).await
    });
    let mut results = FreshResults {
        tried: u32::try_from(outcomes.len()).unwrap_or(u32::MAX),
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
        for kind in AttackKind::ALL {
            assert_eq!(AttackKind::parse(kind.name()), Ok(kind));
        }
        assert!(AttackKind::parse("slowloris").is_err());
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
            data_dir: None,
            rcvbuf_bytes: 4096,
            frame_bytes: 1 << 18,
            read_replies: true,
            count: 0,
            players: 2,
            tick_ms: 10,
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
            ..opts.clone()
        };
        assert!(endless.check().is_err());
        for tick_ms in [9, 10_001] {
            let bad = AttackOptions {
                tick_ms,
                ..opts.clone()
            };
            assert!(bad.check().unwrap_err().contains("--tick-ms"));
        }
        let long_count = AttackOptions {
            kind: AttackKind::Counters,
            count: 100_000,
            duration: Duration::from_secs(1800),
            ..opts.clone()
        };
        assert!(long_count.check().is_ok(), "a count may take longer");
        let huge = AttackOptions {
            count: MAX_COUNT + 1,
            ..opts.clone()
        };
        assert!(huge.check().is_err());
        for frame_bytes in [0, MAX_FRAME_BYTES + 1] {
            let bad = AttackOptions {
                frame_bytes,
                ..opts.clone()
            };
            assert!(bad.check().unwrap_err().contains("--frame-bytes"));
        }
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
