//! The command line, which is a public promise: scripts and BENCHMARKS.md
//! run these commands and flags as they are. [usage] is the help text,
//! [flags] the parser and [options] what each command's flags become; this
//! module dispatches a command to its scenario, child process or report
//! tool, prints the summary, saves the report and picks the exit status.

pub mod flags;
pub mod options;
pub mod usage;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use crate::child::protocol::Kind;
use crate::cli::options::*;
use crate::cli::usage::{usage_of, USAGE};
use crate::report::model::Report;
use crate::scenarios::{alarms, attack, broadcast, churn, create, idle, reload, rtt, wake};
use crate::{baseline, child, fleet, report};

/// Prints to stdout. A reader that went away (`| head`) is not a failure of
/// the run, whose report may still be going to a file, so write errors are
/// dropped rather than panicking as `println!` would.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

/// Exit code for bad flags (sysexits EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// Runs the command line and turns the outcome into an exit status.
pub fn main() -> ExitCode {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_command_help_is_its_own_section() {
        let attack = usage_of("attack").unwrap();
        assert!(attack.starts_with("loadtest attack [flags]\n"), "{attack}");
        for kind in attack::AttackKind::ALL {
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
