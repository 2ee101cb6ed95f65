//! The host functions the prelude builds the Workers API on: each one a
//! call on the same `State`, `Storage`, `WebSocket` and `Env` a Rust object
//! uses, so gates, the event's transaction, hibernation and billing are the
//! SDK's.
//!
//! The functions are made once per app context and act on the event that
//! is running (the [`Turn`]): JavaScript runs for one object (or one front
//! request) at a time, and an object's `ctx` checks that it is the one
//! running before it acts, so a socket or `ctx` kept in a module variable
//! cannot reach into another object.

use bytes::Bytes;
use rquickjs::{Array, ArrayBuffer, Ctx, Exception, Function, Object, Persistent, Value};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use torpor_sdk::{
    Env, Error, ListOptions, Message, Request, SqlValue, State, WebSocket, WebSocketId,
};

/// What a finished host future does back in JavaScript: resolve or reject
/// the promise the script holds.
pub(super) type Completion = Box<dyn for<'js> FnOnce(&Ctx<'js>) -> rquickjs::Result<()>>;
/// Host work a script awaits (a call to an object, a timer).
pub(super) type Spawned = Pin<Box<dyn Future<Output = Completion>>>;

/// The event JavaScript is running for.
pub(super) struct Turn {
    /// The object, or `None` for the app's stateless front.
    pub object: Option<ObjectTurn>,
    /// The bindings calls go through.
    pub env: Env,
    /// Host work started during the turn, for the event's driver to await.
    pub spawned: Vec<Spawned>,
    /// Host work the object started in earlier turns and still awaits.
    pub awaiting: usize,
    /// `ctx.abort(reason)` was called: the driver resets the object once
    /// the script has unwound (never from inside a host function).
    pub aborted: Option<String>,
}

/// The running object's side of a [`Turn`].
pub(super) struct ObjectTurn {
    pub state: State,
    /// The request `fetch` is handling, while its upgrade may be accepted.
    pub upgrade: Option<Request>,
}

pub(super) type Current = Rc<RefCell<Option<Turn>>>;

/// Longest `console` line logged; the rest is cut.
const MAX_LOG_LINE_BYTES: usize = 8192;

/// Timers and calls one object may have under way at once: each holds
/// host memory the engine's limit does not count.
pub(super) const MAX_PENDING: usize = 10_000;

impl Turn {
    /// Queues host work, unless the object has too much under way.
    fn spawn(&mut self, ctx: &Ctx<'_>, work: Spawned) -> rquickjs::Result<()> {
        let pending = self.awaiting + self.spawned.len();
        if pending >= MAX_PENDING {
            return Err(Exception::throw_range(
                ctx,
                &format!("{pending} timers and calls under way, limit {MAX_PENDING}"),
            ));
        }
        self.spawned.push(work);
        Ok(())
    }
}

/// Makes the `native` object the prelude is given.
pub(super) fn natives<'js>(ctx: &Ctx<'js>, current: &Current) -> rquickjs::Result<Object<'js>> {
    let native = Object::new(ctx.clone())?;
    let cur = current.clone();
    let with_state = move |ctx: &Ctx<'js>| -> rquickjs::Result<State> {
        cur.borrow()
            .as_ref()
            .and_then(|t| t.object.as_ref().map(|o| o.state.clone()))
            .ok_or_else(|| {
                Exception::throw_type(ctx, "this runs only inside a Durable Object's handler")
            })
    };
    let state = Rc::new(with_state);

    native.set(
        "log",
        Function::new(ctx.clone(), |level: String, mut message: String| {
            // A script decides how much it logs, not how long a line is.
            if message.len() > MAX_LOG_LINE_BYTES {
                let mut end = MAX_LOG_LINE_BYTES;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
                message.push_str(" …(truncated)");
            }
            match level.as_str() {
                "error" => tracing::error!(target: "js", "{message}"),
                "warn" => tracing::warn!(target: "js", "{message}"),
                "debug" => tracing::debug!(target: "js", "{message}"),
                "trace" => tracing::trace!(target: "js", "{message}"),
                _ => tracing::info!(target: "js", "{message}"),
            }
        })?,
    )?;
    native.set(
        "utf8Encode",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, text: String| {
            ArrayBuffer::new(ctx, text.into_bytes())
        })?,
    )?;
    native.set(
        "utf8Decode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, data: ArrayBuffer<'js>, fatal: bool| -> rquickjs::Result<String> {
                let bytes = data.as_bytes().unwrap_or_default();
                match std::str::from_utf8(bytes) {
                    Ok(text) => Ok(text.to_owned()),
                    Err(_) if fatal => Err(Exception::throw_type(
                        &ctx,
                        "The encoded data was not valid for encoding utf-8",
                    )),
                    Err(_) => Ok(String::from_utf8_lossy(bytes).into_owned()),
                }
            },
        )?,
    )?;
    native.set(
        "randomBytes",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, len: usize| {
            let mut bytes = vec![0u8; len.min(65536)];
            getrandom::fill(&mut bytes)
                .map_err(|e| Exception::throw_internal(&ctx, &format!("no randomness: {e}")))?;
            ArrayBuffer::new(ctx, bytes)
        })?,
    )?;
    native.set(
        "digest",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, which: String, data: ArrayBuffer<'js>| {
                use sha2::Digest;
                let bytes = data.as_bytes().unwrap_or_default();
                let out: Vec<u8> = match which.as_str() {
                    "sha-1" => sha1::Sha1::digest(bytes).to_vec(),
                    "sha-256" => sha2::Sha256::digest(bytes).to_vec(),
                    "sha-384" => sha2::Sha384::digest(bytes).to_vec(),
                    "sha-512" => sha2::Sha512::digest(bytes).to_vec(),
                    other => {
                        return Err(Exception::throw_type(
                            &ctx,
                            &format!("digest: {other} is not supported by Torpor"),
                        ))
                    }
                };
                ArrayBuffer::new(ctx, out)
            },
        )?,
    )?;

    let cur = current.clone();
    native.set(
        "checkObject",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: String, what: String| -> rquickjs::Result<()> {
                let turn = cur.borrow();
                let running = turn
                    .as_ref()
                    .and_then(|t| t.object.as_ref())
                    .map(|o| o.state.id().to_owned());
                match running {
                    Some(running) if running == id => Ok(()),
                    Some(running) => Err(Exception::throw_type(
                        &ctx,
                        &format!(
                            "{what}: this belongs to object {id}, but the event running is object {running}'s"
                        ),
                    )),
                    None => Err(Exception::throw_type(
                        &ctx,
                        &format!("{what}: runs only inside the Durable Object's own handlers"),
                    )),
                }
            },
        )?,
    )?;

    let cur = current.clone();
    native.set(
        "accept",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, tags: Vec<String>| -> rquickjs::Result<String> {
                let mut turn = cur.borrow_mut();
                let Some(object) = turn.as_mut().and_then(|t| t.object.as_mut()) else {
                    return Err(Exception::throw_type(&ctx, "acceptWebSocket outside a handler"));
                };
                let Some(request) = object.upgrade.as_ref() else {
                    return Err(Exception::throw_type(
                        &ctx,
                        "acceptWebSocket: the request being handled is not a WebSocket upgrade (or its socket was accepted already)",
                    ));
                };
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                let ws = object
                    .state
                    .accept_websocket(request, &tags)
                    .map_err(|e| throw(&ctx, &e))?;
                object.upgrade = None;
                Ok(ws.id().to_string())
            },
        )?,
    )?;

    let st = state.clone();
    native.set(
        "websockets",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, tag: Option<String>| -> rquickjs::Result<Vec<String>> {
                let state = st(&ctx)?;
                Ok(state
                    .get_websockets(tag.as_deref())
                    .iter()
                    .map(|ws| ws.id().to_string())
                    .collect())
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "tags",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: String| -> rquickjs::Result<Vec<String>> {
                let ws = socket(&ctx, &st(&ctx)?, &id)?;
                ws.tags().map_err(|e| throw(&ctx, &e))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "send",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: String, data: Value<'js>| -> rquickjs::Result<()> {
                let ws = socket(&ctx, &st(&ctx)?, &id)?;
                let message = message_of(&ctx, data)?;
                ws.send(message).map_err(|e| throw(&ctx, &e))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "close",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: String, code: f64, reason: String| -> rquickjs::Result<()> {
                let ws = socket(&ctx, &st(&ctx)?, &id)?;
                let code = u16::try_from(code as i64).unwrap_or(0);
                if reason.len() > 123 {
                    return Err(Exception::throw_range(
                        &ctx,
                        &format!("close reason is {} bytes, limit 123", reason.len()),
                    ));
                }
                ws.close(code, &reason).map_err(|e| throw(&ctx, &e))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "attachment",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: String| -> rquickjs::Result<Option<String>> {
                let ws = socket(&ctx, &st(&ctx)?, &id)?;
                let value: Option<serde_json::Value> =
                    ws.deserialize_attachment().map_err(|e| throw(&ctx, &e))?;
                Ok(value.map(|v| v.to_string()))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "setAttachment",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: String, json: String| -> rquickjs::Result<()> {
                let ws = socket(&ctx, &st(&ctx)?, &id)?;
                let value: serde_json::Value = serde_json::from_str(&json)
                    .map_err(|e| Exception::throw_internal(&ctx, &e.to_string()))?;
                ws.serialize_attachment(&value).map_err(|e| throw(&ctx, &e))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "setAutoResponse",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, request: Option<String>, response: Option<String>| {
                let state = st(&ctx)?;
                match (request, response) {
                    (Some(request), Some(response)) => state
                        .set_websocket_auto_response(&request, &response)
                        .map_err(|e| throw(&ctx, &e)),
                    _ => {
                        state.clear_websocket_auto_response();
                        Ok(())
                    }
                }
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "autoResponse",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>| -> rquickjs::Result<Option<Vec<String>>> {
                Ok(match st(&ctx)?.get_websocket_auto_response() {
                    Some(torpor_sdk::AutoResponse::Text { request, response }) => {
                        Some(vec![request, response])
                    }
                    _ => None,
                })
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "autoResponseTimestamp",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, id: String| -> rquickjs::Result<Option<f64>> {
                let state = st(&ctx)?;
                let ws = socket(&ctx, &state, &id)?;
                Ok(state
                    .get_websocket_auto_response_timestamp(&ws)
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as f64))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "setEventTimeout",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, ms: f64| {
            let timeout =
                (ms.is_finite() && ms > 0.0).then(|| Duration::from_secs_f64(ms / 1000.0));
            st(&ctx)?
                .set_hibernatable_websocket_event_timeout(timeout)
                .map_err(|e| throw(&ctx, &e))
        })?,
    )?;
    let st = state.clone();
    native.set(
        "eventTimeout",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>| -> rquickjs::Result<Option<f64>> {
                Ok(st(&ctx)?
                    .get_hibernatable_websocket_event_timeout()
                    .map(|d| d.as_millis() as f64))
            },
        )?,
    )?;
    let cur = current.clone();
    native.set(
        "abort",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, reason: String| -> rquickjs::Result<()> {
                if let Some(turn) = cur.borrow_mut().as_mut() {
                    turn.aborted = Some(reason.clone());
                }
                // Uncatchable in spirit: the driver resets the object
                // whatever the script does with this error.
                Err(Exception::throw_message(
                    &ctx,
                    &format!("object aborted: {reason}"),
                ))
            },
        )?,
    )?;

    storage_natives(ctx, &native, &state)?;
    env_natives(ctx, &native, current)?;
    Ok(native)
}

fn storage_natives<'js, S>(
    ctx: &Ctx<'js>,
    native: &Object<'js>,
    state: &Rc<S>,
) -> rquickjs::Result<()>
where
    S: Fn(&Ctx<'js>) -> rquickjs::Result<State> + 'js,
{
    let st = state.clone();
    native.set(
        "kvGet",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, keys: Vec<String>| -> rquickjs::Result<Vec<Vec<String>>> {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let found = st(&ctx)?
                    .storage()
                    .get_many(&keys)
                    .map_err(|e| throw(&ctx, &e))?;
                Ok(found
                    .into_iter()
                    .map(|(k, v)| vec![k, String::from_utf8_lossy(&v).into_owned()])
                    .collect())
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "kvPut",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, keys: Vec<String>, values: Vec<String>| -> rquickjs::Result<()> {
                let entries: Vec<(&str, &[u8])> = keys
                    .iter()
                    .zip(&values)
                    .map(|(k, v)| (k.as_str(), v.as_bytes()))
                    .collect();
                st(&ctx)?
                    .storage()
                    .put_many(&entries)
                    .map_err(|e| throw(&ctx, &e))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "kvDelete",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, keys: Vec<String>| -> rquickjs::Result<usize> {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                st(&ctx)?
                    .storage()
                    .delete_many(&keys)
                    .map_err(|e| throw(&ctx, &e))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "kvList",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, options: Object<'js>| -> rquickjs::Result<Vec<Vec<String>>> {
                let limit: Option<f64> = options.get("limit")?;
                let options = ListOptions {
                    prefix: options.get("prefix")?,
                    start: options.get("start")?,
                    start_after: options.get("startAfter")?,
                    end: options.get("end")?,
                    reverse: options.get("reverse")?,
                    limit: limit.map(|l| l.clamp(1.0, usize::MAX as f64) as usize),
                };
                let found = st(&ctx)?
                    .storage()
                    .list(&options)
                    .map_err(|e| throw(&ctx, &e))?;
                Ok(found
                    .into_iter()
                    .map(|(k, v)| vec![k, String::from_utf8_lossy(&v).into_owned()])
                    .collect())
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "deleteAll",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            st(&ctx)?
                .storage()
                .delete_all()
                .map_err(|e| throw(&ctx, &e))
        })?,
    )?;
    let st = state.clone();
    native.set(
        "sqlExec",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, query: String, params: Vec<Value<'js>>| {
                let params = params
                    .into_iter()
                    .map(|v| sql_value(&ctx, v))
                    .collect::<rquickjs::Result<Vec<_>>>()?;
                let cursor = st(&ctx)?
                    .storage()
                    .sql()
                    .exec(&query, &params)
                    .map_err(|e| throw(&ctx, &e))?;
                let rows = Array::new(ctx.clone())?;
                for (i, row) in cursor.rows.iter().enumerate() {
                    let out = Array::new(ctx.clone())?;
                    for (j, value) in row.iter().enumerate() {
                        out.set(j, sql_to_js(&ctx, value)?)?;
                    }
                    rows.set(i, out)?;
                }
                let result = Array::new(ctx.clone())?;
                result.set(0, cursor.column_names.clone())?;
                result.set(1, rows)?;
                result.set(2, cursor.rows_read as f64)?;
                result.set(3, cursor.rows_written as f64)?;
                Ok::<_, rquickjs::Error>(result)
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "databaseSize",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| -> rquickjs::Result<f64> {
            let size = st(&ctx)?
                .storage()
                .sql()
                .database_size()
                .map_err(|e| throw(&ctx, &e))?;
            Ok(size as f64)
        })?,
    )?;
    let st = state.clone();
    native.set(
        "getAlarm",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>| -> rquickjs::Result<Option<f64>> {
                let at = st(&ctx)?
                    .storage()
                    .get_alarm()
                    .map_err(|e| throw(&ctx, &e))?;
                Ok(at
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as f64))
            },
        )?,
    )?;
    let st = state.clone();
    native.set(
        "setAlarm",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, ms: Option<f64>| {
            let storage = st(&ctx)?.storage();
            let set = match ms {
                Some(ms) => {
                    storage.set_alarm(UNIX_EPOCH + Duration::from_millis(ms.max(0.0) as u64))
                }
                None => storage.delete_alarm(),
            };
            set.map_err(|e| throw(&ctx, &e))
        })?,
    )?;
    // transactionSync and transaction: a savepoint inside the event's own
    // transaction, through the SDK's storage backend.
    let st = state.clone();
    native.set(
        "savepoint",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>| {
            let state = st(&ctx)?;
            torpor_sdk::host::Host::storage(&*host_of(&state))
                .and_then(|b| b.savepoint())
                .map_err(|e| throw(&ctx, &e))
        })?,
    )?;
    let st = state.clone();
    native.set(
        "release",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, commit: bool| {
            let state = st(&ctx)?;
            torpor_sdk::host::Host::storage(&*host_of(&state))
                .and_then(|b| b.release(commit))
                .map_err(|e| throw(&ctx, &e))
        })?,
    )?;
    Ok(())
}

fn env_natives<'js>(
    ctx: &Ctx<'js>,
    native: &Object<'js>,
    current: &Current,
) -> rquickjs::Result<()> {
    let cur = current.clone();
    let env = Rc::new(move |ctx: &Ctx<'js>| -> rquickjs::Result<Env> {
        cur.borrow().as_ref().map(|t| t.env.clone()).ok_or_else(|| {
            Exception::throw_type(
                ctx,
                "bindings are used inside a request or an object's handler",
            )
        })
    });
    let e = env.clone();
    native.set(
        "idFromName",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, ns: String, name: String| -> rquickjs::Result<String> {
                let namespace = e(&ctx)?.namespace(&ns).map_err(|err| throw(&ctx, &err))?;
                let id = namespace
                    .id_from_name(&name)
                    .map_err(|err| throw(&ctx, &err))?;
                Ok(id.to_string())
            },
        )?,
    )?;
    let e = env.clone();
    native.set(
        "idFromString",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, ns: String, text: String| -> rquickjs::Result<String> {
                let namespace = e(&ctx)?.namespace(&ns).map_err(|err| throw(&ctx, &err))?;
                let id = namespace
                    .id_from_string(&text)
                    .map_err(|err| throw(&ctx, &err))?;
                Ok(id.to_string())
            },
        )?,
    )?;
    let e = env.clone();
    native.set(
        "newUniqueId",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, ns: String| -> rquickjs::Result<String> {
                let namespace = e(&ctx)?.namespace(&ns).map_err(|err| throw(&ctx, &err))?;
                let id = namespace.new_unique_id().map_err(|err| throw(&ctx, &err))?;
                Ok(id.to_string())
            },
        )?,
    )?;
    let cur = current.clone();
    native.set(
        "sleep",
        Function::new(ctx.clone(), move |ctx: Ctx<'js>, ms: f64| {
            let (promise, resolve, _reject) = ctx.promise()?;
            let mut turn = cur.borrow_mut();
            let Some(turn) = turn.as_mut() else {
                return Err(Exception::throw_type(
                    &ctx,
                    "timers run only inside a request or an object's handler",
                ));
            };
            let resolve = Persistent::save(&ctx, resolve);
            // A day at most; a timer still waiting when its instance
            // hibernates goes with it.
            let delay = Duration::from_secs_f64((ms.clamp(0.0, 86_400_000.0)) / 1000.0);
            turn.spawn(
                &ctx,
                Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    Box::new(move |ctx: &Ctx<'_>| resolve.restore(ctx)?.call::<_, ()>(()))
                        as Completion
                }),
            )?;
            Ok::<_, rquickjs::Error>(promise)
        })?,
    )?;
    let cur = current.clone();
    native.set(
        "call",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>,
                  ns: String,
                  id: String,
                  name: Option<String>,
                  rpc: Option<String>,
                  parts: Array<'js>| {
                // [method, uri, headers, body, upgrade]
                let method: String = parts.get(0)?;
                let uri: String = parts.get(1)?;
                let headers: Vec<Vec<String>> = parts.get(2)?;
                let body: Option<ArrayBuffer<'js>> = parts.get(3)?;
                let (promise, resolve, reject) = ctx.promise()?;
                let mut turn = cur.borrow_mut();
                let Some(turn) = turn.as_mut() else {
                    return Err(Exception::throw_type(
                        &ctx,
                        "stubs are called only inside a request or an object's handler",
                    ));
                };
                let namespace = turn.env.namespace(&ns).map_err(|err| throw(&ctx, &err))?;
                let object_id = namespace
                    .id_from_string(&id)
                    .map_err(|err| throw(&ctx, &err))?;
                let object_id = match name.as_deref() {
                    Some(name) => namespace
                        .id_from_name(name)
                        .map_err(|err| throw(&ctx, &err))?,
                    None => object_id,
                };
                let stub = namespace.get(&object_id);
                let headers = headers
                    .into_iter()
                    .filter_map(|pair| match <[String; 2]>::try_from(pair) {
                        Ok([name, value]) => Some((name.to_ascii_lowercase(), Bytes::from(value))),
                        Err(_) => None,
                    })
                    .collect();
                let body = body.map_or_else(Bytes::new, |b| {
                    Bytes::copy_from_slice(b.as_bytes().unwrap_or_default())
                });
                // A request that carries the upgrade the front is handling
                // hands that socket on to the callee.
                let upgrade: Option<String> = parts.get(4)?;
                let upgrade = upgrade.as_deref().and_then(parse_socket_id);
                let request = Request::from_parts(method, uri, headers, body, upgrade);
                let resolve = Persistent::save(&ctx, resolve);
                let reject = Persistent::save(&ctx, reject);
                turn.spawn(
                    &ctx,
                    Box::pin(async move {
                        let answer = match rpc {
                            Some(method) => rpc_call(&stub, &method, request.body()).await,
                            None => stub.fetch(request).await,
                        };
                        Box::new(move |ctx: &Ctx<'_>| match answer {
                            Ok(response) => {
                                let parts = Array::new(ctx.clone())?;
                                parts.set(0, response.status)?;
                                let headers: Vec<Vec<String>> = response
                                    .headers
                                    .iter()
                                    .map(|(n, v)| {
                                        vec![n.clone(), String::from_utf8_lossy(v).into_owned()]
                                    })
                                    .collect();
                                parts.set(1, headers)?;
                                parts.set(
                                    2,
                                    ArrayBuffer::new(ctx.clone(), response.body.to_vec())?,
                                )?;
                                parts.set(3, response.status == 101)?;
                                resolve.restore(ctx)?.call::<_, ()>((parts,))
                            }
                            Err(err) => {
                                let error = Exception::from_message(ctx.clone(), &err.to_string())?;
                                reject.restore(ctx)?.call::<_, ()>((error,))
                            }
                        }) as Completion
                    }),
                )?;
                Ok::<_, rquickjs::Error>(promise)
            },
        )?,
    )?;
    Ok(())
}

/// An RPC with the JSON the prelude encoded, answered as a response whose
/// body is the result's JSON, so both kinds of call resolve alike.
async fn rpc_call(
    stub: &torpor_sdk::Stub,
    method: &str,
    args: &[u8],
) -> torpor_sdk::Result<torpor_sdk::Response> {
    let args: serde_json::Value = if args.is_empty() {
        serde_json::Value::Array(Vec::new())
    } else {
        serde_json::from_slice(args)?
    };
    let result: serde_json::Value = stub.call(method, &args).await?;
    Ok(torpor_sdk::Response::status(200).with_body(serde_json::to_vec(&result)?))
}

/// The SDK's host behind a `State`, for the calls `Storage` keeps to
/// closures (savepoints).
fn host_of(state: &State) -> Rc<dyn torpor_sdk::host::Host> {
    state.host()
}

/// An SDK error as the JavaScript exception Durable Objects throws for it.
pub(super) fn throw(ctx: &Ctx<'_>, err: &Error) -> rquickjs::Error {
    let message = err.to_string();
    match err {
        Error::AttachmentTooLarge { .. }
        | Error::AutoResponseTooLarge { .. }
        | Error::InvalidTags(_)
        | Error::EventTimeoutTooLong { .. } => Exception::throw_range(ctx, &message),
        Error::NotAnUpgrade | Error::InvalidCloseCode(_) | Error::InvalidId(_) => {
            Exception::throw_type(ctx, &message)
        }
        _ => Exception::throw_message(ctx, &message),
    }
}

fn socket(ctx: &Ctx<'_>, state: &State, id: &str) -> rquickjs::Result<WebSocket> {
    let id = parse_socket_id(id)
        .ok_or_else(|| Exception::throw_type(ctx, &format!("not a socket handle: {id}")))?;
    Ok(WebSocket::new(id, state.host()))
}

/// A socket handle as [`WebSocketId`]'s `Display` writes it.
pub(super) fn parse_socket_id(text: &str) -> Option<WebSocketId> {
    let mut parts = text.split(':');
    let edge = parts.next()?.parse().ok()?;
    let slot = parts.next()?.parse().ok()?;
    let generation = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then(|| WebSocketId::from_parts(edge, slot, generation))
}

fn message_of<'js>(ctx: &Ctx<'js>, data: Value<'js>) -> rquickjs::Result<Message> {
    if let Some(text) = data.as_string() {
        return Ok(Message::Text(text.to_string()?));
    }
    match ArrayBuffer::from_value(data) {
        Some(buffer) => Ok(Message::Binary(Bytes::copy_from_slice(
            buffer.as_bytes().unwrap_or_default(),
        ))),
        None => Err(Exception::throw_type(
            ctx,
            "send() takes a string, an ArrayBuffer or a typed array",
        )),
    }
}

fn sql_value<'js>(ctx: &Ctx<'js>, value: Value<'js>) -> rquickjs::Result<SqlValue> {
    if value.is_null() || value.is_undefined() {
        return Ok(SqlValue::Null);
    }
    if let Some(b) = value.as_bool() {
        return Ok(SqlValue::Integer(b.into()));
    }
    if let Some(i) = value.as_int() {
        return Ok(SqlValue::Integer(i.into()));
    }
    if let Some(f) = value.as_float() {
        // Whole numbers are SQLite integers, as Durable Objects binds them.
        if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            return Ok(SqlValue::Integer(f as i64));
        }
        return Ok(SqlValue::Real(f));
    }
    if let Some(s) = value.as_string() {
        return Ok(SqlValue::Text(s.to_string()?));
    }
    if let Some(buffer) = ArrayBuffer::from_value(value.clone()) {
        return Ok(SqlValue::Blob(
            buffer.as_bytes().unwrap_or_default().to_vec(),
        ));
    }
    Err(Exception::throw_type(
        ctx,
        &format!(
            "a SQL parameter must be a string, number, boolean, null or ArrayBuffer, not {}",
            value.type_name()
        ),
    ))
}

fn sql_to_js<'js>(ctx: &Ctx<'js>, value: &SqlValue) -> rquickjs::Result<Value<'js>> {
    Ok(match value {
        SqlValue::Null => Value::new_null(ctx.clone()),
        SqlValue::Integer(i) => Value::new_number(ctx.clone(), *i as f64),
        SqlValue::Real(f) => Value::new_number(ctx.clone(), *f),
        SqlValue::Text(s) => rquickjs::String::from_str(ctx.clone(), s)?.into_value(),
        SqlValue::Blob(b) => ArrayBuffer::new(ctx.clone(), b.clone())?.into_value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_ids_round_trip_through_their_text() {
        let id = WebSocketId::from_parts(2, 77, 9);
        assert_eq!(parse_socket_id(&id.to_string()), Some(id));
        assert_eq!(parse_socket_id("1:2"), None);
        assert_eq!(parse_socket_id("1:2:3:4"), None);
        assert_eq!(parse_socket_id("a:2:3"), None);
    }
}
