//! The attacks of many objects, each asked once over keep-alive HTTP:
//! `object-names` (`GET /presence/<run>-<n>`: a Presence room answers from
//! the edge's sockets and never stores) and `counters` (`POST
//! /counter/<run>-<n>`: a new Counter that stores, so a new database file).
//! The connections share one count: each takes the next number until all
//! `--count` are handed out, one request at a time, answer read before the
//! next.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{AttackKind, Ctx};

/// Answers are a head and a short body (a count, `{"online":[]}`).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Request `n` of `kind`.
pub fn request(kind: AttackKind, host: &str, run_id: &str, n: u64) -> Vec<u8> {
    match kind {
        AttackKind::Counters => format!(
            "POST /counter/{run_id}-{n} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
        ),
        // object-names, the only other kind asking here.
        _ => format!("GET /presence/{run_id}-{n} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    }
    .into_bytes()
}

/// A whole answer head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Bytes of the head, blank line included.
    pub head_bytes: usize,
    /// `None`: the body ends when the node closes the connection.
    pub body_bytes: Option<usize>,
    /// The node closes the connection after this answer.
    pub close: bool,
}

/// The answer head at the front of `buf`: `Ok(None)` until it is whole.
pub fn parse_answer(buf: &[u8]) -> Result<Option<Answer>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_ANSWER_BYTES {
            return Err("answer head too large".into());
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = super::held::parse_status(buf).ok_or("not an HTTP/1.1 answer")?;
    lines.next();
    let mut body_bytes = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value
                .parse()
                .map_err(|_| format!("content-length {value:?}"))?;
            if len > MAX_ANSWER_BYTES {
                return Err(format!("answer body of {len} bytes"));
            }
            body_bytes = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Not read here: the routes asked answer with a length.
            return Err("chunked answer".into());
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    // No body, whatever the headers say (RFC 9112 §6.3).
    if status < 200 || status == 204 || status == 304 {
        body_bytes = Some(0);
    }
    Ok(Some(Answer {
        status,
        head_bytes: end + 4,
        body_bytes,
        close: close || body_bytes.is_none(),
    }))
}

/// One keep-alive connection: requests until the count is handed out, the
/// node ends the connection (returning how) or the attack stops.
pub async fn keep_asking(
    ctx: &Ctx,
    mut stream: TcpStream,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let n = ctx.next.get();
        if n >= ctx.opts.count {
            return None;
        }
        ctx.next.set(n + 1);
        let asked = Instant::now();
        let exchange = async {
            let request = request(ctx.kind, &ctx.target.host, &ctx.run_id, n);
            stream
                .write_all(&request)
                .await
                .map_err(|e| format!("write failed: {}", e.kind()))?;
            ctx.counts
                .bytes_sent
                .fetch_add(request.len() as u64, Ordering::Relaxed);
            read_answer(&mut stream, &mut buf).await
        };
        let answer = tokio::select! {
            answer = exchange => answer,
            _ = stop.wait_for(|s| *s) => return None,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(why) => {
                ctx.counts.tally("requests_lost", 1);
                return Some(why);
            }
        };
        ctx.latency.borrow_mut().record(asked.elapsed());
        ctx.counts.ops.fetch_add(1, Ordering::Relaxed);
        if (200..300).contains(&answer.status) {
            ctx.counts.tally("answered_2xx", 1);
        } else {
            ctx.counts.count(format!("answered {}", answer.status));
        }
        if answer.close {
            return Some(format!("answered {}, then closed", answer.status));
        }
    }
}

/// Reads one whole answer (head and body) and leaves in `buf` whatever came
/// after it.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<Answer, String> {
    let answer = loop {
        if let Some(answer) = parse_answer(buf)? {
            break answer;
        }
        read_more(stream, buf).await?;
    };
    let Some(body) = answer.body_bytes else {
        // Until the node closes; only the status matters.
        return Ok(answer);
    };
    let whole = answer.head_bytes + body;
    while buf.len() < whole {
        read_more(stream, buf).await?;
    }
    buf.drain(..whole);
    Ok(answer)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    match stream.read_buf(buf).await {
        Ok(0) => Err("closed by server before an answer".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("read failed: {}", e.kind())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_new_object_each() {
        let get = String::from_utf8(request(AttackKind::ObjectNames, "h:1", "atk1p2", 7)).unwrap();
        assert_eq!(get, "GET /presence/atk1p2-7 HTTP/1.1\r\nHost: h:1\r\n\r\n");
        let post = String::from_utf8(request(AttackKind::Counters, "h:1", "atk1p2", 8)).unwrap();
        assert!(post.starts_with("POST /counter/atk1p2-8 HTTP/1.1\r\n"));
        assert!(post.ends_with("Content-Length: 0\r\n\r\n"));
    }

    #[test]
    fn an_answer_is_whole_once_its_head_is() {
        let text = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 1\r\n\r\n1";
        assert_eq!(parse_answer(&text[..20]), Ok(None));
        assert_eq!(
            parse_answer(text),
            Ok(Some(Answer {
                status: 200,
                head_bytes: text.len() - 1,
                body_bytes: Some(1),
                close: false
            }))
        );
    }

    #[test]
    fn a_closing_or_lengthless_answer_ends_the_connection() {
        let closing =
            b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let answer = parse_answer(closing).unwrap().unwrap();
        assert_eq!((answer.status, answer.close), (429, true));
        let lengthless = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(parse_answer(lengthless).unwrap().unwrap().close);
        let empty = b"HTTP/1.1 204 No Content\r\n\r\n";
        let answer = parse_answer(empty).unwrap().unwrap();
        assert_eq!((answer.body_bytes, answer.close), (Some(0), false));
    }

    #[test]
    fn chunked_huge_or_garbled_answers_are_errors() {
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 99999999\r\n\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
        assert!(parse_answer(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_answer(&[b'a'; MAX_ANSWER_BYTES + 1]).is_err());
    }
}
