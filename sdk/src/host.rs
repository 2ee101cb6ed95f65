//! The seam between the SDK and the runtime that carries its calls out
//! (`torpor-objects`). Not for object authors; it may change at any time.

use crate::{AutoResponse, Message, Request, Response, Result, StorageBackend, WebSocketId};
use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// The answer to a call, on the worker's single-threaded executor.
pub type CallFuture = Pin<Box<dyn Future<Output = Result<Response>>>>;

/// The unwind payload of [`State::abort`](crate::State::abort): the
/// runtime catches it at the handler boundary and resets the object,
/// logging the reason, instead of reporting a panic.
#[derive(Debug)]
pub struct Abort {
    /// Why the object aborted.
    pub reason: String,
}

/// What a live object can ask of the node. Calls never block: commands to
/// the edge are queued and leave in order after the current event.
pub trait Host {
    /// The object's class.
    fn class(&self) -> &str;
    /// The object's namespace.
    fn namespace(&self) -> &str;
    /// The object's id, 64 hex characters.
    fn id(&self) -> &str;
    /// The name the id was derived from, if it was.
    fn name(&self) -> Option<&str>;
    /// Accepts the upgrade reserved as `id`, with tags.
    fn accept(&self, id: WebSocketId, tags: Vec<String>) -> Result<()>;
    /// Sockets of the object, all or those with `tag`.
    fn websockets(&self, tag: Option<&str>) -> Vec<WebSocketId>;
    /// Tags of a socket.
    fn tags(&self, id: WebSocketId) -> Result<Vec<String>>;
    /// Queues a message to one socket.
    fn send(&self, id: WebSocketId, message: Message) -> Result<()>;
    /// Closes one socket.
    fn close(&self, id: WebSocketId, code: u16, reason: &str) -> Result<()>;
    /// Queues a message to every socket (with `tag`), except one.
    fn broadcast(&self, message: Message, tag: Option<&str>, except: Option<WebSocketId>);
    /// The serialized attachment of a socket.
    fn attachment(&self, id: WebSocketId) -> Result<Option<Bytes>>;
    /// Replaces the serialized attachment of a socket.
    fn set_attachment(&self, id: WebSocketId, attachment: Option<Bytes>) -> Result<()>;
    /// Largest serialized attachment.
    fn max_attachment_bytes(&self) -> usize;
    /// Sets or clears the auto-response pair.
    fn set_auto_response(&self, pair: Option<AutoResponse>);
    /// The auto-response pair.
    fn auto_response(&self) -> Option<AutoResponse>;
    /// The object's storage, opened on first use in an event.
    fn storage(&self) -> Result<&dyn StorageBackend>;
    /// Sets (`None`: unsets) the longest a WebSocket handler of the object
    /// may run, already checked against the limit.
    fn set_websocket_event_timeout(&self, timeout: Option<Duration>);
    /// The WebSocket handler timeout the object set, if it did.
    fn websocket_event_timeout(&self) -> Option<Duration>;
    /// When the edge last auto-responded on this socket.
    fn auto_response_timestamp(&self, id: WebSocketId) -> Option<SystemTime>;
    /// Whether the node configures a namespace of this name.
    fn has_namespace(&self, namespace: &str) -> bool;
    /// A configured plain value.
    fn var(&self, name: &str) -> Option<String>;
    /// A configured secret's value.
    fn secret(&self, name: &str) -> Option<String>;
    /// `id_from_name` in a namespace, as hex.
    fn id_from_name(&self, namespace: &str, name: &str) -> Result<String>;
    /// A new random id in a namespace, as hex.
    fn new_unique_id(&self, namespace: &str) -> Result<String>;
    /// Checks a hex id against a namespace.
    fn id_from_string(&self, namespace: &str, text: &str) -> Result<String>;
    /// Sends a fetch (`rpc` `None`) or an RPC to another object.
    fn call(
        &self,
        namespace: &str,
        id: &str,
        name: Option<&str>,
        rpc: Option<&str>,
        request: Request,
    ) -> CallFuture;
}
