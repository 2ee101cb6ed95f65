//! `--name value` flags, parsed by hand: a few dozen pairs do not justify a
//! parser crate. Flags are taken out one by one, so that whatever is left at
//! the end is an unknown flag and says so.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// The value of a flag given without one.
const SWITCH: &str = "true";

/// The flags of one command, not yet taken.
#[derive(Debug)]
pub struct Flags(BTreeMap<String, String>);

impl Flags {
    /// `--name value` and `--name=value`; a flag given twice is refused.
    pub fn parse(args: &[String]) -> Result<Flags, String> {
        let mut map = BTreeMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                // A flag followed by another flag, or by nothing, is a
                // switch (`--baselines`); a value never starts with `--`.
                None => match iter.as_slice().first() {
                    Some(next) if !next.starts_with("--") => {
                        iter.next();
                        (name.to_string(), next.clone())
                    }
                    _ => (name.to_string(), SWITCH.to_string()),
                },
            };
            if map.insert(name.clone(), value).is_some() {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(Flags(map))
    }

    pub fn take(&mut self, name: &str) -> Option<String> {
        self.0.remove(name)
    }

    /// Whether `name` was given (without taking it).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A text value; a bare `--name` has none to give.
    pub fn optional_string(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.take(name) {
            Some(v) if v == SWITCH => Err(format!("--{name} needs a value")),
            other => Ok(other),
        }
    }

    pub fn string(&mut self, name: &str, default: &str) -> Result<String, String> {
        Ok(self
            .optional_string(name)?
            .unwrap_or_else(|| default.to_string()))
    }

    pub fn required(&mut self, name: &str) -> Result<String, String> {
        self.optional_string(name)?
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn path(&mut self, name: &str) -> Result<Option<std::path::PathBuf>, String> {
        Ok(self.optional_string(name)?.map(std::path::PathBuf::from))
    }

    pub fn optional_number<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String> {
        self.take(name)
            .map(|v| {
                if v == SWITCH {
                    return Err(format!("--{name} needs a value"));
                }
                v.parse()
                    .map_err(|_| format!("--{name} {v:?} is not a valid value"))
            })
            .transpose()
    }

    pub fn number<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        Ok(self.optional_number(name)?.unwrap_or(default))
    }

    /// A number that must be at least 1.
    pub fn positive<T: FromStr + PartialOrd + From<u8>>(
        &mut self,
        name: &str,
        default: T,
    ) -> Result<T, String> {
        let value = self.number(name, default)?;
        if value < T::from(1) {
            return Err(format!("--{name} must be at least 1"));
        }
        Ok(value)
    }

    pub fn required_number<T: FromStr>(&mut self, name: &str) -> Result<T, String> {
        self.optional_number(name)?
            .ok_or_else(|| format!("--{name} is required"))
    }

    pub fn duration(&mut self, name: &str, default: Duration) -> Result<Duration, String> {
        match self.take(name) {
            Some(v) => parse_duration(&v).map_err(|e| format!("--{name}: {e}")),
            None => Ok(default),
        }
    }

    /// `true`/`false` (also `yes`/`no`, `1`/`0`).
    pub fn boolean(&mut self, name: &str, default: bool) -> Result<bool, String> {
        match self.take(name).as_deref() {
            None => Ok(default),
            Some("true" | "yes" | "1") => Ok(true),
            Some("false" | "no" | "0") => Ok(false),
            Some(other) => Err(format!("--{name} {other:?} is not true or false")),
        }
    }

    /// A CPU list for `taskset -c` (`1`, `0,2`, `2-3`), or `none` for no
    /// pinning.
    pub fn cpus(&mut self, name: &str, default: &str) -> Result<Option<String>, String> {
        let value = self.string(name, default)?;
        parse_cpus(&value).map_err(|e| format!("--{name}: {e}"))
    }

    /// Refuses a flag that the command does not use, saying why, rather than
    /// the bare "unknown flag" that `finish` would give.
    pub fn refuse(&self, name: &str, why: &str) -> Result<(), String> {
        if self.has(name) {
            return Err(format!("--{name} does not apply: {why}"));
        }
        Ok(())
    }

    pub fn finish(self) -> Result<(), String> {
        match self.0.keys().next() {
            Some(name) => Err(format!("unknown flag --{name}")),
            None => Ok(()),
        }
    }
}

/// `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
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

/// `none` → no pinning; otherwise a `taskset -c` list of CPU numbers and
/// ranges. Checked here so that a typo fails as a usage error, not as a
/// child process that will not start.
pub fn parse_cpus(text: &str) -> Result<Option<String>, String> {
    if text == "none" {
        return Ok(None);
    }
    let valid = !text.is_empty()
        && text.split(',').all(|part| {
            let mut ends = part.splitn(2, '-');
            ends.all(|end| !end.is_empty() && end.bytes().all(|b| b.is_ascii_digit()))
        });
    if !valid {
        return Err(format!(
            "{text:?} is not a CPU list like 1, 0,2 or 2-3 (or none)"
        ));
    }
    Ok(Some(text.to_string()))
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
    fn both_spellings_and_leftovers() {
        let mut flags = Flags::parse(&args(&["--a=1", "--b", "2", "--c", "x"])).unwrap();
        assert_eq!(flags.number("a", 0u32), Ok(1));
        assert_eq!(flags.number("b", 0u32), Ok(2));
        assert_eq!(flags.number("d", 7u32), Ok(7));
        assert_eq!(flags.finish(), Err("unknown flag --c".to_string()));
        assert!(Flags::parse(&args(&["--a", "1", "--a", "2"])).is_err());
        let mut bare = Flags::parse(&args(&["--a"])).unwrap();
        assert_eq!(bare.number("a", 0u32), Err("--a needs a value".to_string()));
        assert!(Flags::parse(&args(&["stray"])).is_err());
    }

    #[test]
    fn positive_refuses_zero_and_booleans_are_strict() {
        let mut flags =
            Flags::parse(&args(&["--n", "0", "--yes", "true", "--no", "maybe"])).unwrap();
        assert_eq!(
            flags.positive("n", 1u32),
            Err("--n must be at least 1".to_string())
        );
        assert_eq!(flags.boolean("yes", false), Ok(true));
        assert!(flags.boolean("no", false).is_err());
        assert_eq!(flags.boolean("absent", true), Ok(true));
    }

    #[test]
    fn a_flag_without_a_value_is_a_switch() {
        let mut flags =
            Flags::parse(&args(&["--baselines", "--connections", "5", "--json"])).unwrap();
        assert_eq!(flags.boolean("baselines", false), Ok(true));
        assert_eq!(flags.number("connections", 0u32), Ok(5));
        assert_eq!(flags.path("json"), Err("--json needs a value".to_string()));
        let mut flags = Flags::parse(&args(&["--baselines", "false"])).unwrap();
        assert_eq!(flags.boolean("baselines", true), Ok(false));
    }

    #[test]
    fn cpu_lists_are_checked() {
        assert_eq!(parse_cpus("1"), Ok(Some("1".to_string())));
        assert_eq!(parse_cpus("0,2-3"), Ok(Some("0,2-3".to_string())));
        assert_eq!(parse_cpus("none"), Ok(None));
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("1-").is_err());
        assert!(parse_cpus("one").is_err());
        assert!(parse_cpus("1;rm").is_err());
    }

    #[test]
    fn refusing_names_the_reason() {
        let flags = Flags::parse(&args(&["--message-bytes", "9"])).unwrap();
        let err = flags
            .refuse("message-bytes", "ping always sends `ping`")
            .unwrap_err();
        assert!(err.contains("ping always sends"), "{err}");
        assert!(flags.refuse("rate", "x").is_ok());
    }
}
