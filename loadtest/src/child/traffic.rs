//! `loadtest traffic-client`: the child process behind `ping`, `echo`,
//! `broadcast` and `churn`. It opens its share of the connections (as
//! `idle-client` does), then runs the phases its parent asks for on stdin and
//! answers each with a `result <json>` line.
//!
//! It is built so that the client is not what a run measures:
//! - one thread runs every socket (tokio current-thread), so a client
//!   process costs one core at most and can be pinned beside the server;
//! - sockets are read into one shared scratch buffer and cut into frames by a
//!   [`FrameScanner`] (about 50 bytes a connection), never buffered per
//!   connection; requests are pre-encoded once and written straight to the
//!   socket;
//! - the open-loop pacer is its own thread that sleeps between sends
//!   (nanosleep, ~50 µs slack), so sends are spread evenly instead of bunched
//!   on tokio's 1 ms timer ticks, and the reading thread never waits on it.
//!
//! The lines it reads and writes are in [`protocol`](super::protocol).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::child::churn;
use crate::child::open::{self, tell_parent, OpenPlan, SPARE_FDS};
use crate::child::protocol::{ChildResult, Clock, Command, Kind, TrafficOptions};
use crate::measure::latency::Recorder;
use crate::measure::rss;
use crate::wire::client::{encode_frame, Target, OPCODE_CLOSE, OPCODE_TEXT};
use crate::wire::frames::FrameScanner;

/// The scratch buffer every socket is read into.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Frames larger than this are a broken server (Torpor's default limit is 1 MiB).
const MAX_FRAME_BYTES: u64 = 16 << 20;
/// How long a phase waits for the replies still outstanding at its end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the broadcast sender waits for one acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Opening gives up after this.
const OPEN_DEADLINE: Duration = Duration::from_secs(240);
/// The pacer sleeps only for gaps longer than this and sends the rest at once
/// (a shorter nanosleep overshoots by about its own length anyway).
const PACER_MIN_SLEEP: Duration = Duration::from_micros(50);
/// A client process nobody talks to still ends.
const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The masking key of every request. RFC 6455 wants unpredictable keys
/// against proxies' caches; on loopback a fixed one lets a request be encoded
/// once for all connections.
const MASK: [u8; 4] = [0x6b, 0x1d, 0xe2, 0x53];

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// The broadcast payload for `seq`: `<seq>:` padded with `x` to `bytes`.
pub fn broadcast_payload(seq: u64, bytes: usize) -> Vec<u8> {
    let mut payload = format!("{seq}:").into_bytes();
    if payload.len() < bytes {
        payload.resize(bytes, b'x');
    }
    payload
}

/// The sequence number at the start of a broadcast payload, `None` for
/// anything else (a `count` reply is digits without the colon).
pub fn broadcast_seq(prefix: &[u8]) -> Option<u64> {
    let colon = prefix.iter().position(|b| *b == b':')?;
    let digits = &prefix[..colon];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// What is written but not yet answered, and bytes not yet written. One lock
/// for both, so that a send's timestamp and its bytes go in the same order.
#[derive(Default)]
struct Out {
    sent: VecDeque<(Instant, u32)>,
    pending: Vec<u8>,
}

/// One open connection, shared between the reading thread and the pacer.
/// tokio's `try_write` and `try_read` take `&self` and may be called from any
/// thread; a write the socket (or tokio's readiness) turns away is queued and
/// flushed by the reading task once the socket is writable.
struct Conn {
    stream: TcpStream,
    out: Mutex<Out>,
    /// Pending bytes appeared: the reader should wait for writability too.
    wake_writer: Notify,
    dead: AtomicBool,
}

fn lock(out: &Mutex<Out>) -> MutexGuard<'_, Out> {
    // Nothing panics while holding it; a poisoned lock still holds good data.
    out.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Writes `frame` (or queues what the socket will not take yet), which
    /// holds `tracked` requests whose send time is queued for their replies'
    /// latency. The timestamp is taken under the lock, just before the
    /// write, so that the reader cannot see a reply before its entry.
    fn send(&self, frame: &[u8], phase: u32, tracked: usize) -> std::io::Result<()> {
        let mut out = lock(&self.out);
        if tracked > 0 {
            let now = Instant::now();
            out.sent.extend(std::iter::repeat_n((now, phase), tracked));
        }
        if !out.pending.is_empty() {
            out.pending.extend_from_slice(frame);
            self.wake_writer.notify_one();
            return Ok(());
        }
        let mut written = 0;
        // A few tries for EINTR; anything else ends the loop.
        for _ in 0..4 {
            match self.stream.try_write(&frame[written..]) {
                Ok(n) => {
                    written += n;
                    if written == frame.len() {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        out.pending.extend_from_slice(&frame[written..]);
        self.wake_writer.notify_one();
        Ok(())
    }

    /// Writes pending bytes until done or the socket is full.
    fn flush(&self) -> std::io::Result<()> {
        let mut out = lock(&self.out);
        while !out.pending.is_empty() {
            match self.stream.try_write(&out.pending) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    out.pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !lock(&self.out).pending.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Idle,
    /// Replies trigger the next request until the deadline.
    Closed,
    /// The pacer sends; replies are only counted.
    Open,
    /// Sending is over; waiting for the last replies.
    Draining,
}

/// One phase's counts on the reading thread.
#[derive(Default)]
struct Stats {
    recorder: Recorder,
    sent: u64,
    replies: u64,
    in_window: u64,
    lost: u64,
    unexpected: u64,
    failures: BTreeMap<String, u64>,
}

impl Stats {
    fn fail(&mut self, reason: String) {
        let key = if self.failures.len() < 16 || self.failures.contains_key(&reason) {
            reason
        } else {
            "other".to_string()
        };
        *self.failures.entry(key).or_default() += 1;
    }
}

/// Broadcast receipts in this process.
#[derive(Default)]
struct Receipts {
    /// Frames counted since the last `stats`.
    frames: u64,
    /// Per sequence number not yet on every socket here: count, first and
    /// last arrival (Unix µs).
    open: HashMap<u64, (u64, u64, u64)>,
}

/// The state of the whole client process (reading thread only).
struct Engine {
    kind: Kind,
    conns: Vec<Arc<Conn>>,
    alive: Cell<u64>,
    request: Vec<u8>,
    reply_len: u64,
    message_bytes: usize,
    phase: Cell<u32>,
    mode: Cell<Mode>,
    deadline: Cell<Instant>,
    stats: RefCell<Stats>,
    clock: Clock,
    receipts: RefCell<Receipts>,
    /// Broadcast sender: the next sequence number, the first of the current
    /// phase, and acknowledgements of this phase's messages.
    next_seq: Cell<u64>,
    phase_first_seq: Cell<u64>,
    acked: Cell<u64>,
    ack_notify: Notify,
    /// The last text frame that was not a broadcast (a `count` reply).
    other_reply: RefCell<Option<Vec<u8>>>,
    /// Closed loop: requests owed to the connection being read, one per
    /// reply; they go out together once the read is handled, so that a
    /// read of k replies costs one write, not k.
    owed: Cell<usize>,
    burst: RefCell<Vec<u8>>,
}

impl Engine {
    fn begin(&self, phase: u32, mode: Mode, deadline: Instant) {
        *self.stats.borrow_mut() = Stats::default();
        self.phase.set(phase);
        self.deadline.set(deadline);
        self.mode.set(mode);
    }

    fn fail_conn(&self, conn: &Conn, reason: String) {
        if conn.dead.swap(true, Ordering::Relaxed) {
            return;
        }
        self.alive.set(self.alive.get().saturating_sub(1));
        let phase = self.phase.get();
        let orphaned = {
            let mut out = lock(&conn.out);
            let n = out.sent.iter().filter(|(_, p)| *p == phase).count() as u64;
            out.sent.clear();
            out.pending.clear();
            n
        };
        let mut stats = self.stats.borrow_mut();
        stats.lost += orphaned;
        stats.fail(reason);
        drop(stats);
        // One socket fewer: sequence numbers it was holding back are done.
        if self.kind == Kind::Broadcast {
            self.settle_receipts();
        }
    }

    /// A text frame of `len` bytes (and its first bytes) arrived on `conn`.
    fn on_text(&self, conn: &Conn, len: u64, prefix: &[u8], now: Instant) {
        match self.kind {
            Kind::Ping | Kind::Echo => self.on_reply(conn, len, now),
            Kind::Broadcast => match broadcast_seq(prefix) {
                Some(seq) => self.on_broadcast(seq, now),
                None => *self.other_reply.borrow_mut() = Some(prefix.to_vec()),
            },
            Kind::Churn => {}
        }
    }

    fn on_reply(&self, conn: &Conn, len: u64, now: Instant) {
        let popped = lock(&conn.out).sent.pop_front();
        let phase = self.phase.get();
        let mut stats = self.stats.borrow_mut();
        let Some((sent_at, sent_phase)) = popped else {
            stats.unexpected += 1;
            return;
        };
        if sent_phase != phase || self.mode.get() == Mode::Idle {
            // A late reply to an earlier phase.
            return;
        }
        if len != self.reply_len {
            stats.unexpected += 1;
        }
        stats
            .recorder
            .record(now.saturating_duration_since(sent_at));
        stats.replies += 1;
        if now <= self.deadline.get() {
            stats.in_window += 1;
        }
        if self.mode.get() == Mode::Closed && now < self.deadline.get() {
            stats.sent += 1;
            self.owed.set(self.owed.get() + 1);
        }
    }

    /// Sends the requests the last read's replies owe, in one write.
    fn send_owed(&self, conn: &Conn) {
        let owed = self.owed.replace(0);
        if owed == 0 {
            return;
        }
        let mut burst = self.burst.borrow_mut();
        burst.clear();
        for _ in 0..owed {
            burst.extend_from_slice(&self.request);
        }
        if let Err(e) = conn.send(&burst, self.phase.get(), owed) {
            drop(burst);
            self.fail_conn(conn, format!("write: {e}"));
        }
    }

    fn on_broadcast(&self, seq: u64, now: Instant) {
        let at = self.clock.unix_us(now);
        let mut receipts = self.receipts.borrow_mut();
        receipts.frames += 1;
        let entry = receipts.open.entry(seq).or_insert((0, at, at));
        entry.0 += 1;
        entry.1 = entry.1.min(at);
        entry.2 = entry.2.max(at);
        let (count, first, last) = *entry;
        if count >= self.alive.get() {
            receipts.open.remove(&seq);
            tell_parent(&format!("done {seq} {first} {last}"));
        }
    }

    /// Reports every sequence number that no longer waits for anyone.
    fn settle_receipts(&self) {
        let alive = self.alive.get();
        let mut receipts = self.receipts.borrow_mut();
        let mut done: Vec<(u64, u64, u64)> = receipts
            .open
            .iter()
            .filter(|(_, (count, _, _))| *count >= alive)
            .map(|(seq, (_, first, last))| (*seq, *first, *last))
            .collect();
        done.sort_unstable();
        for (seq, first, last) in done {
            receipts.open.remove(&seq);
            tell_parent(&format!("done {seq} {first} {last}"));
        }
    }

    /// Requests of this phase still unanswered and not lost.
    fn outstanding(&self) -> u64 {
        let s = self.stats.borrow();
        s.sent.saturating_sub(s.replies + s.lost)
    }

    /// Waits for the phase's replies, then closes it into a result.
    async fn finish(&self, seconds: f64, lag: Option<Recorder>) -> ChildResult {
        self.mode.set(Mode::Draining);
        let give_up = Instant::now() + DRAIN_TIMEOUT;
        while self.outstanding() > 0 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.mode.set(Mode::Idle);
        let mut stats = self.stats.borrow_mut();
        let timed_out = stats.sent.saturating_sub(stats.replies + stats.lost);
        if timed_out > 0 {
            stats.lost += timed_out;
            *stats
                .failures
                .entry(format!("no reply within {} s", DRAIN_TIMEOUT.as_secs()))
                .or_default() += timed_out;
        }
        let stats = std::mem::take(&mut *stats);
        ChildResult {
            phase: self.phase.get(),
            seconds,
            sent: stats.sent,
            replies: stats.replies,
            replies_in_window: stats.in_window,
            lost: stats.lost,
            unexpected: stats.unexpected,
            latency: stats.recorder.to_wire(),
            lag: lag.map(|l| l.to_wire()).unwrap_or_default(),
            failures: stats.failures,
            rss_bytes: rss::rss_bytes(std::process::id()).unwrap_or(0),
            ..ChildResult::default()
        }
    }

    fn live_conns(&self) -> Vec<Arc<Conn>> {
        self.conns
            .iter()
            .filter(|c| !c.is_dead())
            .cloned()
            .collect()
    }
}

/// Runs one client process to the end of its stdin.
pub fn run_child(opts: &TrafficOptions) -> Result<(), String> {
    let target = Target::parse(&opts.url)?;
    if opts.rooms == 0 || opts.concurrency == 0 {
        return Err("--rooms and --concurrency must be at least 1".into());
    }
    open::check_descriptors(
        opts.connections,
        opts.connections + opts.concurrency as u64 + SPARE_FDS,
    )?;
    open::run_on_one_thread(serve(Arc::new(target), opts.clone()))
}

/// The request frame and its reply's length, by kind.
fn request_for(kind: Kind, message_bytes: usize) -> (Vec<u8>, u64) {
    match kind {
        Kind::Ping => (encode_frame(OPCODE_TEXT, b"ping", MASK), 4),
        Kind::Echo => {
            let mut text = b"echo:".to_vec();
            text.resize(text.len() + message_bytes, b'x');
            (encode_frame(OPCODE_TEXT, &text, MASK), message_bytes as u64)
        }
        Kind::Broadcast | Kind::Churn => (Vec::new(), 0),
    }
}

async fn serve(target: Arc<Target>, opts: TrafficOptions) -> Result<(), String> {
    let mut streams = Vec::new();
    if opts.connections > 0 {
        let plan = OpenPlan {
            room_prefix: opts.room_prefix.clone(),
            rooms: opts.rooms,
            first_index: opts.first_index,
            connections: opts.connections,
            attach: None,
            source_ip: opts.source_ip,
            concurrency: opts.concurrency,
            deadline: OPEN_DEADLINE,
        };
        streams = open::open_and_report(Arc::clone(&target), &plan)
            .await?
            .streams;
    } else {
        tell_parent("ready 0 0 0");
    }

    let mut conns = Vec::with_capacity(streams.len());
    for stream in streams {
        let stream = open::into_tokio(stream)?;
        conns.push(Arc::new(Conn {
            stream,
            out: Mutex::new(Out::default()),
            wake_writer: Notify::new(),
            dead: AtomicBool::new(false),
        }));
    }
    let (request, reply_len) = request_for(opts.kind, opts.message_bytes);
    let engine = Rc::new(Engine {
        kind: opts.kind,
        alive: Cell::new(conns.len() as u64),
        conns,
        request,
        reply_len,
        message_bytes: opts.message_bytes,
        phase: Cell::new(0),
        mode: Cell::new(Mode::Idle),
        deadline: Cell::new(Instant::now()),
        stats: RefCell::new(Stats::default()),
        clock: Clock::new(),
        receipts: RefCell::new(Receipts::default()),
        next_seq: Cell::new(1),
        phase_first_seq: Cell::new(1),
        acked: Cell::new(0),
        ack_notify: Notify::new(),
        other_reply: RefCell::new(None),
        owed: Cell::new(0),
        burst: RefCell::new(Vec::new()),
    });
    for conn in &engine.conns {
        tokio::task::spawn_local(read_loop(Arc::clone(conn), Rc::clone(&engine)));
    }

    // Stdin is read on a thread; lines come over a channel, so the command
    // loop below can run phases as tasks and still route `ack`s to them.
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        loop {
            line.clear();
            match stdin.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line.trim().to_string()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    // One port counter for every churn phase of this process, so that a
    // phase does not walk into the ports the last one just used.
    let churn_source = Arc::new(churn::source_for(opts.source_ip));
    let end = tokio::time::Instant::now() + MAX_LIFETIME;
    while let Ok(Some(line)) = tokio::time::timeout_at(end, commands.recv()).await {
        let command = match Command::parse(&line) {
            Ok(command) => command,
            Err(e) => {
                eprintln!("traffic-client: {e}");
                continue;
            }
        };
        let engine = Rc::clone(&engine);
        let opts = opts.clone();
        let target = Arc::clone(&target);
        let source = Arc::clone(&churn_source);
        match command {
            Command::Ack(seq) => {
                if seq >= engine.phase_first_seq.get() {
                    engine.acked.set(engine.acked.get() + 1);
                    engine.ack_notify.notify_one();
                }
            }
            Command::Stats(phase) => {
                let frames = std::mem::take(&mut engine.receipts.borrow_mut().frames);
                let stats = std::mem::take(&mut *engine.stats.borrow_mut());
                report(&ChildResult {
                    phase,
                    frames,
                    failures: stats.failures,
                    rss_bytes: rss::rss_bytes(std::process::id()).unwrap_or(0),
                    ..ChildResult::default()
                });
            }
            Command::Closed {
                duration,
                window,
                phase,
            } => {
                tokio::task::spawn_local(async move {
                    report(&closed_phase(&engine, duration, window, phase).await);
                });
            }
            Command::Open {
                rate,
                burst,
                duration,
                phase,
            } => {
                tokio::task::spawn_local(async move {
                    let pacing = Pacing {
                        rate,
                        burst,
                        duration,
                    };
                    report(&open_phase(&engine, pacing, phase).await);
                });
            }
            Command::Bcast {
                duration,
                window,
                rate,
                phase,
            } => {
                tokio::task::spawn_local(async move {
                    report(&broadcast_phase(&engine, duration, window, rate, phase).await);
                });
            }
            Command::Count => {
                tokio::task::spawn_local(async move {
                    tell_parent(&count_sockets(&engine).await);
                });
            }
            Command::Churn {
                rate,
                duration,
                phase,
            } => {
                tokio::task::spawn_local(async move {
                    let plan = churn::ChurnPlan {
                        target,
                        source,
                        room_prefix: opts.room_prefix.clone(),
                        rooms: opts.rooms,
                        first_index: opts.first_index,
                        concurrency: opts.concurrency,
                        echo_bytes: opts.message_bytes,
                    };
                    let mut result = churn::run_phase(&plan, rate, duration).await;
                    result.phase = phase;
                    result.rss_bytes = rss::rss_bytes(std::process::id()).unwrap_or(0);
                    report(&result);
                });
            }
        }
    }
    Ok(())
}

fn report(result: &ChildResult) {
    match serde_json::to_string(result) {
        Ok(json) => tell_parent(&format!("result {json}")),
        Err(e) => tell_parent(&format!("error cannot serialize result: {e}")),
    }
}

/// Reads one connection until it dies, feeding frames to the engine.
async fn read_loop(conn: Arc<Conn>, engine: Rc<Engine>) {
    let mut scanner = FrameScanner::new(MAX_FRAME_BYTES);
    loop {
        let flushing = conn.has_pending();
        let outcome: Result<(), String> = tokio::select! {
            biased;
            ready = conn.stream.readable() => match ready {
                Ok(()) => SCRATCH.with(|scratch| {
                    let mut buf = scratch.borrow_mut();
                    match read_once(&conn.stream, &mut buf) {
                        Ok(0) => Err("server closed the connection".to_string()),
                        Ok(n) => {
                            let now = Instant::now();
                            let mut closed = None;
                            let fed = scanner.feed(&buf[..n], |frame| match frame.opcode {
                                OPCODE_TEXT if frame.fin => {
                                    engine.on_text(&conn, frame.len, frame.prefix, now);
                                }
                                OPCODE_CLOSE => {
                                    closed = Some(crate::wire::client::close_code(frame.prefix));
                                }
                                // Pings, pongs and binary frames are none of ours.
                                _ => {}
                            });
                            engine.send_owed(&conn);
                            match (fed, closed) {
                                (Err(e), _) => Err(format!("frame: {e}")),
                                (Ok(()), Some(code)) => Err(format!(
                                    "server sent close {}",
                                    code.map_or("without a code".to_string(), |c| c.to_string())
                                )),
                                (Ok(()), None) => Ok(()),
                            }
                        }
                        // tokio cleared its readiness; wait for the next.
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
                        Err(e) => Err(format!("read: {e}")),
                    }
                }),
                Err(e) => Err(format!("poll: {e}")),
            },
            ready = conn.stream.writable(), if flushing => match ready {
                Ok(()) => conn.flush().map_err(|e| format!("write: {e}")),
                Err(e) => Err(format!("poll: {e}")),
            },
            () = conn.wake_writer.notified() => Ok(()),
        };
        if let Err(reason) = outcome {
            engine.fail_conn(&conn, reason);
            return;
        }
        if conn.is_dead() {
            return;
        }
    }
}

/// One read into `buf`. A read shorter than the buffer emptied the socket,
/// so tokio is told to wait for the next readiness edge (by a `WouldBlock`
/// from inside `try_io`) instead of letting the caller come back for an
/// `EAGAIN`: one read syscall per batch of replies instead of two. The tick
/// tokio keeps makes this safe against data that arrived meanwhile.
fn read_once(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    let result = stream.try_io(tokio::io::Interest::READABLE, || {
        got = stream.try_read(buf)?;
        if got > 0 && got < buf.len() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

async fn closed_phase(engine: &Engine, duration: Duration, window: u32, phase: u32) -> ChildResult {
    let started = Instant::now();
    engine.begin(phase, Mode::Closed, started + duration);
    // The whole window goes out in one write per connection.
    let burst: Vec<u8> = engine.request.repeat(window.max(1) as usize);
    for conn in engine.live_conns() {
        match conn.send(&burst, phase, window.max(1) as usize) {
            Ok(()) => engine.stats.borrow_mut().sent += u64::from(window.max(1)),
            Err(e) => {
                engine.stats.borrow_mut().sent += u64::from(window.max(1));
                engine.fail_conn(&conn, format!("write: {e}"));
            }
        }
    }
    tokio::time::sleep_until((started + duration).into()).await;
    engine.finish(duration.as_secs_f64(), None).await
}

/// What the pacer thread did.
struct Paced {
    sent: u64,
    lag: Recorder,
    failures: Vec<(Arc<Conn>, String)>,
}

/// What the open phase sends: `rate` requests per second, `burst` of them
/// per write, for `duration`.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    rate: f64,
    burst: u32,
    duration: Duration,
}

async fn open_phase(engine: &Engine, pacing: Pacing, phase: u32) -> ChildResult {
    let duration = pacing.duration;
    let started = Instant::now();
    engine.begin(phase, Mode::Open, started + duration);
    let conns = engine.live_conns();
    if conns.is_empty() || pacing.rate <= 0.0 {
        return engine.finish(duration.as_secs_f64(), None).await;
    }
    let frames = engine.request.repeat(pacing.burst.max(1) as usize);
    let paced = tokio::task::spawn_blocking(move || pace(&conns, &frames, pacing, phase)).await;
    let paced = match paced {
        Ok(paced) => paced,
        Err(e) => {
            engine.stats.borrow_mut().fail(format!("pacer thread: {e}"));
            return engine.finish(duration.as_secs_f64(), None).await;
        }
    };
    engine.stats.borrow_mut().sent += paced.sent;
    for (conn, reason) in &paced.failures {
        engine.fail_conn(conn, reason.clone());
    }
    engine.finish(duration.as_secs_f64(), Some(paced.lag)).await
}

/// Writes `frames` (`pacing.burst` requests) round robin over `conns`, at
/// `pacing.rate` requests per second. Request `i` is due at
/// `start + i / rate`; a late write goes at once and its lateness is
/// recorded.
fn pace(conns: &[Arc<Conn>], frames: &[u8], pacing: Pacing, phase: u32) -> Paced {
    let Pacing {
        rate,
        burst,
        duration,
    } = pacing;
    let burst = u64::from(burst.max(1));
    let mut paced = Paced {
        sent: 0,
        lag: Recorder::new(),
        failures: Vec::new(),
    };
    let start = Instant::now();
    let end = start + duration;
    let total = (rate * duration.as_secs_f64()).floor() as u64;
    // Connections this thread failed to write to; the reading thread marks
    // them dead afterwards (marking here would keep it from counting them).
    let mut failed = vec![false; conns.len()];
    let mut i = 0u64;
    while i < total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if now >= end + DRAIN_TIMEOUT {
            // Hopelessly behind: stop rather than burst for ever.
            break;
        }
        if due > now {
            let wait = due - now;
            if wait >= PACER_MIN_SLEEP {
                std::thread::sleep(wait);
                continue;
            }
        }
        let at = ((i / burst) % conns.len() as u64) as usize;
        let conn = &conns[at];
        if !conn.is_dead() && !failed[at] {
            match conn.send(frames, phase, burst as usize) {
                Ok(()) => {
                    paced.sent += burst;
                    paced.lag.record(now.saturating_duration_since(due));
                }
                Err(e) => {
                    // The entries pushed for it are counted as sent, and
                    // lost when the reading thread fails the connection.
                    paced.sent += burst;
                    failed[at] = true;
                    paced
                        .failures
                        .push((Arc::clone(conn), format!("write: {e}")));
                }
            }
        }
        i += burst;
    }
    paced
}

async fn broadcast_phase(
    engine: &Engine,
    duration: Duration,
    window: u32,
    rate: Option<f64>,
    phase: u32,
) -> ChildResult {
    let started = Instant::now();
    let deadline = started + duration;
    engine.begin(phase, Mode::Open, deadline);
    let first_seq = engine.next_seq.get();
    engine.phase_first_seq.set(first_seq);
    engine.acked.set(0);
    let mut result = ChildResult {
        phase,
        first_seq,
        ..ChildResult::default()
    };
    let Some(conn) = engine.conns.first().filter(|c| !c.is_dead()).cloned() else {
        result
            .failures
            .insert("the sending socket is closed".into(), 1);
        return result;
    };
    let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut next_at = started;
    'send: while Instant::now() < deadline {
        // The window: at most `window` messages not yet on every socket.
        while result.sent - engine.acked.get() >= u64::from(window.max(1)) {
            let wait = tokio::time::timeout(ACK_TIMEOUT, engine.ack_notify.notified()).await;
            if wait.is_err() {
                result.stalled = true;
                break 'send;
            }
        }
        if let Some(interval) = interval {
            tokio::time::sleep_until(next_at.into()).await;
            next_at += interval;
            if Instant::now() >= deadline {
                break;
            }
        }
        let seq = engine.next_seq.get();
        engine.next_seq.set(seq + 1);
        let mut text = b"bcast:".to_vec();
        text.extend_from_slice(&broadcast_payload(seq, engine.message_bytes));
        let frame = encode_frame(OPCODE_TEXT, &text, MASK);
        let at = engine.clock.unix_us(Instant::now());
        if let Err(e) = conn.send(&frame, phase, 0) {
            result.failures.insert(format!("write: {e}"), 1);
            engine.fail_conn(&conn, format!("write: {e}"));
            break;
        }
        tell_parent(&format!("sent {seq} {at}"));
        result.sent += 1;
    }
    // The last messages: wait for them to arrive everywhere.
    let give_up = Instant::now() + ACK_TIMEOUT;
    while engine.acked.get() < result.sent && !result.stalled {
        let left = give_up.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, engine.ack_notify.notified())
            .await
            .is_err()
        {
            result.stalled = true;
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    engine.mode.set(Mode::Idle);
    result
}

/// The sender asks its object for its socket count (`count`).
async fn count_sockets(engine: &Engine) -> String {
    let Some(conn) = engine.conns.first().filter(|c| !c.is_dead()).cloned() else {
        return "count error the sending socket is closed".into();
    };
    *engine.other_reply.borrow_mut() = None;
    if let Err(e) = conn.send(&encode_frame(OPCODE_TEXT, b"count", MASK), 0, 0) {
        return format!("count error {e}");
    }
    let give_up = Instant::now() + Duration::from_secs(10);
    while Instant::now() < give_up {
        if let Some(reply) = engine.other_reply.borrow_mut().take() {
            return format!("count {}", String::from_utf8_lossy(&reply));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    "count error no reply within 10 s".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_payloads_carry_their_sequence() {
        let payload = broadcast_payload(42, 16);
        assert_eq!(payload, b"42:xxxxxxxxxxxxx");
        assert_eq!(broadcast_seq(&payload), Some(42));
        assert_eq!(broadcast_payload(123_456, 3), b"123456:");
        assert_eq!(broadcast_seq(b"10000"), None);
        assert_eq!(broadcast_seq(b":x"), None);
        assert_eq!(broadcast_seq(b"1a:x"), None);
    }

    #[test]
    fn requests_are_encoded_once_with_their_reply_length() {
        let (ping, len) = request_for(Kind::Ping, 0);
        assert_eq!((ping.len(), len), (2 + 4 + 4, 4));
        let (echo, len) = request_for(Kind::Echo, 200);
        assert_eq!(len, 200);
        // 126-byte length form: 2 + 2 + mask 4 + "echo:" 5 + 200.
        assert_eq!(echo.len(), 2 + 2 + 4 + 205);
    }
}
