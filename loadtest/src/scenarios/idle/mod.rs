//! `loadtest idle`: how much memory an idle WebSocket costs.
//!
//! Per target, the parent reads the server's RSS (Torpor: summed over its
//! edges, and over every process of the node; a baseline: its one process)
//! and the kernel's socket memory, spawns
//! client processes (`loadtest idle-client`), each of which opens its share
//! of the connections from its own source address, says `ready`, and then
//! holds them without a single read or write until its stdin closes. While
//! they open, the parent samples RSS and Slab about every 10 % (the memory
//! curve); once all are open it lets the server settle, samples again, holds,
//! and reports growth per connection. When the hold ends it waits for the
//! run's objects to hibernate (Torpor), lets the node settle for
//! [`AFTER_HIBERNATION`], and samples the whole node, so the
//! figure is what the machine pays for idle sockets, the edges' share beside
//! it.
//!
//! While it holds, a [probe] sends `ping` on a few more sockets at a steady
//! pace and times each `pong` (phase `held-ping`): holding the idle ones
//! must not slow the answers of those that talk.
//!
//! The children are [`child::idle`](crate::child::idle). A held connection
//! is a bare `std::net::TcpStream` in a `Vec`: no buffer, no task, no epoll
//! registration, so 100,000 of them cost the load generator little more than
//! the kernel's sockets.

pub mod probe;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::child::idle::{ClientOptions, ROOM_PREFIX};
use crate::fleet::run::{for_each_target, open_fleet_within, unix_time, Common};
use crate::fleet::server::Server;
use crate::fleet::{self, Fleet};
use crate::measure::node::{self, ProcessMemory};
use crate::measure::{kernel, rss};
use crate::report::model::{Memory, MemoryPoint, NodeMemory, Report, TargetKind, TargetRun};
use crate::wire::admin;

/// The bench object class and the prefix of its names.
const CLASS: &str = "Bench";
/// How long the parent waits for a child's `ready` beyond the child's own
/// opening deadline (`--open-timeout`), so that a child with stragglers
/// still reports what it got.
const READY_SLACK: Duration = Duration::from_secs(60);
/// Lets the server finish whatever follows the last upgrade before measuring.
const SETTLE: Duration = Duration::from_secs(2);
const RSS_SAMPLES: usize = 3;
const RSS_SAMPLE_GAP: Duration = Duration::from_secs(1);
/// A child gives up holding this long after the parent should have released it.
const HOLD_SLACK: Duration = Duration::from_secs(120);
/// Memory samples while opening: one every twentieth of the connections.
const CURVE_STEPS: u64 = 20;
/// When the hold ends, how long the run's objects get to hibernate before
/// the whole node is sampled anyway (and the live ones noted).
const HIBERNATE_WAIT: Duration = Duration::from_secs(120);
const HIBERNATE_POLL: Duration = Duration::from_millis(500);
/// After the last object hibernated, how long the node gets to settle
/// before it is sampled: a worker hands what its objects freed back to the
/// kernel a second after the last one sleeps (README, `hibernate_after`).
const AFTER_HIBERNATION: Duration = Duration::from_secs(3);
/// Less RSS growth than this per connection is not a measurement but a
/// server reusing what an earlier run freed. A fresh node holding a
/// million idle sockets without attachments grows 240 B per socket (its
/// slab entry, its place in the object's list), so the bar is below that.
const IMPLAUSIBLE_BYTES_PER_CONNECTION: f64 = 128.0;

/// `loadtest idle` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleOptions {
    pub common: Common,
    pub connections: u64,
    pub rooms: u32,
    pub attach_bytes: usize,
    pub hold: Duration,
    /// How long each child keeps opening before it gives up on the rest.
    pub open_timeout: Duration,
    /// Sockets of the ping probe during the hold (0: no probe).
    pub probe_sockets: u32,
    /// Pings per second the probe sends over all its sockets.
    pub probe_rate: f64,
}

/// Splits a run against `url` over child processes, or says why it cannot be.
pub fn plan(opts: &IdleOptions, url: &str, connections: u64) -> Result<Vec<ClientOptions>, String> {
    if opts.rooms == 0 {
        return Err("--rooms must be at least 1".into());
    }
    let shares = fleet::split(connections, opts.common.processes_for(connections))?;
    let hold_deadline = opts.open_timeout
        + READY_SLACK
        + SETTLE
        + RSS_SAMPLE_GAP * RSS_SAMPLES as u32
        + opts.hold
        + HIBERNATE_WAIT
        + HOLD_SLACK;
    Ok(shares
        .into_iter()
        .map(|share| ClientOptions {
            url: url.to_string(),
            room_prefix: ROOM_PREFIX.to_string(),
            rooms: opts.rooms,
            first_index: share.first_index,
            connections: share.connections,
            attach_bytes: opts.attach_bytes,
            source_ip: share.source_ip,
            concurrency: opts.common.concurrency,
            open_deadline: opts.open_timeout,
            hold_deadline,
        })
        .collect())
}

/// Runs the whole measurement as the parent.
pub fn run(opts: &IdleOptions) -> Result<Report, String> {
    // A run that cannot be split is a flag problem: say so before anything starts.
    plan(opts, &opts.common.url, opts.connections)?;
    let targets = for_each_target(&opts.common, |server, run| run_target(opts, server, run));
    Ok(Report {
        scenario: "idle".into(),
        title: "memory per idle WebSocket".into(),
        unix_time: unix_time(),
        settings: vec![
            ("connections".into(), opts.connections.to_string()),
            ("rooms".into(), opts.rooms.to_string()),
            ("attach bytes".into(), opts.attach_bytes.to_string()),
            (
                "processes".into(),
                opts.common.processes_for(opts.connections).to_string(),
            ),
            ("hold".into(), format!("{} s", opts.hold.as_secs_f64())),
            (
                "ping probe".into(),
                if opts.probe_sockets == 0 {
                    "none".into()
                } else {
                    format!(
                        "{} sockets, {} pings/s during the hold",
                        opts.probe_sockets, opts.probe_rate
                    )
                },
            ),
        ],
        host: opts.common.host(),
        targets,
        notes: vec![
            "kernel figures (Slab, TCP buffer pages) are machine-wide and count both ends of \
             each loopback connection"
                .into(),
            "RSS growth is only meaningful against a freshly started server: memory an earlier \
             run freed is reused and hides the cost (bench.sh restarts Torpor for each run; \
             the baselines are started fresh by loadtest)"
                .into(),
        ],
        ..Report::default()
    }
    .finish())
}

fn run_target(opts: &IdleOptions, server: &mut Server, run: &mut TargetRun) -> Result<(), String> {
    let (connections, note) = opts.common.connections_for(server.kind, opts.connections);
    run.notes.extend(note);
    let plan = plan(opts, &server.url, connections)?;
    let pids = server.memory_pids()?;
    if pids.is_empty() {
        return Err("no server process to measure (no edge running?)".into());
    }
    let rss_before = server.rss_bytes(&pids)?;
    // The whole node is a second figure beside the edges': a node that
    // cannot be listed costs the run that figure, not the run.
    let node_before = node_memory(server, &pids)
        .map_err(|e| run.notes.push(format!("whole node not measured: {e}")))
        .ok();
    let node_rss_before = node_before
        .as_ref()
        .map(|processes| processes.iter().map(|p| p.rss_bytes).sum());
    // Only a node that could be listed before is followed as it fills.
    let node_rss = |server: &Server| -> Option<u64> {
        node_rss_before?;
        let processes = node_memory(server, &pids).ok()?;
        Some(processes.iter().map(|p| p.rss_bytes).sum())
    };
    let kernel_before = kernel::read()?;
    eprintln!(
        "loadtest: {} rss {:.1} MiB (pids {pids:?}); opening {connections} connections over {} rooms from {} processes",
        server.kind.name(),
        crate::report::text::mib(rss_before),
        opts.rooms,
        plan.len()
    );
    let mut memory = Memory {
        pids: pids.clone(),
        attach_bytes: opts.attach_bytes,
        rss_before_bytes: rss_before,
        kernel_before,
        curve: vec![MemoryPoint {
            connections: 0,
            rss_bytes: rss_before,
            slab_bytes: kernel_before.slab_bytes,
            node_rss_bytes: node_rss_before,
        }],
        hold_seconds: opts.hold.as_secs_f64(),
        node: node_rss_before.map(|rss_before_bytes| NodeMemory {
            rss_before_bytes,
            ..NodeMemory::default()
        }),
        ..Memory::default()
    };

    let args: Vec<Vec<String>> = plan.iter().map(ClientOptions::to_args).collect();
    let mut fleet = Fleet::spawn(
        "idle-client",
        &args,
        opts.common.placement.client_cpus.as_deref(),
    )?;
    let mut next_mark = 1;
    let ready_timeout = opts.open_timeout + READY_SLACK;
    let open = open_fleet_within(&mut fleet, connections, server, ready_timeout, |opened| {
        // A sample each time another tenth is open (RSS from /proc is cheap).
        if next_mark < CURVE_STEPS && opened * CURVE_STEPS >= next_mark * connections {
            while next_mark < CURVE_STEPS && opened * CURVE_STEPS >= next_mark * connections {
                next_mark += 1;
            }
            if let (Ok(rss_bytes), Ok(k)) = (server.rss_bytes(&pids), kernel::read()) {
                memory.curve.push(MemoryPoint {
                    connections: opened,
                    rss_bytes,
                    slab_bytes: k.slab_bytes,
                    node_rss_bytes: node_rss(server),
                });
            }
        }
    })?;
    let opened = open.opened;
    eprintln!(
        "loadtest: opened {opened} of {connections} in {:.2} s ({} failed); settling {} s",
        open.seconds,
        open.failed,
        SETTLE.as_secs()
    );
    run.open = Some(open);

    std::thread::sleep(SETTLE);
    let mut samples = Vec::with_capacity(RSS_SAMPLES);
    for i in 0..RSS_SAMPLES {
        if i > 0 {
            std::thread::sleep(RSS_SAMPLE_GAP);
        }
        samples.push(server.rss_bytes(&pids)?);
    }
    memory.rss_after_bytes = rss::median(&samples).unwrap_or(0);
    memory.rss_after_samples_bytes = samples;
    memory.kernel_after = kernel::read()?;
    memory.curve.push(MemoryPoint {
        connections: opened,
        rss_bytes: memory.rss_after_bytes,
        slab_bytes: memory.kernel_after.slab_bytes,
        node_rss_bytes: node_rss(server),
    });
    memory.server_connections = server
        .admin
        .and_then(|admin| server_connections(admin, opts.rooms));
    if let Some(open) = run.open.as_mut() {
        open.client_rss_bytes = fleet.rss_total();
    }
    eprintln!("loadtest: holding {:.1} s", opts.hold.as_secs_f64());
    let probe = (opts.probe_sockets > 0 && opts.probe_rate > 0.0).then(|| {
        probe::start(
            probe::ProbePlan {
                url: server.url.clone(),
                sockets: opts.probe_sockets,
                rooms: opts.rooms,
                per_second: opts.probe_rate,
                duration: opts.hold,
            },
            opened,
        )
    });
    std::thread::sleep(opts.hold);
    if let Some(probe) = probe {
        // The probe ends at its own deadline, the end of the hold.
        match probe.join() {
            Ok(phase) => {
                if let Some(l) = &phase.latency {
                    eprintln!(
                        "loadtest: held-ping {} pings, {} errors, p50 {:.2} ms, p99 {:.2} ms",
                        phase.operations, phase.errors, l.summary.p50_ms, l.summary.p99_ms
                    );
                }
                run.phases.push(phase);
            }
            Err(_) => run.notes.push("the ping probe panicked".into()),
        }
    }
    let live_objects = server
        .admin
        .and_then(|admin| wait_for_hibernation(admin, opts.rooms));
    if live_objects == Some(0) {
        std::thread::sleep(AFTER_HIBERNATION);
    }
    // The edges and the whole node at the same moment, the clients still
    // holding every socket.
    memory.rss_end_of_hold_bytes = server.rss_bytes(&pids)?;
    let node_end = node_rss_before.map(|_| node_memory(server, &pids));
    fleet.shutdown();
    match node_end {
        Some(Ok(processes)) => {
            if let Some(node) = memory.node.as_mut() {
                node.processes_end_of_hold = processes;
                node.live_objects_end_of_hold = live_objects;
            }
        }
        Some(Err(e)) => {
            run.notes.push(format!("whole node not measured: {e}"));
            memory.node = None;
        }
        None => {}
    }
    if let Some(live) = live_objects.filter(|n| *n > 0) {
        run.notes.push(format!(
            "{live} objects were still live {} s after the hold: the whole-node figure \
             includes them (hibernate_after longer than the hold and the wait?)",
            HIBERNATE_WAIT.as_secs()
        ));
    }
    memory.derive(opened);
    if opened > 0 && memory.rss_per_connection < IMPLAUSIBLE_BYTES_PER_CONNECTION {
        run.notes.push(format!(
            "only {:.0} bytes of RSS per connection: the server was probably not fresh \
             (restart it before measuring memory)",
            memory.rss_per_connection
        ));
    }
    run.memory = Some(memory);
    Ok(())
}

/// Every process of the server with its RSS: Torpor's whole node, re-listed
/// now (workers come and go), the baseline's one process, or an external
/// server's process tree, re-listed too.
fn node_memory(server: &Server, pids: &[u32]) -> Result<Vec<ProcessMemory>, String> {
    let listed;
    let pids = if server.kind == TargetKind::External {
        listed = server.memory_pids()?;
        &listed[..]
    } else {
        pids
    };
    match server.admin {
        Some(admin) => node::memory(admin),
        None => pids
            .iter()
            .map(|&pid| {
                Ok(ProcessMemory {
                    role: "server".into(),
                    pid,
                    rss_bytes: rss::rss_bytes(pid)?,
                })
            })
            .collect(),
    }
}

/// Waits (at most [`HIBERNATE_WAIT`]) until no object of the run's rooms is
/// live, and returns how many still are; `None` (with a note on stderr) if
/// the admin API cannot say.
fn wait_for_hibernation(admin: SocketAddr, rooms: u32) -> Option<u64> {
    let deadline = Instant::now() + HIBERNATE_WAIT;
    let mut announced = false;
    loop {
        let mut live = 0;
        for room in 0..rooms {
            match admin::object_usage(admin, CLASS, &format!("{ROOM_PREFIX}{room}")) {
                Ok(u) => live += u64::from(u.active),
                Err(e) => {
                    eprintln!("note: cannot tell whether the objects hibernated: {e}");
                    return None;
                }
            }
        }
        if live == 0 || Instant::now() >= deadline {
            return Some(live);
        }
        if !announced {
            eprintln!("loadtest: waiting for {live} live objects to hibernate");
            announced = true;
        }
        std::thread::sleep(HIBERNATE_POLL);
    }
}

/// Torpor's own count of sockets over all rooms; `None` (with a note on
/// stderr) if the admin API cannot say, since it only cross-checks `opened`.
fn server_connections(admin: SocketAddr, rooms: u32) -> Option<u64> {
    let mut total = 0;
    for room in 0..rooms {
        match admin::object_usage(admin, CLASS, &format!("{ROOM_PREFIX}{room}")) {
            Ok(u) => total += u.connections,
            Err(e) => {
                eprintln!("note: server connection count unavailable: {e}");
                return None;
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `processes`: `None` for `--processes auto`.
    fn opts(connections: u64, processes: Option<u32>) -> IdleOptions {
        IdleOptions {
            common: Common {
                processes,
                ..Common::defaults()
            },
            connections,
            rooms: 100,
            attach_bytes: 0,
            hold: Duration::from_secs(10),
            open_timeout: Duration::from_secs(240),
            probe_sockets: 8,
            probe_rate: 100.0,
        }
    }

    #[test]
    fn a_hundred_thousand_split_over_auto_processes() {
        let o = opts(100_000, None);
        let plan = plan(&o, "ws://127.0.0.1:18787", o.connections).unwrap();
        assert_eq!(plan.len(), 7);
        assert!(plan.iter().all(|c| c.connections < 19_000));
        assert_eq!(plan.iter().map(|c| c.connections).sum::<u64>(), 100_000);
        assert_eq!(plan[6].source_ip.to_string(), "127.0.0.16");
        assert!(plan[0].hold_deadline > o.hold);
    }

    #[test]
    fn too_few_processes_say_how_many() {
        let o = opts(100_000, Some(5));
        let err = plan(&o, "ws://x:1", o.connections).unwrap_err();
        assert!(err.contains("raise --processes to at least 6"), "{err}");
    }

    #[test]
    fn child_flags_round_trip_through_the_command_line() {
        let o = opts(1000, Some(2));
        let child = plan(&o, "ws://127.0.0.1:18787", 1000).unwrap().remove(1);
        let args = child.to_args();
        assert_eq!(args[0], "--url");
        assert!(args.windows(2).any(|w| w == ["--source-ip", "127.0.0.11"]));
        assert!(args.windows(2).any(|w| w == ["--first-index", "500"]));
        assert!(args.windows(2).any(|w| w
            == [
                "--hold-deadline",
                format!("{}ms", child.hold_deadline.as_millis()).as_str()
            ]));
    }
}
