//! An object's view of itself: identity, its sockets, its auto-response.

use crate::host::{Abort, Host};
use crate::websocket::{Message, WebSocket};
use crate::{Error, Request, Result, Storage};
use bytes::Bytes;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

/// Most tags a socket may carry.
pub const MAX_TAGS: usize = 10;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 256;
/// Longest auto-response request or response, in bytes.
pub const MAX_AUTO_RESPONSE_BYTES: usize = 2048;
/// Longest WebSocket event timeout an object may set: 7 days, as in
/// Durable Objects.
pub const MAX_WEBSOCKET_EVENT_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Handed to [`DurableObject::new`](crate::DurableObject::new): the object's
/// identity and its sockets.
#[derive(Clone)]
pub struct State {
    host: Rc<dyn Host>,
}

impl State {
    #[doc(hidden)]
    pub fn new(host: Rc<dyn Host>) -> State {
        State { host }
    }

    #[doc(hidden)]
    pub fn host(&self) -> Rc<dyn Host> {
        self.host.clone()
    }

    /// The object's class.
    pub fn class(&self) -> &str {
        self.host.class()
    }

    /// The object's namespace, e.g. `ROOMS`.
    pub fn namespace(&self) -> &str {
        self.host.namespace()
    }

    /// The object's id: 64 hex characters, stable for the object's life.
    pub fn id(&self) -> &str {
        self.host.id()
    }

    /// The name the id was derived from (`id_from_name`), if it was; `None`
    /// for unique ids and objects reached by id alone.
    pub fn name(&self) -> Option<&str> {
        self.host.name()
    }

    /// The object's durable storage.
    pub fn storage(&self) -> Storage {
        Storage::new(self.host.clone())
    }

    /// Runs `work` and returns its output, with every other event of this
    /// object held back until it finishes.
    ///
    /// Durable Objects needs this because there a handler awaiting anything
    /// but storage lets the object's next event in. Torpor never does: an
    /// object's events run strictly one after another, and while a handler
    /// awaits anything (a [`Stub`](crate::Stub) call, a timer, `work`
    /// here) the object's other messages, requests, RPCs and alarms wait
    /// in its mailbox until that handler returns. So this is `work.await`,
    /// kept so that code written for Durable Objects reads the same. It
    /// follows that a call back into this object from further down the
    /// same call chain fails at once with
    /// [`Error::CallCycle`](crate::Error::CallCycle) instead of waiting for
    /// itself, and that nothing needs this to load state: `new` is
    /// synchronous, and so is storage, so `new` reads it directly.
    ///
    /// `work` counts against the handler's timeout. A panic in it fails the
    /// event and resets the object, as any panic does; an error it returns
    /// is only its output (Durable Objects resets the object on a throw:
    /// call [`abort`](Self::abort) for that).
    pub async fn block_concurrency_while<T, F>(&self, work: F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        work.await
    }

    /// Resets the object, as Durable Objects' `ctx.abort()` does: the
    /// current event fails and rolls back (nothing it sent leaves, a fetch
    /// is answered 500), the instance is dropped without finishing the
    /// handler, and the next event runs `new` again. The reason is logged.
    /// An alarm handler that aborts is retried like one that fails.
    ///
    /// Call it from `new` or a handler. It unwinds the stack to the
    /// runtime's handler boundary (without the panic hook's message), so a
    /// `catch_unwind` of the object's own in between would stop it; don't
    /// wrap it in one.
    pub fn abort(&self, reason: &str) -> ! {
        std::panic::resume_unwind(Box::new(Abort {
            reason: reason.to_owned(),
        }))
    }

    /// Sets the longest a `websocket_message`, `websocket_close` or
    /// `websocket_error` handler of this object may run before its event
    /// fails (and the instance is reset, as after any timeout), instead of
    /// the node's handler timeout; fetch, RPC and alarm handlers keep the
    /// node's. `None` or zero unsets it. Beyond
    /// [`MAX_WEBSOCKET_EVENT_TIMEOUT`] (7 days) it is an error. It holds
    /// for this instance: a new one (after hibernation or a reset) starts
    /// without it, so set it in `new`.
    pub fn set_hibernatable_websocket_event_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let timeout = timeout.filter(|t| !t.is_zero());
        if let Some(t) = timeout.filter(|&t| t > MAX_WEBSOCKET_EVENT_TIMEOUT) {
            return Err(Error::EventTimeoutTooLong {
                ms: t.as_millis(),
                limit_ms: MAX_WEBSOCKET_EVENT_TIMEOUT.as_millis(),
            });
        }
        self.host.set_websocket_event_timeout(timeout);
        Ok(())
    }

    /// The timeout set with
    /// [`set_hibernatable_websocket_event_timeout`](Self::set_hibernatable_websocket_event_timeout),
    /// if one is.
    pub fn get_hibernatable_websocket_event_timeout(&self) -> Option<Duration> {
        self.host.websocket_event_timeout()
    }

    /// Accepts a WebSocket upgrade as hibernatable, with up to 10 tags of up
    /// to 256 bytes (duplicates are dropped). Return
    /// [`Response::switching_protocols`](crate::Response::switching_protocols)
    /// from `fetch` to complete it.
    pub fn accept_websocket(&self, request: &Request, tags: &[&str]) -> Result<WebSocket> {
        let id = request.upgrade_id().ok_or(Error::NotAnUpgrade)?;
        let mut unique: Vec<String> = Vec::with_capacity(tags.len());
        for tag in tags {
            if tag.len() > MAX_TAG_BYTES {
                return Err(Error::InvalidTags(format!(
                    "tag is {} bytes, limit {MAX_TAG_BYTES}",
                    tag.len()
                )));
            }
            if !unique.iter().any(|t| t == tag) {
                unique.push((*tag).to_owned());
            }
        }
        if unique.len() > MAX_TAGS {
            return Err(Error::InvalidTags(format!(
                "{} tags, limit {MAX_TAGS}",
                unique.len()
            )));
        }
        self.host.accept(id, unique)?;
        Ok(WebSocket::new(id, self.host.clone()))
    }

    /// The object's sockets, all of them or those carrying `tag`.
    pub fn get_websockets(&self, tag: Option<&str>) -> Vec<WebSocket> {
        self.host
            .websockets(tag)
            .into_iter()
            .map(|id| WebSocket::new(id, self.host.clone()))
            .collect()
    }

    /// The tags of a socket.
    pub fn get_tags(&self, ws: &WebSocket) -> Result<Vec<String>> {
        self.host.tags(ws.id())
    }

    /// Sends one message to every socket (carrying `tag`), except `except`,
    /// as a single command to the edge.
    pub fn broadcast(
        &self,
        message: impl Into<Message>,
        tag: Option<&str>,
        except: Option<&WebSocket>,
    ) {
        self.host
            .broadcast(message.into(), tag, except.map(WebSocket::id));
    }

    /// Makes the edge answer a text message equal to `request` with
    /// `response`, without waking the object. One pair per object: this
    /// replaces any pair set before.
    pub fn set_websocket_auto_response(&self, request: &str, response: &str) -> Result<()> {
        check_auto_response(request.as_bytes(), response.as_bytes())?;
        self.host.set_auto_response(Some(AutoResponse::Text {
            request: request.to_owned(),
            response: response.to_owned(),
        }));
        Ok(())
    }

    /// Like [`set_websocket_auto_response`](Self::set_websocket_auto_response)
    /// for binary frames: a binary message equal to `request` is answered with
    /// a binary `response` (an MQTT PINGREQ, say). Replaces any pair set before.
    pub fn set_websocket_auto_response_binary(
        &self,
        request: &[u8],
        response: &[u8],
    ) -> Result<()> {
        check_auto_response(request, response)?;
        self.host.set_auto_response(Some(AutoResponse::Binary {
            request: Bytes::copy_from_slice(request),
            response: Bytes::copy_from_slice(response),
        }));
        Ok(())
    }

    /// Removes the auto-response pair.
    pub fn clear_websocket_auto_response(&self) {
        self.host.set_auto_response(None);
    }

    /// The auto-response pair, if set.
    pub fn get_websocket_auto_response(&self) -> Option<AutoResponse> {
        self.host.auto_response()
    }

    /// When the edge last answered this socket's auto-response request. As
    /// of this socket's latest event, or of the object's wake if it sent none.
    pub fn get_websocket_auto_response_timestamp(&self, ws: &WebSocket) -> Option<SystemTime> {
        self.host.auto_response_timestamp(ws.id())
    }
}

fn check_auto_response(request: &[u8], response: &[u8]) -> Result<()> {
    for (which, value) in [("request", request), ("response", response)] {
        if value.len() > MAX_AUTO_RESPONSE_BYTES {
            return Err(Error::AutoResponseTooLarge {
                which,
                size: value.len(),
                limit: MAX_AUTO_RESPONSE_BYTES,
            });
        }
    }
    Ok(())
}

/// An auto-response pair, answered by the edge without waking the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoResponse {
    /// Matches text frames exactly; answers with a text frame.
    Text {
        /// The message to match.
        request: String,
        /// The answer.
        response: String,
    },
    /// Matches binary frames exactly; answers with a binary frame.
    Binary {
        /// The message to match.
        request: Bytes,
        /// The answer.
        response: Bytes,
    },
}
