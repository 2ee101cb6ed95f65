//! `Counter`: `POST` adds one and returns the new value, `GET` returns it.
//! The value lives in the object's storage, so it survives hibernation,
//! worker restarts and node restarts, and concurrent clients sum exactly
//! (one event at a time, one commit per event).

use torpor_sdk::{DurableObject, Env, HandlerResult, Request, Response, State};

const KEY: &str = "value";

/// A durable counter at `/counter/{name}`.
pub struct Counter {
    state: State,
}

impl DurableObject for Counter {
    fn new(state: State, _env: Env) -> Counter {
        Counter { state }
    }

    async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
        let storage = self.state.storage();
        let value: i64 = storage.get_json(KEY)?.unwrap_or(0);
        match request.method() {
            "GET" => Ok(Response::text(value.to_string())),
            "POST" => {
                let next = value + 1;
                storage.put_json(KEY, &next)?;
                Ok(Response::text(next.to_string()))
            }
            _ => Ok(Response::error(405, "use GET or POST").with_header("allow", "GET, POST")),
        }
    }
}
