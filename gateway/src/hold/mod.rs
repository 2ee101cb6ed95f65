//! The hold loop: one thread that holds every upgraded socket of this
//! edge, parses its frames, answers pings and auto-responses, keeps tags
//! and attachments, fans broadcasts out, and talks to the worker processes
//! over Unix sockets.
//!
//! It is two parts. `edge_core` is the logic, without I/O: sessions
//! (`session`), the object table (`table`), requests on their way
//! (`routing`), alarms, keepalive. `shell` is a mio loop that moves
//! bytes between the core and the sockets, and keeps its timers.
//!
//! Not here: HTTP (the front door hands sockets over after the 101) and
//! process management (the supervisor starts workers when asked).

mod alarm_store;
mod alarms;
#[doc(hidden)]
pub mod bench;
mod edge_core;
mod keepalive;
pub mod membership;
mod object;
mod routing;
mod session;
mod shell;
mod table;
pub mod transfer;
pub(crate) mod trim;

pub use object::{ObjectReport, Usage};
pub use shell::{spawn, spawn_taken_over};

use bytes::Bytes;
use mio::Waker;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use torpor_objects::ids::ObjectId;
use torpor_proto::SocketHandle;
use tracing::error;

/// Settings of the hold loop.
#[derive(Clone, Debug)]
pub struct HoldOptions {
    /// This edge's index, part of every socket handle.
    pub edge: u16,
    /// Number of worker processes.
    pub workers: u16,
    /// Where workers connect.
    pub ipc_path: PathBuf,
    /// Largest message from a client.
    pub max_message_bytes: usize,
    /// Largest attachment.
    pub max_attachment_bytes: usize,
    /// Sockets this edge holds (its share of `limits.max_connections`);
    /// upgrades past it get 503. 0 is no limit.
    pub max_sockets: usize,
    /// Sockets per object.
    pub max_connections_per_object: usize,
    /// Open sockets per client address; 0 is no limit.
    pub max_connections_per_address: usize,
    /// Bytes queued for one client before it is closed.
    pub max_outbound_queue_bytes: usize,
    /// Protocol pings one socket may send in a second; 0: no limit.
    pub max_pings_per_second: u16,
    /// Events in flight per object before its sockets stop being read.
    pub max_events_in_flight: u32,
    /// Bytes of events sent to workers and not yet answered, over all of
    /// this edge's objects, before it stops reading the sockets that send
    /// more: what the link queues and the workers' inboxes may hold.
    pub max_bytes_in_flight: u64,
    /// The durable alarm schedule, kept by one edge of the node (edge 0);
    /// `None` on the others.
    pub alarm_store_path: Option<PathBuf>,
    /// Namespace names and their classes, to restore alarms on start.
    pub namespaces: HashMap<String, Arc<str>>,
    /// Where usage deltas go, once a second.
    pub ledger: Option<Sender<Vec<crate::ledger::UsageDelta>>>,
    /// Where this edge keeps the list of sockets it holds, for its next
    /// process (`membership::path`); `None` keeps none.
    pub sockets_file: Option<PathBuf>,
    /// The most often that list is rewritten while sockets come and go.
    /// Under half the node's `hibernate_after`, so that no object
    /// hibernates with a socket the list lacks (while an object is live,
    /// its worker knows its sockets).
    pub sockets_file_every: Duration,
    /// How often quiet sockets are pinged; zero: never.
    pub keepalive_interval: Duration,
    /// Pings a socket may leave unanswered in a row before it is closed.
    pub keepalive_max_missed: u8,
}

/// An HTTP request (or upgrade) for an object.
pub struct FetchRequest {
    /// The client's address.
    pub peer: std::net::IpAddr,
    /// Namespace from the route.
    pub namespace: Arc<str>,
    /// Class of the namespace.
    pub class: Arc<str>,
    /// The object's id.
    pub id: ObjectId,
    /// The name the id came from, if it did.
    pub name: Option<String>,
    /// Whether this is a valid WebSocket upgrade request.
    pub upgrade: bool,
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, Bytes)>,
    /// Body.
    pub body: Bytes,
    /// Where the answer goes.
    pub reply: oneshot::Sender<FetchReply>,
}

/// The object's answer.
#[derive(Debug)]
pub struct FetchReply {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, Bytes)>,
    /// Body.
    pub body: Bytes,
    /// The socket to hand over after the 101, when the upgrade was accepted.
    pub upgraded: Option<SocketHandle>,
}

impl FetchReply {
    pub(crate) fn error(status: u16, message: &str) -> FetchReply {
        FetchReply {
            status,
            headers: vec![(
                "content-type".to_owned(),
                Bytes::from_static(b"text/plain; charset=utf-8"),
            )],
            body: Bytes::copy_from_slice(message.as_bytes()),
            upgraded: None,
        }
    }
}

/// Work for the hold loop from other threads.
pub enum Command {
    /// Route a request to its object.
    Fetch(FetchRequest),
    /// Take over an upgraded socket; `read_ahead` is what the HTTP server
    /// read past the handshake.
    Adopt {
        /// From the `FetchReply`.
        handle: SocketHandle,
        /// The raw socket.
        stream: std::net::TcpStream,
        /// Bytes already read from it.
        read_ahead: Bytes,
    },
    /// The upgrade of an accepted socket failed at the front door.
    AbortUpgrade {
        /// From the `FetchReply`.
        handle: SocketHandle,
    },
    /// Usage of one object, for the admin API.
    Report {
        /// Namespace.
        namespace: String,
        /// The object's id.
        id: ObjectId,
        /// `None` if the edge has never seen the object.
        reply: oneshot::Sender<Option<ObjectReport>>,
    },
    /// Hand the edge to the process at the other end of `stream` (`torpor
    /// upgrade`), once nothing that cannot move is left (or at a deadline,
    /// ending it). The outcome says whether it took everything: if not,
    /// this process goes on serving.
    HandOver {
        /// The new process, which asked for the edge.
        stream: std::os::unix::net::UnixStream,
        /// The front door's listener, which moves too.
        http_listener: std::os::fd::OwnedFd,
        /// `Ok` once the new process serves everything.
        outcome: std::sync::mpsc::Sender<Result<HandedOver, String>>,
    },
    /// Pids of connected workers, by index.
    WorkerPids {
        /// One entry per worker index.
        reply: oneshot::Sender<Vec<Option<u32>>>,
    },
}

/// What an edge handed over.
#[derive(Clone, Debug)]
pub struct HandedOver {
    /// Client sockets.
    pub sockets: usize,
    /// Bytes of state.
    pub state_bytes: usize,
    /// From the request to the new process's acknowledgement.
    pub took: Duration,
}

/// Sends commands to the hold loop from any thread.
#[derive(Clone)]
pub struct HoldHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
}

impl HoldHandle {
    /// Queues a command; false if the hold loop has stopped.
    pub fn send(&self, command: Command) -> bool {
        let sent = self.tx.send(command).is_ok();
        if let Err(err) = self.waker.wake() {
            error!(%err, "cannot wake the hold loop");
        }
        sent
    }
}
