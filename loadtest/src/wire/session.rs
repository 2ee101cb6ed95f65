//! One WebSocket that talks: the latency scenarios (`wake`, `alarms`) send
//! text commands to a Bench object and time its replies. Opening goes through
//! [`client::open`]; after that the socket is a tokio stream with one read
//! buffer, which is all a handful of held sockets need.
//!
//! Like the rest of [`client`], it handles unfragmented text frames and a
//! close frame, and nothing else: the Bench protocol needs no more.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::wire::client::{
    self, decode_frame, encode_frame, ClientError, Open, Source, Target, OPCODE_CLOSE, OPCODE_TEXT,
};

/// Replies the latency scenarios wait for are short (`ok`, `x`, `alarm:0`).
const MAX_REPLY_BYTES: u64 = 64 * 1024;
/// A masking key; the server does not care which.
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x08];

/// An open WebSocket to one object.
pub struct Session {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The object path, for error messages.
    path: String,
}

impl Session {
    /// Connects to `path` on `target` from `source` and completes the upgrade.
    pub async fn open(
        target: &Target,
        source: &Source,
        path: &str,
        timeout: Duration,
    ) -> Result<Session, String> {
        let std_stream = client::open(
            target,
            Open {
                source,
                path,
                attach_message: None,
                mask: MASK,
                timeout,
            },
        )
        .await
        .map_err(|e| format!("open {path}: {e}"))?;
        let stream = TcpStream::from_std(std_stream).map_err(|e| format!("open {path}: {e}"))?;
        // Small request/reply messages: do not let Nagle hold any back.
        stream
            .set_nodelay(true)
            .map_err(|e| format!("open {path}: {e}"))?;
        Ok(Session {
            stream,
            buf: Vec::with_capacity(256),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Sends one text message and returns when it is written to the socket.
    pub async fn send(&mut self, text: &[u8]) -> Result<(), String> {
        self.stream
            .write_all(&encode_frame(OPCODE_TEXT, text, MASK))
            .await
            .map_err(|e| format!("{}: write: {e}", self.path))
    }

    /// The next text message and when its last byte was read, or an error
    /// after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Result<(Vec<u8>, Instant), String> {
        match tokio::time::timeout(timeout, self.recv_inner()).await {
            Ok(result) => result.map_err(|e| format!("{}: {e}", self.path)),
            Err(_) => Err(format!(
                "{}: no reply within {} ms",
                self.path,
                timeout.as_millis()
            )),
        }
    }

    async fn recv_inner(&mut self) -> Result<(Vec<u8>, Instant), ClientError> {
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf, MAX_REPLY_BYTES)? {
                let at = Instant::now();
                if frame.opcode == OPCODE_CLOSE {
                    return Err(ClientError::ClosedByServer {
                        code: client::close_code(frame.payload),
                    });
                }
                if frame.opcode != OPCODE_TEXT || !frame.fin {
                    return Err(ClientError::UnexpectedReply {
                        opcode: frame.opcode,
                        len: frame.payload.len(),
                    });
                }
                let text = frame.payload.to_vec();
                self.buf.drain(..used);
                return Ok((text, at));
            }
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|err| ClientError::Io { stage: "read", err })?;
            if read == 0 {
                return Err(ClientError::Eof("read"));
            }
        }
    }

    /// Sends `text` and waits for the reply `want`, returning the round trip.
    pub async fn request(
        &mut self,
        text: &[u8],
        want: &[u8],
        timeout: Duration,
    ) -> Result<Duration, String> {
        let sent = Instant::now();
        self.send(text).await?;
        let (reply, at) = self.recv(timeout).await?;
        if reply != want {
            return Err(format!(
                "{}: reply {:?}, want {:?}",
                self.path,
                String::from_utf8_lossy(&reply[..reply.len().min(64)]),
                String::from_utf8_lossy(want)
            ));
        }
        Ok(at - sent)
    }
}

/// The source the latency scenarios connect from: plain 127.0.0.1, ports
/// counted from a pid-seeded start (see [`Source`]).
pub fn loopback_source() -> Source {
    Source::new(Ipv4Addr::LOCALHOST, std::process::id())
}
