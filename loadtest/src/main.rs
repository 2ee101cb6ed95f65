//! `loadtest`: Torpor's load generator. Scenarios: `idle` opens many
//! WebSockets, leaves them idle, and measures the edge's memory per
//! connection (`idle-client` is the hidden child process it spawns); `wake`
//! times the first message to a hibernated object; `alarms` times how late
//! alarms fire, with objects live, hibernated, or their worker exited.
//!
//! This file only parses flags and dispatches; the work is in `idle.rs`,
//! `wake.rs` and `alarms.rs`. Flags
//! are parsed by hand: a dozen `--name value` pairs do not justify a parser
//! crate.
// A load generator's results are its output, and stdout is also how a client
// process reports to its parent, so printing is the point here.
#![allow(clippy::print_stdout)]

mod admin;
mod alarms;
mod client;
mod idle;
mod latency;
mod report;
mod rss;
mod session;
mod wake;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use alarms::{AlarmOptions, Variant};
use idle::{ClientOptions, IdleOptions};
use wake::{Probe, WakeOptions};

const USAGE: &str = "\
usage: loadtest idle [flags]

Opens idle WebSockets to Bench objects (/bench/idle-<room>) from several client
processes and reports the edge's RSS growth per connection.

  --url URL             ws://host:port of the server [ws://127.0.0.1:8787]
  --admin ADDR          admin host:port [127.0.0.1:9090]
  --connections N       connections in total [15000]
  --rooms N             Bench objects to spread them over [100]
  --attach-bytes N      send attach:<N x 'a'> on each and await ok; 0 = none [0]
  --processes N         client processes, each from its own 127.0.0.(10+i) [4]
  --hold DURATION       how long to hold after measuring, e.g. 10s, 500ms, 2m [10s]
  --edge-pid N          the edge's pid; read from /admin/node when absent
  --json PATH           also write the report as JSON
  --concurrency N       connections in flight per process [256]

usage: loadtest wake [flags]

Fills Bench objects (/bench/<prefix>-<i>) with --db-mb MiB each, then times
the first message to each after it hibernates (polling the admin API), and the
same message again right after (warm).

  --url URL             ws://host:port of the server [ws://127.0.0.1:8787]
  --admin ADDR          admin host:port [127.0.0.1:9090]
  --objects N           objects, each with one socket [1]
  --db-mb N             MiB stored in each object first, as 100 KiB puts [100]
  --samples N           wakes timed in all, round-robin over the objects [100]
  --probe echo|get      echo:x, or get:probe which also opens the database [echo]
  --prefix NAME         object name prefix [wake]
  --json PATH           also write the report as JSON

usage: loadtest alarms [flags]

Sets --count alarms --delay-ms ahead, at most one per object at a time (in
rounds), and reports how late each alarm:0 arrives after send time + delay.

  --url URL             ws://host:port of the server [ws://127.0.0.1:8787]
  --admin ADDR          admin host:port [127.0.0.1:9090]
  --objects N           objects, each with one socket [10]
  --count N             alarms in all [100]
  --delay-ms N          how far ahead each alarm is set [1000]
  --variant V           live: no check; hibernated: every object shows
                        active=false before due; cold: every worker has exited
                        (pid null in /admin/node) before due [live]
  --prefix NAME         object name prefix [alarm]
  --json PATH           also write the report as JSON
";

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
        Err(Failure::Run(msg)) => {
            eprintln!("loadtest: {msg}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Run(String),
}

fn run(args: &[String]) -> Result<(), Failure> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    match command.as_str() {
        "idle" => {
            let opts = idle_options(rest).map_err(Failure::Usage)?;
            // A run that cannot be split over the processes is a flag problem.
            idle::plan(&opts).map_err(Failure::Usage)?;
            let report = idle::run(&opts).map_err(Failure::Run)?;
            println!("{report}");
            if let Some(path) = &opts.json {
                report.write_json(path).map_err(Failure::Run)?;
                println!("json written to {}", path.display());
            }
            // The figures are still reported, but a run with failures is not a
            // clean measurement, and scripts should be able to tell.
            if report.connections_failed > 0 {
                return Err(Failure::Run(format!(
                    "{} of {} connections failed",
                    report.connections_failed, report.connections_requested
                )));
            }
            Ok(())
        }
        "wake" => {
            let opts = wake_options(rest).map_err(Failure::Usage)?;
            let report = wake::run(&opts).map_err(Failure::Run)?;
            println!("{report}");
            if let Some(path) = &opts.json {
                report.write_json(path).map_err(Failure::Run)?;
                println!("json written to {}", path.display());
            }
            Ok(())
        }
        "alarms" => {
            let opts = alarm_options(rest).map_err(Failure::Usage)?;
            let report = alarms::run(&opts).map_err(Failure::Run)?;
            println!("{report}");
            if let Some(path) = &opts.json {
                report.write_json(path).map_err(Failure::Run)?;
                println!("json written to {}", path.display());
            }
            // As with idle: the figures stand, but a round that was not in
            // the state it claims to measure is not a clean run.
            if report.rounds_not_ready > 0 {
                return Err(Failure::Run(format!(
                    "{} of {} rounds were not {:?} before their alarms came due",
                    report.rounds_not_ready, report.rounds, report.variant
                )));
            }
            Ok(())
        }
        "idle-client" => {
            let opts = client_options(rest).map_err(Failure::Usage)?;
            idle::run_client(&opts).map_err(Failure::Run)
        }
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

fn idle_options(args: &[String]) -> Result<IdleOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = IdleOptions {
        url: flags.string("url", "ws://127.0.0.1:8787"),
        admin: flags.string("admin", "127.0.0.1:9090"),
        connections: flags.number("connections", 15_000)?,
        rooms: flags.number("rooms", 100)?,
        attach_bytes: flags.number("attach-bytes", 0)?,
        processes: flags.number("processes", 4)?,
        hold: flags.duration("hold", Duration::from_secs(10))?,
        edge_pid: flags.optional_number("edge-pid")?,
        json: flags.take("json").map(PathBuf::from),
        concurrency: flags.number("concurrency", 256)?,
    };
    flags.finish()?;
    Ok(opts)
}

fn wake_options(args: &[String]) -> Result<WakeOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = WakeOptions {
        url: flags.string("url", "ws://127.0.0.1:8787"),
        admin: flags.string("admin", "127.0.0.1:9090"),
        objects: flags.number("objects", 1)?,
        db_mb: flags.number("db-mb", 100)?,
        samples: flags.number("samples", 100)?,
        probe: Probe::parse(&flags.string("probe", "echo")).map_err(|e| format!("--probe: {e}"))?,
        prefix: flags.string("prefix", "wake"),
        json: flags.take("json").map(PathBuf::from),
    };
    flags.finish()?;
    Ok(opts)
}

fn alarm_options(args: &[String]) -> Result<AlarmOptions, String> {
    let mut flags = Flags::parse(args)?;
    let opts = AlarmOptions {
        url: flags.string("url", "ws://127.0.0.1:8787"),
        admin: flags.string("admin", "127.0.0.1:9090"),
        objects: flags.number("objects", 10)?,
        count: flags.number("count", 100)?,
        delay: Duration::from_millis(flags.number("delay-ms", 1000)?),
        variant: Variant::parse(&flags.string("variant", "live"))
            .map_err(|e| format!("--variant: {e}"))?,
        prefix: flags.string("prefix", "alarm"),
        json: flags.take("json").map(PathBuf::from),
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

/// `--name value` and `--name=value` pairs, taken out one by one so that
/// whatever is left over at the end is an unknown flag.
struct Flags(BTreeMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut map = BTreeMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    (name.to_string(), value.clone())
                }
            };
            if map.insert(name.clone(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(Flags(map))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    fn string(&mut self, name: &str, default: &str) -> String {
        self.take(name).unwrap_or_else(|| default.to_string())
    }

    fn required(&mut self, name: &str) -> Result<String, String> {
        self.take(name)
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn optional_number<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String> {
        self.take(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{name} {v:?} is not a valid value"))
            })
            .transpose()
    }

    fn number<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        Ok(self.optional_number(name)?.unwrap_or(default))
    }

    fn required_number<T: FromStr>(&mut self, name: &str) -> Result<T, String> {
        self.optional_number(name)?
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn duration(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.take(name) {
            Some(v) => parse_duration(&v).map_err(|e| format!("--{name}: {e}")),
            None => Ok(default),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.0.keys().next() {
            Some(name) => Err(format!("unknown flag --{name}")),
            None => Ok(()),
        }
    }
}

/// `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s or 500ms"))?;
    let seconds = |factor: u64| {
        value
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(format!("{text:?} has unit {unit:?}; use ms, s, m or h")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
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
        assert_eq!(opts.processes, 4);
        assert_eq!(opts.rooms, 100);
        assert_eq!(opts.edge_pid, None);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        assert!(idle_options(&args(&["--conections", "5"])).is_err());
        assert!(idle_options(&args(&["--connections", "many"])).is_err());
        assert!(idle_options(&args(&["--connections"])).is_err());
        assert!(idle_options(&args(&["--rooms", "1", "--rooms", "2"])).is_err());
        assert!(idle_options(&args(&["stray"])).is_err());
    }

    #[test]
    fn wake_and_alarm_flags_parse() {
        let wake = wake_options(&args(&["--db-mb", "0", "--probe=get", "--samples", "7"])).unwrap();
        assert_eq!((wake.db_mb, wake.samples, wake.objects), (0, 7, 1));
        assert_eq!(wake.probe, Probe::Get);
        assert!(wake_options(&args(&["--probe", "ping"])).is_err());

        let alarms = alarm_options(&args(&["--delay-ms", "250", "--variant", "cold"])).unwrap();
        assert_eq!(alarms.delay, Duration::from_millis(250));
        assert_eq!(alarms.variant, Variant::Cold);
        assert_eq!((alarms.objects, alarms.count), (10, 100));
        assert!(alarm_options(&args(&["--variant", "warm"])).is_err());
        assert!(alarm_options(&args(&["--delay", "5"])).is_err());
    }

    #[test]
    fn client_flags_parse_what_the_parent_writes() {
        let parent = IdleOptions {
            url: "ws://127.0.0.1:8787".into(),
            admin: "127.0.0.1:9090".into(),
            connections: 1001,
            rooms: 7,
            attach_bytes: 2000,
            processes: 2,
            hold: Duration::from_secs(10),
            edge_pid: None,
            json: None,
            concurrency: 64,
        };
        for child in idle::plan(&parent).unwrap() {
            assert_eq!(client_options(&child.to_args()).unwrap(), child);
        }
    }
}
