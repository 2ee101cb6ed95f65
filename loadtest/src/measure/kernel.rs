//! The kernel's memory for sockets, machine-wide: the TCP line of
//! `/proc/net/sockstat` (`mem` is socket buffer memory in pages) and the
//! `Slab:` line of `/proc/meminfo` (where socket structures, epoll items and
//! the like live). On loopback both ends of every connection are on this
//! machine, so a difference divided by connections is the cost of one
//! connection's two sockets together.

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
    let line = meminfo.lines().find(|l| l.starts_with("Slab:"))?;
    let mut words = line["Slab:".len()..].split_whitespace();
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
    }

    #[test]
    fn this_machine_can_be_read() {
        let now = read().unwrap();
        assert!(now.slab_bytes > 0);
    }
}
