//! Sans-IO core of Torpor's edge: the server side of RFC 6455 (frame codec and
//! per-socket state machine), socket handles, and the versioned edge ⇄ worker
//! IPC format.
//!
//! It never touches sockets, clocks, threads or the file system: callers feed
//! bytes in and carry actions out, so every rule here is testable without I/O.
#![warn(missing_docs, unreachable_pub)]

pub mod handle;
pub mod ipc;
pub mod ws;

pub use handle::SocketHandle;
