//! A JavaScript class instance as a worker object: each handler calls the
//! class's method and drives the promise it returns, running the
//! engine's jobs and awaiting the host work the script waits for (calls
//! to other objects, timers) until the promise settles or the handler's
//! time runs out.

use super::bridge::{ObjectTurn, Spawned, Turn};
use super::{describe_error, App};
use crate::instance::{DynObject, HandlerTimedOut, LocalFuture};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use rquickjs::{ArrayBuffer, Ctx, Function, Object, Persistent, Value};
use std::rc::Rc;
use std::time::{Duration, Instant};
use torpor_sdk::{AlarmInfo, Env, HandlerResult, Message, Request, Response, State, WebSocket};

pub(crate) struct JsObject {
    app: Rc<App>,
    class: String,
    /// An object of the app's front: its instance is the default export,
    /// and a fetch goes to its `fetch(request, env, ctx)`.
    front: bool,
    state: State,
    env: Env,
    /// The JS instance, made on the first event (so that a constructor
    /// that throws fails that event, as a handler would).
    instance: Option<Persistent<Object<'static>>>,
    /// Host work the script started and has not seen finish.
    pending: FuturesUnordered<Spawned>,
}

/// A settled promise, or one still waiting.
enum Settled<T> {
    Done(HandlerResult<T>),
    Waiting,
}

impl JsObject {
    pub(crate) fn new(app: Rc<App>, class: String, state: State, env: Env) -> JsObject {
        JsObject {
            app,
            class,
            front: false,
            state,
            env,
            instance: None,
            pending: FuturesUnordered::new(),
        }
    }

    /// An object that runs one request through the app's default export.
    pub(crate) fn front(app: Rc<App>, state: State, env: Env) -> JsObject {
        JsObject {
            front: true,
            ..JsObject::new(app, "default".to_owned(), state, env)
        }
    }

    /// Calls `start` on the instance (made first if need be) and drives
    /// what it returns to a value `finish` converts.
    async fn run<T: 'static>(
        &mut self,
        limit: Duration,
        upgrade: Option<Request>,
        start: impl for<'js> FnOnce(
            &Ctx<'js>,
            &Object<'js>,
            Object<'js>,
        ) -> rquickjs::Result<Value<'js>>,
        finish: impl for<'js> Fn(&Ctx<'js>, Value<'js>) -> rquickjs::Result<T>,
    ) -> HandlerResult<T> {
        let deadline = Instant::now() + limit;
        let mut turn = Turn {
            object: Some(ObjectTurn {
                state: self.state.clone(),
                upgrade,
            }),
            env: self.env.clone(),
            spawned: Vec::new(),
            awaiting: self.pending.len(),
            aborted: None,
        };
        let app = self.app.clone();
        let class = self.class.clone();
        let instance = self.instance.clone();
        let state = self.state.clone();
        let front = self.front;
        let (started, back) = app.turn(deadline, turn, |ctx| {
            let started = (|| {
                let api = app.api.clone().restore(ctx)?;
                let object = match instance {
                    Some(object) => object.restore(ctx)?,
                    None if front => {
                        let exports = app.exports.clone().restore(ctx)?;
                        exports.get("default")?
                    }
                    None => {
                        let exports = app.exports.clone().restore(ctx)?;
                        let constructor: Value = exports.get(class.as_str())?;
                        let env = app.env.clone().restore(ctx)?;
                        let construct: Function = api.get("construct")?;
                        construct.call((constructor, state.id(), state.name(), env))?
                    }
                };
                let promise = start(ctx, &api, object.clone())?;
                Ok::<_, rquickjs::Error>((
                    Persistent::save(ctx, object),
                    Persistent::save(ctx, promise),
                ))
            })();
            // Described here, while the exception is the context's.
            started.map_err(|e| describe_error(ctx, e))
        });
        turn = back;
        let (object, promise) = match started {
            Ok(pair) => pair,
            Err(message) => {
                if let Some(reason) = turn.aborted.take() {
                    self.state.abort(&reason);
                }
                if Instant::now() >= deadline {
                    return Err(Box::new(HandlerTimedOut));
                }
                return Err(message.into());
            }
        };
        self.instance = Some(object);
        self.pending.extend(turn.spawned.drain(..));
        if let Some(reason) = turn.aborted.take() {
            self.state.abort(&reason);
        }
        loop {
            turn.awaiting = self.pending.len();
            let (settled, back) = app.turn(deadline, turn, |ctx| -> Settled<T> {
                let value = match promise.clone().restore(ctx) {
                    Ok(value) => value,
                    Err(e) => return Settled::Done(Err(e.to_string().into())),
                };
                let Some(promise) = value.as_promise() else {
                    return Settled::Done(
                        finish(ctx, value).map_err(|e| describe_error(ctx, e).into()),
                    );
                };
                match promise.result::<Value>() {
                    None => Settled::Waiting,
                    Some(Ok(value)) => {
                        Settled::Done(finish(ctx, value).map_err(|e| describe_error(ctx, e).into()))
                    }
                    Some(Err(e)) => Settled::Done(Err(describe_error(ctx, e).into())),
                }
            });
            turn = back;
            self.pending.extend(turn.spawned.drain(..));
            if let Some(reason) = turn.aborted.take() {
                self.state.abort(&reason);
            }
            match settled {
                Settled::Done(Ok(value)) => {
                    self.start_pending(deadline, &mut turn);
                    return Ok(value);
                }
                Settled::Done(Err(error)) => {
                    if Instant::now() >= deadline {
                        return Err(Box::new(HandlerTimedOut));
                    }
                    return Err(error);
                }
                // An interrupt inside a promise job leaves the promise
                // pending rather than rejected.
                Settled::Waiting if Instant::now() >= deadline => {
                    return Err(Box::new(HandlerTimedOut));
                }
                Settled::Waiting => {}
            }
            let Some(completion) = self.pending.next().await else {
                return Err(format!(
                    "{}: the handler's promise can never settle (it awaits nothing Torpor is running)",
                    self.class
                )
                .into());
            };
            turn.awaiting = self.pending.len();
            let (resolved, back) = app.turn(deadline, turn, |ctx| {
                completion(ctx).map_err(|e| describe_error(ctx, e))
            });
            turn = back;
            self.pending.extend(turn.spawned.drain(..));
            if let Err(error) = resolved {
                if Instant::now() >= deadline {
                    return Err(Box::new(HandlerTimedOut));
                }
                return Err(error.into());
            }
        }
    }

    /// Polls, once, the host work the handler started but did not await
    /// (a call it fires and forgets, a timer under `waitUntil`), so that
    /// a call is made now, not at this instance's next event; what
    /// finishes at once is handed to the script.
    fn start_pending(&mut self, deadline: Instant, turn: &mut Turn) {
        use futures_util::FutureExt;
        let app = self.app.clone();
        while Instant::now() < deadline {
            let Some(Some(completion)) = self.pending.next().now_or_never() else {
                break;
            };
            turn.awaiting = self.pending.len();
            let taken = std::mem::replace(turn, idle_turn(&self.env));
            let (_, back) = app.turn(deadline, taken, |ctx| completion(ctx).is_ok());
            *turn = back;
            self.pending.extend(turn.spawned.drain(..));
        }
    }

    fn websocket_limit(&self) -> Duration {
        self.state
            .get_hibernatable_websocket_event_timeout()
            .unwrap_or(self.app.handler_timeout)
    }
}

fn idle_turn(env: &Env) -> Turn {
    Turn {
        object: None,
        env: env.clone(),
        spawned: Vec::new(),
        awaiting: 0,
        aborted: None,
    }
}

fn call<'js>(
    api: &Object<'js>,
    name: &str,
    args: impl rquickjs::function::IntoArgs<'js>,
) -> rquickjs::Result<Value<'js>> {
    let f: Function = api.get(name)?;
    f.call(args)
}

fn undefined<'js>(_ctx: &Ctx<'js>, _value: Value<'js>) -> rquickjs::Result<()> {
    Ok(())
}

impl DynObject for JsObject {
    fn is_stateless(&self) -> bool {
        self.front
    }

    fn fetch(&mut self, request: Request) -> LocalFuture<'_, HandlerResult<Response>> {
        Box::pin(async move {
            let host = request.header("host").unwrap_or("localhost").to_owned();
            let url = format!("http://{host}{}", request.uri());
            let method = request.method().to_owned();
            let headers: Vec<Vec<String>> = request
                .headers()
                .iter()
                .map(|(n, v)| vec![n.clone(), String::from_utf8_lossy(v).into_owned()])
                .collect();
            let body = request.body().clone();
            let upgrade_id = request.upgrade_id().map(|id| id.to_string());
            let upgrade = request.is_websocket_upgrade().then_some(request);
            let limit = self.app.handler_timeout;
            let front = self.front;
            let env = self.app.env.clone();
            let parts = self
                .run(
                    limit,
                    upgrade,
                    move |ctx, api, object| {
                        let body = if body.is_empty() {
                            Value::new_null(ctx.clone())
                        } else {
                            ArrayBuffer::new(ctx.clone(), body.to_vec())?.into_value()
                        };
                        if front {
                            let env = env.restore(ctx)?;
                            return call(
                                api,
                                "front",
                                (object, env, method, url, headers, body, upgrade_id),
                            );
                        }
                        call(
                            api,
                            "fetch",
                            (object, method, url, headers, body, upgrade_id),
                        )
                    },
                    response_parts,
                )
                .await?;
            Ok(parts)
        })
    }

    fn websocket_message(
        &mut self,
        ws: WebSocket,
        message: Message,
    ) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(async move {
            let id = self.state.id().to_owned();
            let limit = self.websocket_limit();
            self.run(
                limit,
                None,
                move |ctx, api, object| {
                    let data = match message {
                        Message::Text(text) => {
                            rquickjs::String::from_str(ctx.clone(), &text)?.into_value()
                        }
                        Message::Binary(bytes) => {
                            ArrayBuffer::new(ctx.clone(), bytes.to_vec())?.into_value()
                        }
                    };
                    call(
                        api,
                        "webSocketMessage",
                        (object, id, ws.id().to_string(), data),
                    )
                },
                undefined,
            )
            .await
        })
    }

    fn websocket_close(
        &mut self,
        ws: WebSocket,
        code: u16,
        reason: String,
        was_clean: bool,
    ) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(async move {
            let id = self.state.id().to_owned();
            let limit = self.websocket_limit();
            self.run(
                limit,
                None,
                move |_ctx, api, object| {
                    call(
                        api,
                        "webSocketClose",
                        (object, id, ws.id().to_string(), code, reason, was_clean),
                    )
                },
                undefined,
            )
            .await
        })
    }

    fn websocket_error(
        &mut self,
        ws: WebSocket,
        error: String,
    ) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(async move {
            let id = self.state.id().to_owned();
            let limit = self.websocket_limit();
            self.run(
                limit,
                None,
                move |_ctx, api, object| {
                    call(
                        api,
                        "webSocketError",
                        (object, id, ws.id().to_string(), error),
                    )
                },
                undefined,
            )
            .await
        })
    }

    fn alarm(&mut self, info: AlarmInfo) -> LocalFuture<'_, HandlerResult<()>> {
        Box::pin(async move {
            let limit = self.app.handler_timeout;
            self.run(
                limit,
                None,
                move |_ctx, api, object| {
                    call(api, "alarm", (object, info.retry_count, info.is_retry))
                },
                undefined,
            )
            .await
        })
    }

    fn rpc<'a>(
        &'a mut self,
        method: &'a str,
        args: serde_json::Value,
    ) -> LocalFuture<'a, HandlerResult<serde_json::Value>> {
        Box::pin(async move {
            let limit = self.app.handler_timeout;
            let args = args.to_string();
            let method = method.to_owned();
            let json = self
                .run(
                    limit,
                    None,
                    move |_ctx, api, object| call(api, "rpc", (object, method, args)),
                    |_ctx, value| value.get::<String>(),
                )
                .await?;
            if json.is_empty() {
                return Ok(serde_json::Value::Null);
            }
            Ok(serde_json::from_str(&json)?)
        })
    }
}

/// `[status, headers, body, accepted]` from the prelude as a response.
fn response_parts<'js>(_ctx: &Ctx<'js>, value: Value<'js>) -> rquickjs::Result<Response> {
    let parts: rquickjs::Array = value.get()?;
    let status: u16 = parts.get(0)?;
    let headers: Vec<Vec<String>> = parts.get(1)?;
    let body: Option<ArrayBuffer> = parts.get(2)?;
    let accepted: bool = parts.get(3)?;
    let mut response = if status == 101 && accepted {
        Response::switching_protocols()
    } else {
        Response::status(status)
    };
    for pair in &headers {
        if let [name, value] = pair.as_slice() {
            response = response.with_header(name, value);
        }
    }
    if let Some(body) = body {
        response = response.with_body(Bytes::copy_from_slice(body.as_bytes().unwrap_or_default()));
    }
    Ok(response)
}
