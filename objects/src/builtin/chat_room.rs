//! `ChatRoom`: join and leave notices and messages as JSON, each member's
//! name kept in its socket's attachment so the room survives hibernation.

use serde::{Deserialize, Serialize};
use torpor_sdk::{DurableObject, Env, HandlerResult, Message, Request, Response, State, WebSocket};

/// Longest member name, in bytes.
const MAX_NAME_BYTES: usize = 64;

#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Notice<'a> {
    Join { name: &'a str },
    Leave { name: &'a str },
    Message { name: &'a str, text: &'a str },
}

/// A chat room at `/rooms/{name}?name=ada`.
pub struct ChatRoom {
    state: State,
}

impl ChatRoom {
    fn name_of(ws: &WebSocket) -> String {
        ws.deserialize_attachment::<Member>()
            .ok()
            .flatten()
            .map_or_else(|| "anonymous".to_owned(), |m| m.name)
    }

    fn broadcast(&self, notice: &Notice<'_>, except: Option<&WebSocket>) -> HandlerResult<()> {
        let text = serde_json::to_string(notice)?;
        self.state.broadcast(text, None, except);
        Ok(())
    }
}

impl DurableObject for ChatRoom {
    fn new(state: State, _env: Env) -> ChatRoom {
        ChatRoom { state }
    }

    async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
        if !request.is_websocket_upgrade() {
            let members: Vec<String> = self
                .state
                .get_websockets(None)
                .iter()
                .map(ChatRoom::name_of)
                .collect();
            return Ok(Response::json(&serde_json::json!({ "members": members }))?);
        }
        let name = request
            .query_param("name")
            .unwrap_or_else(|| "anonymous".to_owned());
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Ok(Response::error(
                400,
                format!("name must be 1 to {MAX_NAME_BYTES} bytes"),
            ));
        }
        let ws = self.state.accept_websocket(&request, &[])?;
        ws.serialize_attachment(&Member { name: name.clone() })?;
        if self.state.get_websocket_auto_response().is_none() {
            self.state.set_websocket_auto_response("ping", "pong")?;
        }
        self.broadcast(&Notice::Join { name: &name }, None)?;
        Ok(Response::switching_protocols())
    }

    async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> HandlerResult<()> {
        let Message::Text(text) = message else {
            ws.send("binary messages are not supported in a chat room")?;
            return Ok(());
        };
        let name = ChatRoom::name_of(&ws);
        self.broadcast(
            &Notice::Message {
                name: &name,
                text: &text,
            },
            None,
        )
    }

    async fn websocket_close(
        &mut self,
        ws: WebSocket,
        _code: u16,
        _reason: String,
        _was_clean: bool,
    ) -> HandlerResult<()> {
        let name = ChatRoom::name_of(&ws);
        self.broadcast(&Notice::Leave { name: &name }, Some(&ws))
    }
}
