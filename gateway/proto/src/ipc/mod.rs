//! The edge ⇄ worker IPC format, version [`VERSION`].
//!
//! A stream of frames over a Unix socket: `u32` little-endian length of the
//! rest, a `u8` message tag, then the fields in declaration order. Integers
//! are little-endian; `bytes` and `str` are a `u32` length then the raw bytes
//! (message payloads are never re-encoded); `Option` is a `u8` 0/1 then the
//! value; lists are a `u32` count then the items. A worker's first frame is
//! always `Hello` (tag 0) whose first field is the version, so a mismatch is
//! detected before anything else is parsed. Any change to a message's layout
//! bumps [`VERSION`]; the golden fixtures in the tests fail otherwise.
//! `docs` for every message are on the enums below.
//!
//! The supervisor and its children speak the same framing for their
//! control messages ([`ToChild`] on a child's stdin, [`ToSupervisor`] on
//! its stdout and as datagrams to `run/supervisor.sock`), under the same
//! version: a child whose `Ready` carries another one is refused.
//!
//! ## Sequences
//!
//! - **Start.** The supervisor writes `Setup` to each child's stdin. A
//!   worker connects to every edge and sends `Hello`; once connected to all
//!   it prints `Ready`. An edge prints `Ready` once it accepts connections.
//! - **Wake.** The edge that has an event for an object that is not live
//!   sends `Activate`, then the event. The worker asks every other edge
//!   with `Gather`; each answers with an `Activate` of its own (whether it
//!   holds sockets of the object or not), and the object's events wait
//!   until all have answered, so that the worker knows every edge's number
//!   for the object. No `Activate` lists sockets: a wake costs the same
//!   for a room of one socket as for one of 32,768. The worker sends
//!   `Woke` when it creates the instance, and `Done` after each event.
//! - **Queries.** A worker opens a second connection to each edge, its
//!   query link, whose first frame is `QueryHello`. On it the worker's
//!   thread asks, blocking and one at a time, what a handler wants to know
//!   of the sockets that stay in the edge: `ListSockets`, `DescribeSocket`,
//!   `DescribeSockets` (a page of every socket's tags and attachment). Each
//!   is answered on the same link, in order, by `SocketList`,
//!   `SocketDescription` or `SocketDescriptions`; nothing else travels on
//!   it. The two links are not ordered with respect to each other: an
//!   answer may not yet show an `Accept` or `SetAttachment` the worker
//!   sent on the main link, and the worker accounts for what it sent
//!   itself.
//! - **Confirmation.** A `Confirm` on the main link is answered there with
//!   `Confirmed`, once the edge has applied every frame before it: from
//!   then on the edge's answers show those frames, and the worker may
//!   forget the attachments it set in them.
//! - **Hibernation.** An object idle for `hibernate_after`: the worker
//!   sends `Idle` to each edge bound to it; an edge that has sent nothing
//!   since answers `Evict`; when all have, the instance is dropped.
//! - **Idle exit.** A worker without a live object for `worker_idle_exit`
//!   sends `IdleExit`; each edge with nothing in flight answers `Shutdown`
//!   and holds what comes next; `StayUp` takes the request back. When all
//!   agree the worker exits, and an edge with held events asks for it to be
//!   started again (`StartWorker`).
//! - **Alarms.** The object's alarm is a row in its own database; edge 0's
//!   schedule is an index of it. An event that sets an alarm sends
//!   `AlarmIntent` before its commit and, like one that deletes it,
//!   `SetAlarm` after; opening the storage for a new instance
//!   sends `SyncAlarm` with what the row holds. A due alarm is an `Alarm`
//!   event, which runs the handler only if the row holds an alarm due, and
//!   is answered with `AlarmDone` carrying what the row holds after it.
//! - **Retirement (a deploy).** The supervisor sends `Retire` to the
//!   worker; the worker sends `Retire` to every edge; each answers
//!   `Retired` after what it had already sent and holds every later event.
//!   The worker finishes its events, flushes, and exits; the supervisor
//!   starts the new binary in its place, and each edge sends it what it
//!   held, each object's `Activate` first.

mod codec;

pub use codec::{split_frame, DecodeError, MAX_FRAME_BYTES};

use crate::SocketHandle;
use bytes::Bytes;

/// The IPC format version this build speaks.
pub const VERSION: u16 = 13;

/// On a child's stdout, which the code it runs may print to as well, each
/// control frame follows this mark; what comes before it is not the
/// protocol's (the supervisor passes it on to its own stderr).
pub const CONTROL_MARK: &[u8] = b"\0torpor-control\0";

/// Messages from the supervisor to a child process, framed on its stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToChild {
    /// The first frame a child reads: its whole setup, as JSON (an edge:
    /// the config file's text as the supervisor read it, with the
    /// overrides; a worker: its options, vars and secrets included). A
    /// child never reads the config file or the command line's flags
    /// itself, so all of them run on the same config, and a secret never
    /// appears in a process's arguments.
    Setup {
        /// The setup, as JSON.
        json: Bytes,
    },
    /// To a worker: a new process takes this worker's place (a deploy).
    /// Finish the events already sent, flush, and exit.
    Retire,
}

/// Messages from a child process to the supervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToSupervisor {
    /// On the child's stdout: it serves (an edge accepts connections, a
    /// worker is connected to every edge).
    Ready {
        /// [`VERSION`] of the child.
        version: u16,
        /// The child's process id.
        pid: u32,
    },
    /// A datagram from an edge to `run/supervisor.sock`: start worker
    /// `index`, which exited while idle and has events waiting.
    StartWorker {
        /// The worker's index.
        index: u16,
    },
}

/// An object's auto-response pair: a message exactly equal to `request` is
/// answered with `response` by the edge, without waking the object. A text
/// pair matches text frames (as Durable Objects do); a binary pair matches
/// binary frames and answers with one (an MQTT PINGREQ, say).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoResponse {
    /// Match and answer binary frames instead of text ones.
    pub binary: bool,
    /// The message to match, byte for byte.
    pub request: Bytes,
    /// The message sent back.
    pub response: Bytes,
}

/// What the edge knows about one socket, as a query's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketInfo {
    /// The socket.
    pub handle: SocketHandle,
    /// Tags given at accept.
    pub tags: Vec<String>,
    /// The serialized attachment, if one is set.
    pub attachment: Option<Bytes>,
    /// Unix milliseconds of the last auto-response, 0 if none.
    pub auto_response_at_ms: u64,
}

/// Messages from an edge to a worker. `object` is the edge's number for an
/// object, valid for the edge process's life. A worker talks to every edge
/// of the node; an object's sockets may sit on several edges, each with its
/// own number for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToWorker {
    /// Sent before the first event to an object that is not live in the
    /// worker from this edge's side, and as the answer to a `Gather`: its
    /// identity and how many sockets this edge holds for it. The sockets
    /// themselves stay here; the worker asks for them on its query link.
    Activate {
        /// Edge-local object number.
        object: u32,
        /// Namespace the object belongs to.
        namespace: String,
        /// Class name, as registered in the worker.
        class: String,
        /// The object's id, 64 hex characters.
        id: String,
        /// The name the id was derived from, if it was.
        name: Option<String>,
        /// The auto-response pair, if set.
        auto_response: Option<AutoResponse>,
        /// Whether this edge has been told the pair at all; an edge that
        /// never held the object's sockets while it was set has not.
        auto_response_known: bool,
        /// How many sockets of the object this edge holds: the worker
        /// keeps the object's total for `max_connections_per_object`.
        sockets: u32,
    },
    /// An HTTP request to the object; `upgrade` is the socket reserved for it
    /// if it is a WebSocket upgrade the object may accept.
    Fetch {
        /// Edge-local object number.
        object: u32,
        /// Echoed in the `FetchResponse`.
        request_id: u64,
        /// The reserved socket, for an upgrade request.
        upgrade: Option<SocketHandle>,
        /// HTTP method.
        method: String,
        /// Path and query.
        uri: String,
        /// Header names (lowercase) and values.
        headers: Vec<(String, Bytes)>,
        /// Request body (for an RPC, the JSON arguments).
        body: Bytes,
        /// For a call from another object: the method of an RPC, `None`
        /// for a fetch.
        rpc: Option<String>,
        /// Ids of the objects whose handlers wait on this request, outermost
        /// first; empty for a client's request.
        chain: Vec<String>,
    },
    /// The answer to a `Call` this worker made.
    CallResult {
        /// From the `Call`.
        call_id: u64,
        /// HTTP status (an RPC answers 200 with its JSON result).
        status: u16,
        /// Response headers.
        headers: Vec<(String, Bytes)>,
        /// Response body.
        body: Bytes,
    },
    /// A text or binary message from a socket.
    Message {
        /// Edge-local object number.
        object: u32,
        /// The sending socket.
        handle: SocketHandle,
        /// Text (UTF-8, checked by the edge) or binary.
        is_text: bool,
        /// Unix milliseconds of the socket's last auto-response, 0 if none.
        auto_response_at_ms: u64,
        /// The message.
        payload: Bytes,
    },
    /// A socket closed: by the client, by the edge, or abruptly (1006).
    Closed {
        /// Edge-local object number.
        object: u32,
        /// The socket, no longer valid.
        handle: SocketHandle,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
        /// Whether a close handshake took place.
        was_clean: bool,
        /// The socket's tags: the edge forgets the socket now, and the
        /// close handler may still read them.
        tags: Vec<String>,
        /// The socket's attachment, for the same reason.
        attachment: Option<Bytes>,
    },
    /// The object may be dropped: the edge has sent nothing since the
    /// worker's `Idle`.
    Evict {
        /// Edge-local object number.
        object: u32,
    },
    /// Answer to `IdleExit`: no object is live, the worker may exit.
    Shutdown,
    /// Answer to `Retire`: every event sent to this worker process precedes
    /// this frame; what comes after is for the process that replaces it.
    Retired,
    /// The object's alarm is due, by edge 0's schedule. The worker checks
    /// the object's row first: a row that holds no alarm due runs no
    /// handler, and `AlarmDone` reports what it holds.
    Alarm {
        /// Edge-local object number.
        object: u32,
        /// 0 on the first attempt, then 1, 2, … on retries.
        retry_count: u32,
        /// No retry follows: if the handler fails, the worker deletes the
        /// alarm from the object's row, in a transaction of its own.
        last: bool,
    },
    /// Sockets of the object that this edge's previous process held when
    /// it died: each closed abruptly (1006). Sent by the restarted edge,
    /// after an `Activate`, for objects that may have been hibernated then.
    Lost {
        /// Edge-local object number.
        object: u32,
        /// The dead process's handles (this edge's index, its generations).
        handles: Vec<SocketHandle>,
    },
    /// The answer to `Confirm`: every frame the worker sent on this link
    /// before it has been applied.
    Confirmed {
        /// From the `Confirm`.
        token: u64,
    },
    /// On a query link only: the answer to `ListSockets`.
    SocketList {
        /// The object's sockets on this edge that match, in no order.
        handles: Vec<SocketHandle>,
    },
    /// On a query link only: the answer to `DescribeSocket`.
    SocketDescription {
        /// `None` if the edge holds no such socket of the object (closed,
        /// stale, or another object's).
        socket: Option<SocketInfo>,
    },
    /// On a query link only: the answer to `DescribeSockets`, one page.
    SocketDescriptions {
        /// The object's sockets whose slot is past the one asked for, by
        /// slot.
        sockets: Vec<SocketInfo>,
        /// More pages follow: ask again after the last slot of this one.
        more: bool,
    },
}

/// Messages from a worker to an edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToEdge {
    /// First frame on a connection.
    Hello {
        /// [`VERSION`] of the worker.
        version: u16,
        /// The worker's index.
        worker: u16,
        /// The worker's process id.
        pid: u32,
    },
    /// First frame on a query link (see the module docs): the worker's
    /// synchronous questions about the sockets an edge holds.
    QueryHello {
        /// [`VERSION`] of the worker.
        version: u16,
        /// The worker's index.
        worker: u16,
    },
    /// On a query link only: which of the object's sockets this edge holds,
    /// all or those with `tag`. Answered by `SocketList`.
    ListSockets {
        /// Edge-local object number.
        object: u32,
        /// Only sockets with this tag.
        tag: Option<String>,
    },
    /// On a query link only: one socket's tags, attachment and last
    /// auto-response. Answered by `SocketDescription`.
    DescribeSocket {
        /// Edge-local object number.
        object: u32,
        /// The socket.
        handle: SocketHandle,
    },
    /// On a query link only: a page of `DescribeSocket` for every socket
    /// of the object, for a handler that reads them all. Answered by
    /// `SocketDescriptions`.
    DescribeSockets {
        /// Edge-local object number.
        object: u32,
        /// Start past this slot (the last one of the previous page).
        after: Option<u32>,
    },
    /// The object's answer to a `Fetch`.
    FetchResponse {
        /// From the `Fetch`.
        request_id: u64,
        /// HTTP status; 101 completes an accepted upgrade.
        status: u16,
        /// Response headers.
        headers: Vec<(String, Bytes)>,
        /// Response body.
        body: Bytes,
    },
    /// The object accepted the upgrade reserved as `handle`. Sent as soon as
    /// it happens, so that messages and broadcasts later in the same event
    /// include the socket. The upgrade completes if the `FetchResponse` is a
    /// 101; otherwise the edge forgets the socket.
    Accept {
        /// The socket reserved in the `Fetch`.
        handle: SocketHandle,
        /// Tags, at most 10 of at most 256 bytes, without duplicates.
        tags: Vec<String>,
    },
    /// Send a message to one socket.
    Send {
        /// Target socket.
        handle: SocketHandle,
        /// Text or binary frame.
        is_text: bool,
        /// The message.
        payload: Bytes,
    },
    /// Close one socket.
    Close {
        /// Target socket.
        handle: SocketHandle,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Send one message to every socket of an object on this edge (the
    /// worker sends one to each edge that holds sockets of the object).
    Broadcast {
        /// Edge-local object number.
        object: u32,
        /// Only sockets with this tag.
        tag: Option<String>,
        /// Skip this socket.
        except: Option<SocketHandle>,
        /// Text or binary frame.
        is_text: bool,
        /// The message.
        payload: Bytes,
    },
    /// Replace a socket's attachment (`None` clears it).
    SetAttachment {
        /// Target socket.
        handle: SocketHandle,
        /// Serialized attachment.
        attachment: Option<Bytes>,
    },
    /// Answer `Confirmed` with `token` once every frame before this one
    /// has been applied. The worker keeps the attachments it set until an
    /// edge confirms it holds them.
    Confirm {
        /// Echoed in the `Confirmed`; the worker's own count of the
        /// frames it sent.
        token: u64,
    },
    /// Set or clear the object's auto-response pair.
    SetAutoResponse {
        /// Edge-local object number.
        object: u32,
        /// The pair, or `None` to clear.
        pair: Option<AutoResponse>,
    },
    /// The worker finished `events` events of the object, which read and
    /// wrote that many storage rows.
    Done {
        /// Edge-local object number.
        object: u32,
        /// How many.
        events: u32,
        /// Storage rows read by these events (billed).
        rows_read: u64,
        /// Storage rows written by these events (billed).
        rows_written: u64,
        /// The database's size after them, if it was open.
        stored_bytes: Option<u64>,
        /// Microseconds the instance was live since the worker last
        /// reported it (to any edge); billed as duration.
        active_us: u64,
    },
    /// The object has been idle for the hibernation timeout after handling
    /// `handled` events from this edge; the edge answers `Evict` if it sent
    /// no more. Sent to every edge bound to the object; the instance is
    /// dropped when all have answered.
    Idle {
        /// Edge-local object number.
        object: u32,
        /// Events from this edge handled since its `Activate`.
        handled: u64,
        /// Live time not yet reported, as in `Done`.
        active_us: u64,
    },
    /// A new instance of the object was created (`new` ran): one wake.
    /// Sent before the event that caused it is handled.
    Woke {
        /// Edge-local object number.
        object: u32,
    },
    /// The object woke from another edge: answer with an `Activate`
    /// listing this edge's sockets of it (possibly none).
    Gather {
        /// Namespace.
        namespace: String,
        /// Class.
        class: String,
        /// Id, 64 hex characters.
        id: String,
        /// The name the id came from, if known.
        name: Option<String>,
    },
    /// The worker takes back an `IdleExit`: an event came from another edge.
    StayUp,
    /// The worker has had no live object for its idle-exit timeout.
    IdleExit,
    /// The worker process is being replaced (a code deploy): send it no new
    /// event. The edge answers `Retired` after the events already queued,
    /// keeps every later event for the next process of this worker index
    /// (which gets an `Activate` first), and no longer counts the worker's
    /// objects as live. Replies, sends and calls of the events the worker
    /// still finishes are handled as usual.
    Retire,
    /// The object set (`Some`) or deleted (`None`) its alarm; sent after the
    /// event that did it committed, always to edge 0, which keeps the
    /// node's alarm schedule.
    SetAlarm {
        /// Namespace.
        namespace: String,
        /// Id, 64 hex characters.
        id: String,
        /// The name the id came from, if known.
        name: Option<String>,
        /// Unix milliseconds.
        at_ms: Option<u64>,
    },
    /// An event is about to commit the alarm `at_ms`; always to edge 0,
    /// outside the output gate, and in the socket before the commit starts.
    /// The schedule checks the object no later than `at_ms`, whatever comes
    /// after: so a worker that dies between the commit and its `SetAlarm`
    /// leaving loses no alarm, and a commit that fails costs one `Alarm`
    /// event that finds no alarm due and runs no handler.
    AlarmIntent {
        /// Namespace.
        namespace: String,
        /// Id, 64 hex characters.
        id: String,
        /// The name the id came from, if known.
        name: Option<String>,
        /// Unix milliseconds.
        at_ms: u64,
    },
    /// A handler calls another object: a fetch, or an RPC when `rpc` names
    /// the method. Answered with `CallResult`.
    Call {
        /// The calling object.
        caller: u32,
        /// Chosen by the worker, echoed in `CallResult`.
        call_id: u64,
        /// The callee's namespace.
        namespace: String,
        /// The callee's id, 64 hex characters.
        id: String,
        /// The name the id came from, if it did.
        name: Option<String>,
        /// The callers' ids, outermost first, the calling object last.
        chain: Vec<String>,
        /// RPC method, or `None` for a fetch.
        rpc: Option<String>,
        /// HTTP method.
        method: String,
        /// Path and query.
        uri: String,
        /// Headers.
        headers: Vec<(String, Bytes)>,
        /// Body (for an RPC, the JSON arguments).
        body: Bytes,
        /// The socket reserved for the caller's own request, when the caller
        /// hands that WebSocket upgrade on to the callee (a JavaScript app's
        /// front forwarding it with `stub.fetch(request)`): the callee may
        /// accept it, and the upgrade completes when the caller answers its
        /// request with 101. Only the object the socket is reserved for may
        /// hand it on; the edge ignores it otherwise.
        upgrade: Option<SocketHandle>,
    },
    /// An `Alarm` event finished; `ok` false if the handler failed.
    AlarmDone {
        /// Edge-local object number.
        object: u32,
        /// The event committed: the handler returned `Ok`, or the row held
        /// no alarm due and none ran.
        ok: bool,
        /// When `ok`: the object's alarm row after the commit, which the
        /// schedule takes as it is. Otherwise `None`.
        at_ms: Option<u64>,
    },
    /// The object's storage opened for a new instance and its alarm row
    /// reads `at_ms`; always to edge 0. The row is the truth and the
    /// schedule an index of it: this repairs a `SetAlarm` lost with a
    /// worker that died between an event's commit and sending it. Sent
    /// before anything of the instance's events, so later `SetAlarm`s
    /// supersede it.
    SyncAlarm {
        /// Namespace.
        namespace: String,
        /// Id, 64 hex characters.
        id: String,
        /// The name the id came from, if known.
        name: Option<String>,
        /// Unix milliseconds.
        at_ms: Option<u64>,
    },
}
