//! Every refusal the front door sends, in one place, counted by status.

use super::Reply;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

pub(crate) fn reject(status: StatusCode, message: &str) -> Reply {
    metrics::counter!(crate::metrics::HTTP_REJECTS, "status" => status.as_str().to_owned())
        .increment(1);
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        // Overload and shutdown pass: tell clients to come back soon rather
        // than at once, or never.
        headers.insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    if status == StatusCode::UPGRADE_REQUIRED {
        // RFC 6455 §4.4: tell the client which version we speak.
        headers.insert(
            hyper::header::SEC_WEBSOCKET_VERSION,
            hyper::header::HeaderValue::from_static("13"),
        );
    }
    response
}
