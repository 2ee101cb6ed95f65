//! What a traffic client (`loadtest traffic-client`, behind `ping`, `echo`,
//! `broadcast` and `churn`) and its parent say to each other: the flags the
//! parent starts it with, the commands it reads on stdin, and the `result`
//! line it answers each phase with.
//!
//! Commands (one line each), and what answers them:
//! - `closed <ms> <window> <phase>`: every connection keeps `window` requests
//!   outstanding for `ms` → `result`.
//! - `open <rate/s> <burst> <ms> <phase>`: requests paced at `rate` per
//!   second over all connections (round robin), `burst` to a connection per
//!   write, whatever the replies do → `result`.
//! - `bcast <ms> <window> <rate/s or 0> <phase>`: the sender process sends
//!   `bcast:<seq>:<padding>` with at most `window` not yet acknowledged
//!   (`ack <seq>` from the parent), printing `sent <seq> <unix µs>` for each
//!   and `result` at the end. Every process prints `done <seq> <first µs>
//!   <last µs>` once all its sockets got `seq`.
//! - `stats <phase>` → `result` with the broadcast frames counted since the
//!   last `stats`.
//! - `count`: the sender asks its object how many sockets it has → `count <n>`.
//! - `churn <rate/s> <ms> <phase>` → `result` (see [`churn`](super::churn)).
//!
//! The end of stdin closes everything.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What the connections of a traffic client do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `ping` → `pong` (Torpor answers it at the edge).
    Ping,
    /// `echo:<n × x>` → `<n × x>`.
    Echo,
    /// `bcast:<seq>:<padding>` from one socket, received by all.
    Broadcast,
    /// Connect, (echo,) close, at a rate.
    Churn,
}

impl Kind {
    pub fn parse(text: &str) -> Result<Kind, String> {
        match text {
            "ping" => Ok(Kind::Ping),
            "echo" => Ok(Kind::Echo),
            "broadcast" => Ok(Kind::Broadcast),
            "churn" => Ok(Kind::Churn),
            other => Err(format!(
                "kind {other:?} is not ping, echo, broadcast or churn"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::Echo => "echo",
            Kind::Broadcast => "broadcast",
            Kind::Churn => "churn",
        }
    }
}

/// `loadtest traffic-client` flags: one child's share of the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficOptions {
    pub url: String,
    pub kind: Kind,
    pub room_prefix: String,
    pub rooms: u32,
    pub first_index: u64,
    /// Opened up front (0 for churn, which opens its own).
    pub connections: u64,
    pub source_ip: Ipv4Addr,
    pub concurrency: usize,
    /// Echo payload, broadcast payload, or churn's one echo (0: none).
    pub message_bytes: usize,
}

impl TrafficOptions {
    /// The command-line flags the child is started with, which the command
    /// line parses back into these options.
    pub fn to_args(&self) -> Vec<String> {
        [
            ("--url", self.url.clone()),
            ("--kind", self.kind.name().to_string()),
            ("--room-prefix", self.room_prefix.clone()),
            ("--rooms", self.rooms.to_string()),
            ("--first-index", self.first_index.to_string()),
            ("--connections", self.connections.to_string()),
            ("--source-ip", self.source_ip.to_string()),
            ("--concurrency", self.concurrency.to_string()),
            ("--message-bytes", self.message_bytes.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

/// A command from the parent.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Closed {
        duration: Duration,
        window: u32,
        phase: u32,
    },
    Open {
        /// Requests per second.
        rate: f64,
        /// Requests per write: a pipelining client's shape.
        burst: u32,
        duration: Duration,
        phase: u32,
    },
    Bcast {
        duration: Duration,
        window: u32,
        /// Messages per second; `None` sends as fast as the window allows.
        rate: Option<f64>,
        phase: u32,
    },
    Ack(u64),
    Stats(u32),
    Count,
    Churn {
        rate: f64,
        duration: Duration,
        phase: u32,
    },
}

impl Command {
    pub fn to_line(&self) -> String {
        let ms = |d: &Duration| d.as_millis();
        match self {
            Command::Closed {
                duration,
                window,
                phase,
            } => format!("closed {} {window} {phase}", ms(duration)),
            Command::Open {
                rate,
                burst,
                duration,
                phase,
            } => format!("open {rate} {burst} {} {phase}", ms(duration)),
            Command::Bcast {
                duration,
                window,
                rate,
                phase,
            } => format!(
                "bcast {} {window} {} {phase}",
                ms(duration),
                rate.unwrap_or(0.0)
            ),
            Command::Ack(seq) => format!("ack {seq}"),
            Command::Stats(phase) => format!("stats {phase}"),
            Command::Count => "count".to_string(),
            Command::Churn {
                rate,
                duration,
                phase,
            } => format!("churn {rate} {} {phase}", ms(duration)),
        }
    }

    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("malformed command {line:?}");
        let int = |i: usize| -> Result<u64, String> {
            words.get(i).and_then(|w| w.parse().ok()).ok_or_else(bad)
        };
        let small = |i: usize| -> Result<u32, String> { u32::try_from(int(i)?).map_err(|_| bad()) };
        let rate = |i: usize| -> Result<f64, String> {
            words
                .get(i)
                .and_then(|w| w.parse::<f64>().ok())
                .filter(|r| r.is_finite() && *r >= 0.0)
                .ok_or_else(bad)
        };
        let ms = |i: usize| int(i).map(Duration::from_millis);
        let command = match words.first().copied() {
            Some("closed") if words.len() == 4 => Command::Closed {
                duration: ms(1)?,
                window: small(2)?,
                phase: small(3)?,
            },
            Some("open") if words.len() == 5 => Command::Open {
                rate: rate(1)?,
                burst: small(2)?.max(1),
                duration: ms(3)?,
                phase: small(4)?,
            },
            Some("bcast") if words.len() == 5 => Command::Bcast {
                duration: ms(1)?,
                window: small(2)?,
                rate: Some(rate(3)?).filter(|r| *r > 0.0),
                phase: small(4)?,
            },
            Some("ack") if words.len() == 2 => Command::Ack(int(1)?),
            Some("stats") if words.len() == 2 => Command::Stats(small(1)?),
            Some("count") if words.len() == 1 => Command::Count,
            Some("churn") if words.len() == 4 => Command::Churn {
                rate: rate(1)?,
                duration: ms(2)?,
                phase: small(3)?,
            },
            _ => return Err(bad()),
        };
        Ok(command)
    }
}

/// What a child reports for one phase. One shape for every kind; the fields
/// a kind does not use stay zero.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildResult {
    pub phase: u32,
    pub seconds: f64,
    /// Requests (ping, echo) or broadcasts (the sender) sent.
    pub sent: u64,
    /// Replies to this phase's requests.
    pub replies: u64,
    /// Replies that arrived before the phase's end (the throughput count).
    pub replies_in_window: u64,
    /// Requests never answered: their connection died or the drain timed out.
    pub lost: u64,
    /// Frames that were not what the protocol says comes next.
    pub unexpected: u64,
    /// Send → reply, µs buckets.
    pub latency: Vec<[u64; 2]>,
    /// Open loop: how late each send left after its scheduled time.
    pub lag: Vec<[u64; 2]>,
    pub failures: BTreeMap<String, u64>,
    /// Broadcast: frames counted on all this child's sockets.
    pub frames: u64,
    /// Broadcast sender: the phase's first sequence number.
    pub first_seq: u64,
    /// Broadcast sender: it gave up waiting for an acknowledgement.
    pub stalled: bool,
    /// Churn.
    pub connects: u64,
    pub disconnects: u64,
    pub skipped: u64,
    pub echo_latency: Vec<[u64; 2]>,
    pub close_latency: Vec<[u64; 2]>,
    /// The child's RSS at the end of the phase.
    pub rss_bytes: u64,
}

/// Monotonic instants as Unix microseconds, so that times from different
/// processes (the broadcast sender's and the receivers') can be compared.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_us: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let base_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Clock {
            base: Instant::now(),
            base_unix_us,
        }
    }

    pub fn unix_us(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base).as_micros();
        self.base_unix_us + u64::try_from(since).unwrap_or(u64::MAX / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_lines() {
        let commands = [
            Command::Closed {
                duration: Duration::from_secs(10),
                window: 4,
                phase: 2,
            },
            Command::Open {
                rate: 12_500.5,
                burst: 16,
                duration: Duration::from_millis(1500),
                phase: 3,
            },
            Command::Bcast {
                duration: Duration::from_secs(5),
                window: 8,
                rate: None,
                phase: 4,
            },
            Command::Bcast {
                duration: Duration::from_secs(5),
                window: 1,
                rate: Some(100.0),
                phase: 5,
            },
            Command::Ack(77),
            Command::Stats(4),
            Command::Count,
            Command::Churn {
                rate: 500.0,
                duration: Duration::from_secs(3),
                phase: 6,
            },
        ];
        for command in commands {
            assert_eq!(Command::parse(&command.to_line()), Ok(command.clone()));
        }
    }

    #[test]
    fn malformed_commands_are_refused() {
        for line in [
            "",
            "closed 10 1",
            "open -5 1 100 1",
            "open NaN 1 100 1",
            "open 100 100 1",
            "ack x",
            "bcast 1 2 3",
            "stats 99999999999",
            "launch",
        ] {
            assert!(Command::parse(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn child_flags_round_trip() {
        let opts = TrafficOptions {
            url: "ws://127.0.0.1:18787".into(),
            kind: Kind::Echo,
            room_prefix: "echo-".into(),
            rooms: 10,
            first_index: 500,
            connections: 500,
            source_ip: Ipv4Addr::new(127, 0, 0, 11),
            concurrency: 64,
            message_bytes: 32,
        };
        let args = opts.to_args();
        assert!(args.windows(2).any(|w| w == ["--kind", "echo"]));
        assert!(args.windows(2).any(|w| w == ["--source-ip", "127.0.0.11"]));
        assert_eq!(args.len(), 18);
    }

    #[test]
    fn clock_counts_forward_from_now() {
        let clock = Clock::new();
        let now = Instant::now();
        let later = now + Duration::from_millis(3);
        assert_eq!(clock.unix_us(later) - clock.unix_us(now), 3000);
        assert!(clock.unix_us(now) > 1_600_000_000_000_000);
    }
}
