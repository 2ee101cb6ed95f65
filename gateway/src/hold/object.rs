//! What the edge keeps per object: its sockets, its auto-response, whether
//! it is live in its worker, and its usage counts.

use crate::ledger::UsageDelta;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use torpor_objects::ids::ObjectId;
use torpor_proto::ipc::AutoResponse;

pub(crate) struct AutoReply {
    pub(crate) pair: AutoResponse,
    /// The response, framed once.
    pub(crate) frame: Bytes,
}

/// Exact usage counts of one object, since the node started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Times an instance was created (`new` ran).
    pub wakes: u64,
    /// Events delivered: requests, messages, closes.
    pub events: u64,
    /// HTTP requests, upgrades included.
    pub requests: u64,
    /// Accepted WebSocket upgrades.
    pub upgrades: u64,
    /// Messages from clients that reached the object.
    pub ws_messages_in: u64,
    /// Messages the object sent (each delivery counts).
    pub ws_messages_out: u64,
    /// Auto-responses the edge sent for it.
    pub auto_responses: u64,
    /// Protocol pings the edge answered.
    pub protocol_pings: u64,
    /// Alarm invocations, retries included.
    pub alarms: u64,
    /// RPC calls from other objects.
    pub rpc_calls: u64,
    /// Storage rows read.
    pub rows_read: u64,
    /// Storage rows written.
    pub rows_written: u64,
    /// Time live in a worker.
    #[serde(skip)]
    pub active: Duration,
}

/// One object as the admin API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ObjectReport {
    /// Namespace.
    pub namespace: String,
    /// Class.
    pub class: String,
    /// Id, 64 hex characters.
    pub id: String,
    /// The name the id came from, if known.
    pub name: Option<String>,
    /// Open sockets.
    pub connections: usize,
    /// Live in its worker now.
    pub active: bool,
    /// Seconds live in a worker, this one included.
    pub active_seconds: f64,
    /// Requests plus incoming messages at 20:1, without rounding.
    pub billable_requests: f64,
    /// Size of the object's database when last reported, in bytes.
    pub stored_bytes: Option<u64>,
    /// Raw counts.
    #[serde(flatten)]
    pub usage: Usage,
}

pub(crate) struct Object {
    pub(crate) namespace: Arc<str>,
    pub(crate) class: Arc<str>,
    pub(crate) id: ObjectId,
    /// The name the id was derived from, once the edge has seen it.
    pub(crate) name: Option<Box<str>>,
    pub(crate) worker: u16,
    pub(crate) sockets: Vec<u32>,
    /// How many of `sockets` carry each tag: a handler asking for a tag
    /// no socket has (a wake's `get_websockets(tag)`, often) is answered
    /// without a walk over a room of 32,768.
    pub(crate) tag_counts: HashMap<Box<str>, u32>,
    pub(crate) live: bool,
    /// Events sent since the object was last activated.
    pub(crate) sent: u64,
    pub(crate) in_flight: u32,
    /// The encoded size of each event in flight, oldest first: a worker
    /// answers an object's events in order, one `Done` each.
    pub(crate) in_flight_sizes: std::collections::VecDeque<u32>,
    /// The sum of `in_flight_sizes`.
    pub(crate) in_flight_bytes: u64,
    /// Sockets whose reading waits for `in_flight` to fall.
    pub(crate) paused: Vec<u32>,
    pub(crate) auto_reply: Option<Box<AutoReply>>,
    /// Whether the worker has told this edge the auto-response (set or
    /// cleared) at least once.
    pub(crate) auto_reply_known: bool,
    pub(crate) usage: Usage,
    /// Size of the object's database when last reported.
    pub(crate) stored_bytes: Option<u64>,
    /// What the ledger has been sent so far.
    recorded: crate::ledger::Usage,
    recorded_stored_bytes: Option<u64>,
}

impl Object {
    /// A socket carrying `tags` joined the object's list, or left it.
    pub(crate) fn count_tags(&mut self, tags: &[Box<str>], joined: bool) {
        for tag in tags {
            if joined {
                // Most joins find their tag counted already: clone it
                // only for the first socket that carries it.
                match self.tag_counts.get_mut(tag) {
                    Some(count) => *count += 1,
                    None => {
                        self.tag_counts.insert(tag.clone(), 1);
                    }
                }
            } else if let Some(count) = self.tag_counts.get_mut(tag) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.tag_counts.remove(tag);
                }
            }
        }
    }

    /// Whether some listed socket may carry `tag`.
    pub(crate) fn has_tagged(&self, tag: &str) -> bool {
        self.tag_counts.contains_key(tag)
    }

    pub(crate) fn new(
        namespace: Arc<str>,
        class: Arc<str>,
        id: ObjectId,
        name: Option<Box<str>>,
        worker: u16,
    ) -> Object {
        Object {
            namespace,
            class,
            id,
            name,
            worker,
            sockets: Vec::new(),
            tag_counts: HashMap::new(),
            live: false,
            sent: 0,
            in_flight: 0,
            in_flight_sizes: std::collections::VecDeque::new(),
            in_flight_bytes: 0,
            paused: Vec::new(),
            auto_reply: None,
            auto_reply_known: false,
            usage: Usage::default(),
            stored_bytes: None,
            recorded: crate::ledger::Usage::default(),
            recorded_stored_bytes: None,
        }
    }

    pub(crate) fn go_idle(&mut self) {
        self.live = false;
    }

    /// Events in flight that will not be answered (their worker went
    /// away): forgets them, and returns their bytes.
    pub(crate) fn forget_in_flight(&mut self) -> u64 {
        self.in_flight = 0;
        self.in_flight_bytes = 0;
        self.in_flight_sizes.drain(..).map(u64::from).sum()
    }

    /// `events` events were answered: returns their bytes.
    pub(crate) fn answered(&mut self, events: u32) -> u64 {
        self.in_flight = self.in_flight.saturating_sub(events);
        let count = (events as usize).min(self.in_flight_sizes.len());
        let bytes: u64 = self.in_flight_sizes.drain(..count).map(u64::from).sum();
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
        bytes
    }

    /// Live time the worker reports; the node's edges together hold the
    /// whole of it.
    pub(crate) fn add_active(&mut self, micros: u64) {
        self.usage.active += Duration::from_micros(micros);
    }

    /// Whether the edge may forget the object: not live, no socket, nothing
    /// in flight or waiting, and (with a ledger) every count in it.
    pub(crate) fn is_forgettable(&self, with_ledger: bool) -> bool {
        let idle = !self.live
            && self.sockets.is_empty()
            && self.in_flight == 0
            && self.in_flight_sizes.is_empty()
            && self.paused.is_empty();
        idle && (!with_ledger || self.is_recorded())
    }

    /// Whether the ledger has been sent every count.
    fn is_recorded(&self) -> bool {
        self.stored_bytes == self.recorded_stored_bytes
            && self.recorded.requests == self.usage.requests
            && self.recorded.rpc_calls == self.usage.rpc_calls
            && self.recorded.alarms == self.usage.alarms
            && self.recorded.ws_upgrades == self.usage.upgrades
            && self.recorded.ws_messages_in == self.usage.ws_messages_in
            && self.recorded.ws_messages_out == self.usage.ws_messages_out
            && self.recorded.auto_responses == self.usage.auto_responses
            && self.recorded.protocol_pings == self.usage.protocol_pings
            && self.recorded.rows_read == self.usage.rows_read
            && self.recorded.rows_written == self.usage.rows_written
            && u128::from(self.recorded.active_ms) == self.usage.active.as_millis()
    }

    /// What the object used since the last call, for the ledger; `None` if
    /// nothing changed.
    pub(crate) fn take_ledger_delta(&mut self) -> Option<UsageDelta> {
        let u = &self.usage;
        let total = crate::ledger::Usage {
            requests: u.requests,
            rpc_calls: u.rpc_calls,
            alarms: u.alarms,
            ws_upgrades: u.upgrades,
            ws_messages_in: u.ws_messages_in,
            ws_messages_out: u.ws_messages_out,
            auto_responses: u.auto_responses,
            protocol_pings: u.protocol_pings,
            active_ms: u64::try_from(u.active.as_millis()).unwrap_or(u64::MAX),
            rows_read: u.rows_read,
            rows_written: u.rows_written,
        };
        let r = &self.recorded;
        let delta = crate::ledger::Usage {
            requests: total.requests - r.requests,
            rpc_calls: total.rpc_calls - r.rpc_calls,
            alarms: total.alarms - r.alarms,
            ws_upgrades: total.ws_upgrades - r.ws_upgrades,
            ws_messages_in: total.ws_messages_in - r.ws_messages_in,
            ws_messages_out: total.ws_messages_out - r.ws_messages_out,
            auto_responses: total.auto_responses - r.auto_responses,
            protocol_pings: total.protocol_pings - r.protocol_pings,
            active_ms: total.active_ms - r.active_ms,
            rows_read: total.rows_read - r.rows_read,
            rows_written: total.rows_written - r.rows_written,
        };
        let stored_changed = self.stored_bytes != self.recorded_stored_bytes;
        if delta.is_zero() && !stored_changed {
            return None;
        }
        self.recorded = total;
        self.recorded_stored_bytes = self.stored_bytes;
        Some(UsageDelta {
            class: self.class.to_string(),
            name: self.ledger_name(),
            usage: delta,
            stored_bytes: if stored_changed {
                self.stored_bytes
            } else {
                None
            },
        })
    }

    /// The object as plain data, for the next edge process.
    pub(crate) fn suspend(&self, number: u32) -> ObjectState {
        ObjectState {
            number,
            namespace: self.namespace.to_string(),
            class: self.class.to_string(),
            id: self.id.to_hex(),
            name: self.name.as_deref().map(str::to_owned),
            sockets: self.sockets.clone(),
            live: self.live,
            sent: self.sent,
            in_flight: self.in_flight,
            in_flight_sizes: self.in_flight_sizes.iter().copied().collect(),
            paused: self.paused.clone(),
            auto_response: self.auto_reply.as_ref().map(|a| {
                (
                    a.pair.request.to_vec(),
                    a.pair.response.to_vec(),
                    a.pair.binary,
                )
            }),
            auto_response_known: self.auto_reply_known,
            active_us: u64::try_from(self.usage.active.as_micros()).unwrap_or(u64::MAX),
            usage: self.usage.clone(),
            recorded: self.recorded.clone(),
            stored_bytes: self.stored_bytes,
            recorded_stored_bytes: self.recorded_stored_bytes,
        }
    }

    /// The object [`suspend`](Self::suspend) described; `None` if its id
    /// is malformed.
    pub(crate) fn resume(state: ObjectState, workers: u16) -> Option<Object> {
        let id = ObjectId::from_hex(&state.id)?;
        let mut usage = state.usage;
        usage.active = Duration::from_micros(state.active_us);
        Some(Object {
            namespace: Arc::from(state.namespace),
            class: Arc::from(state.class),
            id,
            name: state.name.map(String::into_boxed_str),
            worker: worker_for(&id, workers),
            sockets: state.sockets,
            tag_counts: HashMap::new(),
            live: state.live,
            sent: state.sent,
            in_flight: state.in_flight,
            in_flight_bytes: state.in_flight_sizes.iter().map(|&s| u64::from(s)).sum(),
            in_flight_sizes: state.in_flight_sizes.into(),
            paused: state.paused,
            auto_reply: state.auto_response.map(|(request, response, binary)| {
                let opcode = match binary {
                    true => torpor_proto::ws::OpCode::Binary,
                    false => torpor_proto::ws::OpCode::Text,
                };
                let frame = Bytes::from(torpor_proto::ws::encode_frame(opcode, &response));
                Box::new(AutoReply {
                    pair: AutoResponse {
                        request: request.into(),
                        response: response.into(),
                        binary,
                    },
                    frame,
                })
            }),
            auto_reply_known: state.auto_response_known,
            usage,
            stored_bytes: state.stored_bytes,
            recorded: state.recorded,
            recorded_stored_bytes: state.recorded_stored_bytes,
        })
    }

    /// The ledger and the admin API know an object by its name when it has
    /// one, else by its id.
    fn ledger_name(&self) -> String {
        self.name
            .as_deref()
            .map_or_else(|| self.id.to_hex(), str::to_owned)
    }

    pub(crate) fn report(&self) -> ObjectReport {
        let usage = self.usage.clone();
        ObjectReport {
            namespace: self.namespace.to_string(),
            class: self.class.to_string(),
            id: self.id.to_hex(),
            name: self.name.as_deref().map(str::to_owned),
            connections: self.sockets.len(),
            active: self.live,
            active_seconds: usage.active.as_secs_f64(),
            billable_requests: (usage.requests + usage.alarms + usage.rpc_calls) as f64
                + usage.ws_messages_in as f64 / 20.0,
            stored_bytes: self.stored_bytes,
            usage,
        }
    }
}

/// An [`Object`] as plain data.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ObjectState {
    pub(crate) number: u32,
    namespace: String,
    class: String,
    id: String,
    name: Option<String>,
    sockets: Vec<u32>,
    live: bool,
    sent: u64,
    in_flight: u32,
    in_flight_sizes: Vec<u32>,
    paused: Vec<u32>,
    /// Request, response, binary.
    auto_response: Option<(Vec<u8>, Vec<u8>, bool)>,
    auto_response_known: bool,
    active_us: u64,
    usage: Usage,
    recorded: crate::ledger::Usage,
    stored_bytes: Option<u64>,
    recorded_stored_bytes: Option<u64>,
}

/// Stable across processes and releases (unlike std's hasher), so an object
/// always lands on the same worker index.
pub(crate) fn worker_for(id: &ObjectId, workers: u16) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.to_hex().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(workers.max(1))) as u16
}
