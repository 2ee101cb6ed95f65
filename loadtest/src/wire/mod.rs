//! How loadtest talks to a node over the network, from the client's end: the
//! hand-written WebSocket [client] (upgrade, masked frames out, frames in,
//! connections bound to a chosen source address), a [frames] scanner that
//! finds frames in a stream without a buffer per connection, a talking
//! [session] for the latency scenarios, and the [admin] API's small HTTP
//! client. It knows nothing of processes, scenarios or reports.

pub mod admin;
pub mod client;
pub mod frames;
pub mod session;
