//! The parent's side of every traffic scenario: the options they share
//! (which the command line fills in from their flags), running a body
//! against each target (starting and stopping the baselines), opening
//! a fleet of client processes, and running one measured phase over it with
//! the server's and the clients' CPU metered.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::child::protocol::{ChildResult, Command, Kind, TrafficOptions};
use crate::fleet::progress;
use crate::fleet::server::{External, Placement, Server, BASELINE_MAX_CONNECTIONS};
use crate::fleet::{self, Event, Fleet, Tally};
use crate::measure::cpu::{CpuMeter, CpuUsage, Role, Watch};
use crate::report::model::{ClientCpu, CpuFigures, Host, OpenFigures, TargetKind, TargetRun};

/// How long every child gets to say `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// A phase's results may come this long after its duration (draining).
const RESULT_SLACK: Duration = Duration::from_secs(30);

/// What the flags every traffic scenario takes ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub url: String,
    pub admin: String,
    pub targets: Vec<TargetKind>,
    /// `--external-url` and `--external-pid`, for `--target external`.
    pub external: Option<External>,
    pub placement: Placement,
    /// `None`: as many as the connections need (`auto`).
    pub processes: Option<u32>,
    pub concurrency: usize,
    pub json: Option<PathBuf>,
}

impl Common {
    /// The processes for `connections` (auto unless given).
    pub fn processes_for(&self, connections: u64) -> u32 {
        self.processes
            .unwrap_or_else(|| fleet::auto_processes(connections))
    }

    pub fn host(&self) -> Host {
        crate::fleet::server::this_host(
            self.placement.server_cpus.clone(),
            self.placement.client_cpus.clone(),
        )
    }

    /// The connections a target gets: all of them, except that a baseline is
    /// one process and cannot hold more than its descriptors allow.
    pub fn connections_for(&self, kind: TargetKind, connections: u64) -> (u64, Option<String>) {
        if kind.is_baseline() && connections > BASELINE_MAX_CONNECTIONS {
            return (
                BASELINE_MAX_CONNECTIONS,
                Some(format!(
                    "capped at {BASELINE_MAX_CONNECTIONS} connections, not {connections}: \
                     the baseline is one process and may hold 20000 file descriptors"
                )),
            );
        }
        (connections, None)
    }
}

#[cfg(test)]
impl Common {
    /// A run with every flag at its default, for tests that need one.
    pub fn defaults() -> Common {
        Common {
            url: "ws://127.0.0.1:8787".into(),
            admin: "127.0.0.1:9090".into(),
            targets: vec![TargetKind::Torpor],
            external: None,
            placement: Placement::default(),
            processes: None,
            concurrency: 256,
            json: None,
        }
    }
}

pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs `body` against each target in turn. A target that fails (cannot
/// start, dies mid-run) is recorded with its error and the rest still run.
pub fn for_each_target(
    common: &Common,
    mut body: impl FnMut(&mut Server, &mut TargetRun) -> Result<(), String>,
) -> Vec<TargetRun> {
    let mut runs = Vec::new();
    for kind in &common.targets {
        let mut run = TargetRun {
            target: *kind,
            ..TargetRun::default()
        };
        eprintln!("loadtest: target {}", kind.name());
        match Server::start(
            *kind,
            &common.url,
            &common.admin,
            common.external.as_ref(),
            &common.placement,
        ) {
            Ok(mut server) => {
                run.url = server.url.clone();
                run.server = server.describe();
                let result = body(&mut server, &mut run);
                // A baseline that died explains a failure better than the
                // failure's own words do.
                let died = server.check_alive().err();
                if let Err(e) = result {
                    run.error = Some(match died {
                        Some(d) => format!("{e} ({d})"),
                        None => e,
                    });
                } else if let Some(d) = died {
                    run.error = Some(d);
                }
                // Dropping the server stops a baseline.
            }
            Err(e) => run.error = Some(e),
        }
        if let Some(e) = &run.error {
            eprintln!("loadtest: target {} failed: {e}", kind.name());
        }
        runs.push(run);
    }
    runs
}

/// Waits for the fleet to open its connections, with a progress bar and the
/// server's CPU metered while it does.
pub fn open_fleet(
    fleet: &mut Fleet,
    requested: u64,
    server: &Server,
    on_progress: impl FnMut(u64),
) -> Result<OpenFigures, String> {
    open_fleet_within(fleet, requested, server, READY_TIMEOUT, on_progress)
}

/// [`open_fleet`], waiting at most `ready_timeout` for every child's `ready`
/// (a run that opens more than the children's default deadline allows).
pub fn open_fleet_within(
    fleet: &mut Fleet,
    requested: u64,
    server: &Server,
    ready_timeout: Duration,
    mut on_progress: impl FnMut(u64),
) -> Result<OpenFigures, String> {
    let meter = CpuMeter::start(server.watch())?;
    let bar = progress::counter(requested, "opening");
    let tally = fleet.wait_ready(ready_timeout, |opened, failed| {
        bar.set_position(opened + failed);
        on_progress(opened);
    });
    bar.finish_and_clear();
    let usage = meter.stop()?;
    let tally = tally?;
    let server_cpu = CpuFigures::new(usage, tally.opened);
    Ok(open_figures(requested, tally, fleet, Some(server_cpu)))
}

/// What opening `requested` sockets from `fleet` came to.
pub fn open_figures(
    requested: u64,
    tally: Tally,
    fleet: &Fleet,
    server_cpu: Option<CpuFigures>,
) -> OpenFigures {
    OpenFigures {
        requested,
        opened: tally.opened,
        failed: tally.failed,
        retries: tally.retries,
        failures: tally.failures,
        processes: fleet.len() as u32,
        seconds: tally.seconds,
        per_second: if tally.seconds > 0.0 {
            tally.opened as f64 / tally.seconds
        } else {
            0.0
        },
        server_cpu,
        client_rss_bytes: fleet.rss_total(),
    }
}

/// One phase's results from the children, with CPU.
pub struct Measured {
    pub results: Vec<ChildResult>,
    pub server: CpuUsage,
    pub client: ClientCpu,
}

/// Sends each `(child, command)`, then waits for `results` `result` lines
/// (one per child asked, unless said otherwise), metering CPU meanwhile.
/// Other lines go to `on_line`.
pub fn measure(
    fleet: &mut Fleet,
    server: &Server,
    label: &str,
    duration: Duration,
    commands: &[(usize, Command)],
    results: usize,
    mut on_line: impl FnMut(&mut Fleet, usize, &str) -> Result<(), String>,
) -> Result<Measured, String> {
    let server_meter = CpuMeter::start(server.watch())?;
    let client_meter = CpuMeter::start(Watch::Pids(
        fleet
            .pids()
            .into_iter()
            .map(|p| (Role::Client, p))
            .collect(),
    ))?;
    let started = Instant::now();
    for (child, command) in commands {
        fleet.send(*child, &command.to_line())?;
    }
    let collected = collect(fleet, label, duration, results, started, &mut on_line);
    // The meters stop whatever happened, so their threads end.
    let server_usage = server_meter.stop()?;
    let client_usage = client_meter.stop()?;
    Ok(Measured {
        results: collected?,
        server: server_usage,
        client: ClientCpu::from_usage(&client_usage),
    })
}

fn collect(
    fleet: &mut Fleet,
    label: &str,
    duration: Duration,
    want: usize,
    started: Instant,
    on_line: &mut impl FnMut(&mut Fleet, usize, &str) -> Result<(), String>,
) -> Result<Vec<ChildResult>, String> {
    let deadline = started + duration + RESULT_SLACK;
    let bar = progress::timer(duration, label);
    let mut results = Vec::with_capacity(want);
    let outcome = loop {
        if results.len() >= want {
            break Ok(());
        }
        progress::tick(&bar, started.elapsed().min(duration));
        if Instant::now() > deadline {
            break Err(format!(
                "{label}: {} of {want} results after {} s",
                results.len(),
                (duration + RESULT_SLACK).as_secs()
            ));
        }
        match fleet.recv(Duration::from_millis(100)) {
            Ok(None) => {}
            Ok(Some((i, Event::Closed))) => {
                let status = fleet.exit_status(i);
                break Err(format!(
                    "client process {i} exited during {label} ({status})"
                ));
            }
            Ok(Some((i, Event::Line(line)))) => {
                if let Some(json) = line.strip_prefix("result ") {
                    match serde_json::from_str::<ChildResult>(json) {
                        Ok(result) => results.push(result),
                        Err(e) => break Err(format!("client process {i}: bad result: {e}")),
                    }
                } else if let Some(e) = line.strip_prefix("error ") {
                    break Err(format!("client process {i}: {e}"));
                } else if let Err(e) = on_line(fleet, i, &line) {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    bar.finish_and_clear();
    outcome.map(|()| results)
}

/// Each child's share of a total rate, by its share of the open connections.
pub fn split_rate(total: f64, opened: &[u64]) -> Vec<f64> {
    let sum: u64 = opened.iter().sum();
    opened
        .iter()
        .map(|n| {
            if sum == 0 {
                0.0
            } else {
                total * *n as f64 / sum as f64
            }
        })
        .collect()
}

/// What every traffic client of one run shares.
pub struct Traffic<'a> {
    pub kind: Kind,
    pub room_prefix: &'a str,
    pub rooms: u32,
    pub message_bytes: usize,
}

/// Starts one `traffic-client` per share, on the load generator's CPUs.
pub fn spawn_traffic(
    server: &Server,
    common: &Common,
    traffic: &Traffic,
    shares: &[fleet::Share],
) -> Result<Fleet, String> {
    let args: Vec<Vec<String>> = shares
        .iter()
        .map(|share| {
            TrafficOptions {
                url: server.url.clone(),
                kind: traffic.kind,
                room_prefix: traffic.room_prefix.to_string(),
                rooms: traffic.rooms,
                first_index: share.first_index,
                connections: share.connections,
                source_ip: share.source_ip,
                concurrency: common.concurrency,
                message_bytes: traffic.message_bytes,
            }
            .to_args()
        })
        .collect();
    Fleet::spawn(
        "traffic-client",
        &args,
        common.placement.client_cpus.as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_are_capped_at_their_descriptor_limit() {
        let c = Common::defaults();
        assert_eq!(
            c.connections_for(TargetKind::Torpor, 100_000),
            (100_000, None)
        );
        let (n, note) = c.connections_for(TargetKind::Tuned, 100_000);
        assert_eq!(n, BASELINE_MAX_CONNECTIONS);
        assert!(note.unwrap().contains("20000 file descriptors"));
        assert_eq!(c.connections_for(TargetKind::Default, 1000), (1000, None));
    }

    #[test]
    fn rates_split_by_connections() {
        assert_eq!(split_rate(1000.0, &[300, 100]), [750.0, 250.0]);
        assert_eq!(split_rate(1000.0, &[0, 0]), [0.0, 0.0]);
    }
}
