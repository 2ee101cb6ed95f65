//! Prometheus metric names of the edge, described once at start-up. The hold
//! loop counts in plain integers and flushes them once per loop turn.

use metrics::{counter, describe_counter, describe_gauge, gauge, Counter, Gauge};

/// Open WebSockets held by the edge.
pub const CONNECTIONS: &str = "torpor_edge_connections";
/// Messages from clients forwarded to objects.
pub const WS_MESSAGES_IN: &str = "torpor_edge_ws_messages_in_total";
/// Messages delivered to clients.
pub const WS_MESSAGES_OUT: &str = "torpor_edge_ws_messages_out_total";
/// Auto-responses answered by the edge.
pub const AUTO_RESPONSES: &str = "torpor_edge_auto_responses_total";
/// Protocol pings answered by the edge.
pub const PROTOCOL_PINGS: &str = "torpor_edge_protocol_pings_total";
/// Objects activated in a worker.
pub const WAKES: &str = "torpor_edge_wakes_total";
/// Accepted upgrades.
pub const UPGRADES: &str = "torpor_edge_upgrades_total";
/// Sockets closed for breaking RFC 6455 or a limit.
pub const PROTOCOL_ERRORS: &str = "torpor_edge_protocol_errors_total";
/// Sockets closed because they did not read their queue.
pub const SLOW_CLIENT_CLOSES: &str = "torpor_edge_slow_client_closes_total";
/// Pings the keepalive sent to quiet sockets.
pub const KEEPALIVE_PINGS: &str = "torpor_edge_keepalive_pings_total";
/// Sockets closed for leaving the keepalive's pings unanswered.
pub const KEEPALIVE_TIMEOUTS: &str = "torpor_edge_keepalive_timeouts_total";
/// HTTP requests refused at the front door, by status.
pub const HTTP_REJECTS: &str = "torpor_frontdoor_rejects_total";

/// Describes every metric; called once by the binary.
pub fn describe() {
    describe_gauge!(CONNECTIONS, "open websockets held by the edge");
    describe_counter!(WS_MESSAGES_IN, "client messages forwarded to objects");
    describe_counter!(WS_MESSAGES_OUT, "messages delivered to clients");
    describe_counter!(AUTO_RESPONSES, "auto-responses answered by the edge");
    describe_counter!(PROTOCOL_PINGS, "protocol pings answered by the edge");
    describe_counter!(WAKES, "objects activated in a worker");
    describe_counter!(UPGRADES, "accepted websocket upgrades");
    describe_counter!(
        PROTOCOL_ERRORS,
        "sockets closed for a protocol error or limit"
    );
    describe_counter!(SLOW_CLIENT_CLOSES, "sockets closed for not reading");
    describe_counter!(KEEPALIVE_PINGS, "keepalive pings sent to quiet sockets");
    describe_counter!(
        KEEPALIVE_TIMEOUTS,
        "sockets closed for not answering keepalive pings"
    );
    describe_counter!(HTTP_REJECTS, "requests refused at the front door");
}

struct Handles {
    connections: Gauge,
    ws_messages_in: Counter,
    ws_messages_out: Counter,
    auto_responses: Counter,
    protocol_pings: Counter,
    wakes: Counter,
    upgrades: Counter,
    protocol_errors: Counter,
    slow_client_closes: Counter,
    keepalive_pings: Counter,
    keepalive_timeouts: Counter,
}

/// Counts since the last flush.
#[derive(Default)]
pub(crate) struct EdgeCounters {
    handles: Option<Box<Handles>>,
    pub(crate) connections: u64,
    pub(crate) ws_messages_in: u64,
    pub(crate) ws_messages_out: u64,
    pub(crate) auto_responses: u64,
    pub(crate) protocol_pings: u64,
    pub(crate) wakes: u64,
    pub(crate) upgrades: u64,
    pub(crate) protocol_errors: u64,
    pub(crate) slow_client_closes: u64,
    pub(crate) keepalive_pings: u64,
    pub(crate) keepalive_timeouts: u64,
}

impl EdgeCounters {
    pub(crate) fn flush(&mut self) {
        let handles = self.handles.get_or_insert_with(|| {
            Box::new(Handles {
                connections: gauge!(CONNECTIONS),
                ws_messages_in: counter!(WS_MESSAGES_IN),
                ws_messages_out: counter!(WS_MESSAGES_OUT),
                auto_responses: counter!(AUTO_RESPONSES),
                protocol_pings: counter!(PROTOCOL_PINGS),
                wakes: counter!(WAKES),
                upgrades: counter!(UPGRADES),
                protocol_errors: counter!(PROTOCOL_ERRORS),
                slow_client_closes: counter!(SLOW_CLIENT_CLOSES),
                keepalive_pings: counter!(KEEPALIVE_PINGS),
                keepalive_timeouts: counter!(KEEPALIVE_TIMEOUTS),
            })
        });
        handles.connections.set(self.connections as f64);
        for (counter, value) in [
            (&handles.ws_messages_in, &mut self.ws_messages_in),
            (&handles.ws_messages_out, &mut self.ws_messages_out),
            (&handles.auto_responses, &mut self.auto_responses),
            (&handles.protocol_pings, &mut self.protocol_pings),
            (&handles.wakes, &mut self.wakes),
            (&handles.upgrades, &mut self.upgrades),
            (&handles.protocol_errors, &mut self.protocol_errors),
            (&handles.slow_client_closes, &mut self.slow_client_closes),
            (&handles.keepalive_pings, &mut self.keepalive_pings),
            (&handles.keepalive_timeouts, &mut self.keepalive_timeouts),
        ] {
            if *value != 0 {
                counter.increment(std::mem::take(value));
            }
        }
    }
}
