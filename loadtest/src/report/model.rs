//! What a run found, in one shape for every scenario: per target (Torpor and
//! the baselines) the opening of its connections, its measured phases
//! (throughput, latency histogram, CPU), and for `idle` its memory. Derived
//! here: CPU-seconds per million operations, and the Torpor/baseline ratios.
//! Read and written as JSON; rendered by the [text](super::text) and
//! [html](super::html) modules. No measuring and no rendering happens here.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::measure::cpu::{CpuUsage, Role};
use crate::measure::kernel::KernelMemory;
use crate::measure::latency::Latency;
use crate::measure::node::ProcessMemory;

/// One run of one scenario against one or more targets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    pub scenario: String,
    /// What the scenario measures, in a line.
    pub title: String,
    pub unix_time: u64,
    /// The flags that shaped the run, as `[name, value]`, in display order.
    pub settings: Vec<(String, String)>,
    pub host: Host,
    pub targets: Vec<TargetRun>,
    /// Torpor against each baseline, per phase and figure.
    pub comparisons: Vec<Comparison>,
    pub notes: Vec<String>,
}

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Torpor,
    /// The baseline with tokio-tungstenite's default config.
    Default,
    /// The baseline with a 4 KiB read buffer.
    Tuned,
    /// A server loadtest neither started nor can ask (`--external-url`,
    /// measured as the process tree under `--external-pid`): another
    /// runtime serving the same app, such as workerd.
    External,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Torpor => "torpor",
            TargetKind::Default => "default",
            TargetKind::Tuned => "tuned",
            TargetKind::External => "external",
        }
    }

    /// One of the two servers loadtest starts itself.
    pub fn is_baseline(self) -> bool {
        matches!(self, TargetKind::Default | TargetKind::Tuned)
    }
}

/// Where it ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Host {
    pub cpus: usize,
    pub clock_ticks_per_second: u64,
    /// `taskset -c` lists, when pinned.
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
    pub taskset: bool,
    pub kernel: String,
}

/// Everything measured against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetRun {
    pub target: TargetKind,
    pub url: String,
    /// Which processes were measured.
    pub server: String,
    /// Set when the run against this target failed part way; what was
    /// measured before stays.
    pub error: Option<String>,
    pub open: Option<OpenFigures>,
    pub phases: Vec<Phase>,
    pub memory: Option<Memory>,
    pub notes: Vec<String>,
}

impl Default for TargetRun {
    fn default() -> TargetRun {
        TargetRun {
            target: TargetKind::Torpor,
            url: String::new(),
            server: String::new(),
            error: None,
            open: None,
            phases: Vec::new(),
            memory: None,
            notes: Vec::new(),
        }
    }
}

impl TargetRun {
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// Opening the connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OpenFigures {
    pub requested: u64,
    pub opened: u64,
    pub failed: u64,
    pub retries: u64,
    pub failures: BTreeMap<String, u64>,
    pub processes: u32,
    pub seconds: f64,
    pub per_second: f64,
    pub server_cpu: Option<CpuFigures>,
    /// The load generator's RSS over all its processes once open.
    pub client_rss_bytes: u64,
}

/// One measured phase.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Phase {
    /// `max`, `half`, `rate`, `fanout`, `churn`, `wake`, ...
    pub name: String,
    pub description: String,
    /// What an operation is, plural: `pings`, `echoes`, `deliveries`.
    pub unit: String,
    pub seconds: f64,
    pub operations: u64,
    pub per_second: f64,
    /// The rate asked for, for paced phases.
    pub offered_per_second: Option<f64>,
    pub errors: u64,
    pub failures: BTreeMap<String, u64>,
    /// What the latency is from and to ("send → pong").
    pub latency_label: String,
    pub latency: Option<Latency>,
    /// More latencies of the same phase (churn's echo and close), by label.
    pub more_latencies: BTreeMap<String, Latency>,
    pub server_cpu: Option<CpuFigures>,
    pub client_cpu: Option<ClientCpu>,
    /// Scenario-specific counts: `wakes`, `auto_responses`, `lost`, ...
    pub counters: BTreeMap<String, f64>,
}

/// Server CPU in one phase, with per-operation figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuFigures {
    pub usage: CpuUsage,
    /// Everything but the load generator.
    pub seconds: f64,
    /// CPU-seconds per million operations, all server processes.
    pub per_million: Option<f64>,
    /// The same by role (`edge`, `worker`, `supervisor`, `server`).
    pub per_million_by_role: BTreeMap<Role, f64>,
}

impl CpuFigures {
    pub fn new(usage: CpuUsage, operations: u64) -> CpuFigures {
        let per_million =
            |seconds: f64| (operations > 0).then(|| seconds * 1_000_000.0 / operations as f64);
        let seconds = usage.server_seconds();
        let per_million_by_role = usage
            .by_role
            .iter()
            .filter(|(role, _)| **role != Role::Client)
            .filter_map(|(role, s)| Some((*role, per_million(*s)?)))
            .collect();
        CpuFigures {
            per_million: per_million(seconds),
            seconds,
            per_million_by_role,
            usage,
        }
    }
}

/// The load generator's own CPU: near one whole core means it, not the
/// server, may have been the limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientCpu {
    pub seconds: f64,
    /// CPU-seconds per wall second (1.0 = one core busy).
    pub cores: f64,
}

impl ClientCpu {
    pub fn from_usage(usage: &CpuUsage) -> ClientCpu {
        let seconds = usage.seconds(Role::Client);
        ClientCpu {
            seconds,
            cores: if usage.wall_seconds > 0.0 {
                seconds / usage.wall_seconds
            } else {
                0.0
            },
        }
    }
}

/// Memory of idle connections (`idle`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Memory {
    /// The pids whose RSS is summed (Torpor's edges, or the baseline).
    pub pids: Vec<u32>,
    pub attach_bytes: usize,
    pub rss_before_bytes: u64,
    /// The median of `rss_after_samples_bytes`.
    pub rss_after_bytes: u64,
    pub rss_after_samples_bytes: Vec<u64>,
    /// Once more when the hold ends, to show the figure is stable.
    pub rss_end_of_hold_bytes: u64,
    /// May be negative if the server returned memory meanwhile.
    pub rss_growth_bytes: i64,
    pub rss_per_connection: f64,
    pub rss_per_connection_beyond_attachment: f64,
    pub kernel_before: KernelMemory,
    pub kernel_after: KernelMemory,
    /// Kernel figures count both ends of each loopback connection.
    pub tcp_mem_per_connection: f64,
    pub slab_per_connection: f64,
    /// Of the Slab, what cannot be reclaimed, per connection.
    pub slab_unreclaimable_per_connection: f64,
    /// The drop of `MemAvailable` per connection: the machine's cost,
    /// kernel, server and load generator together; 0 if not read.
    pub machine_per_connection: f64,
    /// RSS and Slab while opening, about every 10 %.
    pub curve: Vec<MemoryPoint>,
    /// The server's own count of sockets, if it can say.
    pub server_connections: Option<u64>,
    pub hold_seconds: f64,
    /// Every process of the server, not only those above: what the machine
    /// pays. `None` in reports from before it was measured.
    pub node: Option<NodeMemory>,
}

/// The whole server's memory: Torpor's supervisor, edges and workers (and
/// any other child of the supervisor), or a baseline's one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeMemory {
    /// Summed over every process before the first connection.
    pub rss_before_bytes: u64,
    /// Each process when the hold ends, once the objects have hibernated.
    pub processes_end_of_hold: Vec<ProcessMemory>,
    /// Objects of the run's rooms still live when the hold ended (0: every
    /// one hibernated); `None` where the server cannot say (a baseline).
    pub live_objects_end_of_hold: Option<u64>,
    /// Derived: the sum of `processes_end_of_hold`.
    pub rss_end_of_hold_bytes: u64,
    /// Derived: growth of the whole node from before the first connection
    /// to the end of the hold, per connection.
    pub rss_per_connection: f64,
    /// Derived: the edges' share of it at the same moments (the processes of
    /// [`Memory::pids`]), per connection.
    pub edges_rss_per_connection: f64,
}

impl NodeMemory {
    /// The edges' share, where the server has edges (a baseline has none).
    pub fn edges_share(&self) -> Option<f64> {
        (self.role_end_of_hold("edge").1 > 0).then_some(self.edges_rss_per_connection)
    }

    /// RSS at the end of the hold of the processes in `role`, and how many.
    pub fn role_end_of_hold(&self, role: &str) -> (u64, usize) {
        self.processes_end_of_hold
            .iter()
            .filter(|p| p.role == role)
            .fold((0, 0), |(bytes, n), p| (bytes + p.rss_bytes, n + 1))
    }
}

/// One sample taken while opening.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemoryPoint {
    pub connections: u64,
    pub rss_bytes: u64,
    pub slab_bytes: u64,
    /// Every process of the server, where [`Memory::node`] is measured.
    pub node_rss_bytes: Option<u64>,
}

impl Memory {
    /// Fills in the per-connection figures from the measured ones.
    pub fn derive(&mut self, opened: u64) {
        let growth = i128::from(self.rss_after_bytes) - i128::from(self.rss_before_bytes);
        self.rss_growth_bytes = i64::try_from(growth).unwrap_or(i64::MAX);
        let per = |delta: f64| {
            if opened == 0 {
                0.0
            } else {
                delta / opened as f64
            }
        };
        self.rss_per_connection = per(self.rss_growth_bytes as f64);
        self.rss_per_connection_beyond_attachment =
            self.rss_per_connection - self.attach_bytes as f64;
        self.tcp_mem_per_connection =
            per(self.kernel_after.tcp_mem_bytes as f64 - self.kernel_before.tcp_mem_bytes as f64);
        self.slab_per_connection =
            per(self.kernel_after.slab_bytes as f64 - self.kernel_before.slab_bytes as f64);
        self.slab_unreclaimable_per_connection = per(self.kernel_after.slab_unreclaimable_bytes
            as f64
            - self.kernel_before.slab_unreclaimable_bytes as f64);
        self.machine_per_connection = if self.kernel_before.available_bytes > 0 {
            per(self.kernel_before.available_bytes as f64
                - self.kernel_after.available_bytes as f64)
        } else {
            0.0
        };
        let edges_growth = self.rss_end_of_hold_bytes as f64 - self.rss_before_bytes as f64;
        if let Some(node) = self.node.as_mut() {
            node.rss_end_of_hold_bytes =
                node.processes_end_of_hold.iter().map(|p| p.rss_bytes).sum();
            node.rss_per_connection =
                per(node.rss_end_of_hold_bytes as f64 - node.rss_before_bytes as f64);
            node.edges_rss_per_connection = per(edges_growth);
        }
    }

    /// `(connections, RSS growth per connection)` along the curve.
    pub fn per_connection_curve(&self) -> Vec<(u64, f64)> {
        self.curve
            .iter()
            .filter(|p| p.connections > 0)
            .map(|p| {
                let growth = p.rss_bytes as f64 - self.rss_before_bytes as f64;
                (p.connections, growth / p.connections as f64)
            })
            .collect()
    }
}

/// Torpor's figure against a baseline's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The phase name, or `open`/`memory`.
    pub phase: String,
    pub metric: String,
    pub baseline: TargetKind,
    pub torpor: f64,
    pub other: f64,
    /// torpor / other.
    pub ratio: f64,
    pub higher_is_better: bool,
}

/// The figures compared, per phase: name, how to read it off, and which way
/// is better.
type Metric = (&'static str, fn(&Phase) -> Option<f64>, bool);

const PHASE_METRICS: [Metric; 5] = [
    (
        "per_second",
        |p| Some(p.per_second).filter(|v| *v > 0.0),
        true,
    ),
    (
        "p50_ms",
        |p| p.latency.as_ref().map(|l| l.summary.p50_ms),
        false,
    ),
    (
        "p99_ms",
        |p| p.latency.as_ref().map(|l| l.summary.p99_ms),
        false,
    ),
    (
        "max_ms",
        |p| p.latency.as_ref().map(|l| l.summary.max_ms),
        false,
    ),
    (
        "cpu_seconds_per_million",
        |p| p.server_cpu.as_ref().and_then(|c| c.per_million),
        false,
    ),
];

/// Torpor / baseline for every figure both have.
pub fn compare(targets: &[TargetRun]) -> Vec<Comparison> {
    let Some(torpor) = targets.iter().find(|t| t.target == TargetKind::Torpor) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut push = |phase: &str, metric: &str, baseline: TargetKind, t: f64, o: f64, up: bool| {
        if o != 0.0 && t.is_finite() && o.is_finite() {
            out.push(Comparison {
                phase: phase.to_string(),
                metric: metric.to_string(),
                baseline,
                torpor: t,
                other: o,
                ratio: t / o,
                higher_is_better: up,
            });
        }
    };
    for other in targets.iter().filter(|t| t.target != TargetKind::Torpor) {
        for phase in &torpor.phases {
            let Some(theirs) = other.phase(&phase.name) else {
                continue;
            };
            for (metric, read, up) in PHASE_METRICS {
                if let (Some(t), Some(o)) = (read(phase), read(theirs)) {
                    push(&phase.name, metric, other.target, t, o, up);
                }
            }
        }
        if let (Some(t), Some(o)) = (&torpor.open, &other.open) {
            push(
                "open",
                "per_second",
                other.target,
                t.per_second,
                o.per_second,
                true,
            );
        }
        if let (Some(t), Some(o)) = (&torpor.memory, &other.memory) {
            push(
                "memory",
                "rss_per_connection",
                other.target,
                t.rss_per_connection,
                o.rss_per_connection,
                false,
            );
            push(
                "memory",
                "slab_per_connection",
                other.target,
                t.slab_per_connection,
                o.slab_per_connection,
                false,
            );
            if let (Some(tn), Some(on)) = (&t.node, &o.node) {
                push(
                    "memory",
                    "node_rss_per_connection",
                    other.target,
                    tn.rss_per_connection,
                    on.rss_per_connection,
                    false,
                );
            }
        }
    }
    out
}

impl Report {
    /// The comparisons, recomputed from the targets.
    pub fn finish(mut self) -> Report {
        self.comparisons = compare(&self.targets);
        self
    }

    /// Whether any target failed or lost operations: the figures stand, but
    /// scripts should be able to tell a clean run.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.targets {
            if let Some(e) = &t.error {
                out.push(format!("{}: {e}", t.target.name()));
            }
            if let Some(open) = &t.open {
                if open.failed > 0 {
                    out.push(format!(
                        "{}: {} of {} connections failed",
                        t.target.name(),
                        open.failed,
                        open.requested
                    ));
                }
            }
        }
        out
    }

    pub fn read(path: &Path) -> Result<Report, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not a report: {e}", path.display()))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::measure::latency::Recorder;

    fn latency(us: &[u64]) -> Latency {
        let mut r = Recorder::new();
        for v in us {
            r.record_us(*v);
        }
        r.latency().unwrap()
    }

    fn phase(name: &str, per_second: f64, p_us: u64, cpu_s: f64) -> Phase {
        let mut usage = CpuUsage {
            wall_seconds: 10.0,
            ..CpuUsage::default()
        };
        usage.by_role.insert(Role::Edge, cpu_s);
        usage.by_role.insert(Role::Client, 9.0);
        let operations = (per_second * 10.0) as u64;
        Phase {
            name: name.into(),
            description: "closed loop".into(),
            unit: "pings".into(),
            seconds: 10.0,
            operations,
            per_second,
            latency_label: "send → pong".into(),
            latency: Some(latency(&[p_us; 100])),
            server_cpu: Some(CpuFigures::new(usage.clone(), operations)),
            client_cpu: Some(ClientCpu::from_usage(&usage)),
            ..Phase::default()
        }
    }

    /// A two-target report used by the HTML tests too.
    pub fn sample_report() -> Report {
        let torpor = TargetRun {
            target: TargetKind::Torpor,
            url: "ws://127.0.0.1:18787".into(),
            server: "torpor".into(),
            phases: vec![phase("max", 100_000.0, 40, 5.0)],
            open: Some(OpenFigures {
                requested: 1000,
                opened: 1000,
                seconds: 0.5,
                per_second: 2000.0,
                processes: 1,
                ..OpenFigures::default()
            }),
            ..TargetRun::default()
        };
        let default = TargetRun {
            target: TargetKind::Default,
            url: "ws://127.0.0.1:40000".into(),
            server: "baseline".into(),
            phases: vec![phase("max", 50_000.0, 80, 10.0)],
            ..TargetRun::default()
        };
        Report {
            scenario: "ping".into(),
            title: "auto-response round trips".into(),
            settings: vec![("connections".into(), "1000".into())],
            targets: vec![torpor, default],
            ..Report::default()
        }
        .finish()
    }

    #[test]
    fn cpu_per_million_divides_by_operations() {
        let p = phase("max", 100_000.0, 40, 5.0);
        let cpu = p.server_cpu.unwrap();
        // 5 CPU-s over 1,000,000 pings.
        assert_eq!(cpu.seconds, 5.0);
        assert_eq!(cpu.per_million, Some(5.0));
        assert_eq!(cpu.per_million_by_role.get(&Role::Edge), Some(&5.0));
        assert!(!cpu.per_million_by_role.contains_key(&Role::Client));
        assert_eq!(p.client_cpu.unwrap().cores, 0.9);
        assert_eq!(CpuFigures::new(CpuUsage::default(), 0).per_million, None);
    }

    #[test]
    fn comparisons_are_torpor_over_baseline() {
        let report = sample_report();
        let get = |metric: &str| {
            report
                .comparisons
                .iter()
                .find(|c| c.metric == metric && c.phase == "max")
                .unwrap()
                .clone()
        };
        assert_eq!(get("per_second").ratio, 2.0);
        assert!(get("per_second").higher_is_better);
        assert_eq!(get("p99_ms").ratio, 0.5);
        // 5 CPU-s per million pings against 10 per 500,000.
        assert_eq!(get("cpu_seconds_per_million").ratio, 0.25);
        assert_eq!(get("per_second").baseline, TargetKind::Default);
    }

    #[test]
    fn memory_is_divided_per_connection() {
        let mut m = Memory {
            attach_bytes: 2000,
            rss_before_bytes: 10_000_000,
            rss_after_bytes: 13_000_000,
            kernel_before: KernelMemory {
                tcp_sockets: 0,
                tcp_mem_bytes: 0,
                slab_bytes: 1_000_000,
                slab_unreclaimable_bytes: 600_000,
                available_bytes: 20_000_000,
            },
            kernel_after: KernelMemory {
                tcp_sockets: 2000,
                tcp_mem_bytes: 40_960,
                slab_bytes: 5_000_000,
                slab_unreclaimable_bytes: 3_600_000,
                available_bytes: 10_000_000,
            },
            curve: vec![
                MemoryPoint {
                    connections: 0,
                    rss_bytes: 10_000_000,
                    slab_bytes: 0,
                    node_rss_bytes: None,
                },
                MemoryPoint {
                    connections: 500,
                    rss_bytes: 11_000_000,
                    slab_bytes: 0,
                    node_rss_bytes: None,
                },
            ],
            ..Memory::default()
        };
        m.derive(1000);
        assert_eq!(m.rss_growth_bytes, 3_000_000);
        assert_eq!(m.rss_per_connection, 3000.0);
        assert_eq!(m.rss_per_connection_beyond_attachment, 1000.0);
        assert_eq!(m.slab_per_connection, 4000.0);
        assert_eq!(m.tcp_mem_per_connection, 40.96);
        assert_eq!(m.slab_unreclaimable_per_connection, 3000.0);
        assert_eq!(m.machine_per_connection, 10_000.0);
        assert_eq!(m.per_connection_curve(), [(500, 2000.0)]);
        m.rss_after_bytes = 9_000_000;
        m.derive(1000);
        assert_eq!(m.rss_growth_bytes, -1_000_000);
        m.derive(0);
        assert_eq!(m.rss_per_connection, 0.0);
    }

    /// A node as `idle` finds it: the edges grew 2,000 B a connection, the
    /// workers another 4,000.
    pub fn node_memory_sample() -> Memory {
        let process = |role: &str, pid, rss_bytes| ProcessMemory {
            role: role.into(),
            pid,
            rss_bytes,
        };
        let mut m = Memory {
            pids: vec![11, 12],
            rss_before_bytes: 8_000_000,
            rss_after_bytes: 10_000_000,
            rss_end_of_hold_bytes: 10_000_000,
            node: Some(NodeMemory {
                rss_before_bytes: 20_000_000,
                processes_end_of_hold: vec![
                    process("supervisor", 10, 4_000_000),
                    process("edge", 11, 5_000_000),
                    process("edge", 12, 5_000_000),
                    process("worker", 13, 6_000_000),
                    process("worker", 14, 6_000_000),
                ],
                live_objects_end_of_hold: Some(0),
                ..NodeMemory::default()
            }),
            ..Memory::default()
        };
        m.derive(1000);
        m
    }

    #[test]
    fn the_whole_node_is_divided_per_connection_beside_the_edges() {
        let m = node_memory_sample();
        let node = m.node.as_ref().unwrap();
        assert_eq!(node.rss_end_of_hold_bytes, 26_000_000);
        assert_eq!(node.rss_per_connection, 6000.0);
        assert_eq!(node.edges_rss_per_connection, 2000.0);
        assert_eq!(node.role_end_of_hold("edge"), (10_000_000, 2));
        assert_eq!(node.role_end_of_hold("worker"), (12_000_000, 2));
        assert_eq!(node.role_end_of_hold("child"), (0, 0));
        // Reports from before the node was measured still read.
        let old: Memory = serde_json::from_str(r#"{"rss_before_bytes":1}"#).unwrap();
        assert!(old.node.is_none());
    }

    #[test]
    fn json_round_trips() {
        let report = sample_report();
        let json = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back.targets.len(), 2);
        assert_eq!(back.comparisons, report.comparisons);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["targets"][0]["target"], "torpor");
        assert_eq!(
            value["targets"][0]["phases"][0]["latency"]["buckets"][0][1],
            100
        );
        assert_eq!(
            value["targets"][0]["phases"][0]["server_cpu"]["per_million_by_role"]["edge"],
            5.0
        );
    }

    #[test]
    fn failed_targets_and_connections_are_problems() {
        let mut report = sample_report();
        assert!(report.problems().is_empty());
        report.targets[1].error = Some("baseline exited".into());
        if let Some(open) = report.targets[0].open.as_mut() {
            open.failed = 3;
        }
        let problems = report.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("3 of 1000"), "{problems:?}");
    }
}
