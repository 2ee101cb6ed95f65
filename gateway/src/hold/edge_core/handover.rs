//! The edge core as plain data, for `torpor upgrade`: the old edge process
//! suspends its core and sends it, with every connection's descriptor, to
//! the new one, which resumes it. Each client and each worker is owed, byte
//! for byte, what it was owed before: the frames half decoded, the bytes
//! queued and not written, the IPC frames half read or half sent.
//!
//! What cannot move is ended first ([`EdgeCore::end_what_cannot_move`]):
//! a request from the front door waits on a channel to this process, and a
//! socket in the middle of its upgrade has no connection the core holds.

use super::*;
use crate::hold::object::{Object, ObjectState};
use crate::hold::routing::PendingCall;
use crate::hold::session::SessionState;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// An [`EdgeCore`] as plain data.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CoreState {
    edge: u16,
    generation_base: u32,
    generations: Vec<u32>,
    /// Ascending by slot; the adopted ones' connections travel in this
    /// order.
    sessions: Vec<SessionState>,
    objects: Vec<ObjectState>,
    peers: Vec<(u32, IpAddr)>,
    links: Vec<LinkState>,
    calls: Vec<(u64, PendingCall)>,
    next_request_id: u64,
    bytes_in_flight: u64,
    paused_for_bytes: Vec<(u32, u32)>,
    /// Milliseconds left, slot, generation.
    close_deadlines: Vec<(u64, usize, u32)>,
    alarms: AlarmSchedule,
}

#[derive(Debug, Serialize, Deserialize)]
struct LinkState {
    up: bool,
    pid: Option<u32>,
    /// Bytes for the worker not written yet.
    unwritten: Vec<u8>,
    /// Bytes from the worker not handled yet.
    unread: Vec<u8>,
    starting: bool,
    /// Where `Shutdown` ends in `unwritten`.
    exiting: Option<usize>,
    held: Option<Vec<u8>>,
    epoch: u32,
    live_objects: u32,
}

impl CoreState {
    /// Slots of the sessions whose connections travel with the state, in
    /// the order they travel.
    pub(crate) fn connections(&self) -> Vec<usize> {
        self.sessions
            .iter()
            .filter(|s| s.adopted)
            .map(|s| s.slot as usize)
            .collect()
    }

    /// Worker indexes whose connections travel with the state, in order.
    pub(crate) fn links(&self) -> Vec<usize> {
        (0..self.links.len())
            .filter(|&w| self.links[w].up)
            .collect()
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, String> {
        postcard::to_allocvec(self).map_err(|err| format!("cannot encode the edge state: {err}"))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<CoreState, String> {
        postcard::from_bytes(bytes).map_err(|err| format!("cannot decode the edge state: {err}"))
    }
}

impl EdgeCore {
    /// Whether only what can move to another process is left: no request
    /// waits on the front door's channel, and every socket has been
    /// handed its connection.
    pub(crate) fn can_move(&self) -> bool {
        self.routes.pending_fetches() == 0 && self.sessions.iter().all(|(_, s)| s.adopted)
    }

    /// Ends what cannot move: waiting requests get 503 (their client can
    /// retry on the new process), and sockets still being upgraded are
    /// dropped, their objects told (1006) if they had accepted them.
    pub(crate) fn end_what_cannot_move(&mut self) {
        for fetch in self.routes.take_fetches() {
            if let Some(slot) = fetch.upgrade {
                self.drop_socket(slot, Some((1006, "edge upgraded during the handshake")));
            }
            let _ = fetch
                .reply
                .send(FetchReply::error(503, "edge upgrading, retry"));
        }
        let unadopted: Vec<usize> = self
            .sessions
            .iter()
            .filter(|(_, s)| !s.adopted)
            .map(|(slot, _)| slot)
            .collect();
        for slot in unadopted {
            self.drop_socket(slot, Some((1006, "edge upgraded during the handshake")));
        }
    }

    /// The core as plain data. Call [`end_what_cannot_move`]
    /// (Self::end_what_cannot_move) first; the ledger's last usage is sent.
    pub(crate) fn suspend(&mut self) -> CoreState {
        self.flush_ledger();
        let sessions = self
            .sessions
            .iter_mut()
            .map(|(slot, session)| session.suspend(slot as u32))
            .collect();
        let objects = self
            .objects
            .numbered()
            .map(|(number, o)| o.suspend(number))
            .collect();
        let links = self
            .links
            .iter_mut()
            .map(|link| {
                let written = link.written.min(link.out.len());
                LinkState {
                    up: link.up,
                    pid: link.pid,
                    unwritten: link.out[written..].to_vec(),
                    unread: link.rbuf.to_vec(),
                    starting: link.starting,
                    exiting: link.exiting.map(|end| end.saturating_sub(written)),
                    held: link.held.clone(),
                    epoch: link.epoch,
                    live_objects: link.live_objects,
                }
            })
            .collect();
        let (calls, next_request_id) = self.routes.suspend();
        let calls = calls
            .into_iter()
            .map(|(id, call)| {
                (
                    id,
                    PendingCall {
                        caller: call.caller,
                        worker: call.worker,
                        call_id: call.call_id,
                        callee: call.callee,
                        epoch: call.epoch,
                    },
                )
            })
            .collect();
        let now = self.now;
        CoreState {
            edge: self.options.edge,
            generation_base: self.generation_base,
            generations: self.generations.clone(),
            sessions,
            objects,
            peers: self.addresses.peers(),
            links,
            calls,
            next_request_id,
            bytes_in_flight: self.bytes_in_flight,
            paused_for_bytes: self.paused_for_bytes.clone(),
            close_deadlines: self
                .close_deadlines
                .iter()
                .map(|&(deadline, slot, generation)| {
                    let left = deadline.saturating_duration_since(now).as_millis();
                    (u64::try_from(left).unwrap_or(u64::MAX), slot, generation)
                })
                .collect(),
            alarms: std::mem::take(&mut self.alarms),
        }
    }

    /// The core a previous process suspended, for edge `options.edge`.
    /// The shell registers the connections, then calls
    /// [`resumed`](Self::resumed).
    pub(crate) fn resume(
        options: HoldOptions,
        state: CoreState,
        now: Instant,
        now_ms: u64,
    ) -> Result<EdgeCore, String> {
        if state.edge != options.edge {
            return Err(format!(
                "the state is edge {}'s, not edge {}'s",
                state.edge, options.edge
            ));
        }
        if state.links.len() != usize::from(options.workers) {
            return Err(format!(
                "the state has {} workers, the config {}",
                state.links.len(),
                options.workers
            ));
        }
        let mut objects = Vec::with_capacity(state.objects.len());
        for object in state.objects {
            let number = object.number;
            let object = Object::resume(object, options.workers)
                .ok_or_else(|| format!("object {number} has a malformed id"))?;
            objects.push((number, object));
        }
        let mut core = EdgeCore::new(options, now, now_ms, state.generation_base);
        core.generations = state.generations;
        core.objects = ObjectTable::from_numbered(objects)?;
        core.sessions = state
            .sessions
            .into_iter()
            .map(|s| (s.slot as usize, Session::resume(s)))
            .collect();
        for (slot, peer) in state.peers {
            core.addresses.remember(slot, peer);
        }
        let listed: Vec<u32> = core
            .sessions
            .iter()
            .filter(|(_, s)| s.position.is_some())
            .map(|(slot, _)| slot as u32)
            .collect();
        for slot in listed {
            core.addresses.listed(slot);
            if let Some(session) = core.sessions.get(slot as usize) {
                if let Some(o) = core.objects.get_mut(session.object) {
                    o.count_tags(&session.tags, true);
                }
            }
        }
        core.links = state
            .links
            .into_iter()
            .map(|l| Link {
                up: l.up,
                pid: l.pid,
                out: l.unwritten,
                written: 0,
                rbuf: BytesMut::from(&l.unread[..]),
                starting: l.starting,
                exiting: l.exiting,
                held: l.held,
                epoch: l.epoch,
                live_objects: l.live_objects,
            })
            .collect();
        core.routes = Routes::resume(state.calls, state.next_request_id);
        core.bytes_in_flight = state.bytes_in_flight;
        core.paused_for_bytes = state.paused_for_bytes;
        core.close_deadlines = state
            .close_deadlines
            .into_iter()
            .map(|(left, slot, generation)| (now + Duration::from_millis(left), slot, generation))
            .collect();
        core.alarms = state.alarms;
        // The next sockets file is this process's: write it soon.
        core.membership_changed = true;
        Ok(core)
    }

    /// The shell holds every connection of the resumed state: what was
    /// queued for clients is written, and what workers sent and was not
    /// handled yet is.
    pub(crate) fn resumed(&mut self) {
        let slots: Vec<usize> = self.sessions.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.mark_to_flush(slot);
        }
    }
}
