//! Messages from the worker to the node's edges, encoded as they are
//! produced and written by one task per edge, so that their order on each
//! edge is the order of the calls.
//!
//! It is also the output gate: while an event runs, what would reach a
//! client (sends, broadcasts, closes, the fetch response, alarm changes) is
//! held in the gate and released only after the event's storage commit is
//! durable, or dropped if the event fails. Bookkeeping (accepts,
//! attachments, auto-responses) goes out at once: it reaches no client by
//! itself.
//!
//! While an edge is down what is pushed for it is dropped: its sockets died
//! with it. Alarm changes are the exception, kept for the next connection:
//! the edge that keeps the alarm schedule must not miss one while it
//! restarts.

use std::cell::{Cell, RefCell};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;
use torpor_proto::ipc::ToEdge;

struct EdgeOut {
    buf: RefCell<Vec<u8>>,
    /// Alarm changes pushed while the edge was down.
    retained: RefCell<Vec<u8>>,
    connected: Cell<bool>,
    notify: Notify,
}

pub(crate) struct Outbox {
    edges: Vec<EdgeOut>,
    gate: RefCell<Option<Vec<(u16, ToEdge)>>>,
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
                    notify: Notify::new(),
                })
                .collect(),
            gate: RefCell::new(None),
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
            out.notify.notify_one();
        } else if matches!(message, ToEdge::SetAlarm { .. }) {
            message.encode(&mut out.retained.borrow_mut());
        }
    }

    /// Holds `message` behind the gate if one is open.
    pub(crate) fn push_gated(&self, edge: u16, message: ToEdge) {
        match self.gate.borrow_mut().as_mut() {
            Some(held) => held.push((edge, message)),
            None => self.push(edge, &message),
        }
    }

    /// Opens the gate for one event.
    pub(crate) fn open_gate(&self) {
        *self.gate.borrow_mut() = Some(Vec::new());
    }

    /// Lets what the event produced go, in order.
    pub(crate) fn release_gate(&self) {
        let held = self.gate.borrow_mut().take();
        for (edge, message) in held.into_iter().flatten() {
            self.push(edge, &message);
        }
    }

    /// Drops what the event produced: it failed, so none of it happened.
    pub(crate) fn discard_gate(&self) {
        self.gate.borrow_mut().take();
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
            out.buf.borrow_mut().clear();
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
                out.notify.notified().await;
                continue;
            }
            socket.write_all(&spare).await?;
            spare.clear();
        }
    }
}
