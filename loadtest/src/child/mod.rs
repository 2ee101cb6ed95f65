//! The client processes a scenario spawns (`idle-client`, `traffic-client`,
//! `reload-client`): each opens its share of the connections from its own
//! source address and then does what its parent says on stdin, answering on
//! stdout. The [protocol] and [reload_protocol] modules are what crosses that
//! pipe, and all the parent side may know of a child; the engines behind
//! them run on one tokio thread per process so that the client is not what a
//! run measures. Nothing here knows the fleet, the scenarios or the report.

pub mod churn;
pub mod idle;
pub mod open;
pub mod protocol;
pub mod reload;
pub mod reload_protocol;
pub mod traffic;
