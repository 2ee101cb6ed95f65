//! `loadtest churn`: connections that come and go. For `--duration`, at
//! `--rate` connects per second (spread over the client processes), each
//! connection opens (`/bench/churn-<room>`), optionally sends one
//! `echo:<--message-bytes>` and waits for it, then closes cleanly: a close
//! frame (1000), the server's close frame back, and the server's end of the
//! TCP stream (so the TIME_WAIT stays on the server's side, as RFC 6455 has
//! it, and the client's ports come free at once).
//!
//! Reports connects and clean disconnects per second, handshake latency
//! (connect → `101` read), echo and close latencies, and failures. A
//! connect that would exceed `--concurrency` in flight in its process is
//! skipped and counted: the server is then behind the offered rate.
//!
//! The child side ([`run_phase`](crate::child::churn::run_phase)) runs inside
//! `traffic-client`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::child::protocol::{ChildResult, Command, Kind};
use crate::fleet;
use crate::fleet::run::{
    for_each_target, measure, open_fleet, spawn_traffic, unix_time, Common, Measured, Traffic,
};
use crate::fleet::server::Server;
use crate::measure::latency::Recorder;
use crate::report::model::{CpuFigures, Phase, Report, TargetRun};

const ROOM_PREFIX: &str = "churn-";
/// Connections of process `i` count from `i × this`, so processes use
/// distinct masks and room orders.
const INDEX_STRIDE: u64 = 1 << 40;

/// `loadtest churn` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnOptions {
    pub common: Common,
    pub rooms: u32,
    pub duration: Duration,
    /// Connects per second over all processes.
    pub rate: f64,
    /// One echo of this many bytes per connection; 0 for none.
    pub message_bytes: usize,
}

pub fn run(opts: &ChurnOptions) -> Result<Report, String> {
    if opts.rooms == 0 {
        return Err("--rooms must be at least 1".into());
    }
    if !(opts.rate > 0.0 && opts.rate.is_finite()) {
        return Err(format!("--rate {} must be a positive number", opts.rate));
    }
    let processes = opts.common.processes.unwrap_or(1);
    if processes > fleet::MAX_PROCESSES {
        return Err(format!(
            "--processes must be at most {}",
            fleet::MAX_PROCESSES
        ));
    }
    let targets = for_each_target(&opts.common, |server, run| {
        run_target(opts, processes, server, run)
    });
    Ok(Report {
        scenario: "churn".into(),
        title: "connections opened and closed cleanly at a rate".into(),
        unix_time: unix_time(),
        settings: vec![
            ("rate".into(), format!("{} connects/s", opts.rate)),
            (
                "duration".into(),
                format!("{} s", opts.duration.as_secs_f64()),
            ),
            ("rooms".into(), opts.rooms.to_string()),
            ("processes".into(), processes.to_string()),
            (
                "echo".into(),
                if opts.message_bytes == 0 {
                    "none".into()
                } else {
                    format!("{} bytes", opts.message_bytes)
                },
            ),
        ],
        host: opts.common.host(),
        targets,
        ..Report::default()
    }
    .finish())
}

fn run_target(
    opts: &ChurnOptions,
    processes: u32,
    server: &mut Server,
    run: &mut TargetRun,
) -> Result<(), String> {
    // Churn clients open their own connections: none up front.
    let shares: Vec<fleet::Share> = (0..processes)
        .map(|i| fleet::Share {
            first_index: u64::from(i) * INDEX_STRIDE,
            connections: 0,
            source_ip: fleet::source_ip(i),
        })
        .collect();
    let traffic = Traffic {
        kind: Kind::Churn,
        room_prefix: ROOM_PREFIX,
        rooms: opts.rooms,
        message_bytes: opts.message_bytes,
    };
    let mut fleet = spawn_traffic(server, &opts.common, &traffic, &shares)?;
    open_fleet(&mut fleet, 0, server, |_| {})?;
    let share = opts.rate / f64::from(processes);
    let commands: Vec<(usize, Command)> = (0..fleet.len())
        .map(|i| {
            (
                i,
                Command::Churn {
                    rate: share,
                    duration: opts.duration,
                    phase: 2,
                },
            )
        })
        .collect();
    let children = fleet.len();
    let measured = measure(
        &mut fleet,
        server,
        "churn",
        opts.duration,
        &commands,
        children,
        |_, i, line| {
            eprintln!("client process {i}: {line}");
            Ok(())
        },
    )?;
    run.phases.push(phase_from(opts, &measured));
    Ok(())
}

fn phase_from(opts: &ChurnOptions, measured: &Measured) -> Phase {
    let results = &measured.results;
    let mut handshake = Recorder::new();
    let mut echo = Recorder::new();
    let mut close = Recorder::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        handshake.merge(&Recorder::from_wire(&r.latency));
        echo.merge(&Recorder::from_wire(&r.echo_latency));
        close.merge(&Recorder::from_wire(&r.close_latency));
        for (reason, count) in &r.failures {
            *failures.entry(reason.clone()).or_default() += count;
        }
    }
    let sum = |f: fn(&ChildResult) -> u64| results.iter().map(f).sum::<u64>();
    let seconds = results.iter().map(|r| r.seconds).fold(0.0, f64::max);
    let per = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let (connects, disconnects) = (sum(|r| r.connects), sum(|r| r.disconnects));
    let mut counters = BTreeMap::new();
    counters.insert("attempted".to_string(), sum(|r| r.sent) as f64);
    counters.insert(
        "skipped_at_concurrency".to_string(),
        sum(|r| r.skipped) as f64,
    );
    counters.insert("disconnects".to_string(), disconnects as f64);
    counters.insert(
        "disconnects_per_second".to_string(),
        per(disconnects).round(),
    );
    let mut more = BTreeMap::new();
    if let Some(l) = echo.latency() {
        more.insert("echo".to_string(), l);
    }
    if let Some(l) = close.latency() {
        more.insert(
            "close frame written → server's end of stream".to_string(),
            l,
        );
    }
    Phase {
        name: "churn".into(),
        description: format!(
            "connect, {}close cleanly; offered {} connects/s",
            if opts.message_bytes > 0 {
                "one echo, "
            } else {
                ""
            },
            opts.rate
        ),
        unit: "connects".into(),
        seconds,
        operations: connects,
        per_second: per(connects),
        offered_per_second: Some(opts.rate),
        errors: failures.values().sum(),
        failures,
        latency_label: "connect → `101 Switching Protocols` read".into(),
        latency: handshake.latency(),
        more_latencies: more,
        server_cpu: Some(CpuFigures::new(measured.server.clone(), connects)),
        client_cpu: Some(measured.client.clone()),
        counters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::cpu::CpuUsage;
    use crate::report::model::ClientCpu;

    #[test]
    fn results_add_up_to_rates() {
        let opts = ChurnOptions {
            common: Common::defaults(),
            rooms: 10,
            duration: Duration::from_secs(10),
            rate: 100.0,
            message_bytes: 0,
        };
        let mut handshake = Recorder::new();
        handshake.record_us(300);
        let child = |seconds: f64| ChildResult {
            seconds,
            sent: 500,
            connects: 490,
            disconnects: 480,
            skipped: 10,
            latency: handshake.to_wire(),
            failures: [("connect: refused".to_string(), 10)].into(),
            ..ChildResult::default()
        };
        let measured = Measured {
            results: vec![child(9.8), child(10.0)],
            server: CpuUsage::default(),
            client: ClientCpu::default(),
        };
        let phase = phase_from(&opts, &measured);
        assert_eq!(phase.operations, 980);
        assert_eq!(phase.seconds, 10.0);
        assert_eq!(phase.per_second, 98.0);
        assert_eq!(phase.counters["disconnects_per_second"], 96.0);
        assert_eq!(phase.counters["skipped_at_concurrency"], 20.0);
        assert_eq!(phase.failures["connect: refused"], 20);
        assert_eq!(phase.errors, 20);
        assert_eq!(phase.latency.unwrap().summary.count, 2);
        assert!(phase.description.starts_with("connect, close cleanly"));
    }
}
