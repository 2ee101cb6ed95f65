//! The trait every object class implements.

use crate::{Env, HandlerResult, Message, Request, Response, State, WebSocket};

/// A class of stateful object. One instance per object id at most, running
/// one event at a time. An instance may be dropped whenever it is idle
/// (hibernation) and is created again with `new` on the next event, so
/// anything that must survive goes in attachments (or storage).
///
/// Handlers run on the worker's single-threaded executor, so their futures
/// need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait DurableObject: 'static {
    /// Creates an instance; runs on every wake.
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
}
