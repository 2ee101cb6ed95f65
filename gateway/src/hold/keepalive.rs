//! The edge's keepalive, without I/O: a client that vanished without a FIN
//! (a phone that lost its network) would otherwise hold its socket, and its
//! place in every broadcast, for as long as TCP keeps it "open" — hours.
//!
//! Every `interval` the edge sweeps its sockets. One that sent anything
//! since the last sweep is fine. One that did not gets a protocol ping; one
//! that has left `max_missed` pings in a row unanswered is dead and closed
//! (1006 to its object). A dead peer is thus found within `interval ×
//! (max_missed + 1)` of its last byte. Objects never wake for it, so a
//! hibernated room costs the pings and nothing more. The sweep visits a
//! bounded chunk of slots per loop turn, so a hundred thousand sockets do
//! not stall the loop.

use std::ops::Range;
use std::time::{Duration, Instant};

/// Slots visited per loop turn.
const SWEEP_CHUNK: usize = 4096;

/// What a sweep does with one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It spoke since the last sweep.
    Fine,
    /// Quiet: send it a ping.
    Ping,
    /// Quiet through `max_missed` pings: close it.
    Dead,
}

pub(crate) struct Keepalive {
    interval: Duration,
    max_missed: u8,
    next_sweep: Instant,
    /// The next slot to visit while a sweep is under way.
    cursor: Option<usize>,
}

impl Keepalive {
    /// A keepalive sweeping every `interval` (zero: never).
    pub(crate) fn new(now: Instant, interval: Duration, max_missed: u8) -> Keepalive {
        Keepalive {
            interval,
            max_missed,
            next_sweep: now + interval,
            cursor: None,
        }
    }

    fn is_on(&self) -> bool {
        !self.interval.is_zero()
    }

    /// When the loop must run the next sweep step: at once while a sweep
    /// is under way.
    pub(crate) fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.is_on() {
            return None;
        }
        if self.cursor.is_some() {
            return Some(Duration::ZERO);
        }
        Some(self.next_sweep.saturating_duration_since(now))
    }

    /// The slots to visit now, out of `slots`; `None` when no sweep is due.
    pub(crate) fn poll_sweep(&mut self, now: Instant, slots: usize) -> Option<Range<usize>> {
        if !self.is_on() {
            return None;
        }
        let start = match self.cursor {
            Some(cursor) => cursor,
            None if now >= self.next_sweep => {
                self.next_sweep = now + self.interval;
                0
            }
            None => return None,
        };
        let end = slots.min(start + SWEEP_CHUNK);
        self.cursor = (end < slots).then_some(end);
        Some(start..end)
    }

    /// One socket's turn in a sweep: `heard` is whether it sent anything
    /// since its last turn (reset here), `missed` its unanswered pings.
    pub(crate) fn check(&self, heard: &mut bool, missed: &mut u8) -> Verdict {
        if std::mem::take(heard) {
            *missed = 0;
            return Verdict::Fine;
        }
        if *missed >= self.max_missed {
            return Verdict::Dead;
        }
        *missed += 1;
        Verdict::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(30);

    #[test]
    fn off_when_the_interval_is_zero() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0, Duration::ZERO, 2);
        assert_eq!(k.poll_timeout(t0), None);
        assert_eq!(k.poll_sweep(t0 + INTERVAL * 10, 100), None);
    }

    #[test]
    fn a_sweep_comes_every_interval_in_chunks() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(t0, INTERVAL, 2);
        assert_eq!(k.poll_timeout(t0), Some(INTERVAL));
        assert_eq!(k.poll_sweep(t0 + INTERVAL / 2, 10_000), None);
        let t1 = t0 + INTERVAL;
        assert_eq!(k.poll_sweep(t1, 10_000), Some(0..4096));
        assert_eq!(
            k.poll_timeout(t1),
            Some(Duration::ZERO),
            "a sweep under way"
        );
        assert_eq!(k.poll_sweep(t1, 10_000), Some(4096..8192));
        assert_eq!(k.poll_sweep(t1, 10_000), Some(8192..10_000));
        assert_eq!(k.poll_sweep(t1, 10_000), None, "done until the next one");
        assert_eq!(k.poll_timeout(t1), Some(INTERVAL));
        assert_eq!(k.poll_sweep(t1 + INTERVAL, 10), Some(0..10));
    }

    #[test]
    fn a_quiet_socket_is_pinged_and_dead_after_its_missed_pings() {
        let k = Keepalive::new(Instant::now(), INTERVAL, 2);
        let (mut heard, mut missed) = (true, 0);
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Fine);
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Ping);
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Ping);
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Dead);
    }

    #[test]
    fn an_answer_starts_the_count_again() {
        let k = Keepalive::new(Instant::now(), INTERVAL, 2);
        let (mut heard, mut missed) = (false, 0);
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Ping);
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Ping);
        heard = true; // the pong
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Fine);
        assert_eq!(missed, 0);
        assert_eq!(k.check(&mut heard, &mut missed), Verdict::Ping);
    }
}
