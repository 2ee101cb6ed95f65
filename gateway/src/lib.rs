//! Torpor: stateful WebSocket objects, modelled on Cloudflare Durable
//! Objects, whose sockets stay open while the objects hibernate.
//!
//! This is the library a program depends on to run its own object classes.
//! It re-exports the object author's API ([`DurableObject`], [`State`],
//! [`Env`], [`WebSocket`], [`Storage`], ...) and offers [`Node`], which makes
//! the program a whole node: supervisor, edges, workers and the command
//! line (`--help`, `bill`, `token`).
//!
//! ```no_run
//! use torpor::{DurableObject, Env, HandlerResult, Message, Request, Response, State, WebSocket};
//!
//! struct Room {
//!     state: State,
//! }
//!
//! impl DurableObject for Room {
//!     fn new(state: State, _env: Env) -> Room {
//!         Room { state }
//!     }
//!
//!     async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
//!         self.state.accept_websocket(&request, &[])?;
//!         Ok(Response::switching_protocols())
//!     }
//!
//!     async fn websocket_message(&mut self, _ws: WebSocket, message: Message) -> HandlerResult<()> {
//!         self.state.broadcast(message, None, None);
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     torpor::Node::new().class::<Room>("Room").main()
//! }
//! ```
//!
//! The modules below the re-exports are the node's own parts (the hyper
//! front door, the mio hold loop, the supervisor, the config); they are
//! public for the node's benchmarks and tests, not a promise.
//!
//! `unsafe` is denied here as everywhere, and allowed on one function:
//! `hold::trim::release_free_memory`, which calls glibc's `malloc_trim`.

pub use torpor_sdk::*;

mod node;
pub use node::Node;

#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod bill_cli;
#[doc(hidden)]
pub mod billing;
#[doc(hidden)]
pub mod config;
#[doc(hidden)]
pub mod frontdoor;
#[doc(hidden)]
pub mod hold;
#[doc(hidden)]
pub mod ledger;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod node_admin;
#[doc(hidden)]
pub mod supervisor;
#[doc(hidden)]
pub mod token_cli;
#[doc(hidden)]
pub mod wrangler;
