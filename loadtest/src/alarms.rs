//! `loadtest alarms`: how late an object's alarm fires.
//!
//! Each of `--objects` Bench objects (`/bench/<prefix>-<i>`) gets one held
//! socket. An object has one alarm at a time, so the `--count` alarms go in
//! rounds of at most one per object: every object of a round is sent
//! `alarm:<delay>` at once, and the round ends when each has broadcast
//! `alarm:0`. The due time is the send time plus the delay (the object reads
//! the same machine clock, a little later, when its handler runs), and
//! lateness is the time the `alarm:0` frame is read minus the due time. So
//! lateness includes the set message's trip to the handler and the alarm
//! message's trip back over loopback; `set_rtt` (send to `ok`) bounds the
//! former.
//!
//! Variants say what must be true before the alarms come due, and check it:
//! `live` checks nothing (run the node with a long `hibernate_after`);
//! `hibernated` polls until every object of the round shows `active: false`;
//! `cold` polls `/admin/node` until no worker has a pid (run the node with a
//! short `worker_idle_exit`), so each alarm first starts a worker. A round
//! where the condition was not reached before its first due time is counted
//! in `rounds_not_ready`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::admin;
use crate::client::Target;
use crate::latency::Summary;
use crate::session::{loopback_source, Session};

const CLASS: &str = "Bench";
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long past its due time an alarm may be before the round fails.
const FIRE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Quiet time between rounds, so one round's wake-ups are over before the
/// next round's sets.
const ROUND_GAP: Duration = Duration::from_millis(200);

/// What must hold before a round's alarms come due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Live,
    Hibernated,
    Cold,
}

impl Variant {
    pub fn parse(text: &str) -> Result<Variant, String> {
        match text {
            "live" => Ok(Variant::Live),
            "hibernated" => Ok(Variant::Hibernated),
            "cold" => Ok(Variant::Cold),
            _ => Err(format!("variant {text:?} is not live, hibernated or cold")),
        }
    }
}

/// `loadtest alarms` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmOptions {
    pub url: String,
    pub admin: String,
    pub objects: u32,
    pub count: u32,
    pub delay: Duration,
    pub variant: Variant,
    pub prefix: String,
    pub json: Option<PathBuf>,
}

/// One `loadtest alarms` run.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmReport {
    pub scenario: &'static str,
    pub url: String,
    pub objects: u32,
    pub count: u32,
    pub delay_ms: u64,
    pub variant: Variant,
    pub rounds: u32,
    /// Rounds whose variant condition was not seen before the first alarm
    /// of the round came due (always 0 for `live`).
    pub rounds_not_ready: u32,
    /// How long before the first due time the condition was seen, per round
    /// (the margin; `hibernated` and `cold` only).
    pub ready_margin: Summary,
    /// Alarm message read minus (send time + delay).
    pub lateness: Summary,
    /// Alarms read before send time + delay (clock skew between the object's
    /// wall clock and our monotonic one); counted as 0 late.
    pub early: u32,
    /// `alarm:<delay>` sent to `ok` read.
    pub set_rtt: Summary,
}

/// One alarm's timing.
struct Sample {
    set_rtt: Duration,
    due: Instant,
    fired: Instant,
}

pub fn run(opts: &AlarmOptions) -> Result<AlarmReport, String> {
    if opts.objects == 0 || opts.count == 0 {
        return Err("--objects and --count must be at least 1".into());
    }
    let target = Target::parse(&opts.url)?;
    let admin = admin::parse_addr(&opts.admin)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let source = loopback_source();
    let names: Vec<String> = (0..opts.objects)
        .map(|i| format!("{}-{i}", opts.prefix))
        .collect();
    let mut sessions = Vec::new();
    for name in &names {
        let path = format!("/bench/{name}");
        let mut session = runtime.block_on(Session::open(&target, &source, &path, OPEN_TIMEOUT))?;
        // Proves the object is up and answering before anything is timed.
        runtime.block_on(session.request(b"echo:up", b"up", REPLY_TIMEOUT))?;
        sessions.push(session);
    }

    let mut samples = Vec::new();
    let mut margins = Vec::new();
    let mut rounds = 0;
    let mut rounds_not_ready = 0;
    let mut left = opts.count as usize;
    while left > 0 {
        let take = left.min(sessions.len());
        let round: Vec<Session> = sessions.drain(..take).collect();
        let round_names = &names[..take];
        let (back, result) = runtime.block_on(run_round(
            round,
            round_names,
            admin,
            opts.delay,
            opts.variant,
        ));
        sessions.splice(0..0, back);
        let (round_samples, ready) = result?;
        rounds += 1;
        if opts.variant != Variant::Live {
            match ready {
                Some(margin) => margins.push(margin),
                None => rounds_not_ready += 1,
            }
        }
        samples.extend(round_samples);
        left -= take;
        std::thread::sleep(ROUND_GAP);
    }

    let early = samples.iter().filter(|s| s.fired < s.due).count() as u32;
    let lateness: Vec<Duration> = samples
        .iter()
        .map(|s| s.fired.saturating_duration_since(s.due))
        .collect();
    let set_rtt: Vec<Duration> = samples.iter().map(|s| s.set_rtt).collect();
    Ok(AlarmReport {
        scenario: "alarms",
        url: opts.url.clone(),
        objects: opts.objects,
        count: opts.count,
        delay_ms: opts.delay.as_millis() as u64,
        variant: opts.variant,
        rounds,
        rounds_not_ready,
        ready_margin: Summary::of(&margins).unwrap_or_default(),
        lateness: Summary::of(&lateness).ok_or("no alarms fired")?,
        early,
        set_rtt: Summary::of(&set_rtt).ok_or("no alarms set")?,
    })
}

/// Sets one alarm per session, waits for the variant's condition, and
/// collects every alarm. Gives the sessions back whatever happens. The
/// `Option` is how long before the first due time the condition held.
async fn run_round(
    sessions: Vec<Session>,
    names: &[String],
    admin: SocketAddr,
    delay: Duration,
    variant: Variant,
) -> (
    Vec<Session>,
    Result<(Vec<Sample>, Option<Duration>), String>,
) {
    let first_send = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, mut session) in sessions.into_iter().enumerate() {
        tasks.spawn(async move {
            let result = one_alarm(&mut session, delay).await;
            (index, session, result)
        });
    }
    // The condition is polled off the runtime's thread, so that the admin
    // calls never delay reading an alarm.
    let names = names.to_vec();
    let give_up = first_send + delay;
    let check = tokio::task::spawn_blocking(move || wait_ready(admin, &names, variant, give_up));

    let mut back: Vec<(usize, Session)> = Vec::new();
    let mut samples = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, session, result)) => {
                back.push((index, session));
                match result {
                    Ok(sample) => samples.push(sample),
                    Err(e) => failure = failure.or(Some(e)),
                }
            }
            Err(e) => failure = failure.or(Some(format!("alarm task: {e}"))),
        }
    }
    back.sort_by_key(|(index, _)| *index);
    let back = back.into_iter().map(|(_, s)| s).collect();
    let ready_at = match check.await {
        Ok(Ok(at)) => at,
        Ok(Err(e)) => return (back, Err(e)),
        Err(e) => return (back, Err(format!("admin poll task: {e}"))),
    };
    if let Some(e) = failure {
        return (back, Err(e));
    }
    // Every due time is at or after first_send + delay.
    let first_due = samples
        .iter()
        .map(|s| s.due)
        .min()
        .unwrap_or(first_send + delay);
    let margin = ready_at.and_then(|at| first_due.checked_duration_since(at));
    (back, Ok((samples, margin)))
}

async fn one_alarm(session: &mut Session, delay: Duration) -> Result<Sample, String> {
    let command = format!("alarm:{}", delay.as_millis());
    let sent = Instant::now();
    let set_rtt = session
        .request(command.as_bytes(), b"ok", REPLY_TIMEOUT)
        .await?;
    let (message, fired) = session.recv(delay + FIRE_TIMEOUT).await?;
    if message != b"alarm:0" {
        return Err(format!(
            "{}: got {:?} while waiting for alarm:0",
            session.path(),
            String::from_utf8_lossy(&message[..message.len().min(64)])
        ));
    }
    Ok(Sample {
        set_rtt,
        due: sent + delay,
        fired,
    })
}

/// Polls the admin API until the variant's condition holds, and returns
/// when it was first seen: `None` for `live`, which has none, or when it
/// still did not hold at `give_up` (the round's first possible due time).
fn wait_ready(
    admin: SocketAddr,
    names: &[String],
    variant: Variant,
    give_up: Instant,
) -> Result<Option<Instant>, String> {
    let ready = || -> Result<bool, String> {
        match variant {
            Variant::Live => Ok(true),
            Variant::Hibernated => {
                for name in names {
                    if object_active(admin, name)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Variant::Cold => workers_down(admin),
        }
    };
    if variant == Variant::Live {
        return Ok(None);
    }
    loop {
        if ready()? {
            return Ok(Some(Instant::now()));
        }
        if Instant::now() > give_up {
            return Ok(None);
        }
        std::thread::sleep(POLL_EVERY);
    }
}

fn object_active(admin: SocketAddr, name: &str) -> Result<bool, String> {
    let path = format!("/admin/objects/{CLASS}/{name}");
    let body = admin::get(admin, &path)?;
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{path} is not JSON: {e}"))?;
    json.get("active")
        .and_then(serde_json::Value::as_bool)
        .ok_or_else(|| format!("{path} has no boolean active: {body}"))
}

/// Whether `/admin/node` shows every worker without a process.
fn workers_down(admin: SocketAddr) -> Result<bool, String> {
    let body = admin::get(admin, "/admin/node")?;
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/admin/node is not JSON: {e}"))?;
    let workers = json
        .get("workers")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| format!("/admin/node has no workers array: {body}"))?;
    Ok(workers
        .iter()
        .all(|w| w.get("pid").is_some_and(serde_json::Value::is_null)))
}

impl AlarmReport {
    pub fn write_json(&self, path: &std::path::Path) -> Result<(), String> {
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|e| format!("cannot serialize report: {e}"))?;
        json.push('\n');
        std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))
    }
}

impl fmt::Display for AlarmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "alarm lateness against {}", self.url)?;
        writeln!(
            f,
            "  alarms        {} over {} objects in {} rounds, {} ms ahead, variant {:?}",
            self.count, self.objects, self.rounds, self.delay_ms, self.variant
        )?;
        if self.variant != Variant::Live {
            writeln!(
                f,
                "  ready         {} of {} rounds before due; margin {}",
                self.rounds - self.rounds_not_ready,
                self.rounds,
                self.ready_margin
            )?;
        }
        writeln!(f, "  lateness      {}", self.lateness)?;
        writeln!(f, "  early         {}", self.early)?;
        write!(f, "  set rtt       {}", self.set_rtt)
    }
}
