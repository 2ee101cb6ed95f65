//! The server side of the RFC 6455 opening handshake (§4.2.1).

use base64::Engine;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode, Version};
use sha1::{Digest, Sha1};

/// A valid upgrade request.
pub(crate) struct Upgrade {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub(crate) accept_key: String,
}

/// A broken upgrade request: the status and why.
pub(crate) type Refusal = (StatusCode, &'static str);

/// `Ok(None)` for a plain request, `Ok(Some)` for a valid upgrade, and the
/// standard refusal for a broken one.
pub(crate) fn check<B>(request: &Request<B>) -> Result<Option<Upgrade>, Refusal> {
    let headers = request.headers();
    if !has_token(headers, hyper::header::UPGRADE, "websocket") {
        return Ok(None);
    }
    if request.method() != Method::GET || request.version() != Version::HTTP_11 {
        return Err((
            StatusCode::BAD_REQUEST,
            "websocket upgrade must be GET over HTTP/1.1",
        ));
    }
    if !has_token(headers, hyper::header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "connection header must contain upgrade",
        ));
    }
    let version = headers.get(hyper::header::SEC_WEBSOCKET_VERSION);
    if version.map(HeaderValue::as_bytes) != Some(b"13") {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "sec-websocket-version must be 13",
        ));
    }
    let Some(key) = headers.get(hyper::header::SEC_WEBSOCKET_KEY) else {
        return Err((StatusCode::BAD_REQUEST, "sec-websocket-key is missing"));
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.as_bytes());
    if decoded.map(|k| k.len()) != Ok(16) {
        return Err((
            StatusCode::BAD_REQUEST,
            "sec-websocket-key must be 16 bytes in base64",
        ));
    }
    Ok(Some(Upgrade {
        accept_key: accept_key(key.as_bytes()),
    }))
}

fn has_token(headers: &HeaderMap, name: hyper::header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
