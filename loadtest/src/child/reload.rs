//! `loadtest reload-client`: the child process behind `reload`. It opens its
//! share of the connections (as the other clients do: global connection `k`
//! joins room `k % rooms`), then does what its parent says on stdin and
//! checks every reply as it arrives.
//!
//! Each socket has a role, from its global index `k` and its room `r`:
//! - room `r` is *busy* if `r < busy_rooms`, *quiet* otherwise;
//! - the room's *control* socket is `k == r` (its first): it asks the object
//!   `version` and `pid` for the parent, and in a busy room it is also the
//!   one that sends `bcast:b<n>` every `bcast_every` (at most
//!   [`BCAST_WINDOW`] of them not yet back on itself);
//! - the other sockets of a busy room *echo*: `echo:e<n>` with the socket's
//!   own `n = 1, 2, ...`, the next one `interval` after the last was sent
//!   (and never more than `window` unanswered), for as long as traffic runs.
//!
//! Checks, per socket: an echo reply must be `e<n>` for the oldest `n` still
//! unanswered (anything else is a duplicate, out of order, or unexpected);
//! broadcasts must arrive as `b1, b2, ...` with no gap and no repeat, and at
//! the end each socket of a busy room must have every broadcast its sender
//! sent. A socket that closes, or whose read fails, is counted with why.
//! Pings are answered (a node with a keepalive closes sockets that do not).
//!
//! Commands (one line each) and their answers:
//! - `hello`: every socket sends `echo:e0` → `hello <answered> <sockets>`
//!   once every reply is in (or after [`DRAIN_TIMEOUT`]).
//! - `ask <room> <text>`: the room's control socket, if here, sends `text`
//!   → `answer <room> <reply>` (`answer <room> err:<why>` on failure).
//! - `start <interval ms> <window> <bcast every ms>`: traffic begins.
//! - `phase <n>`: replies from now on count towards latency phase `n`
//!   (0 warm-up, 1 before, 2 during, 3 after the swap).
//! - `stop`: no new requests; the replies still owed are awaited →
//!   `stopped <json>` with the broadcasts this process's senders sent.
//! - `expect <room>:<count>,...`: wait until each socket of those rooms has
//!   `count` broadcasts (or [`DRAIN_TIMEOUT`]) → `result <json>`.
//!
//! The end of stdin closes everything.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

use crate::child::open::{self, tell_parent, OpenPlan, SPARE_FDS};
use crate::child::protocol::Clock;
use crate::child::reload_protocol::{ChildReport, Command, ReloadClientOptions, PHASES, SLOT_MS};
use crate::measure::latency::Recorder;
use crate::measure::rss;
use crate::wire::client::{encode_frame, Target, OPCODE_CLOSE, OPCODE_TEXT};
use crate::wire::frames::FrameScanner;

/// The scratch buffer every socket is read into.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Nothing the Bench object sends here is large.
const MAX_FRAME_BYTES: u64 = 1 << 20;
/// How long a drain (hello, stop, expect) or a question may take.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Broadcasts a sender may have sent and not yet seen come back.
const BCAST_WINDOW: usize = 16;
/// Opening gives up after this.
const OPEN_DEADLINE: Duration = Duration::from_secs(240);
/// A client process nobody talks to still ends.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Distinct failure reasons kept; the rest are lumped together.
const MAX_REASONS: usize = 16;
const MASK: [u8; 4] = [0x3c, 0x91, 0x0e, 0x7a];
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xa;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_BYTES]);
}

/// What a socket does, from its global index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub room: u32,
    pub busy: bool,
    pub control: bool,
    pub echoing: bool,
}

impl Role {
    pub fn of(index: u64, rooms: u32, busy_rooms: u32, echoers_per_room: u64) -> Role {
        let rooms = u64::from(rooms.max(1));
        // `index % rooms` is below `rooms`, a u32.
        let room = (index % rooms) as u32;
        let busy = room < busy_rooms;
        let control = index < rooms;
        // Position in the room: 0 is the control socket.
        let position = index / rooms;
        Role {
            room,
            busy,
            control,
            echoing: busy && !control && position <= echoers_per_room,
        }
    }
}

/// One open connection: its stream and what the socket will not take yet.
struct Io {
    stream: TcpStream,
    pending: RefCell<Vec<u8>>,
    /// Pending bytes appeared, or the socket's timers changed.
    wake: Notify,
}

impl Io {
    /// Writes `frame`, queueing what the socket does not take now.
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        let mut pending = self.pending.borrow_mut();
        if !pending.is_empty() {
            pending.extend_from_slice(frame);
            self.wake.notify_one();
            return Ok(());
        }
        let mut written = 0;
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
        pending.extend_from_slice(&frame[written..]);
        self.wake.notify_one();
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        let mut pending = self.pending.borrow_mut();
        while !pending.is_empty() {
            match self.stream.try_write(&pending) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn has_pending(&self) -> bool {
        !self.pending.borrow().is_empty()
    }
}

/// One socket's protocol state.
struct Sock {
    role: Role,
    dead: bool,
    /// Echo requests unanswered: `(n, sent at)`, oldest first.
    outstanding: VecDeque<(u64, Instant)>,
    next_seq: u64,
    next_echo: Instant,
    /// The last broadcast number seen in order.
    bcast_last: u64,
    /// Sender only: the next number, its due time, and those not yet back.
    bcast_next: u64,
    next_bcast: Instant,
    bcast_out: VecDeque<(u64, Instant)>,
    /// Control only: the parent's question waiting for its reply.
    question: Option<oneshot::Sender<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Idle,
    Running {
        interval: Duration,
        window: u32,
        bcast_every: Duration,
    },
    Stopped,
}

#[derive(Default)]
struct Stats {
    closed: BTreeMap<String, u64>,
    echo_sent: u64,
    echo_answered: u64,
    echo_duplicated: u64,
    echo_misordered: u64,
    unexpected: u64,
    bcast_received: u64,
    bcast_duplicated: u64,
    bcast_skipped: u64,
    echo_latency: [Recorder; PHASES],
    bcast_latency: [Recorder; PHASES],
    /// slot → (replies, max µs, sent).
    timeline: BTreeMap<u64, (u64, u64, u64)>,
}

/// The whole client process (one thread).
struct Engine {
    io: Vec<Rc<Io>>,
    socks: RefCell<Vec<Sock>>,
    /// Sockets by room, and each room's control socket if it is here.
    by_room: HashMap<u32, Vec<usize>>,
    control: HashMap<u32, usize>,
    mode: Cell<Mode>,
    phase: Cell<usize>,
    stats: RefCell<Stats>,
    clock: Clock,
    /// Something the parent may be waiting on changed (a reply, a close).
    progress: Notify,
}

impl Engine {
    fn slot(&self, at: Instant) -> u64 {
        self.clock.unix_us(at) / 1000 / SLOT_MS
    }

    fn close(&self, i: usize, reason: String) {
        let mut socks = self.socks.borrow_mut();
        let Some(sock) = socks.get_mut(i) else { return };
        if sock.dead {
            return;
        }
        sock.dead = true;
        // A question that will not be answered now.
        if let Some(q) = sock.question.take() {
            let _ = q.send(format!("err:{reason}"));
        }
        drop(socks);
        let mut stats = self.stats.borrow_mut();
        let key = if stats.closed.len() < MAX_REASONS || stats.closed.contains_key(&reason) {
            reason
        } else {
            "other".into()
        };
        *stats.closed.entry(key).or_default() += 1;
        drop(stats);
        self.progress.notify_waiters();
    }

    fn send_echo(&self, i: usize, seq: u64) {
        let Some(io) = self.io.get(i) else { return };
        let frame = encode_frame(OPCODE_TEXT, format!("echo:e{seq}").as_bytes(), MASK);
        let now = Instant::now();
        {
            let mut socks = self.socks.borrow_mut();
            let Some(sock) = socks.get_mut(i).filter(|s| !s.dead) else {
                return;
            };
            sock.outstanding.push_back((seq, now));
            sock.next_seq = sock.next_seq.max(seq + 1);
        }
        let slot = self.slot(now);
        {
            let mut stats = self.stats.borrow_mut();
            stats.echo_sent += 1;
            stats.timeline.entry(slot).or_default().2 += 1;
        }
        if let Err(e) = io.send(&frame) {
            self.close(i, format!("write: {e}"));
        }
    }

    /// The next echo of a running echoing socket, if one is due now.
    fn echo_if_due(&self, i: usize, now: Instant) {
        let Mode::Running {
            interval, window, ..
        } = self.mode.get()
        else {
            return;
        };
        let seq = {
            let mut socks = self.socks.borrow_mut();
            let Some(sock) = socks.get_mut(i) else { return };
            if sock.dead
                || !sock.role.echoing
                || sock.outstanding.len() >= window as usize
                || now < sock.next_echo
            {
                return;
            }
            sock.next_echo = now + interval;
            sock.next_seq
        };
        self.send_echo(i, seq);
    }

    fn bcast_if_due(&self, i: usize, now: Instant) {
        let Mode::Running { bcast_every, .. } = self.mode.get() else {
            return;
        };
        let seq = {
            let mut socks = self.socks.borrow_mut();
            let Some(sock) = socks.get_mut(i) else { return };
            if sock.dead
                || !(sock.role.control && sock.role.busy)
                || sock.bcast_out.len() >= BCAST_WINDOW
                || now < sock.next_bcast
            {
                return;
            }
            sock.next_bcast = now + bcast_every;
            let seq = sock.bcast_next;
            sock.bcast_next += 1;
            sock.bcast_out.push_back((seq, now));
            seq
        };
        let Some(io) = self.io.get(i) else { return };
        let frame = encode_frame(OPCODE_TEXT, format!("bcast:b{seq}").as_bytes(), MASK);
        if let Err(e) = io.send(&frame) {
            self.close(i, format!("write: {e}"));
        }
    }

    /// When socket `i` next has something to send, if anything.
    fn next_due(&self, i: usize) -> Option<Instant> {
        let Mode::Running { window, .. } = self.mode.get() else {
            return None;
        };
        let socks = self.socks.borrow();
        let sock = socks.get(i).filter(|s| !s.dead)?;
        let echo = (sock.role.echoing && sock.outstanding.len() < window as usize)
            .then_some(sock.next_echo);
        let bcast = (sock.role.control && sock.role.busy && sock.bcast_out.len() < BCAST_WINDOW)
            .then_some(sock.next_bcast);
        match (echo, bcast) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A whole text frame arrived on socket `i`.
    fn on_text(&self, i: usize, len: u64, prefix: &[u8], now: Instant) {
        let phase = self.phase.get().min(PHASES - 1);
        let number = |tail: &[u8]| -> Option<u64> {
            if tail.is_empty() || !tail.iter().all(u8::is_ascii_digit) || len > 24 {
                return None;
            }
            std::str::from_utf8(tail).ok()?.parse().ok()
        };
        let mut socks = self.socks.borrow_mut();
        let Some(sock) = socks.get_mut(i) else { return };
        let mut stats = self.stats.borrow_mut();
        match prefix.split_first() {
            Some((b'e', tail)) if number(tail).is_some() => {
                let n = number(tail).unwrap_or_default();
                match sock.outstanding.front() {
                    Some((front, sent)) if *front == n => {
                        let latency = now.saturating_duration_since(*sent);
                        sock.outstanding.pop_front();
                        stats.echo_answered += 1;
                        stats.echo_latency[phase].record(latency);
                        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                        let slot = self.clock.unix_us(now) / 1000 / SLOT_MS;
                        let entry = stats.timeline.entry(slot).or_default();
                        entry.0 += 1;
                        entry.1 = entry.1.max(us);
                    }
                    _ => {
                        if let Some(at) = sock.outstanding.iter().position(|(s, _)| *s == n) {
                            // Answered, but before an older request.
                            sock.outstanding.remove(at);
                            stats.echo_answered += 1;
                            stats.echo_misordered += 1;
                        } else if n < sock.next_seq {
                            stats.echo_duplicated += 1;
                        } else {
                            stats.unexpected += 1;
                        }
                    }
                }
                drop(stats);
                drop(socks);
                self.progress.notify_waiters();
                // A closed loop: the reply may free the window.
                self.echo_if_due(i, now);
            }
            Some((b'b', tail)) if number(tail).is_some() => {
                let n = number(tail).unwrap_or_default();
                if n == sock.bcast_last + 1 {
                    sock.bcast_last = n;
                    stats.bcast_received += 1;
                } else if n <= sock.bcast_last {
                    stats.bcast_duplicated += 1;
                } else {
                    stats.bcast_skipped += n - sock.bcast_last - 1;
                    stats.bcast_received += 1;
                    sock.bcast_last = n;
                }
                if sock.role.control {
                    while let Some((seq, sent)) = sock.bcast_out.front().copied() {
                        if seq > n {
                            break;
                        }
                        sock.bcast_out.pop_front();
                        if seq == n {
                            stats.bcast_latency[phase].record(now.saturating_duration_since(sent));
                        }
                    }
                }
                drop(stats);
                drop(socks);
                self.progress.notify_waiters();
            }
            _ => match sock.question.take() {
                Some(q) if sock.role.control => {
                    let _ = q.send(String::from_utf8_lossy(prefix).into_owned());
                }
                _ => stats.unexpected += 1,
            },
        }
    }

    /// Answers a ping with its payload, which the scanner kept whole if it
    /// is short (a keepalive's is); a longer one cannot be echoed and counts
    /// as unexpected.
    fn pong(&self, i: usize, len: u64, payload: &[u8]) {
        if len > payload.len() as u64 {
            self.stats.borrow_mut().unexpected += 1;
            return;
        }
        let Some(io) = self.io.get(i) else { return };
        if let Err(e) = io.send(&encode_frame(OPCODE_PONG, payload, MASK)) {
            self.close(i, format!("write: {e}"));
        }
    }

    fn live(&self, i: usize) -> bool {
        self.socks.borrow().get(i).is_some_and(|s| !s.dead)
    }

    /// Echo requests unanswered on live sockets.
    fn owed(&self) -> usize {
        self.socks
            .borrow()
            .iter()
            .filter(|s| !s.dead)
            .map(|s| s.outstanding.len())
            .sum()
    }

    /// Waits until `done()` holds or `timeout` passes; whether it held.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&Engine) -> bool) -> bool {
        let give_up = tokio::time::Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            let notified = self.progress.notified();
            // Re-check after registering, so a change in between is not missed.
            if done(self) {
                return true;
            }
            let tick = tokio::time::Instant::now() + Duration::from_millis(50);
            if tokio::time::timeout_at(tick.min(give_up), notified)
                .await
                .is_err()
                && tokio::time::Instant::now() >= give_up
            {
                return done(self);
            }
        }
    }

    fn wake_all(&self) {
        for io in &self.io {
            io.wake.notify_one();
        }
    }

    fn report(&self, expected: &BTreeMap<u32, u64>) -> ChildReport {
        let socks = self.socks.borrow();
        let stats = self.stats.borrow();
        let mut bcast_expected = 0;
        let mut bcast_missing = stats.bcast_skipped;
        for sock in socks.iter().filter(|s| s.role.busy) {
            let want = expected.get(&sock.role.room).copied().unwrap_or(0);
            bcast_expected += want;
            bcast_missing += want.saturating_sub(sock.bcast_last);
        }
        let bcast_sent = socks
            .iter()
            .filter(|s| s.role.control && s.role.busy)
            .map(|s| (s.role.room, s.bcast_next - 1))
            .collect();
        ChildReport {
            sockets: socks.len() as u64,
            closed: stats.closed.clone(),
            echo_sent: stats.echo_sent,
            echo_answered: stats.echo_answered,
            echo_lost: socks.iter().map(|s| s.outstanding.len() as u64).sum(),
            echo_duplicated: stats.echo_duplicated,
            echo_misordered: stats.echo_misordered,
            unexpected: stats.unexpected,
            bcast_sent,
            bcast_expected,
            bcast_received: stats.bcast_received,
            bcast_duplicated: stats.bcast_duplicated,
            bcast_missing,
            echo_latency: stats.echo_latency.iter().map(Recorder::to_wire).collect(),
            bcast_latency: stats.bcast_latency.iter().map(Recorder::to_wire).collect(),
            timeline: stats
                .timeline
                .iter()
                .map(|(slot, (replies, max_us, sent))| [slot * SLOT_MS, *replies, *max_us, *sent])
                .collect(),
            rss_bytes: rss::rss_bytes(std::process::id()).unwrap_or(0),
        }
    }
}

/// Runs one client process to the end of its stdin.
pub fn run_child(opts: &ReloadClientOptions) -> Result<(), String> {
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

async fn serve(target: Arc<Target>, opts: ReloadClientOptions) -> Result<(), String> {
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
    // Streams come back in the order they opened, not by index, so each
    // one's index travels with it.
    let opened = open::open_and_report(Arc::clone(&target), &plan).await?;

    let now = Instant::now();
    let mut io = Vec::with_capacity(opened.streams.len());
    let mut socks = Vec::with_capacity(opened.streams.len());
    let mut by_room: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut control = HashMap::new();
    for (stream, index) in opened.streams.into_iter().zip(opened.indices) {
        let stream = open::into_tokio(stream)?;
        let role = Role::of(index, opts.rooms, opts.busy_rooms, opts.echoers_per_room);
        let i = io.len();
        by_room.entry(role.room).or_default().push(i);
        if role.control {
            control.insert(role.room, i);
        }
        io.push(Rc::new(Io {
            stream,
            pending: RefCell::new(Vec::new()),
            wake: Notify::new(),
        }));
        socks.push(Sock {
            role,
            dead: false,
            outstanding: VecDeque::new(),
            next_seq: 0,
            next_echo: now,
            bcast_last: 0,
            bcast_next: 1,
            next_bcast: now,
            bcast_out: VecDeque::new(),
            question: None,
        });
    }
    let engine = Rc::new(Engine {
        io,
        socks: RefCell::new(socks),
        by_room,
        control,
        mode: Cell::new(Mode::Idle),
        phase: Cell::new(0),
        stats: RefCell::new(Stats::default()),
        clock: Clock::new(),
        progress: Notify::new(),
    });
    for i in 0..engine.io.len() {
        tokio::task::spawn_local(socket_loop(Rc::clone(&engine), i));
    }

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
    let end = tokio::time::Instant::now() + MAX_LIFETIME;
    while let Ok(Some(line)) = tokio::time::timeout_at(end, commands.recv()).await {
        let command = match Command::parse(&line) {
            Ok(command) => command,
            Err(e) => {
                tell_parent(&format!("error {e}"));
                continue;
            }
        };
        let engine = Rc::clone(&engine);
        match command {
            Command::Hello => {
                tokio::task::spawn_local(async move {
                    for i in 0..engine.io.len() {
                        engine.send_echo(i, 0);
                    }
                    engine.wait_until(DRAIN_TIMEOUT, |e| e.owed() == 0).await;
                    let answered = engine.stats.borrow().echo_answered;
                    tell_parent(&format!("hello {answered} {}", engine.io.len()));
                });
            }
            Command::Ask { room, text } => {
                tokio::task::spawn_local(async move {
                    tell_parent(&format!(
                        "answer {room} {}",
                        ask(&engine, room, &text).await
                    ));
                });
            }
            Command::Start {
                interval,
                window,
                bcast_every,
            } => {
                let now = Instant::now();
                let mut socks = engine.socks.borrow_mut();
                let count = socks.len().max(1) as u64;
                for (i, sock) in socks.iter_mut().enumerate() {
                    // Spread the first sends over one interval, so the
                    // sockets do not all fire at once.
                    let offset = |every: Duration| {
                        let spread = (i as u64).wrapping_mul(7919) % count;
                        every.mul_f64(spread as f64 / count as f64)
                    };
                    sock.next_echo = now + offset(interval);
                    sock.next_bcast = now + offset(bcast_every);
                }
                drop(socks);
                engine.mode.set(Mode::Running {
                    interval,
                    window,
                    bcast_every,
                });
                engine.wake_all();
            }
            Command::Phase(n) => engine.phase.set(n),
            Command::Stop => {
                engine.mode.set(Mode::Stopped);
                engine.wake_all();
                tokio::task::spawn_local(async move {
                    engine.wait_until(DRAIN_TIMEOUT, |e| e.owed() == 0).await;
                    let report = engine.report(&BTreeMap::new());
                    match serde_json::to_string(&report.bcast_sent) {
                        Ok(json) => tell_parent(&format!("stopped {json}")),
                        Err(e) => tell_parent(&format!("error cannot serialize: {e}")),
                    }
                });
            }
            Command::Expect(counts) => {
                tokio::task::spawn_local(async move {
                    let all_in = |e: &Engine| {
                        counts.iter().all(|(room, want)| {
                            let socks = e.socks.borrow();
                            e.by_room.get(room).is_none_or(|list| {
                                list.iter().all(|i| {
                                    socks
                                        .get(*i)
                                        .is_none_or(|s| s.dead || s.bcast_last >= *want)
                                })
                            })
                        })
                    };
                    engine.wait_until(DRAIN_TIMEOUT, all_in).await;
                    match serde_json::to_string(&engine.report(&counts)) {
                        Ok(json) => tell_parent(&format!("result {json}")),
                        Err(e) => tell_parent(&format!("error cannot serialize: {e}")),
                    }
                });
            }
        }
    }
    Ok(())
}

/// Sends `text` on `room`'s control socket and returns the reply.
async fn ask(engine: &Engine, room: u32, text: &str) -> String {
    let Some(&i) = engine.control.get(&room) else {
        return "err:no control socket here".into();
    };
    if !engine.live(i) {
        return "err:the control socket is closed".into();
    }
    let (tx, rx) = oneshot::channel();
    if let Some(sock) = engine.socks.borrow_mut().get_mut(i) {
        if sock.question.is_some() {
            return "err:a question is already waiting".into();
        }
        sock.question = Some(tx);
    }
    let Some(io) = engine.io.get(i) else {
        return "err:no such socket".into();
    };
    if let Err(e) = io.send(&encode_frame(OPCODE_TEXT, text.as_bytes(), MASK)) {
        engine.close(i, format!("write: {e}"));
    }
    match tokio::time::timeout(DRAIN_TIMEOUT, rx).await {
        Ok(Ok(reply)) => reply.replace(char::is_whitespace, "_"),
        Ok(Err(_)) => "err:dropped".into(),
        Err(_) => {
            if let Some(sock) = engine.socks.borrow_mut().get_mut(i) {
                sock.question = None;
            }
            format!("err:no reply within {} s", DRAIN_TIMEOUT.as_secs())
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads socket `i` until it dies, and sends what its timers say.
async fn socket_loop(engine: Rc<Engine>, i: usize) {
    let Some(io) = engine.io.get(i).cloned() else {
        return;
    };
    let mut scanner = FrameScanner::new(MAX_FRAME_BYTES);
    loop {
        if !engine.live(i) {
            return;
        }
        let due = engine.next_due(i);
        let flushing = io.has_pending();
        let outcome: Result<(), String> = tokio::select! {
            biased;
            ready = io.stream.readable() => match ready {
                Ok(()) => SCRATCH.with(|scratch| {
                    let mut buf = scratch.borrow_mut();
                    match io.stream.try_read(&mut buf) {
                        Ok(0) => Err("server closed the connection".to_string()),
                        Ok(n) => {
                            let now = Instant::now();
                            let mut closed = None;
                            let fed = scanner.feed(&buf[..n], |frame| match frame.opcode {
                                OPCODE_TEXT if frame.fin => {
                                    engine.on_text(i, frame.len, frame.prefix, now);
                                }
                                OPCODE_CLOSE => {
                                    closed = Some(crate::wire::client::close_code(frame.prefix));
                                }
                                // A node with a keepalive closes sockets that
                                // leave its pings unanswered.
                                OPCODE_PING => engine.pong(i, frame.len, frame.prefix),
                                _ => {}
                            });
                            match (fed, closed) {
                                (Err(e), _) => Err(format!("frame: {e}")),
                                (Ok(()), Some(code)) => Err(format!(
                                    "server sent close {}",
                                    code.map_or("without a code".to_string(), |c| c.to_string())
                                )),
                                (Ok(()), None) => Ok(()),
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(()),
                        Err(e) => Err(format!("read: {e}")),
                    }
                }),
                Err(e) => Err(format!("poll: {e}")),
            },
            ready = io.stream.writable(), if flushing => match ready {
                Ok(()) => io.flush().map_err(|e| format!("write: {e}")),
                Err(e) => Err(format!("poll: {e}")),
            },
            () = io.wake.notified() => Ok(()),
            () = sleep_until(due) => {
                let now = Instant::now();
                engine.echo_if_due(i, now);
                engine.bcast_if_due(i, now);
                Ok(())
            }
        };
        if let Err(reason) = outcome {
            engine.close(i, reason);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_index() {
        // 20 rooms, 10 busy, 2 echoers per room.
        let role = |k| Role::of(k, 20, 10, 2);
        assert_eq!(
            role(3),
            Role {
                room: 3,
                busy: true,
                control: true,
                echoing: false
            }
        );
        assert!(role(23).echoing && role(43).echoing && !role(63).echoing);
        let quiet = role(15);
        assert!(quiet.control && !quiet.busy && !quiet.echoing);
        assert!(!role(35).echoing && !role(35).control);
        assert!(Role::of(10_000 - 1, 20, 10, u64::MAX).busy == (9_999 % 20 < 10));
    }
}
