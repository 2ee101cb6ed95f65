//! A worker process's agreements with the node's edges, without I/O: when
//! it tells the supervisor it is ready, when it may exit for being idle
//! (`IdleExit`, answered by `Shutdown`, taken back with `StayUp`), and when
//! a retiring worker (a deploy: `Retire`, answered by `Retired`) is done.
//! It takes inputs and `now` and returns what to do; the worker's tokio
//! code only carries that out. The message sequences are documented in
//! `torpor_proto::ipc`.
//!
//! [`ObjectTies`] is the same for one live object: which edges hold it
//! (each with its own number for it), which of them have yet to list their
//! sockets after a wake (`Gather`), and whether all of them agreed to let
//! it hibernate (`Idle`, answered by `Evict`).
//!
//! Not here: running an object's events, which the worker's object tasks
//! do, and its sockets' mirror, which its host keeps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use torpor_proto::ipc::ToEdge;

/// With no edge connected this long the node is gone.
pub(crate) const ORPHAN_AFTER: Duration = Duration::from_secs(10);
/// How often a retiring worker looks whether its objects are done.
const RETIRE_CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// How often a worker with live objects looks whether the node is gone.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The messages of these agreements the worker sends an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    /// `ToEdge::IdleExit`.
    IdleExit,
    /// `ToEdge::StayUp`.
    StayUp,
    /// `ToEdge::Retire`.
    Retire,
}

impl Signal {
    pub(crate) fn to_edge(self) -> ToEdge {
        match self {
            Signal::IdleExit => ToEdge::IdleExit,
            Signal::StayUp => ToEdge::StayUp,
            Signal::Retire => ToEdge::Retire,
        }
    }
}

/// What the worker must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send this to an edge.
    Send(u16, Signal),
    /// Tell the supervisor the worker serves (connected to every edge).
    AnnounceReady,
    /// Every edge holds the worker's new events: let each object finish
    /// what it was sent and end (a retiring worker).
    FinishObjects,
    /// Exit the process.
    Exit(ExitReason),
}

/// Why the worker exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitReason {
    /// No live object for `worker_idle_exit`, and every edge agreed.
    Idle,
    /// Retired, its last events done.
    Retired,
    /// Retiring, and its events were not done within the grace period.
    RetireTimedOut,
    /// No edge for [`ORPHAN_AFTER`]: the node is gone.
    Orphaned,
}

/// The worker's objects, as far as these agreements care.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Objects {
    /// Live objects.
    pub(crate) live: usize,
    /// No object is live and no object task runs any more.
    pub(crate) settled: bool,
}

struct Retiring {
    answered: Vec<bool>,
    deadline: Instant,
}

pub(crate) struct WorkerLife {
    connected: Vec<bool>,
    announced: bool,
    idle_exit: Duration,
    retire_grace: Duration,
    /// Nothing has happened since, and no object was live.
    quiet_since: Instant,
    last_connected: Instant,
    /// `IdleExit` was sent: which edges answered `Shutdown`.
    exit: Option<Vec<bool>>,
    retiring: Option<Retiring>,
    exited: bool,
    actions: VecDeque<Action>,
}

impl WorkerLife {
    /// A worker of a node with `edges` edges, none connected yet. It exits
    /// after `idle_exit` without a live object; a retiring worker gets
    /// `retire_grace` to finish its events.
    pub(crate) fn new(
        now: Instant,
        edges: u16,
        idle_exit: Duration,
        retire_grace: Duration,
    ) -> WorkerLife {
        WorkerLife {
            connected: vec![false; usize::from(edges)],
            announced: false,
            idle_exit,
            retire_grace,
            quiet_since: now,
            last_connected: now,
            exit: None,
            retiring: None,
            exited: false,
            actions: VecDeque::new(),
        }
    }

    pub(crate) fn is_retiring(&self) -> bool {
        self.retiring.is_some()
    }

    pub(crate) fn is_connected(&self, edge: u16) -> bool {
        self.connected
            .get(usize::from(edge))
            .copied()
            .unwrap_or(false)
    }

    /// The next thing to do, until `None`.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub(crate) fn poll_timeout(&self, now: Instant, objects: Objects) -> Instant {
        if self.retiring.is_some() {
            return now + RETIRE_CHECK_INTERVAL;
        }
        let check = now + CHECK_INTERVAL;
        if objects.live == 0 && self.exit.is_none() {
            return check.min(self.quiet_since + self.idle_exit);
        }
        check
    }

    pub(crate) fn handle_edge_up(&mut self, now: Instant, edge: u16) {
        let Some(slot) = self.connected.get_mut(usize::from(edge)) else {
            return;
        };
        *slot = true;
        self.last_connected = now;
        if !self.announced && self.connected.iter().all(|&c| c) {
            self.announced = true;
            self.actions.push_back(Action::AnnounceReady);
        }
        if self.retiring.is_some() {
            // A restarted edge holds nothing for this process yet; it must
            // hold what comes for it from now on too.
            self.actions.push_back(Action::Send(edge, Signal::Retire));
        } else {
            self.stay_up(now);
        }
    }

    pub(crate) fn handle_edge_down(&mut self, now: Instant, edge: u16) {
        if let Some(slot) = self.connected.get_mut(usize::from(edge)) {
            *slot = false;
        }
        self.last_connected = now;
        self.check_exit_agreed();
    }

    /// An event or an activation arrived: the worker is not idle.
    pub(crate) fn handle_activity(&mut self, now: Instant) {
        self.stay_up(now);
    }

    /// An edge agreed to the worker's `IdleExit`.
    pub(crate) fn handle_shutdown(&mut self, edge: u16) {
        match self.exit.as_mut() {
            Some(answers) => {
                if let Some(answer) = answers.get_mut(usize::from(edge)) {
                    *answer = true;
                }
                self.check_exit_agreed();
            }
            // The request was taken back already: the edge must not keep
            // holding events for a worker that stays.
            None => self.actions.push_back(Action::Send(edge, Signal::StayUp)),
        }
    }

    /// The supervisor asks the worker to make way for a new process.
    pub(crate) fn handle_retire(&mut self, now: Instant) {
        if self.retiring.is_some() || self.exited {
            return;
        }
        // An idle exit under way gives way: retiring includes it. The edges
        // that agreed to it hold everything, `Retired` included, until told
        // to stay up.
        self.stay_up(now);
        for edge in 0..self.connected.len() as u16 {
            self.actions.push_back(Action::Send(edge, Signal::Retire));
        }
        self.retiring = Some(Retiring {
            answered: vec![false; self.connected.len()],
            deadline: now + self.retire_grace,
        });
    }

    /// An edge answered `Retire`: it sent everything it had for us.
    pub(crate) fn handle_retired(&mut self, edge: u16) {
        if let Some(answer) = self
            .retiring
            .as_mut()
            .and_then(|r| r.answered.get_mut(usize::from(edge)))
        {
            *answer = true;
        }
    }

    /// Time passed; `objects` is how the worker's objects stand now.
    pub(crate) fn handle_timeout(&mut self, now: Instant, objects: Objects) {
        if self.exited {
            return;
        }
        if self.connected.iter().any(|&c| c) {
            self.last_connected = now;
        } else if now.saturating_duration_since(self.last_connected) > ORPHAN_AFTER {
            self.exit(ExitReason::Orphaned);
            return;
        }
        if let Some(retiring) = &self.retiring {
            if now >= retiring.deadline {
                self.exit(ExitReason::RetireTimedOut);
                return;
            }
            let answered = retiring
                .answered
                .iter()
                .zip(&self.connected)
                .all(|(&answered, &connected)| answered || !connected);
            if answered {
                if objects.settled {
                    self.exit(ExitReason::Retired);
                } else {
                    self.actions.push_back(Action::FinishObjects);
                }
            }
            return;
        }
        if objects.live > 0 {
            self.quiet_since = now;
            return;
        }
        let quiet = now.saturating_duration_since(self.quiet_since) >= self.idle_exit;
        if quiet && self.exit.is_none() && self.connected.iter().any(|&c| c) {
            self.exit = Some(vec![false; self.connected.len()]);
            for edge in 0..self.connected.len() as u16 {
                self.actions.push_back(Action::Send(edge, Signal::IdleExit));
            }
        }
    }

    /// Takes back an `IdleExit`: something arrived.
    fn stay_up(&mut self, now: Instant) {
        self.quiet_since = now;
        if let Some(answers) = self.exit.take() {
            for (edge, _) in answers.iter().enumerate().filter(|(_, &a)| a) {
                self.actions
                    .push_back(Action::Send(edge as u16, Signal::StayUp));
            }
        }
    }

    fn check_exit_agreed(&mut self) {
        let agreed = self.exit.as_ref().is_some_and(|answers| {
            answers
                .iter()
                .zip(&self.connected)
                .all(|(&answered, &connected)| answered || !connected)
        });
        if agreed {
            self.exit(ExitReason::Idle);
        }
    }

    fn exit(&mut self, reason: ExitReason) {
        if !self.exited {
            self.exited = true;
            self.actions.push_back(Action::Exit(reason));
        }
    }
}

/// One edge's tie to a live object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The edge's number for the object.
    pub(crate) object: u32,
    /// The edge agreed to an eviction; it activates again before its next
    /// event. Broadcasts still reach its sockets meanwhile.
    pub(crate) evicted: bool,
    /// Events from this edge handled since its `Activate`.
    pub(crate) handled: u64,
}

/// One live object's ties to the edges.
#[derive(Debug)]
pub(crate) struct ObjectTies {
    ties: Vec<Option<Binding>>,
    /// Edges asked to bind (`Gather`) that have not answered yet.
    gathering: Vec<bool>,
}

impl ObjectTies {
    /// An object tied to no edge of a node with `edges` edges.
    pub(crate) fn new(edges: u16) -> ObjectTies {
        ObjectTies {
            ties: vec![None; usize::from(edges)],
            gathering: vec![false; usize::from(edges)],
        }
    }

    /// The object wakes from `woken_by`: every other connected edge must
    /// tell its number for the object (its `Activate`) before the object's
    /// first event runs, so that questions and broadcasts reach it. Returns the
    /// edges to send `Gather` to.
    pub(crate) fn gather(&mut self, woken_by: u16, connected: impl Fn(u16) -> bool) -> Vec<u16> {
        let mut asked = Vec::new();
        for (edge, pending) in self.gathering.iter_mut().enumerate() {
            let edge = edge as u16;
            *pending = edge != woken_by && connected(edge);
            if *pending {
                asked.push(edge);
            }
        }
        asked
    }

    /// Whether some edge has yet to answer the gather.
    pub(crate) fn is_gathering(&self) -> bool {
        self.gathering.iter().any(|&p| p)
    }

    /// An edge's `Activate`: a fresh tie (it counts its events from 0, and
    /// has not agreed to an eviction).
    pub(crate) fn handle_activate(&mut self, edge: u16, object: u32) {
        if let Some(tie) = self.ties.get_mut(usize::from(edge)) {
            *tie = Some(Binding {
                object,
                evicted: false,
                handled: 0,
            });
        }
    }

    /// The edge answered the gather; true if that ends it.
    pub(crate) fn handle_listed(&mut self, edge: u16) -> bool {
        let Some(pending) = self.gathering.get_mut(usize::from(edge)) else {
            return false;
        };
        std::mem::take(pending) && !self.is_gathering()
    }

    /// One more event from `edge` was handled.
    pub(crate) fn handle_handled(&mut self, edge: u16) {
        if let Some(Some(tie)) = self.ties.get_mut(usize::from(edge)) {
            tie.handled += 1;
        }
    }

    /// The object was idle for `hibernate_after`: the edges to send `Idle`
    /// (with their number for it and its events handled from them).
    pub(crate) fn to_ask(&self) -> Vec<(u16, Binding)> {
        self.tied()
            .into_iter()
            .filter(|(_, b)| !b.evicted)
            .collect()
    }

    /// The edge agreed to evict the object; true once every tied edge has:
    /// none has an event in flight, and the instance may go.
    pub(crate) fn handle_evict(&mut self, edge: u16) -> bool {
        match self.ties.get_mut(usize::from(edge)) {
            Some(Some(tie)) => tie.evicted = true,
            _ => return false,
        }
        self.tied().iter().all(|(_, b)| b.evicted)
    }

    /// The edge went away: no tie, nothing to wait for from it. True if
    /// it was tied and every edge still tied had agreed to evict.
    pub(crate) fn handle_edge_lost(&mut self, edge: u16) -> bool {
        self.handle_listed(edge);
        let was_tied = self
            .ties
            .get_mut(usize::from(edge))
            .and_then(Option::take)
            .is_some();
        let tied = self.tied();
        was_tied && !tied.is_empty() && tied.iter().all(|(_, b)| b.evicted)
    }

    /// The edge's tie, if it holds the object.
    pub(crate) fn tie(&self, edge: u16) -> Option<Binding> {
        self.ties.get(usize::from(edge)).copied().flatten()
    }

    /// Tied edges and their ties.
    pub(crate) fn tied(&self) -> Vec<(u16, Binding)> {
        self.ties
            .iter()
            .enumerate()
            .filter_map(|(edge, b)| b.map(|b| (edge as u16, b)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE_EXIT: Duration = Duration::from_secs(60);
    const GRACE: Duration = Duration::from_secs(35);

    fn drain(life: &mut WorkerLife) -> Vec<Action> {
        std::iter::from_fn(|| life.poll_action()).collect()
    }

    fn connected(now: Instant, edges: u16) -> WorkerLife {
        let mut life = WorkerLife::new(now, edges, IDLE_EXIT, GRACE);
        for edge in 0..edges {
            life.handle_edge_up(now, edge);
        }
        drain(&mut life);
        life
    }

    const EMPTY: Objects = Objects {
        live: 0,
        settled: true,
    };
    const BUSY: Objects = Objects {
        live: 1,
        settled: false,
    };

    #[test]
    fn ready_is_announced_once_every_edge_is_connected_and_only_once() {
        let t0 = Instant::now();
        let mut life = WorkerLife::new(t0, 2, IDLE_EXIT, GRACE);
        life.handle_edge_up(t0, 0);
        assert_eq!(drain(&mut life), vec![]);
        life.handle_edge_up(t0, 1);
        assert_eq!(drain(&mut life), vec![Action::AnnounceReady]);
        life.handle_edge_down(t0, 1);
        life.handle_edge_up(t0, 1);
        assert_eq!(drain(&mut life), vec![]);
    }

    #[test]
    fn an_idle_worker_asks_every_edge_and_exits_when_the_connected_ones_agree() {
        let t0 = Instant::now();
        let mut life = connected(t0, 3);
        life.handle_timeout(t0 + IDLE_EXIT / 2, EMPTY);
        assert_eq!(drain(&mut life), vec![], "asked before idle_exit");
        life.handle_timeout(t0 + IDLE_EXIT, EMPTY);
        let asked: Vec<Action> = (0..3).map(|e| Action::Send(e, Signal::IdleExit)).collect();
        assert_eq!(drain(&mut life), asked);
        life.handle_shutdown(0);
        life.handle_edge_down(t0 + IDLE_EXIT, 2);
        assert_eq!(drain(&mut life), vec![], "edge 1 has not agreed");
        life.handle_shutdown(1);
        assert_eq!(drain(&mut life), vec![Action::Exit(ExitReason::Idle)]);
    }

    #[test]
    fn activity_takes_the_request_back_from_the_edges_that_agreed() {
        let t0 = Instant::now();
        let mut life = connected(t0, 2);
        life.handle_timeout(t0 + IDLE_EXIT, EMPTY);
        drain(&mut life);
        life.handle_shutdown(1);
        let t1 = t0 + IDLE_EXIT + Duration::from_millis(5);
        life.handle_activity(t1);
        assert_eq!(drain(&mut life), vec![Action::Send(1, Signal::StayUp)]);
        // Edge 0's Shutdown crossed the StayUp: it is told to stay up too.
        life.handle_shutdown(0);
        assert_eq!(drain(&mut life), vec![Action::Send(0, Signal::StayUp)]);
        // Quiet again only a whole idle_exit after the activity.
        life.handle_timeout(t1 + IDLE_EXIT / 2, EMPTY);
        assert_eq!(drain(&mut life), vec![]);
        life.handle_timeout(t1 + IDLE_EXIT, EMPTY);
        assert_eq!(drain(&mut life).len(), 2);
    }

    #[test]
    fn live_objects_keep_a_worker_up() {
        let t0 = Instant::now();
        let mut life = connected(t0, 1);
        life.handle_timeout(t0 + IDLE_EXIT * 2, BUSY);
        assert_eq!(drain(&mut life), vec![]);
        // Idle is counted from when the last object went.
        let t1 = t0 + IDLE_EXIT * 2 + Duration::from_secs(1);
        life.handle_timeout(t1, EMPTY);
        assert_eq!(drain(&mut life), vec![]);
    }

    #[test]
    fn a_retiring_worker_exits_once_every_edge_answered_and_its_objects_are_done() {
        let t0 = Instant::now();
        let mut life = connected(t0, 2);
        life.handle_retire(t0);
        let told: Vec<Action> = (0..2).map(|e| Action::Send(e, Signal::Retire)).collect();
        assert_eq!(drain(&mut life), told);
        life.handle_retired(0);
        life.handle_timeout(t0, BUSY);
        assert_eq!(drain(&mut life), vec![], "edge 1 may still send events");
        life.handle_retired(1);
        life.handle_timeout(t0, BUSY);
        assert_eq!(drain(&mut life), vec![Action::FinishObjects]);
        life.handle_timeout(t0, EMPTY);
        assert_eq!(drain(&mut life), vec![Action::Exit(ExitReason::Retired)]);
        life.handle_timeout(t0, EMPTY);
        assert_eq!(drain(&mut life), vec![], "exits once");
    }

    #[test]
    fn an_edge_that_restarts_during_retirement_is_told_and_a_lost_one_is_not_waited_for() {
        let t0 = Instant::now();
        let mut life = connected(t0, 2);
        life.handle_retire(t0);
        drain(&mut life);
        life.handle_retired(0);
        life.handle_edge_down(t0, 1);
        life.handle_timeout(t0, EMPTY);
        assert_eq!(drain(&mut life), vec![Action::Exit(ExitReason::Retired)]);

        let mut life = connected(t0, 2);
        life.handle_retire(t0);
        drain(&mut life);
        life.handle_edge_down(t0, 1);
        life.handle_edge_up(t0, 1);
        assert_eq!(drain(&mut life), vec![Action::Send(1, Signal::Retire)]);
    }

    #[test]
    fn a_retiring_worker_still_busy_after_its_grace_exits_anyway() {
        let t0 = Instant::now();
        let mut life = connected(t0, 1);
        life.handle_retire(t0);
        drain(&mut life);
        life.handle_timeout(t0 + GRACE - Duration::from_millis(1), BUSY);
        assert_eq!(drain(&mut life), vec![]);
        life.handle_timeout(t0 + GRACE, BUSY);
        assert_eq!(
            drain(&mut life),
            vec![Action::Exit(ExitReason::RetireTimedOut)]
        );
    }

    #[test]
    fn retiring_replaces_an_idle_exit_under_way_and_never_asks_to_exit() {
        let t0 = Instant::now();
        let mut life = connected(t0, 2);
        life.handle_timeout(t0 + IDLE_EXIT, EMPTY);
        drain(&mut life);
        life.handle_shutdown(0);
        life.handle_retire(t0 + IDLE_EXIT);
        assert_eq!(
            drain(&mut life),
            vec![
                Action::Send(0, Signal::StayUp),
                Action::Send(0, Signal::Retire),
                Action::Send(1, Signal::Retire)
            ],
            "edge 0 holds everything for an exit until told to stay up"
        );
        life.handle_shutdown(1);
        assert_eq!(
            drain(&mut life),
            vec![Action::Send(1, Signal::StayUp)],
            "a Shutdown for the dropped idle exit"
        );
        life.handle_timeout(t0 + IDLE_EXIT * 3, BUSY);
        assert!(!drain(&mut life).contains(&Action::Send(0, Signal::IdleExit)));
    }

    #[test]
    fn a_worker_without_any_edge_for_long_is_orphaned() {
        let t0 = Instant::now();
        let mut life = connected(t0, 1);
        life.handle_edge_down(t0, 0);
        life.handle_timeout(t0 + ORPHAN_AFTER, BUSY);
        assert_eq!(drain(&mut life), vec![]);
        life.handle_timeout(t0 + ORPHAN_AFTER + Duration::from_millis(1), BUSY);
        assert_eq!(drain(&mut life), vec![Action::Exit(ExitReason::Orphaned)]);
    }

    #[test]
    fn a_wake_gathers_from_the_other_connected_edges_until_each_listed_or_went_away() {
        let mut ties = ObjectTies::new(4);
        let asked = ties.gather(0, |edge| edge != 3);
        assert_eq!(asked, vec![1, 2]);
        ties.handle_activate(0, 7);
        assert!(!ties.handle_listed(0), "the waking edge was not asked");
        assert!(ties.is_gathering());
        ties.handle_activate(1, 9);
        assert!(!ties.handle_listed(1));
        assert!(!ties.handle_edge_lost(2), "edge 2 was not tied");
        assert!(!ties.is_gathering(), "a lost edge is not waited for");
    }

    #[test]
    fn hibernation_needs_every_tied_edge_to_agree() {
        let mut ties = ObjectTies::new(3);
        ties.handle_activate(0, 1);
        ties.handle_activate(2, 5);
        ties.handle_handled(2);
        ties.handle_handled(2);
        assert_eq!(
            ties.to_ask(),
            vec![
                (
                    0,
                    Binding {
                        object: 1,
                        evicted: false,
                        handled: 0
                    }
                ),
                (
                    2,
                    Binding {
                        object: 5,
                        evicted: false,
                        handled: 2
                    }
                ),
            ]
        );
        assert!(!ties.handle_evict(0));
        assert_eq!(ties.to_ask().len(), 1, "edge 0 is not asked again");
        assert!(!ties.handle_evict(1), "edge 1 is not tied");
        assert!(ties.handle_evict(2));
    }

    #[test]
    fn an_edge_that_activates_again_takes_back_its_agreement() {
        let mut ties = ObjectTies::new(2);
        ties.handle_activate(0, 1);
        ties.handle_activate(1, 2);
        ties.handle_handled(0);
        assert!(!ties.handle_evict(0));
        ties.handle_activate(0, 1);
        assert_eq!(
            ties.tie(0).map(|b| (b.evicted, b.handled)),
            Some((false, 0))
        );
        assert!(!ties.handle_evict(1), "edge 0 has an event coming");
    }

    #[test]
    fn losing_the_last_edge_that_had_not_agreed_hibernates_the_object() {
        let mut ties = ObjectTies::new(2);
        ties.handle_activate(0, 1);
        ties.handle_activate(1, 2);
        assert!(!ties.handle_evict(0));
        assert!(ties.handle_edge_lost(1));

        // Losing the only edge leaves no one to agree: the object's task
        // ends it by itself (nothing tied, nothing to ask).
        let mut ties = ObjectTies::new(1);
        ties.handle_activate(0, 1);
        assert!(!ties.handle_edge_lost(0));
        assert!(ties.to_ask().is_empty() && ties.tied().is_empty());
    }
}
