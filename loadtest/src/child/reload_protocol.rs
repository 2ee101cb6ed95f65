//! What a reload client (`loadtest reload-client`, behind `reload`) and its
//! parent say to each other: the flags it is started with, the commands it
//! reads on stdin, and the report it answers with.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Latency phases: warm-up, before, during and after the swap.
pub const PHASES: usize = 4;
/// Width of one timeline slot.
pub const SLOT_MS: u64 = 100;

/// `loadtest reload-client` flags: one child's share of the work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadClientOptions {
    pub url: String,
    pub room_prefix: String,
    pub rooms: u32,
    pub busy_rooms: u32,
    /// Echoing sockets per busy room (the control socket never echoes).
    pub echoers_per_room: u64,
    pub first_index: u64,
    pub connections: u64,
    pub source_ip: Ipv4Addr,
    pub concurrency: usize,
}

impl ReloadClientOptions {
    /// The command-line flags the child is started with, which the command
    /// line parses back into these options.
    pub fn to_args(&self) -> Vec<String> {
        [
            ("--url", self.url.clone()),
            ("--room-prefix", self.room_prefix.clone()),
            ("--rooms", self.rooms.to_string()),
            ("--busy-rooms", self.busy_rooms.to_string()),
            ("--echoers-per-room", self.echoers_per_room.to_string()),
            ("--first-index", self.first_index.to_string()),
            ("--connections", self.connections.to_string()),
            ("--source-ip", self.source_ip.to_string()),
            ("--concurrency", self.concurrency.to_string()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
    }
}

/// A command from the parent.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Hello,
    Ask {
        room: u32,
        text: String,
    },
    Start {
        interval: Duration,
        window: u32,
        bcast_every: Duration,
    },
    Phase(usize),
    Stop,
    Expect(BTreeMap<u32, u64>),
}

impl Command {
    pub fn to_line(&self) -> String {
        match self {
            Command::Hello => "hello".into(),
            Command::Ask { room, text } => format!("ask {room} {text}"),
            Command::Start {
                interval,
                window,
                bcast_every,
            } => format!(
                "start {} {window} {}",
                interval.as_millis(),
                bcast_every.as_millis()
            ),
            Command::Phase(n) => format!("phase {n}"),
            Command::Stop => "stop".into(),
            Command::Expect(counts) => {
                let list: Vec<String> = counts.iter().map(|(r, n)| format!("{r}:{n}")).collect();
                // An empty list still needs a word, or the line would not parse.
                format!(
                    "expect {}",
                    if list.is_empty() {
                        "-".into()
                    } else {
                        list.join(",")
                    }
                )
            }
        }
    }

    pub fn parse(line: &str) -> Result<Command, String> {
        let bad = || format!("malformed command {line:?}");
        let words: Vec<&str> = line.split_whitespace().collect();
        let int = |i: usize| -> Result<u64, String> {
            words.get(i).and_then(|w| w.parse().ok()).ok_or_else(bad)
        };
        Ok(match words.first().copied() {
            Some("hello") if words.len() == 1 => Command::Hello,
            Some("ask") if words.len() == 3 => Command::Ask {
                room: u32::try_from(int(1)?).map_err(|_| bad())?,
                text: words[2].to_string(),
            },
            Some("start") if words.len() == 4 => Command::Start {
                interval: Duration::from_millis(int(1)?),
                window: u32::try_from(int(2)?).map_err(|_| bad())?.max(1),
                bcast_every: Duration::from_millis(int(3)?),
            },
            Some("phase") if words.len() == 2 => {
                let n = usize::try_from(int(1)?).map_err(|_| bad())?;
                if n >= PHASES {
                    return Err(bad());
                }
                Command::Phase(n)
            }
            Some("stop") if words.len() == 1 => Command::Stop,
            Some("expect") if words.len() == 2 => {
                let mut counts = BTreeMap::new();
                if words[1] != "-" {
                    for pair in words[1].split(',') {
                        let (room, count) = pair.split_once(':').ok_or_else(bad)?;
                        counts.insert(
                            room.parse().map_err(|_| bad())?,
                            count.parse().map_err(|_| bad())?,
                        );
                    }
                }
                Command::Expect(counts)
            }
            _ => return Err(bad()),
        })
    }
}

/// What a child reports at the end (`result`), and in part at `stop`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ChildReport {
    pub sockets: u64,
    /// Sockets that closed or failed, by reason.
    pub closed: BTreeMap<String, u64>,
    /// Echo requests written (the hellos included) and their replies.
    pub echo_sent: u64,
    pub echo_answered: u64,
    /// Requests still unanswered at the end (their socket died, or the
    /// drain timed out).
    pub echo_lost: u64,
    /// A reply for a request already answered.
    pub echo_duplicated: u64,
    /// A reply for a request that was not the oldest one unanswered.
    pub echo_misordered: u64,
    /// Frames that fit nothing asked for.
    pub unexpected: u64,
    /// Broadcasts sent, by room (only rooms whose sender is here).
    pub bcast_sent: BTreeMap<u32, u64>,
    /// Over every socket of the busy rooms here: what each should have got
    /// (the `expect` counts), what arrived in order, repeats, and numbers
    /// never seen (skipped over, or missing at the end).
    pub bcast_expected: u64,
    pub bcast_received: u64,
    pub bcast_duplicated: u64,
    pub bcast_missing: u64,
    /// Echo send → reply, by phase (wire buckets).
    pub echo_latency: Vec<Vec<[u64; 2]>>,
    /// Broadcast send → back on the sender, by phase.
    pub bcast_latency: Vec<Vec<[u64; 2]>>,
    /// `[slot start unix ms, echo replies, their max µs, requests sent]`
    /// per [`SLOT_MS`] slot.
    pub timeline: Vec<[u64; 4]>,
    pub rss_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_lines() {
        let mut counts = BTreeMap::new();
        counts.insert(3, 120);
        counts.insert(0, 7);
        for command in [
            Command::Hello,
            Command::Ask {
                room: 4,
                text: "version".into(),
            },
            Command::Start {
                interval: Duration::from_millis(100),
                window: 2,
                bcast_every: Duration::from_millis(250),
            },
            Command::Phase(2),
            Command::Stop,
            Command::Expect(counts),
            Command::Expect(BTreeMap::new()),
        ] {
            assert_eq!(Command::parse(&command.to_line()), Ok(command.clone()));
        }
        for bad in [
            "",
            "phase 4",
            "ask x version",
            "expect 1-2",
            "start 1 2",
            "hello 1",
        ] {
            assert!(Command::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn client_flags_round_trip() {
        let opts = ReloadClientOptions {
            url: "ws://127.0.0.1:18787".into(),
            room_prefix: "reload-".into(),
            rooms: 20,
            busy_rooms: 10,
            echoers_per_room: 499,
            first_index: 0,
            connections: 10_000,
            source_ip: Ipv4Addr::new(127, 0, 0, 10),
            concurrency: 256,
        };
        let args = opts.to_args();
        assert!(args.windows(2).any(|w| w == ["--busy-rooms", "10"]));
        assert_eq!(args.len(), 18);
    }
}
