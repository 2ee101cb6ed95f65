//! The result of one `loadtest idle` run: the numbers, their derived figures
//! (bytes per connection), a human rendering for stdout and the JSON file that
//! goes into BENCHMARKS.md. No measuring happens here.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Serialize;

/// Everything measured in one idle run. Sizes are bytes, times seconds.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub scenario: &'static str,
    pub url: String,
    pub connections_requested: u64,
    pub connections_opened: u64,
    pub connections_failed: u64,
    /// Failure reasons as the clients saw them, with counts.
    pub failures: BTreeMap<String, u64>,
    /// Attempts repeated after a transient failure (refused, reset, timeout).
    pub connect_retries: u64,
    pub rooms: u32,
    pub attach_bytes: usize,
    pub processes: u32,
    pub edge_pid: u32,
    pub edge_rss_before_bytes: u64,
    /// The median of `edge_rss_after_samples_bytes`.
    pub edge_rss_after_bytes: u64,
    pub edge_rss_after_samples_bytes: Vec<u64>,
    /// Sampled once more when the hold ends, to show the figure is stable.
    pub edge_rss_end_of_hold_bytes: u64,
    /// May be negative if the server returned memory to the OS meanwhile.
    pub edge_rss_growth_bytes: i64,
    pub bytes_per_connection: f64,
    pub bytes_per_connection_beyond_attachment: f64,
    pub open_seconds: f64,
    pub connections_per_second: f64,
    pub hold_seconds: f64,
    /// The sum of the `connections` the admin API reports over all rooms,
    /// `None` if it could not be read (an independent check of `opened`).
    pub server_connections: Option<u64>,
    /// The load generator's own RSS over all client processes, to show it
    /// stayed lean.
    pub client_rss_bytes: u64,
}

impl IdleReport {
    /// Fills in the derived figures from the measured ones.
    pub fn derive(mut self) -> IdleReport {
        // i128 holds any difference of two u64s; RSS is far below i64 anyway.
        let growth = i128::from(self.edge_rss_after_bytes) - i128::from(self.edge_rss_before_bytes);
        self.edge_rss_growth_bytes = i64::try_from(growth).unwrap_or(i64::MAX);
        let opened = self.connections_opened;
        self.bytes_per_connection = if opened == 0 {
            0.0
        } else {
            self.edge_rss_growth_bytes as f64 / opened as f64
        };
        self.bytes_per_connection_beyond_attachment =
            self.bytes_per_connection - self.attach_bytes as f64;
        self.connections_per_second = if self.open_seconds > 0.0 {
            opened as f64 / self.open_seconds
        } else {
            0.0
        };
        self
    }

    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|e| format!("cannot serialize report: {e}"))?;
        json.push('\n');
        std::fs::write(path, json).map_err(|e| format!("write {}: {e}", path.display()))
    }
}

/// Bytes as MiB, for the human lines.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl fmt::Display for IdleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "idle connections against {}", self.url)?;
        writeln!(
            f,
            "  connections   {} requested, {} opened, {} failed ({} rooms, {} processes)",
            self.connections_requested,
            self.connections_opened,
            self.connections_failed,
            self.rooms,
            self.processes
        )?;
        for (reason, count) in &self.failures {
            writeln!(f, "    {count:>8} x {reason}")?;
        }
        if self.connect_retries > 0 {
            writeln!(f, "  retries       {}", self.connect_retries)?;
        }
        match self.server_connections {
            Some(n) => writeln!(f, "  server says   {n} connections over all rooms")?,
            None => writeln!(f, "  server says   (admin object counts unavailable)")?,
        }
        writeln!(f, "  attachment    {} bytes", self.attach_bytes)?;
        writeln!(f, "  edge pid      {}", self.edge_pid)?;
        writeln!(
            f,
            "  edge rss      before {:.1} MiB, after {:.1} MiB (median of {}), end of hold {:.1} MiB",
            mib(self.edge_rss_before_bytes),
            mib(self.edge_rss_after_bytes),
            self.edge_rss_after_samples_bytes.len(),
            mib(self.edge_rss_end_of_hold_bytes)
        )?;
        writeln!(
            f,
            "  growth        {} bytes = {:.0} bytes per connection, {:.0} beyond the attachment",
            self.edge_rss_growth_bytes,
            self.bytes_per_connection,
            self.bytes_per_connection_beyond_attachment
        )?;
        writeln!(
            f,
            "  open          {:.2} s, {:.0} connections/s; held {:.1} s",
            self.open_seconds, self.connections_per_second, self.hold_seconds
        )?;
        write!(
            f,
            "  client rss    {:.1} MiB over all processes",
            mib(self.client_rss_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IdleReport {
        IdleReport {
            scenario: "idle",
            url: "ws://127.0.0.1:8787".into(),
            connections_requested: 1000,
            connections_opened: 1000,
            connections_failed: 0,
            failures: BTreeMap::new(),
            connect_retries: 0,
            rooms: 10,
            attach_bytes: 2000,
            processes: 2,
            edge_pid: 42,
            edge_rss_before_bytes: 10_000_000,
            edge_rss_after_bytes: 13_000_000,
            edge_rss_after_samples_bytes: vec![13_000_000; 3],
            edge_rss_end_of_hold_bytes: 13_000_000,
            edge_rss_growth_bytes: 0,
            bytes_per_connection: 0.0,
            bytes_per_connection_beyond_attachment: 0.0,
            open_seconds: 0.5,
            connections_per_second: 0.0,
            hold_seconds: 10.0,
            server_connections: Some(1000),
            client_rss_bytes: 8_000_000,
        }
    }

    #[test]
    fn derived_figures_divide_growth_by_opened() {
        let r = sample().derive();
        assert_eq!(r.edge_rss_growth_bytes, 3_000_000);
        assert_eq!(r.bytes_per_connection, 3000.0);
        assert_eq!(r.bytes_per_connection_beyond_attachment, 1000.0);
        assert_eq!(r.connections_per_second, 2000.0);
    }

    #[test]
    fn shrinking_rss_gives_negative_growth_and_none_opened_gives_zero() {
        let mut r = sample();
        r.edge_rss_after_bytes = 9_000_000;
        assert_eq!(r.derive().edge_rss_growth_bytes, -1_000_000);
        let mut r = sample();
        r.connections_opened = 0;
        let r = r.derive();
        assert_eq!(
            (r.bytes_per_connection, r.connections_per_second),
            (0.0, 0.0)
        );
    }
}
