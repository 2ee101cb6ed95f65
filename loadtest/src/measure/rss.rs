//! Reads what the load test measures and guards from `/proc`: a process's
//! resident set size (`VmRSS` in `/proc/<pid>/status`) and this process's
//! open-files limit (`/proc/self/limits`). Reading files keeps this free of
//! `unsafe` libc calls; it is Linux-only, as the whole load test is.

/// The resident set size of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    parse_vm_rss(&status).ok_or_else(|| format!("{path} has no VmRSS line (pid {pid} a zombie?)"))
}

/// `VmRSS:    123456 kB` → bytes. `None` if the line is missing or malformed.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = fields.next()?.parse().ok()?;
    // The kernel always prints kB (KiB); refuse anything else rather than
    // silently mis-scale a measurement.
    match fields.next()? {
        "kB" => value.checked_mul(1024),
        _ => None,
    }
}

/// The median (the lower middle for an even count), `None` when empty.
pub fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

/// This process's soft limit on open files (`None` when unlimited).
pub fn open_files_limit() -> Result<Option<u64>, String> {
    let path = "/proc/self/limits";
    let limits = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    parse_open_files_limit(&limits)
        .ok_or_else(|| format!("{path} has no readable Max open files line"))
}

/// The soft value of the `Max open files` row of `/proc/<pid>/limits`:
/// `Some(None)` for `unlimited`, `None` if the row is missing or malformed.
pub fn parse_open_files_limit(limits: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\ttorpor\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  812344 kB\nVmHWM:\t   40960 kB\nVmRSS:\t   38912 kB\n\
        RssAnon:\t   30000 kB\nThreads:\t4\n";

    #[test]
    fn vm_rss_is_read_in_bytes() {
        assert_eq!(parse_vm_rss(STATUS), Some(38912 * 1024));
    }

    #[test]
    fn vm_rss_line_must_exist_and_be_in_kb() {
        assert_eq!(parse_vm_rss("Name:\tx\nState:\tZ (zombie)\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t 12 MB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t lots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\n"), None);
    }

    #[test]
    fn own_rss_is_readable() {
        let rss = rss_bytes(std::process::id()).unwrap();
        assert!(rss > 0);
    }

    #[test]
    fn median_picks_the_middle() {
        assert_eq!(median(&[30, 10, 20]), Some(20));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn open_files_soft_limit_is_parsed() {
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max cpu time              unlimited            unlimited            seconds   \n\
            Max open files            20000                20000                files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(Some(20000)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_open_files_limit(unlimited), Some(None));
        assert_eq!(parse_open_files_limit("Max processes 10 10\n"), None);
    }
}
