//! The one error type of the SDK.

/// What an SDK call can fail with. Messages carry the numbers involved.
/// New kinds of failure may come in later versions: match with a
/// wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A serialized attachment over the configured limit.
    #[error("attachment is {size} bytes, limit {limit}")]
    AttachmentTooLarge {
        /// Serialized size.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// An auto-response request or response over 2048 bytes.
    #[error("auto-response {which} is {size} bytes, limit {limit}")]
    AutoResponseTooLarge {
        /// `request` or `response`.
        which: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More tags than allowed, or a tag that is too long.
    #[error("{0}")]
    InvalidTags(String),
    /// `accept_websocket` on a request that is not a WebSocket upgrade, or
    /// twice on the same request.
    #[error("request is not a websocket upgrade that can still be accepted")]
    NotAnUpgrade,
    /// The socket has closed (or was never this object's).
    #[error("websocket is closed")]
    WebSocketClosed,
    /// A close code an application may not send.
    #[error("close code {0} is not allowed; use 1000 or 3000-4999")]
    InvalidCloseCode(u16),
    /// A storage call failed: a limit (the message names it), a refused SQL
    /// statement, or the database itself.
    #[error("{0}")]
    Storage(String),
    /// `Env::namespace` with a name the node does not configure.
    #[error("no namespace named {0:?}")]
    UnknownNamespace(String),
    /// `Env::var` or `Env::secret` with a name the node does not configure.
    #[error("no {kind} named {name:?} in the config")]
    UnknownBinding {
        /// `var` or `secret`.
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A string that is not an id of the namespace.
    #[error("{0}")]
    InvalidId(String),
    /// A call into an object whose handler is already waiting further up
    /// this call chain: it would wait for itself forever.
    #[error("call cycle: {0}")]
    CallCycle(String),
    /// An RPC whose method failed (with the status the callee answered),
    /// or a call that could not be made at all (503: no edge to carry it,
    /// or the edge went away). A `Stub::fetch` answered with an error
    /// status is a response, not this.
    #[error("call failed with status {status}: {message}")]
    Call {
        /// The status.
        status: u16,
        /// The body, as text.
        message: String,
    },
    /// A WebSocket event timeout over 7 days.
    #[error("websocket event timeout is {ms} ms, limit {limit_ms}")]
    EventTimeoutTooLong {
        /// The timeout asked for, in milliseconds.
        ms: u128,
        /// The limit, in milliseconds.
        limit_ms: u128,
    },
    /// Serializing or deserializing with serde failed.
    #[error("serialization failed: {0}")]
    Serde(#[from] serde_json::Error),
}

/// Result of SDK calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any error a handler returns; the event fails, the worker lives on.
pub type HandlerError = Box<dyn std::error::Error>;

/// Result of a handler.
pub type HandlerResult<T> = std::result::Result<T, HandlerError>;
