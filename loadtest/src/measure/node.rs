//! The node's processes, read from outside it: the ones `/admin/node` lists
//! (supervisor, edges, workers) and every other descendant of the
//! supervisor, so a child the admin API does not know of still counts; and
//! what they hold in memory at one moment.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::measure::rss;
use crate::wire::admin;

/// One process of the node and its resident memory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessMemory {
    /// `supervisor`, `edge`, `worker`, or `child` for one the admin API does
    /// not list.
    pub role: String,
    pub pid: u32,
    pub rss_bytes: u64,
}

/// Every process of the node now, with its role (re-read: workers come and
/// go, and a restarted edge has a new pid).
pub fn processes(admin: SocketAddr) -> Result<Vec<(&'static str, u32)>, String> {
    let node = admin::node(admin)?;
    let mut pids: Vec<(&'static str, u32)> = Vec::new();
    pids.extend(node.supervisor_pid.map(|p| ("supervisor", p)));
    pids.extend(node.edge_pids().into_iter().map(|p| ("edge", p)));
    pids.extend(node.worker_pids().into_iter().map(|p| ("worker", p)));
    if let Some(root) = node.supervisor_pid {
        // Listed processes are children of the supervisor, so this adds only
        // what the admin API leaves out.
        for pid in descendants(root, &parents()) {
            if !pids.iter().any(|(_, p)| *p == pid) {
                pids.push(("child", pid));
            }
        }
    }
    Ok(pids)
}

/// `root` and every process below it now.
pub fn tree(root: u32) -> Vec<u32> {
    let mut pids = vec![root];
    pids.extend(descendants(root, &parents()));
    pids
}

/// `(pid, parent pid)` of every process now; one that exits while being
/// read is left out.
fn parents() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, parse_ppid(&stat)?))
        })
        .collect()
}

/// Field 4 of a `/proc/<pid>/stat` line. The command name before it is in
/// parentheses and may hold spaces or parentheses itself, so fields are
/// counted from the last `)`.
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// Every process below `root` in the tree `(pid, parent)`, `root` excluded.
pub fn descendants(root: u32, parents: &[(u32, u32)]) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (pid, parent) in parents {
        children.entry(*parent).or_default().push(*pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        for child in children.get(&pid).into_iter().flatten() {
            // A pid is its own ancestor only in a table read while pids were
            // reused; the check keeps such a loop finite.
            if *child != root && !out.contains(child) {
                out.push(*child);
                todo.push(*child);
            }
        }
    }
    out
}

/// Every process of the node now and its RSS. A process that exits between
/// the listing and the read (a worker with nothing left to do) is left out.
pub fn memory(admin: SocketAddr) -> Result<Vec<ProcessMemory>, String> {
    Ok(processes(admin)?
        .into_iter()
        .filter_map(|(role, pid)| {
            let rss_bytes = rss::rss_bytes(pid).ok()?;
            Some(ProcessMemory {
                role: role.to_string(),
                pid,
                rss_bytes,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_is_read_past_a_name_with_spaces_and_parens() {
        assert_eq!(parse_ppid("4242 (torpor) S 4200 4242 1 0"), Some(4200));
        assert_eq!(parse_ppid("77 (a) b (c)) R 1 77 77 0"), Some(1));
        assert_eq!(parse_ppid("77 (x) R"), None);
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn descendants_are_the_whole_subtree_and_only_it() {
        // 1 ─ 10 (supervisor) ─ 11 (edge), 12 (worker) ─ 13; 20 is elsewhere.
        let table = [(10, 1), (11, 10), (12, 10), (13, 12), (20, 1), (21, 20)];
        let mut found = descendants(10, &table);
        found.sort_unstable();
        assert_eq!(found, vec![11, 12, 13]);
        assert!(descendants(13, &table).is_empty());
    }

    #[test]
    fn a_cycle_in_a_torn_read_does_not_loop() {
        let table = [(11, 10), (10, 11)];
        assert_eq!(descendants(10, &table), vec![11]);
    }
}
