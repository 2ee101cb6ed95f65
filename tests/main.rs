#![allow(clippy::unwrap_used)]
//! Integration tests: each test runs the real `torpor` binary on a temp config and talks to
//! it over loopback sockets.

mod support;

mod admin;
mod alarms;
mod auth;
mod auto_response;
mod broadcast;
mod chat;
mod cli;
mod closing;
mod crash;
mod echo;
mod edge_limits;
mod edges;
mod failures;
mod game_relay;
mod gates;
mod hibernation;
mod ids;
mod js;
mod keepalive;
mod ledger;
mod limits;
mod presence;
mod protocol;
mod reload;
mod rpc;
mod setup;
mod storage;
mod upgrade;
mod workers;
