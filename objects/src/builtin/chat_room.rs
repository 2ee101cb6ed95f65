//! `ChatRoom`: join and leave notices and messages as JSON, each member's
//! name kept in its socket's attachment so the room survives hibernation.
//! The last 100 messages are kept in the room's SQL storage and sent to a
//! client when it joins, oldest first, before the join notice. A message is
//! at most 4,096 bytes (a longer one gets an error notice and goes nowhere),
//! and a join replays at most 256 KiB of history: whatever a client sends,
//! the replay stays far below the edge's outbound limit, so the room keeps
//! taking joins.

use serde::{Deserialize, Serialize};
use torpor_sdk::{
    DurableObject, Env, HandlerResult, Message, Request, Response, SqlValue, State, WebSocket,
};

/// Longest member name, in bytes.
const MAX_NAME_BYTES: usize = 64;
/// Messages kept for members who join later.
const HISTORY: i64 = 100;
/// Longest message, in bytes of text. JSON escapes a control character as
/// six bytes, so a notice can be six times this.
const MAX_TEXT_BYTES: usize = 4096;
/// Most history a join replays, in bytes of JSON.
const MAX_REPLAY_BYTES: usize = 256 << 10;
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS messages \
    (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, text TEXT NOT NULL)";

#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

#[derive(Deserialize)]
struct Stored {
    name: String,
    text: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Notice<'a> {
    Join { name: &'a str },
    Leave { name: &'a str },
    Message { name: &'a str, text: &'a str },
    Error { error: &'a str },
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

    fn history(&self) -> HandlerResult<Vec<Stored>> {
        let sql = self.state.storage().sql();
        sql.exec(SCHEMA, &[])?;
        let cursor = sql.exec(
            "SELECT name, text FROM (SELECT id, name, text FROM messages ORDER BY id DESC LIMIT ?) \
             ORDER BY id",
            &[SqlValue::Integer(HISTORY)],
        )?;
        Ok(cursor.rows_as()?)
    }

    /// The history's notices for a join, newest kept within the byte cap
    /// (a room may hold messages from before the text limit).
    fn replay(&self) -> HandlerResult<Vec<String>> {
        let mut notices = Vec::new();
        let mut bytes = 0;
        for old in self.history()?.iter().rev() {
            let notice = serde_json::to_string(&Notice::Message {
                name: &old.name,
                text: &old.text,
            })?;
            bytes += notice.len();
            if bytes > MAX_REPLAY_BYTES {
                break;
            }
            notices.push(notice);
        }
        notices.reverse();
        Ok(notices)
    }

    fn remember(&self, name: &str, text: &str) -> HandlerResult<()> {
        let sql = self.state.storage().sql();
        sql.exec(SCHEMA, &[])?;
        sql.exec(
            "INSERT INTO messages (name, text) VALUES (?, ?)",
            &[name.into(), text.into()],
        )?;
        sql.exec(
            "DELETE FROM messages WHERE id <= (SELECT max(id) FROM messages) - ?",
            &[SqlValue::Integer(HISTORY)],
        )?;
        Ok(())
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
        for notice in self.replay()? {
            ws.send(notice)?;
        }
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
        if text.len() > MAX_TEXT_BYTES {
            let error = format!("message is {} bytes, limit {MAX_TEXT_BYTES}", text.len());
            ws.send(serde_json::to_string(&Notice::Error { error: &error })?)?;
            return Ok(());
        }
        let name = ChatRoom::name_of(&ws);
        self.remember(&name, &text)?;
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
