//! hello-room: a chat room on Torpor. `GET /rooms/NAME` answers how many
//! messages the room has seen; a WebSocket to `/rooms/NAME?name=ada` joins
//! it, and every message is sent to everyone in the room as `ada: text`.
//! The room hibernates when it goes quiet; its sockets stay open, and each
//! socket's name survives in its attachment.

use serde::{Deserialize, Serialize};
use torpor::{DurableObject, Env, HandlerResult, Message, Request, Response, State, WebSocket};

struct Room {
    state: State,
}

/// What each socket keeps while the room hibernates.
#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

impl DurableObject for Room {
    fn new(state: State, _env: Env) -> Room {
        Room { state }
    }

    async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
        if !request.is_websocket_upgrade() {
            let seen: u64 = self.state.storage().get_json("seen")?.unwrap_or(0);
            return Ok(Response::text(format!("{seen} messages\n")));
        }
        let name = request
            .query_param("name")
            .unwrap_or_else(|| "anonymous".to_owned());
        let ws = self.state.accept_websocket(&request, &[])?;
        ws.serialize_attachment(&Member { name })?;
        Ok(Response::switching_protocols())
    }

    async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> HandlerResult<()> {
        let Message::Text(text) = message else {
            return Ok(());
        };
        let member: Member = ws
            .deserialize_attachment()?
            .ok_or("a socket without a name")?;
        let storage = self.state.storage();
        let seen: u64 = storage.get_json("seen")?.unwrap_or(0);
        storage.put_json("seen", &(seen + 1))?;
        self.state
            .broadcast(format!("{}: {text}", member.name), None, None);
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    // Printing is fine: every process of the node runs this main (the
    // supervisor starts copies of the binary), and their output reaches
    // the supervisor's stderr.
    println!("hello-room {}", env!("CARGO_PKG_VERSION"));
    torpor::Node::new().class::<Room>("Room").main()
}
