//! HTTP requests to objects and their responses.

use crate::websocket::WebSocketId;
use bytes::Bytes;

/// An HTTP request routed to an object.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    uri: String,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
    upgrade: Option<WebSocketId>,
}

impl Request {
    #[doc(hidden)]
    pub fn from_parts(
        method: String,
        uri: String,
        headers: Vec<(String, Bytes)>,
        body: Bytes,
        upgrade: Option<WebSocketId>,
    ) -> Request {
        Request {
            method,
            uri,
            headers,
            body,
            upgrade,
        }
    }

    /// A request to send to another object with
    /// [`Stub::fetch`](crate::Stub::fetch).
    pub fn new(method: &str, uri: &str) -> Request {
        Request::from_parts(
            method.to_owned(),
            uri.to_owned(),
            Vec::new(),
            Bytes::new(),
            None,
        )
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((
            name.to_ascii_lowercase(),
            Bytes::copy_from_slice(value.as_bytes()),
        ));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Request {
        self.body = body.into();
        self
    }

    /// HTTP method, e.g. `GET`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// Path and query, e.g. `/rooms/lobby?name=ada`.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split_once('?').map_or(&self.uri, |(path, _)| path)
    }

    /// The first value of a header, by case-insensitive name, if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// All headers, names in lowercase.
    pub fn headers(&self) -> &[(String, Bytes)] {
        &self.headers
    }

    /// The request body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params(name).into_iter().next()
    }

    /// Every value of a query parameter, in order, percent-decoded.
    pub fn query_params(&self, name: &str) -> Vec<String> {
        let Some((_, query)) = self.uri.split_once('?') else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key) == name).then(|| percent_decode(value))
            })
            .collect()
    }

    /// Whether this is a WebSocket upgrade the object may accept with
    /// [`State::accept_websocket`](crate::State::accept_websocket).
    pub fn is_websocket_upgrade(&self) -> bool {
        self.upgrade.is_some()
    }

    #[doc(hidden)]
    pub fn upgrade_id(&self) -> Option<WebSocketId> {
        self.upgrade
    }
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are and
/// invalid UTF-8 is replaced, since a query is client input.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP response from an object.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names and values.
    pub headers: Vec<(String, Bytes)>,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// A response with a status and an empty body.
    pub fn status(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Response {
        Response::status(200)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// 200 with a JSON body.
    pub fn json<T: serde::Serialize>(value: &T) -> crate::Result<Response> {
        Ok(Response::status(200)
            .with_header("content-type", "application/json")
            .with_body(serde_json::to_vec(value)?))
    }

    /// A status with a plain-text message, e.g. `Response::error(400, "name missing")`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        Response {
            status,
            ..Response::text(message)
        }
    }

    /// The answer to an upgrade accepted with
    /// [`State::accept_websocket`](crate::State::accept_websocket).
    pub fn switching_protocols() -> Response {
        Response::status(101)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((
            name.to_ascii_lowercase(),
            Bytes::copy_from_slice(value.as_bytes()),
        ));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Response {
        self.body = body.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str) -> Request {
        Request::from_parts("GET".into(), uri.into(), Vec::new(), Bytes::new(), None)
    }

    #[test]
    fn query_params_are_decoded_and_repeatable() {
        let req = request("/bench/x?tag=red&tag=blue%20sky&name=a+b&bad=%zz&end=%4");
        assert_eq!(req.query_params("tag"), vec!["red", "blue sky"]);
        assert_eq!(req.query_param("name").as_deref(), Some("a b"));
        assert_eq!(req.query_param("bad").as_deref(), Some("%zz"));
        assert_eq!(req.query_param("end").as_deref(), Some("%4"));
        assert_eq!(req.query_param("missing"), None);
        assert_eq!(req.path(), "/bench/x");
    }
}
