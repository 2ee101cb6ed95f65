//! The Torpor edge and node: the hyper front door, the mio hold loop that
//! keeps every upgraded socket, the admin APIs (an edge's own, and the
//! node's that sums them), the supervisor of edge and worker processes, and
//! the config they share. The `torpor` binary wires them together.
//!
//! `unsafe` is denied here as everywhere, and allowed on one function:
//! `hold::trim::release_free_memory`, which calls glibc's `malloc_trim`.

pub mod admin;
pub mod bill_cli;
pub mod billing;
pub mod config;
pub mod frontdoor;
pub mod hold;
pub mod ledger;
pub mod metrics;
pub mod node_admin;
pub mod supervisor;
pub mod token_cli;
