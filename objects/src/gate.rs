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
use torpor_proto::SocketHandle;

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
    /// The event committed: what it sent goes, in order, except that each
    /// run of one message sent to every socket of the object (`sockets`,
    /// sorted), or to all but one, goes as one `Broadcast` per edge in
    /// `tied`: what a handler that loops `ws.send` over `getWebSockets()`
    /// means, at the cost of one command per edge instead of one per
    /// socket.
    pub(crate) fn release(&self, outbox: &Outbox, sockets: &[SocketHandle], tied: &[(u16, u32)]) {
        let held = self.held.borrow_mut().take().unwrap_or_default();
        for (edge, message) in coalesce_sends(held, sockets, tied) {
            outbox.push(edge, &message);
        }
    }

    /// Drops what the event produced: it failed, so none of it happened.
    pub(crate) fn discard(&self) {
        self.held.borrow_mut().take();
    }
}

/// The messages of `held`, runs of one payload to every socket (or all but
/// one) replaced by broadcasts. A run is consecutive `Send`s of the same
/// payload to distinct sockets; nothing else moves, so every socket gets
/// its messages in the order the handler sent them.
pub(crate) fn coalesce_sends(
    held: Vec<(u16, ToEdge)>,
    sockets: &[SocketHandle],
    tied: &[(u16, u32)],
) -> Vec<(u16, ToEdge)> {
    if sockets.len() < 2 {
        return held;
    }
    let mut out = Vec::with_capacity(held.len());
    let mut rest = held.into_iter().peekable();
    while let Some(first) = rest.next() {
        let (
            _,
            ToEdge::Send {
                is_text, payload, ..
            },
        ) = &first
        else {
            out.push(first);
            continue;
        };
        let (is_text, payload) = (*is_text, payload.clone());
        let mut run = vec![first];
        while let Some((
            _,
            ToEdge::Send {
                is_text: t,
                payload: p,
                ..
            },
        )) = rest.peek()
        {
            if *t != is_text || *p != payload {
                break;
            }
            run.extend(rest.next());
        }
        match everyone_but(&run, sockets) {
            Some(except) => out.extend(tied.iter().map(|&(edge, object)| {
                let broadcast = ToEdge::Broadcast {
                    object,
                    tag: None,
                    except,
                    is_text,
                    payload: payload.clone(),
                };
                (edge, broadcast)
            })),
            None => out.extend(run),
        }
    }
    out
}

/// If the run's sockets are all of `sockets` but at most one, `Some` of
/// that one.
fn everyone_but(run: &[(u16, ToEdge)], sockets: &[SocketHandle]) -> Option<Option<SocketHandle>> {
    if run.len() < 2 || !(run.len() == sockets.len() || run.len() + 1 == sockets.len()) {
        return None;
    }
    let mut handles: Vec<SocketHandle> = run
        .iter()
        .filter_map(|(_, m)| match m {
            ToEdge::Send { handle, .. } => Some(*handle),
            _ => None,
        })
        .collect();
    // The order of `sockets`, which come from a map by WebSocketId.
    handles.sort_unstable_by_key(|h| (h.edge, h.slot, h.generation));
    handles.dedup();
    if handles.len() != run.len() {
        return None;
    }
    let mut missing = None;
    let mut sent = handles.iter().peekable();
    for socket in sockets {
        if sent.peek() == Some(&socket) {
            sent.next();
        } else if missing.replace(*socket).is_some() {
            return None;
        }
    }
    // Every handle sent to must be one of the object's sockets.
    sent.next().is_none().then_some(missing)
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
        b.release(&outbox, &[], &[]);
        assert_eq!(pushed(&outbox), encoded(&[send("b")]));
        a.push(&outbox, 0, send("a after"));
        assert_eq!(
            pushed(&outbox),
            Vec::<u8>::new(),
            "A's event has not committed"
        );
        a.release(&outbox, &[], &[]);
        assert_eq!(
            pushed(&outbox),
            encoded(&[send("a before"), send("a after")])
        );
        a.push(&outbox, 0, send("outside an event"));
        assert_eq!(pushed(&outbox), encoded(&[send("outside an event")]));
    }

    fn to(slot: u32, text: &'static str) -> (u16, ToEdge) {
        let handle = SocketHandle {
            edge: 0,
            slot,
            generation: 1,
        };
        let payload = text.into();
        (
            0,
            ToEdge::Send {
                handle,
                is_text: true,
                payload,
            },
        )
    }

    fn sockets(slots: &[u32]) -> Vec<SocketHandle> {
        slots
            .iter()
            .map(|&slot| SocketHandle {
                edge: 0,
                slot,
                generation: 1,
            })
            .collect()
    }

    fn broadcast(except: Option<u32>, text: &'static str) -> (u16, ToEdge) {
        let except = except.map(|slot| sockets(&[slot])[0]);
        let payload = text.into();
        let b = ToEdge::Broadcast {
            object: 9,
            tag: None,
            except,
            is_text: true,
            payload,
        };
        (0, b)
    }

    #[test]
    fn a_send_to_every_socket_is_one_broadcast_and_order_is_kept() {
        let all = sockets(&[1, 2, 3]);
        let held = vec![
            to(1, "hi"),
            to(3, "x"),
            to(2, "x"),
            to(1, "x"),
            to(2, "bye"),
        ];
        let out = coalesce_sends(held, &all, &[(0, 9)]);
        assert_eq!(out, vec![to(1, "hi"), broadcast(None, "x"), to(2, "bye")]);
    }

    #[test]
    fn all_but_one_is_a_broadcast_except_that_one() {
        let all = sockets(&[1, 2, 3]);
        let out = coalesce_sends(vec![to(3, "x"), to(1, "x")], &all, &[(0, 9)]);
        assert_eq!(out, vec![broadcast(Some(2), "x")]);
    }

    #[test]
    fn partial_repeated_or_foreign_runs_stay_sends() {
        let all = sockets(&[1, 2, 3, 4]);
        let partial = vec![to(1, "x"), to(2, "x")];
        assert_eq!(coalesce_sends(partial.clone(), &all, &[(0, 9)]), partial);
        let repeated = vec![to(1, "x"), to(1, "x"), to(2, "x"), to(3, "x")];
        assert_eq!(coalesce_sends(repeated.clone(), &all, &[(0, 9)]), repeated);
        let foreign = vec![to(1, "x"), to(2, "x"), to(7, "x")];
        assert_eq!(coalesce_sends(foreign.clone(), &all, &[(0, 9)]), foreign);
    }
}
