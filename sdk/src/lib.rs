//! The object author's API for Torpor: the [`DurableObject`] trait and the
//! [`State`], [`WebSocket`], [`Request`] and [`Response`] it works with.
//!
//! Names follow Cloudflare Durable Objects so that its users feel at home. An
//! object runs one event at a time; between events it may be hibernated, in
//! which case its sockets, their tags and attachments, and its auto-response
//! stay in the edge and `new` runs again on the next event.
//!
//! This crate is the stable surface; the runtime lives in `torpor-objects`.
#![warn(missing_docs, unreachable_pub)]

mod env;
mod error;
mod http;
mod object;
mod state;
mod storage;
mod websocket;

#[doc(hidden)]
pub mod host;

pub use env::{Env, Namespace, ObjectId, Stub};
pub use error::{Error, HandlerError, HandlerResult, Result};
pub use http::{Request, Response};
pub use object::{AlarmInfo, DurableObject};
pub use state::{
    AutoResponse, State, MAX_AUTO_RESPONSE_BYTES, MAX_TAGS, MAX_TAG_BYTES,
    MAX_WEBSOCKET_EVENT_TIMEOUT,
};
pub use storage::{Cursor, ListOptions, Sql, SqlValue, Storage, StorageBackend};
pub use websocket::{Message, WebSocket, WebSocketId};
