//! Which objects' sockets an edge holds, kept on disk so that its next
//! process can tell those objects their sockets are gone.
//!
//! An edge that dies takes its sockets with it. A live object hears of it
//! from its worker, which mirrors its sockets; a hibernated object has no
//! mirror, and what it had on the dead edge is known only to the edge. So
//! each edge rewrites `run/edge-<i>.sockets` when the set changed (within
//! a second, or half of `hibernate_after` if that is shorter) with the
//! handles it holds per object, and a restarted edge reads its
//! predecessor's file and sends each object a `Lost` event.
//!
//! A socket that joined or left since the last write may be missing or
//! stale here, but its object was live then (an upgrade and a close are
//! events) and stays live past the next write, and live objects are told
//! by their worker instead.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

/// One object's sockets on this edge.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldObject {
    pub(crate) namespace: String,
    pub(crate) class: String,
    /// Hex object id.
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    /// (slot, generation) of each socket; the edge index is the file's.
    pub(crate) handles: Vec<(u32, u32)>,
}

#[derive(Serialize, Deserialize)]
struct File {
    objects: Vec<HeldObject>,
}

/// `run/edge-<index>.sockets`.
pub fn path(run_dir: &Path, edge: u16) -> PathBuf {
    run_dir.join(format!("edge-{edge}.sockets"))
}

/// Replaces the file with `objects`, atomically (write, then rename).
pub(crate) fn write(path: &Path, objects: Vec<HeldObject>) -> io::Result<()> {
    let partial = path.with_extension("sockets.partial");
    // Streamed: a whole edge's list is a few hundred KB the heap need not hold.
    let mut out = io::BufWriter::new(std::fs::File::create(&partial)?);
    serde_json::to_writer(&mut out, &File { objects })?;
    out.into_inner().map_err(io::IntoInnerError::into_error)?;
    std::fs::rename(&partial, path)
}

/// Writes the file on a thread of its own, so that the hold loop (every
/// socket of the edge) never waits for the file system. Lists that pile up
/// while one is written are skipped but for the newest.
pub(crate) struct Writer {
    lists: std::sync::mpsc::Sender<Vec<HeldObject>>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    pub(crate) fn spawn(path: PathBuf) -> io::Result<Writer> {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<HeldObject>>();
        let thread = std::thread::Builder::new()
            .name("torpor-sockets-file".into())
            .spawn(move || {
                while let Ok(mut objects) = rx.recv() {
                    if let Some(newest) = rx.try_iter().last() {
                        objects = newest;
                    }
                    if let Err(err) = write(&path, objects) {
                        tracing::warn!(%err, path = %path.display(), "cannot write the sockets file");
                    }
                }
            })?;
        Ok(Writer { lists: tx, thread })
    }

    /// Returns once the last list sent is written (or failed to be).
    pub(crate) fn finish(self) {
        drop(self.lists);
        let _ = self.thread.join();
    }

    /// Queues this list to replace the file.
    pub(crate) fn send(&self, objects: Vec<HeldObject>) {
        if self.lists.send(objects).is_err() {
            tracing::warn!("the sockets file writer is gone");
        }
    }
}

/// Reads and removes the file a previous process of this edge left; none
/// (first start) or an unreadable one gives nothing.
pub(crate) fn take(path: &Path) -> Result<Vec<HeldObject>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(format!("cannot read {}: {err}", path.display())),
    };
    let _ = std::fs::remove_file(path);
    serde_json::from_slice::<File>(&bytes)
        .map(|file| file.objects)
        .map_err(|err| format!("{} is not a socket list: {err}", path.display()))
}

/// Removes every edge's file: a node that starts has no sockets from
/// before, and its objects are not told of a previous node's.
pub fn clear(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("edge-") && name.contains(".sockets") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(handles: Vec<(u32, u32)>) -> HeldObject {
        HeldObject {
            namespace: "ROOMS".into(),
            class: "ChatRoom".into(),
            id: "ab".repeat(32),
            name: Some("lobby".into()),
            handles,
        }
    }

    #[test]
    fn what_one_process_writes_the_next_takes_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 1);
        write(&file, vec![room(vec![(3, 7), (9, 8)])]).unwrap();
        write(&file, vec![room(vec![(3, 7)])]).unwrap();
        assert_eq!(take(&file).unwrap(), vec![room(vec![(3, 7)])]);
        assert_eq!(take(&file).unwrap(), vec![], "taken, so gone");
    }

    #[test]
    fn a_damaged_file_is_an_error_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = path(dir.path(), 0);
        std::fs::write(&file, b"{\"objects\": [").unwrap();
        assert!(take(&file).unwrap_err().contains("not a socket list"));
        assert!(!file.exists());
    }

    #[test]
    fn a_starting_node_clears_every_edges_file() {
        let dir = tempfile::tempdir().unwrap();
        for edge in 0..3 {
            write(&path(dir.path(), edge), vec![room(vec![(1, 1)])]).unwrap();
        }
        std::fs::write(dir.path().join("supervisor.sock"), b"").unwrap();
        clear(dir.path());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("supervisor.sock")]);
    }
}
