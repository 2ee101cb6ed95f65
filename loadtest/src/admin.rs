//! A minimal blocking HTTP/1.1 GET for the server's admin API: the edge pid
//! (`/admin/node`) and an object's socket count (`/admin/objects/...`).
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
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("connect to admin {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("admin {addr}: {e}"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write to admin {addr}{path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .map_err(|e| format!("read from admin {addr}{path}: {e}"))?;
    let (status, body) = parse_response(&raw).map_err(|e| format!("admin {addr}{path}: {e}"))?;
    if status != 200 {
        return Err(format!(
            "admin {addr}{path}: status {status}: {}",
            body.trim()
        ));
    }
    Ok(body)
}

/// The edge process's pid from `GET /admin/node`.
pub fn edge_pid(addr: SocketAddr) -> Result<u32, String> {
    let body = get(addr, "/admin/node")?;
    let node: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("/admin/node is not JSON: {e}: {body}"))?;
    node.get("edge_pid")
        .and_then(serde_json::Value::as_u64)
        .and_then(|pid| u32::try_from(pid).ok())
        .ok_or_else(|| format!("/admin/node has no numeric edge_pid: {body}"))
}

/// The `connections` count of one object, from `GET /admin/objects/{class}/{name}`.
pub fn object_connections(addr: SocketAddr, class: &str, name: &str) -> Result<u64, String> {
    let path = format!("/admin/objects/{class}/{name}");
    let body = get(addr, &path)?;
    let object: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{path} is not JSON: {e}"))?;
    object
        .get("connections")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("{path} has no numeric connections: {body}"))
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
    fn admin_address_accepts_a_scheme() {
        assert_eq!(
            parse_addr("http://127.0.0.1:9090/").unwrap(),
            "127.0.0.1:9090".parse().unwrap()
        );
        assert!(parse_addr("127.0.0.1").is_err());
    }
}
