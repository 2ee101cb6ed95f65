//! `loadtest wake`: how long a message to a hibernated object waits for the
//! object to come back.
//!
//! Preparation fills each of `--objects` Bench objects (`/bench/<prefix>-<i>`)
//! with about `--db-mb` MiB of storage (`put:k<j>=<100 KiB>`, one durable
//! commit per message) plus a small key `probe`. Then, for each sample, it
//! polls the admin API until the object is hibernated (`active: false`) and,
//! for `--variant exited-worker`, until every worker process has exited
//! (`/admin/node` lists no pid: run the node with a short `worker_idle_exit`);
//! then it sends the probe on the socket it holds (`echo:x`; `get:probe`,
//! which also opens the object's database; or `getattach`, which reads the
//! socket's attachment, set to `probe` beforehand) and times the reply:
//! that is the wake latency. The same probe sent again right after, to the now live
//! object, is the warm round trip for comparison. For `live-worker` (the
//! default) the worker stays up: run the node with a long
//! `worker_idle_exit`, or a sample waits on a worker start it did not ask
//! for (counted in `worker_restarts`).
//!
//! Everything is sequential, one object at a time, so no wake waits behind
//! another. Each wake is confirmed by the object's `wakes` counter having
//! gone up by exactly one between two hibernated polls.
//!
//! With `--room-sockets N`, each object also holds N more sockets before
//! sampling, each with an attachment of `--attach-bytes` (`attach:<bytes>`),
//! opened from [`idle-client`](crate::child::idle) processes (one process
//! holds fewer than 20,000 sockets; each connects from its own 127.0.0.x)
//! that hold them silent through every sample and close them at the end:
//! the wake of an object with a big room, whose sockets' tags and
//! attachments stay in the edges. Each object's socket count is checked
//! with the admin API before sampling.
//!
//! With `--quiet DURATION` the admin API is not used, so the same run works
//! against a server that has none (`--target external`, e.g. workerd, which
//! evicts an object whose only sockets are hibernatable after about 10 s
//! without an event): each sample waits until its object has had no event
//! for DURATION, and is confirmed afterwards with `recall`, which answers
//! what `remember:live` left in the instance's memory, so an empty answer
//! means the probe met a fresh instance (counted in `stayed_live` when it
//! did not). Only `live-worker` applies: nothing outside can see a
//! worker exit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::child::idle::ClientOptions;
use crate::fleet::run::{open_figures, unix_time, READY_TIMEOUT};
use crate::fleet::{self, Fleet};
use crate::measure::latency::Recorder;
use crate::report::model::{OpenFigures, Phase, Report, TargetKind, TargetRun};
use crate::report::text::mib;
use crate::wire::admin;
use crate::wire::client::Target;
use crate::wire::session::{loopback_source, Session};

const CLASS: &str = "Bench";
/// Bytes per `put` value while filling: ~100 KiB, under the 128 KiB value
/// limit and, with the key, far under the 1 MiB message limit.
const VALUE_BYTES: usize = 100 * 1024;
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// One durable put or one probe (a wake included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an object may take to hibernate after its last event.
const HIBERNATE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long every worker may take to exit after its objects hibernate.
const WORKER_EXIT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a room's client process keeps opening; below the fleet's ready
/// timeout, so that one with stragglers still reports what it got.
const ROOM_OPEN_DEADLINE: Duration = Duration::from_secs(240);
/// Connections a room's client process opens at once: half the front
/// door's default max_frontdoor_connections_per_address (256).
const ROOM_CONCURRENCY: usize = 128;
/// The attachment each room socket sets when `--attach-bytes` is not given.
pub const DEFAULT_ATTACH_BYTES: usize = 2000;

/// What must hold before each wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// The object is hibernated; its worker process is running.
    LiveWorker,
    /// The object is hibernated and every worker process has exited.
    ExitedWorker,
}

impl Variant {
    pub fn parse(text: &str) -> Result<Variant, String> {
        match text {
            "live-worker" => Ok(Variant::LiveWorker),
            "exited-worker" => Ok(Variant::ExitedWorker),
            _ => Err(format!(
                "variant {text:?} is not live-worker or exited-worker"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::LiveWorker => "live-worker",
            Variant::ExitedWorker => "exited-worker",
        }
    }
}

/// What the timed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// `echo:x`: wakes the object; its database stays closed.
    Echo,
    /// `get:probe`: wakes the object and opens its database to read a key.
    Get,
    /// `getattach`: wakes the object, which reads the sender's attachment
    /// (from its edge, or from what the live object kept).
    Attach,
}

impl Probe {
    pub fn parse(text: &str) -> Result<Probe, String> {
        match text {
            "echo" => Ok(Probe::Echo),
            "get" => Ok(Probe::Get),
            "attach" => Ok(Probe::Attach),
            _ => Err(format!("probe {text:?} is not echo, get or attach")),
        }
    }

    fn message(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Probe::Echo => (b"echo:x", b"x"),
            Probe::Get => (b"get:probe", b"1"),
            Probe::Attach => (b"getattach", b"probe"),
        }
    }
}

/// `loadtest wake` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct WakeOptions {
    pub url: String,
    pub admin: String,
    pub objects: u32,
    /// MiB of values to store in each object first; 0 stores only `probe`.
    pub db_mb: u64,
    /// Wake samples in all, taken round-robin over the objects.
    pub samples: u32,
    pub probe: Probe,
    pub variant: Variant,
    pub prefix: String,
    pub json: Option<PathBuf>,
    /// Torpor, or a server without Torpor's admin API (only with `quiet`).
    pub target: TargetKind,
    /// Wait this long after an object's last event instead of polling the
    /// admin API, and confirm each wake with `recall`.
    pub quiet: Option<Duration>,
    /// More sockets each object holds, silent, while it is woken.
    pub room_sockets: u64,
    /// The attachment each of those sockets sets; 0 sets none.
    pub attach_bytes: usize,
    /// The client processes holding the rooms; `None`: as many as the
    /// descriptors need (`auto`).
    pub processes: Option<u32>,
}

/// The room's client processes for `url`: `room_sockets` per object, over
/// as many processes as the descriptors need, each held until the parent
/// lets go (or long after every sample could have been taken).
pub fn room_plan(opts: &WakeOptions, url: &str) -> Result<Vec<ClientOptions>, String> {
    let connections = opts.room_sockets * u64::from(opts.objects);
    let processes = opts
        .processes
        .unwrap_or_else(|| fleet::auto_processes(connections));
    let shares = fleet::split(connections, processes)?;
    let per_sample = HIBERNATE_TIMEOUT * 2 + WORKER_EXIT_TIMEOUT + REPLY_TIMEOUT * 2;
    let hold_deadline = READY_TIMEOUT + per_sample * opts.samples.max(1);
    Ok(shares
        .into_iter()
        .map(|share| ClientOptions {
            url: url.to_string(),
            // Connection k joins object k % objects: `/bench/<prefix>-<i>`.
            room_prefix: format!("{}-", opts.prefix),
            rooms: opts.objects,
            first_index: share.first_index,
            connections: share.connections,
            attach_bytes: opts.attach_bytes,
            source_ip: share.source_ip,
            concurrency: ROOM_CONCURRENCY,
            open_deadline: ROOM_OPEN_DEADLINE,
            hold_deadline,
        })
        .collect())
}

/// Opens every object's room and checks that each object holds its own
/// socket and the room's; the fleet holds them until dropped.
fn open_rooms(
    opts: &WakeOptions,
    admin: SocketAddr,
    names: &[String],
) -> Result<(Fleet, OpenFigures), String> {
    let plan = room_plan(opts, &opts.url)?;
    let requested: u64 = plan.iter().map(|c| c.connections).sum();
    eprintln!(
        "wake: opening {} sockets with {} B attachments per object from {} processes",
        opts.room_sockets,
        opts.attach_bytes,
        plan.len()
    );
    let args: Vec<Vec<String>> = plan.iter().map(ClientOptions::to_args).collect();
    // Not pinned here: the children share this process's CPUs (taskset).
    let mut fleet = Fleet::spawn("idle-client", &args, None)?;
    let tally = fleet.wait_ready(READY_TIMEOUT, |_, _| {})?;
    let open = open_figures(requested, tally, &fleet, None);
    eprintln!(
        "wake: room open: {} of {requested} in {:.1} s",
        open.opened, open.seconds
    );
    if open.opened != requested {
        return Err(format!(
            "the rooms hold {} of {requested} sockets ({} failed: {:?})",
            open.opened, open.failed, open.failures
        ));
    }
    for name in names {
        let held = admin::object_usage(admin, CLASS, name)?.connections;
        if held != opts.room_sockets + 1 {
            return Err(format!(
                "{CLASS}/{name} holds {held} sockets, want {} (the room and the probe's); \
                 is max_connections_per_object below that?",
                opts.room_sockets + 1
            ));
        }
    }
    Ok((fleet, open))
}

struct ObjectState {
    active: bool,
    wakes: u64,
    stored_bytes: Option<u64>,
}

fn object_state(admin: SocketAddr, name: &str) -> Result<ObjectState, String> {
    let path = format!("/admin/objects/{CLASS}/{name}");
    let body = admin::get(admin, &path)?;
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{path} is not JSON: {e}"))?;
    let field = |key: &str| json.get(key).cloned().unwrap_or_default();
    Ok(ObjectState {
        active: field("active")
            .as_bool()
            .ok_or_else(|| format!("{path} has no boolean active: {body}"))?,
        wakes: field("wakes")
            .as_u64()
            .ok_or_else(|| format!("{path} has no numeric wakes: {body}"))?,
        stored_bytes: field("stored_bytes").as_u64(),
    })
}

/// Polls until the object is hibernated; returns its state then.
fn wait_hibernated(admin: SocketAddr, name: &str) -> Result<ObjectState, String> {
    let deadline = Instant::now() + HIBERNATE_TIMEOUT;
    loop {
        let state = object_state(admin, name)?;
        if !state.active {
            return Ok(state);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{CLASS}/{name} still active after {} s",
                HIBERNATE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

pub fn puts_per_object(db_mb: u64) -> u64 {
    (db_mb * 1024 * 1024).div_ceil(VALUE_BYTES as u64)
}

/// Polls until no worker process runs; returns how long that took.
fn wait_workers_down(admin: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if admin::node(admin)?.workers_down() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > WORKER_EXIT_TIMEOUT {
            return Err(format!(
                "a worker is still running after {} s; run the node with a short worker_idle_exit",
                WORKER_EXIT_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// The workers' pids now, to tell whether one was restarted.
fn worker_pids(admin: SocketAddr) -> Result<Vec<u32>, String> {
    Ok(admin::node(admin)?.worker_pids())
}

/// What both ways of sampling start from: the server, a runtime for the
/// sessions, a source address, and the objects' names.
/// The objects, each with its socket open and its storage filled.
struct Setup {
    runtime: tokio::runtime::Runtime,
    names: Vec<String>,
    sessions: Vec<Session>,
    /// Puts of [`VALUE_BYTES`] in each object.
    puts: u64,
    prepare_seconds: f64,
}

impl Setup {
    fn new(opts: &WakeOptions) -> Result<Setup, String> {
        let target = Target::parse(&opts.url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let source = loopback_source();
        let names: Vec<String> = (0..opts.objects)
            .map(|i| format!("{}-{i}", opts.prefix))
            .collect();
        let puts = puts_per_object(opts.db_mb);
        let prepare_started = Instant::now();
        let mut sessions = Vec::new();
        for name in &names {
            let path = format!("/bench/{name}");
            let mut session =
                runtime.block_on(Session::open(&target, &source, &path, OPEN_TIMEOUT))?;
            runtime.block_on(fill(&mut session, puts, opts.probe))?;
            sessions.push(session);
        }
        let prepare_seconds = prepare_started.elapsed().as_secs_f64();
        eprintln!(
            "wake: {} objects filled with {puts} x {VALUE_BYTES} B in {prepare_seconds:.1} s",
            names.len()
        );
        Ok(Setup {
            runtime,
            names,
            sessions,
            puts,
            prepare_seconds,
        })
    }
}

pub fn run(opts: &WakeOptions) -> Result<Report, String> {
    if opts.objects == 0 || opts.samples == 0 {
        return Err("--objects and --samples must be at least 1".into());
    }
    if let Some(quiet) = opts.quiet {
        return run_quiet(opts, quiet);
    }
    if opts.target != TargetKind::Torpor {
        return Err("a server without Torpor's admin API needs --quiet".into());
    }
    let admin = admin::parse_addr(&opts.admin)?;
    let Setup {
        runtime,
        names,
        mut sessions,
        puts,
        prepare_seconds,
    } = Setup::new(opts)?;
    // Held open, silent, through every sample; dropped (closed) at the end.
    let rooms = if opts.room_sockets > 0 {
        Some(open_rooms(opts, admin, &names)?)
    } else {
        None
    };

    let (probe, want) = opts.probe.message();
    let mut wake = Recorder::new();
    // A percentile hides whether the slow wake is the first one (a cost
    // left over from the room opening) or any of them.
    let mut wakes_in_order = Vec::new();
    let mut warm = Recorder::new();
    let mut hibernate_wait = Recorder::new();
    let mut worker_exit_wait = Recorder::new();
    let mut unconfirmed_wakes = 0;
    let mut worker_restarts = 0;
    let mut last_wakes: Vec<Option<u64>> = vec![None; names.len()];
    let mut last_reply: Vec<Option<Instant>> = vec![None; names.len()];
    let mut stored_bytes = vec![None; names.len()];
    let mut taken = 0;
    'rounds: loop {
        for (i, (name, session)) in names.iter().zip(&mut sessions).enumerate() {
            if taken == opts.samples {
                break 'rounds;
            }
            let mut state = wait_hibernated(admin, name)?;
            if let Some(replied) = last_reply[i] {
                hibernate_wait.record(replied.elapsed());
            }
            let workers_before = match opts.variant {
                Variant::ExitedWorker => {
                    worker_exit_wait.record(wait_workers_down(admin)?);
                    // Still hibernated (nothing can wake it meanwhile), and
                    // its counters as of now.
                    state = wait_hibernated(admin, name)?;
                    Vec::new()
                }
                Variant::LiveWorker => worker_pids(admin)?,
            };
            if let Some(before) = last_wakes[i] {
                if state.wakes != before + 1 {
                    unconfirmed_wakes += 1;
                }
            }
            last_wakes[i] = Some(state.wakes);
            stored_bytes[i] = state.stored_bytes;
            let took = runtime.block_on(session.request(probe, want, REPLY_TIMEOUT))?;
            wake.record(took);
            wakes_in_order.push(took);
            warm.record(runtime.block_on(session.request(probe, want, REPLY_TIMEOUT))?);
            if opts.variant == Variant::LiveWorker {
                // A worker that was not running, or a new pid, means this
                // wake included a worker start after all.
                let after = worker_pids(admin)?;
                if workers_before.is_empty() || after.iter().any(|p| !workers_before.contains(p)) {
                    worker_restarts += 1;
                }
            }
            last_reply[i] = Some(Instant::now());
            taken += 1;
        }
    }
    // The last sample of each object is confirmed by one more poll.
    for (i, name) in names.iter().enumerate() {
        let state = wait_hibernated(admin, name)?;
        if last_wakes[i].is_some_and(|before| state.wakes != before + 1) {
            unconfirmed_wakes += 1;
        }
        stored_bytes[i] = state.stored_bytes;
    }
    let room_open = rooms.map(|(mut fleet, open)| {
        fleet.shutdown();
        open
    });

    let mut counters = BTreeMap::new();
    counters.insert(
        "unconfirmed_wakes".to_string(),
        f64::from(unconfirmed_wakes),
    );
    counters.insert("worker_restarts".to_string(), f64::from(worker_restarts));
    let phase = |name: &str, description: String, label: &str, r: &Recorder| Phase {
        name: name.to_string(),
        description,
        unit: "messages".into(),
        operations: r.count(),
        latency_label: label.to_string(),
        latency: r.latency(),
        ..Phase::default()
    };
    let mut wake_phase = phase(
        "wake",
        format!(
            "first message to a hibernated object, worker {}",
            match opts.variant {
                Variant::LiveWorker => "running",
                Variant::ExitedWorker => "exited (each wake starts one)",
            }
        ),
        &format!("`{}` written → reply read", String::from_utf8_lossy(probe)),
        &wake,
    );
    wake_phase.counters = counters;
    if let Some(l) = hibernate_wait.latency() {
        wake_phase.more_latencies.insert(
            "reply → seen hibernated again (polled every 20 ms)".into(),
            l,
        );
    }
    if let Some(l) = worker_exit_wait.latency() {
        wake_phase
            .more_latencies
            .insert("hibernated → every worker exited".into(), l);
    }
    let warm_phase = phase(
        "warm",
        "the same message again, to the object now live".into(),
        "written → reply read",
        &warm,
    );
    let sizes: Vec<String> = stored_bytes
        .iter()
        .map(|b| b.map_or("?".into(), |b| format!("{:.1} MiB", mib(b))))
        .collect();
    Ok(Report {
        scenario: "wake".into(),
        title: if opts.room_sockets > 0 {
            format!(
                "wake of a hibernated object holding {} more sockets with {} B attachments ({})",
                opts.room_sockets,
                opts.attach_bytes,
                opts.variant.name()
            )
        } else {
            format!("wake of a hibernated object ({})", opts.variant.name())
        },
        unix_time: unix_time(),
        settings: vec![
            ("objects".into(), opts.objects.to_string()),
            (
                "db".into(),
                format!("{} MiB ({puts} puts of {VALUE_BYTES} B)", opts.db_mb),
            ),
            ("samples".into(), opts.samples.to_string()),
            ("probe".into(), format!("{:?}", opts.probe).to_lowercase()),
            ("variant".into(), opts.variant.name().into()),
            ("room sockets".into(), opts.room_sockets.to_string()),
            ("attach bytes".into(), opts.attach_bytes.to_string()),
            ("fill time".into(), format!("{prepare_seconds:.1} s")),
        ],
        host: crate::fleet::server::this_host(None, None),
        targets: vec![TargetRun {
            target: TargetKind::Torpor,
            url: opts.url.clone(),
            server: "torpor".into(),
            open: room_open,
            phases: vec![wake_phase, warm_phase],
            notes: vec![
                format!("stored per object: {}", sizes.join(", ")),
                format!("wakes in order, ms: {}", in_order_ms(&wakes_in_order)),
            ],
            ..TargetRun::default()
        }],
        ..Report::default()
    }
    .finish())
}

fn in_order_ms(took: &[Duration]) -> String {
    let ms: Vec<String> = took
        .iter()
        .map(|t| format!("{:.2}", t.as_secs_f64() * 1000.0))
        .collect();
    ms.join(" ")
}

/// What `remember:` leaves in a live instance, for `recall` to find.
const LIVE_MARK: &[u8] = b"live";

/// `--quiet`: the wake timed after a fixed quiet spell, confirmed by the
/// instance's memory, so that no admin API is needed.
fn run_quiet(opts: &WakeOptions, quiet: Duration) -> Result<Report, String> {
    if opts.variant != Variant::LiveWorker {
        return Err("--quiet cannot see workers exit: use --variant live-worker".into());
    }
    if opts.room_sockets > 0 {
        return Err(
            "--room-sockets needs the admin API to check the rooms: not with --quiet".into(),
        );
    }
    let Setup {
        runtime,
        mut sessions,
        puts,
        prepare_seconds,
        ..
    } = Setup::new(opts)?;
    let mut last_event = Vec::new();
    for session in &mut sessions {
        runtime.block_on(remember(session))?;
        last_event.push(Instant::now());
    }
    eprintln!("wake: each sample waits {} s of quiet", quiet.as_secs_f64());
    let (probe, want) = opts.probe.message();
    let mut wake = Recorder::new();
    // A percentile hides whether the slow wake is the first one (a cost
    // left over from the room opening) or any of them.
    let mut wakes_in_order = Vec::new();
    let mut warm = Recorder::new();
    let mut stayed_live = 0u32;
    let mut taken = 0;
    'rounds: loop {
        for (i, session) in sessions.iter_mut().enumerate() {
            if taken == opts.samples {
                break 'rounds;
            }
            std::thread::sleep((last_event[i] + quiet).saturating_duration_since(Instant::now()));
            let took = runtime.block_on(session.request(probe, want, REPLY_TIMEOUT))?;
            wake.record(took);
            wakes_in_order.push(took);
            warm.record(runtime.block_on(session.request(probe, want, REPLY_TIMEOUT))?);
            runtime.block_on(session.send(b"recall"))?;
            let (recalled, _) = runtime.block_on(session.recv(REPLY_TIMEOUT))?;
            if !recalled.is_empty() {
                stayed_live += 1;
            }
            runtime.block_on(remember(session))?;
            last_event[i] = Instant::now();
            taken += 1;
        }
    }
    let mut counters = BTreeMap::new();
    counters.insert("stayed_live".to_string(), f64::from(stayed_live));
    let mut wake_phase = Phase {
        name: "wake".into(),
        description: format!(
            "first message after {} s without an event (hibernated unless counted in stayed_live)",
            quiet.as_secs_f64()
        ),
        unit: "messages".into(),
        operations: wake.count(),
        latency_label: format!("`{}` written → reply read", String::from_utf8_lossy(probe)),
        latency: wake.latency(),
        ..Phase::default()
    };
    wake_phase.counters = counters;
    let warm_phase = Phase {
        name: "warm".into(),
        description: "the same message again, to the object now live".into(),
        unit: "messages".into(),
        operations: warm.count(),
        latency_label: "written → reply read".into(),
        latency: warm.latency(),
        ..Phase::default()
    };
    let mut notes = Vec::new();
    if stayed_live > 0 {
        notes.push(format!(
            "{stayed_live} probes met an instance still live: --quiet is shorter than the \
             server's hibernation timeout"
        ));
    }
    Ok(Report {
        scenario: "wake".into(),
        title: format!(
            "wake of a hibernated object (after {} s quiet)",
            quiet.as_secs_f64()
        ),
        unix_time: unix_time(),
        settings: vec![
            ("objects".into(), opts.objects.to_string()),
            (
                "db".into(),
                format!("{} MiB ({puts} puts of {VALUE_BYTES} B)", opts.db_mb),
            ),
            ("samples".into(), opts.samples.to_string()),
            ("probe".into(), format!("{:?}", opts.probe).to_lowercase()),
            ("quiet".into(), format!("{} s", quiet.as_secs_f64())),
            ("fill time".into(), format!("{prepare_seconds:.1} s")),
        ],
        host: crate::fleet::server::this_host(None, None),
        targets: vec![TargetRun {
            target: opts.target,
            url: opts.url.clone(),
            server: opts.target.name().into(),
            phases: vec![wake_phase, warm_phase],
            notes,
            ..TargetRun::default()
        }],
        ..Report::default()
    }
    .finish())
}

async fn remember(session: &mut Session) -> Result<(), String> {
    let mut message = b"remember:".to_vec();
    message.extend_from_slice(LIVE_MARK);
    session.request(&message, b"ok", REPLY_TIMEOUT).await?;
    Ok(())
}

/// `puts` values of [`VALUE_BYTES`] under keys `k0..`, then `probe=1`; and
/// the socket's attachment, for the probe that reads it.
async fn fill(session: &mut Session, puts: u64, probe: Probe) -> Result<(), String> {
    let mut message = Vec::with_capacity(VALUE_BYTES + 32);
    for j in 0..puts {
        message.clear();
        message.extend_from_slice(format!("put:k{j}=").as_bytes());
        // Varied bytes, so nothing along the way can make the data smaller.
        message.extend((0..VALUE_BYTES).map(|b| b'a' + ((b as u64 * 7 + j) % 26) as u8));
        session.request(&message, b"ok", REPLY_TIMEOUT).await?;
    }
    session
        .request(b"put:probe=1", b"ok", REPLY_TIMEOUT)
        .await?;
    if probe == Probe::Attach {
        session
            .request(b"attach:probe", b"ok", REPLY_TIMEOUT)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(objects: u32, room_sockets: u64) -> WakeOptions {
        WakeOptions {
            url: "ws://127.0.0.1:48787".into(),
            admin: "127.0.0.1:49090".into(),
            objects,
            db_mb: 0,
            samples: 20,
            probe: Probe::Echo,
            variant: Variant::ExitedWorker,
            prefix: "wake".into(),
            json: None,
            target: TargetKind::Torpor,
            quiet: None,
            room_sockets,
            attach_bytes: DEFAULT_ATTACH_BYTES,
            processes: None,
        }
    }

    #[test]
    fn a_room_of_32768_is_held_by_processes_under_the_descriptor_limit() {
        let plan = room_plan(&opts(1, 32_768), "ws://127.0.0.1:48787").unwrap();
        assert_eq!(plan.len(), 3);
        assert!(plan
            .iter()
            .all(|c| c.connections < fleet::MAX_CONNECTIONS_PER_PROCESS));
        assert_eq!(plan.iter().map(|c| c.connections).sum::<u64>(), 32_768);
        assert!(plan.iter().all(|c| c.rooms == 1 && c.attach_bytes == 2000));
        // Every socket joins the probe's object, `/bench/wake-0`.
        let last = plan.last().unwrap();
        assert_eq!(
            crate::child::open::room_path(&last.room_prefix, last.rooms, 32_767),
            "/bench/wake-0"
        );
        assert_ne!(plan[0].source_ip, plan[1].source_ip);
        // The backstop outlasts the slowest 20 samples a run may take.
        assert!(last.hold_deadline > (HIBERNATE_TIMEOUT + WORKER_EXIT_TIMEOUT) * 20);
    }

    #[test]
    fn rooms_of_several_objects_get_n_each() {
        let plan = room_plan(&opts(3, 1000), "ws://x:1").unwrap();
        let total: u64 = plan.iter().map(|c| c.connections).sum();
        assert_eq!(total, 3000);
        let mut per_object = [0u64; 3];
        for client in &plan {
            for k in client.first_index..client.first_index + client.connections {
                per_object[(k % 3) as usize] += 1;
            }
        }
        assert_eq!(per_object, [1000; 3]);
        let three = WakeOptions {
            processes: Some(3),
            ..opts(1, 1000)
        };
        assert_eq!(room_plan(&three, "ws://x:1").unwrap().len(), 3);
        let auto = room_plan(&opts(1, 40_000), "ws://x:1").map(|p| p.len());
        assert_eq!(auto, Ok(3));
    }
}
