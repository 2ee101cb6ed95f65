//! Percentiles of a few hundred to a few thousand latency samples, computed
//! exactly from the sorted samples (nearest rank). At these counts a
//! histogram (hdrhistogram) would only add a dependency and rounding.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// A summary of samples, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// `None` when there are no samples.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let total: Duration = sorted.iter().sum();
        Some(Summary {
            count: sorted.len(),
            min_ms: ms(*sorted.first()?),
            p50_ms: ms(percentile(&sorted, 50.0)?),
            p90_ms: ms(percentile(&sorted, 90.0)?),
            p99_ms: ms(percentile(&sorted, 99.0)?),
            max_ms: ms(*sorted.last()?),
            mean_ms: ms(total) / sorted.len() as f64,
        })
    }
}

/// Nearest-rank percentile of sorted samples: the smallest sample with at
/// least `p` percent of the samples at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (min {:.2}, mean {:.2})",
            self.count,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.max_ms,
            self.min_ms,
            self.mean_ms
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
    fn nearest_rank_percentiles() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&sorted, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&ms(&[7]), 99.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_its_input() {
        let s = Summary::of(&ms(&[30, 10, 20])).unwrap();
        assert_eq!(
            (s.count, s.min_ms, s.p50_ms, s.max_ms),
            (3, 10.0, 20.0, 30.0)
        );
        assert_eq!(s.mean_ms, 20.0);
        assert!(Summary::of(&[]).is_none());
    }
}
