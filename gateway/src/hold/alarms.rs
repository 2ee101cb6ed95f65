//! The node's alarm schedule, without I/O: which object's alarm is due, the
//! retry backoff after a failed handler, and what must be persisted. The
//! hold loop feeds it `now` and carries its answers out, so every rule here
//! is checked with a controllable clock.
//!
//! It is an index, not the truth: each object's alarm is the row in its own
//! database, written in the event's transaction. The schedule hears of it
//! before the commit (`intend`: check it by then), after the commit
//! (`set`), again whenever the object's storage opens for
//! a new instance (`sync`, which repairs a change that never arrived), and
//! from every alarm event, which the worker checks against the row before
//! running the handler and answers with what the row holds (`done`). So an
//! alarm the schedule has and the row has not costs a wake and no handler,
//! and one the row has and the schedule lost comes back at the next wake.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Retries after a failed alarm handler before the alarm is dropped.
pub(crate) const MAX_RETRIES: u32 = 6;

/// Delay before retry `retry_count` (1-based): 2 s, 4 s, 8 s, … 64 s.
pub(crate) fn retry_delay(retry_count: u32) -> Duration {
    Duration::from_secs(2u64 << retry_count.saturating_sub(1).min(30))
}

/// Whether attempt `retry_count` is the last: if its handler fails too, the
/// alarm is deleted, from the object's row as well.
pub(crate) fn is_last_attempt(retry_count: u32) -> bool {
    retry_count >= MAX_RETRIES
}

/// How an alarm event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The event committed (its handler succeeded, or it found no alarm due
    /// and ran none); the object's row now reads `at_ms`.
    Committed { at_ms: Option<u64> },
    /// The handler failed, or the worker died running it.
    Failed,
}

/// What the durable store must now hold for an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Persist {
    /// The alarm is due at `due_ms`, as attempt `retry_count`.
    Store { due_ms: u64, retry_count: u32 },
    /// No alarm.
    Remove,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Entry {
    due_ms: Option<u64>,
    retry_count: u32,
    firing: bool,
    /// The object set or deleted its alarm while one was firing: the
    /// firing one's outcome no longer decides anything.
    replaced_while_firing: bool,
}

/// Plain data, so that it moves to the next edge process at an upgrade.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct AlarmSchedule {
    due: BTreeSet<(u64, u32)>,
    entries: HashMap<u32, Entry>,
}

impl AlarmSchedule {
    /// An alarm read back from the durable store at start.
    pub(crate) fn load(&mut self, object: u32, due_ms: u64, retry_count: u32) {
        self.entries.insert(
            object,
            Entry {
                due_ms: Some(due_ms),
                retry_count,
                firing: false,
                replaced_while_firing: false,
            },
        );
        self.due.insert((due_ms, object));
    }

    /// The object set (`Some`) or deleted (`None`) its alarm.
    pub(crate) fn set(&mut self, object: u32, at_ms: Option<u64>) -> Persist {
        if let Some(old) = self.entries.get(&object).and_then(|e| e.due_ms) {
            self.due.remove(&(old, object));
        }
        let firing = self.entries.get(&object).is_some_and(|e| e.firing);
        match at_ms {
            Some(at) => {
                self.due.insert((at, object));
                self.entries.insert(
                    object,
                    Entry {
                        due_ms: Some(at),
                        retry_count: 0,
                        firing,
                        replaced_while_firing: firing,
                    },
                );
                Persist::Store {
                    due_ms: at,
                    retry_count: 0,
                }
            }
            None if firing => {
                if let Some(entry) = self.entries.get_mut(&object) {
                    entry.due_ms = None;
                    entry.replaced_while_firing = true;
                }
                Persist::Remove
            }
            None => {
                self.entries.remove(&object);
                Persist::Remove
            }
        }
    }

    /// Whether `object` has an alarm set or firing.
    pub(crate) fn has(&self, object: u32) -> bool {
        self.entries.contains_key(&object)
    }

    /// When the next alarm is due, in Unix milliseconds.
    pub(crate) fn next_due_ms(&self) -> Option<u64> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Alarms due at `now_ms`, now firing, with their attempt numbers.
    pub(crate) fn take_due(&mut self, now_ms: u64) -> Vec<(u32, u32)> {
        let mut fired = Vec::new();
        while let Some(&(at, object)) = self.due.first() {
            if at > now_ms {
                break;
            }
            self.due.pop_first();
            if let Some(entry) = self.entries.get_mut(&object) {
                entry.firing = true;
                entry.replaced_while_firing = false;
                fired.push((object, entry.retry_count));
            }
        }
        fired
    }

    /// An event of the object is about to commit an alarm at `at_ms`: the
    /// object is checked by then even if its `SetAlarm` never arrives. The
    /// check is an alarm event, which runs no handler if the commit failed
    /// after all. A firing alarm is left alone: its outcome reports the
    /// row, and its worker's death retries it, which checks the row again.
    /// Returns what to persist, if anything changed.
    pub(crate) fn intend(&mut self, object: u32, at_ms: u64) -> Option<Persist> {
        let Some(entry) = self.entries.get_mut(&object) else {
            return Some(self.set(object, Some(at_ms)));
        };
        if entry.firing || entry.due_ms.is_some_and(|due| due <= at_ms) {
            return None;
        }
        if let Some(old) = entry.due_ms.replace(at_ms) {
            self.due.remove(&(old, object));
        }
        self.due.insert((at_ms, object));
        Some(Persist::Store {
            due_ms: at_ms,
            retry_count: entry.retry_count,
        })
    }

    /// The object's storage opened for a new instance and its row reads
    /// `at_ms`. Nothing of the instance has run yet, so the row is exact:
    /// a schedule that disagrees missed a change. A firing alarm is left to
    /// its own outcome, and a pending retry to its attempt, which checks
    /// the row again. Returns what to persist, if anything changed.
    pub(crate) fn sync(&mut self, object: u32, at_ms: Option<u64>) -> Option<Persist> {
        match (self.entries.get(&object), at_ms) {
            (None, None) => None,
            (Some(entry), _) if entry.firing => None,
            (Some(entry), Some(at)) if entry.retry_count > 0 || entry.due_ms == Some(at) => None,
            _ => Some(self.set(object, at_ms)),
        }
    }

    /// The event of a firing alarm ended (or its worker died: `Failed`).
    /// Returns what to persist, if anything changed.
    pub(crate) fn done(&mut self, object: u32, outcome: Outcome, now_ms: u64) -> Option<Persist> {
        let entry = self.entries.get_mut(&object)?;
        if !entry.firing {
            return None;
        }
        entry.firing = false;
        let replaced = std::mem::take(&mut entry.replaced_while_firing);
        if let Outcome::Committed { at_ms } = outcome {
            // The row is the truth, whatever changes crossed the event.
            return Some(self.set(object, at_ms));
        }
        if replaced {
            if entry.due_ms.is_none() {
                self.entries.remove(&object);
            }
            return None;
        }
        if is_last_attempt(entry.retry_count) {
            self.entries.remove(&object);
            return Some(Persist::Remove);
        }
        entry.retry_count += 1;
        let delay = u64::try_from(retry_delay(entry.retry_count).as_millis()).unwrap_or(u64::MAX);
        let due_ms = now_ms.saturating_add(delay);
        entry.due_ms = Some(due_ms);
        self.due.insert((due_ms, object));
        Some(Persist::Store {
            due_ms,
            retry_count: entry.retry_count,
        })
    }

    /// Objects whose alarm is firing now.
    pub(crate) fn firing(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries
            .iter()
            .filter(|(_, e)| e.firing)
            .map(|(object, _)| *object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(at_ms: Option<u64>) -> Outcome {
        Outcome::Committed { at_ms }
    }

    #[test]
    fn an_alarm_fires_once_at_its_time_and_is_removed_on_success() {
        let mut s = AlarmSchedule::default();
        assert_eq!(
            s.set(7, Some(1_000)),
            Persist::Store {
                due_ms: 1_000,
                retry_count: 0
            }
        );
        assert_eq!(s.next_due_ms(), Some(1_000));
        assert!(s.take_due(999).is_empty());
        assert_eq!(s.take_due(1_000), vec![(7, 0)]);
        assert!(s.take_due(5_000).is_empty(), "fired twice");
        assert_eq!(s.done(7, ok(None), 1_010), Some(Persist::Remove));
        assert_eq!(s.next_due_ms(), None);
    }

    #[test]
    fn failures_retry_after_2_4_8_16_32_64_seconds_then_give_up() {
        let mut s = AlarmSchedule::default();
        s.set(1, Some(0));
        let mut now = 0u64;
        let mut delays = Vec::new();
        assert_eq!(s.take_due(now), vec![(1, 0)]);
        for attempt in 1..=MAX_RETRIES {
            let Some(Persist::Store {
                due_ms,
                retry_count,
            }) = s.done(1, Outcome::Failed, now)
            else {
                panic!("attempt {attempt} was not rescheduled");
            };
            assert_eq!(retry_count, attempt);
            delays.push((due_ms - now) / 1000);
            assert!(s.take_due(due_ms - 1).is_empty(), "retry fired early");
            now = due_ms;
            assert_eq!(s.take_due(now), vec![(1, attempt)]);
        }
        assert_eq!(delays, vec![2, 4, 8, 16, 32, 64]);
        assert!(is_last_attempt(MAX_RETRIES) && !is_last_attempt(MAX_RETRIES - 1));
        assert_eq!(s.done(1, Outcome::Failed, now), Some(Persist::Remove));
        assert_eq!(s.next_due_ms(), None);
    }

    #[test]
    fn setting_an_alarm_overwrites_the_last_one() {
        let mut s = AlarmSchedule::default();
        s.set(1, Some(5_000));
        s.set(1, Some(9_000));
        assert!(s.take_due(8_000).is_empty());
        assert_eq!(s.take_due(9_000), vec![(1, 0)]);
        s.set(2, Some(1));
        assert_eq!(s.set(2, None), Persist::Remove);
        assert!(s.take_due(10_000).is_empty());
    }

    #[test]
    fn an_alarm_set_by_the_firing_handler_survives_its_outcome() {
        let mut s = AlarmSchedule::default();
        s.set(3, Some(100));
        assert_eq!(s.take_due(100), vec![(3, 0)]);
        s.set(3, Some(60_100));
        assert_eq!(
            s.done(3, ok(Some(60_100)), 150),
            Some(Persist::Store {
                due_ms: 60_100,
                retry_count: 0
            }),
            "the new alarm was removed"
        );
        assert_eq!(s.next_due_ms(), Some(60_100));
        assert_eq!(s.take_due(60_100), vec![(3, 0)]);
        // Its worker dies after the commit, before it tells the outcome: the
        // alarm it set stands, and the one that fired is not retried.
        s.set(3, Some(120_000));
        assert_eq!(s.done(3, Outcome::Failed, 60_200), None);
        assert_eq!(s.next_due_ms(), Some(120_000));
    }

    #[test]
    fn alarms_loaded_from_the_store_fire_when_late() {
        let mut s = AlarmSchedule::default();
        s.load(4, 50, 2);
        assert_eq!(s.take_due(1_000_000), vec![(4, 2)]);
        assert_eq!(s.firing().collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn a_wake_schedules_an_alarm_the_schedule_never_heard_of() {
        let mut s = AlarmSchedule::default();
        assert_eq!(s.sync(5, None), None);
        assert_eq!(
            s.sync(5, Some(2_000)),
            Some(Persist::Store {
                due_ms: 2_000,
                retry_count: 0
            })
        );
        assert_eq!(s.sync(5, Some(2_000)), None, "persisted twice");
        assert_eq!(s.take_due(2_000), vec![(5, 0)]);
    }

    #[test]
    fn a_wake_corrects_a_stale_or_deleted_alarm() {
        let mut s = AlarmSchedule::default();
        s.set(5, Some(1_000));
        assert_eq!(
            s.sync(5, Some(9_000)),
            Some(Persist::Store {
                due_ms: 9_000,
                retry_count: 0
            })
        );
        assert!(s.take_due(8_999).is_empty());
        assert_eq!(s.sync(5, None), Some(Persist::Remove));
        assert_eq!(s.next_due_ms(), None);
    }

    #[test]
    fn a_wake_leaves_a_firing_alarm_and_a_pending_retry_alone() {
        let mut s = AlarmSchedule::default();
        s.set(6, Some(100));
        assert_eq!(s.take_due(100), vec![(6, 0)]);
        // The alarm event opened the storage: its row still reads 100.
        assert_eq!(s.sync(6, Some(100)), None);
        let retry = s.done(6, Outcome::Failed, 200);
        assert_eq!(
            retry,
            Some(Persist::Store {
                due_ms: 2_200,
                retry_count: 1
            })
        );
        // A wake before the retry finds the row rolled back to 100.
        assert_eq!(s.sync(6, Some(100)), None);
        assert!(s.take_due(2_199).is_empty(), "the backoff was skipped");
        assert_eq!(s.take_due(2_200), vec![(6, 1)]);
    }

    #[test]
    fn an_alarm_event_that_finds_no_alarm_due_leaves_what_the_row_holds() {
        let mut s = AlarmSchedule::default();
        s.set(8, Some(100));
        assert_eq!(s.take_due(100), vec![(8, 0)]);
        assert_eq!(
            s.done(8, ok(Some(5_000)), 110),
            Some(Persist::Store {
                due_ms: 5_000,
                retry_count: 0
            }),
            "moved later: due then"
        );
        assert_eq!(s.take_due(5_000), vec![(8, 0)]);
        assert_eq!(s.done(8, ok(None), 5_010), Some(Persist::Remove));
        assert_eq!(s.next_due_ms(), None);
    }

    #[test]
    fn an_intended_alarm_is_checked_by_its_time_without_its_set_alarm() {
        let mut s = AlarmSchedule::default();
        assert_eq!(
            s.intend(9, 3_000),
            Some(Persist::Store {
                due_ms: 3_000,
                retry_count: 0
            })
        );
        // The worker died after the commit: no SetAlarm.
        assert_eq!(s.take_due(3_000), vec![(9, 0)]);
        // Or the commit failed: the check finds no alarm in the row.
        assert_eq!(s.done(9, ok(None), 3_010), Some(Persist::Remove));
    }

    #[test]
    fn an_intent_never_delays_a_scheduled_alarm() {
        let mut s = AlarmSchedule::default();
        s.set(2, Some(1_000));
        assert_eq!(s.intend(2, 5_000), None);
        assert_eq!(s.next_due_ms(), Some(1_000));
        assert!(s.intend(2, 500).is_some());
        assert_eq!(s.take_due(500), vec![(2, 0)]);
        assert!(s.take_due(1_000).is_empty(), "checked twice");
    }

    #[test]
    fn an_intent_leaves_a_firing_alarm_to_its_outcome() {
        let mut s = AlarmSchedule::default();
        s.set(4, Some(100));
        assert_eq!(s.take_due(100), vec![(4, 0)]);
        assert_eq!(s.intend(4, 200), None);
        assert!(s.take_due(200).is_empty(), "fired while firing");
        // The handler's commit failed: retried with backoff, as before.
        assert_eq!(
            s.done(4, Outcome::Failed, 150),
            Some(Persist::Store {
                due_ms: 2_150,
                retry_count: 1
            })
        );
    }
}
