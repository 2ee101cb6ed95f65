//! `baseline-server`: what Torpor is measured against. It is the server a
//! Rust developer would write with tokio-tungstenite, one tokio task per
//! connection, speaking the Bench text protocol (`objects/src/builtin/bench.rs`)
//! on `/bench/{room}`, so the load generator can drive both the same way.
//!
//! It is meant to be honest, not clever: neither slowed down nor tuned beyond
//! what its `--mode` says. `default` takes tokio-tungstenite's default
//! `WebSocketConfig` (a 128 KiB read buffer per connection, which is what
//! the comparison is about); `tuned` is the same server with a 4 KiB read
//! buffer and writes that go out at once. It has no hibernation, no storage,
//! no limits beyond tungstenite's, and none of Bench's test-only commands.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Flags text for the usage message.
pub const USAGE: &str = "\
usage: loadtest baseline-server [--listen ADDR] [--mode default|tuned] [--threads N] [--backlog N]

A plain tokio-tungstenite server (one task per connection) speaking the Bench
protocol on /bench/{room}, for comparison with Torpor. Prints
`baseline ready addr=ADDR pid=PID mode=MODE` once listening; runs until
SIGTERM or SIGINT.

  --listen ADDR         address to listen on [127.0.0.1:8788]
  --mode M              default: tokio-tungstenite's default config (128 KiB
                        read buffer); tuned: 4 KiB read buffer, unbuffered
                        writes [default]
  --threads N           tokio worker threads [1]
  --backlog N           listen backlog [4096]
";

/// Why `run` failed: bad flags (the caller shows [`USAGE`]) or the server
/// could not start.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Run(String),
}

/// Parses flags and runs the server until SIGTERM/SIGINT. Returns
/// `Err(message)` on bad flags or bind failure.
pub fn run(args: &[String]) -> Result<(), BaselineError> {
    let opts = Options::parse(args).map_err(BaselineError::Usage)?;
    // The multi-thread scheduler is what `#[tokio::main]` gives, so its
    // costs (work stealing, cross-thread wake-ups) belong in the baseline;
    // a current-thread runtime would be a tuning step. The benchmark pins
    // this process to one core with `taskset`, and tokio's own default would
    // follow the affinity mask there, but naming the count keeps a run
    // reproducible whatever the machine, the mask or TOKIO_WORKER_THREADS say.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
        .map_err(|e| BaselineError::Run(format!("cannot start the tokio runtime: {e}")))?;
    runtime.block_on(async {
        let listener = bind(opts.listen, opts.backlog)
            .map_err(|e| BaselineError::Run(format!("cannot listen on {}: {e}", opts.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BaselineError::Run(format!("listener address: {e}")))?;
        // Installed before announcing readiness, so that a signal sent as soon
        // as the load generator sees the line still ends the run cleanly.
        let mut terminate = signal(SignalKind::terminate())
            .map_err(|e| BaselineError::Run(format!("cannot handle SIGTERM: {e}")))?;
        let mut interrupt = signal(SignalKind::interrupt())
            .map_err(|e| BaselineError::Run(format!("cannot handle SIGINT: {e}")))?;
        let mut stdout = io::stdout().lock();
        writeln!(
            stdout,
            "baseline ready addr={addr} pid={} mode={}",
            std::process::id(),
            opts.mode.as_str()
        )
        .and_then(|()| stdout.flush())
        .map_err(|e| BaselineError::Run(format!("cannot write to stdout: {e}")))?;
        drop(stdout);
        tokio::select! {
            () = serve(listener, opts.mode) => {}
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        Ok(())
    })
    // Dropping the runtime here drops every connection task, closing their
    // sockets: the load generator only needs the process gone.
}

/// How the server configures each WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    Tuned,
}

impl Mode {
    fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "default" => Ok(Mode::Default),
            "tuned" => Ok(Mode::Tuned),
            other => Err(format!("--mode {other:?} is not default or tuned")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Default => "default",
            Mode::Tuned => "tuned",
        }
    }

    fn config(self) -> WebSocketConfig {
        match self {
            Mode::Default => WebSocketConfig::default(),
            // The read buffer is allocated up front for every connection, so
            // it dominates the memory of an idle one; 4 KiB still holds any
            // Bench command, and larger frames grow the buffer as needed.
            // With nothing held back on write, `send` costs the same as with
            // the default, since it flushes anyway; it only stops a write
            // buffer from lingering at its high-water mark.
            Mode::Tuned => WebSocketConfig::default()
                .read_buffer_size(4 * 1024)
                .write_buffer_size(0),
        }
    }
}

/// Parsed flags.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    listen: SocketAddr,
    mode: Mode,
    threads: usize,
    backlog: u32,
}

impl Options {
    /// `--name value` or `--name=value`, each at most once.
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut listen = None;
        let mut mode = None;
        let mut threads = None;
        let mut backlog = None;
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let flag = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, value),
                None => {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("--{flag} needs a value"))?;
                    (flag, value.as_str())
                }
            };
            let fresh = match name {
                "listen" => listen
                    .replace(value.parse::<SocketAddr>().map_err(|_| {
                        format!("--listen {value:?} is not an address like 127.0.0.1:8788")
                    })?)
                    .is_none(),
                "mode" => mode.replace(Mode::parse(value)?).is_none(),
                "threads" => threads.replace(positive("threads", value)?).is_none(),
                "backlog" => backlog
                    .replace(u32::try_from(positive("backlog", value)?).map_err(|_| {
                        format!("--backlog {value} is too large; the most is {}", u32::MAX)
                    })?)
                    .is_none(),
                _ => return Err(format!("unknown flag --{name}")),
            };
            if !fresh {
                return Err(format!("--{name} given twice"));
            }
        }
        Ok(Options {
            listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8788))),
            mode: mode.unwrap_or(Mode::Default),
            threads: threads.unwrap_or(1),
            backlog: backlog.unwrap_or(4096),
        })
    }
}

/// A count of at least one (tokio refuses zero worker threads).
fn positive(name: &str, value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err(format!("--{name} must be at least 1")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("--{name} {value:?} is not a whole number")),
    }
}

/// A listener with the backlog the benchmark asks for; `TcpListener::bind`
/// would fix it at 1024, too few for a burst of thousands of connects.
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Back-to-back runs must not wait out the last run's TIME_WAIT sockets.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Accepts connections forever, one task each.
async fn serve(listener: TcpListener, mode: Mode) {
    let rooms = Arc::new(Rooms::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, mode, Arc::clone(&rooms)));
            }
            Err(err) => {
                // Usually out of file descriptors. Retrying at once would spin
                // on the one core the server has while nothing can be freed.
                eprintln!("baseline: accept: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The room named by an upgrade path: `/bench/{room}`, the room being one
/// whole non-empty segment, as Torpor's `{name}` routes are.
fn room_of(path: &str) -> Option<&str> {
    path.strip_prefix("/bench/")
        .filter(|room| !room.is_empty() && !room.contains('/'))
}

/// Completes the WebSocket handshake with `mode`'s config, answering 404 to
/// any path but `/bench/{room}`. Returns the socket and its room.
async fn accept(
    stream: TcpStream,
    mode: Mode,
) -> Result<(WebSocketStream<TcpStream>, String), tokio_tungstenite::tungstenite::Error> {
    let mut room = String::new();
    // The error type is tungstenite's `Callback` signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let check_path = |request: &Request, response: Response| match room_of(request.uri().path()) {
        Some(name) => {
            room = name.to_owned();
            Ok(response)
        }
        None => {
            let mut not_found = ErrorResponse::new(Some("no such path; use /bench/{room}".into()));
            *not_found.status_mut() = StatusCode::NOT_FOUND;
            Err(not_found)
        }
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, check_path, Some(mode.config()))
            .await?;
    Ok((ws, room))
}

/// One connection from handshake to close.
async fn connection(stream: TcpStream, mode: Mode, rooms: Arc<Rooms>) {
    // Torpor's edge does the same; small replies must not wait on Nagle.
    let _ = stream.set_nodelay(true);
    // A failed handshake (bad path, not a WebSocket, gone) has had its answer.
    let Ok((ws, room)) = accept(stream, mode).await else {
        return;
    };
    // Unbounded, as the usual chat-room example has it: a broadcast never
    // waits on a slow reader, at the price of queueing for it without limit.
    let (outbox, mut inbox) = mpsc::unbounded_channel();
    let id = rooms.join(&room, outbox);
    let mut conn = Conn {
        rooms,
        room,
        id,
        attachment: String::new(),
    };
    let (mut sink, mut stream) = ws.split();
    loop {
        let outgoing = tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => conn.handle_text(&text),
                Some(Ok(Message::Binary(bytes))) => Some(Message::Binary(bytes)),
                // Pings are answered by tungstenite, and after a close frame
                // the next read sends the reply and ends the stream.
                Some(Ok(_)) => None,
                Some(Err(_)) | None => break,
            },
            // The room holds our sender until `leave`, so this never ends first.
            Some(message) = inbox.recv() => Some(message),
        };
        if let Some(message) = outgoing {
            if sink.send(message).await.is_err() {
                break;
            }
        }
    }
    conn.rooms.leave(&conn.room, conn.id);
}

/// The state a connection's task owns.
struct Conn {
    rooms: Arc<Rooms>,
    room: String,
    id: u64,
    attachment: String,
}

impl Conn {
    /// The reply to one Bench command, if it has one.
    fn handle_text(&mut self, text: &str) -> Option<Message> {
        let reply = if let Some(rest) = text.strip_prefix("echo:") {
            rest.to_owned()
        } else if let Some(rest) = text.strip_prefix("attach:") {
            // Copied out: a received frame shares the connection's read
            // buffer, and holding a slice of it would hold all of it.
            self.attachment = rest.to_owned();
            "ok".to_owned()
        } else if let Some(rest) = text.strip_prefix("bcast:") {
            self.rooms.broadcast(&self.room, Message::text(rest));
            return None;
        } else {
            match text {
                "ping" => "pong".to_owned(),
                "getattach" => self.attachment.clone(),
                "count" => self.rooms.count(&self.room).to_string(),
                // Bench's own wording, so a client cannot tell them apart.
                _ => format!("err:unknown command {:?}", truncate(text, 32)),
            }
        };
        Some(Message::text(reply))
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A room's connections by id, each with the sender into its task.
type Room = HashMap<u64, mpsc::UnboundedSender<Message>>;

/// Every room with at least one connection.
#[derive(Default)]
struct Rooms {
    by_name: Mutex<HashMap<String, Room>>,
    next_id: AtomicU64,
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        // Nothing panics while holding the lock, so a poisoned map is intact.
        self.by_name.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, room: &str, outbox: mpsc::UnboundedSender<Message>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock()
            .entry(room.to_owned())
            .or_default()
            .insert(id, outbox);
        id
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.lock();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// Queues `message` for every connection in `room`. A clone shares the
    /// payload, so the text is not copied per connection.
    fn broadcast(&self, room: &str, message: Message) {
        if let Some(members) = self.lock().get(room) {
            for outbox in members.values() {
                // A closed receiver is a connection on its way to `leave`.
                let _ = outbox.send(message.clone());
            }
        }
    }

    fn count(&self, room: &str) -> usize {
        self.lock().get(room).map_or(0, HashMap::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::MaybeTlsStream;

    type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

    const WAIT: Duration = Duration::from_secs(5);

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    async fn start(mode: Mode) -> SocketAddr {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 128).unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, mode));
        addr
    }

    async fn connect(addr: SocketAddr, path: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .unwrap();
        ws
    }

    async fn recv(ws: &mut Client) -> Message {
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within the wait")
            .expect("the stream is open")
            .unwrap()
    }

    async fn ask(ws: &mut Client, text: &str) -> String {
        ws.send(Message::text(text)).await.unwrap();
        match recv(ws).await {
            Message::Text(reply) => reply.as_str().to_owned(),
            other => panic!("expected a text reply to {text:?}, got {other:?}"),
        }
    }

    async fn assert_quiet(ws: &mut Client) {
        let next = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
        assert!(next.is_err(), "unexpected message {next:?}");
    }

    #[test]
    fn flags_take_defaults_and_both_spellings() {
        let opts = Options::parse(&[]).unwrap();
        assert_eq!(
            opts,
            Options {
                listen: "127.0.0.1:8788".parse().unwrap(),
                mode: Mode::Default,
                threads: 1,
                backlog: 4096,
            }
        );
        let opts = Options::parse(&args(&[
            "--listen=0.0.0.0:9000",
            "--mode",
            "tuned",
            "--threads",
            "4",
            "--backlog=512",
        ]))
        .unwrap();
        assert_eq!(opts.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(
            (opts.mode, opts.threads, opts.backlog),
            (Mode::Tuned, 4, 512)
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let error = |list: &[&str]| Options::parse(&args(list)).unwrap_err();
        assert_eq!(
            error(&["--mode", "fast"]),
            "--mode \"fast\" is not default or tuned"
        );
        assert_eq!(error(&["--threads", "0"]), "--threads must be at least 1");
        assert_eq!(
            error(&["--threads", "two"]),
            "--threads \"two\" is not a whole number"
        );
        assert_eq!(
            error(&["--listen", "localhost"]),
            "--listen \"localhost\" is not an address like 127.0.0.1:8788"
        );
        assert_eq!(error(&["--backlog"]), "--backlog needs a value");
        assert_eq!(error(&["--port", "1"]), "unknown flag --port");
        assert_eq!(
            error(&["--mode=tuned", "--mode=tuned"]),
            "--mode given twice"
        );
        assert_eq!(error(&["tuned"]), "unexpected argument \"tuned\"");
    }

    #[test]
    fn tuned_mode_shrinks_the_buffers_and_default_keeps_tungstenites() {
        let tuned = Mode::Tuned.config();
        assert_eq!(tuned.read_buffer_size, 4096);
        assert_eq!(tuned.write_buffer_size, 0);
        // Must stay above the write buffer, or tungstenite panics on accept.
        assert!(tuned.max_write_buffer_size > tuned.write_buffer_size);
        let default = Mode::Default.config();
        assert_eq!(default.read_buffer_size, 128 * 1024);
        assert_eq!(default.write_buffer_size, 128 * 1024);
    }

    #[tokio::test]
    async fn accept_uses_the_modes_config() {
        for (mode, read_buffer) in [(Mode::Default, 128 * 1024), (Mode::Tuned, 4096)] {
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), 16).unwrap();
            let addr = listener.local_addr().unwrap();
            let client = tokio::spawn(connect(addr, "/bench/config"));
            let (stream, _) = listener.accept().await.unwrap();
            let (ws, room) = accept(stream, mode).await.unwrap();
            assert_eq!(room, "config");
            assert_eq!(ws.get_config().read_buffer_size, read_buffer);
            client.await.unwrap();
        }
    }

    #[tokio::test]
    async fn commands_get_bench_answers() {
        let addr = start(Mode::Default).await;
        let mut ws = connect(addr, "/bench/a").await;
        assert_eq!(ask(&mut ws, "echo:hello").await, "hello");
        assert_eq!(ask(&mut ws, "echo:").await, "");
        assert_eq!(ask(&mut ws, "ping").await, "pong");
        assert_eq!(ask(&mut ws, "getattach").await, "");
        assert_eq!(ask(&mut ws, "attach:state-1").await, "ok");
        assert_eq!(ask(&mut ws, "getattach").await, "state-1");
        assert_eq!(ask(&mut ws, "count").await, "1");
        assert_eq!(
            ask(&mut ws, "nope").await,
            "err:unknown command \"nope\"",
            "same wording as Bench"
        );
    }

    #[tokio::test]
    async fn attachments_belong_to_one_connection() {
        let addr = start(Mode::Default).await;
        let mut first = connect(addr, "/bench/a").await;
        let mut second = connect(addr, "/bench/a").await;
        assert_eq!(ask(&mut first, "attach:mine").await, "ok");
        assert_eq!(ask(&mut second, "getattach").await, "");
        assert_eq!(ask(&mut first, "getattach").await, "mine");
    }

    #[tokio::test]
    async fn binary_and_protocol_pings_are_answered() {
        let addr = start(Mode::Tuned).await;
        let mut ws = connect(addr, "/bench/a").await;
        ws.send(Message::binary(vec![0xC0, 0x00, 0xFF]))
            .await
            .unwrap();
        assert_eq!(recv(&mut ws).await, Message::binary(vec![0xC0, 0x00, 0xFF]));
        ws.send(Message::Ping(b"hb".to_vec().into())).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::Pong(b"hb".to_vec().into()));
    }

    #[tokio::test]
    async fn tuned_mode_takes_messages_larger_than_its_read_buffer() {
        let addr = start(Mode::Tuned).await;
        let mut ws = connect(addr, "/bench/a").await;
        let big = "x".repeat(100_000);
        assert_eq!(ask(&mut ws, &format!("echo:{big}")).await, big);
        assert_eq!(ask(&mut ws, "echo:small").await, "small");
    }

    #[tokio::test]
    async fn broadcast_reaches_each_socket_of_the_room_once() {
        let addr = start(Mode::Default).await;
        let mut room = Vec::new();
        for _ in 0..3 {
            room.push(connect(addr, "/bench/party").await);
        }
        let mut elsewhere = connect(addr, "/bench/other").await;
        assert_eq!(ask(&mut room[0], "count").await, "3");
        assert_eq!(ask(&mut elsewhere, "count").await, "1");

        room[0].send(Message::text("bcast:hi all")).await.unwrap();
        for ws in &mut room {
            assert_eq!(recv(ws).await, Message::text("hi all"));
        }
        for ws in &mut room {
            assert_quiet(ws).await;
        }
        assert_quiet(&mut elsewhere).await;
        // Still usable afterwards, and nothing was queued behind the reply.
        assert_eq!(ask(&mut room[2], "echo:after").await, "after");
    }

    #[tokio::test]
    async fn closed_sockets_leave_their_room() {
        let addr = start(Mode::Default).await;
        let mut staying = connect(addr, "/bench/a").await;
        let mut leaving = connect(addr, "/bench/a").await;
        assert_eq!(ask(&mut staying, "count").await, "2");
        leaving.close(None).await.unwrap();
        // The close handshake completes: the server answers the close frame.
        while let Some(message) = leaving.next().await {
            assert!(matches!(message, Ok(Message::Close(_))), "{message:?}");
        }
        let mut count = String::new();
        for _ in 0..100 {
            count = ask(&mut staying, "count").await;
            if count == "1" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count, "1");
    }

    #[tokio::test]
    async fn other_paths_get_404() {
        let addr = start(Mode::Default).await;
        for path in ["/rooms/a", "/bench/", "/bench/a/b", "/"] {
            match tokio_tungstenite::connect_async(format!("ws://{addr}{path}")).await {
                Err(WsError::Http(response)) => {
                    assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
                }
                other => panic!("{path}: expected a 404, got {other:?}"),
            }
        }
        // The query string is not part of the room name.
        let mut ws = connect(addr, "/bench/q?tag=x").await;
        assert_eq!(ask(&mut ws, "count").await, "1");
    }

    #[test]
    fn empty_rooms_are_dropped() {
        let rooms = Rooms::default();
        let (outbox, mut inbox) = mpsc::unbounded_channel();
        let first = rooms.join("a", outbox.clone());
        let second = rooms.join("a", outbox);
        assert_ne!(first, second);
        assert_eq!(rooms.count("a"), 2);
        rooms.broadcast("a", Message::text("x"));
        assert_eq!(inbox.try_recv().unwrap(), Message::text("x"));
        assert_eq!(inbox.try_recv().unwrap(), Message::text("x"));
        rooms.leave("a", first);
        assert_eq!(rooms.count("a"), 1);
        rooms.leave("a", second);
        assert!(rooms.lock().is_empty());
        // Leaving twice, or a room that is gone, is harmless.
        rooms.leave("a", second);
        assert_eq!(rooms.count("a"), 0);
    }

    #[test]
    fn truncate_cuts_at_a_char_boundary() {
        let long = "é".repeat(40);
        assert_eq!(truncate(&long, 32), "é".repeat(16));
        assert_eq!(truncate("ab", 32), "ab");
    }
}
