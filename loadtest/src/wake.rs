//! `loadtest wake`: how long a message to a hibernated object waits for the
//! object to come back.
//!
//! Preparation fills each of `--objects` Bench objects (`/bench/<prefix>-<i>`)
//! with about `--db-mb` MiB of storage (`put:k<j>=<100 KiB>`, one durable
//! commit per message) plus a small key `probe`. Then, for each sample, it
//! polls the admin API until the object is hibernated (`active: false`),
//! sends the probe on the socket it holds (`echo:x`, or `get:probe`, which
//! also opens the object's database) and times the reply: that is the wake
//! latency. The same probe sent again right after, to the now live object,
//! is the warm round trip for comparison. The worker process stays up (run
//! the node with a long `worker_idle_exit`); a cold worker start is the
//! `alarms --variant cold` scenario's business.
//!
//! Everything is sequential, one object at a time, so no wake waits behind
//! another. Each wake is confirmed by the object's `wakes` counter having
//! gone up by exactly one between two hibernated polls.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::admin;
use crate::client::Target;
use crate::latency::Summary;
use crate::session::{loopback_source, Session};

const CLASS: &str = "Bench";
/// Bytes per `put` value while filling: ~100 KiB, under the 128 KiB value
/// limit and, with the key, far under the 1 MiB message limit.
const VALUE_BYTES: usize = 100 * 1024;
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// One durable put or one probe (a wake included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an object may take to hibernate after its last event.
const HIBERNATE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_EVERY: Duration = Duration::from_millis(20);

/// What the timed message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    /// `echo:x`: wakes the object; its database stays closed.
    Echo,
    /// `get:probe`: wakes the object and opens its database to read a key.
    Get,
}

impl Probe {
    pub fn parse(text: &str) -> Result<Probe, String> {
        match text {
            "echo" => Ok(Probe::Echo),
            "get" => Ok(Probe::Get),
            _ => Err(format!("probe {text:?} is not echo or get")),
        }
    }

    fn message(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Probe::Echo => (b"echo:x", b"x"),
            Probe::Get => (b"get:probe", b"1"),
        }
    }
}

/// `loadtest wake` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct WakeOptions {
    pub url: String,
    pub admin: String,
    pub objects: u32,
    /// MiB of values to store in each object first; 0 stores only `probe`.
    pub db_mb: u64,
    /// Wake samples in all, taken round-robin over the objects.
    pub samples: u32,
    pub probe: Probe,
    pub prefix: String,
    pub json: Option<PathBuf>,
}

/// One `loadtest wake` run.
#[derive(Debug, Clone, Serialize)]
pub struct WakeReport {
    pub scenario: &'static str,
    pub url: String,
    pub objects: u32,
    pub db_mb: u64,
    pub puts_per_object: u64,
    /// Database size per object as the admin API last saw it.
    pub stored_bytes: Vec<Option<u64>>,
    pub prepare_seconds: f64,
    pub probe: Probe,
    /// Hibernated object: send to reply.
    pub wake: Summary,
    /// The same probe to the live object right after.
    pub warm: Summary,
    /// Samples where the `wakes` counter did not go up by exactly one.
    pub unconfirmed_wakes: u32,
    /// Time from a sample's reply until the admin API showed the object
    /// hibernated again (upper bound: polled every 20 ms).
    pub hibernate_wait: Summary,
}

struct ObjectState {
    active: bool,
    wakes: u64,
    stored_bytes: Option<u64>,
}

fn object_state(admin: SocketAddr, name: &str) -> Result<ObjectState, String> {
    let path = format!("/admin/objects/{CLASS}/{name}");
    let body = admin::get(admin, &path)?;
    let json: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{path} is not JSON: {e}"))?;
    let field = |key: &str| json.get(key).cloned().unwrap_or_default();
    Ok(ObjectState {
        active: field("active")
            .as_bool()
            .ok_or_else(|| format!("{path} has no boolean active: {body}"))?,
        wakes: field("wakes")
            .as_u64()
            .ok_or_else(|| format!("{path} has no numeric wakes: {body}"))?,
        stored_bytes: field("stored_bytes").as_u64(),
    })
}

/// Polls until the object is hibernated; returns its state then.
fn wait_hibernated(admin: SocketAddr, name: &str) -> Result<ObjectState, String> {
    let deadline = Instant::now() + HIBERNATE_TIMEOUT;
    loop {
        let state = object_state(admin, name)?;
        if !state.active {
            return Ok(state);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{CLASS}/{name} still active after {} s",
                HIBERNATE_TIMEOUT.as_secs()
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

pub fn puts_per_object(db_mb: u64) -> u64 {
    (db_mb * 1024 * 1024).div_ceil(VALUE_BYTES as u64)
}

pub fn run(opts: &WakeOptions) -> Result<WakeReport, String> {
    if opts.objects == 0 || opts.samples == 0 {
        return Err("--objects and --samples must be at least 1".into());
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

    let puts = puts_per_object(opts.db_mb);
    let prepare_started = Instant::now();
    let mut sessions = Vec::new();
    for name in &names {
        let path = format!("/bench/{name}");
        let mut session = runtime.block_on(Session::open(&target, &source, &path, OPEN_TIMEOUT))?;
        runtime.block_on(fill(&mut session, puts))?;
        sessions.push(session);
    }
    let prepare_seconds = prepare_started.elapsed().as_secs_f64();
    eprintln!(
        "wake: {} objects filled with {puts} x {VALUE_BYTES} B in {prepare_seconds:.1} s",
        names.len()
    );

    let (probe, want) = opts.probe.message();
    let mut wake = Vec::new();
    let mut warm = Vec::new();
    let mut hibernate_wait = Vec::new();
    let mut unconfirmed_wakes = 0;
    let mut last_wakes: Vec<Option<u64>> = vec![None; names.len()];
    let mut last_reply: Vec<Option<Instant>> = vec![None; names.len()];
    let mut stored_bytes = vec![None; names.len()];
    let mut taken = 0;
    'rounds: loop {
        for (i, (name, session)) in names.iter().zip(&mut sessions).enumerate() {
            if taken == opts.samples {
                break 'rounds;
            }
            let state = wait_hibernated(admin, name)?;
            if let Some(replied) = last_reply[i] {
                hibernate_wait.push(replied.elapsed());
            }
            if let Some(before) = last_wakes[i] {
                if state.wakes != before + 1 {
                    unconfirmed_wakes += 1;
                }
            }
            last_wakes[i] = Some(state.wakes);
            stored_bytes[i] = state.stored_bytes;
            wake.push(runtime.block_on(session.request(probe, want, REPLY_TIMEOUT))?);
            warm.push(runtime.block_on(session.request(probe, want, REPLY_TIMEOUT))?);
            last_reply[i] = Some(Instant::now());
            taken += 1;
        }
    }
    // The last sample of each object is confirmed by one more poll.
    for (i, name) in names.iter().enumerate() {
        let state = wait_hibernated(admin, name)?;
        if last_wakes[i].is_some_and(|before| state.wakes != before + 1) {
            unconfirmed_wakes += 1;
        }
        stored_bytes[i] = state.stored_bytes;
    }

    let summary = |samples: &[Duration]| Summary::of(samples).ok_or("no samples".to_string());
    Ok(WakeReport {
        scenario: "wake",
        url: opts.url.clone(),
        objects: opts.objects,
        db_mb: opts.db_mb,
        puts_per_object: puts,
        stored_bytes,
        prepare_seconds,
        probe: opts.probe,
        wake: summary(&wake)?,
        warm: summary(&warm)?,
        unconfirmed_wakes,
        // Empty with one object and one sample: nothing re-hibernated twice.
        hibernate_wait: Summary::of(&hibernate_wait).unwrap_or_default(),
    })
}

/// `puts` values of [`VALUE_BYTES`] under keys `k0..`, then `probe=1`.
async fn fill(session: &mut Session, puts: u64) -> Result<(), String> {
    let mut message = Vec::with_capacity(VALUE_BYTES + 32);
    for j in 0..puts {
        message.clear();
        message.extend_from_slice(format!("put:k{j}=").as_bytes());
        // Varied bytes, so nothing along the way can make the data smaller.
        message.extend((0..VALUE_BYTES).map(|b| b'a' + ((b as u64 * 7 + j) % 26) as u8));
        session.request(&message, b"ok", REPLY_TIMEOUT).await?;
    }
    session
        .request(b"put:probe=1", b"ok", REPLY_TIMEOUT)
        .await?;
    Ok(())
}

impl WakeReport {
    pub fn write_json(&self, path: &std::path::Path) -> Result<(), String> {
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|e| format!("cannot serialize report: {e}"))?;
        json.push('\n');
        std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))
    }
}

impl fmt::Display for WakeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "wake latency against {}", self.url)?;
        let sizes: Vec<String> = self
            .stored_bytes
            .iter()
            .map(|b| b.map_or("?".into(), |b| format!("{:.1} MiB", crate::report::mib(b))))
            .collect();
        writeln!(
            f,
            "  objects       {} x {} puts of {VALUE_BYTES} B (db {}), filled in {:.1} s",
            self.objects,
            self.puts_per_object,
            sizes.join(", "),
            self.prepare_seconds
        )?;
        writeln!(f, "  probe         {:?}", self.probe)?;
        writeln!(f, "  wake          {}", self.wake)?;
        writeln!(f, "  warm          {}", self.warm)?;
        writeln!(f, "  re-hibernate  {}", self.hibernate_wait)?;
        write!(f, "  unconfirmed   {} wakes", self.unconfirmed_wakes)
    }
}
