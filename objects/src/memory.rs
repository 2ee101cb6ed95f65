//! When a worker hands the memory of its hibernated objects back to the
//! kernel, without I/O: the worker reports each instance it drops and asks,
//! as it goes, whether a release is due; the binary supplies the release
//! itself (glibc's `malloc_trim`, in the `torpor` crate).
//!
//! Why a worker needs this: a woken room mirrors its sockets and their
//! attachments, runs JavaScript, and reads pages of its database; all of
//! that is freed when it hibernates, but glibc keeps the freed pages in its
//! arenas, so a worker that once held a busy room stayed at that size
//! after every object slept.

use std::time::{Duration, Instant};

/// How long after the last instance was dropped before releasing: its task
/// ends and frees what it held only after the worker dropped its mailbox.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);
/// With objects still live, release at most this often: a release walks
/// every arena of the heap while the worker's events wait.
pub(crate) const LIVE_INTERVAL: Duration = Duration::from_secs(60);

/// Decides when to release: once an instance was dropped and has settled,
/// right away when none is left live, else at most every [`LIVE_INTERVAL`].
#[derive(Debug)]
pub(crate) struct MemoryReturn {
    last_drop: Option<Instant>,
    last_release: Instant,
}

impl MemoryReturn {
    pub(crate) fn new(now: Instant) -> MemoryReturn {
        MemoryReturn {
            last_drop: None,
            last_release: now,
        }
    }

    /// An instance was dropped (its object hibernated or was reset).
    pub(crate) fn dropped(&mut self, now: Instant) {
        self.last_drop = Some(now);
    }

    /// True when the caller should release now; `live` is the number of
    /// instances still live.
    pub(crate) fn due(&mut self, now: Instant, live: usize) -> bool {
        let Some(last_drop) = self.last_drop else {
            return false;
        };
        let settled = now.saturating_duration_since(last_drop) >= SETTLE;
        let allowed =
            live == 0 || now.saturating_duration_since(self.last_release) >= LIVE_INTERVAL;
        if settled && allowed {
            self.last_drop = None;
            self.last_release = now;
            return true;
        }
        false
    }

    /// The latest instant by which [`due`](Self::due) may turn true without
    /// another drop, for the worker's timer; `None` when nothing waits.
    pub(crate) fn next_check(&self, live: usize) -> Option<Instant> {
        let settled = self.last_drop? + SETTLE;
        Some(if live == 0 {
            settled
        } else {
            settled.max(self.last_release + LIVE_INTERVAL)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_dropped_nothing_released() {
        let start = Instant::now();
        let mut memory = MemoryReturn::new(start);
        assert!(!memory.due(start + Duration::from_secs(600), 0));
        assert_eq!(memory.next_check(0), None);
    }

    #[test]
    fn the_last_object_to_sleep_releases_once_it_settled() {
        let start = Instant::now();
        let mut memory = MemoryReturn::new(start);
        let drop_at = start + Duration::from_secs(5);
        memory.dropped(drop_at);
        assert!(!memory.due(drop_at, 0), "its task may still hold it");
        assert_eq!(memory.next_check(0), Some(drop_at + SETTLE));
        assert!(memory.due(drop_at + SETTLE, 0));
        assert!(!memory.due(drop_at + SETTLE * 2, 0), "once per drop");
    }

    #[test]
    fn with_objects_live_a_release_waits_for_its_interval() {
        let start = Instant::now();
        let mut memory = MemoryReturn::new(start);
        let mut released = Vec::new();
        for second in 1..=150 {
            let now = start + Duration::from_secs(second);
            memory.dropped(now);
            if memory.due(now + SETTLE, 3) {
                released.push(second);
            }
        }
        assert_eq!(released, [59, 119], "every minute, not every drop");
    }

    #[test]
    fn the_timer_points_at_the_interval_while_objects_live() {
        let start = Instant::now();
        let mut memory = MemoryReturn::new(start);
        memory.dropped(start + Duration::from_secs(1));
        assert_eq!(memory.next_check(2), Some(start + LIVE_INTERVAL));
        assert!(!memory.due(start + Duration::from_secs(30), 2));
        assert!(memory.due(start + LIVE_INTERVAL, 2));
    }
}
