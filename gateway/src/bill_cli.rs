//! `torpor bill`: reads the node's ledger (`data_dir/ledger.sqlite`) and
//! prints the bill of a window, as a table or JSON.
//!
//! This file is the command line only: arguments, dates, where output goes
//! and exit codes. Counting is [`crate::ledger`], pricing and formatting
//! [`crate::billing`]. Dates are parsed by hand (RFC 3339 or a bare date,
//! always turned into UTC): the two formats need a few lines, not a crate.
//!
//! Exit codes: 0 with a bill; 64 (usage) on bad arguments, with the usage
//! text on stderr; 74 (I/O error) when the ledger cannot be read or the
//! output written. A data dir without a ledger is not an error: the node has
//! not run there yet, so the bill is empty (exit 0, a note on stderr), which
//! keeps scripts that read `--json` simple.

use crate::billing::{self, Bill};
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError, ObjectTotals};
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

/// The ledger's file name inside `data_dir`.
pub const LEDGER_FILE: &str = "ledger.sqlite";

/// Shown after the flags in `torpor bill --help`.
pub const AFTER_HELP: &str = "\
Prints what the usage recorded in data_dir/ledger.sqlite costs at the
[prices] of the config (defaults: today's Durable Objects prices).

WHEN is a UTC date (2026-11-01, meaning its midnight) or an RFC 3339 time
(2026-11-01T00:00:00Z, 2026-11-01T09:30:00+02:00). Usage is kept in hourly
buckets: a window takes every hour it overlaps. Included amounts (1M
requests, 400,000 GB-s, ...) are subtracted once from the whole window, so
bill one calendar month at a time: --from 2026-11-01 --to 2026-12-01.";

const EXIT_USAGE: u8 = 64;
const EXIT_IO: u8 = 74;

/// What `torpor bill` was asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct BillArgs {
    /// Start of the window, included (default: the first record).
    #[arg(long = "from", value_name = "WHEN", value_parser = parse_when)]
    pub from_ms: Option<u64>,
    /// End of the window, excluded (default: now).
    #[arg(long = "to", value_name = "WHEN", value_parser = parse_when)]
    pub to_ms: Option<u64>,
    /// Only objects of this class.
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// One JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also list every object's raw counts.
    #[arg(long)]
    pub by_object: bool,
}

/// Arguments that parse but cannot make a bill.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// `--from` not before `--to`.
    #[error("--from {from} is not before --to {to}")]
    EmptyWindow {
        /// As RFC 3339.
        from: String,
        /// As RFC 3339.
        to: String,
    },
}

impl BillArgs {
    /// Checks what flags alone cannot: the window is not empty.
    pub fn check(&self) -> Result<(), ArgError> {
        if let (Some(from), Some(to)) = (self.from_ms, self.to_ms) {
            if from >= to {
                return Err(ArgError::EmptyWindow {
                    from: format_when(from),
                    to: format_when(to),
                });
            }
        }
        Ok(())
    }
}

/// Parses `2026-11-01` (UTC midnight) or RFC 3339
/// (`2026-11-01T00:00:00Z`, `2026-11-01T09:30:00.250+02:00`) into unix ms.
/// Fractions finer than a millisecond are dropped; a leap second is refused.
pub fn parse_when(text: &str) -> Result<u64, String> {
    let bytes = text.as_bytes();
    if bytes.len() < 10 {
        return Err("expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ".to_owned());
    }
    let (date, rest) = text.split_at(10);
    let days = parse_date(date)?;
    let mut ms = i128::from(days) * 86_400_000;
    if !rest.is_empty() {
        let rest = rest
            .strip_prefix(['T', 't', ' '])
            .ok_or("the time must follow a T")?;
        let (seconds, rest) = parse_time(rest)?;
        ms += i128::from(seconds) * 1000;
        let (millis, rest) = parse_fraction(rest)?;
        ms += i128::from(millis);
        ms -= i128::from(parse_offset(rest)?) * 60_000;
    }
    u64::try_from(ms).map_err(|_| "is before 1970-01-01T00:00:00Z".to_owned())
}

fn digits(text: &str, what: &str) -> Result<i64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} {text:?} is not a number"));
    }
    text.parse()
        .map_err(|_| format!("{what} {text:?} is too large"))
}

/// `YYYY-MM-DD` into days since 1970-01-01.
fn parse_date(text: &str) -> Result<i64, String> {
    let b = text.as_bytes();
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err("expected a date as YYYY-MM-DD".to_owned());
    }
    let year = digits(&text[..4], "year")?;
    let month = digits(&text[5..7], "month")?;
    let day = digits(&text[8..10], "day")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} is not within 1..=12"));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=month_days).contains(&day) {
        return Err(format!("day {day} is not within 1..={month_days}"));
    }
    Ok(days_from_civil(year, month, day))
}

/// `HH:MM:SS` into seconds, and what follows.
fn parse_time(text: &str) -> Result<(i64, &str), String> {
    let b = text.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return Err("expected a time as HH:MM:SS".to_owned());
    }
    let hour = digits(&text[..2], "hour")?;
    let minute = digits(&text[3..5], "minute")?;
    let second = digits(&text[6..8], "second")?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "{hour:02}:{minute:02}:{second:02} is not a time of day"
        ));
    }
    Ok((hour * 3600 + minute * 60 + second, &text[8..]))
}

/// An optional `.fraction` into milliseconds, and what follows.
fn parse_fraction(text: &str) -> Result<(i64, &str), String> {
    let Some(rest) = text.strip_prefix('.') else {
        return Ok((0, text));
    };
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (fraction, rest) = rest.split_at(end);
    if fraction.is_empty() {
        return Err("a fraction of a second needs digits".to_owned());
    }
    let millis: String = fraction.chars().chain("00".chars()).take(3).collect();
    Ok((digits(&millis, "fraction")?, rest))
}

/// `Z` or `±HH:MM` into minutes east of UTC.
fn parse_offset(text: &str) -> Result<i64, String> {
    if text == "Z" || text == "z" {
        return Ok(0);
    }
    let sign = match text.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return Err("the time must end in Z or an offset like +02:00".to_owned()),
    };
    let b = text.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return Err(format!("offset {text:?} is not ±HH:MM"));
    }
    let hours = digits(&text[1..3], "offset hour")?;
    let minutes = digits(&text[4..6], "offset minute")?;
    if hours > 23 || minutes > 59 {
        return Err(format!("offset {text:?} is out of range"));
    }
    Ok(sign * (hours * 60 + minutes))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Unix ms as RFC 3339 UTC, to the second (`.mmm` only when not whole).
pub fn format_when(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(secs / 86_400);
    let s = secs % 86_400;
    let base = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    );
    match ms % 1000 {
        0 => format!("{base}Z"),
        millis => format!("{base}.{millis:03}Z"),
    }
}

/// The JSON document of `--json`: the window, then the bill's fields.
#[derive(Serialize)]
struct JsonBill<'a> {
    from: Option<String>,
    to: Option<String>,
    class: Option<&'a str>,
    ledger: &'a Path,
    #[serde(flatten)]
    bill: &'a Bill,
    /// Only with `--by-object`; `objects` is the bill's count.
    #[serde(skip_serializing_if = "Option::is_none")]
    by_object: Option<&'a [ObjectTotals]>,
}

/// Runs `torpor bill` on a loaded, validated config; output on stdout,
/// notes and errors on stderr.
pub fn run(args: &BillArgs, config: &Config) -> ExitCode {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let code = run_with(args, config, &mut stdout.lock(), &mut stderr.lock());
    ExitCode::from(code)
}

/// [`run`] with the output streams given; returns the exit code.
pub fn run_with(args: &BillArgs, config: &Config, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    // A failed write to stderr leaves nothing better to do; the exit code
    // still tells.
    if let Err(e) = args.check() {
        let _ = writeln!(err, "torpor bill: {e}");
        return EXIT_USAGE;
    }
    let path = config.data_dir.join(LEDGER_FILE);
    let (objects, byte_hours) = match read_ledger(&path, args) {
        Ok(Some(read)) => read,
        Ok(None) => {
            let _ = writeln!(
                err,
                "torpor bill: no ledger at {}: the node has not run here; the bill is empty",
                path.display()
            );
            (Vec::new(), 0)
        }
        Err(e) => {
            let _ = writeln!(err, "torpor bill: {e}");
            return EXIT_IO;
        }
    };
    let bill = billing::bill(&objects, byte_hours, &config.prices);
    let written = if args.json {
        write_json(args, &path, &bill, &objects, out)
    } else {
        write_tables(args, &bill, &objects, out)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "torpor bill: cannot write the bill: {e}");
            EXIT_IO
        }
    }
}

/// `None` when there is no ledger file: opening would create one, and a
/// bill must not leave a file behind in a data dir it only reads.
fn read_ledger(
    path: &Path,
    args: &BillArgs,
) -> Result<Option<(Vec<ObjectTotals>, u128)>, LedgerError> {
    if !path.exists() {
        return Ok(None);
    }
    let ledger = Ledger::open(path)?;
    let class = args.class.as_deref();
    let objects = ledger.totals(args.from_ms, args.to_ms, class)?;
    let byte_hours = ledger.storage_byte_hours(args.from_ms, args.to_ms, class)?;
    Ok(Some((objects, byte_hours)))
}

fn write_json(
    args: &BillArgs,
    path: &Path,
    bill: &Bill,
    objects: &[ObjectTotals],
    out: &mut dyn Write,
) -> io::Result<()> {
    let doc = JsonBill {
        from: args.from_ms.map(format_when),
        to: args.to_ms.map(format_when),
        class: args.class.as_deref(),
        ledger: path,
        bill,
        by_object: args.by_object.then_some(objects),
    };
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn write_tables(
    args: &BillArgs,
    bill: &Bill,
    objects: &[ObjectTotals],
    out: &mut dyn Write,
) -> io::Result<()> {
    let from = args
        .from_ms
        .map_or_else(|| "the first record".to_owned(), format_when);
    let to = args.to_ms.map_or_else(|| "now".to_owned(), format_when);
    let class = args
        .class
        .as_deref()
        .map_or_else(|| "all classes".to_owned(), |c| format!("class {c}"));
    writeln!(out, "bill from {from} to {to}, {class}")?;
    writeln!(out)?;
    billing::write_text(bill, out)?;
    if args.by_object {
        writeln!(out)?;
        billing::write_objects_text(objects, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Usage, UsageDelta};

    /// 2024-11-01T00:00:00Z
    const NOV_1: u64 = 1_730_419_200_000;
    const DAY_MS: u64 = 86_400_000;

    #[test]
    fn dates_and_rfc3339_times_parse_to_utc_millis() {
        assert_eq!(parse_when("2024-11-01"), Ok(NOV_1));
        assert_eq!(parse_when("2024-11-01T00:00:00Z"), Ok(NOV_1));
        assert_eq!(parse_when("2024-11-01t01:02:03.5z"), Ok(NOV_1 + 3_723_500));
        assert_eq!(parse_when("2024-11-01T02:00:00+02:00"), Ok(NOV_1));
        assert_eq!(parse_when("2024-10-31T23:00:00-01:00"), Ok(NOV_1));
        assert_eq!(parse_when("1970-01-01"), Ok(0));
        assert_eq!(parse_when("2024-02-29"), Ok(1_709_164_800_000));
        assert_eq!(parse_when("2000-03-01"), Ok(951_868_800_000));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-11-31",
            "2024-11-1",
            "24-11-01",
            "2024-11-01T25:00:00Z",
            "2024-11-01T00:00:00",
            "2024-11-01T00:00Z",
            "2024-11-01T00:00:60Z",
            "1969-12-31",
            "2024-+1-01",
            "",
        ] {
            assert!(parse_when(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn times_format_back_as_rfc3339() {
        assert_eq!(format_when(NOV_1), "2024-11-01T00:00:00Z");
        assert_eq!(format_when(NOV_1 + 3_723_500), "2024-11-01T01:02:03.500Z");
        assert_eq!(format_when(0), "1970-01-01T00:00:00Z");
        for ms in [951_782_400_000, 1_709_164_800_000, 4_102_444_800_000] {
            assert_eq!(parse_when(&format_when(ms)), Ok(ms));
        }
    }

    /// `torpor bill`'s flags alone, as the node's command line takes them.
    #[derive(Debug, clap::Parser)]
    struct Bill {
        #[command(flatten)]
        args: BillArgs,
    }

    fn parse_args(args: &[&str]) -> Result<BillArgs, clap::Error> {
        use clap::Parser;
        Bill::try_parse_from(std::iter::once("bill").chain(args.iter().copied())).map(|b| b.args)
    }

    #[test]
    fn arguments_parse_in_either_form() {
        let args = parse_args(&[
            "--from",
            "2024-11-01",
            "--to=2024-12-01",
            "--class",
            "ChatRoom",
            "--json",
            "--by-object",
        ])
        .unwrap();
        assert_eq!(
            args,
            BillArgs {
                from_ms: Some(NOV_1),
                to_ms: Some(NOV_1 + 30 * DAY_MS),
                class: Some("ChatRoom".into()),
                json: true,
                by_object: true,
            }
        );
        assert_eq!(parse_args(&[]).unwrap(), BillArgs::default());
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let err = |args: &[&str]| parse_args(args).unwrap_err().to_string();
        assert!(err(&["--frm", "x"]).contains("'--frm'"));
        assert!(err(&["bill"]).contains("'bill'"));
        assert!(err(&["--json=yes"]).contains("--json"));
        assert!(err(&["--from"]).contains("--from <WHEN>"));
        assert!(err(&["--class", "a", "--class", "b"]).contains("--class"));
        let bad_month = err(&["--to", "2024-13-01"]);
        assert!(
            bad_month.contains("2024-13-01") && bad_month.contains("month 13"),
            "{bad_month}"
        );
        let e = parse_args(&["--from", "2024-12-01", "--to", "2024-11-01"])
            .unwrap()
            .check()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "--from 2024-12-01T00:00:00Z is not before --to 2024-11-01T00:00:00Z"
        );
    }

    fn config_in(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        }
    }

    fn run_capture(args: &[&str], config: &Config) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(&parse_args(args).unwrap(), config, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    /// The pricing docs' chat app: 100 rooms, one incoming message a
    /// second for the 30 days of November 2024, live one second a minute;
    /// recorded once a day.
    fn fill_worked_example(dir: &Path) {
        let mut ledger = Ledger::open(&dir.join(LEDGER_FILE)).unwrap();
        for day in 0..30 {
            let deltas: Vec<UsageDelta> = (0..100)
                .map(|i| UsageDelta {
                    class: "ChatRoom".into(),
                    name: format!("room-{i:03}"),
                    usage: Usage {
                        ws_messages_in: 86_400,
                        active_ms: 1440 * 1000,
                        ..Usage::default()
                    },
                    stored_bytes: None,
                })
                .collect();
            ledger.record(NOV_1 + day * DAY_MS + 5, &deltas).unwrap();
        }
        // Outside the window: must not be billed.
        let outside = UsageDelta {
            class: "ChatRoom".into(),
            name: "room-000".into(),
            usage: Usage {
                requests: 50_000_000,
                ..Usage::default()
            },
            stored_bytes: None,
        };
        ledger.record(NOV_1 + 30 * DAY_MS, &[outside]).unwrap();
    }

    #[test]
    fn the_worked_example_bills_its_published_amounts_in_json() {
        let dir = tempfile::tempdir().unwrap();
        fill_worked_example(dir.path());
        let (code, out, err) = run_capture(
            &["--from", "2024-11-01", "--to", "2024-12-01", "--json"],
            &config_in(dir.path()),
        );
        assert_eq!(code, 0, "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        let cost = |item: &str| json[item]["cost_usd"].as_f64().unwrap();
        assert!((cost("requests") - 1.794).abs() < 1e-9, "{out}");
        assert!((cost("duration") - 1.75).abs() < 1e-9, "{out}");
        let total = json["total_usd"].as_f64().unwrap();
        assert!((total - (1.794 + 1.75)).abs() < 1e-9, "{out}");
        assert_eq!(json["requests"]["quantity"], 12_960_000.0);
        assert_eq!(json["usage"]["ws_messages_in"], 259_200_000);
        assert_eq!(json["objects"], 100);
        assert_eq!(json["from"], "2024-11-01T00:00:00Z");
        assert!(json.get("by_object").is_none());

        let (code, out, _) = run_capture(
            &[
                "--from",
                "2024-11-01",
                "--to",
                "2024-12-01",
                "--json",
                "--by-object",
            ],
            &config_in(dir.path()),
        );
        assert_eq!(code, 0);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["by_object"].as_array().map(Vec::len), Some(100));
        assert_eq!(json["by_object"][0]["name"], "room-000");
        assert_eq!(json["by_object"][0]["usage"]["ws_messages_in"], 30 * 86_400);
    }

    #[test]
    fn the_worked_example_prints_a_table_with_its_total() {
        let dir = tempfile::tempdir().unwrap();
        fill_worked_example(dir.path());
        let (code, out, _) = run_capture(
            &["--from", "2024-11-01", "--to", "2024-12-01", "--by-object"],
            &config_in(dir.path()),
        );
        assert_eq!(code, 0);
        assert!(
            out.starts_with("bill from 2024-11-01T00:00:00Z to 2024-12-01T00:00:00Z, all classes")
        );
        let total = out.lines().find(|l| l.starts_with("total")).unwrap();
        assert!(total.ends_with("$3.54"), "{out}");
        assert!(
            out.lines().any(|l| l.starts_with("ChatRoom  room-099")),
            "{out}"
        );
        // Another class: nothing.
        let (_, out, _) = run_capture(&["--class", "Counter", "--json"], &config_in(dir.path()));
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["total_usd"], 0.0);
        assert_eq!(json["class"], "Counter");
    }

    #[test]
    fn a_data_dir_without_a_ledger_gets_an_empty_bill_and_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(&dir.path().join("never-ran"));
        let (code, out, err) = run_capture(&["--json"], &config);
        assert_eq!(code, 0);
        assert!(err.contains("no ledger at"), "{err}");
        assert!(err.contains("the node has not run here"), "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(json["total_usd"], 0.0);
        assert!(!dir.path().join("never-ran").exists());
    }

    #[test]
    fn an_empty_window_exits_64() {
        let dir = tempfile::tempdir().unwrap();
        let args = ["--from", "2024-12-01", "--to", "2024-11-01"];
        let (code, out, err) = run_capture(&args, &config_in(dir.path()));
        assert_eq!(code, 64);
        assert!(out.is_empty());
        assert!(err.contains("is not before"), "{err}");
    }

    #[test]
    fn an_unreadable_ledger_exits_74() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEDGER_FILE), b"not a database, not at all").unwrap();
        let (code, _, err) = run_capture(&[], &config_in(dir.path()));
        assert_eq!(code, 74, "{err}");
        assert!(err.contains("ledger"), "{err}");
    }
}
