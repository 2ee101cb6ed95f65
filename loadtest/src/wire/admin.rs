//! A minimal blocking HTTP/1.1 client for the server's admin API: the node's
//! processes (`/admin/node`), an object's counters (`/admin/objects/...`),
//! and `POST /admin/reload`.
//!
//! Not an HTTP client: one request per connection (`Connection: close`), body
//! by `Content-Length`, chunks, or end of stream, and a few KiB at most. The
//! admin API needs no more, and a client crate would be most of this binary.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);
/// Admin answers are small JSON documents; more than this is not one.
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// `host:port`, optionally written as `http://host:port[/]`.
pub fn parse_addr(admin: &str) -> Result<SocketAddr, String> {
    let bare = admin.strip_prefix("http://").unwrap_or(admin);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    bare.to_socket_addrs()
        .map_err(|e| format!("admin address {admin:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("admin address {admin:?} resolves to nothing"))
}

/// GETs `path` and returns the body of a 200 answer.
pub fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let (status, body) = request(addr, "GET", path, TIMEOUT)?;
    if status != 200 {
        return Err(format!(
            "admin {addr}{path}: status {status}: {}",
            body.trim()
        ));
    }
    Ok(body)
}

/// POSTs an empty body to `path`, waiting up to `timeout` for the answer
/// (a reload answers when it is over); returns the status and body.
pub fn post(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    request(addr, "POST", path, timeout)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("connect to admin {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("admin {addr}: {e}"))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write to admin {addr}{path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from admin {addr}{path}: {e}"))?;
    parse_response(&raw).map_err(|e| format!("admin {addr}{path}: {e}"))
}

/// The node's processes as `GET /admin/node` lists them. A pid is `None`
/// while that process is not running (a worker that exited when idle).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Node {
    /// Absent on nodes that do not report it.
    pub supervisor_pid: Option<u32>,
    pub edges: Vec<Option<u32>>,
    pub workers: Vec<Option<u32>>,
}

impl Node {
    /// The running edges' pids.
    pub fn edge_pids(&self) -> Vec<u32> {
        self.edges.iter().flatten().copied().collect()
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().flatten().copied().collect()
    }

    pub fn workers_down(&self) -> bool {
        self.workers.iter().all(Option::is_none)
    }
}

/// `GET /admin/node`.
pub fn node(addr: SocketAddr) -> Result<Node, String> {
    parse_node(&get(addr, "/admin/node")?)
}

/// Both shapes: `{"edge_pid", "workers"}` from a node with one edge, and
/// `{"supervisor_pid", "edge_pid", "edges": [{index, pid}], "workers"}` from
/// one with several (where `edges` wins over `edge_pid`).
pub fn parse_node(body: &str) -> Result<Node, String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("/admin/node is not JSON: {e}: {body}"))?;
    let pid = |v: &serde_json::Value| v.as_u64().and_then(|p| u32::try_from(p).ok());
    // `[{"index": i, "pid": p|null}, ...]`, ordered by index.
    let list = |key: &str| -> Result<Option<Vec<Option<u32>>>, String> {
        let Some(items) = json.get(key) else {
            return Ok(None);
        };
        let items = items
            .as_array()
            .ok_or_else(|| format!("/admin/node {key} is not an array: {body}"))?;
        let mut out: Vec<(u64, Option<u32>)> = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            let index = item
                .get("index")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(position as u64);
            let p = match item.get("pid") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => {
                    Some(pid(v).ok_or_else(|| format!("/admin/node {key}: bad pid: {body}"))?)
                }
            };
            out.push((index, p));
        }
        out.sort_by_key(|(index, _)| *index);
        Ok(Some(out.into_iter().map(|(_, p)| p).collect()))
    };
    let edges = match list("edges")? {
        Some(edges) => edges,
        None => vec![Some(json.get("edge_pid").and_then(pid).ok_or_else(
            || format!("/admin/node has neither edges nor a numeric edge_pid: {body}"),
        )?)],
    };
    Ok(Node {
        supervisor_pid: json.get("supervisor_pid").and_then(pid),
        edges,
        workers: list("workers")?.unwrap_or_default(),
    })
}

/// An object's counters as `GET /admin/objects/{class}/{name}` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectUsage {
    pub connections: u64,
    pub active: bool,
    pub wakes: u64,
    pub events: u64,
    pub auto_responses: u64,
}

impl ObjectUsage {
    /// Counters summed (for several rooms); `active` is whether any is.
    pub fn add(&mut self, other: &ObjectUsage) {
        self.connections += other.connections;
        self.active |= other.active;
        self.wakes += other.wakes;
        self.events += other.events;
        self.auto_responses += other.auto_responses;
    }
}

pub fn object_usage(addr: SocketAddr, class: &str, name: &str) -> Result<ObjectUsage, String> {
    let path = format!("/admin/objects/{class}/{name}");
    parse_object_usage(&get(addr, &path)?).map_err(|e| format!("{path}: {e}"))
}

pub fn parse_object_usage(body: &str) -> Result<ObjectUsage, String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not JSON: {e}: {body}"))?;
    let number = |key: &str| {
        json.get(key)
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("no numeric {key}: {body}"))
    };
    Ok(ObjectUsage {
        connections: number("connections")?,
        active: json
            .get("active")
            .and_then(serde_json::Value::as_bool)
            .ok_or_else(|| format!("no boolean active: {body}"))?,
        wakes: number("wakes")?,
        events: number("events")?,
        auto_responses: number("auto_responses")?,
    })
}

/// Splits a whole response into status and body (de-chunked if need be).
fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("response of {} bytes has no end of head", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "response has no status line".to_string())?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = length {
        rest.get(..len)
            .ok_or_else(|| format!("body is {} bytes, content-length {len}", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| "chunk size line has no end".to_string())?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| format!("chunk of {size} bytes cut at {}", rest.len()))?;
        body.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body_is_read() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\n{\"edge_pid\":7}";
        assert_eq!(
            parse_response(raw).unwrap(),
            (200, "{\"edge_pid\":7}".into())
        );
    }

    #[test]
    fn chunked_body_is_joined() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (200, "{\"a\":1}".into()));
    }

    #[test]
    fn status_is_reported() {
        let raw = b"HTTP/1.1 404 Not Found\r\n\r\nno such object";
        assert_eq!(parse_response(raw).unwrap(), (404, "no such object".into()));
    }

    #[test]
    fn node_with_one_edge_uses_edge_pid() {
        let node =
            parse_node(r#"{"edge_pid":7,"workers":[{"index":0,"pid":8},{"index":1,"pid":null}]}"#)
                .unwrap();
        assert_eq!(
            node,
            Node {
                supervisor_pid: None,
                edges: vec![Some(7)],
                workers: vec![Some(8), None],
            }
        );
        assert_eq!(node.worker_pids(), [8]);
        assert!(!node.workers_down());
    }

    #[test]
    fn node_with_several_edges_lists_them_in_index_order() {
        let node = parse_node(
            r#"{"supervisor_pid":1,"edge_pid":null,
                "edges":[{"index":1,"pid":12},{"index":0,"pid":11},{"index":2,"pid":null}],
                "workers":[{"index":0,"pid":null}]}"#,
        )
        .unwrap();
        assert_eq!(node.supervisor_pid, Some(1));
        assert_eq!(node.edges, [Some(11), Some(12), None]);
        assert_eq!(node.edge_pids(), [11, 12]);
        assert!(node.workers_down());
    }

    #[test]
    fn node_without_any_edge_is_an_error() {
        assert!(parse_node(r#"{"workers":[]}"#).is_err());
        assert!(parse_node(r#"{"edges":{"0":1}}"#).is_err());
        assert!(parse_node("nope").is_err());
    }

    #[test]
    fn object_usage_reads_the_counters() {
        let body = r#"{"namespace":"BENCH","class":"Bench","connections":3,"active":false,
            "wakes":2,"events":9,"auto_responses":40,"requests":0}"#;
        let mut usage = parse_object_usage(body).unwrap();
        assert_eq!(
            usage,
            ObjectUsage {
                connections: 3,
                active: false,
                wakes: 2,
                events: 9,
                auto_responses: 40
            }
        );
        usage.add(&ObjectUsage {
            wakes: 1,
            active: true,
            ..ObjectUsage::default()
        });
        assert_eq!((usage.wakes, usage.active), (3, true));
        assert!(parse_object_usage(r#"{"connections":1}"#).is_err());
    }

    #[test]
    fn admin_address_accepts_a_scheme() {
        assert_eq!(
            parse_addr("http://127.0.0.1:9090/").unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        );
        assert!(parse_addr("127.0.0.1").is_err());
    }
}
