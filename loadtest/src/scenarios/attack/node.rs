//! What an attack costs the node, read from outside it: the resident memory
//! and open fds of its whole process tree (the processes `/admin/node`
//! lists, and every descendant of the supervisor, so a child the admin API
//! does not know of still counts), and the files its `data_dir` holds.
//!
//! Not a meter of CPU ([`cpu`](crate::measure::cpu) is) nor of the kernel's
//! socket memory ([`kernel`](crate::measure::kernel)); the process tree
//! itself is read by [`measure::node`](crate::measure::node).

use std::net::SocketAddr;
use std::path::Path;

use crate::measure::{node, rss};
use crate::report::text::mib;

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

/// Entries of `/proc/<pid>/fd`.
pub fn open_fds(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&path).map_err(|e| format!("read {path}: {e}"))?;
    Ok(entries.count() as u64)
}

pub fn sample(admin: SocketAddr) -> Result<NodeSample, String> {
    let mut sample = NodeSample::default();
    for (role, pid) in node::processes(admin)? {
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
