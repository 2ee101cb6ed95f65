//! Messages from the worker to the node's edges, encoded as they are
//! produced and written by one task per edge, so that their order on each
//! edge is the order of the calls.
//!
//! What an event sends to clients passes its object's output gate
//! (`gate.rs`) first and reaches the outbox only once the event has
//! committed; bookkeeping (accepts, attachments, auto-responses) comes
//! here at once: it reaches no client by itself.
//!
//! While an edge is down what is pushed for it is dropped: its sockets died
//! with it. Alarm changes are the exception, kept for the next connection:
//! the edge that keeps the alarm schedule must not miss one while it
//! restarts.
//!
//! Attachments are pushed with a stamp, and every [`CONFIRM_EVERY_BYTES`]
//! of them the outbox asks the edge to confirm it applied them
//! (`Confirm`): an object keeps each attachment it set only until then
//! (see `overlay.rs`), so that a room's attachments live in the edge, not
//! in the worker as well.

use std::cell::{Cell, RefCell};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;
use torpor_proto::ipc::ToEdge;

/// Capacity an edge's two buffers keep once written out. A burst (thousands
/// of upgrades accepted, attachments set) grows them to hundreds of KiB;
/// kept, that is memory the worker holds for every edge (up to 64) for the
/// rest of its life. Small messages still fit without a reallocation.
const KEEP_BYTES: usize = 16 * 1024;

/// Attachment bytes pushed to an edge after which the outbox asks it to
/// confirm them: a room joining at 2 KB each is confirmed every 32 joins,
/// one small frame each way.
pub(crate) const CONFIRM_EVERY_BYTES: usize = 64 * 1024;

struct EdgeOut {
    buf: RefCell<Vec<u8>>,
    /// Alarm changes pushed while the edge was down.
    retained: RefCell<Vec<u8>>,
    connected: Cell<bool>,
    /// A buffer taken from `buf` is being written.
    writing: Cell<bool>,
    notify: Notify,
    /// A write finished, or the edge went down.
    wrote: Notify,
    /// Frames pushed while connected, over the worker's life: the stamp
    /// of the last one.
    stamp: Cell<u64>,
    /// Every frame up to this stamp has been applied by the edge.
    confirmed: Cell<u64>,
    /// A `Confirm` is on its way and not yet answered.
    confirming: Cell<bool>,
    /// Attachment bytes pushed since the last `Confirm`.
    unconfirmed_bytes: Cell<usize>,
}

pub(crate) struct Outbox {
    edges: Vec<EdgeOut>,
}

impl Outbox {
    /// An outbox for `edges` edges, all disconnected.
    pub(crate) fn new(edges: u16) -> Outbox {
        Outbox {
            edges: (0..edges)
                .map(|_| EdgeOut {
                    buf: RefCell::new(Vec::new()),
                    retained: RefCell::new(Vec::new()),
                    connected: Cell::new(false),
                    writing: Cell::new(false),
                    notify: Notify::new(),
                    wrote: Notify::new(),
                    stamp: Cell::new(0),
                    confirmed: Cell::new(0),
                    confirming: Cell::new(false),
                    unconfirmed_bytes: Cell::new(0),
                })
                .collect(),
        }
    }

    pub(crate) fn edges(&self) -> u16 {
        self.edges.len() as u16
    }

    pub(crate) fn is_connected(&self, edge: u16) -> bool {
        self.edges
            .get(usize::from(edge))
            .is_some_and(|e| e.connected.get())
    }

    pub(crate) fn push(&self, edge: u16, message: &ToEdge) {
        let Some(out) = self.edges.get(usize::from(edge)) else {
            return;
        };
        if out.connected.get() {
            message.encode(&mut out.buf.borrow_mut());
            out.stamp.set(out.stamp.get() + 1);
            out.notify.notify_one();
        } else if matches!(
            message,
            ToEdge::SetAlarm { .. } | ToEdge::SyncAlarm { .. } | ToEdge::AlarmIntent { .. }
        ) {
            message.encode(&mut out.retained.borrow_mut());
        }
    }

    /// Pushes an attachment change of `bytes` bytes and returns its stamp:
    /// once [`confirmed_through`](Self::confirmed_through) reaches it, the
    /// edge holds the change. `None` if the edge is down (nothing is sent).
    pub(crate) fn push_attachment(&self, edge: u16, message: &ToEdge, bytes: usize) -> Option<u64> {
        let out = self.edges.get(usize::from(edge))?;
        if !out.connected.get() {
            return None;
        }
        self.push(edge, message);
        let stamp = out.stamp.get();
        out.unconfirmed_bytes
            .set(out.unconfirmed_bytes.get().saturating_add(bytes));
        self.ask_to_confirm(out);
        Some(stamp)
    }

    fn ask_to_confirm(&self, out: &EdgeOut) {
        if out.confirming.get() || out.unconfirmed_bytes.get() < CONFIRM_EVERY_BYTES {
            return;
        }
        let token = out.stamp.get();
        ToEdge::Confirm { token }.encode(&mut out.buf.borrow_mut());
        out.stamp.set(token + 1);
        out.confirming.set(true);
        out.unconfirmed_bytes.set(0);
        out.notify.notify_one();
    }

    /// The edge answered a `Confirm`: it applied every frame up to `token`.
    pub(crate) fn confirmed(&self, edge: u16, token: u64) {
        let Some(out) = self.edges.get(usize::from(edge)) else {
            return;
        };
        if token > out.stamp.get() {
            // Not a token this process sent: confirming it would forget
            // attachments the edge may not have.
            tracing::warn!(edge, token, "confirmation of frames never sent, ignored");
            return;
        }
        out.confirmed.set(out.confirmed.get().max(token));
        out.confirming.set(false);
        if out.connected.get() {
            self.ask_to_confirm(out);
        }
    }

    /// The stamp up to which `edge` has applied what was pushed to it.
    pub(crate) fn confirmed_through(&self, edge: u16) -> u64 {
        self.edges
            .get(usize::from(edge))
            .map_or(0, |out| out.confirmed.get())
    }

    /// A new connection to `edge`: `hello` first, then what was kept for it.
    pub(crate) fn connected(&self, edge: u16, hello: &ToEdge) {
        let Some(out) = self.edges.get(usize::from(edge)) else {
            return;
        };
        let mut buf = out.buf.borrow_mut();
        buf.clear();
        hello.encode(&mut buf);
        buf.append(&mut out.retained.borrow_mut());
        out.connected.set(true);
        out.notify.notify_one();
    }

    pub(crate) fn disconnected(&self, edge: u16) {
        if let Some(out) = self.edges.get(usize::from(edge)) {
            out.connected.set(false);
            // Its `Confirm` died with the connection. Stamps go on rising:
            // the objects forget the ones sent on it (`Overlay::link_lost`).
            out.confirming.set(false);
            out.unconfirmed_bytes.set(0);
            out.buf.borrow_mut().clear();
            out.wrote.notify_waiters();
        }
    }

    /// Waits, at most `limit`, until what was pushed for `edge` so far is
    /// in the socket, where the worker's death no longer loses it; false if
    /// the limit passed first. At once if the edge is down.
    pub(crate) async fn written(&self, edge: u16, limit: Duration) -> bool {
        let Some(out) = self.edges.get(usize::from(edge)) else {
            return true;
        };
        let wait = async {
            loop {
                // Created before the check, so a write finishing in between
                // still wakes it.
                let wrote = out.wrote.notified();
                let pending = out.writing.get() || !out.buf.borrow().is_empty();
                if !out.connected.get() || !pending {
                    return;
                }
                wrote.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Waits (a bounded while) until what was pushed for connected edges
    /// has been written: a worker about to exit must not take its last
    /// replies with it.
    pub(crate) async fn flushed(&self) {
        const LIMIT: Duration = Duration::from_secs(2);
        let started = tokio::time::Instant::now();
        while started.elapsed() < LIMIT {
            let pending = self
                .edges
                .iter()
                .any(|e| e.connected.get() && (e.writing.get() || !e.buf.borrow().is_empty()));
            if !pending {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Writes everything pushed for `edge`, until writing fails.
    pub(crate) async fn drain_into(
        &self,
        edge: u16,
        mut socket: OwnedWriteHalf,
    ) -> std::io::Result<()> {
        let Some(out) = self.edges.get(usize::from(edge)) else {
            return Ok(());
        };
        let mut spare = Vec::new();
        loop {
            // Swap buffers so handlers keep encoding while this one is written.
            std::mem::swap(&mut spare, &mut *out.buf.borrow_mut());
            if spare.is_empty() {
                // Both buffers are empty: a burst is over, let go of what
                // it grew them to.
                spare.shrink_to(KEEP_BYTES);
                out.buf.borrow_mut().shrink_to(KEEP_BYTES);
                out.notify.notified().await;
                continue;
            }
            out.writing.set(true);
            let written = socket.write_all(&spare).await;
            out.writing.set(false);
            written?;
            spare.clear();
            out.wrote.notify_waiters();
        }
    }

    /// What is waiting to be written to `edge`, taken.
    #[cfg(test)]
    pub(crate) fn take_pending(&self, edge: u16) -> Vec<u8> {
        self.edges
            .get(usize::from(edge))
            .map(|out| std::mem::take(&mut *out.buf.borrow_mut()))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    use tokio::net::UnixStream;

    fn intent() -> ToEdge {
        ToEdge::AlarmIntent {
            namespace: "BENCH".into(),
            id: "ab".repeat(32),
            name: None,
            at_ms: 1_700_000_000_000,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn written_returns_once_the_socket_holds_what_was_pushed() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let outbox = Rc::new(Outbox::new(1));
                let (ours, theirs) = UnixStream::pair().unwrap();
                let (_read, write) = ours.into_split();
                outbox.connected(0, &ToEdge::StayUp);
                let draining = outbox.clone();
                tokio::task::spawn_local(async move { draining.drain_into(0, write).await });
                outbox.push(0, &intent());
                assert!(outbox.written(0, Duration::from_secs(5)).await);
                let mut expected = Vec::new();
                ToEdge::StayUp.encode(&mut expected);
                intent().encode(&mut expected);
                // Readable without waiting: nothing is left to the writer task.
                let mut got = vec![0; expected.len() + 16];
                let n = theirs.try_read(&mut got).unwrap();
                assert_eq!(&got[..n], &expected[..]);
            })
            .await;
    }

    fn set_attachment(bytes: usize) -> ToEdge {
        ToEdge::SetAttachment {
            handle: torpor_proto::SocketHandle {
                edge: 0,
                slot: 1,
                generation: 1,
            },
            attachment: Some(vec![b'a'; bytes].into()),
        }
    }

    fn confirms_in(bytes: &[u8]) -> Vec<u64> {
        let mut buf = bytes::BytesMut::from(bytes);
        let mut tokens = Vec::new();
        while let Some(frame) = torpor_proto::ipc::split_frame(&mut buf).unwrap() {
            if let ToEdge::Confirm { token } = ToEdge::decode(frame).unwrap() {
                tokens.push(token);
            }
        }
        tokens
    }

    #[test]
    fn attachments_are_confirmed_in_batches_one_question_at_a_time() {
        let outbox = Outbox::new(1);
        outbox.connected(0, &ToEdge::StayUp);
        let per = 2_000;
        let batch = CONFIRM_EVERY_BYTES.div_ceil(per) as u64;
        let stamps: Vec<u64> = (0..batch * 3)
            .map(|_| {
                outbox
                    .push_attachment(0, &set_attachment(per), per)
                    .unwrap()
            })
            .collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
        // Asked once, after the first batch, and not again until answered.
        let asked = confirms_in(&outbox.take_pending(0));
        assert_eq!(asked, [stamps[batch as usize - 1]]);
        assert_eq!(outbox.confirmed_through(0), 0);
        // The answer covers that batch, and the bytes pushed since ask again.
        outbox.confirmed(0, asked[0]);
        assert_eq!(outbox.confirmed_through(0), stamps[batch as usize - 1]);
        let asked_again = confirms_in(&outbox.take_pending(0));
        assert_eq!(asked_again, [*stamps.last().unwrap()]);
    }

    #[test]
    fn a_confirmation_of_more_than_was_sent_is_ignored() {
        let outbox = Outbox::new(1);
        outbox.connected(0, &ToEdge::StayUp);
        let stamp = outbox.push_attachment(0, &set_attachment(10), 10).unwrap();
        outbox.confirmed(0, stamp + 1_000);
        assert_eq!(outbox.confirmed_through(0), 0);
        outbox.confirmed(0, stamp);
        assert_eq!(outbox.confirmed_through(0), stamp);
    }

    #[test]
    fn nothing_is_stamped_for_an_edge_that_is_down() {
        let outbox = Outbox::new(1);
        assert_eq!(outbox.push_attachment(0, &set_attachment(10), 10), None);
        outbox.connected(0, &ToEdge::StayUp);
        let first = outbox.push_attachment(0, &set_attachment(10), 10).unwrap();
        outbox.disconnected(0);
        outbox.connected(0, &ToEdge::StayUp);
        let second = outbox.push_attachment(0, &set_attachment(10), 10).unwrap();
        assert!(second > first, "stamps rise across connections");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn written_does_not_wait_for_an_edge_that_is_down() {
        let outbox = Outbox::new(1);
        outbox.push(0, &intent());
        assert!(outbox.written(0, Duration::from_secs(5)).await);
    }
}
