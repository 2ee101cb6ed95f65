//! The databases a worker's live objects hold open, least recently used
//! first, and the cap on how many: each costs two file descriptors (the
//! file and its WAL) and a place in the list SQLite's unix
//! VFS searches on every open, so without a cap a worker creating objects
//! faster than they hibernate runs out of descriptors and slows as it goes.
//! Past the cap the least recently used database of an object between
//! events is closed; the object stays live and opens it again on its next
//! storage call. A database in use by an event is never closed here, so the
//! cap is exceeded while more objects than it are inside events at once.
//! Not here: opening, closing or hibernation.

use crate::host::ObjectHost;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Weak;

pub(crate) struct OpenDatabases {
    max_open: usize,
    next_use: Cell<u64>,
    /// By last use, oldest first: each open database once.
    by_use: RefCell<BTreeMap<u64, Weak<ObjectHost>>>,
}

impl OpenDatabases {
    pub(crate) fn new(max_open: usize) -> OpenDatabases {
        OpenDatabases {
            max_open: max_open.max(1),
            next_use: Cell::new(0),
            by_use: RefCell::new(BTreeMap::new()),
        }
    }

    /// The host used its open database (last used at `previous`, if it was
    /// open): it becomes the most recently used. Returns the new mark.
    pub(crate) fn touch(&self, previous: Option<u64>, host: &Weak<ObjectHost>) -> u64 {
        let mark = self.next_use.get() + 1;
        self.next_use.set(mark);
        let mut by_use = self.by_use.borrow_mut();
        if let Some(previous) = previous {
            by_use.remove(&previous);
        }
        by_use.insert(mark, host.clone());
        mark
    }

    /// The database last used at `mark` closed.
    pub(crate) fn forget(&self, mark: u64) {
        self.by_use.borrow_mut().remove(&mark);
    }

    pub(crate) fn open(&self) -> usize {
        self.by_use.borrow().len()
    }

    /// Closes the least recently used databases of objects between events
    /// until at most the cap are open, or none is left to close.
    pub(crate) fn enforce(&self) {
        let mut excess = self.open().saturating_sub(self.max_open);
        let mut from = 0;
        while excess > 0 {
            let oldest = self
                .by_use
                .borrow()
                .range(from..)
                .next()
                .map(|(&mark, host)| (mark, host.clone()));
            let Some((mark, host)) = oldest else {
                return;
            };
            from = mark + 1;
            let closed = match host.upgrade() {
                Some(host) => host.close_idle_storage(),
                None => {
                    // Its host is gone without saying so; nothing is open.
                    self.forget(mark);
                    true
                }
            };
            if closed {
                excess -= 1;
            }
        }
    }
}
