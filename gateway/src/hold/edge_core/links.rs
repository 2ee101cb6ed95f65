//! What the edge core does with its links to workers: frames in and out,
//! each worker message's effect, a worker's idle exit, retirement or loss,
//! the requests and flow control that depend on it, and broadcasts.

use super::*;

impl EdgeCore {
    /// Worker `worker` (process `pid`) said hello; `rbuf` holds what it
    /// sent after the hello.
    pub(crate) fn link_up(&mut self, worker: usize, pid: u32, rbuf: BytesMut) {
        let link = &mut self.links[worker];
        link.up = true;
        link.pid = Some(pid);
        link.starting = false;
        link.rbuf = rbuf;
        if let Some(end) = link.exiting.take() {
            // What the exited process was sent is not its successor's.
            let end = end.min(link.out.len());
            link.out.drain(..end);
            link.written = 0;
        }
        self.handle_link_frames(worker);
    }

    /// Bytes from a worker; handles the frames they complete. False if
    /// frames remain that wait for the shell to write what they queued:
    /// call [`link_frames`](Self::link_frames) once it has.
    pub(crate) fn link_bytes(&mut self, worker: usize, bytes: &[u8]) -> bool {
        let Some(link) = self.links.get_mut(worker) else {
            return true;
        };
        link.rbuf.extend_from_slice(bytes);
        self.handle_link_frames(worker)
    }

    /// Handles frames a worker sent earlier; see [`link_bytes`](Self::link_bytes).
    pub(crate) fn link_frames(&mut self, worker: usize) -> bool {
        self.handle_link_frames(worker)
    }

    pub(super) fn handle_link_frames(&mut self, worker: usize) -> bool {
        while !self.write_soon {
            let Some(link) = self.links.get_mut(worker).filter(|l| l.up) else {
                return true;
            };
            let frame = match ipc::split_frame(&mut link.rbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return true,
                Err(err) => {
                    error!(%err, worker, "worker sent a bad frame, dropping it");
                    self.kill_link(worker);
                    return true;
                }
            };
            match ToEdge::decode(frame) {
                Ok(message) => self.handle_worker_message(worker, message),
                Err(err) => {
                    error!(%err, worker, "worker sent a bad frame, dropping it");
                    self.kill_link(worker);
                    return true;
                }
            }
        }
        false
    }

    /// What is to be written to worker `worker` now.
    pub(crate) fn link_output(&self, worker: usize) -> &[u8] {
        let Some(link) = self.links.get(worker).filter(|l| l.up) else {
            return &[];
        };
        let end = link.exiting.unwrap_or(link.out.len()).min(link.out.len());
        &link.out[link.written.min(end)..end]
    }

    /// `n` bytes of [`link_output`](Self::link_output) were written.
    pub(crate) fn link_wrote(&mut self, worker: usize, n: usize) {
        let link = &mut self.links[worker];
        link.written += n;
        if link.written == link.out.len() && link.exiting.is_none() {
            link.out.clear();
            link.written = 0;
            if link.out.capacity() > 1 << 20 {
                link.out.shrink_to(64 * 1024);
            }
        }
    }

    pub(super) fn kill_link(&mut self, worker: usize) {
        self.effects.push(Effect::DropLink(worker));
        self.link_down(worker);
    }

    /// The worker's connection ended.
    pub(crate) fn link_down(&mut self, worker: usize) {
        let link = &mut self.links[worker];
        if !link.up {
            return;
        }
        link.up = false;
        link.rbuf.clear();
        link.starting = false;
        if link.held.is_some() {
            self.retired(worker);
            return;
        }
        if let Some(end) = link.exiting.take() {
            // An idle exit we agreed to: what was queued since is for the
            // next worker, objects activated since included.
            let end = end.min(link.out.len());
            link.out.drain(..end);
            link.written = 0;
            info!(worker, "worker exited while idle");
            if !link.out.is_empty() {
                self.ask_for_worker(worker);
            }
            return;
        }
        warn!(worker, "worker connection lost; its live objects are reset");
        self.retry_firing_alarms(worker);
        let link = &mut self.links[worker];
        link.out.clear();
        link.written = 0;
        link.live_objects = 0;
        for o in self
            .objects
            .iter_mut()
            .filter(|o| o.worker as usize == worker && o.live)
        {
            o.go_idle();
        }
        self.forget_in_flight(worker);
        self.fail_requests(worker, u32::MAX);
    }

    /// An alarm whose handler was running in the worker's process that
    /// went away failed: retry it.
    pub(super) fn retry_firing_alarms(&mut self, worker: usize) {
        let firing: Vec<u32> = self
            .alarms
            .firing()
            .filter(|&o| self.objects.worker_of(o) == worker)
            .collect();
        for object in firing {
            if let Some(change) = self.alarms.done(object, Outcome::Failed, self.now_ms) {
                self.persist_alarm(object, change);
            }
        }
    }

    /// The worker's process went away: its requests sent before link
    /// epoch `before` are lost (503), and calls its handlers made will find
    /// no one to answer.
    pub(super) fn fail_requests(&mut self, worker: usize, before: u32) {
        let objects = &self.objects;
        let lost = self
            .routes
            .lose(worker, before, |object| objects.worker_of(object));
        for call in lost.calls {
            let reply = FetchReply::error(503, "the called object's worker restarted, retry");
            self.answer_call(call.worker, call.call_id, reply);
        }
        for fetch in lost.fetches {
            if let Some(slot) = fetch.upgrade {
                self.forget_socket(slot);
            }
            let _ = fetch
                .reply
                .send(FetchReply::error(503, "object worker restarted, retry"));
        }
    }

    pub(super) fn handle_worker_message(&mut self, worker: usize, message: ToEdge) {
        match message {
            ToEdge::Hello { .. } => warn!(worker, "second hello ignored"),
            ToEdge::QueryHello { .. }
            | ToEdge::ListSockets { .. }
            | ToEdge::DescribeSocket { .. }
            | ToEdge::DescribeSockets { .. } => {
                // Answered on the query link only: the worker's thread
                // waits there, and nothing on this link would reach it.
                warn!(worker, "query on the main link ignored");
            }
            ToEdge::FetchResponse {
                request_id,
                status,
                headers,
                body,
            } => self.fetch_response(request_id, status, headers, body),
            ToEdge::Accept { handle, tags } => {
                let Some(slot) = self.slot_of(handle) else {
                    return;
                };
                let session = &mut self.sessions[slot];
                if session.phase != Phase::Reserved {
                    return;
                }
                session.phase = Phase::Accepted;
                session.tags = tags.into_iter().map(String::into_boxed_str).collect();
                let object = session.object;
                self.list_socket(slot);
                self.object(object).usage.upgrades += 1;
                self.counters.upgrades += 1;
            }
            ToEdge::Send {
                handle,
                is_text,
                payload,
            } => {
                let Some(slot) = self.slot_of(handle) else {
                    return;
                };
                if self.sessions[slot].position.is_none() {
                    return;
                }
                let object = self.sessions[slot].object;
                self.object(object).usage.ws_messages_out += 1;
                self.counters.ws_messages_out += 1;
                let frame = data_frame(is_text, &payload);
                self.queue_frame(slot, frame);
            }
            ToEdge::Close {
                handle,
                code,
                reason,
            } => {
                if let Some(slot) = self.slot_of(handle) {
                    self.close_gracefully(slot, close_frame(code, &reason));
                }
            }
            ToEdge::Broadcast {
                object,
                tag,
                except,
                is_text,
                payload,
            } => self.broadcast(object, tag.as_deref(), except, is_text, &payload),
            ToEdge::Confirm { token } => {
                // Frames are applied in order, so every one before it has
                // been; to the process that asked, as a `CallResult` is.
                if let Some(link) = self.links.get_mut(worker) {
                    ToWorker::Confirmed { token }.encode(&mut link.out);
                }
            }
            ToEdge::SetAttachment { handle, attachment } => {
                let limit = self.options.max_attachment_bytes;
                let Some(slot) = self.slot_of(handle) else {
                    return;
                };
                match attachment {
                    Some(bytes) if bytes.len() > limit => {
                        warn!(
                            size = bytes.len(),
                            limit, "attachment over the limit ignored"
                        );
                    }
                    other => {
                        self.sessions[slot].attachment = other.map(|b| b.to_vec().into());
                    }
                }
            }
            ToEdge::SetAutoResponse { object, pair } => {
                if let Some(o) = self.objects.get_mut(object) {
                    o.auto_reply_known = true;
                    o.auto_reply = pair.map(|pair: AutoResponse| {
                        let frame = data_frame(!pair.binary, &pair.response);
                        Box::new(AutoReply { pair, frame })
                    });
                }
            }
            ToEdge::Done {
                object,
                events,
                rows_read,
                rows_written,
                stored_bytes,
                active_us,
            } => {
                if let Some(o) = self.objects.get_mut(object) {
                    o.add_active(active_us);
                    o.usage.rows_read += rows_read;
                    o.usage.rows_written += rows_written;
                    if stored_bytes.is_some() {
                        o.stored_bytes = stored_bytes;
                    }
                }
                self.done(object, events);
            }
            ToEdge::Idle {
                object,
                handled,
                active_us,
            } => {
                let Some(o) = self.objects.get_mut(object) else {
                    return;
                };
                o.add_active(active_us);
                if o.live && o.sent == handled && o.worker as usize == worker {
                    o.go_idle();
                    // Everything this edge sent it was answered: what is
                    // still counted went to a process that is gone.
                    let stale = o.forget_in_flight();
                    self.bytes_in_flight = self.bytes_in_flight.saturating_sub(stale);
                    let link = &mut self.links[worker];
                    link.live_objects = link.live_objects.saturating_sub(1);
                    ToWorker::Evict { object }.encode(&mut link.out);
                    debug!(object, "object hibernated");
                }
            }
            ToEdge::SetAlarm {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let Some(object) = self.alarm_object(&namespace, &id, name.as_deref()) else {
                    return;
                };
                debug!(object, ?at_ms, "alarm set");
                let change = self.alarms.set(object, at_ms);
                self.persist_alarm(object, change);
            }
            ToEdge::AlarmIntent {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let Some(object) = self.alarm_object(&namespace, &id, name.as_deref()) else {
                    return;
                };
                if let Some(change) = self.alarms.intend(object, at_ms) {
                    debug!(object, at_ms, "alarm intended");
                    self.persist_alarm(object, change);
                }
            }
            ToEdge::SyncAlarm {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let Some(object) = self.alarm_object(&namespace, &id, name.as_deref()) else {
                    return;
                };
                if let Some(change) = self.alarms.sync(object, at_ms) {
                    info!(
                        object,
                        ?at_ms,
                        "alarm schedule repaired from the object's row"
                    );
                    self.persist_alarm(object, change);
                }
            }
            ToEdge::Woke { object } => {
                if let Some(o) = self.objects.get_mut(object) {
                    o.usage.wakes += 1;
                    self.counters.wakes += 1;
                }
            }
            ToEdge::Gather {
                namespace,
                class,
                id,
                name,
            } => {
                let Some(id) = ObjectId::from_hex(&id) else {
                    warn!(%id, "gather for a malformed id");
                    return;
                };
                let class = self
                    .options
                    .namespaces
                    .get(namespace.as_str())
                    .cloned()
                    .unwrap_or_else(|| Arc::from(class.as_str()));
                let object =
                    self.object_for(Arc::from(namespace.as_str()), class, id, name.as_deref());
                // Already live from here: our Activate is on its way.
                if self.links[worker].held.is_some() {
                    // For an event the retiring process still handles; its
                    // successor gets an Activate of its own.
                    self.encode_activate(object, true);
                } else if !self.object(object).live {
                    self.activate(object);
                }
            }
            ToEdge::StayUp => {
                self.links[worker].exiting = None;
            }
            ToEdge::AlarmDone { object, ok, at_ms } => {
                debug!(object, ok, ?at_ms, "alarm handled");
                let outcome = match ok {
                    true => Outcome::Committed { at_ms },
                    false => Outcome::Failed,
                };
                if let Some(change) = self.alarms.done(object, outcome, self.now_ms) {
                    debug!(object, ?change, "alarm rescheduled");
                    self.persist_alarm(object, change);
                }
            }
            call @ ToEdge::Call { .. } => self.call(worker, call),
            ToEdge::Retire => self.retire(worker),
            ToEdge::IdleExit if self.links[worker].held.is_some() => {}
            ToEdge::IdleExit => {
                let objects = &self.objects;
                let busy = self.routes.busy(worker, |object| objects.worker_of(object));
                let link = &mut self.links[worker];
                // Anything queued for it now is an `Evict` or an answer to
                // a call of an object that is no longer live: it may take
                // them on its way out.
                if link.live_objects == 0 && !busy && link.exiting.is_none() {
                    ToWorker::Shutdown.encode(&mut link.out);
                    link.exiting = Some(link.out.len());
                }
            }
        }
    }

    /// The worker's process retires: `Retired` closes what it gets, and
    /// its objects are no longer live from here, so that their next events
    /// go, behind an `Activate`, to the process that replaces it.
    pub(super) fn retire(&mut self, worker: usize) {
        let link = &mut self.links[worker];
        if link.held.is_some() {
            return;
        }
        info!(
            worker,
            "worker retiring; holding its events for its successor"
        );
        ToWorker::Retired.encode(&mut link.out);
        link.held = Some(Vec::new());
        link.epoch += 1;
        link.live_objects = 0;
        for o in self
            .objects
            .iter_mut()
            .filter(|o| o.worker as usize == worker && o.live)
        {
            // Its events in flight are still answered (`Done`) by the
            // retiring process; `sent` counts its successor's from 0.
            o.live = false;
            o.sent = 0;
        }
    }

    /// The retiring process is gone: what was held is its successor's.
    pub(super) fn retired(&mut self, worker: usize) {
        self.retry_firing_alarms(worker);
        let link = &mut self.links[worker];
        let held = link.held.take().unwrap_or_default();
        let unsent = link.out.len() - link.written.min(link.out.len());
        if unsent > 0 {
            warn!(
                worker,
                unsent, "a retiring worker left before reading everything"
            );
        }
        link.out = held;
        link.written = 0;
        link.exiting = None;
        let epoch = link.epoch;
        let waiting = !link.out.is_empty();
        info!(worker, "worker retired");
        self.fail_requests(worker, epoch);
        if waiting {
            self.ask_for_worker(worker);
        }
    }

    pub(super) fn fetch_response(
        &mut self,
        request_id: u64,
        status: u16,
        headers: Vec<(String, Bytes)>,
        body: Bytes,
    ) {
        let mut reply = FetchReply {
            status,
            headers,
            body,
            upgraded: None,
        };
        let fetch = match self.routes.answered(request_id) {
            None => return,
            Some(Waiting::Call(call)) => {
                debug!(
                    caller = call.caller,
                    callee = call.callee,
                    status,
                    "call answered"
                );
                self.answer_call(call.worker, call.call_id, reply);
                return;
            }
            Some(Waiting::Fetch(fetch)) => fetch,
        };
        if let Some(slot) = fetch.upgrade {
            let owner = self.forwarded.remove(&slot).unwrap_or(fetch.object);
            let accepted = self
                .sessions
                .get(slot)
                .is_some_and(|s| s.object == owner && s.phase != Phase::Reserved);
            if status == 101 && accepted {
                reply.upgraded = Some(self.handle_of(slot));
            } else {
                self.forget_socket(slot);
                if status == 101 {
                    reply = FetchReply::error(500, "socket closed while being accepted");
                }
            }
        }
        let upgraded = reply.upgraded;
        if fetch.reply.send(reply).is_err() {
            if let Some(handle) = upgraded {
                if let Some(slot) = self.slot_of(handle) {
                    self.drop_socket(slot, Some((1006, "client went away during upgrade")));
                }
            }
        }
    }

    pub(super) fn done(&mut self, object: u32, events: u32) {
        let Some(o) = self.objects.get_mut(object) else {
            return;
        };
        let answered = o.answered(events);
        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(answered);
        self.resume_object(object);
        self.resume_for_bytes();
    }

    /// Reads again the object's sockets paused for its events in flight,
    /// once half of those are answered.
    pub(super) fn resume_object(&mut self, object: u32) {
        let object_bytes = self.object_bytes_in_flight();
        let Some(o) = self.objects.get_mut(object) else {
            return;
        };
        let half_answered = o.in_flight <= self.options.max_events_in_flight / 2
            && o.in_flight_bytes <= object_bytes / 2;
        if o.paused.is_empty() || !half_answered {
            return;
        }
        for slot in std::mem::take(&mut o.paused) {
            self.resume_reading(slot as usize, |s| s.object == object);
        }
    }

    /// Reads again the sockets paused for the edge's bytes in flight, once
    /// half of those are answered.
    pub(super) fn resume_for_bytes(&mut self) {
        if self.paused_for_bytes.is_empty()
            || self.bytes_in_flight > self.options.max_bytes_in_flight / 2
        {
            return;
        }
        for (slot, generation) in std::mem::take(&mut self.paused_for_bytes) {
            let Some(session) = self.sessions.get(slot as usize) else {
                continue;
            };
            // One paused for its object's events too stays paused for them.
            let over = self.object_is_full(session.object);
            if !over {
                self.resume_reading(slot as usize, |s| s.generation == generation);
            }
        }
    }

    pub(super) fn resume_reading(&mut self, slot: usize, still: impl FnOnce(&Session) -> bool) {
        if let Some(session) = self.sessions.get_mut(slot) {
            if session.paused && still(session) {
                session.paused = false;
                self.to_read.push((slot as u32, session.generation));
            }
        }
    }

    /// An object's share of the edge's bytes in flight: one sender as fast
    /// as it can go must not fill the link to its worker, where every
    /// other object's events would wait behind its own.
    pub(super) fn object_bytes_in_flight(&self) -> u64 {
        (self.options.max_bytes_in_flight / 16).max(1 << 20)
    }

    /// Whether the object has as many events, or bytes, in flight as it
    /// may: its sockets stop being read.
    pub(super) fn object_is_full(&self, object: u32) -> bool {
        self.objects.get(object).is_some_and(|o| {
            o.in_flight >= self.options.max_events_in_flight
                || o.in_flight_bytes >= self.object_bytes_in_flight()
        })
    }

    /// Events in flight to the worker's process that went away will not
    /// be answered: their sockets may read again.
    pub(super) fn forget_in_flight(&mut self, worker: usize) {
        for object in self.objects.on_worker(worker) {
            let forgotten = self.object(object).forget_in_flight();
            self.bytes_in_flight = self.bytes_in_flight.saturating_sub(forgotten);
            self.resume_object(object);
        }
        self.resume_for_bytes();
    }

    pub(super) fn broadcast(
        &mut self,
        object: u32,
        tag: Option<&str>,
        except: Option<SocketHandle>,
        is_text: bool,
        payload: &[u8],
    ) {
        let except = except.and_then(|h| self.slot_of(h));
        let Some(o) = self.objects.get(object) else {
            return;
        };
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        targets.extend(o.sockets.iter().copied().filter(|&slot| {
            Some(slot as usize) != except
                && tag.is_none_or(|t| {
                    self.sessions
                        .get(slot as usize)
                        .is_some_and(|s| s.has_tag(t))
                })
        }));
        let frame = data_frame(is_text, payload);
        let count = targets.len() as u64;
        for &slot in &targets {
            self.queue_frame_as(slot as usize, frame.clone(), true);
        }
        self.object(object).usage.ws_messages_out += count;
        self.counters.ws_messages_out += count;
        self.targets = targets;
    }
}
