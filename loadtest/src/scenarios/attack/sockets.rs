//! The attacks of upgraded sockets that write without pause:
//! `ping-flood` (empty pings, never a byte read, with a receive buffer so
//! small that the node's pongs back up at once) and `fast-sender` (large
//! binary frames to an echo object, back to back, the echoes read or not).
//! Each socket is on its own `/echo/<run>-<kind>-<n>` object.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Ctx, CONNECT_TIMEOUT};
use crate::wire::client::{self, encode_frame, HandshakeError};

const OPCODE_BINARY: u8 = 0x2;
const OPCODE_PING: u8 = 0x9;
/// Pings per write: 3 KiB of them, so the flood is the node's work, not
/// this process's syscalls.
const PINGS_PER_WRITE: usize = 512;
/// Any mask will do for a flood; the node unmasks whatever it is.
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x88];
/// Replies are read into this much at a time and dropped.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Upgrades `stream` on `path` and returns the bytes read past the 101's
/// head (already frames), or why the node refused.
pub async fn upgrade(stream: &mut TcpStream, host: &str, path: &str) -> Result<Vec<u8>, String> {
    let handshake = async {
        stream
            .write_all(&client::handshake_request(host, path))
            .await
            .map_err(|e| format!("upgrade write: {}", e.kind()))?;
        let mut buf = Vec::with_capacity(512);
        loop {
            match stream.read_buf(&mut buf).await {
                Ok(0) => return Err("closed during the upgrade".to_string()),
                Ok(_) => {}
                Err(e) => return Err(format!("upgrade read: {}", e.kind())),
            }
            match client::parse_handshake_response(&buf) {
                Ok(Some(end)) => {
                    buf.drain(..end);
                    return Ok(buf);
                }
                Ok(None) => {}
                Err(HandshakeError::Status { code }) => {
                    return Err(format!("upgrade answered {code}"))
                }
                Err(e) => return Err(format!("bad upgrade answer: {e}")),
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err("upgrade timed out".into()))
}

/// `count` empty masked pings, back to back.
pub fn pings(count: usize) -> Vec<u8> {
    encode_frame(OPCODE_PING, b"", MASK).repeat(count)
}

/// One masked binary frame of `bytes` bytes.
pub fn data_frame(bytes: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
    encode_frame(OPCODE_BINARY, &payload, MASK)
}

/// Socket `n` of `ping-flood`: pings until the node ends it or the attack
/// stops. Nothing is ever read, so the pongs stay in the node's queue and
/// this socket's small receive buffer.
pub async fn ping_flood(
    ctx: &Ctx,
    mut stream: TcpStream,
    n: u64,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let path = format!("/echo/{}-flood-{n}", ctx.run_id);
    if let Err(why) = upgrade(&mut stream, &ctx.target.host, &path).await {
        return Some(why);
    }
    let batch = pings(PINGS_PER_WRITE);
    loop {
        tokio::select! {
            written = stream.write_all(&batch) => {
                if let Err(e) = written {
                    return Some(format!("write failed: {}", e.kind()));
                }
                ctx.counts.ops.fetch_add(PINGS_PER_WRITE as u64, Ordering::Relaxed);
                ctx.counts.bytes_sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            _ = stop.wait_for(|s| *s) => {
                ctx.counts.count("held to the end");
                return None;
            }
        }
    }
}

/// Socket `n` of `fast-sender`: one data frame after another, never
/// pausing; with `read_replies`, the echoes are read (and dropped) as they
/// come, on a branch of their own so a write is never cut in half.
pub async fn fast_send(
    ctx: &Ctx,
    mut stream: TcpStream,
    n: u64,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let path = format!("/echo/{}-fast-{n}", ctx.run_id);
    let early = match upgrade(&mut stream, &ctx.target.host, &path).await {
        Ok(early) => early,
        Err(why) => return Some(why),
    };
    ctx.counts
        .bytes_received
        .fetch_add(early.len() as u64, Ordering::Relaxed);
    let frame = data_frame(ctx.opts.frame_bytes);
    let (mut reader, mut writer) = stream.split();
    let mut write_stop = stop.clone();
    let mut read_stop = stop.clone();
    let writing = async {
        loop {
            tokio::select! {
                written = writer.write_all(&frame) => {
                    if let Err(e) = written {
                        return Some(format!("write failed: {}", e.kind()));
                    }
                    ctx.counts.ops.fetch_add(1, Ordering::Relaxed);
                    ctx.counts.bytes_sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
                }
                _ = write_stop.wait_for(|s| *s) => return None,
            }
        }
    };
    let reading = async {
        if !ctx.opts.read_replies {
            let _ = read_stop.wait_for(|s| *s).await;
            return None;
        }
        let mut buf = vec![0u8; READ_CHUNK_BYTES];
        loop {
            tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) => return Some("closed by server".to_string()),
                    Ok(got) => {
                        ctx.counts.bytes_received.fetch_add(got as u64, Ordering::Relaxed);
                    }
                    Err(e) => return Some(format!("read failed: {}", e.kind())),
                },
                _ = read_stop.wait_for(|s| *s) => return None,
            }
        }
    };
    let ended = tokio::select! {
        how = writing => how,
        how = reading => how,
    };
    if ended.is_none() {
        ctx.counts.count("held to the end");
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::client::decode_frame;

    /// Unmasks a client frame the way the node does: header, mask, payload.
    fn unmask(frame: &[u8]) -> (u8, Vec<u8>) {
        let opcode = frame[0] & 0x0f;
        let (len, at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            short => (short as usize, 2),
        };
        let mask = &frame[at..at + 4];
        let payload = frame[at + 4..at + 4 + len]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        (opcode, payload)
    }

    #[test]
    fn a_ping_batch_is_that_many_empty_masked_pings() {
        let batch = pings(3);
        assert_eq!(batch.len(), 3 * 6);
        for ping in batch.chunks(6) {
            assert_eq!(ping[0], 0x80 | OPCODE_PING, "FIN and ping");
            assert_eq!(ping[1], 0x80, "masked, empty");
        }
        // A server frame decoder refuses them: they are masked, as a
        // client's must be.
        assert!(decode_frame(&batch, 0).is_err());
    }

    #[test]
    fn a_data_frame_carries_exactly_its_bytes() {
        for bytes in [1, 125, 126, 65_535, 65_536, 300_000] {
            let frame = data_frame(bytes);
            let (opcode, payload) = unmask(&frame);
            assert_eq!(opcode, OPCODE_BINARY);
            assert_eq!(payload.len(), bytes);
            assert_eq!(payload[bytes - 1], ((bytes - 1) % 251) as u8);
        }
    }
}
