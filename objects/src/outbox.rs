//! Messages from the worker to its edge, encoded as they are produced and
//! written by one task, so that their order is the order of the calls.

use std::cell::RefCell;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::Notify;
use torpor_proto::ipc::ToEdge;

#[derive(Default)]
pub(crate) struct Outbox {
    buf: RefCell<Vec<u8>>,
    notify: Notify,
}

impl Outbox {
    pub(crate) fn push(&self, message: &ToEdge) {
        message.encode(&mut self.buf.borrow_mut());
        self.notify.notify_one();
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
