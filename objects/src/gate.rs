//! One object's output gate: while an event of the object runs, what would
//! reach a client (sends, broadcasts, closes, the alarm change) is held here
//! and handed to the outbox only once the event's storage commit is
//! durable, or dropped if the event fails.
//!
//! Each object has its own: a worker runs many objects' events
//! interleaved (one waits on a call while another runs), and one event's
//! end must not release or drop what another is holding.

use crate::outbox::Outbox;
use std::cell::RefCell;
use torpor_proto::ipc::ToEdge;

#[derive(Default)]
pub(crate) struct OutputGate {
    /// `Some` while an event runs: what it produced, per edge, in order.
    held: RefCell<Option<Vec<(u16, ToEdge)>>>,
}

impl OutputGate {
    /// Holds `message` if an event is running, else pushes it at once.
    pub(crate) fn push(&self, outbox: &Outbox, edge: u16, message: ToEdge) {
        match self.held.borrow_mut().as_mut() {
            Some(held) => held.push((edge, message)),
            None => outbox.push(edge, &message),
        }
    }

    /// Closes the gate for one event.
    pub(crate) fn close(&self) {
        *self.held.borrow_mut() = Some(Vec::new());
    }

    /// Lets what the event produced go, in order.
    pub(crate) fn release(&self, outbox: &Outbox) {
        let held = self.held.borrow_mut().take();
        for (edge, message) in held.into_iter().flatten() {
            outbox.push(edge, &message);
        }
    }

    /// Drops what the event produced: it failed, so none of it happened.
    pub(crate) fn discard(&self) {
        self.held.borrow_mut().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torpor_proto::SocketHandle;

    fn send(text: &'static str) -> ToEdge {
        ToEdge::Send {
            handle: SocketHandle {
                edge: 0,
                slot: 1,
                generation: 1,
            },
            is_text: true,
            payload: text.into(),
        }
    }

    fn pushed(outbox: &Outbox) -> Vec<u8> {
        outbox.take_pending(0)
    }

    fn encoded(messages: &[ToEdge]) -> Vec<u8> {
        let mut buf = Vec::new();
        for message in messages {
            message.encode(&mut buf);
        }
        buf
    }

    #[test]
    fn one_objects_event_ending_leaves_anothers_held_messages_alone() {
        let outbox = Outbox::new(1);
        outbox.connected(0, &send("hello"));
        pushed(&outbox);
        let (a, b) = (OutputGate::default(), OutputGate::default());
        a.close();
        a.push(&outbox, 0, send("a before"));
        // B's event runs while A's handler waits, and ends both ways.
        b.close();
        b.push(&outbox, 0, send("b failed"));
        b.discard();
        b.close();
        b.push(&outbox, 0, send("b"));
        b.release(&outbox);
        assert_eq!(pushed(&outbox), encoded(&[send("b")]));
        a.push(&outbox, 0, send("a after"));
        assert_eq!(
            pushed(&outbox),
            Vec::<u8>::new(),
            "A's event has not committed"
        );
        a.release(&outbox);
        assert_eq!(
            pushed(&outbox),
            encoded(&[send("a before"), send("a after")])
        );
        a.push(&outbox, 0, send("outside an event"));
        assert_eq!(pushed(&outbox), encoded(&[send("outside an event")]));
    }
}
