//! CPU time of the processes under test, from `/proc/<pid>/stat` (utime +
//! stime, fields 14 and 15, in clock ticks).
//!
//! A [`CpuMeter`] watches a set of processes for one measured phase: either a
//! fixed list of pids (a baseline server, the load generator's children) or
//! Torpor's processes as `/admin/node` lists them, re-read every second
//! because a worker may exit and a new one start mid-phase. The pids are
//! sampled every 100 ms: a process that exits loses at most its last 100 ms
//! (it is named in `vanished`), and one that appears is counted from zero.
//! The once-a-second `/admin/node` call costs the node a little CPU of its
//! own (well under a millisecond), which is counted with the rest.
//! Not a profiler: it says how much, never where.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::wire::admin;

const SAMPLE_EVERY: Duration = Duration::from_millis(100);
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// A meter nobody stops still ends (no phase here is that long).
const MAX_LIFETIME: Duration = Duration::from_secs(6 * 3600);
/// What Linux reports on every architecture it runs loadtest on, used only if
/// `getconf CLK_TCK` cannot be run.
const DEFAULT_CLOCK_TICKS: u64 = 100;

/// What a watched process is, for adding its time to the right total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Supervisor,
    Edge,
    Worker,
    /// A baseline server process.
    Server,
    /// A load generator process.
    Client,
}

/// Clock ticks per second (`getconf CLK_TCK`, read once).
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(DEFAULT_CLOCK_TICKS)
    })
}

/// utime + stime of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    parse_stat_ticks(&stat).ok_or_else(|| format!("{path} is not a stat line: {stat}"))
}

/// Fields 14 (utime) and 15 (stime) of a stat line. The command name (field
/// 2) is in parentheses and may itself hold spaces or parentheses, so the
/// fields are counted from the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name come field 3 (state) onwards: utime is the 12th.
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// Which processes a meter watches.
#[derive(Debug, Clone)]
pub enum Watch {
    /// Torpor's supervisor, edges and workers, from its admin API.
    Torpor(SocketAddr),
    Pids(Vec<(Role, u32)>),
    /// A process and all its descendants, re-listed at each read (a
    /// server that forks helpers is measured whole).
    Tree(u32),
}

impl Watch {
    fn processes(&self) -> Result<Vec<(Role, u32)>, String> {
        match self {
            Watch::Pids(pids) => Ok(pids.clone()),
            Watch::Tree(root) => Ok(crate::measure::node::tree(*root)
                .into_iter()
                .map(|pid| (Role::Server, pid))
                .collect()),
            Watch::Torpor(addr) => {
                let node = admin::node(*addr)?;
                let mut out: Vec<(Role, u32)> = node
                    .supervisor_pid
                    .map(|pid| (Role::Supervisor, pid))
                    .into_iter()
                    .collect();
                out.extend(node.edge_pids().into_iter().map(|pid| (Role::Edge, pid)));
                out.extend(
                    node.worker_pids()
                        .into_iter()
                        .map(|pid| (Role::Worker, pid)),
                );
                Ok(out)
            }
        }
    }
}

/// CPU seconds used during one phase, by role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Wall-clock seconds the meter ran.
    pub wall_seconds: f64,
    pub by_role: BTreeMap<Role, f64>,
    /// Processes that exited during the phase (`worker 1234`): their time
    /// after the last sample (at most 100 ms) is missing.
    pub vanished: Vec<String>,
    /// Processes that started during the phase, counted from zero.
    pub started: Vec<String>,
    /// Problems reading the process list mid-phase (the last known list was
    /// kept).
    pub notes: Vec<String>,
}

impl CpuUsage {
    pub fn seconds(&self, role: Role) -> f64 {
        self.by_role.get(&role).copied().unwrap_or(0.0)
    }

    /// Everything but the load generator.
    pub fn server_seconds(&self) -> f64 {
        self.by_role
            .iter()
            .filter(|(role, _)| **role != Role::Client)
            .map(|(_, s)| s)
            .sum()
    }
}

struct Tracked {
    role: Role,
    first: u64,
    last: u64,
    gone: bool,
}

/// Samples CPU time on a thread until stopped.
pub struct CpuMeter {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<CpuUsage>,
}

impl CpuMeter {
    /// Reads every watched process once before returning, so the phase can
    /// start right after.
    pub fn start(watch: Watch) -> Result<CpuMeter, String> {
        let started_at = Instant::now();
        let mut tracked: BTreeMap<u32, Tracked> = BTreeMap::new();
        for (role, pid) in watch.processes()? {
            let ticks = cpu_ticks(pid)?;
            tracked.insert(
                pid,
                Tracked {
                    role,
                    first: ticks,
                    last: ticks,
                    gone: false,
                },
            );
        }
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::spawn(move || run(watch, tracked, started_at, &stopped));
        Ok(CpuMeter { stop, thread })
    }

    pub fn stop(self) -> Result<CpuUsage, String> {
        let _ = self.stop.send(());
        self.thread
            .join()
            .map_err(|_| "the CPU meter thread panicked".to_string())
    }
}

fn run(
    watch: Watch,
    mut tracked: BTreeMap<u32, Tracked>,
    started_at: Instant,
    stopped: &mpsc::Receiver<()>,
) -> CpuUsage {
    let mut usage = CpuUsage::default();
    let mut last_refresh = Instant::now();
    let mut stop = false;
    while !stop && started_at.elapsed() < MAX_LIFETIME {
        // Wakes early when told to stop, and then samples one last time.
        stop = !matches!(
            stopped.recv_timeout(SAMPLE_EVERY),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if matches!(watch, Watch::Torpor(_)) && (stop || last_refresh.elapsed() >= REFRESH_EVERY) {
            last_refresh = Instant::now();
            match watch.processes() {
                Ok(list) => {
                    for (role, pid) in list {
                        if tracked.contains_key(&pid) {
                            continue;
                        }
                        usage.started.push(format!("{role:?} {pid}").to_lowercase());
                        tracked.insert(
                            pid,
                            Tracked {
                                role,
                                first: 0,
                                last: 0,
                                gone: false,
                            },
                        );
                    }
                }
                Err(e) if usage.notes.len() < 8 => usage.notes.push(e),
                Err(_) => {}
            }
        }
        for (pid, t) in tracked.iter_mut().filter(|(_, t)| !t.gone) {
            match cpu_ticks(*pid) {
                // Fewer ticks than before: the pid now names another process.
                Ok(ticks) if ticks < t.last => t.gone = true,
                Ok(ticks) => t.last = ticks,
                Err(_) => t.gone = true,
            }
            if t.gone {
                usage
                    .vanished
                    .push(format!("{:?} {pid}", t.role).to_lowercase());
            }
        }
    }
    let per_second = clock_ticks_per_second() as f64;
    for t in tracked.values() {
        *usage.by_role.entry(t.role).or_default() += (t.last - t.first) as f64 / per_second;
    }
    usage.wall_seconds = started_at.elapsed().as_secs_f64();
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_are_utime_plus_stime() {
        let stat = "4242 (torpor edge) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 3 0 1000 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
    }

    #[test]
    fn a_name_with_parentheses_does_not_shift_the_fields() {
        let stat = "7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 9 1 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(10));
        assert_eq!(parse_stat_ticks("7 (x) R 1 2"), None);
        assert_eq!(parse_stat_ticks("no parenthesis"), None);
    }

    #[test]
    fn own_process_is_metered() {
        assert!(clock_ticks_per_second() >= 1);
        let me = std::process::id();
        let meter = CpuMeter::start(Watch::Pids(vec![(Role::Client, me)])).unwrap();
        // Burn a little CPU so there is something to count.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(120) {
            x = x.wrapping_mul(31).wrapping_add(1);
        }
        assert!(x != 1);
        let usage = meter.stop().unwrap();
        assert!(usage.seconds(Role::Client) > 0.0, "{usage:?}");
        assert_eq!(usage.server_seconds(), 0.0);
        assert!(usage.wall_seconds >= 0.12);
        assert!(usage.vanished.is_empty());
    }

    #[test]
    fn a_missing_pid_cannot_start_a_meter() {
        // Pid numbers wrap far below u32::MAX; this one cannot exist.
        assert!(CpuMeter::start(Watch::Pids(vec![(Role::Server, u32::MAX - 1)])).is_err());
    }
}
