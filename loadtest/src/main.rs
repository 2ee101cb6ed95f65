//! `loadtest`: Torpor's load generator, and the baseline servers it is
//! measured against. Scenarios: `idle` (memory per idle connection), `ping`
//! (auto-response round trips), `echo` (round trips through a live object),
//! `broadcast` (one message to every socket of an object), `churn`
//! (connects and disconnects per second), `create` (new objects per
//! second over HTTP), `wake` (a hibernated object's first reply), `alarms`
//! (how late alarms fire), `reload` (the workers, or the edges, swapped for
//! a new binary under load) and `attack` (a fresh client's
//! first echo while one client process attacks the node). `baseline-server` is the
//! plain tokio-tungstenite server the scenarios compare Torpor with, and
//! `idle-client`/`traffic-client`/`reload-client` are the hidden child
//! processes the scenarios spawn.
//!
//! Folders by role, each depending only on those after it:
//! - [cli]: the command line (usage, flags, options, dispatch);
//! - [scenarios]: one module per command, the parent's side of its run;
//! - [fleet]: the parent's side every scenario shares: the servers under
//!   test, the client processes, a measured phase;
//! - [child]: the client processes and what they say to their parent;
//! - [report]: the result model and its text, HTML and charts;
//! - [measure]: RSS, CPU, kernel socket memory, latency histograms;
//! - [wire]: the WebSocket client and the admin API's HTTP client.
//!
//! [baseline] is the baseline server, apart from all of them. A test
//! (`layers.rs`) fails if a module names a folder above its own.
// A load generator's results are its output, and stdout is also how a client
// process reports to its parent, so printing is the point here.
#![allow(clippy::print_stdout)]

mod baseline;
mod child;
mod cli;
mod fleet;
#[cfg(test)]
mod layers;
mod measure;
mod report;
mod scenarios;
mod wire;

fn main() -> std::process::ExitCode {
    cli::main()
}
