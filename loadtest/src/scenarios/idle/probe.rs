//! The ping probe of `loadtest idle`: while the idle connections are held,
//! a few more sockets send `ping` at a steady pace and time each `pong`.
//! Torpor's edge answers it from the object's auto-response without waking
//! anyone; a baseline answers it itself. The phase it gives (`held-ping`)
//! says whether the sockets that talk are still answered promptly by a
//! server holding all the others.
//!
//! It runs on a thread of its own (one tokio thread, one task per socket),
//! so the parent can go on holding and sampling; every wait in it is
//! bounded, and it ends at its deadline whatever the server does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::child::idle::ROOM_PREFIX;
use crate::measure::latency::Recorder;
use crate::report::model::Phase;
use crate::wire::client::Target;
use crate::wire::session::{loopback_source, Session};

/// One upgrade of a probe socket.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// A `pong` later than this counts as an error, not a latency.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Distinct failure reasons kept; the rest are lumped together as [`OTHER`].
const MAX_FAILURE_REASONS: usize = 8;
const OTHER: &str = "other";

/// What the probe does.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbePlan {
    pub url: String,
    /// Probe sockets, joining rooms `idle-0`, `idle-1`, ... in turn.
    pub sockets: u32,
    pub rooms: u32,
    /// Pings per second over all probe sockets.
    pub per_second: f64,
    /// How long it pings (opening included).
    pub duration: Duration,
}

/// What one probe socket saw.
#[derive(Default)]
struct Tally {
    latency: Recorder,
    errors: u64,
    failures: BTreeMap<String, u64>,
}

impl Tally {
    fn fail(&mut self, reason: String) {
        self.add_failures(reason, 1);
    }

    fn add_failures(&mut self, reason: String, count: u64) {
        self.errors += count;
        let known = self.failures.contains_key(&reason);
        let named = self.failures.len() - usize::from(self.failures.contains_key(OTHER));
        let key = if known || reason == OTHER || named < MAX_FAILURE_REASONS {
            reason
        } else {
            OTHER.to_string()
        };
        *self.failures.entry(key).or_default() += count;
    }

    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        for (reason, count) in other.failures {
            self.add_failures(reason, count);
        }
    }
}

/// Starts the probe on its own thread; join the handle for its phase.
pub fn start(plan: ProbePlan, held: u64) -> JoinHandle<Phase> {
    std::thread::spawn(move || run(&plan, held))
}

fn run(plan: &ProbePlan, held: u64) -> Phase {
    let started = Instant::now();
    let tally = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(ping_all(plan)),
        Err(e) => {
            let mut t = Tally::default();
            t.fail(format!("cannot start the tokio runtime: {e}"));
            t
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let operations = tally.latency.count();
    Phase {
        name: "held-ping".into(),
        description: format!(
            "`ping` on {} more sockets at {} per second in all, while {held} idle ones are held",
            plan.sockets, plan.per_second
        ),
        unit: "pings".into(),
        seconds,
        operations,
        per_second: if seconds > 0.0 {
            operations as f64 / seconds
        } else {
            0.0
        },
        offered_per_second: Some(plan.per_second),
        errors: tally.errors,
        failures: tally.failures,
        latency_label: "`ping` written → `pong` read".into(),
        latency: tally.latency.latency(),
        ..Phase::default()
    }
}

async fn ping_all(plan: &ProbePlan) -> Tally {
    let mut total = Tally::default();
    let target = match Target::parse(&plan.url) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            total.fail(e);
            return total;
        }
    };
    let deadline = tokio::time::Instant::now() + plan.duration;
    let sockets = plan.sockets.max(1);
    // Each socket pings every `gap`, so that all of them together make the rate.
    let gap = Duration::from_secs_f64(f64::from(sockets) / plan.per_second.max(0.001));
    let source = Arc::new(loopback_source());
    let mut tasks = JoinSet::new();
    for i in 0..sockets {
        let target = Arc::clone(&target);
        let source = Arc::clone(&source);
        let path = format!("/bench/{ROOM_PREFIX}{}", i % plan.rooms.max(1));
        // Start the sockets spread over one gap, not all at once.
        let offset = gap.mul_f64(f64::from(i) / f64::from(sockets));
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let opened = tokio::time::timeout_at(
                deadline,
                Session::open(&target, &source, &path, OPEN_TIMEOUT),
            )
            .await;
            let mut session = match opened {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tally.fail(e);
                    return tally;
                }
                Err(_) => {
                    tally.fail("not open before the probe's end".into());
                    return tally;
                }
            };
            let mut next = tokio::time::Instant::now() + offset;
            while next < deadline {
                tokio::time::sleep_until(next).await;
                match session.request(b"ping", b"pong", REPLY_TIMEOUT).await {
                    Ok(rtt) => tally.latency.record(rtt),
                    Err(e) => {
                        // The socket is of no more use once a reply is lost.
                        tally.fail(e);
                        return tally;
                    }
                }
                // A late reply does not make the next pings come in a burst.
                next = (next + gap).max(tokio::time::Instant::now());
            }
            tally
        });
    }
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(t) => total.merge(t),
            Err(e) => total.fail(format!("probe task failed: {e}")),
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_with_no_server_counts_its_errors_and_ends() {
        // A port nothing listens on: every socket fails to open, and the
        // probe still returns a phase.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let phase = run(
            &ProbePlan {
                url: format!("ws://127.0.0.1:{port}"),
                sockets: 3,
                rooms: 2,
                per_second: 30.0,
                duration: Duration::from_secs(2),
            },
            0,
        );
        assert_eq!(phase.name, "held-ping");
        assert_eq!(phase.operations, 0);
        assert_eq!(phase.errors, 3, "{:?}", phase.failures);
        assert!(phase.latency.is_none());
    }

    #[test]
    fn failure_reasons_are_capped() {
        let mut t = Tally::default();
        for i in 0..MAX_FAILURE_REASONS + 3 {
            t.fail(format!("reason {i}"));
        }
        let mut total = Tally::default();
        total.merge(t);
        assert_eq!(total.errors, MAX_FAILURE_REASONS as u64 + 3);
        assert_eq!(total.failures.get("other"), Some(&3));
    }
}
