//! The front door: hyper on tokio. It routes requests to objects through the
//! hold loop, checks WebSocket handshakes, and after a 101 hands the raw
//! socket, with any bytes hyper read past the handshake, to the hold loop.
//!
//! Not here: frames (the hold loop parses them) and objects' decisions
//! (their `fetch` makes them, in a worker).

pub mod auth;
mod handshake;
mod reject;
mod route;

pub use route::RoutePattern;

use crate::config::IdSource;
use crate::hold::{Command, FetchReply, FetchRequest, HoldHandle};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use reject::reject;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use torpor_objects::ids::{NamespaceKey, ObjectId};
use tracing::{debug, warn};

/// A route, resolved: its pattern, namespace (with the key to derive and
/// check ids), class, and where the id comes from.
struct RouteEntry {
    pattern: RoutePattern,
    namespace: Arc<str>,
    class: Arc<str>,
    key: NamespaceKey,
    id: IdSource,
    /// Token and Origin checks, before anything reaches the hold loop.
    guard: auth::Guard,
    /// A route to an app's front: its per-request objects are no one's to
    /// address again, so responses do not name them.
    front: bool,
}

/// Longest object name taken from a query parameter or header, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// The response header that names the object a request reached.
pub const OBJECT_ID_HEADER: &str = "x-torpor-object-id";

/// What the front door needs to know.
pub struct FrontDoor {
    routes: Vec<RouteEntry>,
    hold: HoldHandle,
    max_request_head_bytes: usize,
    max_request_bytes: usize,
    handshake_timeout: Duration,
    handler_timeout: Duration,
    connection_slots: Arc<tokio::sync::Semaphore>,
    /// Front-door connections held per client address, while a limit is set.
    per_address: std::sync::Mutex<HashMap<IpAddr, usize>>,
    max_per_address: usize,
    /// Requests (and upgrades) from their head until the object's answer
    /// is delivered, the socket handed to the hold loop included.
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// New connections are left in the kernel's backlog (an upgrade of
    /// the edge is taking its listener).
    paused: std::sync::atomic::AtomicBool,
    pause_changed: tokio::sync::Notify,
}

/// One request's share of [`FrontDoor::requests_in_flight`].
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One connection's share of its address's count, given back on drop.
struct AddressSlot<'a> {
    door: &'a FrontDoor,
    peer: IpAddr,
}

impl Drop for AddressSlot<'_> {
    fn drop(&mut self) {
        let mut counts = lock(&self.door.per_address);
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Said, unread, to a connection over its address's share, then closed.
const TOO_MANY_FROM_ADDRESS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\n\
    content-type: text/plain; charset=utf-8\r\nretry-after: 1\r\n\
    connection: close\r\ncontent-length: 47\r\n\r\n\
    too many connections from this address at once\n";

impl FrontDoor {
    /// Builds the front door from validated config and the node secret.
    pub fn new(config: &crate::config::Config, hold: HoldHandle, node_secret: &[u8]) -> FrontDoor {
        let routes = config
            .routes
            .iter()
            .filter_map(|r| {
                let namespace = config.namespaces.iter().find(|n| n.name == r.namespace)?;
                Some(RouteEntry {
                    pattern: RoutePattern::parse(&r.path)?,
                    namespace: Arc::from(namespace.name.as_str()),
                    class: Arc::from(namespace.class.as_str()),
                    key: NamespaceKey::derive(node_secret, &namespace.name),
                    id: r.id.clone(),
                    guard: auth::Guard::from_route(r),
                    front: r.app.is_some(),
                })
            })
            .collect();
        FrontDoor {
            routes,
            hold,
            max_request_head_bytes: config.limits.max_request_head_bytes,
            max_request_bytes: config.limits.max_request_bytes,
            handshake_timeout: config.limits.handshake_timeout,
            handler_timeout: config.handler_timeout,
            connection_slots: Arc::new(tokio::sync::Semaphore::new(
                config.limits.max_frontdoor_connections,
            )),
            per_address: std::sync::Mutex::new(HashMap::new()),
            max_per_address: config.limits.max_frontdoor_connections_per_address,
            in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            paused: std::sync::atomic::AtomicBool::new(false),
            pause_changed: tokio::sync::Notify::new(),
        }
    }

    /// Stops taking new connections; those under way go on.
    pub fn pause(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
        self.pause_changed.notify_waiters();
    }

    /// Takes new connections again.
    pub fn resume(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.pause_changed.notify_waiters();
    }

    /// Requests between their head and their answer (an upgrade until its
    /// socket reached the hold loop).
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn is_paused(&self) -> bool {
        self.paused.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts a connection against its address; `None` past the limit.
    fn admit(&self, peer: IpAddr) -> Option<Option<AddressSlot<'_>>> {
        if self.max_per_address == 0 {
            return Some(None);
        }
        let mut counts = lock(&self.per_address);
        let count = counts.entry(peer).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        Some(Some(AddressSlot { door: self, peer }))
    }

    fn route<'p>(&self, path: &'p str) -> Option<(&RouteEntry, &'p str)> {
        self.routes
            .iter()
            .find_map(|route| Some((route, route.pattern.matches(path)?)))
    }
}

/// Accepts connections until the listener fails for good.
pub async fn serve(listener: TcpListener, door: Arc<FrontDoor>) {
    loop {
        let changed = door.pause_changed.notified();
        if door.is_paused() {
            changed.await;
            continue;
        }
        // Taken before accepting, so that past the limit clients wait in the
        // kernel's backlog rather than in our memory.
        let Ok(slot) = door.connection_slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = changed => continue,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, most likely: back off instead of
                // spinning, the backlog holds the clients meanwhile.
                warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let door = door.clone();
        tokio::spawn(async move {
            let peer = stream
                .peer_addr()
                .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
            match door.admit(peer) {
                Some(address_slot) => {
                    serve_connection(stream, &door, peer).await;
                    drop(address_slot);
                }
                None => turn_away(stream).await,
            }
            drop(slot);
        });
    }
}

/// Answers 429 without reading the request, within a short bound: the
/// client gets a standard answer and the slot is back at once.
async fn turn_away(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    metrics::counter!(crate::metrics::HTTP_REJECTS, "status" => "429").increment(1);
    let write = async {
        stream.write_all(TOO_MANY_FROM_ADDRESS).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

async fn serve_connection(stream: TcpStream, door: &Arc<FrontDoor>, peer: IpAddr) {
    let io = TokioIo::new(stream);
    let service_door = door.clone();
    let service = service_fn(move |request| handle(service_door.clone(), peer, request));
    let result = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(door.handshake_timeout)
        .max_buf_size(door.max_request_head_bytes)
        .serve_connection(io, service)
        .with_upgrades()
        .await;
    if let Err(err) = result {
        debug!(%err, "http connection ended with an error");
    }
}

type Reply = Response<Full<Bytes>>;

async fn handle(
    door: Arc<FrontDoor>,
    peer: std::net::IpAddr,
    mut request: Request<Incoming>,
) -> Result<Reply, std::convert::Infallible> {
    let in_flight = InFlight::new(&door.in_flight);
    let path = request.uri().path().to_owned();
    let Some((route, segment)) = door.route(&path) else {
        return Ok(reject(
            StatusCode::NOT_FOUND,
            &format!("no route for {path}"),
        ));
    };
    let (id, name) = match resolve_id(route, segment, &request) {
        Ok(resolved) => resolved,
        Err((status, message)) => return Ok(reject(status, &message)),
    };
    // Before any wake: a refused request costs the object nothing.
    let admitted = match route.guard.check(&mut request, &id, auth::unix_now()) {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refusal.reply()),
    };

    let (namespace, class) = (route.namespace.clone(), route.class.clone());
    let names_object = !route.front;
    let upgrade = match handshake::check(&request) {
        Ok(upgrade) => upgrade,
        Err((status, message)) => return Ok(reject(status, message)),
    };
    let method = request.method().as_str().to_owned();
    let uri = request
        .uri()
        .path_and_query()
        .map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect();
    let on_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let body = if upgrade.is_some() {
        Bytes::new()
    } else {
        let body = Limited::new(request.into_body(), door.max_request_bytes).collect();
        // A body that never comes must not hold its connection forever.
        let Ok(body) = tokio::time::timeout(door.handshake_timeout, body).await else {
            let message = format!("body not received within {:?}", door.handshake_timeout);
            return Ok(reject(StatusCode::REQUEST_TIMEOUT, &message));
        };
        match body {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                let message = format!("body over {} bytes", door.max_request_bytes);
                return Ok(reject(StatusCode::PAYLOAD_TOO_LARGE, &message));
            }
            Err(_) => return Ok(reject(StatusCode::BAD_REQUEST, "body could not be read")),
        }
    };
    let (reply_tx, reply_rx) = oneshot::channel();
    let sent = door.hold.send(Command::Fetch(FetchRequest {
        peer,
        namespace,
        class,
        id,
        name,
        upgrade: upgrade.is_some(),
        method,
        uri,
        headers,
        body,
        reply: reply_tx,
    }));
    if !sent {
        return Ok(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "edge is shutting down",
        ));
    }
    // The worker enforces the handler timeout; this only bounds the wait if
    // a worker dies in a way the edge has not noticed yet.
    let wait = door.handler_timeout + Duration::from_secs(5);
    let reply = match tokio::time::timeout(wait, reply_rx).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => {
            return Ok(reject(
                StatusCode::SERVICE_UNAVAILABLE,
                "edge dropped the request",
            ))
        }
        Err(_) => {
            return Ok(reject(
                StatusCode::GATEWAY_TIMEOUT,
                "object did not answer in time",
            ))
        }
    };
    let mut response = respond(&door, reply, upgrade, on_upgrade, in_flight);
    admitted.answer(&mut response);
    // Every routed response names its object, so that a client can keep
    // the id of a unique object, or address a named one by id.
    if let (true, Ok(value)) = (names_object, HeaderValue::from_str(&id.to_hex())) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(OBJECT_ID_HEADER), value);
    }
    Ok(response)
}

/// The object a request addresses: its id, and its name when it has one.
fn resolve_id<B>(
    route: &RouteEntry,
    segment: &str,
    request: &Request<B>,
) -> Result<(ObjectId, Option<String>), (StatusCode, String)> {
    let by_name = |name: &str, what: &str| {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("{what} must be 1 to {MAX_NAME_BYTES} bytes"),
            ));
        }
        Ok((route.key.id_from_name(name), Some(name.to_owned())))
    };
    match &route.id {
        IdSource::Name => by_name(segment, "object name"),
        IdSource::Hex => route
            .key
            .id_from_string(segment)
            .map(|id| (id, None))
            .map_err(|err| (StatusCode::BAD_REQUEST, err.to_string())),
        IdSource::Query(param) => {
            let value = request.uri().query().and_then(|query| {
                query.split('&').find_map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (key == param).then_some(value)
                })
            });
            match value {
                Some(value) => by_name(value, &format!("query parameter {param}")),
                None => Err((
                    StatusCode::BAD_REQUEST,
                    format!("query parameter {param} names the object and is missing"),
                )),
            }
        }
        IdSource::Header(header) => match request.headers().get(header.as_str()) {
            Some(value) => match value.to_str() {
                Ok(value) => by_name(value, &format!("header {header}")),
                Err(_) => Err((
                    StatusCode::BAD_REQUEST,
                    format!("header {header} is not text"),
                )),
            },
            None => Err((
                StatusCode::BAD_REQUEST,
                format!("header {header} names the object and is missing"),
            )),
        },
        IdSource::Unique => route
            .key
            .new_unique_id()
            .map(|id| (id, None))
            .map_err(|err| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("no random id: {err}"),
                )
            }),
    }
}

/// `Upgrade: websocket` and `Connection: Upgrade`: on a 101, and on a 426
/// to say what to upgrade to.
fn name_websocket_upgrade(headers: &mut hyper::HeaderMap) {
    headers.insert(
        hyper::header::UPGRADE,
        HeaderValue::from_static("websocket"),
    );
    headers.insert(
        hyper::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
}

fn respond(
    door: &FrontDoor,
    reply: FetchReply,
    upgrade: Option<handshake::Upgrade>,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    in_flight: InFlight,
) -> Reply {
    let Ok(status) = StatusCode::from_u16(reply.status) else {
        return reject(
            StatusCode::INTERNAL_SERVER_ERROR,
            "object answered an invalid status",
        );
    };
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = status;
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    // The per-object socket limit (503) and any 429 are worth retrying
    // soon; say when, unless the object already did.
    let retryable = matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    );
    // RFC 9110 §15.5.22: a 426 names the protocol to switch to. Objects
    // answer it to plain requests on WebSocket routes.
    if status == StatusCode::UPGRADE_REQUIRED
        && !response.headers().contains_key(hyper::header::UPGRADE)
    {
        name_websocket_upgrade(response.headers_mut());
    }
    if retryable && !response.headers().contains_key(hyper::header::RETRY_AFTER) {
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let (Some(handle), Some(upgrade), Some(on_upgrade)) = (reply.upgraded, upgrade, on_upgrade) {
        let headers = response.headers_mut();
        name_websocket_upgrade(headers);
        if let Ok(accept) = HeaderValue::from_str(&upgrade.accept_key) {
            headers.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        let hold = door.hold.clone();
        tokio::spawn(async move {
            // In flight until the socket is the hold loop's.
            let _in_flight = in_flight;
            let command = match on_upgrade.await.map(|u| u.downcast::<TokioIo<TcpStream>>()) {
                Ok(Ok(parts)) => match parts.io.into_inner().into_std() {
                    Ok(stream) => Command::Adopt {
                        handle,
                        stream,
                        read_ahead: parts.read_buf,
                    },
                    Err(err) => {
                        warn!(%err, "cannot take the socket from tokio");
                        Command::AbortUpgrade { handle }
                    }
                },
                _ => Command::AbortUpgrade { handle },
            };
            hold.send(command);
        });
    }
    response
}
