//! `loadtest medians FILE...`: the median of each figure over several saved
//! runs of one scenario (what `bench.sh` prints after its repeats), with
//! every run's value beside it so the spread shows. Reads reports only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::model::Report;
use crate::report::text::{metric_text, ratio};

/// The scenario counters worth a median (the rest are per-run checks),
/// besides each edge's `edge<i>_took_ms`.
const MEDIAN_COUNTERS: [&str; 12] = [
    "wakes",
    "lost",
    "unconfirmed_wakes",
    // reload
    "took_ms",
    "reload_wall_ms",
    "drain_max_ms",
    "gap_max_ms",
    "sockets_closed",
    "duplicated",
    "bcast_missing",
    // upgrade
    "upgrade_ms",
    "edge_took_max_ms",
];

fn is_median_counter(name: &str) -> bool {
    MEDIAN_COUNTERS.contains(&name)
        || name
            .strip_prefix("edge")
            .and_then(|rest| rest.strip_suffix("_took_ms"))
            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
}

/// `(target or "ratio", phase, figure)` → one value per run.
type Figures = BTreeMap<(String, String, String), Vec<f64>>;

fn collect(reports: &[Report]) -> Figures {
    let mut figures = Figures::new();
    let mut put = |target: &str, phase: &str, metric: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            figures
                .entry((target.to_string(), phase.to_string(), metric.to_string()))
                .or_default()
                .push(v);
        }
    };
    for report in reports {
        for t in &report.targets {
            let name = t.target.name();
            if let Some(o) = &t.open {
                put(name, "open", "per_second", Some(o.per_second));
                put(name, "open", "seconds", Some(o.seconds));
            }
            if let Some(m) = &t.memory {
                put(
                    name,
                    "memory",
                    "rss_per_connection",
                    Some(m.rss_per_connection),
                );
                put(
                    name,
                    "memory",
                    "slab_per_connection",
                    Some(m.slab_per_connection),
                );
                put(
                    name,
                    "memory",
                    "tcp_mem_per_connection",
                    Some(m.tcp_mem_per_connection),
                );
                if let Some(node) = &m.node {
                    put(
                        name,
                        "memory",
                        "node_rss_per_connection",
                        Some(node.rss_per_connection),
                    );
                    put(
                        name,
                        "memory",
                        "edges_share_per_connection",
                        node.edges_share(),
                    );
                }
            }
            for p in &t.phases {
                if p.per_second > 0.0 {
                    put(name, &p.name, "per_second", Some(p.per_second));
                }
                if let Some(l) = &p.latency {
                    put(name, &p.name, "p50_ms", Some(l.summary.p50_ms));
                    put(name, &p.name, "p99_ms", Some(l.summary.p99_ms));
                    put(name, &p.name, "p999_ms", Some(l.summary.p999_ms));
                    put(name, &p.name, "max_ms", Some(l.summary.max_ms));
                }
                if let Some(cpu) = &p.server_cpu {
                    put(name, &p.name, "cpu_seconds_per_million", cpu.per_million);
                    // A baseline's one process is its total already.
                    for (role, v) in cpu
                        .per_million_by_role
                        .iter()
                        .filter(|(role, _)| **role != crate::measure::cpu::Role::Server)
                    {
                        let metric =
                            format!("cpu_{}_per_million", format!("{role:?}").to_lowercase());
                        put(name, &p.name, &metric, Some(*v));
                    }
                }
                for (k, v) in &p.counters {
                    if is_median_counter(k) {
                        put(name, &p.name, k, Some(*v));
                    }
                }
            }
        }
        for c in &report.comparisons {
            put(
                &format!("torpor/{}", c.baseline.name()),
                &c.phase,
                &c.metric,
                Some(c.ratio),
            );
        }
    }
    figures
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The medians as text, one figure a line.
pub fn render(reports: &[Report]) -> String {
    let mut out = String::new();
    let scenarios: Vec<&str> = {
        let mut s: Vec<&str> = reports.iter().map(|r| r.scenario.as_str()).collect();
        s.dedup();
        s
    };
    let _ = writeln!(
        out,
        "{}: medians of {} runs",
        scenarios.join("+"),
        reports.len()
    );
    let _ = writeln!(
        out,
        "  {:<16} {:<8} {:<28} {:>12}  runs",
        "target", "phase", "figure", "median"
    );
    for ((target, phase, metric), values) in collect(reports) {
        let Some(mid) = median(&values) else {
            continue;
        };
        let show = |v: f64| {
            if target.contains('/') {
                ratio(v)
            } else {
                metric_text(&metric, v)
            }
        };
        let runs: Vec<String> = values.iter().map(|v| show(*v)).collect();
        let _ = writeln!(
            out,
            "  {target:<16} {phase:<8} {metric:<28} {:>12}  {}",
            show(mid),
            runs.join(" ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::tests::sample_report;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn each_edges_handover_gets_a_median() {
        assert!(is_median_counter("edge0_took_ms"));
        assert!(is_median_counter("edge12_took_ms"));
        assert!(is_median_counter("upgrade_ms"));
        assert!(!is_median_counter("edge_took_ms"));
        assert!(!is_median_counter("edgex_took_ms"));
        assert!(!is_median_counter("worker0_drain_ms"));
    }

    #[test]
    fn figures_are_gathered_per_target_phase_and_ratio() {
        let a = sample_report();
        let mut b = sample_report();
        b.targets[0].phases[0].per_second = 120_000.0;
        let mut c = sample_report();
        c.targets[0].phases[0].per_second = 80_000.0;
        let b = b.finish();
        let c = c.finish();
        let text = render(&[a, b, c]);
        assert!(text.starts_with("ping: medians of 3 runs\n"), "{text}");
        // Torpor's max rate: 100k, 120k, 80k → 100k.
        assert!(
            text.contains("torpor           max      per_second                        100,000  100,000 120,000 80,000"),
            "{text}"
        );
        // The ratio against default follows: 2.00x 2.40x 1.60x → 2.00x.
        assert!(
            text.contains("torpor/default   max      per_second"),
            "{text}"
        );
        assert!(text.contains("2.00x  2.00x 2.40x 1.60x"), "{text}");
        assert!(text.contains("cpu_edge_per_million"), "{text}");
        assert!(
            text.contains("torpor           open     per_second"),
            "{text}"
        );
    }
}
