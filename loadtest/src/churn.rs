//! `loadtest churn`: connections that come and go. For `--duration`, at
//! `--rate` connects per second (spread over the client processes), each
//! connection opens (`/bench/churn-<room>`), optionally sends one
//! `echo:<--message-bytes>` and waits for it, then closes cleanly: a close
//! frame (1000), the server's close frame back, and the server's end of the
//! TCP stream (so the TIME_WAIT stays on the server's side, as RFC 6455 has
//! it, and the client's ports come free at once).
//!
//! Reports connects and clean disconnects per second, handshake latency
//! (connect → `101` read), echo and close latencies, and failures. A
//! connect that would exceed `--concurrency` in flight in its process is
//! skipped and counted: the server is then behind the offered rate.
//!
//! The child side (`run_phase`) runs inside `traffic-client`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{
    self, decode_frame, encode_frame, Open, Source, Target, OPCODE_CLOSE, OPCODE_TEXT,
};
use crate::fleet;
use crate::latency::Recorder;
use crate::open::{mask_for, room_path};
use crate::report::model::{CpuFigures, Phase, Report, TargetRun};
use crate::scenario::{
    self, for_each_target, measure, open_fleet, spawn_traffic, Common, Measured, Traffic,
};
use crate::server::Server;
use crate::traffic::{ChildResult, Command, Kind};

const ROOM_PREFIX: &str = "churn-";
/// Connect and upgrade.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The echo, and each step of the close.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies here are an echo or a close frame.
const MAX_REPLY_BYTES: u64 = 16 << 20;
/// Connections of process `i` count from `i × this`, so processes use
/// distinct masks and room orders.
const INDEX_STRIDE: u64 = 1 << 40;

/// What one child needs for a churn phase.
pub struct ChurnPlan {
    pub target: Arc<Target>,
    pub source: Arc<Source>,
    pub room_prefix: String,
    pub rooms: u32,
    pub first_index: u64,
    pub concurrency: usize,
    pub echo_bytes: usize,
}

#[derive(Default)]
struct Tally {
    connects: u64,
    disconnects: u64,
    skipped: u64,
    handshake: Recorder,
    echo: Recorder,
    close: Recorder,
    failures: BTreeMap<String, u64>,
}

impl Tally {
    fn fail(&mut self, reason: String) {
        let key = if self.failures.len() < 16 || self.failures.contains_key(&reason) {
            reason
        } else {
            "other".to_string()
        };
        *self.failures.entry(key).or_default() += 1;
    }
}

/// The child's churn phase: `rate` connects per second for `duration`.
pub async fn run_phase(plan: &ChurnPlan, rate: f64, duration: Duration) -> ChildResult {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let in_flight = Rc::new(Cell::new(0usize));
    let echo: Option<Rc<[u8]>> = (plan.echo_bytes > 0).then(|| {
        let mut text = b"echo:".to_vec();
        text.resize(text.len() + plan.echo_bytes, b'x');
        text.into()
    });
    let start = Instant::now();
    let total = if rate > 0.0 {
        (rate * duration.as_secs_f64()).floor() as u64
    } else {
        0
    };
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        if in_flight.get() >= plan.concurrency {
            tally.borrow_mut().skipped += 1;
            continue;
        }
        in_flight.set(in_flight.get() + 1);
        let index = plan.first_index + i;
        let target = Arc::clone(&plan.target);
        let source = Arc::clone(&plan.source);
        let path = room_path(&plan.room_prefix, plan.rooms, index);
        let (tally, in_flight, echo) = (Rc::clone(&tally), Rc::clone(&in_flight), echo.clone());
        tokio::task::spawn_local(async move {
            let outcome = one(
                &target,
                &source,
                &path,
                mask_for(index),
                echo.as_deref(),
                &tally,
            )
            .await;
            if let Err(e) = outcome {
                tally.borrow_mut().fail(e);
            }
            in_flight.set(in_flight.get() - 1);
        });
    }
    // Everything started finishes or times out within this.
    let give_up = Instant::now() + ATTEMPT_TIMEOUT + STEP_TIMEOUT * 3;
    while in_flight.get() > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut tally = tally.borrow_mut();
    if in_flight.get() > 0 {
        *tally
            .failures
            .entry("still open at the end".into())
            .or_default() += in_flight.get() as u64;
    }
    ChildResult {
        seconds,
        sent: total,
        connects: tally.connects,
        disconnects: tally.disconnects,
        skipped: tally.skipped,
        latency: tally.handshake.to_wire(),
        echo_latency: tally.echo.to_wire(),
        close_latency: tally.close.to_wire(),
        failures: std::mem::take(&mut tally.failures),
        ..ChildResult::default()
    }
}

/// One connection's life.
async fn one(
    target: &Target,
    source: &Source,
    path: &str,
    mask: [u8; 4],
    echo: Option<&[u8]>,
    tally: &RefCell<Tally>,
) -> Result<(), String> {
    let started = Instant::now();
    let open = Open {
        source,
        path,
        attach_message: None,
        mask,
        timeout: ATTEMPT_TIMEOUT,
    };
    let mut stream = client::open_stream(target, open)
        .await
        .map_err(|e| e.to_string())?;
    {
        let mut t = tally.borrow_mut();
        t.connects += 1;
        t.handshake.record(started.elapsed());
    }
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(256);
    if let Some(text) = echo {
        let sent = Instant::now();
        write(&mut stream, &encode_frame(OPCODE_TEXT, text, mask)).await?;
        let (opcode, len) = next_frame(&mut stream, &mut buf).await?;
        if opcode != OPCODE_TEXT || len + 5 != text.len() {
            return Err(format!(
                "echo: unexpected reply (opcode {opcode}, {len} bytes)"
            ));
        }
        tally.borrow_mut().echo.record(sent.elapsed());
    }
    let closing = Instant::now();
    write(
        &mut stream,
        &encode_frame(OPCODE_CLOSE, &1000u16.to_be_bytes(), mask),
    )
    .await?;
    // Anything before the server's close frame (a late message) is skipped.
    loop {
        let (opcode, _) = next_frame(&mut stream, &mut buf).await?;
        if opcode == OPCODE_CLOSE {
            break;
        }
    }
    // The server ends the TCP stream after its close frame.
    let mut rest = [0u8; 64];
    loop {
        match tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut rest)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Ok(Err(e)) => return Err(format!("close: read: {e}")),
            Err(_) => return Err("close: the server kept the connection open".into()),
        }
    }
    let mut t = tally.borrow_mut();
    t.close.record(closing.elapsed());
    t.disconnects += 1;
    Ok(())
}

async fn write(stream: &mut tokio::net::TcpStream, bytes: &[u8]) -> Result<(), String> {
    match tokio::time::timeout(STEP_TIMEOUT, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("write timed out".into()),
    }
}

/// The next frame's opcode and payload length; its bytes leave `buf`.
async fn next_frame(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(u8, usize), String> {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        if let Some((frame, used)) =
            decode_frame(buf, MAX_REPLY_BYTES).map_err(|e| e.to_string())?
        {
            let out = (frame.opcode, frame.payload.len());
            buf.drain(..used);
            return Ok(out);
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(0)) => return Err("the server closed the connection mid-frame".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Err(_) => return Err(format!("no frame within {} s", STEP_TIMEOUT.as_secs())),
        }
    }
}

/// `loadtest churn` flags.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnOptions {
    pub common: Common,
    pub rooms: u32,
    pub duration: Duration,
    /// Connects per second over all processes.
    pub rate: f64,
    /// One echo of this many bytes per connection; 0 for none.
    pub message_bytes: usize,
}

pub fn run(opts: &ChurnOptions) -> Result<Report, String> {
    if opts.rooms == 0 {
        return Err("--rooms must be at least 1".into());
    }
    if !(opts.rate > 0.0 && opts.rate.is_finite()) {
        return Err(format!("--rate {} must be a positive number", opts.rate));
    }
    let processes = opts.common.processes.unwrap_or(1);
    if processes > fleet::MAX_PROCESSES {
        return Err(format!(
            "--processes must be at most {}",
            fleet::MAX_PROCESSES
        ));
    }
    let targets = for_each_target(&opts.common, |server, run| {
        run_target(opts, processes, server, run)
    });
    Ok(Report {
        scenario: "churn".into(),
        title: "connections opened and closed cleanly at a rate".into(),
        unix_time: scenario::unix_time(),
        settings: vec![
            ("rate".into(), format!("{} connects/s", opts.rate)),
            (
                "duration".into(),
                format!("{} s", opts.duration.as_secs_f64()),
            ),
            ("rooms".into(), opts.rooms.to_string()),
            ("processes".into(), processes.to_string()),
            (
                "echo".into(),
                if opts.message_bytes == 0 {
                    "none".into()
                } else {
                    format!("{} bytes", opts.message_bytes)
                },
            ),
        ],
        host: opts.common.host(),
        targets,
        ..Report::default()
    }
    .finish())
}

fn run_target(
    opts: &ChurnOptions,
    processes: u32,
    server: &mut Server,
    run: &mut TargetRun,
) -> Result<(), String> {
    // Churn clients open their own connections: none up front.
    let shares: Vec<fleet::Share> = (0..processes)
        .map(|i| fleet::Share {
            first_index: u64::from(i) * INDEX_STRIDE,
            connections: 0,
            source_ip: fleet::source_ip(i),
        })
        .collect();
    let traffic = Traffic {
        kind: Kind::Churn,
        room_prefix: ROOM_PREFIX,
        rooms: opts.rooms,
        message_bytes: opts.message_bytes,
    };
    let mut fleet = spawn_traffic(server, &opts.common, &traffic, &shares)?;
    open_fleet(&mut fleet, 0, server, |_| {})?;
    let share = opts.rate / f64::from(processes);
    let commands: Vec<(usize, Command)> = (0..fleet.len())
        .map(|i| {
            (
                i,
                Command::Churn {
                    rate: share,
                    duration: opts.duration,
                    phase: 2,
                },
            )
        })
        .collect();
    let children = fleet.len();
    let measured = measure(
        &mut fleet,
        server,
        "churn",
        opts.duration,
        &commands,
        children,
        |_, i, line| {
            eprintln!("client process {i}: {line}");
            Ok(())
        },
    )?;
    run.phases.push(phase_from(opts, &measured));
    Ok(())
}

fn phase_from(opts: &ChurnOptions, measured: &Measured) -> Phase {
    let results = &measured.results;
    let mut handshake = Recorder::new();
    let mut echo = Recorder::new();
    let mut close = Recorder::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    for r in results {
        handshake.merge(&Recorder::from_wire(&r.latency));
        echo.merge(&Recorder::from_wire(&r.echo_latency));
        close.merge(&Recorder::from_wire(&r.close_latency));
        for (reason, count) in &r.failures {
            *failures.entry(reason.clone()).or_default() += count;
        }
    }
    let sum = |f: fn(&ChildResult) -> u64| results.iter().map(f).sum::<u64>();
    let seconds = results.iter().map(|r| r.seconds).fold(0.0, f64::max);
    let per = |n: u64| {
        if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        }
    };
    let (connects, disconnects) = (sum(|r| r.connects), sum(|r| r.disconnects));
    let mut counters = BTreeMap::new();
    counters.insert("attempted".to_string(), sum(|r| r.sent) as f64);
    counters.insert(
        "skipped_at_concurrency".to_string(),
        sum(|r| r.skipped) as f64,
    );
    counters.insert("disconnects".to_string(), disconnects as f64);
    counters.insert(
        "disconnects_per_second".to_string(),
        per(disconnects).round(),
    );
    let mut more = BTreeMap::new();
    if let Some(l) = echo.latency() {
        more.insert("echo".to_string(), l);
    }
    if let Some(l) = close.latency() {
        more.insert(
            "close frame written → server's end of stream".to_string(),
            l,
        );
    }
    Phase {
        name: "churn".into(),
        description: format!(
            "connect, {}close cleanly; offered {} connects/s",
            if opts.message_bytes > 0 {
                "one echo, "
            } else {
                ""
            },
            opts.rate
        ),
        unit: "connects".into(),
        seconds,
        operations: connects,
        per_second: per(connects),
        offered_per_second: Some(opts.rate),
        errors: failures.values().sum(),
        failures,
        latency_label: "connect → `101 Switching Protocols` read".into(),
        latency: handshake.latency(),
        more_latencies: more,
        server_cpu: Some(CpuFigures::new(measured.server.clone(), connects)),
        client_cpu: Some(measured.client.clone()),
        counters,
    }
}

/// The source address process `i` of a churn run connects from, with ports
/// counted from a pid-seeded start (see [`Source`]).
pub fn source_for(ip: Ipv4Addr) -> Source {
    Source::new(ip, std::process::id().wrapping_mul(7919).wrapping_add(4099))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuUsage;
    use crate::flags::Flags;
    use crate::report::model::ClientCpu;

    #[test]
    fn results_add_up_to_rates() {
        let mut flags = Flags::parse(&[]).unwrap();
        let opts = ChurnOptions {
            common: Common::parse(&mut flags).unwrap(),
            rooms: 10,
            duration: Duration::from_secs(10),
            rate: 100.0,
            message_bytes: 0,
        };
        let mut handshake = Recorder::new();
        handshake.record_us(300);
        let child = |seconds: f64| ChildResult {
            seconds,
            sent: 500,
            connects: 490,
            disconnects: 480,
            skipped: 10,
            latency: handshake.to_wire(),
            failures: [("connect: refused".to_string(), 10)].into(),
            ..ChildResult::default()
        };
        let measured = Measured {
            results: vec![child(9.8), child(10.0)],
            server: CpuUsage::default(),
            client: ClientCpu::default(),
        };
        let phase = phase_from(&opts, &measured);
        assert_eq!(phase.operations, 980);
        assert_eq!(phase.seconds, 10.0);
        assert_eq!(phase.per_second, 98.0);
        assert_eq!(phase.counters["disconnects_per_second"], 96.0);
        assert_eq!(phase.counters["skipped_at_concurrency"], 20.0);
        assert_eq!(phase.failures["connect: refused"], 20);
        assert_eq!(phase.errors, 20);
        assert_eq!(phase.latency.unwrap().summary.count, 2);
        assert!(phase.description.starts_with("connect, close cleanly"));
    }
}
