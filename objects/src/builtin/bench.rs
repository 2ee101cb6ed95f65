//! `Bench`: the plain-text protocol loadtest and the benchmarks use.
//!
//! `ping` → `pong` (auto-response, answered by the edge); `echo:X` → `X`;
//! `attach:X` → stores X as the attachment and replies `ok` (or `err:…`);
//! `getattach` → the attachment; `bcast:X` → X to every socket of the
//! object, sender included; `count` → the number of sockets; `tags` → the
//! socket's tags joined by `,`; `roster` → every socket of the object as
//! `TAGS=ATTACHMENT` (tags joined by `+`), sorted, joined by `,`;
//! `counttag:T` → the number of sockets tagged T. Binary messages are echoed. `?tag=T` on
//! connect (repeatable) tags the socket. To exercise failure paths,
//! `fail:X` makes the handler return an error and `panic:X` makes it panic;
//! either fails that event only; a socket tagged `panic-on-close` makes its
//! close handler panic, one tagged `announce-close` has it broadcast
//! `closed:CODE`. `close:CODE` closes the socket from the
//! server side; `autobinary` replaces the auto-response with the binary pair
//! `C0 00` → `D0 00` (MQTT PINGREQ → PINGRESP). Storage: `put:K=V` stores
//! V under K and replies `ok`; `get:K` → the value, or nothing; `putfail:K=V`
//! stores, sends `sent before failing`, then fails, so neither the write nor
//! the message may take effect. Alarms: `alarm:MS` sets the alarm MS
//! milliseconds ahead and replies `ok`; `alarmfail:N:MS` does too, and the
//! alarm handler fails while its retry count is below N; when the handler
//! succeeds it stores `alarm_fired` = its retry count and broadcasts
//! `alarm:<retry count>`. `getalarm` → the alarm's time in Unix
//! milliseconds, or `none`. `version` → the build (`0.1.0+dev`, see
//! `TORPOR_BUILD`); `pid` → the worker's process id; `var:NAME` → the
//! config's var NAME; `secretlen:NAME` → the length of secret NAME (never
//! its value). `lasterror` → the reason
//! of the last socket the edge failed (protocol error, not reading) while the
//! instance was live, or nothing. Calls to other objects: `rpc:NAME:METHOD:ARGS`
//! calls Bench NAME's rpc METHOD with JSON ARGS and replies with the JSON
//! result (or `err:…`); `fetchcounter:NAME` POSTs to Counter NAME through a
//! stub and replies with its answer; `fetchstatus:NS:NAME:METHOD:PATH`
//! fetches METHOD PATH from object NAME of namespace NS through a stub and
//! replies `STATUS BODY`, whatever the status (or `err:…` if the call
//! itself failed); a plain request to Bench whose path ends in `/fail`
//! makes its `fetch` fail. `idof:NAME` → the id of Bench NAME as this
//! worker derives it. `aroundcall:NAME` sends `before call`, awaits
//! Bench NAME's rpc `echo` (an event of another object, often in the same
//! worker), sends `after call`, stores `aroundcall` = NAME and replies
//! `done`; `aroundcall:NAME:fail` does the same but fails instead of
//! replying, so neither message nor the write may take effect.
//!
//! Instance resets: `remember:X` keeps X in the instance's memory and
//! replies `ok`; `recall` → it, or nothing in a fresh instance.
//! `breakcommit:X` remembers X, sends `sent before the commit`, and
//! inserts a row that breaks a deferred foreign key, so the handler
//! succeeds and the event's commit fails. While a socket tagged
//! `count-inits` is open, `new` counts the instances created in storage
//! (`inits`, +1 each) and broadcasts `constructed:N`; `inits` →
//! `N/STORED`, the count this instance wrote and the stored one.
//! `abort:R` stores `aborted` = R, sends `sent before aborting`, then
//! aborts the object with reason R. `wstimeout:MS` sets the WebSocket
//! event timeout (0 unsets it) and `wstimeout` alone reads it; both reply
//! with the timeout in milliseconds or `none` (or `err:…`). `sleep:MS`
//! waits MS milliseconds, then replies `slept`.

use std::time::{Duration, SystemTime};
use torpor_sdk::{
    AlarmInfo, DurableObject, Env, HandlerResult, Message, Request, Response, State, WebSocket,
};

const ALARM_FAIL_BELOW: &str = "alarm_fail_below";
/// The tag that makes `new` count instances, and the key it counts under.
const COUNT_INITS: &str = "count-inits";
const INITS: &str = "inits";

/// The benchmark object.
pub struct Bench {
    state: State,
    env: Env,
    last_error: String,
    remembered: String,
    /// What `new` stored as `inits`, if it counted.
    inits: u64,
}

impl DurableObject for Bench {
    fn new(state: State, env: Env) -> Bench {
        let mut inits = 0;
        if !state.get_websockets(Some(COUNT_INITS)).is_empty() {
            let storage = state.storage();
            let stored: u64 = storage.get_json(INITS).ok().flatten().unwrap_or(0);
            if storage.put_json(INITS, &(stored + 1)).is_ok() {
                inits = stored + 1;
                state.broadcast(format!("constructed:{inits}"), None, None);
            }
        }
        Bench {
            state,
            env,
            last_error: String::new(),
            remembered: String::new(),
            inits,
        }
    }

    async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
        if request.uri().ends_with("/fail") {
            return Err(format!("failed on request: {}", request.uri()).into());
        }
        if !request.is_websocket_upgrade() {
            return Ok(Response::error(426, "connect with a websocket"));
        }
        let tags = request.query_params("tag");
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        if let Err(err) = self.state.accept_websocket(&request, &tags) {
            return Ok(Response::error(400, err.to_string()));
        }
        if self.state.get_websocket_auto_response().is_none() {
            self.state.set_websocket_auto_response("ping", "pong")?;
        }
        Ok(Response::switching_protocols())
    }

    async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> HandlerResult<()> {
        let text = match message {
            Message::Text(text) => text,
            binary @ Message::Binary(_) => return Ok(ws.send(binary)?),
        };
        let reply = if let Some(rest) = text.strip_prefix("echo:") {
            rest.to_owned()
        } else if let Some(rest) = text.strip_prefix("attach:") {
            match ws.serialize_attachment(rest) {
                Ok(()) => "ok".to_owned(),
                Err(err) => format!("err:{err}"),
            }
        } else if let Some(rest) = text.strip_prefix("put:") {
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            self.state.storage().put(key, value.as_bytes())?;
            "ok".to_owned()
        } else if let Some(key) = text.strip_prefix("get:") {
            let value = self.state.storage().get(key)?.unwrap_or_default();
            String::from_utf8_lossy(&value).into_owned()
        } else if let Some(rest) = text.strip_prefix("putfail:") {
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            self.state.storage().put(key, value.as_bytes())?;
            ws.send("sent before failing")?;
            return Err(format!("failed on request after writing {key}").into());
        } else if let Some(rest) = text.strip_prefix("rpc:") {
            let mut parts = rest.splitn(3, ':');
            let (to, method, args) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or("null"),
            );
            match self.call_bench(to, method, args).await {
                Ok(result) => result.to_string(),
                Err(err) => format!("err:{err}"),
            }
        } else if let Some(name) = text.strip_prefix("fetchcounter:") {
            match self.increment_counter(name).await {
                Ok(value) => value,
                Err(err) => format!("err:{err}"),
            }
        } else if let Some(rest) = text.strip_prefix("aroundcall:") {
            let (to, fail) = match rest.strip_suffix(":fail") {
                Some(to) => (to, true),
                None => (rest, false),
            };
            ws.send("before call")?;
            self.call_bench(to, "echo", "\"called\"").await?;
            ws.send("after call")?;
            self.state.storage().put("aroundcall", to.as_bytes())?;
            if fail {
                return Err(format!("failed on request after calling {to}").into());
            }
            "done".to_owned()
        } else if let Some(rest) = text.strip_prefix("remember:") {
            rest.clone_into(&mut self.remembered);
            "ok".to_owned()
        } else if let Some(rest) = text.strip_prefix("breakcommit:") {
            rest.clone_into(&mut self.remembered);
            ws.send("sent before the commit")?;
            // Checked at COMMIT, not at the INSERT: the handler succeeds.
            self.state.storage().sql().exec(
                "CREATE TABLE IF NOT EXISTS parents(id INTEGER PRIMARY KEY);
                 CREATE TABLE IF NOT EXISTS children(
                     parent INTEGER REFERENCES parents(id) DEFERRABLE INITIALLY DEFERRED);
                 INSERT INTO children VALUES (1);",
                &[],
            )?;
            "ok".to_owned()
        } else if let Some(rest) = text.strip_prefix("fetchstatus:") {
            let mut parts = rest.splitn(4, ':');
            let mut part = || parts.next().unwrap_or_default();
            let (namespace, name, method, path) = (part(), part(), part(), part());
            match self.fetch_status(namespace, name, method, path).await {
                Ok(answer) => answer,
                Err(err) => format!("err:{err}"),
            }
        } else if let Some(reason) = text.strip_prefix("abort:") {
            self.state.storage().put("aborted", reason.as_bytes())?;
            ws.send("sent before aborting")?;
            self.state.abort(reason)
        } else if let Some(ms) = text.strip_prefix("wstimeout:") {
            let timeout = Duration::from_millis(ms.parse().unwrap_or(0));
            match self
                .state
                .set_hibernatable_websocket_event_timeout(Some(timeout))
            {
                Ok(()) => self.websocket_event_timeout(),
                Err(err) => format!("err:{err}"),
            }
        } else if let Some(ms) = text.strip_prefix("sleep:") {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            "slept".to_owned()
        } else if let Some(name) = text.strip_prefix("var:") {
            self.env
                .var(name)
                .unwrap_or_else(|err| format!("err:{err}"))
        } else if let Some(name) = text.strip_prefix("secretlen:") {
            match self.env.secret(name) {
                Ok(secret) => secret.len().to_string(),
                Err(err) => format!("err:{err}"),
            }
        } else if let Some(name) = text.strip_prefix("idof:") {
            self.env.namespace("BENCH")?.id_from_name(name)?.to_string()
        } else if let Some(rest) = text.strip_prefix("alarmfail:") {
            let (fails, ms) = rest.split_once(':').unwrap_or((rest, "0"));
            self.set_alarm(fails.parse().unwrap_or(0), ms.parse().unwrap_or(0))?
        } else if let Some(ms) = text.strip_prefix("alarm:") {
            self.set_alarm(0, ms.parse().unwrap_or(0))?
        } else if let Some(rest) = text.strip_prefix("close:") {
            let code = rest.parse().unwrap_or(1000);
            return Ok(ws.close(code, "closed on request")?);
        } else if let Some(rest) = text.strip_prefix("fail:") {
            return Err(format!("failed on request: {rest}").into());
        } else if let Some(rest) = text.strip_prefix("panic:") {
            panic!("panicked on request: {rest}");
        } else if let Some(tag) = text.strip_prefix("counttag:") {
            self.state.get_websockets(Some(tag)).len().to_string()
        } else if let Some(rest) = text.strip_prefix("bcast:") {
            self.state.broadcast(rest, None, None);
            return Ok(());
        } else {
            match text.as_str() {
                "getattach" => ws.deserialize_attachment::<String>()?.unwrap_or_default(),
                "count" => self.state.get_websockets(None).len().to_string(),
                "tags" => ws.tags()?.join(","),
                "roster" => self.roster()?,
                "lasterror" => self.last_error.clone(),
                "version" => crate::build_version(),
                "pid" => std::process::id().to_string(),
                "recall" => self.remembered.clone(),
                "wstimeout" => self.websocket_event_timeout(),
                "getalarm" => match self.state.storage().get_alarm()? {
                    Some(at) => unix_ms(at).to_string(),
                    None => "none".to_owned(),
                },
                "inits" => {
                    let stored: u64 = self.state.storage().get_json(INITS)?.unwrap_or(0);
                    format!("{}/{stored}", self.inits)
                }
                "autobinary" => {
                    self.state
                        .set_websocket_auto_response_binary(&[0xC0, 0x00], &[0xD0, 0x00])?;
                    "ok".to_owned()
                }
                _ => format!("err:unknown command {:?}", truncate(&text, 32)),
            }
        };
        ws.send(reply)?;
        Ok(())
    }

    async fn alarm(&mut self, info: AlarmInfo) -> HandlerResult<()> {
        let storage = self.state.storage();
        let fail_below: u32 = storage.get_json(ALARM_FAIL_BELOW)?.unwrap_or(0);
        if info.retry_count < fail_below {
            return Err(format!("alarm attempt {} failing on request", info.retry_count).into());
        }
        storage.put_json("alarm_fired", &info.retry_count)?;
        self.state
            .broadcast(format!("alarm:{}", info.retry_count), None, None);
        Ok(())
    }

    /// `echo` → its arguments; `whoami` → the object's name; `id` → its
    /// id; `abort` aborts the object with its arguments as the reason; `forward` `{"to", "method", "args"}` → calls another Bench and
    /// returns its answer (what the call-chain tests use).
    async fn rpc(
        &mut self,
        method: &str,
        args: serde_json::Value,
    ) -> HandlerResult<serde_json::Value> {
        match method {
            "echo" => Ok(args),
            "whoami" => Ok(self.state.name().into()),
            "id" => Ok(self.state.id().into()),
            "abort" => self.state.abort(&args.to_string()),
            "forward" => {
                let field = |key: &str| args.get(key).cloned().unwrap_or_default();
                let to = field("to");
                let method = field("method");
                let (Some(to), Some(method)) = (to.as_str(), method.as_str()) else {
                    return Err("forward needs \"to\" and \"method\"".into());
                };
                self.call_bench(to, method, &field("args").to_string())
                    .await
            }
            other => Err(format!("no rpc method {other:?}").into()),
        }
    }

    async fn websocket_close(
        &mut self,
        ws: WebSocket,
        code: u16,
        _reason: String,
        _was_clean: bool,
    ) -> HandlerResult<()> {
        let tags = ws.tags()?;
        if tags.iter().any(|t| t == "panic-on-close") {
            panic!("panicked on close, as the socket's tag asks");
        }
        if tags.iter().any(|t| t == "announce-close") {
            self.state.broadcast(format!("closed:{code}"), None, None);
        }
        Ok(())
    }

    async fn websocket_error(&mut self, _ws: WebSocket, error: String) -> HandlerResult<()> {
        self.last_error = error;
        Ok(())
    }
}

impl Bench {
    /// Every socket's tags and attachment: what a handler that reads the
    /// whole room after a wake sees.
    fn roster(&self) -> HandlerResult<String> {
        let mut lines = Vec::new();
        for ws in self.state.get_websockets(None) {
            let attachment = ws.deserialize_attachment::<String>()?.unwrap_or_default();
            lines.push(format!("{}={attachment}", ws.tags()?.join("+")));
        }
        lines.sort_unstable();
        Ok(lines.join(","))
    }

    async fn call_bench(
        &self,
        to: &str,
        method: &str,
        args: &str,
    ) -> HandlerResult<serde_json::Value> {
        let args: serde_json::Value = serde_json::from_str(args)?;
        let bench = self.env.namespace("BENCH")?;
        let stub = bench.get(&bench.id_from_name(to)?);
        Ok(stub.call(method, &args).await?)
    }

    async fn increment_counter(&self, name: &str) -> HandlerResult<String> {
        let counters = self.env.namespace("COUNTERS")?;
        let stub = counters.get(&counters.id_from_name(name)?);
        let response = stub.fetch(Request::new("POST", "/")).await?;
        Ok(String::from_utf8_lossy(&response.body).into_owned())
    }

    async fn fetch_status(
        &self,
        namespace: &str,
        name: &str,
        method: &str,
        path: &str,
    ) -> HandlerResult<String> {
        let namespace = self.env.namespace(namespace)?;
        let stub = namespace.get(&namespace.id_from_name(name)?);
        let response = stub.fetch(Request::new(method, path)).await?;
        let body = String::from_utf8_lossy(&response.body);
        Ok(format!("{} {body}", response.status))
    }

    fn websocket_event_timeout(&self) -> String {
        match self.state.get_hibernatable_websocket_event_timeout() {
            Some(timeout) => timeout.as_millis().to_string(),
            None => "none".to_owned(),
        }
    }

    fn set_alarm(&self, fail_below: u32, in_ms: u64) -> HandlerResult<String> {
        let storage = self.state.storage();
        storage.put_json(ALARM_FAIL_BELOW, &fail_below)?;
        storage.set_alarm(SystemTime::now() + Duration::from_millis(in_ms))?;
        Ok("ok".to_owned())
    }
}

fn unix_ms(at: SystemTime) -> u128 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis())
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
