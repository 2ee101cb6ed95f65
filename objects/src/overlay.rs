//! What a live object knows for sure of its sockets, over what the edges
//! answer: the sockets it accepted (with their tags), the attachments it
//! set, the sockets it knows closed, what it already asked the edges in
//! the running event, and a few of their answers about single sockets
//! from earlier events.
//!
//! Why an overlay and not a mirror: a wake no longer copies every socket's
//! tags and attachment into the worker (that cost grew with the room); the
//! edges keep them and answer questions. But an edge may answer before it
//! has read what this object sent it on the other link (an `Accept`, a
//! `SetAttachment`, a `Close`), so every answer is read through what the
//! object did itself, and a handler sees the sockets it just accepted and
//! the attachments it just set, as it did with a mirror.
//!
//! The attachments it set are kept only until the edge confirms it holds
//! them (the outbox's `Confirm`), past a small budget: a room of 32,768
//! that set theirs on joining would otherwise keep 64 MiB in the worker
//! as well as in the edges, for as long as it is live, and free all of it
//! in one go when it hibernates, while the next wake waits.
//!
//! Pure bookkeeping, no I/O: `host.rs` asks the edges and feeds the
//! answers through here.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use torpor_sdk::WebSocketId;

/// Sockets remembered as closed, per kind: past this, the oldest are
/// forgotten. Forgetting one costs little: the edge refuses its handle
/// (handles are never reused), so a send to it is dropped there instead
/// of failing here.
const CLOSED_KEPT: usize = 32_768;

/// Misses (questions about one socket) on one edge in one event after
/// which the object asks that edge for all its sockets at once: a handler
/// that reads every attachment costs a few round trips, not one per socket.
pub(crate) const MISSES_BEFORE_BULK: u32 = 8;

/// Attachments the object set and an edge confirmed holding are still
/// kept, for reads that need no question, up to this many bytes; past it,
/// the oldest are forgotten.
pub(crate) const KEEP_CONFIRMED_BYTES: usize = 64 * 1024;

/// What one kept attachment costs beyond its bytes: the map entry and the
/// allocation's own overhead.
const ENTRY_BYTES: usize = 64;

/// Edges' answers about single sockets kept from one event to the next,
/// up to this many bytes: a handler that reads its sender's attachment on
/// every message asks once per sender, not once per message.
pub(crate) const KEEP_ANSWERS_BYTES: usize = 64 * 1024;

/// A queue of `(number, socket)`, oldest first, whose entries go stale
/// when their socket's entry is replaced or dropped (`current` says which
/// are not): stale ones behind a current one that stops the walk are
/// dropped once they outnumber the `live` entries, so that a socket set
/// again and again does not grow the queue without bound.
fn drop_stale(
    queue: &mut VecDeque<(u64, WebSocketId)>,
    live: usize,
    current: impl Fn(u64, WebSocketId) -> bool,
) {
    if queue.len() > 2 * live + 64 {
        queue.retain(|&(number, id)| current(number, id));
    }
}

/// A socket's tags and attachment as an edge answered them, in an earlier
/// event. Neither changes but by the object itself: tags are fixed at
/// accept, and `attach` writes what it sets here too.
struct KeptAnswer {
    tags: Vec<String>,
    attachment: Option<Bytes>,
    /// Its place in [`Answers::order`].
    seq: u64,
}

impl KeptAnswer {
    fn bytes(&self) -> usize {
        self.attachment.as_ref().map_or(0, Bytes::len)
            + self.tags.iter().map(|t| t.len() + 24).sum::<usize>()
            + ENTRY_BYTES
    }
}

/// Kept answers, forgotten oldest first past [`KEEP_ANSWERS_BYTES`].
#[derive(Default)]
struct Answers {
    kept: HashMap<WebSocketId, KeptAnswer>,
    /// Oldest first; entries whose `seq` no longer matches are stale.
    order: VecDeque<(u64, WebSocketId)>,
    bytes: usize,
    next_seq: u64,
}

impl Answers {
    fn keep(&mut self, id: WebSocketId, described: &Described) {
        self.forget(id);
        let answer = KeptAnswer {
            tags: described.tags.clone(),
            attachment: described.attachment.clone(),
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.bytes += answer.bytes();
        self.order.push_back((answer.seq, id));
        self.kept.insert(id, answer);
        self.within_budget();
    }

    fn within_budget(&mut self) {
        while self.bytes > KEEP_ANSWERS_BYTES {
            let Some((seq, oldest)) = self.order.pop_front() else {
                break;
            };
            if self.kept.get(&oldest).is_some_and(|a| a.seq == seq) {
                self.forget(oldest);
            }
        }
        let kept = &self.kept;
        drop_stale(&mut self.order, kept.len(), |seq, id| {
            kept.get(&id).is_some_and(|a| a.seq == seq)
        });
    }

    fn forget(&mut self, id: WebSocketId) {
        if let Some(old) = self.kept.remove(&id) {
            self.bytes -= old.bytes();
        }
    }

    /// The object set the socket's attachment: a kept answer now holds
    /// that, as its edge will.
    fn attach(&mut self, id: WebSocketId, attachment: &Option<Bytes>) {
        let Some(answer) = self.kept.get_mut(&id) else {
            return;
        };
        self.bytes -= answer.bytes();
        answer.attachment = attachment.clone();
        self.bytes += answer.bytes();
        self.within_budget();
    }

    fn get(&self, id: WebSocketId) -> Option<&KeptAnswer> {
        self.kept.get(&id)
    }
}

/// What is known of one socket: its tags, attachment and last
/// auto-response (Unix milliseconds, 0 if none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Described {
    pub(crate) tags: Vec<String>,
    pub(crate) attachment: Option<Bytes>,
    pub(crate) auto_response_at_ms: u64,
}

/// What a caller needs to know of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// Its tags and attachment: what the object did itself, and an edge's
    /// answer from an earlier event, will do.
    TagsAndAttachment,
    /// Its last auto-response as well, which only the edge keeps up to
    /// date: only an answer from this event will do.
    AutoResponse,
}

/// A set that forgets its oldest members past a bound.
#[derive(Default)]
struct Recent {
    members: HashSet<WebSocketId>,
    order: VecDeque<WebSocketId>,
}

impl Recent {
    fn insert(&mut self, id: WebSocketId) {
        if self.members.insert(id) {
            self.order.push_back(id);
            if self.order.len() > CLOSED_KEPT {
                if let Some(oldest) = self.order.pop_front() {
                    self.members.remove(&oldest);
                }
            }
        }
    }

    fn contains(&self, id: WebSocketId) -> bool {
        self.members.contains(&id)
    }
}

/// What the running event already learned from the edges.
#[derive(Default)]
struct EventCache {
    /// Socket lists by tag (`None`: all), over every edge that answered.
    lists: HashMap<Option<String>, BTreeSet<WebSocketId>>,
    described: HashMap<WebSocketId, Described>,
    /// Questions about single sockets asked per edge.
    misses: HashMap<u16, u32>,
    /// Edges that described all their sockets of the object.
    bulk: HashSet<u16>,
    /// Edges that did not answer: not asked again in this event.
    failed: HashSet<u16>,
}

/// An attachment the object set (`None`: cleared), and the stamp of the
/// frame that told its edge, if it was told.
struct SetHere {
    attachment: Option<Bytes>,
    stamp: Option<u64>,
}

impl SetHere {
    fn bytes(&self) -> usize {
        self.attachment.as_ref().map_or(0, Bytes::len) + ENTRY_BYTES
    }
}

/// A socket this live object accepted.
struct AcceptedHere {
    tags: Vec<String>,
    /// The object set its attachment, and no longer keeps it: its edge
    /// knows it.
    attachment_forgotten: bool,
}

#[derive(Default)]
pub(crate) struct Overlay {
    /// Sockets this live object accepted.
    accepted: BTreeMap<WebSocketId, AcceptedHere>,
    /// Attachments this live object set that are kept.
    attached: HashMap<WebSocketId, SetHere>,
    /// What `attached` holds, in [`SetHere::bytes`].
    attached_bytes: usize,
    /// Per edge, the stamps of the attachments set here that were sent to
    /// it, oldest first (some since replaced or forgotten).
    sent: HashMap<u16, VecDeque<(u64, WebSocketId)>>,
    /// Last auto-responses the object's events reported.
    auto_response_at: HashMap<WebSocketId, u64>,
    /// Edges' answers from earlier events.
    answers: Answers,
    /// Sockets whose close was handled, whose edge went away, or whose
    /// upgrade did not complete: not listed, and calls on them fail.
    gone: Recent,
    /// Sockets the object closed itself: not listed, as the edge no longer
    /// lists them either, though a close may still be reported.
    closed_by_us: Recent,
    /// The socket whose close is being handled, with what the edge knew of
    /// it: still listed (and readable) until its handler ends.
    closing: Option<(WebSocketId, Described)>,
    event: EventCache,
}

impl Overlay {
    /// A new event: what the edges answered before may have changed.
    pub(crate) fn begin_event(&mut self) {
        self.event = EventCache::default();
    }

    pub(crate) fn accepted(&mut self, id: WebSocketId, tags: Vec<String>) {
        let accepted = AcceptedHere {
            tags,
            attachment_forgotten: false,
        };
        self.accepted.insert(id, accepted);
    }

    /// The object set (or cleared) the socket's attachment; `stamp` is
    /// that of the frame that told its edge, `None` if it was not told.
    pub(crate) fn attach(
        &mut self,
        id: WebSocketId,
        attachment: Option<Bytes>,
        stamp: Option<u64>,
    ) {
        self.unkeep(id);
        self.answers.attach(id, &attachment);
        let set = SetHere { attachment, stamp };
        self.attached_bytes += set.bytes();
        self.attached.insert(id, set);
        if let Some(stamp) = stamp {
            self.sent
                .entry(id.parts().0)
                .or_default()
                .push_back((stamp, id));
        }
    }

    fn unkeep(&mut self, id: WebSocketId) {
        if let Some(old) = self.attached.remove(&id) {
            self.attached_bytes -= old.bytes();
        }
    }

    /// The attachment the object set itself, if it is kept: no edge knows
    /// better.
    pub(crate) fn attachment_set(&self, id: WebSocketId) -> Option<Option<Bytes>> {
        self.attached.get(&id).map(|set| set.attachment.clone())
    }

    /// Forgets attachments set here that their edge confirmed holding
    /// (`confirmed_through(edge)` is the stamp up to which it did), oldest
    /// first, until at most [`KEEP_CONFIRMED_BYTES`] are kept; the edge
    /// answers for them from now on.
    pub(crate) fn forget_confirmed(&mut self, confirmed_through: impl Fn(u16) -> u64) {
        let Overlay {
            accepted,
            attached,
            attached_bytes,
            sent,
            ..
        } = self;
        for (&edge, queue) in sent.iter_mut() {
            let through = confirmed_through(edge);
            while let Some(&(stamp, id)) = queue.front() {
                let current = attached.get(&id).is_some_and(|s| s.stamp == Some(stamp));
                if current {
                    if stamp > through || *attached_bytes <= KEEP_CONFIRMED_BYTES {
                        break;
                    }
                    if let Some(set) = attached.remove(&id) {
                        *attached_bytes -= set.bytes();
                    }
                    if let Some(accepted) = accepted.get_mut(&id) {
                        accepted.attachment_forgotten = true;
                    }
                }
                queue.pop_front();
            }
            drop_stale(queue, attached.len(), |stamp, id| {
                attached.get(&id).is_some_and(|s| s.stamp == Some(stamp))
            });
        }
        sent.retain(|_, queue| !queue.is_empty());
    }

    /// The connection to `edge` is gone: no confirmation on the next one
    /// covers what was sent on it. What was set stays, for the close
    /// handlers of the sockets that died with it.
    pub(crate) fn link_lost(&mut self, edge: u16) {
        self.sent.remove(&edge);
    }

    pub(crate) fn note_auto_response_at(&mut self, id: WebSocketId, at_ms: u64) {
        self.auto_response_at.insert(id, at_ms);
    }

    pub(crate) fn closed_by_us(&mut self, id: WebSocketId) {
        self.closed_by_us.insert(id);
    }

    /// The socket's close is about to be handled; `reported` is what the
    /// edge sent with it.
    pub(crate) fn begin_close(&mut self, id: WebSocketId, reported: Described) {
        let described = self.overlaid(id, reported);
        self.closing = Some((id, described));
    }

    /// The socket is gone for good: its close was handled, its edge went
    /// away, or its upgrade failed.
    pub(crate) fn gone(&mut self, id: WebSocketId) {
        if self.closing.as_ref().is_some_and(|(c, _)| *c == id) {
            self.closing = None;
        }
        self.accepted.remove(&id);
        self.unkeep(id);
        self.answers.forget(id);
        self.auto_response_at.remove(&id);
        self.event.described.remove(&id);
        self.gone.insert(id);
    }

    pub(crate) fn is_gone(&self, id: WebSocketId) -> bool {
        self.gone.contains(id)
    }

    /// Sockets accepted here on `edge` and not gone: those the object
    /// knows died with the edge.
    pub(crate) fn accepted_on(&self, edge: u16) -> Vec<WebSocketId> {
        self.accepted
            .keys()
            .filter(|id| id.parts().0 == edge)
            .copied()
            .collect()
    }

    /// The edge went away: nothing it answered in this event stands.
    pub(crate) fn edge_lost(&mut self, edge: u16) {
        let cache = &mut self.event;
        for list in cache.lists.values_mut() {
            list.retain(|id| id.parts().0 != edge);
        }
        cache.described.retain(|id, _| id.parts().0 != edge);
        cache.bulk.remove(&edge);
        let of_edge: Vec<WebSocketId> = self
            .answers
            .kept
            .keys()
            .filter(|id| id.parts().0 == edge)
            .copied()
            .collect();
        for id in of_edge {
            self.answers.forget(id);
        }
    }

    /// The edges answered `listed` for `tag` in this event, if they did.
    pub(crate) fn cached_list(&self, tag: Option<&str>) -> Option<&BTreeSet<WebSocketId>> {
        self.event.lists.get(&tag.map(str::to_owned))
    }

    pub(crate) fn cache_list(&mut self, tag: Option<&str>, listed: BTreeSet<WebSocketId>) {
        self.event.lists.insert(tag.map(str::to_owned), listed);
    }

    /// The object's sockets with `tag`: what the edges `listed`, plus
    /// those accepted here and the one whose close is being handled, minus
    /// those known closed. In handle order.
    pub(crate) fn merge_list(
        &self,
        listed: &BTreeSet<WebSocketId>,
        tag: Option<&str>,
    ) -> Vec<WebSocketId> {
        let has_tag = |tags: &[String]| tag.is_none_or(|t| tags.iter().any(|x| x == t));
        let mut all: BTreeSet<WebSocketId> = listed.clone();
        all.extend(
            self.accepted
                .iter()
                .filter(|(_, accepted)| has_tag(&accepted.tags))
                .map(|(id, _)| *id),
        );
        if let Some((id, described)) = &self.closing {
            if has_tag(&described.tags) {
                all.insert(*id);
            }
        }
        all.into_iter()
            .filter(|&id| !self.gone.contains(id) && !self.closed_by_us.contains(id))
            .filter(|&id| {
                // Listed by an edge under a tag, but accepted here with
                // other tags: the tags are fixed at accept, ours are right.
                match (tag, self.accepted.get(&id)) {
                    (Some(_), Some(accepted)) => has_tag(&accepted.tags),
                    _ => true,
                }
            })
            .collect()
    }

    /// What is known of the socket without asking, as far as `need` goes:
    /// `Err(())` if it is gone, `Ok(None)` if an edge must be asked.
    pub(crate) fn known(&self, id: WebSocketId, need: Need) -> Result<Option<Described>, ()> {
        if self.gone.contains(id) {
            return Err(());
        }
        if let Some((closing, described)) = &self.closing {
            if *closing == id {
                return Ok(Some(described.clone()));
            }
        }
        let tags_and_attachment = need == Need::TagsAndAttachment;
        if let Some(accepted) = self.accepted.get(&id).filter(|_| tags_and_attachment) {
            // Accepted by this live object: it had no attachment then, and
            // has what the object set since, unless that was forgotten.
            if !accepted.attachment_forgotten || self.attached.contains_key(&id) {
                let described = Described {
                    tags: accepted.tags.clone(),
                    attachment: None,
                    auto_response_at_ms: 0,
                };
                return Ok(Some(self.overlaid(id, described)));
            }
        }
        if let Some(described) = self.event.described.get(&id) {
            return Ok(Some(self.overlaid(id, described.clone())));
        }
        Ok(self
            .answers
            .get(id)
            .filter(|_| tags_and_attachment)
            .map(|answer| {
                let described = Described {
                    tags: answer.tags.clone(),
                    attachment: answer.attachment.clone(),
                    auto_response_at_ms: 0,
                };
                self.overlaid(id, described)
            }))
    }

    /// An edge described the socket (`None`: it holds no such socket).
    pub(crate) fn described(
        &mut self,
        id: WebSocketId,
        described: Option<Described>,
    ) -> Option<Described> {
        let described = described?;
        // An answer about a socket whose attachment the object set may
        // predate the set, which the edge may not have applied yet: kept,
        // it would come back once the set is forgotten.
        if !self.attached.contains_key(&id) {
            self.answers.keep(id, &described);
        }
        self.event.described.insert(id, described.clone());
        Some(self.overlaid(id, described))
    }

    /// One more question about a single socket of `edge`; true if it is
    /// time to ask the edge for all of them instead.
    pub(crate) fn miss(&mut self, edge: u16) -> bool {
        if self.event.bulk.contains(&edge) {
            return false;
        }
        let misses = self.event.misses.entry(edge).or_default();
        *misses += 1;
        *misses > MISSES_BEFORE_BULK
    }

    /// `edge` described all its sockets of the object.
    pub(crate) fn described_all(
        &mut self,
        edge: u16,
        sockets: impl IntoIterator<Item = (WebSocketId, Described)>,
    ) {
        self.event.bulk.insert(edge);
        self.event.described.extend(sockets);
    }

    /// Whether `edge` failed to answer in this event.
    pub(crate) fn has_failed(&self, edge: u16) -> bool {
        self.event.failed.contains(&edge)
    }

    pub(crate) fn failed(&mut self, edge: u16) {
        self.event.failed.insert(edge);
    }

    /// An edge's answer, read through what the object did itself.
    fn overlaid(&self, id: WebSocketId, mut described: Described) -> Described {
        if let Some(set) = self.attached.get(&id) {
            described.attachment = set.attachment.clone();
        }
        if let Some(accepted) = self.accepted.get(&id) {
            described.tags = accepted.tags.clone();
        }
        if let Some(&at_ms) = self.auto_response_at.get(&id) {
            described.auto_response_at_ms = described.auto_response_at_ms.max(at_ms);
        }
        described
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Need = Need::TagsAndAttachment;

    fn id(edge: u16, slot: u32) -> WebSocketId {
        WebSocketId::from_parts(edge, slot, 1)
    }

    fn set(ids: &[WebSocketId]) -> BTreeSet<WebSocketId> {
        ids.iter().copied().collect()
    }

    fn tagged(tags: &[&str], attachment: Option<&'static [u8]>) -> Described {
        Described {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            attachment: attachment.map(Bytes::from_static),
            auto_response_at_ms: 0,
        }
    }

    #[test]
    fn a_socket_accepted_here_is_listed_before_any_edge_has_seen_it() {
        let mut overlay = Overlay::default();
        overlay.accepted(id(1, 9), vec!["red".into()]);
        let edges = set(&[id(0, 1)]);
        assert_eq!(overlay.merge_list(&edges, None), [id(0, 1), id(1, 9)]);
        assert_eq!(overlay.merge_list(&set(&[]), Some("red")), [id(1, 9)]);
        assert_eq!(overlay.merge_list(&set(&[]), Some("blue")), []);
        let known = overlay
            .known(id(1, 9), Need::TagsAndAttachment)
            .unwrap()
            .unwrap();
        assert_eq!(
            known,
            tagged(&["red"], None),
            "no attachment yet, no asking"
        );
    }

    #[test]
    fn a_socket_known_closed_is_not_listed_even_if_an_edge_still_lists_it() {
        let mut overlay = Overlay::default();
        overlay.accepted(id(0, 2), vec![]);
        overlay.gone(id(0, 1));
        overlay.gone(id(0, 2));
        overlay.closed_by_us(id(0, 3));
        let edges = set(&[id(0, 1), id(0, 3), id(0, 4)]);
        assert_eq!(overlay.merge_list(&edges, None), [id(0, 4)]);
        assert_eq!(overlay.known(id(0, 1), ANY), Err(()));
        assert_eq!(overlay.known(id(0, 2), ANY), Err(()));
        assert_eq!(
            overlay.known(id(0, 3), ANY),
            Ok(None),
            "closing, still readable"
        );
    }

    #[test]
    fn the_attachment_set_here_wins_over_what_an_edge_answers() {
        let mut overlay = Overlay::default();
        overlay.attach(id(0, 1), Some(Bytes::from_static(b"new")), Some(1));
        let answered = overlay.described(id(0, 1), Some(tagged(&["t"], Some(b"old"))));
        assert_eq!(answered, Some(tagged(&["t"], Some(b"new"))));
        overlay.attach(id(0, 1), None, Some(2));
        assert_eq!(
            overlay.known(id(0, 1), ANY),
            Ok(Some(tagged(&["t"], None))),
            "cleared, and cached for the event"
        );
        overlay.begin_event();
        assert_eq!(
            overlay.known(id(0, 1), ANY),
            Ok(None),
            "asked again next event"
        );
        assert_eq!(overlay.described(id(0, 2), None), None);
    }

    /// Sets `count` attachments of `bytes` bytes on edge 0's slots
    /// `first..`, stamped in order from `stamp`.
    fn set_many(overlay: &mut Overlay, first: u32, count: u32, bytes: usize, stamp: u64) {
        for i in 0..count {
            let attachment = Some(Bytes::from(vec![b'x'; bytes]));
            overlay.attach(id(0, first + i), attachment, Some(stamp + u64::from(i)));
        }
    }

    fn kept(overlay: &Overlay, slots: std::ops::Range<u32>) -> usize {
        slots
            .filter(|&slot| overlay.attachment_set(id(0, slot)).is_some())
            .count()
    }

    #[test]
    fn attachments_set_here_are_kept_until_confirmed_then_only_within_the_budget() {
        let mut overlay = Overlay::default();
        set_many(&mut overlay, 0, 1_000, 2_000, 1);
        overlay.forget_confirmed(|_| 0);
        assert_eq!(kept(&overlay, 0..1_000), 1_000, "none confirmed, all kept");
        overlay.forget_confirmed(|_| 500);
        assert_eq!(kept(&overlay, 0..500), 0, "the oldest confirmed go first");
        assert_eq!(kept(&overlay, 500..1_000), 500);
        overlay.forget_confirmed(|_| 1_000);
        let budget = KEEP_CONFIRMED_BYTES / (2_000 + ENTRY_BYTES);
        assert_eq!(
            kept(&overlay, 0..1_000),
            budget,
            "the newest, within budget"
        );
        assert_eq!(kept(&overlay, 1_000 - budget as u32..1_000), budget);
        assert!(overlay.attached_bytes <= KEEP_CONFIRMED_BYTES);
    }

    #[test]
    fn a_forgotten_attachment_is_asked_for_again() {
        let mut overlay = Overlay::default();
        set_many(&mut overlay, 0, 100, 2_000, 1);
        overlay.forget_confirmed(|_| 100);
        assert_eq!(overlay.attachment_set(id(0, 0)), None);
        assert_eq!(
            overlay.known(id(0, 0), ANY),
            Ok(None),
            "not gone: ask its edge"
        );
        let answered = overlay.described(id(0, 0), Some(tagged(&[], Some(b"edge's"))));
        assert_eq!(answered, Some(tagged(&[], Some(b"edge's"))));
    }

    #[test]
    fn a_socket_accepted_here_whose_attachment_was_forgotten_is_asked_for() {
        let mut overlay = Overlay::default();
        for slot in 0..100 {
            overlay.accepted(id(0, slot), vec!["red".into()]);
        }
        set_many(&mut overlay, 0, 100, 2_000, 1);
        overlay.forget_confirmed(|_| 100);
        assert_eq!(overlay.known(id(0, 0), ANY), Ok(None), "its edge knows");
        let known = overlay.known(id(0, 99), ANY).unwrap().unwrap();
        assert_eq!(known.tags, ["red"]);
        assert_eq!(known.attachment.map(|a| a.len()), Some(2_000));
        let answered = overlay.described(id(0, 0), Some(tagged(&["red"], Some(b"edge's"))));
        assert_eq!(answered, Some(tagged(&["red"], Some(b"edge's"))));
        assert_eq!(overlay.merge_list(&set(&[]), Some("red")).len(), 100);
        assert_eq!(
            overlay.accepted_on(0).len(),
            100,
            "known to die with its edge"
        );
    }

    #[test]
    fn an_edges_answer_is_kept_for_later_events_until_the_object_sets_the_attachment() {
        let mut overlay = Overlay::default();
        overlay.described(id(0, 1), Some(tagged(&["t"], Some(b"ada"))));
        overlay.begin_event();
        assert_eq!(
            overlay.known(id(0, 1), ANY),
            Ok(Some(tagged(&["t"], Some(b"ada"))))
        );
        assert_eq!(
            overlay.known(id(0, 1), Need::AutoResponse),
            Ok(None),
            "an auto-response time is asked for afresh"
        );
        overlay.attach(id(0, 1), Some(Bytes::from_static(b"bob")), Some(1));
        assert_eq!(
            overlay.known(id(0, 1), ANY),
            Ok(Some(tagged(&["t"], Some(b"bob"))))
        );
        // The edge answers before it applied the set: read through it,
        // and not kept.
        overlay.described(id(0, 1), Some(tagged(&["t"], Some(b"ada"))));
        // Once the set is confirmed and forgotten, the edge has "bob", and
        // so has the kept answer: the older one must not come back.
        // (Forgotten as the next event begins, as the host does.)
        set_many(&mut overlay, 100, 100, 2_000, 2);
        overlay.begin_event();
        overlay.forget_confirmed(|_| 200);
        assert_eq!(overlay.attachment_set(id(0, 1)), None);
        assert_eq!(
            overlay.known(id(0, 1), ANY),
            Ok(Some(tagged(&["t"], Some(b"bob"))))
        );
    }

    #[test]
    fn kept_answers_stay_within_their_budget_newest_first() {
        let mut overlay = Overlay::default();
        static ATTACHMENT: [u8; 2_000] = [b'z'; 2_000];
        for slot in 0..1_000 {
            let answer = tagged(&[], Some(&ATTACHMENT));
            overlay.described(id(0, slot), Some(answer));
            overlay.begin_event();
        }
        assert!(overlay.answers.bytes <= KEEP_ANSWERS_BYTES);
        assert!(overlay.answers.order.len() <= 2 * overlay.answers.kept.len() + 64);
        assert!(overlay.known(id(0, 999), ANY).unwrap().is_some());
        assert_eq!(overlay.known(id(0, 0), ANY), Ok(None));
        let kept = overlay.answers.kept.len();
        assert_eq!(kept, KEEP_ANSWERS_BYTES / (2_000 + ENTRY_BYTES));
    }

    #[test]
    fn a_lost_edges_kept_answers_are_dropped() {
        let mut overlay = Overlay::default();
        overlay.described(id(0, 1), Some(tagged(&[], Some(b"a"))));
        overlay.described(id(1, 1), Some(tagged(&[], Some(b"b"))));
        overlay.begin_event();
        overlay.edge_lost(1);
        assert!(overlay.known(id(0, 1), ANY).unwrap().is_some());
        assert_eq!(overlay.known(id(1, 1), ANY), Ok(None));
    }

    #[test]
    fn an_attachment_set_again_is_not_forgotten_by_its_older_stamp() {
        let mut overlay = Overlay::default();
        set_many(&mut overlay, 0, 100, 2_000, 1);
        // Socket 0 set again, after the confirmation that will come.
        overlay.attach(id(0, 0), Some(Bytes::from_static(b"newest")), Some(500));
        overlay.forget_confirmed(|_| 100);
        assert_eq!(
            overlay.attachment_set(id(0, 0)),
            Some(Some(Bytes::from_static(b"newest")))
        );
    }

    #[test]
    fn setting_one_socket_again_and_again_does_not_grow_the_overlay() {
        let mut overlay = Overlay::default();
        for stamp in 1..=100_000 {
            overlay.attach(id(0, 0), Some(Bytes::from_static(b"pos")), Some(stamp));
            if stamp % 100 == 0 {
                // Confirmations lag one batch behind.
                overlay.forget_confirmed(|_| stamp - 100);
            }
        }
        let queued: usize = overlay.sent.values().map(VecDeque::len).sum();
        assert!(queued <= 2 * overlay.attached.len() + 64 + 100, "{queued}");
        assert_eq!(overlay.attached.len(), 1);
    }

    #[test]
    fn what_was_sent_on_a_lost_link_is_kept_for_the_close_handlers() {
        let mut overlay = Overlay::default();
        set_many(&mut overlay, 0, 100, 2_000, 1);
        overlay.link_lost(0);
        // The next connection's confirmations are of other frames.
        overlay.forget_confirmed(|_| u64::MAX);
        assert_eq!(kept(&overlay, 0..100), 100);
        overlay.gone(id(0, 7));
        assert_eq!(overlay.attachment_set(id(0, 7)), None);
        assert_eq!(overlay.attached_bytes, 99 * (2_000 + ENTRY_BYTES));
    }

    #[test]
    fn an_attachment_its_edge_was_not_told_is_kept() {
        let mut overlay = Overlay::default();
        set_many(&mut overlay, 0, 100, 2_000, 1);
        overlay.attach(id(0, 200), Some(Bytes::from_static(b"down")), None);
        overlay.forget_confirmed(|_| u64::MAX);
        assert_eq!(
            overlay.attachment_set(id(0, 200)),
            Some(Some(Bytes::from_static(b"down")))
        );
    }

    #[test]
    fn the_socket_being_closed_is_listed_and_readable_until_its_close_is_handled() {
        let mut overlay = Overlay::default();
        overlay.begin_close(id(0, 5), tagged(&["red"], Some(b"ada")));
        assert_eq!(
            overlay.merge_list(&set(&[id(0, 6)]), None),
            [id(0, 5), id(0, 6)]
        );
        assert_eq!(overlay.merge_list(&set(&[]), Some("red")), [id(0, 5)]);
        assert_eq!(
            overlay.known(id(0, 5), ANY),
            Ok(Some(tagged(&["red"], Some(b"ada"))))
        );
        overlay.gone(id(0, 5));
        assert_eq!(overlay.merge_list(&set(&[]), None), []);
        assert_eq!(overlay.known(id(0, 5), ANY), Err(()));
    }

    #[test]
    fn many_misses_on_one_edge_in_one_event_turn_into_one_bulk_question() {
        let mut overlay = Overlay::default();
        let asks: Vec<bool> = (0..MISSES_BEFORE_BULK + 1)
            .map(|_| overlay.miss(0))
            .collect();
        assert_eq!(asks.iter().filter(|&&bulk| bulk).count(), 1);
        assert!(asks[MISSES_BEFORE_BULK as usize]);
        assert!(!overlay.miss(1), "each edge counts its own");
        overlay.described_all(0, [(id(0, 1), tagged(&[], Some(b"a")))]);
        assert!(!overlay.miss(0), "asked for all once per event");
        assert_eq!(
            overlay.known(id(0, 1), ANY),
            Ok(Some(tagged(&[], Some(b"a"))))
        );
        overlay.begin_event();
        assert!(!overlay.miss(0), "a new event counts from 0");
    }

    #[test]
    fn a_lost_edges_answers_no_longer_stand_and_its_accepted_sockets_are_known() {
        let mut overlay = Overlay::default();
        overlay.accepted(id(1, 1), vec![]);
        overlay.accepted(id(0, 1), vec![]);
        overlay.cache_list(None, set(&[id(0, 2), id(1, 2)]));
        overlay.described(id(1, 2), Some(tagged(&[], None)));
        overlay.edge_lost(1);
        assert_eq!(overlay.cached_list(None), Some(&set(&[id(0, 2)])));
        assert_eq!(overlay.known(id(1, 2), ANY), Ok(None));
        assert_eq!(overlay.accepted_on(1), [id(1, 1)]);
    }

    #[test]
    fn closed_sockets_are_remembered_up_to_a_bound() {
        let mut overlay = Overlay::default();
        for slot in 0..CLOSED_KEPT as u32 + 10 {
            overlay.gone(id(0, slot));
        }
        assert!(!overlay.is_gone(id(0, 0)), "the oldest are forgotten");
        assert!(overlay.is_gone(id(0, CLOSED_KEPT as u32 + 9)));
    }
}
