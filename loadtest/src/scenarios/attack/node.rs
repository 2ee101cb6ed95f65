//! What an attack costs the node, read from outside it: the resident memory
//! and open fds of its whole process tree (the processes `/admin/node`
//! lists, and every descendant of the supervisor, so a child the admin API
//! does not know of still counts), and the files its `data_dir` holds.
//!
//! Not a meter of CPU (`cpu.rs` is) nor of the kernel's socket memory
//! (`kernel.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use crate::measure::rss;
use crate::report::text::mib;
use crate::wire::admin;

/// The node's processes, their memory and fds at one moment.
#[derive(Debug, Clone, Default)]
pub struct NodeSample {
    pub rss_bytes: u64,
    pub fds: u64,
    pub processes: u64,
    /// `role pid: fds, MiB`, for the notes.
    pub per_process: Vec<String>,
}

/// What `data_dir` holds: every regular file under it, however deep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub files: u64,
    pub bytes: u64,
}

/// Every process of the node now, with its role (re-read: workers come and
/// go, and a restarted edge has a new pid).
fn node_pids(admin: SocketAddr) -> Result<Vec<(&'static str, u32)>, String> {
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

/// Entries of `/proc/<pid>/fd`.
pub fn open_fds(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&path).map_err(|e| format!("read {path}: {e}"))?;
    Ok(entries.count() as u64)
}

pub fn sample(admin: SocketAddr) -> Result<NodeSample, String> {
    let mut sample = NodeSample::default();
    for (role, pid) in node_pids(admin)? {
        // A worker may exit between the listing and the read: skip it.
        let (Ok(rss), Ok(fds)) = (rss::rss_bytes(pid), open_fds(pid)) else {
            continue;
        };
        sample.rss_bytes += rss;
        sample.fds += fds;
        sample.processes += 1;
        sample
            .per_process
            .push(format!("{role} {pid}: {fds} fds, {:.1} MiB", mib(rss)));
    }
    Ok(sample)
}

/// Files and bytes under `dir`. Symlinks are not followed; a file removed
/// while the walk runs is skipped, as the node may delete as we count.
pub fn disk_usage(dir: &Path) -> Result<DiskUsage, String> {
    // Only a missing root is an error (a wrong --data-dir); a subdirectory
    // removed mid-walk is not.
    std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))?;
    let mut usage = DiskUsage::default();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                usage.files += 1;
                usage.bytes += meta.len();
            }
        }
    }
    Ok(usage)
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

    #[test]
    fn disk_usage_counts_files_at_every_depth() {
        let dir = std::env::temp_dir().join(format!("attack-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("Counter")).unwrap();
        std::fs::write(dir.join("node.secret"), [0u8; 32]).unwrap();
        std::fs::write(dir.join("Counter").join("a.sqlite"), [0u8; 100]).unwrap();
        std::fs::write(dir.join("Counter").join("b.sqlite"), [0u8; 8]).unwrap();
        let usage = disk_usage(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            usage,
            DiskUsage {
                files: 3,
                bytes: 140
            }
        );
        assert!(disk_usage(&dir).is_err(), "a missing data_dir is an error");
    }

    #[test]
    fn own_process_has_fds() {
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }
}
