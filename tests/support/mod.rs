//! The integration-test harness: a `torpor` node under a kill-on-drop guard, bounded polling,
//! a WebSocket client with timeouts, and a raw-bytes client for malformed input.

// Each test module uses a different part of the harness.
#![allow(dead_code)]

mod deploy;
mod eventually;
mod http;
mod node;
mod raw;
mod ws;

use std::time::Duration;

pub use deploy::Deploy;
pub(crate) use eventually::assert_eventually;
pub use http::{http_get, http_request, http_request_head, HttpResponse};
pub use node::{peak_rss_kib, wait_for_exit, Node, NodeBuilder};
pub use raw::{upgrade_response, Frame, RawClient, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
pub use ws::{echo_until, Client};

/// Longest wait for one expected network event (a reply, a close frame).
pub const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);

/// A name no other test uses, so objects never collide even on a shared node.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
