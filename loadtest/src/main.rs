//! `loadtest`: Torpor's load generator, and the baseline servers it is
//! measured against. Scenarios: `idle` (memory per idle connection), `ping`
//! (auto-response round trips), `echo` (round trips through a live object),
//! `broadcast` (one message to every socket of an object), `churn`
//! (connects and disconnects per second), `create` (new objects per
//! second over HTTP), `wake` (a hibernated object's first reply), `alarms`
//! (how late alarms fire), `reload` (the workers, or the edges, swapped for
//! a new binary under load) and `attack` (a fresh client's
//! first echo while one client process attacks the node). `baseline-server` is the
//! plain tokio-tungstenite server the scenarios compare Torpor with, and
//! `idle-client`/`traffic-client`/`reload-client` are the hidden child
//! processes the scenarios spawn.
//!
//! This file only parses flags and dispatches; each scenario has its own
//! file, the shared parent side is `scenario.rs`, and the report (model, text,
//! HTML) is `report/`.
// A load generator's results are its output, and stdout is also how a client
// process reports to its parent, so printing is the point here.
#![allow(clippy::print_stdout)]

mod baseline;
mod child;
mod flags;
mod fleet;
mod measure;
mod report;
mod scenarios;
mod wire;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use child::idle::ClientOptions;
use child::protocol::{Kind, TrafficOptions};
use child::reload_protocol::ReloadClientOptions;
use flags::Flags;
use fleet::run::Common;
use report::model::Report;
use scenarios::alarms::{self, AlarmOptions, Variant};
use scenarios::attack::{self, AttackKind, AttackOptions};
use scenarios::broadcast::{self, BroadcastOptions};
use scenarios::churn::{self, ChurnOptions};
use scenarios::create::{self, CreateOptions};
use scenarios::idle::{self, IdleOptions};
use scenarios::reload::{self, Deploy, ReloadOptions};
use scenarios::rtt::{self, RttOptions};
use scenarios::wake::{self, Probe, WakeOptions};

const USAGE: &str = "\
usage: loadtest <scenario> [flags]

Scenarios run against a Torpor node that is already running (--url, --admin)
with `bench_routes = true` in its config (they speak the Bench protocol) and,
with --baselines, also against two baseline servers that loadtest starts
itself (`loadtest baseline-server --mode default|tuned`: tokio-tungstenite,
one task per connection, default config and a 4 KiB read buffer), so every
figure has the baselines' beside it from the same run. Results go to stdout
as a summary (p50, p90, p99, p99.9, max, throughput, server CPU-seconds per
million operations, Torpor/baseline ratios) and, with --json PATH, to PATH
and a self-contained HTML report beside it (PATH with .html).

Flags of every traffic scenario (idle, ping, echo, broadcast, churn):
  --url URL             Torpor's ws://host:port [ws://127.0.0.1:8787]
  --admin ADDR          Torpor's admin host:port [127.0.0.1:9090]
  --baselines           run against torpor, then the default and the tuned
                        baseline (the same as --target all)
  --target T            torpor, default, tuned or all [torpor]
  --processes N|auto    client processes, process i connecting from
                        127.0.0.(10+i); each holds under 19000 sockets (20000
                        fds per process) [auto: one per 15000 connections;
                        churn: 1]
  --concurrency N       connections being opened at once per process [256]
  --server-cpu CPUS     taskset -c list for the baseline servers, or none [0]
  --client-cpu CPUS     taskset -c list for the client processes, or none [1]
                        (pin Torpor yourself: taskset -c 0 torpor ...)
  --baseline-threads N  tokio worker threads of the baselines [their default, 1]
  --json PATH           write the report as JSON, and PATH.html beside it
A baseline is one process, so it gets at most 19000 connections (noted).
Server CPU is utime+stime from /proc: Torpor's supervisor, edges and workers
(from /admin/node, re-read every second), or the baseline's one process.

loadtest idle [flags]
  Opens idle WebSockets to /bench/idle-<room>, holds them without a byte
  sent, and reports server RSS per connection (Torpor: all edges summed),
  kernel Slab and TCP buffer memory per connection (/proc/meminfo,
  /proc/net/sockstat), time to open them all, and RSS against connections
  (sampled every 10 %).
  --connections N       in total [15000]
  --rooms N             Bench objects to spread them over [100]
  --attach-bytes N      send attach:<N x 'a'> on each and await ok; 0 = none [0]
  --hold DURATION       hold after measuring, e.g. 10s, 500ms, 2m [10s]

loadtest ping [flags]
  C connections over R rooms (/bench/ping-<room>) send `ping`; Torpor answers
  with the object's auto-response at the edge (no wake: the objects' wakes
  and events are read before and after, and must not move), a baseline with a
  plain `pong`. After a warm-up, phase `max`: a closed loop, --window pings
  outstanding per connection, for --duration (pings/s). Phase `half`: an
  open loop at half that rate (each target at half its own max), paced
  evenly over the connections, --window pings per write, for --duration
  (latency); with --rate, phase `rate` at that rate for every target instead.
  --connections N       [1000]
  --rooms N             [10]
  --duration DURATION   of each phase [10s]
  --warmup DURATION     unmeasured closed loop first; 0 for none [1s]
  --window N            requests outstanding per connection in `max`, and
                        per write in the open loop [1]
  --rate N              requests per second of the open loop [half of max]
  (--message-bytes does not apply: the message is `ping`.)

loadtest echo [flags]
  As ping, with `echo:<N x 'x'>` answered by the object (live after the
  warm-up) through its worker; rooms are /bench/echo-<room>.
  --connections, --rooms, --duration, --warmup, --window, --rate as ping
  --message-bytes N     echo payload [32]

loadtest broadcast [flags]
  One object (/bench/bcast-0) with all C sockets; one of them sends
  `bcast:<seq>:<padding>`, the object sends it to every socket, sender
  included. Phase `max`: at most --window messages not yet on every socket
  (acknowledged through the parent), for --duration: deliveries/s
  (sockets x messages / first send to last receipt). Phase `fanout`: one
  message at a time (or --rate messages/s): latency from send to the last
  socket's receipt, and to the first.
  --connections N       sockets of the object [1000]
  --duration DURATION   of each phase [10s]
  --window N            messages in flight in `max` [8]
  --rate N              messages per second in `fanout` [one at a time]
  --message-bytes N     payload (at least the sequence number) [32]
  (--rooms does not apply: one object.)

loadtest churn [flags]
  For --duration, --rate connects per second (over the processes), each
  opening /bench/churn-<room>, optionally echoing once, then closing cleanly
  (close frame, the server's close frame, the server's end of the stream).
  Reports connects/s and disconnects/s achieved, handshake latency (connect
  to 101), echo and close latencies, and failures; a connect past
  --concurrency in flight in its process is skipped and counted.
  --rate N              connects per second [500]
  --duration DURATION   [10s]
  --rooms N             [10]
  --message-bytes N     one echo of N bytes per connection; 0 = none [0]
  (--connections does not apply: --rate x --duration connections are made.)

loadtest wake [flags]
  Fills Bench objects (/bench/<prefix>-<i>) with --db-mb MiB each, then times
  the first message to each after it hibernates (polling the admin API), and
  the same message again right after (warm). Torpor only.
  --url URL, --admin ADDR, --json PATH as above
  --variant V           live-worker: the worker process stays up (run the node
                        with a long worker_idle_exit); exited-worker: every
                        worker has exited (pid null in /admin/node) before
                        each wake (run it with a short one) [live-worker]
  --objects N           objects, each with one socket [1]
  --db-mb N             MiB stored in each object first, as 100 KiB puts [100]
  --samples N           wakes timed in all, round-robin over the objects [100]
  --probe echo|get      echo:x, or get:probe which also opens the database [echo]
  --prefix NAME         object name prefix [wake]

loadtest alarms [flags]
  Sets --count alarms --delay-ms ahead, at most one per object at a time (in
  rounds), and reports how late each alarm:0 arrives after send time + delay.
  Torpor only.
  --url URL, --admin ADDR, --json PATH as above
  --objects N           objects, each with one socket [10]
  --count N             alarms in all [100]
  --delay-ms N          how far ahead each alarm is set [1000]
  --variant V           live: no check; hibernated: every object shows
                        active=false before due; cold: every worker has exited
                        (pid null in /admin/node) before due [live]
  --prefix NAME         object name prefix [alarm]

loadtest reload [flags]
  Swaps the node's workers for another binary (torpor reload), or with
  --deploy upgrade its edges (torpor upgrade), while
  --connections sockets over --rooms Bench objects (/bench/<prefix><i>)
  stay open: objects 0..--busy-rooms carry traffic the whole time, the
  others are quiet and hibernated (polled on the admin API) when the swap
  begins. In a busy object every socket but the first sends `echo:e<n>`,
  its next one --interval after the last (at most --window unanswered); the
  first socket sends `bcast:b<n>` every --bcast-every. Checked: no socket
  closes, every echo is answered exactly once and in order, every socket
  gets every broadcast of its object exactly once, and after the swap every
  object answers `pid` from a new worker (and `version` with
  --expect-version), or after an upgrade every edge runs in a new process
  and the old ones have exited. Measured: the node's report (took_ms, per
  worker drain_ms and gap_ms, or upgrade_ms and per edge took_ms), and
  echo latency and CPU in phases
  `warmup`, `before`, `during` (reload request → answer + --tail) and
  `after`. Torpor only.
  --url, --admin, --processes, --concurrency, --client-cpu, --json as above
  --connections N       [10000]
  --rooms N             [20]
  --busy-rooms N        [half of --rooms]
  --echoers-per-room N  echoing sockets per busy object [all but the first]
  --interval DURATION   between one socket's echoes [100ms]
  --window N            echoes unanswered per socket [1]
  --bcast-every DURATION  [100ms]
  --warmup DURATION     traffic before `before` starts (not a baseline) [3s]
  --before DURATION     traffic before the swap [10s]
  --tail DURATION       `during` goes on this long after the answer [1s]
  --after DURATION      traffic after the swap [10s]
  --deploy KIND         reload (the workers) or upgrade (the edges) [reload]
  --reload-cmd CMD      run with sh -c to swap (its stdout's last JSON line
                        is the report) [POST /admin/reload or /admin/upgrade
                        on --admin]
  --expect-version V    what `version` must answer after a reload
  --prefix NAME         object name prefix [reload-]
  --hibernate-timeout DURATION  for the quiet objects to hibernate [60s]

loadtest attack [flags]
  One client process attacks the node from 127.0.0.2 with --connections
  connections of one --kind; once they are open (at most 60 s), a fresh
  client from 127.0.0.3 tries every 100 ms to upgrade on /echo/<name> and
  get its first echo back, each try failing at 5 s (the default 100 tries
  take 10 s, the shipped handshake_timeout, so stalled connections the node
  admitted are still held during them). Reported: the attack's connects
  (and per second), connections open at once at the peak (TCP, so those
  waiting for their 429 count), held to the end, and how the node ended the
  others; the fresh client's successes, failures by kind (refused, 429,
  timeout, ...) and p50/p99/max connect → first echo; the node's RSS and
  open fds (/proc/PID/fd), its whole process tree summed (/admin/node's
  processes and every descendant of the supervisor), before, at the peak,
  at the end of the attack and after it closed; with --data-dir, the files
  and bytes under the node's data_dir before and after. Exit status 1
  unless every try echoed with p99 <= 100 ms (the issue's goal). Torpor
  only; start the node yourself (loadtest/attack.sh starts one per run and
  runs every kind). With the shipped config, a connection past
  limits.max_frontdoor_connections_per_address (256) from one address is
  answered 429 at once, and the front door has 4096 slots
  (limits.max_frontdoor_connections), so most of an attack's connections
  are refused, not held.
  --url URL, --admin ADDR, --json PATH as above
  --kind K              stalled-heads: a partial request head
                        (GET /echo/x ... Host), then one byte every 3 s;
                        stalled-bodies: a whole POST /counter/<n> head with
                        Content-Length: 9 and never the body;
                        keepalive-idle: one GET /counter/<n> with
                        keep-alive, the answer read, then silence; opened
                        again 1 s after the node closes it;
                        ping-flood: sockets upgraded on /echo/<run>-flood-<n>
                        with a small SO_RCVBUF (--rcvbuf) write empty pings
                        without pause and never read, so the node's pongs
                        back up; reopened 1 s after the node ends one;
                        fast-sender: sockets upgraded on /echo/<run>-fast-<n>
                        write --frame-bytes binary frames back to back,
                        reading the echoes as they come (or, --read false,
                        never); reopened 1 s after the node ends one;
                        object-names: --count GETs of /presence/<run>-<n>,
                        a new object each (a Presence room, which never
                        stores), one at a time per keep-alive connection;
                        counters: --count POSTs to /counter/<run>-<n>, a new
                        Counter each, which stores (a database file);
                        matches: --matches GameRelay matches
                        (/games/<run>-m<m>?tick_ms=N) of --players sockets,
                        each player sending a 16-byte input every 500 ms so
                        its match stays active and ticks; reported: ticks
                        per second per player and the gap between two ticks
                        [stalled-heads]
  --connections N       at most 19000 (one process, 20000 fds) [10000;
                        ping-flood 20; fast-sender 1; object-names and
                        counters 32 keep-alive connections; not for matches]
  --count N             object-names, counters: requests in all, at most
                        10,000,000; the attack ends when they are answered
                        or at --duration, whichever is first, and the fresh
                        client's tries end with it [object-names 1000000;
                        counters 100000]
  --duration DURATION   of the attack, at most 10m (1h with a --count);
                        unless it has a --count, it lasts until the last
                        try is over if that is later [30s]
  --tries N             fresh client tries, 100 ms apart, at most 6000 [100]
  --concurrency N       attack connects in flight at once [256]
  --name NAME           the fresh client's object, /echo/<name> [attack-probe]
  --data-dir PATH       the node's data_dir, to count its files [not counted]
  --matches N           matches: how many [50]
  --players N           matches: sockets per match [2]
  --tick-ms N           matches: tick interval asked for, 10 to 10000 [10]
  --rcvbuf BYTES        ping-flood: each socket's SO_RCVBUF [4096]
  --frame-bytes N       fast-sender: payload of each frame, at most 32 MiB
                        (over the node's max_message_bytes, 1 MiB shipped,
                        the node closes with 1009) [262144]
  --read true|false     fast-sender: read the echoes [true]

loadtest attack-table RESULT.json...
  The \"Under attack\" table of BENCHMARKS.md, in markdown, from saved attack
  runs: a row per kind, each cell the median of that kind's runs
  (loadtest/attack.sh prints it).

loadtest create [flags]
  New objects per second through the HTTP front door: --connections
  keep-alive connections in a closed loop, each request to --path with
  {n} replaced by a name no request used before (this run, connection and
  sequence number), so each answer is an object created. Reports 2xx
  answers/s (objects created), all answers by status, failures, and
  latency p50/p99/max. One client thread; Torpor only, any routes (no
  bench_routes needed). Pin it apart from the node (taskset -c 1).
  --url URL             ws:// or host:port of the node [ws://127.0.0.1:8787]
  --path PATH           [/presence/{n}]; /counter/{n} with --method POST
                        stores a value in each new object
  --method M            [GET]
  --connections N       [32]
  --duration DURATION   measured [10s]
  --warmup DURATION     unmeasured first [1s]
  --json PATH           also write the figures as JSON

loadtest report RESULT.json
  Prints the summary of a saved run and writes its HTML report again.

loadtest medians RESULT.json...
  The median of every figure (and ratio) over several runs of one scenario,
  with each run's value beside it (loadtest/bench.sh prints these).

loadtest baseline-server [flags]
  The baseline server on its own; see `loadtest baseline-server --help`.

Exit status: 0 clean; 1 a run failed or lost connections (the report is
still written); 64 bad flags.
";

/// Prints to stdout. A reader that went away (`| head`) is not a failure of
/// the run, whose report may still be going to a file, so write errors are
/// dropped rather than panicking as `println!` would.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Exit code for bad flags (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("loadtest: {msg}\n\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::BaselineUsage(msg)) => {
            eprintln!("loadtest baseline-server: {msg}\n\n{}", baseline::USAGE);
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Run(msg)) => {
            eprintln!("loadtest: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug)]
enum Failure {
    Usage(String),
    BaselineUsage(String),
    Run(String),
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    let usage = Failure::Usage;
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        if let Some(section) = usage_of(command) {
            say(section);
            return Ok(());
        }
    }
    match command.as_str() {
        "idle" => {
            let opts = idle_options(rest).map_err(usage)?;
            // A run that cannot be split over the processes is a flag problem.
            idle::plan(&opts, &opts.common.url, opts.connections).map_err(Failure::Usage)?;
            finish(
                idle::run(&opts).map_err(Failure::Run)?,
                opts.common.json.as_deref(),
            )
        }
        "ping" | "echo" => {
            let kind = if command == "ping" {
                Kind::Ping
            } else {
                Kind::Echo
            };
            let opts = rtt_options(kind, rest).map_err(usage)?;
            fleet::split(
                opts.connections,
                opts.common.processes_for(opts.connections),
            )
            .map_err(Failure::Usage)?;
            finish(
                rtt::run(&opts).map_err(Failure::Run)?,
                opts.common.json.as_deref(),
            )
        }
        "broadcast" => {
            let opts = broadcast_options(rest).map_err(usage)?;
            fleet::split(
                opts.connections,
                opts.common.processes_for(opts.connections),
            )
            .map_err(Failure::Usage)?;
            finish(
                broadcast::run(&opts).map_err(Failure::Run)?,
                opts.common.json.as_deref(),
            )
        }
        "churn" => {
            let opts = churn_options(rest).map_err(usage)?;
            finish(
                churn::run(&opts).map_err(Failure::Run)?,
                opts.common.json.as_deref(),
            )
        }
        "wake" => {
            let opts = wake_options(rest).map_err(usage)?;
            finish(
                wake::run(&opts).map_err(Failure::Run)?,
                opts.json.as_deref(),
            )
        }
        "alarms" => {
            let opts = alarm_options(rest).map_err(usage)?;
            let report = alarms::run(&opts).map_err(Failure::Run)?;
            let not_ready = report
                .targets
                .first()
                .and_then(|t| t.phase("lateness"))
                .and_then(|p| p.counters.get("rounds_not_ready").copied())
                .unwrap_or(0.0);
            finish(report, opts.json.as_deref())?;
            // As with idle: the figures stand, but a round that was not in
            // the state it claims to measure is not a clean run.
            if not_ready > 0.0 {
                return Err(Failure::Run(format!(
                    "{not_ready} rounds were not {} before their alarms came due",
                    opts.variant.name()
                )));
            }
            Ok(())
        }
        "reload" => {
            let opts = reload_options(rest).map_err(usage)?;
            fleet::split(
                opts.connections,
                opts.common.processes_for(opts.connections),
            )
            .map_err(Failure::Usage)?;
            let (report, failures) = reload::run(&opts).map_err(Failure::Run)?;
            finish(report, opts.common.json.as_deref())?;
            // The figures stand, but a swap that lost anything failed.
            if !failures.is_empty() {
                return Err(Failure::Run(failures.join("; ")));
            }
            Ok(())
        }
        "attack" => {
            let opts = attack_options(rest).map_err(usage)?;
            let report = attack::run(&opts).map_err(Failure::Run)?;
            let met = attack::goal_met(&report);
            finish(report, opts.json.as_deref())?;
            // The figures stand, but a missed goal is not a clean run.
            if !met {
                return Err(Failure::Run(
                    "the fresh client missed the goal (see the goal note)".into(),
                ));
            }
            Ok(())
        }
        "attack-table" => {
            if rest.is_empty() {
                return Err(Failure::Usage(
                    "attack-table takes one or more JSON files".into(),
                ));
            }
            let reports = rest
                .iter()
                .map(|p| Report::read(Path::new(p)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::Run)?;
            say(&attack::table::render(&reports).map_err(Failure::Run)?);
            Ok(())
        }
        "create" => {
            let opts = create_options(rest).map_err(usage)?;
            let report = create::run(&opts).map_err(Failure::Run)?;
            say(&report.to_string());
            if let Some(path) = &opts.json {
                let json = serde_json::to_string_pretty(&report)
                    .map_err(|e| Failure::Run(format!("json: {e}")))?;
                std::fs::write(path, json)
                    .map_err(|e| Failure::Run(format!("write {}: {e}", path.display())))?;
            }
            Ok(())
        }
        "report" => {
            let [path] = rest else {
                return Err(Failure::Usage("report takes one JSON file".into()));
            };
            let path = Path::new(path);
            let report = Report::read(path).map_err(Failure::Run)?;
            say(&report.to_string());
            let html = path.with_extension("html");
            std::fs::write(&html, report::html::render(&report))
                .map_err(|e| Failure::Run(format!("write {}: {e}", html.display())))?;
            say(&format!("html written to {}", html.display()));
            Ok(())
        }
        "medians" => {
            if rest.is_empty() {
                return Err(Failure::Usage(
                    "medians takes one or more JSON files".into(),
                ));
            }
            let reports = rest
                .iter()
                .map(|p| Report::read(Path::new(p)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::Run)?;
            say(&report::medians::render(&reports));
            Ok(())
        }
        "baseline-server" => baseline::run(rest).map_err(|e| match e {
            baseline::BaselineError::Usage(msg) => Failure::BaselineUsage(msg),
            baseline::BaselineError::Run(msg) => Failure::Run(msg),
        }),
        "idle-client" => {
            let opts = client_options(rest).map_err(usage)?;
            child::idle::run_client(&opts).map_err(Failure::Run)
        }
        "traffic-client" => {
            let opts = traffic_options(rest).map_err(usage)?;
            child::traffic::run_child(&opts).map_err(Failure::Run)
        }
        "reload-client" => {
            let opts = reload_client_options(rest).map_err(usage)?;
            child::reload::run_child(&opts).map_err(Failure::Run)
        }
        "help" | "-h" | "--help" => {
            say(USAGE.trim_end());
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

/// The part of [`USAGE`] about `command` (from its `loadtest <command>`
/// line to the next blank line before another command), if it has one.
fn usage_of(command: &str) -> Option<&'static str> {
    let head = format!("\nloadtest {command} ");
    let start = USAGE.find(&head)? + 1;
    let section = &USAGE[start..];
    let end = section
        .find("\n\nloadtest ")
        .or_else(|| section.find("\n\nExit status"))?;
    Some(&section[..end])
}

/// Prints the summary, writes JSON and HTML if asked, and fails the exit
/// status if the run had problems.
fn finish(report: Report, json: Option<&Path>) -> Result<(), Failure> {
    say(&report.to_string());
    if let Some(path) = json {
        let html = report::save::write(&report, path).map_err(Failure::Run)?;
        say(&format!(
            "json written to {}, html to {}",
            path.display(),
            html.display()
        ));
    }
    // The figures are still reported, but a run with failures is not a
    // clean measurement, and scripts should be able to tell.
    let problems = report.problems();
    if !problems.is_empty() {
        return Err(Failure::Run(problems.join("; ")));
    }
    Ok(())
}

fn idle_options(args: &[String]) -> Result<IdleOptions, String> {
    let mut flags = Flags::parse(args)?;
    for flag in ["duration", "rate", "message-bytes"] {
        flags.refuse(flag, "idle connections send nothing")?;
    }
    let opts = IdleOptions {
        common: Common::parse(&mut flags)?,
        connections: flags.positive("connections", 15_000)?,
        rooms: flags.positive("rooms", 100)?,
        attach_bytes: flags.number("attach-bytes", 0)?,
        hold: flags.duration("hold", Duration::from_secs(10))?,
    };
    flags.finish()?;
    Ok(opts)
}

fn rate(flags: &mut Flags, name: &str) -> Result<Option<f64>, String> {
    flags
        .optional_number::<f64>(name)?
        .map(|r| {
            if r > 0.0 && r.is_finite() {
                Ok(r)
            } else {
                Err(format!("--{name} must be a positive number"))
            }
        })
        .transpose()
}

fn rtt_options(kind: Kind, args: &[String]) -> Result<RttOptions, String> {
    let mut flags = Flags::parse(args)?;
    if kind == Kind::Ping {
        flags.refuse(
            "message-bytes",
            "ping's message is always `ping` (the auto-response matches it exactly)",
        )?;
    }
    let opts = RttOptions {
        common: Common::parse(&mut flags)?,
        kind,
        connections: flags.positive("connections", 1000)?,
        rooms: flags.positive("rooms", 10)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        warmup: flags.duration("warmup", Duration::from_secs(1))?,
        window: flags.positive("window", 1)?,
        rate: rate(&mut flags, "rate")?,
        message_bytes: flags.number("message-bytes", 32)?,
    };
    flags.finish()?;
    if opts.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(opts)
}

fn broadcast_options(args: &[String]) -> Result<BroadcastOptions, String> {
    let mut flags = Flags::parse(args)?;
    flags.refuse("rooms", "a broadcast goes to the sockets of one object")?;
    let opts = BroadcastOptions {
        common: Common::parse(&mut flags)?,
        connections: flags.positive("connections", 1000)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        window: flags.positive("window", 8)?,
        rate: rate(&mut flags, "rate")?,
        message_bytes: flags.number("message-bytes", 32)?,
    };
    flags.finish()?;
    if opts.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(opts)
}

fn churn_options(args: &[String]) -> Result<ChurnOptions, String> {
    let mut flags = Flags::parse(args)?;
    flags.refuse(
        "connections",
        "churn makes --rate x --duration connections, a few at a time",
    )?;
    let opts = ChurnOptions {
        common: Common::parse(&mut flags)?,
        rooms: flags.positive("rooms", 10)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        rate: rate(&mut flags, "rate")?.unwrap_or(500.0),
        message_bytes: flags.number("message-bytes", 0)?,
    };
    flags.finish()?;
    if opts.duration.is_zero() {
        return Err("--duration must be more than 0".into());
    }
    Ok(opts)
}

fn wake_options(args: &[String]) -> Result<WakeOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = WakeOptions {
        url: flags.string("url", "ws://127.0.0.1:8787")?,
        admin: flags.string("admin", "127.0.0.1:9090")?,
        objects: flags.number("objects", 1)?,
        db_mb: flags.number("db-mb", 100)?,
        samples: flags.number("samples", 100)?,
        probe: Probe::parse(&flags.string("probe", "echo")?)
            .map_err(|e| format!("--probe: {e}"))?,
        variant: wake::Variant::parse(&flags.string("variant", "live-worker")?)
            .map_err(|e| format!("--variant: {e}"))?,
        prefix: flags.string("prefix", "wake")?,
        json: flags.path("json")?,
    };
    flags.finish()?;
    Ok(opts)
}

fn alarm_options(args: &[String]) -> Result<AlarmOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = AlarmOptions {
        url: flags.string("url", "ws://127.0.0.1:8787")?,
        admin: flags.string("admin", "127.0.0.1:9090")?,
        objects: flags.number("objects", 10)?,
        count: flags.number("count", 100)?,
        delay: Duration::from_millis(flags.number("delay-ms", 1000)?),
        variant: Variant::parse(&flags.string("variant", "live")?)
            .map_err(|e| format!("--variant: {e}"))?,
        prefix: flags.string("prefix", "alarm")?,
        json: flags.path("json")?,
    };
    flags.finish()?;
    Ok(opts)
}

fn reload_options(args: &[String]) -> Result<ReloadOptions, String> {
    let mut flags = Flags::parse(args)?;
    for flag in ["target", "baselines"] {
        flags.refuse(flag, "a reload is Torpor's alone")?;
    }
    let common = Common::parse(&mut flags)?;
    let rooms: u32 = flags.positive("rooms", 20)?;
    let opts = ReloadOptions {
        common,
        connections: flags.positive("connections", 10_000)?,
        rooms,
        busy_rooms: flags.number("busy-rooms", rooms / 2)?,
        echoers_per_room: flags.optional_number("echoers-per-room")?,
        interval: flags.duration("interval", Duration::from_millis(100))?,
        window: flags.positive("window", 1)?,
        bcast_every: flags.duration("bcast-every", Duration::from_millis(100))?,
        warmup: flags.duration("warmup", Duration::from_secs(3))?,
        before: flags.duration("before", Duration::from_secs(10))?,
        tail: flags.duration("tail", Duration::from_secs(1))?,
        after: flags.duration("after", Duration::from_secs(10))?,
        deploy: Deploy::parse(&flags.string("deploy", "reload")?)
            .map_err(|e| format!("--deploy: {e}"))?,
        reload_cmd: flags.optional_string("reload-cmd")?,
        expect_version: flags.optional_string("expect-version")?,
        prefix: flags.string("prefix", "reload-")?,
        hibernate_timeout: flags.duration("hibernate-timeout", Duration::from_secs(60))?,
    };
    flags.finish()?;
    if opts.busy_rooms > opts.rooms {
        return Err(format!(
            "--busy-rooms {} is more than --rooms {}",
            opts.busy_rooms, opts.rooms
        ));
    }
    if u64::from(opts.rooms) > opts.connections {
        return Err("--connections must be at least --rooms (one socket per object)".into());
    }
    if opts.deploy == Deploy::Upgrade && opts.expect_version.is_some() {
        return Err("--expect-version is for a reload: an upgrade keeps the workers".into());
    }
    if opts.bcast_every.is_zero() {
        return Err("--bcast-every must be more than 0".into());
    }
    Ok(opts)
}

fn attack_options(args: &[String]) -> Result<AttackOptions, String> {
    let mut flags = Flags::parse(args)?;
    let kind = AttackKind::parse(&flags.string("kind", "stalled-heads")?)
        .map_err(|e| format!("--kind: {e}"))?;
    if kind != AttackKind::PingFlood {
        flags.refuse("rcvbuf", "only ping-flood sets a receive buffer")?;
    }
    let (connections, players) = if kind == AttackKind::Matches {
        flags.refuse("connections", "matches opens --matches x --players sockets")?;
        let matches: u64 = flags.positive("matches", 50)?;
        let players: u32 = flags.positive("players", 2)?;
        (matches.saturating_mul(u64::from(players)), players)
    } else {
        for flag in ["matches", "players", "tick-ms"] {
            flags.refuse(flag, "only the matches kind has matches")?;
        }
        (
            flags.positive("connections", kind.default_connections())?,
            1,
        )
    };
    if kind.default_count().is_none() {
        flags.refuse(
            "count",
            "only object-names and counters make a count of requests",
        )?;
    }
    if kind != AttackKind::FastSender {
        flags.refuse("frame-bytes", "only fast-sender sends data frames")?;
        flags.refuse("read", "only fast-sender has replies to read")?;
    }
    let opts = AttackOptions {
        url: flags.string("url", "ws://127.0.0.1:8787")?,
        admin: flags.string("admin", "127.0.0.1:9090")?,
        kind,
        connections,
        duration: flags.duration("duration", Duration::from_secs(30))?,
        tries: flags.positive("tries", 100)?,
        concurrency: flags.positive("concurrency", 256)?,
        name: flags.string("name", "attack-probe")?,
        data_dir: flags.path("data-dir")?,
        rcvbuf_bytes: flags.positive("rcvbuf", 4096)?,
        frame_bytes: flags.positive("frame-bytes", 256 * 1024)?,
        read_replies: flags.boolean("read", true)?,
        players,
        tick_ms: flags.number("tick-ms", 10)?,
        count: match kind.default_count() {
            Some(default) => flags.positive("count", default)?,
            None => 0,
        },
        json: flags.path("json")?,
    };
    flags.finish()?;
    opts.check()?;
    Ok(opts)
}

fn create_options(args: &[String]) -> Result<CreateOptions, String> {
    let mut flags = Flags::parse(args)?;
    let url = flags.string("url", "ws://127.0.0.1:8787")?;
    let opts = CreateOptions {
        // Target::parse wants ws://; host:port alone is accepted too.
        url: if url.contains("://") {
            url
        } else {
            format!("ws://{url}")
        },
        path: flags.string("path", "/presence/{n}")?,
        method: flags.string("method", "GET")?,
        connections: flags.positive("connections", 32)?,
        duration: flags.duration("duration", Duration::from_secs(10))?,
        warmup: flags.duration("warmup", Duration::from_secs(1))?,
        json: flags.path("json")?,
    };
    flags.finish()?;
    opts.check()?;
    Ok(opts)
}

fn reload_client_options(args: &[String]) -> Result<ReloadClientOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = ReloadClientOptions {
        url: flags.required("url")?,
        room_prefix: flags.required("room-prefix")?,
        rooms: flags.required_number("rooms")?,
        busy_rooms: flags.required_number("busy-rooms")?,
        echoers_per_room: flags.required_number("echoers-per-room")?,
        first_index: flags.required_number("first-index")?,
        connections: flags.required_number("connections")?,
        source_ip: flags.required_number("source-ip")?,
        concurrency: flags.required_number("concurrency")?,
    };
    flags.finish()?;
    Ok(opts)
}

fn client_options(args: &[String]) -> Result<ClientOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = ClientOptions {
        url: flags.required("url")?,
        rooms: flags.required_number("rooms")?,
        first_index: flags.required_number("first-index")?,
        connections: flags.required_number("connections")?,
        attach_bytes: flags.required_number("attach-bytes")?,
        source_ip: flags.required_number("source-ip")?,
        concurrency: flags.required_number("concurrency")?,
        open_deadline: flags.duration("open-deadline", Duration::from_secs(240))?,
        hold_deadline: flags.duration("hold-deadline", Duration::from_secs(600))?,
    };
    flags.finish()?;
    Ok(opts)
}

fn traffic_options(args: &[String]) -> Result<TrafficOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = TrafficOptions {
        url: flags.required("url")?,
        kind: Kind::parse(&flags.required("kind")?)?,
        room_prefix: flags.required("room-prefix")?,
        rooms: flags.required_number("rooms")?,
        first_index: flags.required_number("first-index")?,
        connections: flags.required_number("connections")?,
        source_ip: flags.required_number("source-ip")?,
        concurrency: flags.required_number("concurrency")?,
        message_bytes: flags.required_number("message-bytes")?,
    };
    flags.finish()?;
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn idle_flags_take_defaults_and_both_spellings() {
        let opts = idle_options(&args(&[
            "--connections=2000",
            "--attach-bytes",
            "2000",
            "--hold",
            "1s",
        ]))
        .unwrap();
        assert_eq!(opts.connections, 2000);
        assert_eq!(opts.attach_bytes, 2000);
        assert_eq!(opts.hold, Duration::from_secs(1));
        assert_eq!(opts.common.processes, None);
        assert_eq!(opts.rooms, 100);
        assert_eq!(opts.common.targets, [report::model::TargetKind::Torpor]);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        assert!(idle_options(&args(&["--conections", "5"])).is_err());
        assert!(idle_options(&args(&["--connections", "many"])).is_err());
        assert!(idle_options(&args(&["--connections", "0"])).is_err());
        assert!(idle_options(&args(&["--rooms", "1", "--rooms", "2"])).is_err());
        assert!(idle_options(&args(&["stray"])).is_err());
        let err = idle_options(&args(&["--duration", "5s"])).unwrap_err();
        assert!(err.contains("idle connections send nothing"), "{err}");
    }

    #[test]
    fn ping_refuses_a_message_size_and_echo_takes_one() {
        let err = rtt_options(Kind::Ping, &args(&["--message-bytes", "64"])).unwrap_err();
        assert!(err.contains("always `ping`"), "{err}");
        let echo = rtt_options(
            Kind::Echo,
            &args(&[
                "--message-bytes",
                "64",
                "--rate",
                "5000",
                "--baselines",
                "--window",
                "4",
            ]),
        )
        .unwrap();
        assert_eq!(echo.message_bytes, 64);
        assert_eq!(echo.rate, Some(5000.0));
        assert_eq!(echo.window, 4);
        assert_eq!(echo.common.targets.len(), 3);
        let ping = rtt_options(Kind::Ping, &[]).unwrap();
        assert_eq!((ping.connections, ping.rooms, ping.rate), (1000, 10, None));
        assert_eq!(ping.duration, Duration::from_secs(10));
        assert!(rtt_options(Kind::Ping, &args(&["--rate", "0"])).is_err());
        assert!(rtt_options(Kind::Ping, &args(&["--rate", "-3"])).is_err());
        assert!(rtt_options(Kind::Ping, &args(&["--duration", "0s"])).is_err());
    }

    #[test]
    fn broadcast_and_churn_refuse_what_they_do_not_use() {
        let err = broadcast_options(&args(&["--rooms", "2"])).unwrap_err();
        assert!(err.contains("one object"), "{err}");
        let b = broadcast_options(&args(&["--connections", "10000", "--processes", "2"])).unwrap();
        assert_eq!((b.connections, b.window, b.rate), (10_000, 8, None));
        assert_eq!(b.common.processes, Some(2));
        let err = churn_options(&args(&["--connections", "5"])).unwrap_err();
        assert!(err.contains("--rate x --duration"), "{err}");
        let c = churn_options(&args(&["--rate", "200", "--message-bytes", "16"])).unwrap();
        assert_eq!((c.rate, c.message_bytes, c.rooms), (200.0, 16, 10));
    }

    #[test]
    fn wake_and_alarm_flags_parse() {
        let wake = wake_options(&args(&[
            "--db-mb",
            "0",
            "--probe=get",
            "--samples",
            "7",
            "--variant",
            "exited-worker",
        ]))
        .unwrap();
        assert_eq!((wake.db_mb, wake.samples, wake.objects), (0, 7, 1));
        assert_eq!(wake.probe, Probe::Get);
        assert_eq!(wake.variant, wake::Variant::ExitedWorker);
        assert_eq!(
            wake_options(&[]).unwrap().variant,
            wake::Variant::LiveWorker
        );
        assert!(wake_options(&args(&["--probe", "ping"])).is_err());
        assert!(wake_options(&args(&["--variant", "cold"])).is_err());
        assert!(wake_options(&args(&["--json"])).is_err());

        let alarms = alarm_options(&args(&["--delay-ms", "250", "--variant", "cold"])).unwrap();
        assert_eq!(alarms.delay, Duration::from_millis(250));
        assert_eq!(alarms.variant, Variant::Cold);
        assert_eq!((alarms.objects, alarms.count), (10, 100));
        assert!(alarm_options(&args(&["--variant", "warm"])).is_err());
        assert!(alarm_options(&args(&["--delay", "5"])).is_err());
    }

    #[test]
    fn child_flags_parse_what_the_parent_writes() {
        let idle = IdleOptions {
            common: Common::parse(&mut Flags::parse(&args(&["--processes", "3"])).unwrap())
                .unwrap(),
            connections: 3000,
            rooms: 7,
            attach_bytes: 100,
            hold: Duration::from_secs(1),
        };
        let child = idle::plan(&idle, "ws://127.0.0.1:18787", 3000)
            .unwrap()
            .remove(2);
        assert_eq!(client_options(&child.to_args()), Ok(child));

        let traffic = TrafficOptions {
            url: "ws://127.0.0.1:18787".into(),
            kind: Kind::Broadcast,
            room_prefix: "bcast-".into(),
            rooms: 1,
            first_index: 5000,
            connections: 5000,
            source_ip: std::net::Ipv4Addr::new(127, 0, 0, 11),
            concurrency: 256,
            message_bytes: 32,
        };
        assert_eq!(traffic_options(&traffic.to_args()), Ok(traffic));

        let reload = ReloadClientOptions {
            url: "ws://127.0.0.1:18787".into(),
            room_prefix: "reload-".into(),
            rooms: 20,
            busy_rooms: 10,
            echoers_per_room: u64::MAX,
            first_index: 5000,
            connections: 5000,
            source_ip: std::net::Ipv4Addr::new(127, 0, 0, 11),
            concurrency: 256,
        };
        assert_eq!(reload_client_options(&reload.to_args()), Ok(reload));
    }

    #[test]
    fn reload_flags_take_defaults_and_refuse_baselines() {
        let opts = reload_options(&[]).unwrap();
        assert_eq!(
            (opts.connections, opts.rooms, opts.busy_rooms),
            (10_000, 20, 10)
        );
        assert_eq!(opts.interval, Duration::from_millis(100));
        assert_eq!((opts.reload_cmd, opts.expect_version), (None, None));
        assert_eq!(opts.deploy, Deploy::Reload);
        let opts = reload_options(&args(&[
            "--reload-cmd",
            "mv b a && torpor reload",
            "--expect-version",
            "0.1.0+b",
            "--rooms",
            "4",
            "--busy-rooms",
            "3",
            "--echoers-per-room",
            "10",
        ]))
        .unwrap();
        assert_eq!(opts.reload_cmd.as_deref(), Some("mv b a && torpor reload"));
        assert_eq!((opts.busy_rooms, opts.echoers_per_room), (3, Some(10)));
        assert!(reload_options(&args(&["--baselines"])).is_err());
        assert!(reload_options(&args(&["--rooms", "2", "--busy-rooms", "3"])).is_err());
        assert!(reload_options(&args(&["--connections", "5", "--rooms", "6"])).is_err());
        assert!(reload_options(&args(&["--bcast-every", "0s"])).is_err());
    }

    #[test]
    fn reload_flags_take_an_upgrade_without_a_version() {
        let opts = reload_options(&args(&[
            "--deploy",
            "upgrade",
            "--reload-cmd",
            "mv b a && torpor upgrade",
        ]))
        .unwrap();
        assert_eq!(opts.deploy, Deploy::Upgrade);
        assert_eq!(opts.reload_cmd.as_deref(), Some("mv b a && torpor upgrade"));
        let refused = reload_options(&args(&["--deploy", "upgrade", "--expect-version", "x"]));
        assert!(refused.unwrap_err().contains("--expect-version"));
        let refused = reload_options(&args(&["--deploy", "edges"]));
        assert!(refused.unwrap_err().contains("--deploy"));
    }

    #[test]
    fn attack_flags_take_defaults_and_bounds() {
        let opts = attack_options(&[]).unwrap();
        assert_eq!(opts.kind, AttackKind::StalledHeads);
        assert_eq!((opts.connections, opts.tries), (10_000, 100));
        assert_eq!(opts.duration, Duration::from_secs(30));
        let opts =
            attack_options(&args(&["--kind", "keepalive-idle", "--connections", "500"])).unwrap();
        assert_eq!(
            (opts.kind, opts.connections),
            (AttackKind::KeepaliveIdle, 500)
        );
        assert!(attack_options(&args(&["--kind", "slowloris"])).is_err());
        assert!(attack_options(&args(&["--connections", "50000"])).is_err());
        assert!(attack_options(&args(&["--duration", "0s"])).is_err());
        assert!(attack_options(&args(&["--rooms", "3"])).is_err());
    }

    #[test]
    fn attack_kinds_default_to_the_issues_numbers_and_refuse_others_flags() {
        let flood = attack_options(&args(&["--kind", "ping-flood"])).unwrap();
        assert_eq!((flood.connections, flood.rcvbuf_bytes), (20, 4096));
        let fast = attack_options(&args(&["--kind", "fast-sender", "--read", "no"])).unwrap();
        assert_eq!(
            (fast.connections, fast.frame_bytes, fast.read_replies),
            (1, 256 * 1024, false)
        );
        let err = attack_options(&args(&["--kind", "fast-sender", "--rcvbuf", "1"]));
        assert!(err.unwrap_err().contains("only ping-flood"));
        let err = attack_options(&args(&["--frame-bytes", "10"]));
        assert!(err.unwrap_err().contains("only fast-sender"));
        let names = attack_options(&args(&["--kind", "object-names"])).unwrap();
        assert_eq!((names.count, names.connections), (1_000_000, 32));
        let counters = attack_options(&args(&["--kind", "counters", "--count", "5"])).unwrap();
        assert_eq!(counters.count, 5);
        let err = attack_options(&args(&["--kind", "ping-flood", "--count", "5"]));
        assert!(err.unwrap_err().contains("only object-names and counters"));
        let games = attack_options(&args(&["--kind", "matches"])).unwrap();
        assert_eq!(
            (games.connections, games.players, games.tick_ms),
            (100, 2, 10)
        );
        assert_eq!(games.matches(), 50);
        let games = attack_options(&args(&[
            "--kind",
            "matches",
            "--matches",
            "3",
            "--players",
            "4",
        ]))
        .unwrap();
        assert_eq!((games.connections, games.matches()), (12, 3));
        let err = attack_options(&args(&["--kind", "matches", "--connections", "5"]));
        assert!(err.unwrap_err().contains("--matches x --players"));
        assert!(attack_options(&args(&["--kind", "counters", "--players", "2"])).is_err());
        assert!(attack_options(&args(&["--kind", "matches", "--tick-ms", "5"])).is_err());
    }

    #[test]
    fn a_command_help_is_its_own_section() {
        let attack = usage_of("attack").unwrap();
        assert!(attack.starts_with("loadtest attack [flags]\n"), "{attack}");
        for kind in AttackKind::ALL {
            assert!(attack.contains(kind.name()), "{} undocumented", kind.name());
        }
        assert!(!attack.contains("loadtest report"));
        assert!(usage_of("attack-table")
            .unwrap()
            .starts_with("loadtest attack-table RESULT.json"));
        assert!(usage_of("fly").is_none());
        assert!(run(&args(&["attack", "--help"])).is_ok());
    }

    #[test]
    fn commands_and_usage_errors() {
        assert!(matches!(run(&[]), Err(Failure::Usage(_))));
        assert!(matches!(run(&args(&["fly"])), Err(Failure::Usage(_))));
        assert!(matches!(run(&args(&["report"])), Err(Failure::Usage(_))));
        assert!(matches!(run(&args(&["medians"])), Err(Failure::Usage(_))));
        assert!(matches!(
            run(&args(&["attack-table"])),
            Err(Failure::Usage(_))
        ));
        assert!(matches!(
            run(&args(&["ping", "--connections", "100000", "--processes", "2"])),
            Err(Failure::Usage(m)) if m.contains("raise --processes")
        ));
        assert!(matches!(
            run(&args(&["baseline-server", "--mode", "fast"])),
            Err(Failure::BaselineUsage(_))
        ));
        for scenario in [
            "idle",
            "ping",
            "echo",
            "broadcast",
            "churn",
            "wake",
            "alarms",
            "reload",
            "attack",
            "attack-table",
            "baseline-server",
        ] {
            assert!(
                USAGE.contains(&format!("loadtest {scenario}")),
                "{scenario}"
            );
        }
    }
}
