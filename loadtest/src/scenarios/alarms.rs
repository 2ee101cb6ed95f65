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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinSet;

use crate::fleet::run::unix_time;
use crate::measure::latency::Recorder;
use crate::report::model::{Phase, Report, TargetKind, TargetRun};
use crate::wire::admin;
use crate::wire::client::Target;
use crate::wire::session::{loopback_source, Session};

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

    pub fn name(self) -> &'static str {
        match self {
            Variant::Live => "live",
            Variant::Hibernated => "hibernated",
            Variant::Cold => "cold",
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

/// One alarm's timing.
struct Sample {
    set_rtt: Duration,
    due: Instant,
    fired: Instant,
}

pub fn run(opts: &AlarmOptions) -> Result<Report, String> {
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

    let early = samples.iter().filter(|s| s.fired < s.due).count();
    let mut lateness = Recorder::new();
    let mut set_rtt = Recorder::new();
    for s in &samples {
        // An alarm read before its due time (clock skew between the object's
        // wall clock and our monotonic one) counts as 0 late.
        lateness.record(s.fired.saturating_duration_since(s.due));
        set_rtt.record(s.set_rtt);
    }
    if lateness.count() == 0 {
        return Err("no alarms fired".into());
    }
    let mut ready_margin = Recorder::new();
    for m in &margins {
        ready_margin.record(*m);
    }
    let mut counters = BTreeMap::new();
    counters.insert("rounds".to_string(), f64::from(rounds));
    counters.insert("rounds_not_ready".to_string(), f64::from(rounds_not_ready));
    counters.insert("early".to_string(), early as f64);
    let mut fired = Phase {
        name: "lateness".into(),
        description: format!(
            "{} alarms {} ms ahead over {} objects, variant {}",
            opts.count,
            opts.delay.as_millis(),
            opts.objects,
            opts.variant.name()
        ),
        unit: "alarms".into(),
        operations: lateness.count(),
        latency_label: "due (send time + delay) → `alarm:0` read".into(),
        latency: lateness.latency(),
        counters,
        ..Phase::default()
    };
    if let Some(l) = ready_margin.latency() {
        fired
            .more_latencies
            .insert("condition seen → first due time (margin)".into(), l);
    }
    let set = Phase {
        name: "set".into(),
        description: "setting the alarm".into(),
        unit: "alarms".into(),
        operations: set_rtt.count(),
        latency_label: "`alarm:<ms>` written → `ok` read".into(),
        latency: set_rtt.latency(),
        ..Phase::default()
    };
    Ok(Report {
        scenario: "alarms".into(),
        title: format!("alarm lateness ({})", opts.variant.name()),
        unix_time: unix_time(),
        settings: vec![
            ("objects".into(), opts.objects.to_string()),
            ("count".into(), opts.count.to_string()),
            ("delay".into(), format!("{} ms", opts.delay.as_millis())),
            ("variant".into(), opts.variant.name().into()),
        ],
        host: crate::fleet::server::this_host(None, None),
        targets: vec![TargetRun {
            target: TargetKind::Torpor,
            url: opts.url.clone(),
            server: "torpor".into(),
            phases: vec![fired, set],
            ..TargetRun::default()
        }],
        ..Report::default()
    }
    .finish())
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
    Ok(admin::node(admin)?.workers_down())
}
