//! The node's alarm schedule, without I/O: which object's alarm is due, the
//! retry backoff after a failed handler, and what must be persisted. The
//! hold loop feeds it `now` and carries its answers out, so every rule here
//! is checked with a controllable clock.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// Retries after a failed alarm handler before the alarm is dropped.
pub(crate) const MAX_RETRIES: u32 = 6;

/// Delay before retry `retry_count` (1-based): 2 s, 4 s, 8 s, … 64 s.
pub(crate) fn retry_delay(retry_count: u32) -> Duration {
    Duration::from_secs(2u64 << retry_count.saturating_sub(1).min(30))
}

/// What the durable store must now hold for an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Persist {
    /// The alarm is due at `due_ms`, as attempt `retry_count`.
    Store { due_ms: u64, retry_count: u32 },
    /// No alarm.
    Remove,
}

#[derive(Debug)]
struct Entry {
    due_ms: Option<u64>,
    retry_count: u32,
    firing: bool,
    /// The object set or deleted its alarm while one was firing: the
    /// firing one's outcome no longer decides anything.
    replaced_while_firing: bool,
}

#[derive(Debug, Default)]
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

    /// The handler of a firing alarm finished (or its worker died: `ok`
    /// false). Returns what to persist, if anything changed.
    pub(crate) fn done(&mut self, object: u32, ok: bool, now_ms: u64) -> Option<Persist> {
        let entry = self.entries.get_mut(&object)?;
        if !entry.firing {
            return None;
        }
        entry.firing = false;
        if entry.replaced_while_firing {
            entry.replaced_while_firing = false;
            if entry.due_ms.is_none() {
                self.entries.remove(&object);
            }
            return None;
        }
        if ok || entry.retry_count >= MAX_RETRIES {
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
        assert_eq!(s.done(7, true, 1_010), Some(Persist::Remove));
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
            }) = s.done(1, false, now)
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
        assert_eq!(s.done(1, false, now), Some(Persist::Remove));
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
        assert_eq!(s.done(3, true, 150), None, "the new alarm was removed");
        assert_eq!(s.next_due_ms(), Some(60_100));
        assert_eq!(s.take_due(60_100), vec![(3, 0)]);
    }

    #[test]
    fn alarms_loaded_from_the_store_fire_when_late() {
        let mut s = AlarmSchedule::default();
        s.load(4, 50, 2);
        assert_eq!(s.take_due(1_000_000), vec![(4, 2)]);
        assert_eq!(s.firing().collect::<Vec<_>>(), vec![4]);
    }
}
