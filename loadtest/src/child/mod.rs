//! The client processes a scenario spawns (`idle-client`, `traffic-client`,
//! `reload-client`): each opens its share of the connections from its own
//! source address and then does what its parent says on stdin, answering on
//! stdout. The [protocol] and [reload_protocol] modules are what crosses that
//! pipe (an idle client's flags are all of its protocol, and stay in
//! [idle]); the engines behind them run on one tokio thread per process so
//! that the client is not what a run measures. Nothing here knows the fleet, the scenarios or the report.
//!
//! The traffic and reload engines share their start-up and opening
//! ([open]), not their connection loops: a traffic client's sockets are also
//! written from the open-loop pacer's thread (so a `Mutex` and atomics per
//! connection), a reload client's only from its one thread, with per-socket
//! checks of every echo and broadcast (so `Rc` and `RefCell`). One loop for
//! both would cost one of them what the other needs.

pub mod churn;
pub mod idle;
pub mod open;
pub mod protocol;
pub mod reload;
pub mod reload_protocol;
pub mod traffic;
