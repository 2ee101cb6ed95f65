//! What the edge core does with its sessions: adoption, bytes in, frames
//! out under each queue's limit, the close handshake and its deadline,
//! keepalive, and each socket's listing in its object.

use super::*;

impl EdgeCore {
    /// The slot the front door hands over for `handle`, if it is still
    /// waiting for it; the shell then registers the connection and calls
    /// [`adopted`](Self::adopted).
    pub(crate) fn adoptable(&self, handle: SocketHandle) -> Option<(usize, u32)> {
        let slot = self.slot_of(handle)?;
        Some((slot, self.sessions[slot].generation))
    }

    /// The shell holds the socket's connection now; `read_ahead` is what
    /// the front door read past the handshake.
    pub(crate) fn adopted(&mut self, slot: usize, read_ahead: &[u8], scratch: &mut [u8]) {
        self.trimmer.churned();
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        session.adopted = true;
        let generation = session.generation;
        match session.phase {
            Phase::Accepted => session.phase = Phase::Open,
            Phase::Overflowed => {
                session.phase = Phase::Open;
                self.report_closed(slot, 1008, OVERFLOW_REASON, false);
                self.close_gracefully(slot, close_frame(1008, OVERFLOW_REASON));
                return;
            }
            _ => {}
        }
        self.mark_to_flush(slot);
        for chunk in read_ahead.chunks(scratch.len().max(1)) {
            if self
                .sessions
                .get(slot)
                .is_none_or(|s| s.generation != generation)
            {
                return;
            }
            scratch[..chunk.len()].copy_from_slice(chunk);
            self.socket_bytes(slot, &mut scratch[..chunk.len()]);
        }
    }

    /// The shell could not take the socket's connection.
    pub(crate) fn adoption_failed(&mut self, slot: usize) {
        self.drop_socket(slot, Some((1006, "socket setup failed")));
    }

    /// Whether the shell should read the socket now.
    pub(crate) fn wants_bytes(&self, slot: usize, generation: u32) -> bool {
        self.sessions
            .get(slot)
            .is_some_and(|s| s.generation == generation && s.wants_bytes())
    }

    /// The generation of the session at `slot`, if one is there.
    pub(crate) fn generation_at(&self, slot: usize) -> Option<u32> {
        self.sessions.get(slot).map(|s| s.generation)
    }

    /// The client's connection ended or failed.
    pub(crate) fn socket_gone(&mut self, slot: usize) {
        self.drop_socket(slot, Some((1006, "")));
    }

    /// Bytes from a client. Unmasked in place.
    pub(crate) fn socket_bytes(&mut self, slot: usize, bytes: &mut [u8]) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        session.heard = true;
        let generation = session.generation;
        let mut conn = std::mem::take(&mut session.conn);
        let limits = ws::Limits {
            max_message_bytes: self.options.max_message_bytes,
        };
        let result = conn.handle_bytes(bytes, &limits, &mut |event| {
            self.on_ws_event(slot, generation, event)
        });
        let Some(session) = self
            .sessions
            .get_mut(slot)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        session.conn = conn;
        if let Err(err) = result {
            debug!(%err, slot, "protocol error");
            self.counters.protocol_errors += 1;
            session.read_closed = true;
            let code = err.close_code();
            let reason = err.to_string();
            self.report_closed(slot, code, &reason, false);
            self.close_gracefully(slot, close_frame(code, &reason));
        }
    }

    pub(super) fn on_ws_event(&mut self, slot: usize, generation: u32, event: Event<'_>) {
        let Some(session) = self
            .sessions
            .get_mut(slot)
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        let object = session.object;
        let Some(o) = self.objects.get_mut(object) else {
            return;
        };
        let max_pings = self.options.max_pings_per_second;
        match session.react(&event, o.auto_reply.as_deref(), self.now_ms, max_pings) {
            Reaction::Ignore => {}
            Reaction::AutoResponded => {
                o.usage.auto_responses += 1;
                self.counters.auto_responses += 1;
                let frame = o.auto_reply.as_ref().map(|a| a.frame.clone());
                if let Some(frame) = frame {
                    self.queue_frame(slot, frame);
                }
            }
            Reaction::Ponged => {
                o.usage.protocol_pings += 1;
                self.counters.protocol_pings += 1;
                self.mark_to_flush(slot);
            }
            Reaction::PingFlood => {
                self.counters.protocol_errors += 1;
                debug!(slot, max_pings, "too many pings, closing");
                session.read_closed = true;
                self.report_closed(slot, 1008, PING_FLOOD_REASON, false);
                self.close_gracefully(slot, close_frame(1008, PING_FLOOD_REASON));
            }
            Reaction::Deliver => {
                let (is_text, payload) = match event {
                    Event::Text(payload) => (true, payload),
                    Event::Binary(payload) => (false, payload),
                    _ => return,
                };
                o.usage.ws_messages_in += 1;
                self.counters.ws_messages_in += 1;
                let handle = SocketHandle {
                    edge: self.options.edge,
                    slot: slot as u32,
                    generation,
                };
                let at_ms = session.auto_response_at_ms;
                self.send_encoded(object, |out| {
                    ToWorker::encode_message(out, object, handle, is_text, at_ms, payload)
                });
                if self.object_is_full(object) {
                    self.sessions[slot].paused = true;
                    self.object(object).paused.push(slot as u32);
                } else if self.bytes_in_flight >= self.options.max_bytes_in_flight {
                    self.sessions[slot].paused = true;
                    self.paused_for_bytes.push((slot as u32, generation));
                }
            }
            Reaction::PeerClosed => {
                let Event::Close { code, reason } = event else {
                    return;
                };
                let payload = code.map_or_else(Vec::new, |c| close_payload(c, ""));
                self.report_closed(slot, code.unwrap_or(1005), reason, true);
                self.close_gracefully(slot, Bytes::from(encode_frame(OpCode::Close, &payload)));
            }
            Reaction::CloseAnswered => self.finish_if_closed(slot),
        }
    }

    /// Queues a frame for a client; it is written when the shell next
    /// writes.
    pub(super) fn queue_frame(&mut self, slot: usize, frame: Bytes) {
        self.queue_frame_as(slot, frame, false);
    }

    /// Queues a frame for a client, never copying a `shared` one.
    pub(super) fn queue_frame_as(&mut self, slot: usize, frame: Bytes, shared: bool) {
        let limit = self.options.max_outbound_queue_bytes;
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.out.is_none() {
            session.out = self.spare_queues.pop();
        }
        match session.queue(frame, limit, shared) {
            Queued::Yes => {
                let unwritten = session.out.as_ref().map_or(0, |q| q.bytes());
                if unwritten >= WRITE_SOON_BYTES {
                    self.write_soon = true;
                }
                self.mark_to_flush(slot);
            }
            Queued::Dropped => {}
            Queued::OverDuringAccept => {
                self.counters.slow_client_closes += 1;
                debug!(slot, limit, "sends during accept over the outbound limit");
            }
            Queued::OverLimit => self.close_slow_client(slot),
        }
    }

    /// Lists the socket among those the shell writes next, unless it is
    /// not the shell's yet or waits for writability (its event will come).
    pub(super) fn mark_to_flush(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.to_flush || session.awaiting_writable || !session.adopted {
            return;
        }
        if session.out.as_ref().is_none_or(|q| q.is_empty()) {
            return;
        }
        session.to_flush = true;
        self.to_flush.push((slot as u32, session.generation));
    }

    /// The next socket (slot, generation) with bytes to write, for the
    /// shell: it calls [`write_to`](Self::write_to) with its connection.
    pub(crate) fn next_to_flush(&mut self) -> Option<(usize, u32)> {
        let Some((slot, generation)) = self.to_flush.pop() else {
            self.write_soon = false;
            return None;
        };
        Some((slot as usize, generation))
    }

    /// The next socket (slot, generation) whose reading resumed, for the
    /// shell to read to its end.
    pub(crate) fn next_to_read(&mut self) -> Option<(usize, u32)> {
        let (slot, generation) = self.to_read.pop()?;
        Some((slot as usize, generation))
    }

    /// Writes the socket's queue to `stream` (its connection, or a test's
    /// stand-in); returns a change of interest in writability.
    pub(crate) fn write_to(
        &mut self,
        slot: usize,
        generation: u32,
        stream: &mut impl Write,
    ) -> WantWritable {
        let session = self
            .sessions
            .get_mut(slot)
            .filter(|s| s.generation == generation)?;
        session.to_flush = false;
        let Some(queue) = session.out.as_mut() else {
            return std::mem::take(&mut session.awaiting_writable).then_some(false);
        };
        match queue.flush(stream) {
            Ok(true) => {
                if let Some(mut queue) = session.out.take() {
                    if self.spare_queues.len() < SPARE_QUEUES {
                        queue.clear();
                        self.spare_queues.push(queue);
                    }
                }
                let was_waiting = std::mem::take(&mut session.awaiting_writable);
                if session.phase == Phase::Closing {
                    self.finish_if_closed(slot);
                }
                was_waiting.then_some(false)
            }
            Ok(false) => (!std::mem::replace(&mut session.awaiting_writable, true)).then_some(true),
            Err(_) => {
                self.drop_socket(slot, Some((1006, "")));
                None
            }
        }
    }

    /// A client whose queue would go over the outbound limit is closed
    /// (1008, reported to its object), not the edge's memory grown.
    pub(super) fn close_slow_client(&mut self, slot: usize) {
        self.counters.slow_client_closes += 1;
        if let Some(session) = self.sessions.get(slot) {
            debug!(
                slot,
                queued = session.queued_bytes(),
                "client does not read, closing"
            );
        }
        self.report_closed(slot, 1008, OVERFLOW_REASON, false);
        self.unlist_socket(slot);
        // It will not read a close frame either: one best-effort try.
        self.end_socket(slot, Some(close_frame(1008, OVERFLOW_REASON)));
    }

    /// Sends a close frame after what is queued; the socket closes once it
    /// is written and the client's Close has been read (at once if it has
    /// been already), or at the close deadline.
    pub(super) fn close_gracefully(&mut self, slot: usize, frame: Bytes) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.out.is_none() {
            session.out = self.spare_queues.pop();
        }
        if !session.start_closing(frame) {
            self.finish_if_closed(slot);
            return;
        }
        let generation = session.generation;
        self.close_deadlines
            .push_back((self.now + CLOSE_TIMEOUT, slot, generation));
        self.unlist_socket(slot);
        self.mark_to_flush(slot);
    }

    /// One step of the keepalive sweep: quiet open sockets get a ping, and
    /// those that left too many unanswered are closed (1006 to the object).
    pub(super) fn sweep_keepalive(&mut self) {
        let Some(slots) = self
            .keepalive
            .poll_sweep(self.now, self.sessions.capacity())
        else {
            return;
        };
        for slot in slots {
            let Some(session) = self.sessions.get_mut(slot) else {
                continue;
            };
            if session.phase != Phase::Open {
                continue;
            }
            match self
                .keepalive
                .check(&mut session.heard, &mut session.missed_pings)
            {
                Verdict::Fine => {}
                Verdict::Ping => {
                    self.counters.keepalive_pings += 1;
                    self.queue_frame(slot, Bytes::from_static(&KEEPALIVE_PING));
                }
                Verdict::Dead => {
                    self.counters.keepalive_timeouts += 1;
                    debug!(slot, "no answer to keepalive pings, closing");
                    self.drop_socket(slot, Some((1006, "no answer to keepalive pings")));
                }
            }
        }
    }

    pub(super) fn finish_if_closed(&mut self, slot: usize) {
        let done = self
            .sessions
            .get(slot)
            .is_some_and(|s| s.close_complete() && s.adopted);
        if done {
            self.end_socket(slot, None);
        }
    }

    pub(super) fn expire_closing(&mut self) {
        while let Some(&(deadline, slot, generation)) = self.close_deadlines.front() {
            if deadline > self.now {
                return;
            }
            self.close_deadlines.pop_front();
            let expired = self
                .sessions
                .get(slot)
                .is_some_and(|s| s.generation == generation && s.phase == Phase::Closing);
            if expired {
                debug!(slot, "closing socket timed out");
                self.end_socket(slot, None);
            }
        }
    }

    pub(super) fn report_closed(&mut self, slot: usize, code: u16, reason: &str, was_clean: bool) {
        let Some(session) = self.sessions.get(slot) else {
            return;
        };
        if session.position.is_none() {
            return;
        }
        let object = session.object;
        let tags = session.tags.iter().map(|t| t.to_string()).collect();
        let attachment = session.attachment.as_deref().map(Bytes::copy_from_slice);
        let handle = self.handle_of(slot);
        self.send_event(
            object,
            &ToWorker::Closed {
                object,
                handle,
                code,
                reason: reason.to_owned(),
                was_clean,
                tags,
                attachment,
            },
        );
    }

    /// Closes a socket now, telling its object if it had accepted it.
    pub(super) fn drop_socket(&mut self, slot: usize, report: Option<(u16, &str)>) {
        if let Some((code, reason)) = report {
            self.report_closed(slot, code, reason, false);
        }
        self.unlist_socket(slot);
        self.end_socket(slot, None);
    }

    /// Removes a socket the object no longer knows about, without an event.
    pub(super) fn forget_socket(&mut self, slot: usize) {
        self.unlist_socket(slot);
        self.end_socket(slot, None);
    }

    pub(super) fn end_socket(&mut self, slot: usize, last_words: Option<Bytes>) {
        if !self.sessions.contains(slot) {
            return;
        }
        let session = self.sessions.remove(slot);
        if !self.forwarded.is_empty() {
            self.forwarded.remove(&slot);
        }
        self.trimmer.churned();
        self.addresses.forget(slot as u32);
        if session.adopted {
            self.effects.push(Effect::Close {
                slot,
                generation: session.generation,
                last_words,
            });
        }
        if session.paused {
            if let Some(o) = self.objects.get_mut(session.object) {
                o.paused.retain(|&s| s as usize != slot);
            }
        }
    }

    pub(super) fn list_socket(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        if session.position.is_some() {
            return;
        }
        let Some(o) = self.objects.get_mut(session.object) else {
            return;
        };
        session.position = Some(o.sockets.len() as u32);
        o.sockets.push(slot as u32);
        o.count_tags(&session.tags, true);
        self.membership_changed = true;
        self.addresses.listed(slot as u32);
    }

    pub(super) fn unlist_socket(&mut self, slot: usize) {
        let Some(session) = self.sessions.get_mut(slot) else {
            return;
        };
        let Some(position) = session.position.take() else {
            return;
        };
        self.addresses.unlisted(slot as u32);
        self.membership_changed = true;
        let Some(o) = self.objects.get_mut(session.object) else {
            return;
        };
        o.count_tags(&session.tags, false);
        o.sockets.swap_remove(position as usize);
        if let Some(&moved) = o.sockets.get(position as usize) {
            if let Some(moved) = self.sessions.get_mut(moved as usize) {
                moved.position = Some(position);
            }
        }
    }
}
