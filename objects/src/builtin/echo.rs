//! `Echo`: every message comes back unchanged, text as text, binary as binary.

use torpor_sdk::{DurableObject, Env, HandlerResult, Message, Request, Response, State, WebSocket};

/// Sends every message back to its sender.
pub struct Echo {
    state: State,
}

impl DurableObject for Echo {
    fn new(state: State, _env: Env) -> Echo {
        Echo { state }
    }

    async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
        if !request.is_websocket_upgrade() {
            return Ok(Response::error(426, "connect with a websocket"));
        }
        self.state.accept_websocket(&request, &[])?;
        Ok(Response::switching_protocols())
    }

    async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> HandlerResult<()> {
        ws.send(message)?;
        Ok(())
    }
}
