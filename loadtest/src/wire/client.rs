//! The client side of the WebSocket wire, written by hand for the load
//! generator: the HTTP/1.1 upgrade request, the `101` check, masked frames out
//! and unmasked frames in, and [`open`], which does all of it on a socket bound
//! to a chosen source address.
//!
//! This is not a general WebSocket client: no fragmented messages, no
//! extensions, no close handshake. It is lean on purpose. A library client keeps
//! read and write buffers per connection, and at 19000 connections per process
//! that would make the generator, not the server, the thing being measured. Here
//! every buffer lives only during the handshake; an open connection is a bare
//! `std::net::TcpStream`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// `Sec-WebSocket-Key`: any base64 of 16 bytes will do, so we send the RFC 6455
/// sample nonce and can check the answer without a SHA-1 dependency.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` a correct server derives from [`KEY`] (RFC 6455 §1.3).
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A response head larger than this is not a WebSocket upgrade answer.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 8192;
/// The replies we wait for (`ok`, a close frame) are tiny; anything larger is a
/// misbehaving server, and refusing it keeps a buffer from growing unbounded.
pub const MAX_REPLY_PAYLOAD_BYTES: u64 = 64 * 1024;

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_CLOSE: u8 = 0x8;

/// Where the clients connect: the resolved address and the `Host` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
}

impl Target {
    /// Parses `ws://host:port` (an optional trailing `/` is allowed; a path is
    /// not, since each connection picks its own). Only IPv4 is accepted because
    /// the clients bind to 127.0.0.X source addresses.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("url {url:?} must start with ws:// (wss is not supported)"))?;
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() || host.contains('/') {
            return Err(format!("url {url:?} must be ws://host:port with no path"));
        }
        let with_port = if host.contains(':') {
            host.to_string()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {with_port:?}: {e}"))?
            .find(SocketAddr::is_ipv4)
            .ok_or_else(|| format!("{with_port:?} has no IPv4 address"))?;
        Ok(Target {
            addr,
            host: host.to_string(),
        })
    }
}

/// Why the server's answer to the upgrade request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("response head is over {limit} bytes without an end")]
    HeadTooLarge { limit: usize },
    #[error("response does not start with an HTTP/1.1 status line")]
    NotHttp,
    #[error("status {code}, want 101")]
    Status { code: u16 },
    #[error("no sec-websocket-accept header")]
    MissingAccept,
    #[error("sec-websocket-accept is {got:?}, want {ACCEPT:?}")]
    BadAccept { got: String },
}

/// Why a frame from the server could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("server frame is masked")]
    Masked,
    #[error("reserved bits 0x{bits:02x} set without an extension")]
    ReservedBits { bits: u8 },
    #[error("frame payload is {len} bytes, limit {limit}")]
    TooLarge { len: u64, limit: u64 },
}

/// Everything that can go wrong opening one connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bind {source_ip}: {err}")]
    Bind {
        source_ip: IpAddr,
        err: std::io::Error,
    },
    #[error("bind {source_ip}: {tries} ports in a row in use")]
    NoFreePort { source_ip: Ipv4Addr, tries: u32 },
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("io during {stage}: {err}")]
    Io {
        stage: &'static str,
        err: std::io::Error,
    },
    #[error("timed out after {}ms", .0.as_millis())]
    Timeout(Duration),
    #[error("server closed the connection during {0}")]
    Eof(&'static str),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("server sent close {}", .code.map_or("without a code".to_string(), |c| format!("code {c}")))]
    ClosedByServer { code: Option<u16> },
    #[error("unexpected reply: opcode {opcode}, {len} bytes")]
    UnexpectedReply { opcode: u8, len: usize },
}

impl ClientError {
    /// Whether trying again may help: network trouble (a full SYN backlog, a
    /// reset, a slow accept) may; a refusal by the server (503, bad frame) won't.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ClientError::Bind { .. }
                | ClientError::NoFreePort { .. }
                | ClientError::Connect(_)
                | ClientError::Io { .. }
                | ClientError::Timeout(_)
                | ClientError::Eof(_)
        )
    }
}

/// The upgrade request for `path` on `host`.
pub fn handshake_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    )
    .into_bytes()
}

/// Looks for a complete response head in `buf`. `Ok(None)` means read more;
/// `Ok(Some(n))` means the head is valid and its `n` bytes end with the blank
/// line, so anything after `n` is already WebSocket frames.
pub fn parse_handshake_response(buf: &[u8]) -> Result<Option<usize>, HandshakeError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_RESPONSE_HEAD_BYTES {
            return Err(HandshakeError::HeadTooLarge {
                limit: MAX_RESPONSE_HEAD_BYTES,
            });
        }
        return Ok(None);
    };
    if end > MAX_RESPONSE_HEAD_BYTES {
        return Err(HandshakeError::HeadTooLarge {
            limit: MAX_RESPONSE_HEAD_BYTES,
        });
    }
    // Header bytes that are not UTF-8 are not anything we check, so a lossy
    // view is enough.
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next().unwrap_or_default().starts_with("HTTP/1.") {
        return Err(HandshakeError::NotHttp);
    }
    let code: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or(HandshakeError::NotHttp)?;
    if code != 101 {
        return Err(HandshakeError::Status { code });
    }
    let accept = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| value.trim().to_string())
    });
    match accept {
        None => Err(HandshakeError::MissingAccept),
        Some(got) if got != ACCEPT => Err(HandshakeError::BadAccept { got }),
        Some(_) => Ok(Some(end + 4)),
    }
}

/// One frame in a client-to-server direction: FIN set, masked with `mask`
/// (RFC 6455 §5.3 requires every client frame to be masked).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        // Fits in the 7-bit length; the cast cannot truncate.
        out.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(
        payload
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, key)| byte ^ key),
    );
    out
}

/// A decoded server frame, borrowing its payload from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub fin: bool,
    pub opcode: u8,
    pub payload: &'a [u8],
}

/// Decodes one server-to-client frame from the front of `buf`. `Ok(None)`
/// means more bytes are needed; `Ok(Some((frame, n)))` consumed `n` bytes.
/// Server frames must not be masked (RFC 6455 §5.1).
pub fn decode_frame(
    buf: &[u8],
    max_payload: u64,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(None);
    };
    let reserved = b0 & 0x70;
    if reserved != 0 {
        return Err(FrameError::ReservedBits { bits: reserved });
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let (len, header) = match b1 & 0x7f {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(bytes) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(bytes);
                (u64::from_be_bytes(be), 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if len > max_payload {
        return Err(FrameError::TooLarge {
            len,
            limit: max_payload,
        });
    }
    // `len <= max_payload`, which is far below usize::MAX on any target we run.
    let total = header + len as usize;
    let Some(payload) = buf.get(header..total) else {
        return Ok(None);
    };
    Ok(Some((
        Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0f,
            payload,
        },
        total,
    )))
}

/// The status code of a close frame's payload, if it carries one.
pub fn close_code(payload: &[u8]) -> Option<u16> {
    match payload {
        [hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
}

/// A source address and the ports handed out on it.
///
/// Ports are picked here, not by the kernel: `bind(ip, 0)` scans for a free
/// port on every call and prefers half the ephemeral range, so past ~14000
/// sockets on one address each bind scans thousands of ports (measured: 19000
/// connections took 60 s from one address, 3 s spread over four). A counter
/// costs one syscall per port, and one already taken (a listener, a
/// TIME_WAIT left by an earlier run) just fails its bind and is skipped.
///
/// The counter walks 10000..=65535 *minus the kernel's ephemeral range*
/// (`ip_local_port_range`): a port number bound explicitly on any address is
/// one the kernel will not pick for an ordinary `connect()` on any other, so
/// 100,000 client sockets inside that range leave every other program on the
/// machine (the admin calls here, other people's tests) without ports.
#[derive(Debug)]
pub struct Source {
    pub ip: Ipv4Addr,
    next: AtomicU32,
    /// Inclusive port ranges, ascending, and their total size.
    ranges: Vec<(u16, u16)>,
    total: u32,
}

impl Source {
    pub const FIRST_PORT: u16 = 10_000;
    /// Ports tried for one connection before giving up (then it is retried
    /// after a backoff like any transient failure).
    pub const MAX_BIND_TRIES: u32 = 4096;
    /// Fewer ports than this outside the ephemeral range (a machine that made
    /// it huge), and the whole of 10000..=65535 is used after all.
    const MIN_PORTS: u32 = 20_000;

    /// `seed` picks where in the range counting starts, so that consecutive
    /// runs (seeded by pid) do not all walk into the previous run's TIME_WAIT ports.
    pub fn new(ip: Ipv4Addr, seed: u32) -> Source {
        Source::with_ranges(ip, seed, client_port_ranges())
    }

    fn with_ranges(ip: Ipv4Addr, seed: u32, ranges: Vec<(u16, u16)>) -> Source {
        let size = |r: &[(u16, u16)]| -> u32 {
            r.iter()
                .map(|(lo, hi)| u32::from(*hi) - u32::from(*lo) + 1)
                .sum()
        };
        let ranges = if size(&ranges) >= Self::MIN_PORTS {
            ranges
        } else {
            vec![(Self::FIRST_PORT, u16::MAX)]
        };
        let total = size(&ranges);
        Source {
            ip,
            next: AtomicU32::new(seed % total),
            ranges,
            total,
        }
    }

    pub fn next_port(&self) -> u16 {
        let mut n = self.next.fetch_add(1, Ordering::Relaxed) % self.total;
        for (lo, hi) in &self.ranges {
            let len = u32::from(*hi) - u32::from(*lo) + 1;
            if n < len {
                // n < len, so lo + n is at most hi.
                return lo + n as u16;
            }
            n -= len;
        }
        // n < total, the sum of the lengths, so the loop always returns.
        Self::FIRST_PORT
    }
}

/// 10000..=65535 without the ephemeral range this machine's kernel uses.
pub fn client_port_ranges() -> Vec<(u16, u16)> {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut words = text.split_whitespace().map(str::parse::<u16>);
            Some((words.next()?.ok()?, words.next()?.ok()?))
        });
    match ephemeral {
        Some((lo, hi)) if lo <= hi => without(Source::FIRST_PORT, u16::MAX, lo, hi),
        _ => vec![(Source::FIRST_PORT, u16::MAX)],
    }
}

/// `first..=last` minus `lo..=hi`.
fn without(first: u16, last: u16, lo: u16, hi: u16) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    if lo > first {
        out.push((first, last.min(lo - 1)));
    }
    if hi < last {
        out.push((first.max(hi + 1), last));
    }
    out.retain(|(a, b)| a <= b);
    out
}

/// What one connection does once upgraded.
#[derive(Debug, Clone, Copy)]
pub struct Open<'a> {
    /// The client socket is bound to the next port of this source before connecting.
    pub source: &'a Source,
    pub path: &'a str,
    /// If set, sent as one text frame whose reply must be the text `ok`.
    pub attach_message: Option<&'a [u8]>,
    pub mask: [u8; 4],
    pub timeout: Duration,
}

/// Connects, upgrades and (optionally) sets the attachment, all within
/// `open.timeout`. Returns the bare socket: nothing of this connection stays
/// in memory but the file descriptor.
pub async fn open(target: &Target, open: Open<'_>) -> Result<std::net::TcpStream, ClientError> {
    let stream = open_stream(target, open).await?;
    // Closed with a reset, not a FIN: whoever closes first keeps the
    // connection in TIME_WAIT for a minute, and here that would be the
    // client's explicitly bound port, so the next target or run would find
    // tens of thousands of its ports taken. The measurement is over by then.
    stream.set_zero_linger().map_err(|err| ClientError::Io {
        stage: "linger",
        err,
    })?;
    // Leaving the runtime's reactor: the connection is never read again, so an
    // epoll registration per connection would be pure overhead.
    stream.into_std().map_err(|err| ClientError::Io {
        stage: "release",
        err,
    })
}

/// Like [`open`], but the socket stays a tokio stream, for a caller that
/// goes on talking on it at once and closes it cleanly itself (churn).
pub async fn open_stream(target: &Target, open: Open<'_>) -> Result<TcpStream, ClientError> {
    tokio::time::timeout(open.timeout, upgrade(target, open))
        .await
        .map_err(|_| ClientError::Timeout(open.timeout))?
}

/// A socket bound to the next free port of `source`.
pub fn bind(source: &Source) -> Result<TcpSocket, ClientError> {
    let bind_err = |err| ClientError::Bind {
        source_ip: IpAddr::V4(source.ip),
        err,
    };
    // No SO_REUSEADDR: we want a port in TIME_WAIT to fail the bind and be
    // skipped, rather than fail later at connect.
    let socket = TcpSocket::new_v4().map_err(bind_err)?;
    for _ in 0..Source::MAX_BIND_TRIES {
        let addr = SocketAddr::new(IpAddr::V4(source.ip), source.next_port());
        match socket.bind(addr) {
            Ok(()) => return Ok(socket),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(bind_err(e)),
        }
    }
    Err(ClientError::NoFreePort {
        source_ip: source.ip,
        tries: Source::MAX_BIND_TRIES,
    })
}

async fn upgrade(target: &Target, open: Open<'_>) -> Result<TcpStream, ClientError> {
    let socket = bind(open.source)?;
    let mut stream = socket
        .connect(target.addr)
        .await
        .map_err(ClientError::Connect)?;
    let io = |stage| move |err| ClientError::Io { stage, err };
    stream
        .write_all(&handshake_request(&target.host, open.path))
        .await
        .map_err(io("handshake write"))?;

    let mut buf = Vec::with_capacity(512);
    let head_end = loop {
        if stream
            .read_buf(&mut buf)
            .await
            .map_err(io("handshake read"))?
            == 0
        {
            return Err(ClientError::Eof("handshake"));
        }
        if let Some(end) = parse_handshake_response(&buf)? {
            break end;
        }
    };
    buf.drain(..head_end);

    let Some(message) = open.attach_message else {
        return Ok(stream);
    };
    stream
        .write_all(&encode_frame(OPCODE_TEXT, message, open.mask))
        .await
        .map_err(io("attach write"))?;
    loop {
        if let Some((frame, _)) = decode_frame(&buf, MAX_REPLY_PAYLOAD_BYTES)? {
            if frame.opcode == OPCODE_TEXT && frame.fin && frame.payload == b"ok" {
                return Ok(stream);
            }
            if frame.opcode == OPCODE_CLOSE {
                return Err(ClientError::ClosedByServer {
                    code: close_code(frame.payload),
                });
            }
            return Err(ClientError::UnexpectedReply {
                opcode: frame.opcode,
                len: frame.payload.len(),
            });
        }
        if stream.read_buf(&mut buf).await.map_err(io("attach read"))? == 0 {
            return Err(ClientError::Eof("attach"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn unmask(frame: &[u8], header: usize) -> Vec<u8> {
        let mask = &frame[header - 4..header];
        frame[header..]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect()
    }

    #[test]
    fn short_frame_matches_rfc_example() {
        // RFC 6455 §5.7: a masked "Hello".
        let frame = encode_frame(OPCODE_TEXT, b"Hello", MASK);
        assert_eq!(
            frame,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn medium_frame_uses_two_byte_length() {
        let payload = vec![b'a'; 2006];
        let frame = encode_frame(OPCODE_TEXT, &payload, MASK);
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([frame[2], frame[3]]), 2006);
        assert_eq!(frame.len(), 2 + 2 + 4 + 2006);
        assert_eq!(unmask(&frame, 8), payload);
    }

    #[test]
    fn large_frame_uses_eight_byte_length() {
        let payload = vec![7u8; 70_000];
        let frame = encode_frame(0x2, &payload, MASK);
        assert_eq!(frame[1], 0x80 | 127);
        assert_eq!(u64::from_be_bytes(frame[2..10].try_into().unwrap()), 70_000);
        assert_eq!(unmask(&frame, 14), payload);
    }

    #[test]
    fn boundary_lengths_pick_the_smallest_encoding() {
        assert_eq!(encode_frame(1, &[0; 125], MASK)[1], 0x80 | 125);
        assert_eq!(encode_frame(1, &[0; 126], MASK)[1], 0x80 | 126);
        assert_eq!(encode_frame(1, &vec![0; 65_535], MASK)[1], 0x80 | 126);
        assert_eq!(encode_frame(1, &vec![0; 65_536], MASK)[1], 0x80 | 127);
    }

    #[test]
    fn unmasked_short_frame_decodes() {
        let buf = [0x81, 0x02, b'o', b'k', 0xff];
        let (frame, used) = decode_frame(&buf, 1024).unwrap().unwrap();
        assert_eq!(used, 4);
        assert_eq!(
            frame,
            Frame {
                fin: true,
                opcode: OPCODE_TEXT,
                payload: b"ok"
            }
        );
    }

    #[test]
    fn extended_lengths_decode() {
        let mut buf = vec![0x82, 126, 0x01, 0x00];
        buf.extend(vec![9u8; 256]);
        let (frame, used) = decode_frame(&buf, 1024).unwrap().unwrap();
        assert_eq!((frame.opcode, frame.payload.len(), used), (2, 256, 260));

        let mut buf = vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        buf.extend(vec![1u8; 65_536]);
        let (frame, used) = decode_frame(&buf, 1 << 20).unwrap().unwrap();
        assert_eq!((frame.payload.len(), used), (65_536, 65_546));
    }

    #[test]
    fn partial_frames_ask_for_more_at_every_split() {
        let mut full = vec![0x81, 126, 0x00, 0x80];
        full.extend(vec![b'x'; 128]);
        for cut in 0..full.len() {
            assert_eq!(decode_frame(&full[..cut], 1024), Ok(None), "cut at {cut}");
        }
        assert!(decode_frame(&full, 1024).unwrap().is_some());
    }

    #[test]
    fn masked_or_reserved_or_oversized_server_frames_are_refused() {
        assert_eq!(
            decode_frame(&[0x81, 0x82, 1, 2, 3, 4, 0, 0], 1024),
            Err(FrameError::Masked)
        );
        assert_eq!(
            decode_frame(&[0xc1, 0x00], 1024),
            Err(FrameError::ReservedBits { bits: 0x40 })
        );
        assert_eq!(
            decode_frame(&[0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0], 1024),
            Err(FrameError::TooLarge {
                len: 0xff00_0000_0000_0000,
                limit: 1024
            })
        );
    }

    #[test]
    fn close_frame_decodes_with_its_code() {
        let buf = [0x88, 0x02, 0x03, 0xe8];
        let (frame, _) = decode_frame(&buf, 1024).unwrap().unwrap();
        assert_eq!(frame.opcode, OPCODE_CLOSE);
        assert_eq!(close_code(frame.payload), Some(1000));
        assert_eq!(close_code(&[]), None);
    }

    #[test]
    fn handshake_request_is_a_websocket_upgrade() {
        let req = String::from_utf8(handshake_request("127.0.0.1:8787", "/bench/idle-3")).unwrap();
        assert!(req.starts_with("GET /bench/idle-3 HTTP/1.1\r\n"));
        assert!(req.contains("\r\nHost: 127.0.0.1:8787\r\n"));
        assert!(req.contains("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }

    #[test]
    fn switching_protocols_response_is_accepted_with_trailing_frames() {
        let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSEC-WEBSOCKET-ACCEPT:  s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02ok";
        let end = parse_handshake_response(resp).unwrap().unwrap();
        assert_eq!(&resp[end..], b"\x81\x02ok");
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        assert_eq!(
            parse_handshake_response(b"HTTP/1.1 101 Switching Protocols\r\n"),
            Ok(None)
        );
    }

    #[test]
    fn non_101_or_wrong_accept_is_refused() {
        assert_eq!(
            parse_handshake_response(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
            ),
            Err(HandshakeError::Status { code: 503 })
        );
        assert_eq!(
            parse_handshake_response(b"HTTP/1.1 101 OK\r\n\r\n"),
            Err(HandshakeError::MissingAccept)
        );
        assert_eq!(
            parse_handshake_response(b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n"),
            Err(HandshakeError::BadAccept { got: "nope".into() })
        );
        assert_eq!(
            parse_handshake_response(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(HandshakeError::NotHttp)
        );
        let endless = vec![b'x'; MAX_RESPONSE_HEAD_BYTES + 1];
        assert_eq!(
            parse_handshake_response(&endless),
            Err(HandshakeError::HeadTooLarge {
                limit: MAX_RESPONSE_HEAD_BYTES
            })
        );
    }

    #[test]
    fn source_ports_cycle_through_the_ranges() {
        let source = Source::with_ranges(
            Ipv4Addr::LOCALHOST,
            22_767,
            vec![(10_000, 32_767), (61_000, 65_535)],
        );
        assert_eq!(source.total, 22_768 + 4_536);
        assert_eq!(source.next_port(), 32_767);
        assert_eq!(source.next_port(), 61_000);
        assert_eq!(source.next_port(), 61_001);
        let wrap = Source::with_ranges(
            Ipv4Addr::LOCALHOST,
            27_303,
            vec![(10_000, 32_767), (61_000, 65_535)],
        );
        assert_eq!(wrap.next_port(), 65_535);
        assert_eq!(wrap.next_port(), 10_000);
    }

    #[test]
    fn the_ephemeral_range_is_left_to_the_kernel() {
        assert_eq!(
            without(10_000, 65_535, 32_768, 60_999),
            [(10_000, 32_767), (61_000, 65_535)]
        );
        assert_eq!(without(10_000, 65_535, 1_024, 65_535), []);
        assert_eq!(without(10_000, 65_535, 40_000, 65_535), [(10_000, 39_999)]);
        // Too few ports left: the whole range after all.
        let source = Source::with_ranges(
            Ipv4Addr::LOCALHOST,
            0,
            without(10_000, 65_535, 1_024, 60_000),
        );
        assert_eq!(source.total, 65_535 - 10_000 + 1);
        // On this machine, whatever its range, no port handed out is in it.
        let ranges = client_port_ranges();
        let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
        let bounds: Vec<u16> = text
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        for (lo, hi) in ranges {
            assert!(
                hi < bounds[0] || lo > bounds[1],
                "{lo}..={hi} overlaps {bounds:?}"
            );
        }
    }

    #[test]
    fn bind_skips_a_port_in_use() {
        let ip = Ipv4Addr::new(127, 0, 0, 77);
        let first = bind(&Source::new(ip, 100)).unwrap();
        let taken = first.local_addr().unwrap().port();
        // A second counter starting at the same place must step over it.
        let second = bind(&Source::new(ip, 100)).unwrap();
        assert!(second.local_addr().unwrap().port() > taken);
    }

    #[test]
    fn target_parses_ws_urls() {
        let t = Target::parse("ws://127.0.0.1:8787").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8787".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8787");
        assert_eq!(
            Target::parse("ws://127.0.0.1:9/").unwrap().host,
            "127.0.0.1:9"
        );
        assert!(Target::parse("wss://127.0.0.1:8787").is_err());
        assert!(Target::parse("ws://127.0.0.1:8787/bench/x").is_err());
        assert!(Target::parse("http://127.0.0.1:8787").is_err());
    }
}
