//! `loadtest ping` and `loadtest echo`: request/reply round trips over many
//! connections to Bench objects (`/bench/ping-<room>`, `/bench/echo-<room>`).
//!
//! `ping` is answered by Torpor's edge from the object's auto-response, with
//! no wake; a baseline answers it with a plain `pong` message. `echo:<n × x>`
//! goes through the (live) object and comes back.
//!
//! Per target: open the connections (client processes, see
//! [`fleet`]), warm up (closed loop, not measured: wakes
//! echo's objects), then
//! - phase `max`: a closed loop, every connection keeping `--window` requests
//!   outstanding for `--duration`: the most the server answers per second;
//! - phase `half` (or `rate` if `--rate` is given): an open loop paced at half
//!   that (each target at half its own max) or at `--rate`, for
//!   `--duration`: latency at a load the server can carry.
//!
//! Against Torpor, each phase also reads the objects' `wakes`, `events` and
//! `auto_responses` from the admin API before and after: for ping, `wakes`
//! and `events` must not move.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::child::protocol::{ChildResult, Command, Kind};
use crate::fleet::run::{
    for_each_target, measure, open_fleet, spawn_traffic, split_rate, unix_time, Common, Measured,
    Traffic,
};
use crate::fleet::server::Server;
use crate::fleet::{self, Fleet};
use crate::measure::latency::Recorder;
use crate::report::model::{CpuFigures, Phase, Report, TargetRun};
use crate::wire::admin::{self, ObjectUsage};

const CLASS: &str = "Bench";

/// `loadtest ping` / `loadtest echo` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct RttOptions {
    pub common: Common,
    pub kind: Kind,
    pub connections: u64,
    pub rooms: u32,
    pub duration: Duration,
    pub warmup: Duration,
    /// Requests outstanding per connection in the closed loop.
    pub window: u32,
    /// Requests per second in the open loop; `None`: half of the max.
    pub rate: Option<f64>,
    /// Echo payload bytes (ping's message is always `ping`).
    pub message_bytes: usize,
}

impl RttOptions {
    fn room_prefix(&self) -> &'static str {
        match self.kind {
            Kind::Ping => "ping-",
            _ => "echo-",
        }
    }

    fn unit(&self) -> &'static str {
        match self.kind {
            Kind::Ping => "pings",
            _ => "echoes",
        }
    }

    fn latency_label(&self) -> String {
        match self.kind {
            Kind::Ping => "`ping` written → `pong` read".into(),
            _ => format!(
                "`echo:` + {} bytes written → reply read",
                self.message_bytes
            ),
        }
    }
}

pub fn run(opts: &RttOptions) -> Result<Report, String> {
    if opts.rooms == 0 || opts.window == 0 {
        return Err("--rooms and --window must be at least 1".into());
    }
    if u64::from(opts.rooms) > opts.connections {
        return Err(format!(
            "--rooms {} is more than --connections {}",
            opts.rooms, opts.connections
        ));
    }
    // Fail on a bad split before starting anything.
    fleet::split(
        opts.connections,
        opts.common.processes_for(opts.connections),
    )?;
    let targets = for_each_target(&opts.common, |server, run| run_target(opts, server, run));
    let mut settings = vec![
        ("connections".to_string(), opts.connections.to_string()),
        ("rooms".to_string(), opts.rooms.to_string()),
        (
            "duration".to_string(),
            format!("{} s", opts.duration.as_secs_f64()),
        ),
        ("window".to_string(), opts.window.to_string()),
        (
            "rate".to_string(),
            opts.rate
                .map_or("half of max".to_string(), |r| format!("{r}/s")),
        ),
    ];
    if opts.kind == Kind::Echo {
        settings.push(("message bytes".to_string(), opts.message_bytes.to_string()));
    }
    Ok(Report {
        scenario: opts.kind.name().to_string(),
        title: match opts.kind {
            Kind::Ping => "ping answered by the auto-response (Torpor: no wake)".into(),
            _ => "echo through a live object".into(),
        },
        unix_time: unix_time(),
        settings,
        host: opts.common.host(),
        targets,
        ..Report::default()
    }
    .finish())
}

fn run_target(opts: &RttOptions, server: &mut Server, run: &mut TargetRun) -> Result<(), String> {
    let (connections, note) = opts.common.connections_for(server.kind, opts.connections);
    run.notes.extend(note);
    let shares = fleet::split(connections, opts.common.processes_for(connections))?;
    let traffic = Traffic {
        kind: opts.kind,
        room_prefix: opts.room_prefix(),
        rooms: opts.rooms,
        message_bytes: opts.message_bytes,
    };
    let mut fleet = spawn_traffic(server, &opts.common, &traffic, &shares)?;
    let open = open_fleet(&mut fleet, connections, server, |_| {})?;
    let opened = open.opened;
    run.open = Some(open);
    if opened == 0 {
        return Err("no connection opened".into());
    }
    let children = fleet.len();
    let to_all = |command: Command| -> Vec<(usize, Command)> {
        (0..children).map(|i| (i, command.clone())).collect()
    };
    let ignore = |_: &mut Fleet, i: usize, line: &str| -> Result<(), String> {
        eprintln!("client process {i}: {line}");
        Ok(())
    };

    if !opts.warmup.is_zero() {
        let warm = Command::Closed {
            duration: opts.warmup,
            window: 1,
            phase: 1,
        };
        measure(
            &mut fleet,
            server,
            "warm-up",
            opts.warmup,
            &to_all(warm),
            children,
            ignore,
        )?;
        server.check_alive()?;
    }

    let before = usage(server, opts);
    let max = Command::Closed {
        duration: opts.duration,
        window: opts.window,
        phase: 2,
    };
    let measured = measure(
        &mut fleet,
        server,
        "max",
        opts.duration,
        &to_all(max),
        children,
        ignore,
    )?;
    let after = usage(server, opts);
    let mut phase = phase_from(
        "max",
        format!(
            "closed loop, {} outstanding per connection, {} connections over {} rooms",
            opts.window, opened, opts.rooms
        ),
        opts,
        &measured,
        None,
    );
    add_usage(&mut phase, before, after, run);
    let max_rate = phase.per_second;
    run.phases.push(phase);
    server.check_alive()?;

    let (name, rate) = match opts.rate {
        Some(rate) => ("rate", rate),
        None => ("half", max_rate / 2.0),
    };
    if rate <= 0.0 {
        return Err("the closed loop got no replies, so there is no rate to halve".into());
    }
    let rates = split_rate(rate, &fleet.opened());
    let commands: Vec<(usize, Command)> = rates
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i,
                Command::Open {
                    rate: *r,
                    // Half rate keeps the max phase's shape: a client with
                    // `window` in flight writes them together.
                    burst: opts.window,
                    duration: opts.duration,
                    phase: 3,
                },
            )
        })
        .collect();
    let before = usage(server, opts);
    let measured = measure(
        &mut fleet,
        server,
        name,
        opts.duration,
        &commands,
        children,
        ignore,
    )?;
    let after = usage(server, opts);
    let paced = if opts.window > 1 {
        format!(
            "paced evenly over all connections, {} per write",
            opts.window
        )
    } else {
        "paced evenly over all connections".to_string()
    };
    let description = match opts.rate {
        Some(_) => format!("open loop at --rate, {paced}"),
        None => format!("open loop at half this target's max, {paced}"),
    };
    let mut phase = phase_from(name, description, opts, &measured, Some(rate));
    add_usage(&mut phase, before, after, run);
    run.phases.push(phase);
    Ok(())
}

/// The objects' counters summed over the rooms, Torpor only; `None` for a
/// baseline or when the admin API cannot say (noted on stderr).
fn usage(server: &Server, opts: &RttOptions) -> Option<ObjectUsage> {
    let admin = server.admin?;
    let mut total = ObjectUsage::default();
    for room in 0..opts.rooms {
        let name = format!("{}{room}", opts.room_prefix());
        match admin::object_usage(admin, CLASS, &name) {
            Ok(u) => total.add(&u),
            Err(e) => {
                eprintln!("note: object counters unavailable: {e}");
                return None;
            }
        }
    }
    Some(total)
}

fn add_usage(
    phase: &mut Phase,
    before: Option<ObjectUsage>,
    after: Option<ObjectUsage>,
    run: &mut TargetRun,
) {
    let (Some(b), Some(a)) = (before, after) else {
        return;
    };
    let delta = |a: u64, b: u64| a as f64 - b as f64;
    phase
        .counters
        .insert("wakes".into(), delta(a.wakes, b.wakes));
    phase
        .counters
        .insert("events".into(), delta(a.events, b.events));
    phase.counters.insert(
        "auto_responses".into(),
        delta(a.auto_responses, b.auto_responses),
    );
    if phase.unit == "pings" && a.wakes != b.wakes {
        run.notes.push(format!(
            "phase {}: {} wakes during ping; the auto-response should answer without any",
            phase.name,
            a.wakes - b.wakes
        ));
    }
}

/// Sums the children's results into a phase.
fn phase_from(
    name: &str,
    description: String,
    opts: &RttOptions,
    measured: &Measured,
    offered: Option<f64>,
) -> Phase {
    let results: &[ChildResult] = &measured.results;
    let mut latency = Recorder::new();
    let mut lag = Recorder::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        latency.merge(&Recorder::from_wire(&r.latency));
        lag.merge(&Recorder::from_wire(&r.lag));
        for (reason, count) in &r.failures {
            *failures.entry(reason.clone()).or_default() += count;
        }
    }
    let sum = |f: fn(&ChildResult) -> u64| results.iter().map(f).sum::<u64>();
    let seconds = opts.duration.as_secs_f64();
    let in_window = sum(|r| r.replies_in_window);
    let replies = sum(|r| r.replies);
    let mut counters = BTreeMap::new();
    counters.insert("sent".to_string(), sum(|r| r.sent) as f64);
    counters.insert("lost".to_string(), sum(|r| r.lost) as f64);
    counters.insert("unexpected".to_string(), sum(|r| r.unexpected) as f64);
    if let Some(s) = lag.summary() {
        // How late the pacer sent: large means the client could not keep up.
        counters.insert("send_lag_p99_us".to_string(), (s.p99_ms * 1000.0).round());
    }
    Phase {
        name: name.to_string(),
        description,
        unit: opts.unit().to_string(),
        seconds,
        operations: in_window,
        per_second: if seconds > 0.0 {
            in_window as f64 / seconds
        } else {
            0.0
        },
        offered_per_second: offered,
        errors: sum(|r| r.lost) + sum(|r| r.unexpected),
        failures,
        latency_label: opts.latency_label(),
        latency: latency.latency(),
        // Every reply the server sent in the phase, the drained ones too,
        // since the CPU meter ran until they were in.
        server_cpu: Some(CpuFigures::new(measured.server.clone(), replies)),
        client_cpu: Some(measured.client.clone()),
        counters,
        ..Phase::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::cpu::{CpuUsage, Role};
    use crate::report::model::ClientCpu;

    fn opts(kind: Kind) -> RttOptions {
        RttOptions {
            common: Common::defaults(),
            kind,
            connections: 100,
            rooms: 10,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            window: 1,
            rate: None,
            message_bytes: 32,
        }
    }

    #[test]
    fn children_results_add_up_to_a_phase() {
        let mut a = Recorder::new();
        a.record_us(50);
        let mut b = Recorder::new();
        b.record_us(150);
        let results = vec![
            ChildResult {
                sent: 600,
                replies: 600,
                replies_in_window: 550,
                latency: a.to_wire(),
                failures: [("server sent close 1008".to_string(), 1)].into(),
                ..ChildResult::default()
            },
            ChildResult {
                sent: 500,
                replies: 498,
                replies_in_window: 450,
                lost: 2,
                latency: b.to_wire(),
                ..ChildResult::default()
            },
        ];
        let mut server = CpuUsage {
            wall_seconds: 10.0,
            ..CpuUsage::default()
        };
        server.by_role.insert(Role::Edge, 0.5495);
        let measured = Measured {
            results,
            server,
            client: ClientCpu {
                seconds: 5.0,
                cores: 0.5,
            },
        };
        let phase = phase_from("max", "closed".into(), &opts(Kind::Ping), &measured, None);
        assert_eq!(phase.operations, 1000);
        assert_eq!(phase.per_second, 100.0);
        assert_eq!(phase.errors, 2);
        assert_eq!(phase.unit, "pings");
        assert_eq!(phase.counters["lost"], 2.0);
        assert_eq!(phase.counters["sent"], 1100.0);
        assert_eq!(phase.failures["server sent close 1008"], 1);
        let latency = phase.latency.unwrap();
        assert_eq!(latency.summary.count, 2);
        assert_eq!(latency.summary.max_ms, 0.15);
        // 0.5495 CPU-s over 1098 replies = 500.5 per million.
        let cpu = phase.server_cpu.unwrap();
        assert!((cpu.per_million.unwrap() - 500.46).abs() < 0.01, "{cpu:?}");
    }

    #[test]
    fn wakes_during_ping_are_noted() {
        let mut run = TargetRun::default();
        let mut phase = Phase {
            name: "max".into(),
            unit: "pings".into(),
            ..Phase::default()
        };
        let before = ObjectUsage {
            wakes: 10,
            auto_responses: 5,
            ..ObjectUsage::default()
        };
        let quiet = ObjectUsage {
            auto_responses: 1005,
            ..before
        };
        add_usage(&mut phase, Some(before), Some(quiet), &mut run);
        assert_eq!(phase.counters["wakes"], 0.0);
        assert_eq!(phase.counters["auto_responses"], 1000.0);
        assert!(run.notes.is_empty());
        let woke = ObjectUsage { wakes: 12, ..quiet };
        add_usage(&mut phase, Some(before), Some(woke), &mut run);
        assert_eq!(phase.counters["wakes"], 2.0);
        assert!(
            run.notes[0].contains("2 wakes during ping"),
            "{:?}",
            run.notes
        );
    }

    #[test]
    fn labels_follow_the_kind() {
        assert_eq!(opts(Kind::Ping).room_prefix(), "ping-");
        assert_eq!(opts(Kind::Echo).unit(), "echoes");
        assert!(opts(Kind::Echo).latency_label().contains("32 bytes"));
    }
}
