//! The worker process: one connection to the edge, one mailbox and task per
//! live object, hibernation of idle objects and exit when none is live.

use crate::host::{to_id, Calls, Identity, ObjectHost, Shared, StorageSpec};
use crate::ids::NamespaceKey;
use crate::instance::DynObject;
use crate::outbox::Outbox;
use crate::registry::{Factory, Registry};
use crate::storage::StorageLimits;
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use torpor_proto::ipc::{self, ToEdge, ToWorker};
use torpor_proto::SocketHandle;
use torpor_sdk::{AlarmInfo, Env, Message, Request, Response, State, WebSocket};
use tracing::{debug, info, warn};

/// How a worker is set up; the supervisor passes these as flags.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The edge's IPC socket.
    pub socket_path: PathBuf,
    /// This worker's index among the node's workers.
    pub index: u16,
    /// Idle time after which an object is dropped from memory.
    pub hibernate_after: Duration,
    /// Time without a live object after which the worker exits.
    pub idle_exit: Duration,
    /// Longest a handler may run before its event fails.
    pub handler_timeout: Duration,
    /// Largest serialized attachment.
    pub max_attachment_bytes: usize,
    /// Objects keep their databases under `data_dir/<class>/`; the node
    /// secret is there too.
    pub data_dir: PathBuf,
    /// Namespaces objects may address through `Env`.
    pub namespaces: Vec<String>,
}

/// Why a worker stopped other than by being told to.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Talking to the edge failed.
    #[error("edge connection: {0}")]
    Io(#[from] std::io::Error),
    /// The edge sent a frame that does not decode.
    #[error("edge sent a bad frame: {0}")]
    Decode(#[from] ipc::DecodeError),
}

enum Event {
    Fetch {
        request_id: u64,
        request: Request,
        upgrade: Option<SocketHandle>,
        /// An RPC from another object, by method.
        rpc: Option<String>,
        chain: Vec<String>,
    },
    Message {
        handle: SocketHandle,
        is_text: bool,
        auto_response_at_ms: u64,
        payload: Bytes,
    },
    Closed {
        handle: SocketHandle,
        code: u16,
        reason: String,
        was_clean: bool,
    },
    Alarm {
        retry_count: u32,
    },
}

/// Runs a worker until the edge tells it to exit (returns `Ok`) or goes
/// away (returns `Ok` too: with no edge there is nothing to serve).
pub fn run(registry: Registry, options: WorkerOptions) -> Result<(), WorkerError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, serve(Rc::new(registry), options))
}

async fn serve(registry: Rc<Registry>, options: WorkerOptions) -> Result<(), WorkerError> {
    let stream = UnixStream::connect(&options.socket_path).await?;
    let (mut reader, writer) = stream.into_split();
    let outbox = Rc::new(Outbox::default());
    let secret = crate::ids::load_or_create_secret(&options.data_dir)?;
    let keys = options
        .namespaces
        .iter()
        .map(|name| (name.clone(), NamespaceKey::derive(&secret, name)))
        .collect();
    let shared = Shared {
        outbox: outbox.clone(),
        keys: Rc::new(keys),
        calls: Rc::new(Calls::default()),
    };
    outbox.push(&ToEdge::Hello {
        version: ipc::VERSION,
        worker: options.index,
        pid: std::process::id(),
    });
    let writer_outbox = outbox.clone();
    let writer_task = tokio::task::spawn_local(async move {
        if let Err(err) = writer_outbox.drain_into(writer).await {
            warn!(%err, "writing to edge failed");
        }
    });
    info!(index = options.index, "worker connected");

    let mut objects: HashMap<u32, mpsc::UnboundedSender<Event>> = HashMap::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut idle_exit_asked = false;
    loop {
        let read = if objects.is_empty() && !idle_exit_asked {
            match tokio::time::timeout(options.idle_exit, reader.read_buf(&mut buf)).await {
                Ok(read) => read?,
                Err(_) => {
                    debug!("no live object, asking to exit");
                    outbox.push(&ToEdge::IdleExit);
                    idle_exit_asked = true;
                    continue;
                }
            }
        } else {
            reader.read_buf(&mut buf).await?
        };
        if read == 0 {
            info!("edge closed the connection");
            break;
        }
        while let Some(frame) = ipc::split_frame(&mut buf)? {
            match ToWorker::decode(frame)? {
                ToWorker::Activate {
                    object,
                    namespace,
                    class,
                    id,
                    name,
                    auto_response,
                    sockets,
                } => {
                    idle_exit_asked = false;
                    let storage = StorageSpec {
                        path: database_path(&options.data_dir, &class, &id),
                        limits: StorageLimits::default(),
                    };
                    let identity = Identity {
                        object,
                        namespace,
                        class: class.clone(),
                        id,
                        name,
                    };
                    let host = Rc::new(ObjectHost::new(
                        identity,
                        options.max_attachment_bytes,
                        &shared,
                        auto_response,
                        sockets,
                        storage,
                    ));
                    let (tx, rx) = mpsc::unbounded_channel();
                    let factory = registry.factory(&class);
                    tokio::task::spawn_local(object_task(
                        rx,
                        host,
                        factory,
                        options.clone(),
                        outbox.clone(),
                    ));
                    objects.insert(object, tx);
                }
                ToWorker::Fetch {
                    object,
                    request_id,
                    upgrade,
                    method,
                    uri,
                    headers,
                    body,
                    rpc,
                    chain,
                } => {
                    let request =
                        Request::from_parts(method, uri, headers, body, upgrade.map(to_id));
                    deliver(
                        &objects,
                        object,
                        Event::Fetch {
                            request_id,
                            request,
                            upgrade,
                            rpc,
                            chain,
                        },
                    );
                }
                ToWorker::CallResult {
                    call_id,
                    status,
                    headers,
                    body,
                } => shared.calls.answer(
                    call_id,
                    Response {
                        status,
                        headers,
                        body,
                    },
                ),
                ToWorker::Message {
                    object,
                    handle,
                    is_text,
                    auto_response_at_ms,
                    payload,
                } => deliver(
                    &objects,
                    object,
                    Event::Message {
                        handle,
                        is_text,
                        auto_response_at_ms,
                        payload,
                    },
                ),
                ToWorker::Closed {
                    object,
                    handle,
                    code,
                    reason,
                    was_clean,
                } => deliver(
                    &objects,
                    object,
                    Event::Closed {
                        handle,
                        code,
                        reason,
                        was_clean,
                    },
                ),
                ToWorker::Alarm {
                    object,
                    retry_count,
                } => deliver(&objects, object, Event::Alarm { retry_count }),
                ToWorker::Evict { object } => {
                    // Dropping the sender ends the object's task, which
                    // drops the instance: that is hibernation.
                    objects.remove(&object);
                }
                ToWorker::Shutdown => {
                    info!("idle, exiting");
                    writer_task.abort();
                    return Ok(());
                }
            }
        }
    }
    writer_task.abort();
    Ok(())
}

/// `data_dir/<class>/<id>.sqlite`. Ids are hex, but every byte outside
/// `[A-Za-z0-9_-]` is still written as `%XX`, so that nothing the edge sends
/// can leave its directory or collide with another.
fn database_path(data_dir: &std::path::Path, class: &str, name: &str) -> PathBuf {
    let mut file = String::with_capacity(name.len() + 7);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            file.push(char::from(byte));
        } else {
            file.push_str(&format!("%{byte:02X}"));
        }
    }
    file.push_str(".sqlite");
    data_dir.join(class).join(file)
}

fn deliver(objects: &HashMap<u32, mpsc::UnboundedSender<Event>>, object: u32, event: Event) {
    match objects.get(&object) {
        Some(mailbox) => {
            if mailbox.send(event).is_err() {
                warn!(object, "event for an object whose task ended");
            }
        }
        None => warn!(object, "event for an object that was not activated"),
    }
}

/// Runs one object's events in order. The instance is created on the first
/// event and dropped when the edge evicts the object.
async fn object_task(
    mut mailbox: mpsc::UnboundedReceiver<Event>,
    host: Rc<ObjectHost>,
    factory: Option<Factory>,
    options: WorkerOptions,
    outbox: Rc<Outbox>,
) {
    let object = host.object();
    let mut instance: Option<Box<dyn DynObject>> = None;
    let mut handled: u64 = 0;
    loop {
        let event = match tokio::time::timeout(options.hibernate_after, mailbox.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(_) => {
                outbox.push(&ToEdge::Idle { object, handled });
                match mailbox.recv().await {
                    Some(event) => event,
                    None => break,
                }
            }
        };
        if instance.is_none() {
            if let Some(factory) = factory {
                let host: Rc<dyn torpor_sdk::host::Host> = host.clone();
                instance = Some(factory(State::new(host.clone()), Env::new(host)));
            }
        }
        let survived = handle_event(&mut instance, &host, event, &options, &outbox).await;
        if !survived {
            // A panicked or timed-out handler may have left the instance
            // half-updated; the next event starts from a fresh one.
            instance = None;
        }
        handled += 1;
        let (rows_read, rows_written, stored_bytes) = host.take_storage_usage();
        outbox.push(&ToEdge::Done {
            object,
            events: 1,
            rows_read,
            rows_written,
            stored_bytes,
        });
    }
    debug!(object, "object hibernated");
}

/// How one event ended.
struct Ran {
    /// The handler returned `Ok`.
    ok: bool,
    /// The instance may be kept (no panic, no timeout).
    survived: bool,
    /// For a fetch: its request id and response.
    response: Option<(u64, Response)>,
    /// This was an alarm: the edge waits for its outcome.
    alarm: bool,
}

impl Ran {
    fn quiet() -> Ran {
        Ran {
            ok: true,
            survived: true,
            response: None,
            alarm: false,
        }
    }
}

/// Runs one event inside the output gate and the event's storage
/// transaction; false if the instance must be dropped.
async fn handle_event(
    instance: &mut Option<Box<dyn DynObject>>,
    host: &Rc<ObjectHost>,
    event: Event,
    options: &WorkerOptions,
    outbox: &Outbox,
) -> bool {
    outbox.open_gate();
    host.begin_event();
    let ran = run_event(instance, host, event, options).await;
    let committed = ran.ok && host.commit_event();
    if committed {
        outbox.release_gate();
    } else {
        host.rollback_event();
        outbox.discard_gate();
    }
    if let Some((request_id, response)) = ran.response {
        let response = if committed || !ran.ok {
            response
        } else {
            Response::error(500, "storage commit failed")
        };
        outbox.push(&ToEdge::FetchResponse {
            request_id,
            status: response.status,
            headers: response.headers,
            body: response.body,
        });
    }
    if ran.alarm {
        outbox.push(&ToEdge::AlarmDone {
            object: host.object(),
            ok: committed,
        });
    }
    ran.survived
}

async fn run_event(
    instance: &mut Option<Box<dyn DynObject>>,
    host: &Rc<ObjectHost>,
    event: Event,
    options: &WorkerOptions,
) -> Ran {
    let sdk_host: Rc<dyn torpor_sdk::host::Host> = host.clone();
    match event {
        Event::Fetch {
            request_id,
            request,
            upgrade,
            rpc,
            chain,
        } => {
            host.begin_fetch(upgrade);
            host.set_chain(chain);
            let (response, ok, survived) = match instance.as_mut() {
                Some(object) => match guarded(options, fetch_or_rpc(object, rpc, request)).await {
                    Outcome::Ok(response) => (response, true, true),
                    Outcome::Err(err) => {
                        warn!(class = host.class_name(), %err, "fetch failed");
                        let response = Response::error(500, format!("handler error: {err}"));
                        (response, false, true)
                    }
                    Outcome::Panicked => (Response::error(500, "handler panicked"), false, false),
                    Outcome::TimedOut => (Response::error(504, "handler timed out"), false, false),
                },
                None => (
                    Response::error(
                        500,
                        format!("no object class named {:?}", host.class_name()),
                    ),
                    false,
                    true,
                ),
            };
            let accepted = host.end_fetch(ok && response.status == 101);
            let response = match (response.status, accepted) {
                (101, false) => {
                    Response::error(500, "handler returned 101 without accept_websocket")
                }
                _ => response,
            };
            Ran {
                ok,
                survived,
                response: Some((request_id, response)),
                alarm: false,
            }
        }
        Event::Message {
            handle,
            is_text,
            auto_response_at_ms,
            payload,
        } => {
            let (Some(object), true) = (instance.as_mut(), host.knows(handle)) else {
                return Ran::quiet();
            };
            host.note_auto_response_at(handle, auto_response_at_ms);
            let message = if is_text {
                Message::Text(String::from_utf8_lossy(&payload).into_owned())
            } else {
                Message::Binary(payload)
            };
            let ws = WebSocket::new(to_id(handle), sdk_host);
            let outcome = guarded(options, object.websocket_message(ws, message)).await;
            report(host, "websocket_message", outcome)
        }
        Event::Closed {
            handle,
            code,
            reason,
            was_clean,
        } => {
            let ran = match instance.as_mut() {
                Some(object) if host.knows(handle) => {
                    let ws = WebSocket::new(to_id(handle), sdk_host);
                    // The edge failed the socket for a reason (a protocol
                    // error, a client that does not read), as opposed to a
                    // plain disconnect (1006): that is an error first.
                    let failed = !was_clean && code != 1006;
                    let mut ran = Ran::quiet();
                    if failed {
                        let outcome =
                            guarded(options, object.websocket_error(ws.clone(), reason.clone()))
                                .await;
                        ran = report(host, "websocket_error", outcome);
                    }
                    if ran.ok {
                        let outcome =
                            guarded(options, object.websocket_close(ws, code, reason, was_clean))
                                .await;
                        ran = report(host, "websocket_close", outcome);
                    }
                    ran
                }
                _ => Ran::quiet(),
            };
            host.forget(handle);
            ran
        }
        Event::Alarm { retry_count } => {
            let info = AlarmInfo {
                retry_count,
                is_retry: retry_count > 0,
            };
            let mut ran = match (instance.as_mut(), host.clear_firing_alarm()) {
                (Some(object), Ok(())) => {
                    report(host, "alarm", guarded(options, object.alarm(info)).await)
                }
                (_, Err(err)) => {
                    warn!(class = host.class_name(), %err, "cannot clear the firing alarm");
                    Ran {
                        ok: false,
                        ..Ran::quiet()
                    }
                }
                (None, Ok(())) => Ran {
                    ok: false,
                    ..Ran::quiet()
                },
            };
            ran.alarm = true;
            ran
        }
    }
}

/// A fetch, or an RPC answered as JSON with status 200.
async fn fetch_or_rpc(
    object: &mut Box<dyn DynObject>,
    rpc: Option<String>,
    request: Request,
) -> torpor_sdk::HandlerResult<Response> {
    let Some(method) = rpc else {
        return object.fetch(request).await;
    };
    let args = if request.body().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(request.body())?
    };
    let result = object.rpc(&method, args).await?;
    Ok(Response::status(200)
        .with_header("content-type", "application/json")
        .with_body(serde_json::to_vec(&result)?))
}

enum Outcome<T> {
    Ok(T),
    Err(torpor_sdk::HandlerError),
    Panicked,
    TimedOut,
}

async fn guarded<T>(
    options: &WorkerOptions,
    future: impl std::future::Future<Output = torpor_sdk::HandlerResult<T>>,
) -> Outcome<T> {
    match tokio::time::timeout(
        options.handler_timeout,
        AssertUnwindSafe(future).catch_unwind(),
    )
    .await
    {
        Ok(Ok(Ok(value))) => Outcome::Ok(value),
        Ok(Ok(Err(err))) => Outcome::Err(err),
        Ok(Err(_)) => Outcome::Panicked,
        Err(_) => Outcome::TimedOut,
    }
}

fn report(host: &ObjectHost, handler: &str, outcome: Outcome<()>) -> Ran {
    let (ok, survived) = match outcome {
        Outcome::Ok(()) => (true, true),
        Outcome::Err(err) => {
            warn!(class = host.class_name(), handler, %err, "handler failed");
            (false, true)
        }
        Outcome::Panicked => {
            warn!(class = host.class_name(), handler, "handler panicked");
            (false, false)
        }
        Outcome::TimedOut => {
            warn!(class = host.class_name(), handler, "handler timed out");
            (false, false)
        }
    };
    Ran {
        ok,
        survived,
        response: None,
        alarm: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn database_paths_stay_in_their_class_directory() {
        let dir = Path::new("/d");
        assert_eq!(
            database_path(dir, "Counter", "a-1_b"),
            Path::new("/d/Counter/a-1_b.sqlite")
        );
        assert_eq!(
            database_path(dir, "Counter", ".."),
            Path::new("/d/Counter/%2E%2E.sqlite")
        );
        assert_eq!(
            database_path(dir, "Counter", "a/b"),
            Path::new("/d/Counter/a%2Fb.sqlite")
        );
        assert_ne!(
            database_path(dir, "C", "a%2F"),
            database_path(dir, "C", "a/")
        );
    }
}
