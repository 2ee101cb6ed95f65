//! A hibernatable WebSocket as an object sees it.

use crate::host::Host;
use crate::{Error, Result};
use bytes::Bytes;
use std::fmt;
use std::rc::Rc;

/// Identifies a socket across hibernation: which edge holds it, its slot and
/// the slot's generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebSocketId {
    edge: u16,
    slot: u32,
    generation: u32,
}

impl WebSocketId {
    #[doc(hidden)]
    pub fn from_parts(edge: u16, slot: u32, generation: u32) -> WebSocketId {
        WebSocketId {
            edge,
            slot,
            generation,
        }
    }

    #[doc(hidden)]
    pub fn parts(self) -> (u16, u32, u32) {
        (self.edge, self.slot, self.generation)
    }
}

impl fmt::Display for WebSocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.edge, self.slot, self.generation)
    }
}

/// A WebSocket message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text frame.
    Text(String),
    /// A binary frame.
    Binary(Bytes),
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Message {
        Message::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Message {
        Message::Binary(data.into())
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Message {
        Message::Binary(data)
    }
}

/// A socket accepted by this object. Cheap to clone; it stays valid across
/// hibernation (get it again with
/// [`State::get_websockets`](crate::State::get_websockets)).
#[derive(Clone)]
pub struct WebSocket {
    id: WebSocketId,
    host: Rc<dyn Host>,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebSocket").field(&self.id).finish()
    }
}

impl PartialEq for WebSocket {
    fn eq(&self, other: &WebSocket) -> bool {
        self.id == other.id
    }
}

impl WebSocket {
    #[doc(hidden)]
    pub fn new(id: WebSocketId, host: Rc<dyn Host>) -> WebSocket {
        WebSocket { id, host }
    }

    /// The socket's id.
    pub fn id(&self) -> WebSocketId {
        self.id
    }

    /// Sends a text or binary message.
    pub fn send(&self, message: impl Into<Message>) -> Result<()> {
        self.host.send(self.id, message.into())
    }

    /// Starts the close handshake with `code` (1000 or 3000-4999).
    pub fn close(&self, code: u16, reason: &str) -> Result<()> {
        if !(code == 1000 || (3000..=4999).contains(&code)) {
            return Err(Error::InvalidCloseCode(code));
        }
        self.host.close(self.id, code, reason)
    }

    /// Stores a value with the socket, kept by the edge while the object
    /// hibernates. Serialized as JSON; at most the configured limit (2048
    /// bytes by default), else [`Error::AttachmentTooLarge`].
    pub fn serialize_attachment<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        let limit = self.host.max_attachment_bytes();
        if bytes.len() > limit {
            return Err(Error::AttachmentTooLarge {
                size: bytes.len(),
                limit,
            });
        }
        self.host.set_attachment(self.id, Some(bytes.into()))
    }

    /// The value last stored with [`serialize_attachment`](Self::serialize_attachment).
    pub fn deserialize_attachment<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>> {
        match self.host.attachment(self.id)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The tags given at accept.
    pub fn tags(&self) -> Result<Vec<String>> {
        self.host.tags(self.id)
    }
}
