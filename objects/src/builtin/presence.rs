//! `Presence`: who is online in a room, kept only in the edge (socket tags
//! and attachments), so a room that hibernates still knows its members and
//! never needs storage.
//!
//! Wire protocol, at `/presence/{room}`:
//! - WebSocket upgrade with `?user=NAME` (1 to 64 bytes, else 400). The
//!   socket is tagged `user:NAME` and carries the attachment
//!   `{"user":"NAME"}`.
//! - On every join and every leave (clean close or abrupt disconnect), each
//!   member, the joiner included, gets
//!   `{"type":"presence","online":["ada","linus"]}`: the users online,
//!   sorted, each once. A user connected on several sockets counts once and
//!   stays online until the last of them leaves.
//! - Text `ping` is answered `pong` by the edge without waking the room; any
//!   other message is answered, to its sender only, with the current list.
//! - Plain `GET /presence/{room}` returns `{"online":[...]}`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use torpor_sdk::{DurableObject, Env, HandlerResult, Message, Request, Response, State, WebSocket};

/// Longest user name, in bytes.
const MAX_USER_BYTES: usize = 64;
/// Prefix of the tag that names a socket's user.
const USER_TAG: &str = "user:";

/// The attachment of every member's socket.
#[derive(Serialize, Deserialize)]
struct Member {
    user: String,
}

#[derive(Serialize)]
struct Online<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    online: &'a BTreeSet<String>,
}

/// A presence room at `/presence/{room}?user=ada`.
pub struct Presence {
    state: State,
}

impl Presence {
    /// The user of a socket: from its attachment, else from its tag (set at
    /// accept, so it is there even if the attachment could not be written).
    fn user_of(ws: &WebSocket) -> Option<String> {
        if let Ok(Some(member)) = ws.deserialize_attachment::<Member>() {
            return Some(member.user);
        }
        ws.tags()
            .ok()?
            .into_iter()
            .find_map(|tag| tag.strip_prefix(USER_TAG).map(str::to_owned))
    }

    /// The users of every socket but `leaving` (whose close is being
    /// handled: it is still listed until its handler ends).
    fn online(&self, leaving: Option<&WebSocket>) -> BTreeSet<String> {
        self.state
            .get_websockets(None)
            .iter()
            .filter(|ws| Some(*ws) != leaving)
            .filter_map(Presence::user_of)
            .collect()
    }

    /// The list as members receive it.
    fn notice(online: &BTreeSet<String>) -> serde_json::Result<String> {
        serde_json::to_string(&Online {
            kind: "presence",
            online,
        })
    }

    /// Sends the list to every member but `leaving`.
    fn announce(&self, leaving: Option<&WebSocket>) -> HandlerResult<()> {
        let text = Presence::notice(&self.online(leaving))?;
        self.state.broadcast(text, None, leaving);
        Ok(())
    }
}

impl DurableObject for Presence {
    fn new(state: State, _env: Env) -> Presence {
        Presence { state }
    }

    async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
        if !request.is_websocket_upgrade() {
            if request.method() != "GET" {
                return Ok(Response::error(405, "use GET, or connect with a websocket")
                    .with_header("allow", "GET"));
            }
            let online = self.online(None);
            return Ok(Response::json(&serde_json::json!({ "online": online }))?);
        }
        let Some(user) = request.query_param("user") else {
            return Ok(Response::error(
                400,
                "user is missing: connect with ?user=NAME",
            ));
        };
        if user.is_empty() || user.len() > MAX_USER_BYTES {
            return Ok(Response::error(
                400,
                format!(
                    "user is {} bytes, must be 1 to {MAX_USER_BYTES}",
                    user.len()
                ),
            ));
        }
        let tag = format!("{USER_TAG}{user}");
        let ws = self.state.accept_websocket(&request, &[&tag])?;
        ws.serialize_attachment(&Member { user })?;
        // Set once per room; the edge keeps it across hibernation.
        if self.state.get_websocket_auto_response().is_none() {
            self.state.set_websocket_auto_response("ping", "pong")?;
        }
        self.announce(None)?;
        Ok(Response::switching_protocols())
    }

    async fn websocket_message(&mut self, ws: WebSocket, _message: Message) -> HandlerResult<()> {
        // Members have nothing to say here; answering with the list gives a
        // client that missed a notice a way to resynchronize.
        ws.send(Presence::notice(&self.online(None))?)?;
        Ok(())
    }

    async fn websocket_close(
        &mut self,
        ws: WebSocket,
        _code: u16,
        _reason: String,
        _was_clean: bool,
    ) -> HandlerResult<()> {
        self.announce(Some(&ws))
    }
}
