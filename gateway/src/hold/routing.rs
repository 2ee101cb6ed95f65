//! Requests and calls on their way to objects, without I/O: each waits by
//! its request id for the object's answer, and fails (503) if the worker
//! process it was sent to goes away first.

use super::FetchReply;
use std::collections::HashMap;
use tokio::sync::oneshot;

/// A request from the front door, waiting for its object's answer.
pub(crate) struct PendingFetch {
    pub(crate) reply: oneshot::Sender<FetchReply>,
    pub(crate) object: u32,
    /// The socket reserved for an upgrade.
    pub(crate) upgrade: Option<usize>,
    /// The object's worker's link epoch when the request was sent.
    pub(crate) epoch: u32,
}

/// A call from one object to another, waiting for the callee's answer.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct PendingCall {
    pub(crate) caller: u32,
    /// The caller's worker, where the answer goes.
    pub(crate) worker: usize,
    pub(crate) call_id: u64,
    pub(crate) callee: u32,
    /// The callee's worker's link epoch when the call was sent.
    pub(crate) epoch: u32,
}

/// An answer for a request id.
pub(crate) enum Waiting {
    Fetch(PendingFetch),
    Call(PendingCall),
}

/// What a worker process's going away leaves unanswered.
#[derive(Default)]
pub(crate) struct Lost {
    pub(crate) fetches: Vec<PendingFetch>,
    /// Calls whose callee will not answer; their callers wait.
    pub(crate) calls: Vec<PendingCall>,
}

pub(crate) struct Routes {
    fetches: HashMap<u64, PendingFetch>,
    calls: HashMap<u64, PendingCall>,
    next_request_id: u64,
}

impl Default for Routes {
    fn default() -> Routes {
        Routes {
            fetches: HashMap::new(),
            calls: HashMap::new(),
            next_request_id: 1,
        }
    }
}

impl Routes {
    /// Waits for the answer to a request; returns its id.
    pub(crate) fn fetch(&mut self, fetch: PendingFetch) -> u64 {
        let id = self.next_id();
        self.fetches.insert(id, fetch);
        id
    }

    /// Waits for the answer to a call; returns its request id.
    pub(crate) fn call(&mut self, call: PendingCall) -> u64 {
        let id = self.next_id();
        self.calls.insert(id, call);
        id
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    /// The one waiting for `request_id`, if any still does.
    pub(crate) fn answered(&mut self, request_id: u64) -> Option<Waiting> {
        if let Some(fetch) = self.fetches.remove(&request_id) {
            return Some(Waiting::Fetch(fetch));
        }
        self.calls.remove(&request_id).map(Waiting::Call)
    }

    /// Whether a request to an object on `worker` waits for its answer.
    pub(crate) fn busy(&self, worker: usize, worker_of: impl Fn(u32) -> usize) -> bool {
        self.fetches.values().any(|f| worker_of(f.object) == worker)
    }

    /// Requests from the front door waiting for their answers.
    pub(crate) fn pending_fetches(&self) -> usize {
        self.fetches.len()
    }

    /// Gives up on every request from the front door.
    pub(crate) fn take_fetches(&mut self) -> Vec<PendingFetch> {
        self.fetches.drain().map(|(_, fetch)| fetch).collect()
    }

    /// The calls waiting, and the next request id, as plain data; requests
    /// from the front door cannot move and must be answered first.
    pub(crate) fn suspend(&self) -> (Vec<(u64, &PendingCall)>, u64) {
        let calls = self.calls.iter().map(|(id, call)| (*id, call)).collect();
        (calls, self.next_request_id)
    }

    /// Routes with the calls [`suspend`](Self::suspend) listed.
    pub(crate) fn resume(calls: Vec<(u64, PendingCall)>, next_request_id: u64) -> Routes {
        Routes {
            fetches: HashMap::new(),
            calls: calls.into_iter().collect(),
            next_request_id,
        }
    }

    /// The process of `worker` went away: what it was sent before link
    /// epoch `before` will not be answered, and calls its own handlers
    /// made will find no one to take the answer.
    pub(crate) fn lose(
        &mut self,
        worker: usize,
        before: u32,
        worker_of: impl Fn(u32) -> usize,
    ) -> Lost {
        let lost_fetches: Vec<u64> = self
            .fetches
            .iter()
            .filter(|(_, f)| worker_of(f.object) == worker && f.epoch < before)
            .map(|(id, _)| *id)
            .collect();
        let lost_calls: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.worker == worker || (worker_of(c.callee) == worker && c.epoch < before)
            })
            .map(|(id, _)| *id)
            .collect();
        let mut lost = Lost::default();
        for id in lost_fetches {
            lost.fetches.extend(self.fetches.remove(&id));
        }
        for id in lost_calls {
            // A caller on the lost worker waits for nothing any more.
            lost.calls
                .extend(self.calls.remove(&id).filter(|c| c.worker != worker));
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(object: u32, epoch: u32) -> PendingFetch {
        let (reply, _) = oneshot::channel();
        PendingFetch {
            reply,
            object,
            upgrade: None,
            epoch,
        }
    }

    fn call(caller_worker: usize, callee: u32, epoch: u32) -> PendingCall {
        PendingCall {
            caller: 99,
            worker: caller_worker,
            call_id: 7,
            callee,
            epoch,
        }
    }

    /// Objects 0 and 1 are on worker 0, 2 on worker 1.
    fn worker_of(object: u32) -> usize {
        usize::from(object >= 2)
    }

    #[test]
    fn a_lost_worker_fails_what_it_was_sent_and_nothing_else() {
        let mut routes = Routes::default();
        let a = routes.fetch(fetch(0, 0));
        let b = routes.fetch(fetch(2, 0));
        let c = routes.call(call(1, 1, 0));
        let d = routes.call(call(0, 2, 0));
        let lost = routes.lose(0, u32::MAX, worker_of);
        assert_eq!(lost.fetches.len(), 1, "the request to object 0");
        assert_eq!(lost.calls.len(), 1, "the call to object 1, from worker 1");
        assert!(routes.answered(a).is_none());
        assert!(routes.answered(c).is_none());
        assert!(routes.answered(d).is_none(), "its caller is gone");
        assert!(matches!(routes.answered(b), Some(Waiting::Fetch(_))));
    }

    #[test]
    fn a_retiring_worker_fails_only_what_was_sent_before_the_retirement() {
        let mut routes = Routes::default();
        let old = routes.fetch(fetch(0, 3));
        let held = routes.fetch(fetch(0, 4));
        let lost = routes.lose(0, 4, worker_of);
        assert_eq!(lost.fetches.len(), 1);
        assert!(routes.answered(old).is_none());
        assert!(matches!(routes.answered(held), Some(Waiting::Fetch(_))));
    }

    #[test]
    fn request_ids_are_never_reused() {
        let mut routes = Routes::default();
        let a = routes.fetch(fetch(0, 0));
        assert!(routes.answered(a).is_some());
        let b = routes.call(call(0, 0, 0));
        assert_ne!(a, b);
        assert!(routes.answered(a).is_none());
    }
}
