//! A tiny blocking HTTP/1.1 client for the admin API and for raw requests: one request per
//! connection (`Connection: close`), status and body parsed, every read and write bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The head (status line and headers) as text.
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The value of a header (case-insensitive name), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }
}

/// `GET path` on `addr` with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<HttpResponse> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n");
    http_request(addr, request.as_bytes(), timeout)
}

/// Sends raw request bytes and reads the response up to the end of its body (by
/// Content-Length, chunked encoding, or EOF).
pub fn http_request(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    read_response(&mut stream, false)
}

/// Sends raw request bytes and returns the status and head only (the body, if any, is not
/// waited for): for answers whose connection may stay open.
pub fn http_request_head(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    read_response(&mut stream, true)
}

/// Reads one response from `stream`: head first, then (unless `head_only`) the body as its
/// headers describe.
fn read_response(stream: &mut TcpStream, head_only: bool) -> std::io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(pos) = find(&buf, b"\r\n\r\n") {
            break pos + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = read_some(stream, &mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed before the end of the response head; got {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line in {head:?}"),
            )
        })?;
    let mut response = HttpResponse {
        status,
        head,
        body: buf[head_end..].to_vec(),
    };
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    if head_only || status == 101 || status == 204 || status == 304 {
        return Ok(response);
    }
    if let Some(length) = length.filter(|_| !chunked) {
        while response.body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = read_some(stream, &mut chunk)?;
            if n == 0 {
                break;
            }
            response.body.extend_from_slice(&chunk[..n]);
        }
        response.body.truncate(length);
        return Ok(response);
    }
    // Chunked or close-delimited: read to EOF (we sent `Connection: close`), then decode.
    stream.read_to_end(&mut response.body)?;
    if chunked {
        response.body = dechunk(&response.body)?;
    }
    Ok(response)
}

fn dechunk(mut raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut out = Vec::new();
    loop {
        let line_end = find(raw, b"\r\n").ok_or_else(|| bad("chunk size line"))?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| bad("chunk size"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size + 2 {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// `read`, again when a signal interrupted it: a CI run once failed
/// `protocol::unmasked_client_frame_is_closed_with_1002` on EINTR.
pub(crate) fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
