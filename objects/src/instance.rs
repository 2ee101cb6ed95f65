//! An object-safe face of `DurableObject`, so one table can hold instances
//! of every class.

use std::future::Future;
use std::pin::Pin;
use torpor_sdk::{AlarmInfo, DurableObject, HandlerResult, Message, Request, Response, WebSocket};

pub(crate) type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// A handler error that is a timeout the object noticed itself (a
/// JavaScript handler interrupted at its deadline): the worker treats it as
/// one its own timer caught, and resets the instance.
#[derive(Debug, thiserror::Error)]
#[error("handler timed out")]
pub(crate) struct HandlerTimedOut;

pub(crate) trait DynObject {
    /// Whether the instance keeps nothing between events (a JavaScript
    /// app's front): it hibernates as soon as its mailbox is empty.
    fn is_stateless(&self) -> bool {
        false
    }
    fn fetch(&mut self, request: Request) -> LocalFuture<'_, HandlerResult<Response>>;
    fn websocket_message(
        &mut self,
        ws: WebSocket,
        message: Message,
    ) -> LocalFuture<'_, HandlerResult<()>>;
    fn websocket_close(
        &mut self,
        ws: WebSocket,
        code: u16,
        reason: String,
        was_clean: bool,
    ) -> LocalFuture<'_, HandlerResult<()>>;
    fn websocket_error(
        &mut self,
        ws: WebSocket,
        error: String,
    ) -> LocalFuture<'_, HandlerResult<()>>;
    fn alarm(&mut self, info: AlarmInfo) -> LocalFuture<'_, HandlerResult<()>>;
    fn rpc<'a>(
        &'a mut self,
        method: &'a str,
        args: serde_json::Value,
    ) -> LocalFuture<'a, HandlerResult<serde_json::Value>>;
}

impl<T: DurableObject> DynObject for T {
    fn fetch(&mut self, request: Request) -> LocalFuture<'_, HandlerResult<Response>> {
        Box::pin(DurableObject::fetch(self, request))
    }

    fn websocket_message(
        &mut self,
        ws: WebSocket,
        message: Message,
    ) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(DurableObject::websocket_message(self, ws, message))
    }

    fn websocket_close(
        &mut self,
        ws: WebSocket,
        code: u16,
        reason: String,
        was_clean: bool,
    ) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(DurableObject::websocket_close(
            self, ws, code, reason, was_clean,
        ))
    }

    fn websocket_error(
        &mut self,
        ws: WebSocket,
        error: String,
    ) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(DurableObject::websocket_error(self, ws, error))
    }

    fn alarm(&mut self, info: AlarmInfo) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(DurableObject::alarm(self, info))
    }

    fn rpc<'a>(
        &'a mut self,
        method: &'a str,
        args: serde_json::Value,
    ) -> LocalFuture<'a, HandlerResult<serde_json::Value>> {
        Box::pin(DurableObject::rpc(self, method, args))
    }
}
