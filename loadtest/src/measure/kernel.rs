//! The kernel's memory for sockets, machine-wide: the TCP line of
//! `/proc/net/sockstat` (`mem` is socket buffer memory in pages) and the
//! `Slab:` line of `/proc/meminfo` (where socket structures, epoll items and
//! the like live). On loopback both ends of every connection are on this
//! machine, so a difference divided by connections is the cost of one
//! connection's two sockets together. `MemAvailable` is read beside them:
//! its drop is what the machine as a whole gave up (the kernel's share, the
//! server's and the load generator's together).

use serde::{Deserialize, Serialize};

/// `mem` in sockstat counts pages; the page size on the machines this runs
/// on is 4 KiB (reading it would need libc's sysconf).
pub const PAGE_BYTES: u64 = 4096;

/// One reading of the kernel's socket memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KernelMemory {
    /// TCP sockets in use (`inuse`), both ends of loopback connections.
    pub tcp_sockets: u64,
    /// TCP socket buffer memory, bytes (`mem` pages × 4096).
    pub tcp_mem_bytes: u64,
    /// Slab memory, bytes.
    pub slab_bytes: u64,
    /// Of it, what cannot be reclaimed (`SUnreclaim`), bytes.
    pub slab_unreclaimable_bytes: u64,
    /// `MemAvailable`, bytes.
    pub available_bytes: u64,
}

pub fn read() -> Result<KernelMemory, String> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat")
        .map_err(|e| format!("read /proc/net/sockstat: {e}"))?;
    let meminfo =
        std::fs::read_to_string("/proc/meminfo").map_err(|e| format!("read /proc/meminfo: {e}"))?;
    let (tcp_sockets, pages) = parse_sockstat_tcp(&sockstat)
        .ok_or_else(|| format!("/proc/net/sockstat has no readable TCP line: {sockstat}"))?;
    let slab_bytes = parse_slab(&meminfo)
        .ok_or_else(|| "/proc/meminfo has no readable Slab line".to_string())?;
    Ok(KernelMemory {
        tcp_sockets,
        tcp_mem_bytes: pages * PAGE_BYTES,
        slab_bytes,
        // Older kernels lack these; 0 then, and the figures from them are left out.
        slab_unreclaimable_bytes: parse_kib(&meminfo, "SUnreclaim:").unwrap_or(0),
        available_bytes: parse_kib(&meminfo, "MemAvailable:").unwrap_or(0),
    })
}

/// `TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 3` → `(inuse, mem pages)`.
pub fn parse_sockstat_tcp(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line["TCP:".len()..].split_whitespace().collect();
    let value = |key: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == key)?;
        words.get(at + 1)?.parse().ok()
    };
    Some((value("inuse")?, value("mem")?))
}

/// `Slab:  282372 kB` → bytes.
pub fn parse_slab(meminfo: &str) -> Option<u64> {
    parse_kib(meminfo, "Slab:")
}

/// The line of `/proc/meminfo` starting `key` (`Slab:`), `… kB` → bytes.
fn parse_kib(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(key))?;
    let mut words = line[key.len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next()? {
        "kB" => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockstat_tcp_line_is_read() {
        let text = "sockets: used 12\nTCP: inuse 200012 orphan 0 tw 3 alloc 200020 mem 45\n\
                    UDP: inuse 0 mem 7\n";
        assert_eq!(parse_sockstat_tcp(text), Some((200_012, 45)));
        assert_eq!(parse_sockstat_tcp("UDP: inuse 0 mem 7\n"), None);
        assert_eq!(parse_sockstat_tcp("TCP: inuse x mem 1\n"), None);
    }

    #[test]
    fn slab_is_read_in_bytes() {
        let meminfo =
            "MemTotal:       24684000 kB\nSlab:             282372 kB\nSReclaimable:  1 kB\n";
        assert_eq!(parse_slab(meminfo), Some(282_372 * 1024));
        assert_eq!(parse_slab("Slab: 12 MB\n"), None);
        assert_eq!(parse_slab("MemTotal: 1 kB\n"), None);
        let meminfo = "MemAvailable:   20000000 kB\nSUnreclaim:  300 kB\n";
        assert_eq!(parse_kib(meminfo, "MemAvailable:"), Some(20_000_000 * 1024));
        assert_eq!(parse_kib(meminfo, "SUnreclaim:"), Some(300 * 1024));
    }

    #[test]
    fn this_machine_can_be_read() {
        let now = read().unwrap();
        assert!(now.slab_bytes > 0);
        assert!(now.available_bytes > 0);
    }
}
