//! The parent's side of a run: the servers under test ([server]: Torpor, and
//! the baselines it starts), running a scenario against each of them and one
//! measured phase over the clients ([run]), progress bars ([progress]), and,
//! here, the load generator's client processes: how a run is split over
//! them, and the parent's end of talking to them. It speaks to the children
//! only through their protocol, and fills in the report's model.
//!
//! Several processes are needed because each may hold fewer than 20000 file
//! descriptors; process `i` connects from its own source address
//! 127.0.0.(10+i), which keeps one address's ports from running out. A child
//! is this same executable run with a hidden subcommand (`idle-client`,
//! `traffic-client`, `reload-client`), optionally under `taskset`.
//!
//! The child → parent protocol is lines on the child's stdout. Opening:
//! `progress <opened> <failed>` (now and then), `fail <count> <reason>`,
//! `retries <count>`, then `ready <opened> <failed> <open-millis>`. After
//! that, each subcommand has its own lines (`result <json>` and so on). The
//! parent → child direction is lines on the child's stdin, whose end tells
//! the child to close everything and exit. Every wait here has a deadline.

pub mod progress;
pub mod run;
pub mod server;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fleet::server::pinned_command;

/// Below the 20000 file descriptors a process may hold, with room for the
/// runtime's own (epoll, stdio, eventfd).
pub const MAX_CONNECTIONS_PER_PROCESS: u64 = 19_000;
/// `--processes auto` puts at most this many connections in one process,
/// leaving headroom under the limit.
const AUTO_CONNECTIONS_PER_PROCESS: u64 = 15_000;
/// Process `i` binds its sockets to 127.0.0.(FIRST_SOURCE_OCTET + i).
const FIRST_SOURCE_OCTET: u32 = 10;
pub const MAX_PROCESSES: u32 = 254 - FIRST_SOURCE_OCTET + 1;
/// How long children get to exit after their stdin closes before being killed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// One child's part of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Global index of the child's first connection: connection `k` joins
    /// room `k % rooms`, so rooms fill evenly across children.
    pub first_index: u64,
    pub connections: u64,
    pub source_ip: Ipv4Addr,
}

/// `--processes auto`: enough processes to stay well under the fd limit.
pub fn auto_processes(connections: u64) -> u32 {
    u32::try_from(connections.div_ceil(AUTO_CONNECTIONS_PER_PROCESS))
        .unwrap_or(MAX_PROCESSES)
        .clamp(1, MAX_PROCESSES)
}

/// Splits `connections` over `processes` as evenly as can be, or says why it
/// cannot be done.
pub fn split(connections: u64, processes: u32) -> Result<Vec<Share>, String> {
    if processes == 0 || processes > MAX_PROCESSES {
        return Err(format!(
            "--processes is {processes}, must be 1..={MAX_PROCESSES} (one source address 127.0.0.x each)"
        ));
    }
    let count = u64::from(processes);
    if connections < count {
        return Err(format!(
            "--connections {connections} is fewer than --processes {processes}"
        ));
    }
    let per_process = connections.div_ceil(count);
    if per_process > MAX_CONNECTIONS_PER_PROCESS {
        let needed = connections.div_ceil(MAX_CONNECTIONS_PER_PROCESS);
        return Err(format!(
            "{connections} connections over {processes} processes is {per_process} per process, \
             above the limit of {MAX_CONNECTIONS_PER_PROCESS} (each process may hold 20000 file \
             descriptors): raise --processes to at least {needed}"
        ));
    }
    let (base, extra) = (connections / count, connections % count);
    let mut first_index = 0;
    Ok((0..processes)
        .map(|i| {
            let share = Share {
                first_index,
                connections: base + u64::from(u64::from(i) < extra),
                source_ip: source_ip(i),
            };
            first_index += share.connections;
            share
        })
        .collect())
}

/// The source address of process `i`.
pub fn source_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + FIRST_SOURCE_OCTET + i)
}

/// What a child said, or that its stdout ended.
#[derive(Debug)]
pub enum Event {
    Line(String),
    Closed,
}

/// What the children reported while opening, summed.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub opened: u64,
    pub failed: u64,
    pub retries: u64,
    pub failures: BTreeMap<String, u64>,
    pub seconds: f64,
}

struct Member {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The last `progress` line's numbers.
    progress: (u64, u64),
}

/// The client processes. Dropping it ends them, so no error path leaves
/// children holding sockets.
pub struct Fleet {
    members: Vec<Member>,
    events: mpsc::Receiver<(usize, Event)>,
}

impl Fleet {
    /// Starts one `loadtest <subcommand> <args>` per entry of `args`.
    pub fn spawn(
        subcommand: &str,
        args: &[Vec<String>],
        cpus: Option<&str>,
    ) -> Result<Fleet, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let (tx, events) = mpsc::channel();
        let mut fleet = Fleet {
            members: Vec::with_capacity(args.len()),
            events,
        };
        for (i, child_args) in args.iter().enumerate() {
            let mut child = pinned_command(&exe, cpus)
                .arg(subcommand)
                .args(child_args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("spawn client process {i}: {e}"))?;
            let stdin = child.stdin.take();
            let stdout = child.stdout.take();
            fleet.members.push(Member {
                child,
                stdin,
                progress: (0, 0),
            });
            let stdout = stdout.ok_or_else(|| format!("client process {i} has no stdout pipe"))?;
            let tx = tx.clone();
            // One reader thread per child keeps waits simple (recv_timeout);
            // it ends when the child's stdout does.
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((i, Event::Line(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((i, Event::Closed));
            });
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Each child's open connections as it last reported them.
    pub fn opened(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.progress.0).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members.iter().map(|m| m.child.id()).collect()
    }

    /// Sends one line to child `i`.
    pub fn send(&mut self, i: usize, line: &str) -> Result<(), String> {
        let stdin = self
            .members
            .get_mut(i)
            .and_then(|m| m.stdin.as_mut())
            .ok_or_else(|| format!("client process {i} is gone"))?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("tell client process {i} {line:?}: {e}"))
    }

    /// The next line from any child; `Ok(None)` after `timeout` without one.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<(usize, Event)>, String> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Ok(Some(event)),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("every client process has closed its output".into())
            }
        }
    }

    /// Why child `i` stopped talking, for an error message.
    pub fn exit_status(&mut self, i: usize) -> String {
        self.members
            .get_mut(i)
            .and_then(|m| m.child.try_wait().ok())
            .map_or("status unknown".to_string(), |status| match status {
                Some(status) => status.to_string(),
                None => "still running".to_string(),
            })
    }

    /// Waits for every child's `ready`, summing what they report.
    /// `on_progress(opened, failed)` is called with the totals whenever a
    /// child reports progress.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        mut on_progress: impl FnMut(u64, u64),
    ) -> Result<Tally, String> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut tally = Tally::default();
        let mut ready = vec![false; self.members.len()];
        while ready.iter().any(|r| !r) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((i, event)) = self.recv(left)? else {
                let missing = ready.iter().filter(|r| !**r).count();
                return Err(format!(
                    "{missing} of {} client processes not ready after {} s",
                    ready.len(),
                    timeout.as_secs()
                ));
            };
            let line = match event {
                Event::Line(line) => line,
                Event::Closed if ready.get(i) == Some(&true) => continue,
                Event::Closed => {
                    let status = self.exit_status(i);
                    return Err(format!("client process {i} exited before ready ({status})"));
                }
            };
            match parse_open_line(&line).map_err(|e| format!("client process {i}: {e}"))? {
                OpenLine::Progress(opened, failed) => {
                    if let Some(m) = self.members.get_mut(i) {
                        m.progress = (opened, failed);
                    }
                    let (o, f) = self
                        .members
                        .iter()
                        .fold((0, 0), |(o, f), m| (o + m.progress.0, f + m.progress.1));
                    on_progress(o, f);
                }
                OpenLine::Fail(count, reason) => {
                    *tally.failures.entry(reason).or_default() += count;
                }
                OpenLine::Retries(count) => tally.retries += count,
                OpenLine::Ready(opened, failed) => {
                    tally.opened += opened;
                    tally.failed += failed;
                    if let Some(m) = self.members.get_mut(i) {
                        m.progress = (opened, failed);
                    }
                    if let Some(flag) = ready.get_mut(i) {
                        *flag = true;
                    }
                    let (o, f) = self
                        .members
                        .iter()
                        .fold((0, 0), |(o, f), m| (o + m.progress.0, f + m.progress.1));
                    on_progress(o, f);
                }
                OpenLine::Other => eprintln!("client process {i}: {line}"),
            }
        }
        tally.seconds = started.elapsed().as_secs_f64();
        Ok(tally)
    }

    /// The client processes' RSS summed: the generator's own footprint.
    pub fn rss_total(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| crate::measure::rss::rss_bytes(m.child.id()).ok())
            .sum()
    }

    /// Closes every child's stdin (its signal to close its sockets and exit),
    /// then kills by pid whichever has not exited within EXIT_GRACE.
    pub fn shutdown(&mut self) {
        for member in &mut self.members {
            drop(member.stdin.take());
        }
        let deadline = Instant::now() + EXIT_GRACE;
        let mut running: Vec<&mut Member> = self.members.iter_mut().collect();
        while !running.is_empty() && Instant::now() < deadline {
            running.retain_mut(|m| matches!(m.child.try_wait(), Ok(None)));
            if !running.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for member in running {
            eprintln!(
                "client process {} did not exit within {} s; killing it",
                member.child.id(),
                EXIT_GRACE.as_secs()
            );
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
        self.members.clear();
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One line of the opening protocol.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenLine {
    Progress(u64, u64),
    Fail(u64, String),
    Retries(u64),
    /// Opened and failed (the open time is the parent's to measure).
    Ready(u64, u64),
    /// Not an opening line: passed on as it is.
    Other,
}

pub fn parse_open_line(line: &str) -> Result<OpenLine, String> {
    // `fail <count> <reason>`: the reason may hold spaces, so at most three
    // pieces; the other lines are numbers only.
    let mut words = line.splitn(3, ' ');
    let first = words.next().unwrap_or_default();
    let number = |w: Option<&str>| -> Result<u64, String> {
        w.and_then(|w| w.split(' ').next())
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("malformed line {line:?}"))
    };
    Ok(match first {
        "progress" => OpenLine::Progress(number(words.next())?, number(words.next())?),
        "fail" => {
            let count = number(words.next())?;
            OpenLine::Fail(count, words.next().unwrap_or("unknown").to_string())
        }
        "retries" => OpenLine::Retries(number(words.next())?),
        "ready" => OpenLine::Ready(number(words.next())?, number(words.next())?),
        _ => OpenLine::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_split_evenly_with_distinct_sources() {
        let plan = split(15_002, 4).unwrap();
        let counts: Vec<u64> = plan.iter().map(|c| c.connections).collect();
        assert_eq!(counts, [3751, 3751, 3750, 3750]);
        let firsts: Vec<u64> = plan.iter().map(|c| c.first_index).collect();
        assert_eq!(firsts, [0, 3751, 7502, 11252]);
        let sources: Vec<String> = plan.iter().map(|c| c.source_ip.to_string()).collect();
        assert_eq!(
            sources,
            ["127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"]
        );
    }

    #[test]
    fn too_many_connections_per_process_says_how_many_processes() {
        let err = split(40_000, 2).unwrap_err();
        assert!(err.contains("20000 file"), "{err}");
        assert!(err.contains("raise --processes to at least 3"), "{err}");
        assert!(split(38_000, 2).is_ok());
    }

    #[test]
    fn impossible_splits_are_refused() {
        assert!(split(3, 4).is_err());
        assert!(split(1000, 0).is_err());
        assert!(split(100_000, MAX_PROCESSES + 1).is_err());
    }

    #[test]
    fn auto_processes_stay_under_the_limit() {
        assert_eq!(auto_processes(1), 1);
        assert_eq!(auto_processes(15_000), 1);
        assert_eq!(auto_processes(15_001), 2);
        assert_eq!(auto_processes(100_000), 7);
        let shares = split(100_000, auto_processes(100_000)).unwrap();
        assert!(shares
            .iter()
            .all(|s| s.connections < MAX_CONNECTIONS_PER_PROCESS));
        assert_eq!(shares.last().unwrap().source_ip.to_string(), "127.0.0.16");
    }

    #[test]
    fn opening_lines_parse() {
        assert_eq!(
            parse_open_line("progress 10 2"),
            Ok(OpenLine::Progress(10, 2))
        );
        assert_eq!(
            parse_open_line("fail 3 connect: refused (os error 111)"),
            Ok(OpenLine::Fail(3, "connect: refused (os error 111)".into()))
        );
        assert_eq!(parse_open_line("retries 4"), Ok(OpenLine::Retries(4)));
        assert_eq!(
            parse_open_line("ready 100 1 2500"),
            Ok(OpenLine::Ready(100, 1))
        );
        assert_eq!(parse_open_line("result {}"), Ok(OpenLine::Other));
        assert!(parse_open_line("ready x").is_err());
        assert!(parse_open_line("progress 1").is_err());
    }
}
