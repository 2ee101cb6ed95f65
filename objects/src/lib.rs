//! Torpor's object worker runtime: a process that connects to every edge of
//! the node over Unix sockets, keeps one mailbox per object, runs each object's events one
//! at a time, and hibernates objects that go idle.
//!
//! `run(registry, options)` turns a binary into a worker; [`builtin`] is the
//! registry of classes the default worker ships. Not here: sockets to
//! clients (the edge holds them) and anything an object author calls (that
//! is `torpor-sdk`).

mod build;
pub mod builtin;
mod control;
mod databases;
mod gate;
mod host;
pub mod ids;
mod instance;
pub mod js;
mod lifecycle;
mod memory;
mod outbox;
mod overlay;
mod queries;
mod registry;
pub mod storage;
mod worker;

pub use build::build_version;
pub use control::{announce_ready, ControlIn};
pub use registry::Registry;
pub use worker::{edge_socket_path, run, WorkerError, WorkerOptions, WAKES_AT_ONCE};
