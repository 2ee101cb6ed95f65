//! `loadtest broadcast`: one object with `--connections` sockets (one room,
//! `/bench/bcast-0`, spread over client processes); one of them sends
//! `bcast:<seq>:<padding>` and the object sends it to every socket, the
//! sender's included. Measures deliveries per second (sockets × messages /
//! elapsed) and fan-out latency (send → the last socket's receipt).
//!
//! Flow control keeps queues from growing without bound: each process prints
//! `done <seq>` once all its sockets have a message; when every process has,
//! the parent acknowledges it to the sender (`ack <seq>`), which keeps at most
//! `--window` messages unacknowledged. Times cross processes as Unix µs (one
//! machine, one clock).
//!
//! Phases: `max` (window `--window`, as fast as acks allow) for deliveries per
//! second, and `fanout` (window 1, or paced at `--rate` messages per second)
//! for the latency of one message reaching everyone with nothing queued.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::child::protocol::{Command, Kind};
use crate::fleet::run::{
    for_each_target, measure, open_fleet, spawn_traffic, unix_time, Common, Measured, Traffic,
};
use crate::fleet::server::Server;
use crate::fleet::{self, Fleet};
use crate::measure::latency::Recorder;
use crate::report::model::{CpuFigures, Phase, Report, TargetRun};

const ROOM_PREFIX: &str = "bcast-";
/// How long the sender's `count` may take.
const COUNT_TIMEOUT: Duration = Duration::from_secs(15);
/// Warm-up: messages sent one at a time (the first wakes Torpor's object).
const WARMUP: Duration = Duration::from_secs(1);

/// `loadtest broadcast` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastOptions {
    pub common: Common,
    pub connections: u64,
    pub duration: Duration,
    /// Messages in flight (not yet everywhere) in the `max` phase.
    pub window: u32,
    /// Messages per second in the `fanout` phase; `None`: one at a time.
    pub rate: Option<f64>,
    pub message_bytes: usize,
}

pub fn run(opts: &BroadcastOptions) -> Result<Report, String> {
    if opts.window == 0 {
        return Err("--window must be at least 1".into());
    }
    fleet::split(
        opts.connections,
        opts.common.processes_for(opts.connections),
    )?;
    let targets = for_each_target(&opts.common, |server, run| run_target(opts, server, run));
    Ok(Report {
        scenario: "broadcast".into(),
        title: format!(
            "one message to all {} sockets of one object",
            opts.connections
        ),
        unix_time: unix_time(),
        settings: vec![
            ("connections".into(), opts.connections.to_string()),
            ("rooms".into(), "1".into()),
            (
                "duration".into(),
                format!("{} s", opts.duration.as_secs_f64()),
            ),
            ("window".into(), opts.window.to_string()),
            (
                "fanout rate".into(),
                opts.rate
                    .map_or("one at a time".into(), |r| format!("{r} messages/s")),
            ),
            ("message bytes".into(), opts.message_bytes.to_string()),
        ],
        host: opts.common.host(),
        targets,
        ..Report::default()
    }
    .finish())
}

/// Sequence numbers on their way, across processes.
#[derive(Debug, Default)]
pub struct Tracker {
    children: usize,
    /// seq → send time (Unix µs).
    sent: HashMap<u64, u64>,
    /// seq → (processes done, earliest first receipt, latest last receipt).
    done: HashMap<u64, (usize, u64, u64)>,
}

impl Tracker {
    pub fn new(children: usize) -> Tracker {
        Tracker {
            children,
            ..Tracker::default()
        }
    }

    /// Takes a `sent` or `done` line; returns the sequence number to
    /// acknowledge when a message has reached every process.
    pub fn on_line(&mut self, line: &str) -> Result<Option<u64>, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> Result<u64, String> {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("malformed line {line:?}"))
        };
        match words.first().copied() {
            Some("sent") => {
                self.sent.insert(num(1)?, num(2)?);
                Ok(None)
            }
            Some("done") => {
                let (seq, first, last) = (num(1)?, num(2)?, num(3)?);
                let entry = self.done.entry(seq).or_insert((0, first, last));
                entry.0 += 1;
                entry.1 = entry.1.min(first);
                entry.2 = entry.2.max(last);
                Ok((entry.0 == self.children).then_some(seq))
            }
            _ => Err(format!("unexpected line {line:?}")),
        }
    }

    /// Latencies of the messages from `first_seq` on that reached everyone:
    /// (send → last receipt, send → first receipt), and the span from the
    /// first send to the last receipt in µs.
    pub fn latencies(&self, first_seq: u64) -> (Recorder, Recorder, u64) {
        let mut last = Recorder::new();
        let mut first = Recorder::new();
        let (mut start, mut end) = (u64::MAX, 0);
        for (seq, sent_at) in self.sent.iter().filter(|(seq, _)| **seq >= first_seq) {
            start = start.min(*sent_at);
            let Some((count, first_at, last_at)) = self.done.get(seq) else {
                continue;
            };
            if *count < self.children {
                continue;
            }
            last.record_us(last_at.saturating_sub(*sent_at));
            first.record_us(first_at.saturating_sub(*sent_at));
            end = end.max(*last_at);
        }
        (last, first, end.saturating_sub(start))
    }
}

fn run_target(
    opts: &BroadcastOptions,
    server: &mut Server,
    run: &mut TargetRun,
) -> Result<(), String> {
    let (connections, note) = opts.common.connections_for(server.kind, opts.connections);
    run.notes.extend(note);
    let shares = fleet::split(connections, opts.common.processes_for(connections))?;
    let traffic = Traffic {
        kind: Kind::Broadcast,
        room_prefix: ROOM_PREFIX,
        rooms: 1,
        message_bytes: opts.message_bytes,
    };
    let mut fleet = spawn_traffic(server, &opts.common, &traffic, &shares)?;
    let open = open_fleet(&mut fleet, connections, server, |_| {})?;
    let opened = open.opened;
    run.open = Some(open);
    if fleet.opened().first().copied().unwrap_or(0) == 0 {
        return Err("the sending process opened no connection".into());
    }
    let count = ask_count(&mut fleet)?;
    if count != opened {
        run.notes.push(format!(
            "the object counts {count} sockets, {opened} were opened (sockets of an earlier run \
             still closing?)"
        ));
    }

    let children = fleet.len();
    let mut tracker = Tracker::new(children);
    let warm = Command::Bcast {
        duration: WARMUP,
        window: 1,
        rate: None,
        phase: 1,
    };
    send_phase(&mut fleet, server, &mut tracker, "warm-up", WARMUP, warm)?;
    stats(&mut fleet, server, &mut tracker, 1)?;
    server.check_alive()?;

    let max = Command::Bcast {
        duration: opts.duration,
        window: opts.window,
        rate: None,
        phase: 2,
    };
    let (measured, first_seq) =
        send_phase(&mut fleet, server, &mut tracker, "max", opts.duration, max)?;
    let frames = stats(&mut fleet, server, &mut tracker, 2)?;
    run.phases.push(phase_from(
        "max",
        format!(
            "as fast as a window of {} unacknowledged messages allows",
            opts.window
        ),
        &measured,
        &tracker,
        first_seq,
        frames,
        connections,
    ));
    server.check_alive()?;

    let fanout = Command::Bcast {
        duration: opts.duration,
        window: if opts.rate.is_some() { opts.window } else { 1 },
        rate: opts.rate,
        phase: 3,
    };
    let (measured, first_seq) = send_phase(
        &mut fleet,
        server,
        &mut tracker,
        "fanout",
        opts.duration,
        fanout,
    )?;
    let frames = stats(&mut fleet, server, &mut tracker, 3)?;
    let description = match opts.rate {
        Some(rate) => format!("paced at {rate} messages/s"),
        None => "one message at a time (the next once the last reached everyone)".into(),
    };
    let mut phase = phase_from(
        "fanout",
        description,
        &measured,
        &tracker,
        first_seq,
        frames,
        connections,
    );
    phase.offered_per_second = opts.rate;
    run.phases.push(phase);
    Ok(())
}

/// The sender's object says how many sockets it has.
fn ask_count(fleet: &mut Fleet) -> Result<u64, String> {
    fleet.send(0, &Command::Count.to_line())?;
    let deadline = std::time::Instant::now() + COUNT_TIMEOUT;
    while std::time::Instant::now() < deadline {
        let Some((i, event)) = fleet.recv(Duration::from_millis(100))? else {
            continue;
        };
        let fleet::Event::Line(line) = event else {
            return Err(format!("client process {i} exited"));
        };
        if let Some(rest) = line.strip_prefix("count ") {
            return rest
                .trim()
                .parse()
                .map_err(|_| format!("count: the object answered {rest:?}"));
        }
        eprintln!("client process {i}: {line}");
    }
    Err(format!("no count within {} s", COUNT_TIMEOUT.as_secs()))
}

/// Runs one sending phase; returns it and its first sequence number.
fn send_phase(
    fleet: &mut Fleet,
    server: &Server,
    tracker: &mut Tracker,
    label: &str,
    duration: Duration,
    command: Command,
) -> Result<(Measured, u64), String> {
    let measured = measure(
        fleet,
        server,
        label,
        duration,
        &[(0, command)],
        1,
        |fleet, _, line| {
            if let Some(seq) = tracker.on_line(line)? {
                fleet.send(0, &Command::Ack(seq).to_line())?;
            }
            Ok(())
        },
    )?;
    let first_seq = measured.results.first().map_or(0, |r| r.first_seq);
    if let Some(r) = measured.results.first() {
        if r.stalled {
            eprintln!(
                "loadtest: {label}: a message did not reach every socket; sending stopped early"
            );
        }
    }
    Ok((measured, first_seq))
}

/// Every process's frame count since the last call, summed.
fn stats(
    fleet: &mut Fleet,
    server: &Server,
    tracker: &mut Tracker,
    phase: u32,
) -> Result<u64, String> {
    let children = fleet.len();
    let commands: Vec<(usize, Command)> =
        (0..children).map(|i| (i, Command::Stats(phase))).collect();
    let measured = measure(
        fleet,
        server,
        "counting",
        Duration::ZERO,
        &commands,
        children,
        |fleet, _, line| {
            if let Some(seq) = tracker.on_line(line)? {
                fleet.send(0, &Command::Ack(seq).to_line())?;
            }
            Ok(())
        },
    )?;
    Ok(measured.results.iter().map(|r| r.frames).sum())
}

fn phase_from(
    name: &str,
    description: String,
    measured: &Measured,
    tracker: &Tracker,
    first_seq: u64,
    frames: u64,
    connections: u64,
) -> Phase {
    let sender = measured.results.first().cloned().unwrap_or_default();
    let (last, first, span_us) = tracker.latencies(first_seq);
    let seconds = span_us as f64 / 1e6;
    let expected = sender.sent * connections;
    let mut counters = BTreeMap::new();
    counters.insert("messages".to_string(), sender.sent as f64);
    counters.insert("lost".to_string(), expected.saturating_sub(frames) as f64);
    counters.insert(
        "messages_per_second".to_string(),
        if seconds > 0.0 {
            (sender.sent as f64 / seconds).round()
        } else {
            0.0
        },
    );
    if sender.stalled {
        counters.insert("stalled".to_string(), 1.0);
    }
    let mut more = BTreeMap::new();
    if let Some(l) = first.latency() {
        more.insert("send → first socket".to_string(), l);
    }
    Phase {
        name: name.to_string(),
        description,
        unit: "deliveries".into(),
        seconds,
        operations: frames,
        per_second: if seconds > 0.0 {
            frames as f64 / seconds
        } else {
            0.0
        },
        errors: expected.saturating_sub(frames),
        failures: sender.failures.clone(),
        latency_label: "`bcast:` written → read on the last of all sockets".into(),
        latency: last.latency(),
        more_latencies: more,
        server_cpu: Some(CpuFigures::new(measured.server.clone(), frames)),
        client_cpu: Some(measured.client.clone()),
        counters,
        ..Phase::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::protocol::ChildResult;
    use crate::measure::cpu::CpuUsage;
    use crate::report::model::ClientCpu;

    #[test]
    fn a_message_is_acknowledged_once_every_process_has_it() {
        let mut t = Tracker::new(2);
        assert_eq!(t.on_line("sent 5 1000"), Ok(None));
        assert_eq!(t.on_line("done 5 1100 1300"), Ok(None));
        assert_eq!(t.on_line("done 5 1050 1400"), Ok(Some(5)));
        assert!(t.on_line("done x").is_err());
        assert!(t.on_line("hello").is_err());
        let (last, first, span) = t.latencies(1);
        assert_eq!(last.summary().unwrap().max_ms, 0.4);
        assert_eq!(first.summary().unwrap().max_ms, 0.05);
        assert_eq!(span, 400);
    }

    #[test]
    fn only_complete_messages_of_the_phase_count() {
        let mut t = Tracker::new(1);
        for line in [
            "sent 1 0",
            "done 1 5 10",
            "sent 2 100",
            "done 2 150 200",
            "sent 3 300",
        ] {
            t.on_line(line).unwrap();
        }
        // From seq 2: one complete message (2), one never done (3).
        let (last, _, span) = t.latencies(2);
        assert_eq!(last.count(), 1);
        assert_eq!(last.summary().unwrap().p50_ms, 0.1);
        assert_eq!(span, 100);
    }

    #[test]
    fn deliveries_per_second_use_the_span() {
        let mut t = Tracker::new(1);
        for line in [
            "sent 1 0",
            "done 1 0 500000",
            "sent 2 500000",
            "done 2 500000 1000000",
        ] {
            t.on_line(line).unwrap();
        }
        let measured = Measured {
            results: vec![ChildResult {
                sent: 2,
                first_seq: 1,
                ..ChildResult::default()
            }],
            server: CpuUsage::default(),
            client: ClientCpu::default(),
        };
        let phase = phase_from("max", "w".into(), &measured, &t, 1, 1999, 1000);
        assert_eq!(phase.seconds, 1.0);
        assert_eq!(phase.per_second, 1999.0);
        assert_eq!(phase.counters["lost"], 1.0);
        assert_eq!(phase.counters["messages_per_second"], 2.0);
        assert_eq!(phase.latency.unwrap().summary.count, 2);
    }
}
