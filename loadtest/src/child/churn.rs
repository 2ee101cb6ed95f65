//! A traffic client's churn phase: connections opened at a rate, each
//! optionally echoing once, then closed cleanly (close frame, the server's
//! close frame, the server's end of the stream), with every step timed. The
//! parent's side is the `churn` scenario.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::child::open::{mask_for, room_path};
use crate::child::protocol::ChildResult;
use crate::measure::latency::Recorder;
use crate::wire::client::{
    self, decode_frame, encode_frame, Open, Source, Target, OPCODE_CLOSE, OPCODE_TEXT,
};

/// Connect and upgrade.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The echo, and each step of the close.
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// Replies here are an echo or a close frame.
const MAX_REPLY_BYTES: u64 = 16 << 20;

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

/// The source address process `i` of a churn run connects from, with ports
/// counted from a pid-seeded start (see [`Source`]).
pub fn source_for(ip: Ipv4Addr) -> Source {
    Source::new(ip, std::process::id().wrapping_mul(7919).wrapping_add(4099))
}
