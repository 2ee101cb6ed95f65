//! Latencies: recorded into an HdrHistogram (microsecond resolution, three
//! significant digits, so p99.9 and max are within 0.1 % whatever the count),
//! summarised as percentiles, and carried between processes and into the JSON
//! as the histogram's non-empty buckets.
//!
//! Not a timer: callers measure, this only keeps the numbers.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency kept apart from the rest: an hour, in µs. Anything
/// longer is recorded as an hour (saturating), which no run here reaches.
const HIGHEST_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram of latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Recorder(Histogram<u64>);

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder(
            Histogram::new_with_bounds(1, HIGHEST_US, SIGNIFICANT_DIGITS)
                .expect("constant bounds 1..1h at 3 digits are valid"),
        )
    }

    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us);
    }

    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us);
    }

    pub fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot fail; a saturating
        // re-record keeps it infallible without an expect.
        for (value, count) in other.buckets() {
            self.0.saturating_record_n(value, count);
        }
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The non-empty buckets as `[value µs, count]`, the value being the
    /// highest one the bucket stands for. Recording these again gives the same
    /// histogram, which is how children send theirs and the JSON keeps them.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.0
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect()
    }

    pub fn to_wire(&self) -> Vec<[u64; 2]> {
        self.buckets().into_iter().map(|(v, c)| [v, c]).collect()
    }

    pub fn from_wire(buckets: &[[u64; 2]]) -> Recorder {
        let mut recorder = Recorder::new();
        for [value, count] in buckets {
            recorder.0.saturating_record_n(*value, *count);
        }
        recorder
    }

    /// `None` when nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let at = |q: f64| ms(self.0.value_at_quantile(q));
        Some(Summary {
            count: self.0.len(),
            min_ms: ms(self.0.min()),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: ms(self.0.max()),
        })
    }

    /// The summary with the buckets, as the report keeps it.
    pub fn latency(&self) -> Option<Latency> {
        Some(Latency {
            summary: self.summary()?,
            buckets: self.to_wire(),
        })
    }
}

/// Percentiles of one set of latencies, in milliseconds (microsecond
/// resolution).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
impl Summary {
    /// The summary of a list of samples; `None` when it is empty.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut recorder = Recorder::new();
        for sample in samples {
            recorder.record(*sample);
        }
        recorder.summary()
    }
}

/// A summary and the histogram behind it (for the report's charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub summary: Summary,
    /// `[value µs, count]` for each non-empty bucket, ascending.
    pub buckets: Vec<[u64; 2]>,
}

/// A latency for people: µs below a millisecond, ms below ten seconds.
pub fn human_ms(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 100.0 {
        format!("{ms:.2} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1000.0)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50 {}, p90 {}, p99 {}, p99.9 {}, max {} (min {}, mean {})",
            self.count,
            human_ms(self.p50_ms),
            human_ms(self.p90_ms),
            human_ms(self.p99_ms),
            human_ms(self.p999_ms),
            human_ms(self.max_ms),
            human_ms(self.min_ms),
            human_ms(self.mean_ms)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_ms() {
        let s = Summary::of(&ms(&(1..=100).collect::<Vec<_>>())).unwrap();
        assert_eq!(s.count, 100);
        // Three significant digits: a bucket holds 50 ms within 0.1 %.
        assert!((s.p50_ms - 50.0).abs() <= 0.05, "{s:?}");
        assert!((s.p90_ms - 90.0).abs() <= 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() <= 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() <= 0.1, "{s:?}");
        assert!((s.min_ms - 1.0).abs() <= 0.001, "{s:?}");
        assert!((s.mean_ms - 50.5).abs() <= 0.1, "{s:?}");
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn p999_and_max_see_a_single_outlier() {
        let mut r = Recorder::new();
        for _ in 0..9_999 {
            r.record(Duration::from_micros(40));
        }
        r.record(Duration::from_millis(250));
        let s = r.summary().unwrap();
        assert_eq!(s.p50_ms, 0.040);
        assert_eq!(s.p999_ms, 0.040);
        assert!((s.max_ms - 250.0).abs() < 0.25, "{s:?}");
    }

    #[test]
    fn wire_buckets_round_trip_and_merge() {
        let mut a = Recorder::new();
        for us in [3, 3, 70, 1_500, 2_000_000] {
            a.record_us(us);
        }
        let wire = a.to_wire();
        assert_eq!(wire.iter().map(|[_, c]| c).sum::<u64>(), 5);
        assert_eq!(wire[0], [3, 2]);
        let back = Recorder::from_wire(&wire);
        assert_eq!(back.summary(), a.summary());
        let mut merged = Recorder::new();
        merged.merge(&a);
        merged.merge(&back);
        assert_eq!(merged.count(), 10);
        assert_eq!(
            merged.summary().unwrap().max_ms,
            a.summary().unwrap().max_ms
        );
    }

    #[test]
    fn zero_and_huge_latencies_are_kept() {
        let mut r = Recorder::new();
        r.record(Duration::ZERO);
        r.record(Duration::from_secs(10 * 3600));
        let s = r.summary().unwrap();
        assert_eq!(s.min_ms, 0.0);
        assert!(s.max_ms >= 3_600_000.0 * 0.999, "{s:?}");
    }

    #[test]
    fn human_units_follow_the_size() {
        assert_eq!(human_ms(0.042), "42 µs");
        assert_eq!(human_ms(1.5), "1.50 ms");
        assert_eq!(human_ms(250.0), "250 ms");
        assert_eq!(human_ms(12_345.0), "12.3 s");
    }

    #[test]
    fn display_lists_every_percentile() {
        let s = Summary::of(&ms(&[1, 2, 3])).unwrap().to_string();
        for part in ["n=3", "p50", "p90", "p99 ", "p99.9", "max"] {
            assert!(s.contains(part), "{s}");
        }
    }
}
