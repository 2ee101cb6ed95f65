//! `loadtest attack-table RESULT.json...`: the "Under attack" table of
//! BENCHMARKS.md from saved `loadtest attack` runs, one row per kind (in
//! the order the files first name it) with the median of its runs in each
//! cell. Reads reports only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::medians::median;
use crate::report::model::{Phase, Report};
use crate::report::text::thousands;

/// One run's figures, as the table shows them.
#[derive(Debug, Default)]
struct Run {
    per_second: f64,
    unit: String,
    rss: [f64; 3],
    fds: [f64; 3],
    /// Files under data_dir before and after, when counted.
    files: Option<[f64; 2]>,
    fresh_ms: Option<[f64; 3]>,
    failed: f64,
    tried: f64,
    goal_met: bool,
}

fn run_of(report: &Report) -> Result<(String, String, Run), String> {
    let kind = report
        .settings
        .iter()
        .find(|(k, _)| k == "kind")
        .map(|(_, v)| v.clone())
        .ok_or("an attack report without a kind setting")?;
    let target = report
        .targets
        .first()
        .ok_or("an attack report without a target")?;
    let attack = target.phase("attack").ok_or("no attack phase")?;
    let fresh = target.phase("fresh").ok_or("no fresh phase")?;
    let at = |phase: &Phase, key: &str| phase.counters.get(key).copied();
    let three = |what: &str| -> [f64; 3] {
        ["before", "peak", "after"].map(|when| at(attack, &format!("{what}_{when}")).unwrap_or(0.0))
    };
    let files = match (
        at(attack, "data_files_before"),
        at(attack, "data_files_after"),
    ) {
        (Some(b), Some(a)) => Some([b, a]),
        _ => None,
    };
    let run = Run {
        per_second: attack.per_second,
        unit: attack.unit.clone(),
        rss: three("node_rss_mib"),
        fds: three("node_fds"),
        files,
        fresh_ms: fresh
            .latency
            .as_ref()
            .map(|l| [l.summary.p50_ms, l.summary.p99_ms, l.summary.max_ms]),
        failed: fresh.errors as f64,
        tried: at(fresh, "tried").unwrap_or(0.0),
        goal_met: target.notes.iter().any(|n| n.starts_with("goal met")),
    };
    // The title says what the attack was, with its numbers.
    let what = report
        .title
        .strip_prefix("a fresh client while ")
        .and_then(|t| t.strip_suffix(" attack the node"))
        .unwrap_or(&report.title)
        .to_string();
    Ok((kind, what, run))
}

fn mid(values: impl Iterator<Item = f64>) -> f64 {
    median(&values.collect::<Vec<_>>()).unwrap_or(f64::NAN)
}

/// The median of each of `N` figures over the runs.
fn mids<const N: usize>(runs: &[Run], pick: impl Fn(&Run) -> Option<[f64; N]>) -> Option<[f64; N]> {
    let picked: Vec<[f64; N]> = runs.iter().filter_map(&pick).collect();
    if picked.is_empty() {
        return None;
    }
    Some(std::array::from_fn(|i| mid(picked.iter().map(|p| p[i]))))
}

/// The table, in markdown.
pub fn render(reports: &[Report]) -> Result<String, String> {
    let mut order: Vec<String> = Vec::new();
    let mut whats: BTreeMap<String, String> = BTreeMap::new();
    let mut runs: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for report in reports {
        if report.scenario != "attack" {
            return Err(format!("a {} report is not an attack run", report.scenario));
        }
        let (kind, what, run) = run_of(report)?;
        if !order.contains(&kind) {
            order.push(kind.clone());
        }
        whats.entry(kind.clone()).or_insert(what);
        runs.entry(kind).or_default().push(run);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| attack | runs | attack rate | node RSS MiB before / peak / after | node fds before / peak / after | data_dir files before → after | fresh client p50 / p99 / max ms | fresh failed / tried | goal met |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for kind in &order {
        let (Some(runs), Some(what)) = (runs.get(kind), whats.get(kind)) else {
            continue;
        };
        let unit = runs.first().map_or("", |r| r.unit.as_str());
        let rate = mid(runs.iter().map(|r| r.per_second));
        let [rb, rp, ra] = mids(runs, |r| Some(r.rss)).unwrap_or([f64::NAN; 3]);
        let [fb, fp, fa] = mids(runs, |r| Some(r.fds)).unwrap_or([f64::NAN; 3]);
        let files = mids(runs, |r| r.files).map_or("-".to_string(), |[b, a]| {
            format!("{} → {}", thousands(b), thousands(a))
        });
        let fresh = mids(runs, |r| r.fresh_ms).map_or("-".to_string(), |[p50, p99, max]| {
            format!("{p50:.1} / {p99:.1} / {max:.1}")
        });
        let failed = mid(runs.iter().map(|r| r.failed));
        let tried = mid(runs.iter().map(|r| r.tried));
        let met = runs.iter().filter(|r| r.goal_met).count();
        let _ = writeln!(
            out,
            "| `{kind}`: {what} | {} | {} {unit}/s | {rb:.1} / {rp:.1} / {ra:.1} | {} / {} / {} | {files} | {fresh} | {} / {} | {met} of {} |",
            runs.len(),
            thousands(rate),
            thousands(fb),
            thousands(fp),
            thousands(fa),
            thousands(failed),
            thousands(tried),
            runs.len()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::latency::Recorder;
    use crate::report::model::TargetRun;

    fn report(kind: &str, rate: f64, p99_us: u64, rss_peak: f64, met: bool) -> Report {
        let mut attack = Phase {
            name: "attack".into(),
            unit: "pings".into(),
            per_second: rate,
            ..Phase::default()
        };
        for (key, v) in [
            ("node_rss_mib_before", 20.0),
            ("node_rss_mib_peak", rss_peak),
            ("node_rss_mib_after", 30.0),
            ("node_fds_before", 70.0),
            ("node_fds_peak", 90.0),
            ("node_fds_after", 71.0),
            ("data_files_before", 8.0),
            ("data_files_after", 1008.0),
        ] {
            attack.counters.insert(key.into(), v);
        }
        let mut latency = Recorder::new();
        latency.record_us(1000);
        latency.record_us(p99_us);
        let mut fresh = Phase {
            name: "fresh".into(),
            latency: latency.latency(),
            errors: 1,
            ..Phase::default()
        };
        fresh.counters.insert("tried".into(), 100.0);
        Report {
            scenario: "attack".into(),
            title: format!("a fresh client while 20 x {kind} attack the node"),
            settings: vec![("kind".into(), kind.into())],
            targets: vec![TargetRun {
                phases: vec![attack, fresh],
                notes: vec![if met {
                    "goal met: x"
                } else {
                    "goal not met: x"
                }
                .into()],
                ..TargetRun::default()
            }],
            ..Report::default()
        }
    }

    #[test]
    fn one_row_per_kind_with_the_median_of_its_runs() {
        let reports = [
            report("ping-flood", 1000.0, 50_000, 40.0, true),
            report("matches", 100.0, 2_000, 25.0, true),
            report("ping-flood", 3000.0, 900_000, 60.0, false),
            report("ping-flood", 2000.0, 70_000, 50.0, true),
        ];
        let table = render(&reports).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("| attack | runs |"));
        // ping-flood first, as the files first name it.
        let flood = lines[2];
        assert!(
            flood.starts_with("| `ping-flood`: 20 x ping-flood | 3 | 2,000 pings/s |"),
            "{flood}"
        );
        assert!(flood.contains("| 20.0 / 50.0 / 30.0 |"), "{flood}");
        assert!(flood.contains("| 70 / 90 / 71 |"), "{flood}");
        assert!(flood.contains("| 8 → 1,008 |"), "{flood}");
        assert!(
            flood.contains("/ 70.0 / 70.0 |"),
            "p99 and max are the middle run's: {flood}"
        );
        assert!(flood.contains("| 1 / 100 | 2 of 3 |"), "{flood}");
        assert!(lines[3].starts_with("| `matches`: 20 x matches | 1 |"));
    }

    #[test]
    fn other_scenarios_and_kindless_reports_are_refused() {
        let mut other = report("ping-flood", 1.0, 1, 1.0, true);
        other.scenario = "ping".into();
        assert!(render(&[other]).is_err());
        let mut kindless = report("ping-flood", 1.0, 1, 1.0, true);
        kindless.settings.clear();
        assert!(render(&[kindless]).is_err());
    }
}
