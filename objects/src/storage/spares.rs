//! Databases made ahead of need. A new SQLite file costs four fsyncs before
//! its first write (the header that turns on WAL goes through a rollback
//! journal, and its directory entry is synced), and they would run on the
//! worker's one thread, inside the event that first stores something. So
//! each directory keeps a few empty databases, already in WAL mode with the
//! engine's tables, on disk and fsynced: a new object renames one into
//! place, and the fsync of the directory that its first commit does anyway
//! makes the rename durable. Spares are copies of one template made per
//! worker, written and fdatasynced on the blocking pool, many at once, so
//! the file system commits their fsyncs together.
//!
//! Spares are named `.spare-<pid>-<n>.sqlite`: never an object's file
//! (those are `<id>.sqlite`, with `.` escaped in ids). A worker removes its
//! own when it drops them, and the spares of workers that are gone when it
//! first fills a directory. Not here: opening or closing databases.

use super::{Storage, StorageLimits};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tracing::{debug, warn};

const PREFIX: &str = ".spare-";

#[derive(Default)]
struct Ready {
    /// Per directory, the spares on disk and fsynced.
    spares: HashMap<PathBuf, Vec<PathBuf>>,
    /// Spares being made, per directory.
    filling: HashMap<PathBuf, usize>,
    /// Directories whose dead workers' spares were looked for.
    swept: HashSet<PathBuf>,
    next: u64,
}

/// One worker's spare databases.
pub struct Spares {
    /// Spares kept ready per directory; 0 turns them off.
    per_dir: usize,
    ready: Arc<Mutex<Ready>>,
    template: Arc<OnceLock<Option<Vec<u8>>>>,
}

impl Spares {
    pub fn new(per_dir: usize) -> Spares {
        Spares {
            per_dir,
            ready: Arc::default(),
            template: Arc::default(),
        }
    }

    /// Moves a spare to `path`, which must not exist, and returns true; or
    /// returns false if none is ready, and the caller creates the file.
    /// Either way more spares are made in the background if this directory
    /// runs low. Needs a tokio runtime for that, and makes none without.
    pub fn take_into(&self, path: &Path) -> bool {
        if self.per_dir == 0 {
            return false;
        }
        let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return false;
        };
        let (spare, wanted) = {
            let Ok(mut ready) = self.ready.lock() else {
                return false;
            };
            let spare = ready.spares.get_mut(dir).and_then(Vec::pop);
            let have = ready.spares.get(dir).map_or(0, Vec::len)
                + ready.filling.get(dir).copied().unwrap_or(0);
            // Refill in batches, from half full, so that each batch's
            // fsyncs run together.
            let wanted = if have <= self.per_dir / 2 {
                self.per_dir - have
            } else {
                0
            };
            if wanted > 0 {
                *ready.filling.entry(dir.to_path_buf()).or_default() += wanted;
            }
            (spare, wanted)
        };
        if wanted > 0 {
            self.fill(dir, wanted);
        }
        let Some(spare) = spare else {
            return false;
        };
        match std::fs::rename(&spare, path) {
            Ok(()) => true,
            Err(err) => {
                warn!(%err, spare = %spare.display(), "cannot use a spare database");
                let _ = std::fs::remove_file(&spare);
                false
            }
        }
    }

    /// Makes `count` spares in `dir` on the blocking pool, one task each.
    fn fill(&self, dir: &Path, count: usize) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            if let Ok(mut ready) = self.ready.lock() {
                ready.filling.remove(dir);
            }
            return;
        };
        let sweep = self
            .ready
            .lock()
            .map(|mut ready| ready.swept.insert(dir.to_path_buf()))
            .unwrap_or(false);
        if sweep {
            let dir = dir.to_path_buf();
            runtime.spawn_blocking(move || sweep_dead(&dir));
        }
        for _ in 0..count {
            let (ready, template, dir) =
                (self.ready.clone(), self.template.clone(), dir.to_owned());
            runtime.spawn_blocking(move || {
                let name = match ready.lock() {
                    Ok(mut ready) => {
                        ready.next += 1;
                        format!("{PREFIX}{}-{}.sqlite", std::process::id(), ready.next)
                    }
                    Err(_) => return,
                };
                let spare = dir.join(name);
                let made = template
                    .get_or_init(|| make_template(&dir))
                    .as_deref()
                    .map(|bytes| write_synced(&spare, bytes));
                let Ok(mut ready) = ready.lock() else {
                    let _ = std::fs::remove_file(&spare);
                    return;
                };
                if let Some(filling) = ready.filling.get_mut(&dir) {
                    *filling = filling.saturating_sub(1);
                }
                match made {
                    Some(Ok(())) => ready.spares.entry(dir).or_default().push(spare),
                    Some(Err(err)) => {
                        debug!(%err, "cannot make a spare database");
                        let _ = std::fs::remove_file(&spare);
                    }
                    None => {}
                }
            });
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        if let Ok(ready) = self.ready.lock() {
            for spare in ready.spares.values().flatten() {
                let _ = std::fs::remove_file(spare);
            }
        }
    }
}

/// A fresh database as `Storage::open` leaves it, closed (so checkpointed:
/// one file, no WAL), read back as bytes.
fn make_template(dir: &Path) -> Option<Vec<u8>> {
    let path = dir.join(format!("{PREFIX}{}-template.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let made = Storage::open(&path, StorageLimits::default())
        .and_then(Storage::close)
        .map_err(|err| err.to_string())
        .and_then(|()| std::fs::read(&path).map_err(|err| err.to_string()));
    let _ = std::fs::remove_file(&path);
    match made {
        Ok(bytes) => Some(bytes),
        Err(err) => {
            warn!(%err, dir = %dir.display(), "cannot make a template database; no spares");
            None
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // An object's database is its node's user's alone, whatever the umask.
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()
}

/// Removes spares left by workers that are gone (a crash, a kill).
fn sweep_dead(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn ready_count(spares: &Spares, dir: &Path) -> usize {
        spares
            .ready
            .lock()
            .unwrap()
            .spares
            .get(dir)
            .map_or(0, Vec::len)
    }

    #[test]
    fn a_spare_becomes_a_working_database_with_its_tables() {
        let runtime = runtime();
        let _guard = runtime.enter();
        let dir = tempfile::tempdir().unwrap();
        let spares = Spares::new(4);
        let first = dir.path().join("a.sqlite");
        // None is ready yet: the caller makes its own, and four are made.
        assert!(!spares.take_into(&first));
        let deadline = Instant::now() + Duration::from_secs(10);
        while ready_count(&spares, dir.path()) < 4 {
            assert!(Instant::now() < deadline, "spares not made");
            std::thread::sleep(Duration::from_millis(5));
        }
        let second = dir.path().join("b.sqlite");
        assert!(spares.take_into(&second));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&second).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let mut s = Storage::open_in_event(&second, StorageLimits::default()).unwrap();
        s.put("k", b"v").unwrap();
        s.set_alarm(Some(5)).unwrap();
        s.commit_event().unwrap();
        s.close().unwrap();
        let mut s = Storage::open(&second, StorageLimits::default()).unwrap();
        assert_eq!(s.get("k").unwrap(), Some(b"v".to_vec()));
        assert_eq!(s.alarm().unwrap(), Some(5));
    }

    #[test]
    fn dropping_the_spares_removes_their_files_and_dead_workers_spares_go() {
        let runtime = runtime();
        let _guard = runtime.enter();
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4194305 (past Linux's pid_max).
        let dead = dir.path().join(format!("{PREFIX}4194305-1.sqlite"));
        std::fs::write(&dead, b"x").unwrap();
        let spares = Spares::new(2);
        assert!(!spares.take_into(&dir.path().join("a.sqlite")));
        let deadline = Instant::now() + Duration::from_secs(10);
        while ready_count(&spares, dir.path()) < 2 || dead.exists() {
            assert!(Instant::now() < deadline, "spares not made or not swept");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(spares);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
