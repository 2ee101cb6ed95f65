//! `RawClient`: a std `TcpStream` that does the upgrade handshake by hand and then writes
//! frames byte by byte (masked or not, any fin/rsv/opcode), to test the edge against
//! malformed input that a real client library refuses to send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::http::{find, http_request_head, read_some, HttpResponse};
use super::NETWORK_TIMEOUT;

/// The RFC 6455 sample key and its accept value (section 1.3).
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A client frame to encode. By default final, no reserved bits, masked.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..RSV3 as the three low bits (`0b100` is RSV1).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            mask: Some([0x37, 0xfa, 0x21, 0x3d]),
            payload: payload.into(),
        }
    }

    pub fn text(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_TEXT, payload)
    }

    pub fn continuation(payload: impl Into<Vec<u8>>) -> Frame {
        Frame::new(OP_CONTINUATION, payload)
    }

    /// A Close frame with a status code and reason.
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Frame::new(OP_CLOSE, payload)
    }

    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv;
        self
    }

    pub fn unmasked(mut self) -> Frame {
        self.mask = None;
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(u8::from(self.fin) << 7 | (self.rsv & 0b111) << 4 | (self.opcode & 0x0f));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        match self.mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(
                    self.payload
                        .iter()
                        .enumerate()
                        .map(|(i, byte)| byte ^ key[i % 4]),
                );
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A frame read from the server.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerFrame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl ServerFrame {
    /// The status code of a Close frame (`None` for an empty Close payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OP_CLOSE, "not a Close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// An upgraded connection driven byte by byte.
pub struct RawClient {
    stream: TcpStream,
    /// Bytes read but not yet consumed.
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects, sends the upgrade request for `path`, and checks the 101 answer.
    pub fn connect(addr: SocketAddr, path: &str) -> RawClient {
        let mut stream = TcpStream::connect_timeout(&addr, NETWORK_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr} failed: {e}"));
        stream.set_read_timeout(Some(NETWORK_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(NETWORK_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .write_all(upgrade_request(addr, path).as_bytes())
            .unwrap();

        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = read_some(&mut stream, &mut chunk)
                .unwrap_or_else(|e| panic!("reading the handshake answer for {path} failed: {e}"));
            assert!(
                n > 0,
                "connection closed during the handshake for {path}; got {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status_line = head.lines().next().unwrap_or("");
        assert!(
            status_line.starts_with("HTTP/1.1 101"),
            "expected 101 for {path}, got {head:?}"
        );
        let accept = head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim().to_owned())
        });
        assert_eq!(
            accept.as_deref(),
            Some(SAMPLE_ACCEPT),
            "wrong Sec-WebSocket-Accept in {head:?}"
        );
        RawClient {
            stream,
            buf: buf[head_end..].to_vec(),
        }
    }

    /// Sends FIN: the client writes nothing more (it may still read).
    pub fn shutdown_write(&mut self) {
        self.stream.shutdown(std::net::Shutdown::Write).unwrap();
    }

    pub fn write_bytes(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("writing {} bytes failed: {e}", bytes.len()));
    }

    /// Writes, and says whether the peer still took it (it may have closed).
    pub fn try_write_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn write_frame(&mut self, frame: &Frame) {
        self.write_bytes(&frame.encode());
    }

    fn fill(&mut self, want: usize) -> bool {
        while self.buf.len() < want {
            let mut chunk = [0u8; 16384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!(
                        "no server frame (or EOF) within {NETWORK_TIMEOUT:?}; {} bytes buffered",
                        self.buf.len()
                    )
                }
                Err(e) => panic!(
                    "reading a server frame failed after {} buffered bytes: {e}",
                    self.buf.len()
                ),
            }
        }
        true
    }

    /// The next frame from the server; `None` on a clean EOF at a frame boundary.
    /// Panics on a timeout, a read error, a truncated frame or a masked server frame.
    pub fn read_frame(&mut self) -> Option<ServerFrame> {
        if !self.fill(2) {
            assert!(
                self.buf.is_empty(),
                "EOF inside a frame header: {:?}",
                self.buf
            );
            return None;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(
            b1 & 0x80,
            0,
            "the server masked a frame (RFC 6455 5.1 forbids it)"
        );
        let (len, header) = match b1 & 0x7f {
            126 => {
                assert!(self.fill(4), "EOF inside a frame header");
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                assert!(self.fill(10), "EOF inside a frame header");
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(len), 10)
            }
            len => (u64::from(len), 2),
        };
        let total = header + usize::try_from(len).unwrap();
        assert!(self.fill(total), "EOF inside a frame payload");
        let payload = self.buf[header..total].to_vec();
        self.buf.drain(..total);
        Some(ServerFrame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0b111,
            opcode: b0 & 0x0f,
            payload,
        })
    }

    /// The next frame, which must exist.
    pub fn expect_frame(&mut self) -> ServerFrame {
        self.read_frame().unwrap_or_else(|| {
            panic!("the server closed the connection instead of sending a frame")
        })
    }

    /// The next message: a control frame as is, or a data message with its fragments joined
    /// (returned with the first fragment's opcode).
    pub fn read_message(&mut self) -> ServerFrame {
        let first = self.expect_frame();
        if first.opcode >= OP_CLOSE || first.fin {
            return first;
        }
        let mut message = first;
        loop {
            let next = self.expect_frame();
            assert_eq!(
                next.opcode, OP_CONTINUATION,
                "expected a continuation frame inside a fragmented message, got {next:?}"
            );
            message.payload.extend_from_slice(&next.payload);
            if next.fin {
                message.fin = true;
                return message;
            }
        }
    }

    /// Reads frames until a Close frame and returns its code; panics on EOF first, on a Close
    /// without a code, or on a timeout. Frames before the Close are shown in the failure.
    pub fn expect_close_code(&mut self) -> u16 {
        let mut before = Vec::new();
        loop {
            match self.read_frame() {
                Some(frame) if frame.opcode == OP_CLOSE => {
                    return frame.close_code().unwrap_or_else(|| {
                        panic!("Close frame without a status code (frames before it: {before:?})")
                    });
                }
                Some(frame) => before.push(frame),
                None => panic!(
                    "the server closed the TCP connection without a Close frame \
                     (frames before the EOF: {before:?})"
                ),
            }
        }
    }

    /// Asserts the server closes the TCP connection (EOF) with no more frames.
    pub fn expect_eof(&mut self) {
        if let Some(frame) = self.read_frame() {
            panic!("expected EOF, got another frame {frame:?}");
        }
    }
}

fn upgrade_request(addr: SocketAddr, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Sends an upgrade request for `path` and returns the answer's head (for paths that must
/// refuse).
pub fn upgrade_response(addr: SocketAddr, path: &str) -> HttpResponse {
    http_request_head(
        addr,
        upgrade_request(addr, path).as_bytes(),
        NETWORK_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("upgrade request for {path} failed: {e}"))
}
