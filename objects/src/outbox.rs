//! Messages from the worker to its edge, encoded as they are produced and
//! written by one task, so that their order is the order of the calls.
//!
//! It is also the output gate: while an event runs, what would reach a
//! client (sends, broadcasts, closes, the fetch response) is held in the gate
//! and released only after the event's storage commit is durable, or dropped
//! if the event fails. Bookkeeping (accepts, attachments, auto-responses)
//! goes out at once: it reaches no client by itself.

use std::cell::RefCell;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;
use torpor_proto::ipc::ToEdge;

#[derive(Default)]
pub(crate) struct Outbox {
    buf: RefCell<Vec<u8>>,
    gate: RefCell<Option<Vec<u8>>>,
    notify: Notify,
}

impl Outbox {
    pub(crate) fn push(&self, message: &ToEdge) {
        message.encode(&mut self.buf.borrow_mut());
        self.notify.notify_one();
    }

    /// Holds `message` behind the gate if one is open.
    pub(crate) fn push_gated(&self, message: &ToEdge) {
        match self.gate.borrow_mut().as_mut() {
            Some(held) => message.encode(held),
            None => self.push(message),
        }
    }

    /// Opens the gate for one event.
    pub(crate) fn open_gate(&self) {
        *self.gate.borrow_mut() = Some(Vec::new());
    }

    /// Lets what the event produced go, in order.
    pub(crate) fn release_gate(&self) {
        if let Some(held) = self.gate.borrow_mut().take() {
            if !held.is_empty() {
                self.buf.borrow_mut().extend_from_slice(&held);
                self.notify.notify_one();
            }
        }
    }

    /// Drops what the event produced: it failed, so none of it happened.
    pub(crate) fn discard_gate(&self) {
        self.gate.borrow_mut().take();
    }

    /// Writes everything pushed, until the edge goes away.
    pub(crate) async fn drain_into(&self, mut socket: OwnedWriteHalf) -> std::io::Result<()> {
        let mut spare = Vec::new();
        loop {
            self.notify.notified().await;
            // Swap buffers so handlers keep encoding while this one is written.
            std::mem::swap(&mut spare, &mut *self.buf.borrow_mut());
            if !spare.is_empty() {
                socket.write_all(&spare).await?;
                spare.clear();
            }
        }
    }
}
