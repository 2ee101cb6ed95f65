//! A child process's opening phase: `connections` WebSockets to
//! `/bench/<prefix><k % rooms>` from one source address, at most
//! `concurrency` in flight, each retried after transient failures, until done
//! or a deadline. Reports on stdout as the fleet protocol says (`progress`,
//! `fail`, `retries`, `ready`). The result is bare std sockets: what happens
//! to them next is the caller's business, though the start-up every child
//! shares (the descriptor check, one thread, sockets handed to tokio) is here
//! too.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::measure::rss;
use crate::wire::client::{self, ClientError, Open, Source, Target};

/// One connection attempt: connect, upgrade and attach.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Waits before the retries of a transiently failed connection (a full SYN
/// backlog drops SYNs; the kernel's own retransmit would take a second).
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(800),
];
/// How often a child tells the parent how far it got.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Distinct failure reasons a child reports; the rest are lumped together.
const MAX_FAILURE_REASONS: usize = 16;
/// Descriptors a client process needs besides its sockets.
pub const SPARE_FDS: u64 = 64;

/// What one child opens.
#[derive(Debug, Clone)]
pub struct OpenPlan {
    pub room_prefix: String,
    pub rooms: u32,
    pub first_index: u64,
    pub connections: u64,
    /// Sent as `attach:<message>` on each, awaiting `ok`.
    pub attach: Option<Arc<[u8]>>,
    pub source_ip: Ipv4Addr,
    pub concurrency: usize,
    pub deadline: Duration,
}

/// The outcome of one child's opening phase.
pub struct Opened {
    pub streams: Vec<std::net::TcpStream>,
    /// The global index of each stream, in the same order (streams come in
    /// as they open, not by index).
    pub indices: Vec<u64>,
    pub failed: u64,
    pub retries: u64,
    pub failures: BTreeMap<String, u64>,
}

impl Opened {
    fn fail(&mut self, reason: String, count: u64) {
        self.failed += count;
        // Reasons travel as one line to the parent.
        let reason = reason.replace(['\r', '\n'], " ");
        let key =
            if self.failures.len() < MAX_FAILURE_REASONS || self.failures.contains_key(&reason) {
                reason
            } else {
                "other".to_string()
            };
        *self.failures.entry(key).or_default() += count;
    }

    /// The `fail`, `retries` and `ready` lines for the parent.
    pub fn report(&self, out: &mut dyn Write, open_ms: u128) -> std::io::Result<()> {
        for (reason, count) in &self.failures {
            writeln!(out, "fail {count} {reason}")?;
        }
        writeln!(out, "retries {}", self.retries)?;
        writeln!(
            out,
            "ready {} {} {open_ms}",
            self.streams.len(),
            self.failed
        )?;
        out.flush()
    }
}

/// Fails, saying what to do, unless this process may hold the `needed`
/// descriptors its `connections` take.
pub fn check_descriptors(connections: u64, needed: u64) -> Result<(), String> {
    match rss::open_files_limit()? {
        Some(limit) if needed > limit => Err(format!(
            "{connections} connections need {needed} file descriptors, the limit is {limit}: \
             raise --processes"
        )),
        _ => Ok(()),
    }
}

/// Runs a child's work on this one thread (a current-thread runtime and a
/// `LocalSet`, so its tasks may share `Rc`s), which keeps a client process
/// to one core at most.
pub fn run_on_one_thread(serve: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve)
}

/// Opens a child's share and tells the parent how it went (`fail`,
/// `retries`, `ready`).
pub async fn open_and_report(target: Arc<Target>, plan: &OpenPlan) -> Result<Opened, String> {
    let started = Instant::now();
    let opened = open_all(target, plan).await;
    opened
        .report(&mut std::io::stdout().lock(), started.elapsed().as_millis())
        .map_err(|e| format!("cannot report to parent: {e}"))?;
    Ok(opened)
}

/// An opened socket made ready for traffic: registered with tokio, and
/// without Nagle's delay, since requests and replies are small.
pub fn into_tokio(stream: std::net::TcpStream) -> Result<tokio::net::TcpStream, String> {
    stream
        .set_nodelay(true)
        .and_then(|()| stream.set_nonblocking(true))
        .map_err(|e| format!("socket options: {e}"))?;
    tokio::net::TcpStream::from_std(stream).map_err(|e| format!("register socket: {e}"))
}

/// One line to the parent; a parent that has gone away is noticed at the
/// next line that matters (`ready`, `result`), so errors here are dropped.
pub fn tell_parent(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// The room path of global connection `index`.
pub fn room_path(prefix: &str, rooms: u32, index: u64) -> String {
    format!("/bench/{prefix}{}", index % u64::from(rooms.max(1)))
}

/// Opens the plan's connections; see the module docs.
pub async fn open_all(target: Arc<Target>, plan: &OpenPlan) -> Opened {
    let total = plan.connections;
    let mut opened = Opened {
        // Capacity for all up front: a Vec<TcpStream> is 4 bytes a connection.
        streams: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
        indices: Vec::with_capacity(usize::try_from(total).unwrap_or(0)),
        failed: 0,
        retries: 0,
        failures: BTreeMap::new(),
    };
    let source = Arc::new(Source::new(
        plan.source_ip,
        std::process::id().wrapping_mul(7919),
    ));
    let deadline = tokio::time::Instant::now() + plan.deadline;
    let mut in_flight = JoinSet::new();
    let mut next = 0u64;
    let mut last_progress = Instant::now();
    loop {
        while in_flight.len() < plan.concurrency && next < total {
            let index = plan.first_index + next;
            let attempt = open_with_retry(
                Arc::clone(&target),
                room_path(&plan.room_prefix, plan.rooms, index),
                plan.attach.clone(),
                Arc::clone(&source),
                mask_for(index),
            );
            in_flight.spawn(async move { (index, attempt.await) });
            next += 1;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            last_progress = Instant::now();
            tell_parent(&format!(
                "progress {} {}",
                opened.streams.len(),
                opened.failed
            ));
        }
        match tokio::time::timeout_at(deadline, in_flight.join_next()).await {
            Ok(None) => break,
            Ok(Some(Ok((index, (result, retries))))) => {
                opened.retries += retries;
                match result {
                    Ok(stream) => {
                        opened.streams.push(stream);
                        opened.indices.push(index);
                    }
                    Err(e) => opened.fail(e.to_string(), 1),
                }
            }
            Ok(Some(Err(join_error))) => opened.fail(format!("task failed: {join_error}"), 1),
            Err(_) => {
                let abandoned = in_flight.len() as u64 + (total - next);
                in_flight.abort_all();
                opened.fail(
                    format!("not open after {} s", plan.deadline.as_secs()),
                    abandoned,
                );
                break;
            }
        }
    }
    opened
}

/// One connection, retried after transient failures. Returns the retry count too.
async fn open_with_retry(
    target: Arc<Target>,
    path: String,
    attach: Option<Arc<[u8]>>,
    source: Arc<Source>,
    mask: [u8; 4],
) -> (Result<std::net::TcpStream, ClientError>, u64) {
    let mut retries = 0;
    loop {
        let open = Open {
            source: &source,
            path: &path,
            attach_message: attach.as_deref(),
            mask,
            timeout: ATTEMPT_TIMEOUT,
        };
        match client::open(&target, open).await {
            Err(e) if e.is_transient() => match BACKOFF.get(retries) {
                Some(wait) => {
                    tokio::time::sleep(*wait).await;
                    retries += 1;
                }
                None => return (Err(e), retries as u64),
            },
            result => return (result, retries as u64),
        }
    }
}

/// A masking key per connection. RFC 6455 wants unpredictable keys against
/// cache poisoning by intermediaries; on loopback with no proxy a cheap
/// well-mixed value is enough, and it keeps the run reproducible.
pub fn mask_for(index: u64) -> [u8; 4] {
    let mixed = index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let [a, b, c, d, ..] = mixed.to_be_bytes();
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_capped_and_flattened() {
        let mut opened = Opened {
            streams: Vec::new(),
            indices: Vec::new(),
            failed: 0,
            retries: 0,
            failures: BTreeMap::new(),
        };
        for i in 0..MAX_FAILURE_REASONS + 5 {
            opened.fail(format!("reason\n{i}"), 2);
        }
        assert_eq!(opened.failed, 2 * (MAX_FAILURE_REASONS as u64 + 5));
        assert_eq!(opened.failures.len(), MAX_FAILURE_REASONS + 1);
        assert_eq!(opened.failures.get("other"), Some(&10));
        assert!(opened.failures.keys().all(|k| !k.contains('\n')));
        let mut out = Vec::new();
        opened.report(&mut out, 1234).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("retries 0\nready 0 42 1234\n"), "{text}");
        assert!(text.starts_with("fail 10 other\n"), "{text}");
    }

    #[test]
    fn masks_differ_between_neighbours() {
        assert_ne!(mask_for(0), mask_for(1));
        assert_ne!(mask_for(1), mask_for(2));
    }

    #[test]
    fn rooms_fill_round_robin() {
        assert_eq!(room_path("idle-", 100, 0), "/bench/idle-0");
        assert_eq!(room_path("idle-", 100, 1234), "/bench/idle-34");
        assert_eq!(room_path("b-", 1, 99), "/bench/b-0");
    }
}
