//! The report for people: the summary a run prints on stdout (a table per
//! phase, the Torpor/baseline ratios, memory per connection) and the number
//! formats the HTML page shares with it. Reads the model only.

use std::fmt::{self, Write as _};

use crate::measure::cpu::Role;
use crate::measure::latency::human_ms;
use crate::report::model::{CpuFigures, Memory, NodeMemory, Phase, Report, TargetRun};

/// `12345.6` → `12,346`.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let rounded = value.round().abs() as u128;
    let digits = rounded.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 && rounded > 0 {
        out.insert(0, '-');
    }
    out
}

/// Bytes as MiB, for the human lines.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A ratio for people: `1.25x`, or `1/4395` when two decimals would say 0.
pub fn ratio(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}x")
    } else if value >= 10.0 {
        format!("{value:.1}x")
    } else if value >= 0.01 {
        format!("{value:.2}x")
    } else if value > 0.0 {
        format!("1/{:.0}", 1.0 / value)
    } else {
        format!("{value:.2}x")
    }
}

fn cpu_text(cpu: &CpuFigures) -> String {
    let role = |r: Role| cpu.per_million_by_role.get(&r).copied();
    let mut parts = Vec::new();
    for (r, name) in [
        (Role::Edge, "edge"),
        (Role::Worker, "worker"),
        (Role::Supervisor, "sup"),
    ] {
        if let Some(v) = role(r) {
            parts.push(format!("{name} {v:.2}"));
        }
    }
    match cpu.per_million {
        Some(total) if parts.is_empty() => format!("{total:.2}"),
        Some(total) => format!("{total:.2} ({})", parts.join(", ")),
        None => format!("{:.2} s", cpu.seconds),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.scenario, self.title)?;
        if !self.settings.is_empty() {
            let settings: Vec<String> = self
                .settings
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(f, "  {}", settings.join(", "))?;
        }
        writeln!(
            f,
            "  host: {} CPUs; server on CPUs {}, load generator on {}{}",
            self.host.cpus,
            self.host.server_cpus.as_deref().unwrap_or("any"),
            self.host.client_cpus.as_deref().unwrap_or("any"),
            if self.host.taskset {
                ""
            } else {
                " (no taskset: not pinned)"
            }
        )?;
        for t in &self.targets {
            writeln!(f)?;
            writeln!(f, "[{}] {} — {}", t.target.name(), t.url, t.server)?;
            if let Some(e) = &t.error {
                writeln!(f, "  FAILED: {e}")?;
            }
            if let Some(open) = &t.open {
                write!(
                    f,
                    "  open      {} of {} in {:.2} s ({}/s) from {} processes, {} failed",
                    thousands(open.opened as f64),
                    thousands(open.requested as f64),
                    open.seconds,
                    thousands(open.per_second),
                    open.processes,
                    open.failed
                )?;
                if open.retries > 0 {
                    write!(f, ", {} retries", open.retries)?;
                }
                if let Some(cpu) = &open.server_cpu {
                    write!(f, "; server CPU {:.2} s", cpu.seconds)?;
                }
                writeln!(f)?;
                for (reason, count) in &open.failures {
                    writeln!(f, "    {count:>8} x {reason}")?;
                }
            }
            if let Some(m) = &t.memory {
                write_memory(f, m)?;
            }
            for note in &t.notes {
                writeln!(f, "  note: {note}")?;
            }
        }
        self.write_phase_tables(f)?;
        if !self.comparisons.is_empty() {
            writeln!(f)?;
            writeln!(f, "torpor / the others (same run):")?;
            for c in &self.comparisons {
                writeln!(
                    f,
                    "  {:<8} {:<24} {:>12} vs {:<8} {:>12} = {:>7}  ({} is better)",
                    c.phase,
                    c.metric,
                    metric_text(&c.metric, c.torpor),
                    c.baseline.name(),
                    metric_text(&c.metric, c.other),
                    ratio(c.ratio),
                    if c.higher_is_better {
                        "higher"
                    } else {
                        "lower"
                    }
                )?;
            }
        }
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}

fn write_memory(f: &mut fmt::Formatter<'_>, m: &Memory) -> fmt::Result {
    writeln!(
        f,
        "  rss       before {:.1} MiB, after {:.1} MiB (median of {}), end of hold {:.1} MiB",
        mib(m.rss_before_bytes),
        mib(m.rss_after_bytes),
        m.rss_after_samples_bytes.len(),
        mib(m.rss_end_of_hold_bytes)
    )?;
    writeln!(
        f,
        "  per conn  {:.0} bytes RSS ({:.0} beyond a {} byte attachment); kernel: {:.0} bytes slab, {:.0} bytes TCP buffers (both ends)",
        m.rss_per_connection,
        m.rss_per_connection_beyond_attachment,
        m.attach_bytes,
        m.slab_per_connection,
        m.tcp_mem_per_connection
    )?;
    if m.machine_per_connection != 0.0 {
        writeln!(
            f,
            "  machine   {:.0} bytes less available per connection (kernel, server and clients); \
             {:.0} bytes of the slab unreclaimable",
            m.machine_per_connection, m.slab_unreclaimable_per_connection
        )?;
    }
    if let Some(node) = &m.node {
        write_node_memory(f, node)?;
    }
    if let Some(n) = m.server_connections {
        writeln!(f, "  server says {n} connections")?;
    }
    Ok(())
}

/// The whole node at the end of the hold, by role, and per connection beside
/// the edges' share.
fn write_node_memory(f: &mut fmt::Formatter<'_>, node: &NodeMemory) -> fmt::Result {
    let mut roles = Vec::new();
    for (role, plural) in [
        ("supervisor", "supervisor"),
        ("edge", "edges"),
        ("worker", "workers"),
        ("child", "other children"),
        ("server", "server"),
    ] {
        let (bytes, n) = node.role_end_of_hold(role);
        if n > 0 {
            roles.push(format!("{plural} ({n}) {:.1}", mib(bytes)));
        }
    }
    let objects = match node.live_objects_end_of_hold {
        Some(0) => ", every object hibernated".to_string(),
        Some(live) => format!(", {live} objects still live"),
        None => String::new(),
    };
    writeln!(
        f,
        "  node      before {:.1} MiB, end of hold {:.1} MiB{objects}: {} MiB",
        mib(node.rss_before_bytes),
        mib(node.rss_end_of_hold_bytes),
        roles.join(", ")
    )?;
    let edges = node
        .edges_share()
        .map_or(String::new(), |e| format!(", {e:.0} of them the edges'"));
    writeln!(
        f,
        "  per conn  {:.0} bytes RSS for the whole node{edges} (end of hold)",
        node.rss_per_connection
    )
}

impl Report {
    /// One table per phase name, a row per target.
    fn write_phase_tables(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = Vec::new();
        for t in &self.targets {
            for p in &t.phases {
                if !names.contains(&p.name.as_str()) {
                    names.push(&p.name);
                }
            }
        }
        for name in names {
            let rows: Vec<(&TargetRun, &Phase)> = self
                .targets
                .iter()
                .filter_map(|t| Some((t, t.phase(name)?)))
                .collect();
            let Some((_, first)) = rows.first() else {
                continue;
            };
            writeln!(f)?;
            writeln!(f, "phase {name}: {}", first.description)?;
            if !first.latency_label.is_empty() {
                writeln!(f, "  latency is {}", first.latency_label)?;
            }
            let mut table = String::new();
            let _ = writeln!(
                table,
                "  {:<8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}  server CPU-s per million",
                "target",
                format!("{}/s", first.unit),
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
            );
            for (t, p) in &rows {
                let l = p.latency.as_ref().map(|l| &l.summary);
                let cell = |v: Option<f64>| v.map_or("-".to_string(), human_ms);
                let _ = writeln!(
                    table,
                    "  {:<8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}  {}",
                    t.target.name(),
                    // Latency-only phases (wake, alarms) have no rate.
                    if p.per_second > 0.0 {
                        thousands(p.per_second)
                    } else {
                        "-".to_string()
                    },
                    cell(l.map(|l| l.p50_ms)),
                    cell(l.map(|l| l.p90_ms)),
                    cell(l.map(|l| l.p99_ms)),
                    cell(l.map(|l| l.p999_ms)),
                    cell(l.map(|l| l.max_ms)),
                    p.server_cpu.as_ref().map_or("-".to_string(), cpu_text)
                );
            }
            f.write_str(&table)?;
            for (t, p) in &rows {
                let mut extras = Vec::new();
                if let Some(rate) = p.offered_per_second {
                    extras.push(format!("offered {}/s", thousands(rate)));
                }
                extras.push(if p.seconds > 0.0 {
                    format!(
                        "{} {} in {:.1} s",
                        thousands(p.operations as f64),
                        p.unit,
                        p.seconds
                    )
                } else {
                    format!("{} {}", thousands(p.operations as f64), p.unit)
                });
                if p.errors > 0 {
                    extras.push(format!("{} errors", p.errors));
                }
                for (k, v) in &p.counters {
                    extras.push(format!("{k} {}", trim_number(*v)));
                }
                if let Some(c) = &p.client_cpu {
                    extras.push(format!("client {:.0}% of a core", c.cores * 100.0));
                }
                if let Some(cpu) = &p.server_cpu {
                    if !cpu.usage.vanished.is_empty() {
                        extras.push(format!(
                            "exited mid-phase (CPU after last 100 ms sample lost): {}",
                            cpu.usage.vanished.join(", ")
                        ));
                    }
                }
                writeln!(f, "    {:<8} {}", t.target.name(), extras.join("; "))?;
                for (label, l) in &p.more_latencies {
                    writeln!(f, "    {:<8} {label}: {}", "", l.summary)?;
                }
                for (reason, count) in &p.failures {
                    writeln!(f, "    {:<8} {count:>8} x {reason}", "")?;
                }
            }
        }
        Ok(())
    }
}

/// A compared figure in its own unit.
pub fn metric_text(metric: &str, v: f64) -> String {
    if metric.ends_with("_ms") {
        human_ms(v)
    } else if metric.starts_with("cpu") {
        format!("{v:.2}")
    } else {
        thousands(v)
    }
}

/// Integers without `.0`, fractions with two places.
fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::tests::sample_report;

    #[test]
    fn summary_has_a_table_row_per_target_and_the_ratios() {
        let text = sample_report().to_string();
        assert!(
            text.starts_with("ping: auto-response round trips\n"),
            "{text}"
        );
        assert!(text.contains("phase max: closed loop"), "{text}");
        assert!(text.contains("pings/s"), "{text}");
        assert!(text.contains("torpor        100,000"), "{text}");
        assert!(text.contains("default        50,000"), "{text}");
        assert!(text.contains("40 µs"), "{text}");
        assert!(text.contains("5.00 (edge 5.00)"), "{text}");
        assert!(text.contains("client 90% of a core"), "{text}");
        assert!(
            text.contains(
                "max      per_second                    100,000 vs default        50,000 =   2.00x  (higher is better)"
            ),
            "{text}"
        );
        assert!(
            text.contains("open      1,000 of 1,000 in 0.50 s (2,000/s)"),
            "{text}"
        );
    }

    #[test]
    fn the_summary_shows_the_whole_node_and_the_edges_share() {
        let mut report = sample_report();
        report.targets[0].memory = Some(crate::report::model::tests::node_memory_sample());
        let text = report.to_string();
        assert!(
            text.contains(
                "  node      before 19.1 MiB, end of hold 24.8 MiB, every object hibernated: \
                 supervisor (1) 3.8, edges (2) 9.5, workers (2) 11.4 MiB"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  per conn  6000 bytes RSS for the whole node, 2000 of them the edges' (end of hold)"
            ),
            "{text}"
        );
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1500.0), "-1,500");
        assert_eq!(ratio(1.234), "1.23x");
        assert_eq!(ratio(12.34), "12.3x");
        assert_eq!(ratio(1234.0), "1234x");
        assert_eq!(ratio(32.0 / 140_638.0), "1/4395");
        assert_eq!(ratio(-0.5), "-0.50x");
        assert_eq!(trim_number(3.0), "3");
        assert_eq!(trim_number(0.126), "0.13");
    }
}
