//! `loadtest create`: new objects per second through the node's HTTP front
//! door. `--connections` keep-alive HTTP/1.1 connections each send a request
//! to a path no request used before (`{n}` in `--path` becomes a name unique
//! to this run, connection and request), waiting for each answer before the
//! next: a closed loop, as an attacker with that many connections would
//! run. Every answer is one object woken for the first time, so the rate of
//! answers is the rate at which the node creates objects. Reported: answers
//! per second by status, and latency (p50, p99, max). Torpor only; one
//! client thread. Not measured: the node's CPU or memory.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::measure::latency::Recorder;
use crate::wire::client::Target;

/// A response head larger than this is not the node's.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A request not answered by then counts as failed and its connection is
/// opened again.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub url: String,
    /// The request path; `{n}` becomes a new name per request.
    pub path: String,
    pub method: String,
    pub connections: usize,
    pub duration: Duration,
    /// Unmeasured closed loop first.
    pub warmup: Duration,
    pub json: Option<PathBuf>,
}

impl CreateOptions {
    pub fn check(&self) -> Result<(), String> {
        if !self.path.starts_with('/') {
            return Err(format!("--path {:?} must start with /", self.path));
        }
        if self.path.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(format!("--path {:?} must not hold whitespace", self.path));
        }
        if self.method.is_empty() || !self.method.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("--method {:?} must be a method", self.method));
        }
        Ok(())
    }
}

/// What one run measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct CreateReport {
    pub path: String,
    pub method: String,
    pub connections: usize,
    pub seconds: f64,
    /// Answers per second in the measured phase, whatever their status.
    pub answers_per_second: f64,
    /// Answers with a 2xx status per second: objects created.
    pub created_per_second: f64,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests without an answer (connection lost, timeout, bad answer).
    pub failed: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
}

impl std::fmt::Display for CreateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "create: {} {} over {} connections, {:.1} s",
            self.method, self.path, self.connections, self.seconds
        )?;
        writeln!(
            f,
            "  new objects/s (2xx): {:.0}   answers/s: {:.0}   failed: {}",
            self.created_per_second, self.answers_per_second, self.failed
        )?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        writeln!(f, "  statuses: {}", statuses.join(", "))?;
        write!(
            f,
            "  latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
            self.latency_p50_ms, self.latency_p99_ms, self.latency_max_ms
        )
    }
}

/// Counts shared by the connections of one run.
#[derive(Default)]
struct Tally {
    measuring: bool,
    statuses: BTreeMap<u16, u64>,
    failed: u64,
    latency: Recorder,
}

pub fn run(opts: &CreateOptions) -> Result<CreateReport, String> {
    opts.check()?;
    let target = Target::parse(&opts.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, drive(opts, target))
}

async fn drive(opts: &CreateOptions, target: Target) -> Result<CreateReport, String> {
    // Names from an earlier run must not be reused: those objects exist.
    let run_tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tally = Rc::new(RefCell::new(Tally::default()));
    let stop = Instant::now() + opts.warmup + opts.duration;
    let mut tasks = Vec::new();
    for conn in 0..opts.connections {
        let prefix = format!("c{run_tag:x}-{conn}-");
        tasks.push(tokio::task::spawn_local(connection(
            target.clone(),
            opts.clone(),
            prefix,
            stop,
            tally.clone(),
        )));
    }
    tokio::time::sleep(opts.warmup).await;
    let measured_from = Instant::now();
    {
        let mut t = tally.borrow_mut();
        *t = Tally::default();
        t.measuring = true;
    }
    tokio::time::sleep(opts.duration).await;
    let seconds = measured_from.elapsed().as_secs_f64();
    let t = std::mem::take(&mut *tally.borrow_mut());
    let latency = t.latency.summary().unwrap_or_default();
    for task in tasks {
        task.abort();
    }
    let answers: u64 = t.statuses.values().sum();
    let created: u64 = t
        .statuses
        .iter()
        .filter(|(status, _)| (200..300).contains(*status))
        .map(|(_, n)| n)
        .sum();
    Ok(CreateReport {
        path: opts.path.clone(),
        method: opts.method.clone(),
        connections: opts.connections,
        seconds,
        answers_per_second: answers as f64 / seconds,
        created_per_second: created as f64 / seconds,
        statuses: t.statuses,
        failed: t.failed,
        latency_p50_ms: latency.p50_ms,
        latency_p99_ms: latency.p99_ms,
        latency_max_ms: latency.max_ms,
    })
}

/// One keep-alive connection in a closed loop until `stop`, opened again
/// whenever the node closes it.
async fn connection(
    target: Target,
    opts: CreateOptions,
    prefix: String,
    stop: Instant,
    tally: Rc<RefCell<Tally>>,
) {
    let mut seq: u64 = 0;
    let mut buf = Vec::with_capacity(4096);
    while Instant::now() < stop {
        let Ok(mut stream) = TcpStream::connect(target.addr).await else {
            tally.borrow_mut().failed += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        buf.clear();
        while Instant::now() < stop {
            seq += 1;
            let path = opts.path.replace("{n}", &format!("{prefix}{seq}"));
            let request = format!(
                "{} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n\r\n",
                opts.method, target.host
            );
            let sent = Instant::now();
            let answer = tokio::time::timeout(
                ANSWER_TIMEOUT,
                exchange(&mut stream, request.as_bytes(), &mut buf),
            )
            .await;
            let mut t = tally.borrow_mut();
            match answer {
                Ok(Ok(answer)) => {
                    if t.measuring {
                        *t.statuses.entry(answer.status).or_default() += 1;
                        t.latency.record(sent.elapsed());
                    }
                    if answer.close {
                        break;
                    }
                }
                _ => {
                    t.failed += u64::from(t.measuring);
                    break;
                }
            }
        }
    }
}

/// The parts of an answer the loop needs.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    /// The node will close the connection after it.
    close: bool,
}

/// Writes one request and reads its whole answer; bytes past it (there are
/// none in a closed loop) stay in `buf`.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Answer, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    loop {
        if let Some((head_len, status, body_len, close)) = parse_head(buf)? {
            let total = head_len + body_len;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            buf.drain(..total);
            return Ok(Answer { status, close });
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err("answer head too large".into());
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// A whole response head at the start of `buf`: (head bytes, status, body
/// bytes, connection: close), or `None` if more is needed. The node always
/// sends a content-length (or no body).
fn parse_head(buf: &[u8]) -> Result<Option<(usize, u16, usize, bool)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "answer head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut body_len = 0;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            body_len = value
                .parse()
                .map_err(|_| format!("bad content-length {value:?}"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked answers are not supported".into());
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Some((end + 4, status, body_len, close)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use tokio::net::TcpListener;

    #[test]
    fn a_head_is_parsed_only_once_whole() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_head(&answer[..20]).unwrap(), None);
        assert_eq!(parse_head(answer).unwrap(), Some((38, 200, 2, false)));
        let closing = b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n\r\n";
        assert_eq!(
            parse_head(closing).unwrap(),
            Some((closing.len(), 429, 0, true))
        );
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }

    /// A server that answers every request 200 and records its path, so the
    /// test can see that every request named a new object.
    #[test]
    fn every_request_names_a_new_object_and_is_counted() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = paths.clone();
        let server = std::thread::spawn(move || {
            runtime.block_on(async move {
                loop {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        loop {
                            let Ok(n) = stream.read(&mut chunk).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                                buf.drain(..end + 4);
                                let path = head.split(' ').nth(1).unwrap().to_owned();
                                seen.lock().unwrap().push(path);
                                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                                if stream.write_all(answer).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                }
            })
        });
        let opts = CreateOptions {
            url: format!("ws://{addr}"),
            path: "/presence/{n}".into(),
            method: "GET".into(),
            connections: 4,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            json: None,
        };
        let report = run(&opts).unwrap();
        assert!(report.created_per_second > 0.0, "{report}");
        assert_eq!(report.failed, 0, "{report}");
        assert_eq!(report.statuses.keys().copied().collect::<Vec<_>>(), [200]);
        let paths = paths.lock().unwrap();
        let unique: HashSet<&String> = paths.iter().collect();
        assert_eq!(unique.len(), paths.len(), "a name was used twice");
        assert!(paths.iter().all(|p| p.starts_with("/presence/c")));
        drop(server);
    }

    #[test]
    fn options_are_checked() {
        let mut opts = CreateOptions {
            url: "ws://127.0.0.1:8787".into(),
            path: "/presence/{n}".into(),
            method: "GET".into(),
            connections: 1,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            json: None,
        };
        assert!(opts.check().is_ok());
        opts.path = "presence".into();
        assert!(opts.check().is_err());
        opts.path = "/a b".into();
        assert!(opts.check().is_err());
        opts.path = "/x".into();
        opts.method = "get\r\n".into();
        assert!(opts.check().is_err());
    }
}
