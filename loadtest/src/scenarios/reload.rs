//! `loadtest reload`: the node's workers are swapped for another binary
//! (`torpor reload`), or with `--deploy upgrade` its edges are (`torpor
//! upgrade`: new edge processes take over every socket), while
//! `--connections` sockets over `--rooms` Bench objects stay open, half of
//! the objects hibernated and half busy with echo and broadcast traffic the
//! whole time. What must hold: no socket closes, every echo is answered
//! exactly once and in order, every broadcast reaches every socket of its
//! object exactly once, and afterwards, for a reload, every object answers
//! from a new worker process (and with `--expect-version`, that version);
//! for an upgrade, every edge runs in a new process and the old ones have
//! exited (the workers, and so the objects' version, stay). What is
//! measured: how long the swap takes (the node's report: `took_ms`, and per
//! worker `drain_ms` and `gap_ms`, or per edge `took_ms`) and the latency of
//! echoes before, during and after it.
//!
//! The run, in order:
//! 1. the client processes (`reload-client`, see
//!    [`child::reload`](crate::child::reload)) open the sockets,
//!    `/bench/<prefix><k % rooms>`; every socket sends one echo;
//! 2. each object is asked `version` and `pid` on its first socket;
//! 3. the quiet objects are polled (`/admin/objects/Bench/<name>`) until
//!    they are hibernated (`active: false`);
//! 4. traffic starts: phase `warmup` for `--warmup`, then `before` for
//!    `--before`;
//! 5. the quiet objects are checked to be hibernated still; phase `during`
//!    starts and the swap is asked for (`--reload-cmd`, run with `sh -c`,
//!    or `POST /admin/reload` or `/admin/upgrade` on `--admin`); it lasts
//!    until the answer and `--tail` more;
//! 6. phase `after`: every object is asked `version` and `pid` again (which
//!    wakes the quiet ones, in the new workers after a reload), then traffic
//!    runs to the end of `--after`;
//! 7. traffic stops, the replies still owed are awaited, and each socket's
//!    broadcasts are counted against what the senders sent.
//!
//! Latency is send → reply of each echo, counted in the phase in which the
//! reply arrived, so the `during` phase holds every reply the swap delayed.
//! Every wait has a deadline; the run ends by itself.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::child::reload_protocol::{
    ChildReport, Command as ClientCommand, ReloadClientOptions, PHASES, SLOT_MS,
};
use crate::fleet::run::{open_fleet, unix_time, Common};
use crate::fleet::server::Server;
use crate::fleet::{self, Event, Fleet, Share};
use crate::measure::cpu::{CpuMeter, CpuUsage, Role, Watch};
use crate::measure::latency::{human_ms, Recorder};
use crate::report::model::{ClientCpu, CpuFigures, Phase, Report, TargetKind, TargetRun};
use crate::report::text::thousands;
use crate::wire::admin;

const CLASS: &str = "Bench";
/// How long a reload (command or POST) may take before it counts as hung.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Answers, hellos and results may take this long (children wait up to
/// their own drain timeout first).
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The timeline in the notes starts this long before the reload request.
const TIMELINE_LEAD: Duration = Duration::from_secs(1);
/// An old edge hands over before it exits, so it may outlive the report.
const OLD_EDGE_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the run swaps under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deploy {
    /// The workers, for a binary with new objects' code (`torpor reload`).
    Reload,
    /// The edges, for a binary with new edge code (`torpor upgrade`).
    Upgrade,
}

impl Deploy {
    pub fn parse(text: &str) -> Result<Deploy, String> {
        match text {
            "reload" => Ok(Deploy::Reload),
            "upgrade" => Ok(Deploy::Upgrade),
            _ => Err(format!("deploy {text:?} is not reload or upgrade")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Deploy::Reload => "reload",
            Deploy::Upgrade => "upgrade",
        }
    }

    /// What asks the node for it when no `--reload-cmd` is given.
    fn admin_path(self) -> &'static str {
        match self {
            Deploy::Reload => "/admin/reload",
            Deploy::Upgrade => "/admin/upgrade",
        }
    }
}

/// `loadtest reload` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadOptions {
    pub common: Common,
    pub connections: u64,
    pub rooms: u32,
    /// Rooms `0..busy_rooms` carry traffic; the rest stay quiet.
    pub busy_rooms: u32,
    /// Echoing sockets per busy room; `None`: all but the control socket.
    pub echoers_per_room: Option<u64>,
    /// Each echoing socket sends its next echo this long after its last.
    pub interval: Duration,
    /// Echoes a socket may have unanswered.
    pub window: u32,
    /// Each busy object's first socket broadcasts this often.
    pub bcast_every: Duration,
    /// Traffic runs this long before `before` starts.
    pub warmup: Duration,
    pub before: Duration,
    pub after: Duration,
    /// `during` lasts this long past the reload's answer.
    pub tail: Duration,
    pub deploy: Deploy,
    pub reload_cmd: Option<String>,
    pub expect_version: Option<String>,
    pub prefix: String,
    pub hibernate_timeout: Duration,
}

/// The node's CPU and the load generator's over one phase.
struct Meters {
    server: CpuMeter,
    client: CpuMeter,
}

impl Meters {
    fn start(server: &Server, fleet: &Fleet) -> Result<Meters, String> {
        let clients = fleet.pids().into_iter().map(|p| (Role::Client, p));
        Ok(Meters {
            server: CpuMeter::start(server.watch())?,
            client: CpuMeter::start(Watch::Pids(clients.collect()))?,
        })
    }

    fn stop(self) -> Result<(CpuUsage, ClientCpu), String> {
        let server = self.server.stop()?;
        let client = self.client.stop()?;
        Ok((server, ClientCpu::from_usage(&client)))
    }
}

/// What the run found wrong, besides its figures.
pub type Failures = Vec<String>;

/// Lines from the children, by kind.
#[derive(Default)]
struct Inbox {
    hellos: Vec<(u64, u64)>,
    answers: HashMap<u32, String>,
    stopped: Vec<BTreeMap<u32, u64>>,
    results: Vec<ChildReport>,
}

/// Reads the children's lines until `until`, sorting them into `inbox`.
/// A child that exits or reports an error ends the run.
fn pump(fleet: &mut Fleet, inbox: &mut Inbox, until: Instant) -> Result<(), String> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let Some((i, event)) = fleet.recv(left.min(Duration::from_millis(100)))? else {
            continue;
        };
        let line = match event {
            Event::Line(line) => line,
            Event::Closed => {
                let status = fleet.exit_status(i);
                return Err(format!("client process {i} exited ({status})"));
            }
        };
        let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let bad = |e: String| format!("client process {i}: {e}: {line:?}");
        match word {
            "hello" => {
                let mut numbers = rest.split(' ').map(str::parse::<u64>);
                match (numbers.next(), numbers.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => inbox.hellos.push((a, b)),
                    _ => return Err(bad("malformed hello".into())),
                }
            }
            "answer" => {
                let (room, text) = rest.split_once(' ').unwrap_or((rest, ""));
                let room = room.parse().map_err(|_| bad("malformed answer".into()))?;
                inbox.answers.insert(room, text.to_string());
            }
            "stopped" => inbox
                .stopped
                .push(serde_json::from_str(rest).map_err(|e| bad(e.to_string()))?),
            "result" => inbox
                .results
                .push(serde_json::from_str(rest).map_err(|e| bad(e.to_string()))?),
            "error" => return Err(format!("client process {i}: {rest}")),
            _ => eprintln!("client process {i}: {line}"),
        }
    }
}

/// Pumps until `done(inbox)` or `timeout`.
fn pump_until(
    fleet: &mut Fleet,
    inbox: &mut Inbox,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Inbox) -> bool,
) -> Result<(), String> {
    let give_up = Instant::now() + timeout;
    while !done(inbox) {
        if Instant::now() >= give_up {
            return Err(format!("{what}: no answer within {} s", timeout.as_secs()));
        }
        pump(fleet, inbox, (Instant::now() + POLL_EVERY).min(give_up))?;
    }
    Ok(())
}

/// The client process holding global connection `index`.
fn holder(shares: &[Share], index: u64) -> Option<usize> {
    shares
        .iter()
        .position(|s| index >= s.first_index && index < s.first_index + s.connections)
}

/// Asks every room's control socket `text`; the answers by room.
fn ask_all(
    fleet: &mut Fleet,
    inbox: &mut Inbox,
    shares: &[Share],
    rooms: u32,
    text: &str,
) -> Result<BTreeMap<u32, String>, String> {
    inbox.answers.clear();
    for room in 0..rooms {
        let child = holder(shares, u64::from(room))
            .ok_or_else(|| format!("no client process holds room {room}'s first socket"))?;
        fleet.send(
            child,
            &ClientCommand::Ask {
                room,
                text: text.to_string(),
            }
            .to_line(),
        )?;
    }
    pump_until(
        fleet,
        inbox,
        REPLY_TIMEOUT,
        &format!("asking {text}"),
        |b| b.answers.len() >= rooms as usize,
    )?;
    Ok(inbox.answers.iter().map(|(r, t)| (*r, t.clone())).collect())
}

fn send_all(fleet: &mut Fleet, command: &ClientCommand) -> Result<(), String> {
    let line = command.to_line();
    for i in 0..fleet.len() {
        fleet.send(i, &line)?;
    }
    Ok(())
}

fn object_name(prefix: &str, room: u32) -> String {
    format!("{prefix}{room}")
}

/// Polls until every named object is hibernated; how long that took.
fn wait_hibernated(
    admin: SocketAddr,
    names: &[String],
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut waiting: Vec<&String> = names.iter().collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for name in waiting {
            if admin::object_usage(admin, CLASS, name)?.active {
                still.push(name);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "{} quiet objects still active after {} s (first: {CLASS}/{})",
                waiting.len(),
                timeout.as_secs(),
                waiting[0]
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
    Ok(started.elapsed())
}

/// How the swap went, as the client saw it.
#[derive(Debug, Default)]
struct Swap {
    /// The node's report, if it gave one.
    report: Option<serde_json::Value>,
    /// Why it failed, if it did.
    error: Option<String>,
    /// From the request to the answer.
    wall: Duration,
}

/// Runs `--reload-cmd` (stdout: the report) or POSTs the deploy's admin
/// path.
fn reload(admin: SocketAddr, deploy: Deploy, command: Option<&str>) -> Swap {
    let started = Instant::now();
    let path = deploy.admin_path();
    let (text, error) = match command {
        Some(command) => run_command(command),
        None => match admin::post(admin, path, RELOAD_TIMEOUT) {
            Ok((200, body)) => (body, None),
            Ok((status, body)) => (
                body.clone(),
                Some(format!("POST {path}: status {status}: {}", body.trim())),
            ),
            Err(e) => (String::new(), Some(e)),
        },
    };
    let wall = started.elapsed();
    // The report is the last line of the output that is a JSON object.
    let report = text
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find(serde_json::Value::is_object);
    let error = error.or_else(|| {
        report.is_none().then(|| {
            let name = deploy.name();
            format!("the {name} printed no JSON report: {:?}", text.trim())
        })
    });
    Swap {
        report,
        error,
        wall,
    }
}

/// `sh -c COMMAND`, killed (by its pid, it is ours) after RELOAD_TIMEOUT.
fn run_command(command: &str) -> (String, Option<String>) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return (
                String::new(),
                Some(format!("cannot run sh -c {command:?}: {e}")),
            )
        }
    };
    let stdout = child.stdout.take();
    // The output is read on a thread so that a full pipe cannot stall it.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut out) = stdout {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        text
    });
    let give_up = Instant::now() + RELOAD_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "the reload command did not finish within {} s; killed",
                    RELOAD_TIMEOUT.as_secs()
                ));
            }
            Err(e) => break Err(format!("wait for the reload command: {e}")),
        }
    };
    let text = reader.join().unwrap_or_default();
    match status {
        Ok(s) if s.success() => (text, None),
        Ok(s) => (
            text.clone(),
            Some(format!("the reload command failed ({s}): {}", text.trim())),
        ),
        Err(e) => (text, Some(e)),
    }
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `0.1.0+dev ×20`, or the distinct answers with their counts.
fn tally(answers: &BTreeMap<u32, String>) -> String {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for text in answers.values() {
        *counts.entry(text.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(text, n)| format!("{text} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number field of each entry of `list` (`workers`, `edges`) in the
/// node's report.
fn report_numbers(report: &serde_json::Value, list: &str, key: &str) -> Vec<u64> {
    report
        .get(list)
        .and_then(serde_json::Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|w| w.get(key).and_then(serde_json::Value::as_u64))
                .collect()
        })
        .unwrap_or_default()
}

/// What is wrong with an upgrade, from its report and the edge pids the
/// node listed before and after: each edge the node ran must have handed
/// over to a process of its own that the node lists now.
fn edge_problems(report: &serde_json::Value, before: &[u32], after: &[u32]) -> Vec<String> {
    let mut problems = Vec::new();
    let swapped = report
        .get("edges")
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len);
    let mut old = report_numbers(report, "edges", "old_pid");
    let mut new = report_numbers(report, "edges", "new_pid");
    if swapped != before.len() || old.len() != swapped || new.len() != swapped {
        problems.push(format!(
            "the upgrade report lists {swapped} edges ({} old pids, {} new), the node ran {}",
            old.len(),
            new.len(),
            before.len()
        ));
    }
    let sorted = |pids: &[u32]| {
        let mut pids: Vec<u64> = pids.iter().copied().map(u64::from).collect();
        pids.sort_unstable();
        pids
    };
    old.sort_unstable();
    new.sort_unstable();
    if old != sorted(before) {
        problems.push(format!(
            "the upgrade report's old pids {old:?} are not the edges the node ran, {before:?}"
        ));
    }
    if new != sorted(after) {
        problems.push(format!(
            "the upgrade report's new pids {new:?} are not the edges the node runs now, {after:?}"
        ));
    }
    let kept: Vec<&u32> = after.iter().filter(|p| before.contains(p)).collect();
    if !kept.is_empty() {
        problems.push(format!("edge pids {kept:?} did not change"));
    }
    problems
}

/// The state letter of `/proc/<pid>/stat` (`R`, `S`, `Z`, ...).
fn proc_state(stat: &str) -> Option<char> {
    // The name before it is in parentheses and may hold both spaces and
    // parentheses; the last `)` ends it.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

/// Waits up to `timeout` for each pid to leave `/proc`; those that did not,
/// with their state (`Z`: exited, not reaped by the supervisor).
fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<(u32, char)> {
    let give_up = Instant::now() + timeout;
    loop {
        let left: Vec<(u32, char)> = pids
            .iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some((*pid, proc_state(&stat).unwrap_or('?')))
            })
            .collect();
        if left.is_empty() || Instant::now() >= give_up {
            return left;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

pub fn run(opts: &ReloadOptions) -> Result<(Report, Failures), String> {
    if opts.busy_rooms > opts.rooms {
        return Err(format!(
            "--busy-rooms {} is more than --rooms {}",
            opts.busy_rooms, opts.rooms
        ));
    }
    if u64::from(opts.rooms) > opts.connections {
        return Err(format!(
            "--rooms {} needs at least as many --connections",
            opts.rooms
        ));
    }
    let shares = fleet::split(
        opts.connections,
        opts.common.processes_for(opts.connections),
    )?;
    let server = Server::start(
        TargetKind::Torpor,
        &opts.common.url,
        &opts.common.admin,
        None,
        &opts.common.placement,
    )?;
    let admin = server
        .admin
        .ok_or("the Torpor target has no admin address")?;
    let mut run = TargetRun {
        target: TargetKind::Torpor,
        url: server.url.clone(),
        server: server.describe(),
        ..TargetRun::default()
    };
    let mut failures = Failures::new();
    let outcome = measure(opts, &server, admin, &shares, &mut run, &mut failures);
    if let Err(e) = outcome {
        failures.push(e.clone());
        run.error = Some(e);
    }
    for failure in &failures {
        run.notes.push(format!("FAILED: {failure}"));
    }
    let echoers = opts
        .echoers_per_room
        .map_or("all".to_string(), |n| n.to_string());
    let report = Report {
        scenario: "reload".into(),
        title: format!(
            "torpor {} under load: {} sockets over {} objects ({} busy, {} hibernated)",
            opts.deploy.name(),
            thousands(opts.connections as f64),
            opts.rooms,
            opts.busy_rooms,
            opts.rooms - opts.busy_rooms
        ),
        unix_time: unix_time(),
        settings: vec![
            ("connections".into(), opts.connections.to_string()),
            ("rooms".into(), opts.rooms.to_string()),
            ("busy rooms".into(), opts.busy_rooms.to_string()),
            ("echoers per busy room".into(), echoers),
            (
                "echo interval".into(),
                format!("{} ms", opts.interval.as_millis()),
            ),
            ("window".into(), opts.window.to_string()),
            (
                "broadcast every".into(),
                format!("{} ms", opts.bcast_every.as_millis()),
            ),
            (
                "warmup / before / tail / after".into(),
                format!(
                    "{} s / {} s / {} s / {} s",
                    opts.warmup.as_secs_f64(),
                    opts.before.as_secs_f64(),
                    opts.tail.as_secs_f64(),
                    opts.after.as_secs_f64()
                ),
            ),
            (
                opts.deploy.name().into(),
                opts.reload_cmd
                    .clone()
                    .unwrap_or_else(|| format!("POST http://{admin}{}", opts.deploy.admin_path())),
            ),
        ],
        host: opts.common.host(),
        targets: vec![run],
        ..Report::default()
    };
    Ok((report.finish(), failures))
}

/// Steps 1 to 7 of the module docs; fills `run` and `failures`.
fn measure(
    opts: &ReloadOptions,
    server: &Server,
    admin: SocketAddr,
    shares: &[Share],
    run: &mut TargetRun,
    failures: &mut Failures,
) -> Result<(), String> {
    let args: Vec<Vec<String>> = shares
        .iter()
        .map(|share| {
            ReloadClientOptions {
                url: server.url.clone(),
                room_prefix: opts.prefix.clone(),
                rooms: opts.rooms,
                busy_rooms: opts.busy_rooms,
                echoers_per_room: opts.echoers_per_room.unwrap_or(u64::MAX),
                first_index: share.first_index,
                connections: share.connections,
                source_ip: share.source_ip,
                concurrency: opts.common.concurrency,
            }
            .to_args()
        })
        .collect();
    let mut fleet = Fleet::spawn(
        "reload-client",
        &args,
        opts.common.placement.client_cpus.as_deref(),
    )?;
    let open = open_fleet(&mut fleet, opts.connections, server, |_| {})?;
    let opened = open.opened;
    let open_failed = open.failed;
    run.open = Some(open);
    if open_failed > 0 {
        return Err(format!(
            "{open_failed} of {} connections failed to open",
            opts.connections
        ));
    }
    let mut inbox = Inbox::default();

    // 1. One echo on every socket.
    send_all(&mut fleet, &ClientCommand::Hello)?;
    let children = fleet.len();
    pump_until(&mut fleet, &mut inbox, REPLY_TIMEOUT, "hello", |b| {
        b.hellos.len() >= children
    })?;
    let helloed: u64 = inbox.hellos.iter().map(|(a, _)| a).sum();
    eprintln!("reload: {helloed} of {opened} sockets answered their first echo");

    // 2. Who answers before.
    let versions_before = ask_all(&mut fleet, &mut inbox, shares, opts.rooms, "version")?;
    let pids_before = ask_all(&mut fleet, &mut inbox, shares, opts.rooms, "pid")?;
    let node_before = admin::node(admin)?;
    let workers_before = node_before.worker_pids();
    let edges_before = node_before.edge_pids();

    // 3. The quiet objects hibernate.
    let quiet: Vec<String> = (opts.busy_rooms..opts.rooms)
        .map(|r| object_name(&opts.prefix, r))
        .collect();
    let hibernate_wait = wait_hibernated(admin, &quiet, opts.hibernate_timeout)?;
    eprintln!(
        "reload: {} quiet objects hibernated after {:.1} s",
        quiet.len(),
        hibernate_wait.as_secs_f64()
    );

    // 4. Traffic: phase `warmup` (its first sends bunch up), then `before`.
    let mut cpu = Vec::new();
    let warmup_started = Instant::now();
    let meters = Meters::start(server, &fleet)?;
    send_all(
        &mut fleet,
        &ClientCommand::Start {
            interval: opts.interval,
            window: opts.window,
            bcast_every: opts.bcast_every,
        },
    )?;
    pump(&mut fleet, &mut inbox, warmup_started + opts.warmup)?;
    cpu.push(meters.stop()?);
    send_all(&mut fleet, &ClientCommand::Phase(1))?;
    let traffic_started = Instant::now();
    let meters = Meters::start(server, &fleet)?;
    pump(&mut fleet, &mut inbox, traffic_started + opts.before)?;

    // 5. Still hibernated? Then the swap, phase `during`.
    // What this process did when, to read the timeline against.
    let mut events: Vec<(&str, u64)> = vec![("quiet objects polled", now_ms())];
    let mut quiet_hibernated = 0u64;
    for name in &quiet {
        if !admin::object_usage(admin, CLASS, name)?.active {
            quiet_hibernated += 1;
        }
    }
    if quiet_hibernated < quiet.len() as u64 {
        failures.push(format!(
            "only {quiet_hibernated} of {} quiet objects were hibernated when the {} began",
            quiet.len(),
            opts.deploy.name()
        ));
    }
    events.push(("polled", now_ms()));
    cpu.push(meters.stop()?);
    send_all(&mut fleet, &ClientCommand::Phase(2))?;
    let during_started = Instant::now();
    let meters = Meters::start(server, &fleet)?;
    let reload_unix_ms = unix_ms(SystemTime::now());
    let swapped = match opts.deploy {
        Deploy::Reload => "workers",
        Deploy::Upgrade => "edges",
    };
    eprintln!("reload: swapping the {swapped}");
    let command = opts.reload_cmd.clone();
    let deploy = opts.deploy;
    let swapping = std::thread::spawn(move || reload(admin, deploy, command.as_deref()));
    while !swapping.is_finished() {
        if during_started.elapsed() > RELOAD_TIMEOUT + Duration::from_secs(10) {
            return Err("the reload thread did not finish".into());
        }
        pump(
            &mut fleet,
            &mut inbox,
            Instant::now() + Duration::from_millis(10),
        )?;
    }
    let swap = swapping
        .join()
        .map_err(|_| "the reload thread panicked".to_string())?;
    let answered_unix_ms = reload_unix_ms + u64::try_from(swap.wall.as_millis()).unwrap_or(0);
    eprintln!(
        "reload: answered after {:.0} ms{}",
        swap.wall.as_secs_f64() * 1000.0,
        swap.error
            .as_ref()
            .map_or(String::new(), |e| format!(": {e}"))
    );
    if let Some(e) = &swap.error {
        failures.push(e.clone());
    }
    pump(&mut fleet, &mut inbox, Instant::now() + opts.tail)?;

    // 6. Phase `after`: who answers now.
    events.push(("tail over", now_ms()));
    cpu.push(meters.stop()?);
    send_all(&mut fleet, &ClientCommand::Phase(3))?;
    let after_started = Instant::now();
    let meters = Meters::start(server, &fleet)?;
    events.push(("versions asked", now_ms()));
    let versions_after = ask_all(&mut fleet, &mut inbox, shares, opts.rooms, "version")?;
    events.push(("pids asked", now_ms()));
    let pids_after = ask_all(&mut fleet, &mut inbox, shares, opts.rooms, "pid")?;
    events.push(("answered", now_ms()));
    let node_after = admin::node(admin)?;
    let workers_after = node_after.worker_pids();
    let edges_after = node_after.edge_pids();
    pump(&mut fleet, &mut inbox, after_started + opts.after)?;

    // 7. Stop, drain, count.
    let after_seconds = after_started.elapsed().as_secs_f64();
    cpu.push(meters.stop()?);
    send_all(&mut fleet, &ClientCommand::Stop)?;
    pump_until(&mut fleet, &mut inbox, REPLY_TIMEOUT, "stop", |b| {
        b.stopped.len() >= children
    })?;
    let mut bcast_sent = BTreeMap::new();
    for sent in &inbox.stopped {
        bcast_sent.extend(sent.iter().map(|(r, n)| (*r, *n)));
    }
    send_all(&mut fleet, &ClientCommand::Expect(bcast_sent.clone()))?;
    pump_until(&mut fleet, &mut inbox, REPLY_TIMEOUT, "expect", |b| {
        b.results.len() >= children
    })?;
    let mut server_connections = 0;
    for room in 0..opts.rooms {
        server_connections +=
            admin::object_usage(admin, CLASS, &object_name(&opts.prefix, room))?.connections;
    }
    fleet.shutdown();

    // The figures.
    let mut echo: Vec<Recorder> = (0..PHASES).map(|_| Recorder::new()).collect();
    let mut bcast: Vec<Recorder> = (0..PHASES).map(|_| Recorder::new()).collect();
    let mut total = ChildReport::default();
    let mut timeline: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for r in &inbox.results {
        for (phase, wire) in r.echo_latency.iter().enumerate().take(PHASES) {
            echo[phase].merge(&Recorder::from_wire(wire));
        }
        for (phase, wire) in r.bcast_latency.iter().enumerate().take(PHASES) {
            bcast[phase].merge(&Recorder::from_wire(wire));
        }
        for [slot, replies, max_us, sent] in &r.timeline {
            let entry = timeline.entry(*slot).or_default();
            entry.0 += replies;
            entry.1 = entry.1.max(*max_us);
            entry.2 += sent;
        }
        total.sockets += r.sockets;
        for (reason, n) in &r.closed {
            *total.closed.entry(reason.clone()).or_default() += n;
        }
        total.echo_sent += r.echo_sent;
        total.echo_answered += r.echo_answered;
        total.echo_lost += r.echo_lost;
        total.echo_duplicated += r.echo_duplicated;
        total.echo_misordered += r.echo_misordered;
        total.unexpected += r.unexpected;
        total.bcast_expected += r.bcast_expected;
        total.bcast_received += r.bcast_received;
        total.bcast_duplicated += r.bcast_duplicated;
        total.bcast_missing += r.bcast_missing;
        total.rss_bytes += r.rss_bytes;
    }
    let closed: u64 = total.closed.values().sum();
    let sent_broadcasts: u64 = bcast_sent.values().sum();

    // The checks.
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };
    check(
        closed == 0,
        format!("{closed} sockets closed: {:?}", total.closed),
    );
    check(
        total.echo_lost == 0,
        format!("{} echoes never answered", total.echo_lost),
    );
    check(
        total.echo_duplicated == 0,
        format!("{} echoes answered twice", total.echo_duplicated),
    );
    check(
        total.echo_misordered == 0,
        format!("{} echoes answered out of order", total.echo_misordered),
    );
    check(
        total.echo_answered == total.echo_sent,
        format!(
            "{} echoes sent, {} answered",
            total.echo_sent, total.echo_answered
        ),
    );
    check(
        total.unexpected == 0,
        format!("{} frames that nothing asked for", total.unexpected),
    );
    check(
        total.bcast_duplicated == 0 && total.bcast_missing == 0,
        format!(
            "broadcasts: {} repeated, {} missing",
            total.bcast_duplicated, total.bcast_missing
        ),
    );
    check(
        total.bcast_received == total.bcast_expected,
        format!(
            "broadcasts: {} expected on the sockets, {} received",
            total.bcast_expected, total.bcast_received
        ),
    );
    check(
        server_connections == opened,
        format!("the node counts {server_connections} sockets, {opened} were opened"),
    );
    check(
        sent_broadcasts > 0 || opts.busy_rooms == 0,
        "no broadcast was sent".into(),
    );
    let new_version = match &opts.expect_version {
        Some(want) => {
            let n = versions_after.values().filter(|v| *v == want).count();
            check(
                n == opts.rooms as usize,
                format!(
                    "{n} of {} objects answer version {want} after the reload ({})",
                    opts.rooms,
                    tally(&versions_after)
                ),
            );
            Some(n)
        }
        None => None,
    };
    if let Some(want) = &opts.expect_version {
        if versions_before.values().any(|v| v == want) {
            run.notes.push(format!(
                "objects answered {want} before the reload already: the binaries do not differ"
            ));
        }
    }
    let new_pids: Vec<u64> = swap
        .report
        .as_ref()
        .map(|r| report_numbers(r, "workers", "new_pid"))
        .unwrap_or_default();
    let on_new_worker = pids_after
        .values()
        .filter(|p| p.parse::<u64>().is_ok_and(|p| new_pids.contains(&p)))
        .count();
    let mut old_edges_left = Vec::new();
    match opts.deploy {
        Deploy::Reload => check(
            swap.report.is_none() || on_new_worker == opts.rooms as usize,
            format!(
                "{on_new_worker} of {} objects answer from a new worker after the reload",
                opts.rooms
            ),
        ),
        Deploy::Upgrade => {
            if let Some(report) = &swap.report {
                for problem in edge_problems(report, &edges_before, &edges_after) {
                    check(false, problem);
                }
            }
            old_edges_left = wait_gone(&edges_before, OLD_EDGE_EXIT_TIMEOUT);
            check(
                old_edges_left.is_empty(),
                format!(
                    "old edge processes have not exited (pid, state; Z: not reaped): {old_edges_left:?}"
                ),
            );
        }
    }

    // The phases.
    let during_seconds = (after_started - during_started).as_secs_f64();
    let before_seconds = (during_started - traffic_started).as_secs_f64();
    let warmup_seconds = (traffic_started - warmup_started).as_secs_f64();
    let phase = |name: &str, description: String, seconds: f64, i: usize| {
        let r = &echo[i];
        let (server_cpu, client_cpu) = cpu.get(i).cloned().unzip();
        let mut p = Phase {
            name: name.into(),
            description,
            unit: "echoes".into(),
            seconds,
            operations: r.count(),
            per_second: if seconds > 0.0 {
                r.count() as f64 / seconds
            } else {
                0.0
            },
            latency_label: "`echo:e<n>` written → `e<n>` read (by the reply's time)".into(),
            latency: r.latency(),
            server_cpu: server_cpu.map(|usage| CpuFigures::new(usage, r.count())),
            client_cpu,
            ..Phase::default()
        };
        if let Some(l) = bcast[i].latency() {
            p.more_latencies
                .insert("broadcast written → back on its sender".into(), l);
        }
        p
    };
    let warmup = phase(
        "warmup",
        "traffic starting (not a baseline: the first sends bunch up)".into(),
        warmup_seconds,
        0,
    );
    let mut before = phase(
        "before",
        format!("traffic, before the {} is asked for", opts.deploy.name()),
        before_seconds,
        1,
    );
    before.counters.insert(
        "quiet_hibernate_wait_ms".into(),
        hibernate_wait.as_millis() as f64,
    );
    let mut during = phase(
        "during",
        format!(
            "from the {} request to its answer and {} s more",
            opts.deploy.name(),
            opts.tail.as_secs_f64()
        ),
        during_seconds,
        2,
    );
    during
        .counters
        .insert("reload_wall_ms".into(), swap.wall.as_millis() as f64);
    if let Some(report) = &swap.report {
        for key in ["took_ms", "replace_ms", "upgrade_ms"] {
            if let Some(v) = report.get(key).and_then(serde_json::Value::as_u64) {
                during.counters.insert(key.into(), v as f64);
            }
        }
        for key in ["drain_ms", "gap_ms"] {
            let values = report_numbers(report, "workers", key);
            if let Some(max) = values.iter().max() {
                // `drain_max_ms`: a name ending in `_ms` reads as ms.
                let name = key.trim_end_matches("_ms");
                during
                    .counters
                    .insert(format!("{name}_max_ms"), *max as f64);
            }
            for (i, v) in values.iter().enumerate() {
                during
                    .counters
                    .insert(format!("worker{i}_{key}"), *v as f64);
            }
        }
        let listed = |key: &str| {
            report
                .get(key)
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len)
        };
        match opts.deploy {
            Deploy::Reload => {
                during
                    .counters
                    .insert("workers_replaced".into(), listed("workers") as f64);
                let clean = report
                    .get("workers")
                    .and_then(serde_json::Value::as_array)
                    .map_or(0, |l| {
                        l.iter()
                            .filter(|w| w.get("clean") == Some(&serde_json::Value::Bool(true)))
                            .count()
                    });
                during.counters.insert("workers_clean".into(), clean as f64);
            }
            Deploy::Upgrade => {
                // Each edge's start of its new process → every socket served.
                let took = report_numbers(report, "edges", "took_ms");
                if let Some(max) = took.iter().max() {
                    during
                        .counters
                        .insert("edge_took_max_ms".into(), *max as f64);
                }
                for (i, v) in took.iter().enumerate() {
                    during
                        .counters
                        .insert(format!("edge{i}_took_ms"), *v as f64);
                }
                during
                    .counters
                    .insert("edges_replaced".into(), listed("edges") as f64);
            }
        }
        during
            .counters
            .insert("quiet_hibernated_at_reload".into(), quiet_hibernated as f64);
        run.notes
            .push(format!("{} report: {report}", opts.deploy.name()));
    }
    let after = phase(
        "after",
        "traffic after the swap; every object asked its version first".into(),
        after_seconds,
        3,
    );
    let mut all = Recorder::new();
    for r in echo.iter().skip(1) {
        all.merge(r);
    }
    let mut whole = Phase {
        name: "all".into(),
        description: "before, during and after together, and what was checked".into(),
        unit: "echoes".into(),
        seconds: before_seconds + during_seconds + after_seconds,
        operations: all.count(),
        latency_label: "as the phases".into(),
        latency: all.latency(),
        ..Phase::default()
    };
    let counters = [
        ("sockets", total.sockets),
        ("sockets_closed", closed),
        ("server_connections", server_connections),
        ("echo_sent", total.echo_sent),
        ("echo_answered", total.echo_answered),
        ("lost", total.echo_lost),
        ("duplicated", total.echo_duplicated),
        ("misordered", total.echo_misordered),
        ("unexpected", total.unexpected),
        ("bcast_sent", sent_broadcasts),
        ("bcast_expected", total.bcast_expected),
        ("bcast_received", total.bcast_received),
        ("bcast_duplicated", total.bcast_duplicated),
        ("bcast_missing", total.bcast_missing),
    ];
    let counters = counters.into_iter().chain(match opts.deploy {
        Deploy::Reload => vec![("objects_on_new_worker", on_new_worker as u64)],
        Deploy::Upgrade => vec![
            (
                "edges_new",
                edges_after
                    .iter()
                    .filter(|p| !edges_before.contains(p))
                    .count() as u64,
            ),
            ("old_edges_left", old_edges_left.len() as u64),
        ],
    });
    for (k, v) in counters {
        whole.counters.insert(k.into(), v as f64);
    }
    if let Some(n) = new_version {
        whole
            .counters
            .insert("objects_new_version".into(), n as f64);
    }
    run.phases = vec![warmup, before, during, after, whole];
    run.notes.push(format!(
        "version before: {}; after: {}",
        tally(&versions_before),
        tally(&versions_after)
    ));
    run.notes.push(format!(
        "worker pids before: {workers_before:?}, after: {workers_after:?}; edge pids before: {edges_before:?}, after: {edges_after:?}; objects' pids before: {}; after: {}",
        tally(&pids_before),
        tally(&pids_after)
    ));
    run.notes.push(timeline_note(
        &timeline,
        reload_unix_ms,
        answered_unix_ms,
        opts.tail,
    ));
    let events: Vec<String> = events
        .iter()
        .map(|(what, at)| {
            let ms = i128::from(*at) - i128::from(reload_unix_ms);
            format!("{what} {ms:+} ms")
        })
        .collect();
    run.notes.push(format!(
        "this process, from the reload request: {}",
        events.join(", ")
    ));
    Ok(())
}

/// Echo replies per 100 ms slot (and the slowest of each) from a second
/// before the reload request until a second after `during` ends.
fn timeline_note(
    timeline: &BTreeMap<u64, (u64, u64, u64)>,
    reload_ms: u64,
    answered_ms: u64,
    tail: Duration,
) -> String {
    let lead = TIMELINE_LEAD.as_millis() as u64;
    let from = reload_ms.saturating_sub(lead) / SLOT_MS * SLOT_MS;
    let to = answered_ms + tail.as_millis() as u64 + lead;
    let cells: Vec<String> = (from..=to)
        .step_by(SLOT_MS as usize)
        .map(|slot| {
            let (replies, max_us, _) = timeline.get(&slot).copied().unwrap_or_default();
            let mark = if slot + SLOT_MS > reload_ms && slot <= reload_ms {
                "|"
            } else if slot + SLOT_MS > answered_ms && slot <= answered_ms {
                "^"
            } else {
                ""
            };
            format!("{mark}{replies}/{}", human_ms(max_us as f64 / 1000.0))
        })
        .collect();
    format!(
        "echo replies per {SLOT_MS} ms / slowest, from {lead} ms before the request \
         (| request, ^ answer): {}",
        cells.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_an_index_is_found() {
        let shares = fleet::split(10_000, 3).unwrap();
        assert_eq!(holder(&shares, 0), Some(0));
        assert_eq!(holder(&shares, 3_334), Some(1));
        assert_eq!(holder(&shares, 9_999), Some(2));
        assert_eq!(holder(&shares, 10_000), None);
    }

    #[test]
    fn answers_are_tallied() {
        let answers: BTreeMap<u32, String> = [(0, "0.1.0+b"), (1, "0.1.0+b"), (2, "err:x")]
            .into_iter()
            .map(|(r, t)| (r, t.to_string()))
            .collect();
        assert_eq!(tally(&answers), "0.1.0+b ×2, err:x ×1");
    }

    #[test]
    fn the_report_is_the_last_json_line() {
        let report: serde_json::Value = serde_json::from_str(
            r#"{"version":"0.1.0+b","workers":[{"index":0,"drain_ms":3,"gap_ms":40},{"index":1,"drain_ms":5,"gap_ms":38}],"took_ms":90}"#,
        )
        .unwrap();
        assert_eq!(report_numbers(&report, "workers", "gap_ms"), [40, 38]);
        assert!(report_numbers(&report, "workers", "nothing").is_empty());
        assert!(report_numbers(&report, "edges", "took_ms").is_empty());
        let (text, error) = run_command("echo noise; echo '{\"took_ms\": 7}'");
        assert!(error.is_none(), "{error:?}");
        let last = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .unwrap();
        assert_eq!(last["took_ms"], 7);
        let (_, error) = run_command("exit 3");
        assert!(error.unwrap().contains("failed"));
    }

    #[test]
    fn an_upgrade_report_moves_every_edge_to_a_new_process() {
        let report: serde_json::Value = serde_json::from_str(
            r#"{"version":"0.1.0+b","handover_version":1,"edges":[{"index":0,"old_pid":11,"new_pid":21,"took_ms":310},{"index":1,"old_pid":12,"new_pid":22,"took_ms":290}],"upgrade_ms":600,"took_ms":640}"#,
        )
        .unwrap();
        assert_eq!(report_numbers(&report, "edges", "took_ms"), [310, 290]);
        assert!(report_numbers(&report, "workers", "took_ms").is_empty());
        assert_eq!(
            edge_problems(&report, &[11, 12], &[22, 21]),
            Vec::<String>::new()
        );
        // The node lists an old pid still.
        let problems = edge_problems(&report, &[11, 12], &[21, 12]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("[12] did not change"), "{problems:?}");
        // One edge more than the report moved.
        let problems = edge_problems(&report, &[11, 12, 13], &[21, 22, 13]);
        assert!(problems[0].contains("lists 2 edges"), "{problems:?}");
        let empty = serde_json::json!({"took_ms": 5});
        assert!(!edge_problems(&empty, &[11], &[11]).is_empty());
    }

    #[test]
    fn the_state_follows_the_process_name() {
        assert_eq!(proc_state("1234 (torpor) S 1 1234"), Some('S'));
        assert_eq!(proc_state("1234 (a) b) (c) Z 1 1234"), Some('Z'));
        assert_eq!(proc_state("1234 torpor"), None);
        let mine = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(proc_state(&mine).is_some(), "{mine}");
        assert!(wait_gone(&[std::process::id()], Duration::ZERO).len() == 1);
    }

    #[test]
    fn the_timeline_marks_request_and_answer() {
        let mut t = BTreeMap::new();
        t.insert(10_000, (50, 2_000, 50));
        t.insert(10_100, (0, 0, 10));
        t.insert(10_200, (70, 150_000, 60));
        let note = timeline_note(&t, 11_050, 11_150, Duration::ZERO);
        assert!(note.contains("50/2.00 ms 0/0 µs 70/150 ms"), "{note}");
        assert!(note.contains("|0/0 µs ^0/0 µs"), "{note}");
    }
}
