//! Handing memory freed after a burst of connections back to the kernel.
//!
//! Every upgrade allocates handshake buffers in the front door that are
//! freed once the socket moves to the hold loop. glibc keeps those pages in
//! its arenas (it only returns the top of a heap by itself), so after
//! 15,000 upgrades an edge holds about 250 bytes per connection it no longer
//! uses: a tenth of what an idle socket with a 2 KB attachment costs.
//! `malloc_trim(0)` also releases whole free pages inside the arenas.
//! Workers call the same function after their objects hibernate (the rule
//! is `torpor_objects`' `memory` module).

use std::time::{Duration, Instant};

/// Sockets opened and closed since the last trim before one is worth it.
const CHURN_WORTH_A_TRIM: u64 = 1024;
/// Under this many opens and closes in a tick, a burst has ended.
const QUIET_TICK: u64 = 64;
/// With steady churn, trim at most this often.
const STEADY_INTERVAL: Duration = Duration::from_secs(60);

/// Decides when to trim: after a burst, once it has gone quiet, or now and
/// then under steady churn.
pub(crate) struct Trimmer {
    churn_since_trim: u64,
    churn_this_tick: u64,
    last_trim: Instant,
}

impl Trimmer {
    pub(crate) fn new(now: Instant) -> Trimmer {
        Trimmer {
            churn_since_trim: 0,
            churn_this_tick: 0,
            last_trim: now,
        }
    }

    /// A socket was opened or closed.
    pub(crate) fn churned(&mut self) {
        self.churn_since_trim += 1;
        self.churn_this_tick += 1;
    }

    /// Called about once a second; true when the caller should trim now.
    pub(crate) fn tick(&mut self, now: Instant) -> bool {
        let quiet = self.churn_this_tick < QUIET_TICK;
        self.churn_this_tick = 0;
        let due = self.churn_since_trim >= CHURN_WORTH_A_TRIM
            && (quiet || now.duration_since(self.last_trim) >= STEADY_INTERVAL);
        if due {
            self.churn_since_trim = 0;
            self.last_trim = now;
        }
        due
    }
}

/// Returns free heap pages to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub(crate) fn release_free_memory() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::os::raw::c_int;
    }
    // SAFETY: malloc_trim takes no pointer and locks each arena itself
    // (glibc documents it MT-Safe); it only frees pages nothing uses.
    unsafe {
        malloc_trim(0);
    }
}

/// Other allocators return memory by their own rules.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_trimmed_once_it_goes_quiet() {
        let start = Instant::now();
        let mut trimmer = Trimmer::new(start);
        for _ in 0..5000 {
            trimmer.churned();
        }
        assert!(!trimmer.tick(start + Duration::from_secs(1)), "mid-burst");
        assert!(trimmer.tick(start + Duration::from_secs(2)), "quiet after");
        assert!(!trimmer.tick(start + Duration::from_secs(3)), "nothing new");
    }

    #[test]
    fn a_little_churn_is_not_worth_a_trim() {
        let start = Instant::now();
        let mut trimmer = Trimmer::new(start);
        for second in 1..=120 {
            trimmer.churned();
            assert!(!trimmer.tick(start + Duration::from_secs(second)));
        }
    }

    #[test]
    fn steady_churn_is_trimmed_every_minute() {
        let start = Instant::now();
        let mut trimmer = Trimmer::new(start);
        let mut trims = Vec::new();
        for second in 1..=130 {
            for _ in 0..500 {
                trimmer.churned();
            }
            if trimmer.tick(start + Duration::from_secs(second)) {
                trims.push(second);
            }
        }
        assert_eq!(trims, [60, 120]);
    }

    #[test]
    fn trimming_is_safe_to_call_any_time() {
        let freed: Vec<Vec<u8>> = (0..1000).map(|_| vec![1; 4096]).collect();
        drop(freed);
        release_free_memory();
        release_free_memory();
    }
}
