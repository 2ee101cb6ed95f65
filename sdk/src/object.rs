//! The trait every object class implements.

use crate::{Env, HandlerResult, Message, Request, Response, State, WebSocket};

/// What an alarm invocation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AlarmInfo {
    /// 0 on the first attempt; retries after a failed handler count up to 6.
    pub retry_count: u32,
    /// Whether this is a retry.
    pub is_retry: bool,
}

/// A class of stateful object. One instance per object id at most, running
/// one event at a time. An instance may be dropped whenever it is idle
/// (hibernation) and is created again with `new` on the next event, so
/// anything that must survive goes in attachments (or storage).
///
/// Handlers run on the worker's single-threaded executor, so their futures
/// need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait DurableObject: 'static {
    /// Creates an instance; runs on every wake, and again after a reset (a
    /// panic, a timeout, [`State::abort`], an event that did not commit).
    /// It runs inside the event that needs the instance: what it writes
    /// and sends commits, or rolls back, with that event.
    fn new(state: State, env: Env) -> Self
    where
        Self: Sized;

    /// An HTTP request or WebSocket upgrade.
    async fn fetch(&mut self, request: Request) -> HandlerResult<Response>;

    /// A text or binary message on an accepted socket. Never called for
    /// pings, pongs or auto-response requests.
    async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> HandlerResult<()> {
        let _ = (ws, message);
        Ok(())
    }

    /// A socket closed. An abrupt disconnect arrives as 1006 with
    /// `was_clean` false. The edge has already answered the client's close.
    async fn websocket_close(
        &mut self,
        ws: WebSocket,
        code: u16,
        reason: String,
        was_clean: bool,
    ) -> HandlerResult<()> {
        let _ = (ws, code, reason, was_clean);
        Ok(())
    }

    /// The edge failed a socket for a reason other than a disconnect: a
    /// protocol error (1002, 1007, 1009) or a client that stopped reading
    /// (1008). `websocket_close` follows with the same code.
    async fn websocket_error(&mut self, ws: WebSocket, error: String) -> HandlerResult<()> {
        let _ = (ws, error);
        Ok(())
    }

    /// The alarm set with [`Storage::set_alarm`](crate::Storage::set_alarm)
    /// is due. Runs even if the object was hibernated or its worker exited.
    /// At least once: a failed handler is retried after 2, 4, 8, 16, 32 and
    /// 64 seconds. The alarm is cleared when this starts; setting a new one
    /// here schedules the next.
    async fn alarm(&mut self, info: AlarmInfo) -> HandlerResult<()> {
        let _ = info;
        Ok(())
    }

    /// A named call from another object (`Stub::call`), with JSON
    /// arguments and result. Runs one at a time with the object's other
    /// events.
    async fn rpc(
        &mut self,
        method: &str,
        args: serde_json::Value,
    ) -> HandlerResult<serde_json::Value> {
        let _ = args;
        Err(format!("no rpc method {method:?}").into())
    }
}
