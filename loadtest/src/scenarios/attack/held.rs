//! The attacks that hold connections the front door has not finished with:
//! `stalled-heads`, `stalled-bodies` and `keepalive-idle`. Each connection
//! sends its opening bytes and then waits for the node to end it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{AttackKind, Ctx};

/// Between two bytes of a stalled head.
const DRIP_EVERY: Duration = Duration::from_secs(3);
/// Answers from the node are a status line and a few headers.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// What connection `n` of `kind` sends first.
pub fn opening(kind: AttackKind, host: &str, n: u64) -> Vec<u8> {
    match kind {
        // No blank line: the head never ends. The drip goes on the header
        // begun here.
        AttackKind::StalledHeads => {
            format!("GET /echo/x HTTP/1.1\r\nHost: {host}\r\nX-Stall: ").into_bytes()
        }
        AttackKind::StalledBodies => {
            format!("POST /counter/{n} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 9\r\n\r\n")
                .into_bytes()
        }
        // keepalive-idle, the only other kind held here.
        _ => format!("GET /counter/{n} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n")
            .into_bytes(),
    }
}

/// Sends the attack's bytes and holds the connection until the server ends
/// it (returning how) or the attack stops (`None`).
pub async fn hold(
    ctx: &Ctx,
    mut stream: TcpStream,
    n: u64,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    if let Err(e) = stream
        .write_all(&opening(ctx.kind, &ctx.target.host, n))
        .await
    {
        return Some(format!("write failed: {}", e.kind()));
    }
    let mut buf = Vec::with_capacity(256);
    let mut status: Option<u16> = None;
    let mut drip = tokio::time::interval_at(tokio::time::Instant::now() + DRIP_EVERY, DRIP_EVERY);
    let dripping = ctx.kind == AttackKind::StalledHeads;
    loop {
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) => {
                    return Some(match status {
                        Some(code) => format!("answered {code}, then closed"),
                        None => "closed by server without an answer".into(),
                    });
                }
                Ok(_) => {
                    if status.is_none() {
                        status = parse_status(&buf);
                    }
                    // Only the head matters; keep the buffer small.
                    if buf.len() > MAX_ANSWER_BYTES {
                        buf.clear();
                    }
                }
                Err(e) => {
                    return Some(match status {
                        Some(code) => format!("answered {code}, then {}", e.kind()),
                        None => format!("{} without an answer", e.kind()),
                    });
                }
            },
            _ = drip.tick(), if dripping => {
                if stream.write_all(b"a").await.is_err() {
                    return Some("drip write failed".into());
                }
                ctx.counts.bytes_dripped.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.wait_for(|s| *s) => {
                // Still held at the end: the attack got what it wanted.
                ctx.counts.count(match status {
                    Some(code) => format!("held to the end (answered {code})"),
                    None => "held to the end".into(),
                });
                return None;
            }
        }
    }
}

/// The status of an HTTP/1.1 status line at the front of `buf`, once whole.
pub fn parse_status(buf: &[u8]) -> Option<u16> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let mut words = line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_head_never_ends_and_stalled_body_announces_nine_bytes() {
        let head = opening(AttackKind::StalledHeads, "x", 3);
        assert!(head.starts_with(b"GET /echo/x HTTP/1.1\r\nHost: x\r\n"));
        assert!(!head.windows(4).any(|w| w == b"\r\n\r\n"));
        let body = String::from_utf8(opening(AttackKind::StalledBodies, "x", 7)).unwrap();
        assert!(body.starts_with("POST /counter/7 HTTP/1.1\r\n"));
        assert!(body.contains("Content-Length: 9\r\n"));
        assert!(body.ends_with("\r\n\r\n"));
        let idle = String::from_utf8(opening(AttackKind::KeepaliveIdle, "x", 2)).unwrap();
        assert!(idle.starts_with("GET /counter/2 HTTP/1.1\r\n"));
        assert!(idle.ends_with("\r\n\r\n"));
    }

    #[test]
    fn status_is_read_once_the_line_is_whole() {
        assert_eq!(
            parse_status(b"HTTP/1.1 429 Too Many Requests\r\n"),
            Some(429)
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n"),
            Some(200)
        );
        assert_eq!(parse_status(b"HTTP/1.1 42"), None);
        assert_eq!(parse_status(b"SSH-2.0\r\n"), None);
    }
}
