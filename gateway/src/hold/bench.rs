//! The real edge core driven from memory, for the criterion benches in
//! `benches/`: clients are buffers that take what they are written, the
//! worker is scripted, no socket or clock is involved. Not an API: it
//! changes with the core.

use super::edge_core::harness::{self, Harness, Socket};
use bytes::Bytes;
use torpor_proto::ipc::{AutoResponse, ToEdge};

/// An edge with one worker and one namespace.
pub struct Edge {
    harness: Harness,
}

/// A client upgraded on an [`Edge`].
#[derive(Clone, Copy, Debug)]
pub struct Client(Socket);

impl Edge {
    /// An edge that takes up to `sockets_per_object` sockets per object.
    pub fn new(sockets_per_object: usize) -> Edge {
        let mut options = harness::options();
        options.max_connections_per_object = sockets_per_object;
        options.max_outbound_queue_bytes = 64 << 20;
        Edge {
            harness: Harness::new(options),
        }
    }

    /// Upgrades a client to object `room`.
    pub fn connect(&mut self, room: &str) -> Client {
        Client(self.harness.connect(room, &[]))
    }

    /// The object of `client` sets its auto-response.
    pub fn set_auto_response(&mut self, client: Client, request: &[u8], response: &[u8]) {
        self.harness.worker_sends(ToEdge::SetAutoResponse {
            object: client.0.object,
            pair: Some(AutoResponse {
                request: Bytes::copy_from_slice(request),
                response: Bytes::copy_from_slice(response),
                binary: false,
            }),
        });
    }

    /// `client` sends `bytes` (masked frames), as one read hands them
    /// over; unmasked in place, as the edge does.
    pub fn client_sends(&mut self, client: Client, bytes: &mut [u8]) {
        self.harness.core.socket_bytes(client.0.slot, bytes);
        self.harness.settle();
    }

    /// The object of `from` broadcasts `payload` as text to every socket
    /// but `from`, one IPC frame from its worker.
    pub fn broadcast(&mut self, from: Client, payload: &[u8]) {
        self.harness.worker_sends(ToEdge::Broadcast {
            object: from.0.object,
            tag: None,
            except: Some(from.0.handle),
            is_text: true,
            payload: Bytes::copy_from_slice(payload),
        });
    }

    /// What `client` has been written so far.
    pub fn received(&self, client: Client) -> &[u8] {
        &self.harness.peer(client.0).received
    }

    /// Every client takes what it was written.
    pub fn clear_received(&mut self) {
        for peer in self.harness.peers.iter_mut().flatten() {
            peer.received.clear();
        }
    }
}

/// A masked frame as a client sends it.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    harness::client_frame(true, opcode, payload)
}
