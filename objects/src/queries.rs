//! The worker's query links: one blocking Unix-socket connection per edge,
//! on which the worker's thread asks what a handler wants to know of the
//! sockets the edge holds (see `torpor_proto::ipc`, "Queries").
//!
//! Blocking, because the SDK's socket calls (`get_websockets`, `tags`,
//! `deserialize_attachment`) are synchronous, as Durable Objects' are; an
//! edge answers from memory in its next loop turn, so a question costs a
//! round trip of well under a millisecond. Bounded, because an edge that
//! does not answer must cost a handler an error, not the worker its life:
//! each question has [`QUERY_DEADLINE`], and a link that failed is dropped
//! and opened again on the next question.

use bytes::BytesMut;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use torpor_proto::ipc::{self, ToEdge, ToWorker};
use tracing::{debug, warn};

/// The longest a question waits for its answer, connecting included.
pub(crate) const QUERY_DEADLINE: Duration = Duration::from_secs(1);

struct Link {
    stream: UnixStream,
    rbuf: BytesMut,
    /// Reads land here first: on the heap, as the thread asking may be
    /// deep in a handler (a JavaScript one, say) with little stack left.
    scratch: Vec<u8>,
}

/// Where the worker's query links go, and those open now.
pub(crate) struct Queries {
    /// Each edge's IPC socket, by index.
    paths: Vec<PathBuf>,
    worker: u16,
    links: RefCell<Vec<Option<Link>>>,
}

impl Queries {
    /// Query links of worker `worker` to the edges listening at `paths`.
    pub(crate) fn new(paths: Vec<PathBuf>, worker: u16) -> Queries {
        let links = RefCell::new(paths.iter().map(|_| None).collect());
        Queries {
            paths,
            worker,
            links,
        }
    }

    /// Asks `edge`; `None` if it did not answer within the deadline (it is
    /// down, restarting, or stuck), which the caller treats as an edge
    /// holding nothing it can reach. One retry on a new connection: the
    /// edge behind an old one may have been replaced since it was used.
    pub(crate) fn ask(&self, edge: u16, query: &ToEdge) -> Option<ToWorker> {
        let deadline = Instant::now() + QUERY_DEADLINE;
        let had_link = self.has_link(edge);
        match self.try_ask(edge, query, deadline) {
            Ok(answer) => return Some(answer),
            Err(err) => {
                self.forget(edge);
                if !had_link || Instant::now() >= deadline {
                    warn!(edge, %err, "edge did not answer a query");
                    return None;
                }
                debug!(edge, %err, "query link failed, trying a new one");
            }
        }
        match self.try_ask(edge, query, deadline) {
            Ok(answer) => Some(answer),
            Err(err) => {
                self.forget(edge);
                warn!(edge, %err, "edge did not answer a query");
                None
            }
        }
    }

    /// Drops the link to `edge`: the edge went away.
    pub(crate) fn forget(&self, edge: u16) {
        if let Some(slot) = self.links.borrow_mut().get_mut(usize::from(edge)) {
            *slot = None;
        }
    }

    fn has_link(&self, edge: u16) -> bool {
        self.links
            .borrow()
            .get(usize::from(edge))
            .is_some_and(Option::is_some)
    }

    fn try_ask(&self, edge: u16, query: &ToEdge, deadline: Instant) -> io::Result<ToWorker> {
        let mut links = self.links.borrow_mut();
        let slot = links
            .get_mut(usize::from(edge))
            .ok_or_else(|| io::Error::other(format!("no edge {edge}")))?;
        let link = match slot {
            Some(link) => link,
            None => slot.insert(self.connect(edge, deadline)?),
        };
        let mut frame = Vec::new();
        query.encode(&mut frame);
        link.stream.set_write_timeout(Some(remaining(deadline)?))?;
        link.stream.write_all(&frame)?;
        loop {
            if let Some(frame) = ipc::split_frame(&mut link.rbuf).map_err(io::Error::other)? {
                return ToWorker::decode(frame).map_err(io::Error::other);
            }
            link.stream.set_read_timeout(Some(remaining(deadline)?))?;
            match link.stream.read(&mut link.scratch) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => link.rbuf.extend_from_slice(&link.scratch[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
    }

    fn connect(&self, edge: u16, deadline: Instant) -> io::Result<Link> {
        let mut stream = connect_by(self.paths[usize::from(edge)].clone(), deadline)?;
        let mut hello = Vec::new();
        ToEdge::QueryHello {
            version: ipc::VERSION,
            worker: self.worker,
        }
        .encode(&mut hello);
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        stream.write_all(&hello)?;
        Ok(Link {
            stream,
            rbuf: BytesMut::new(),
            scratch: vec![0; 64 * 1024],
        })
    }
}

/// Connects to `path`, giving up at `deadline`. A blocking connect to a
/// Unix socket waits as long as the listener's backlog is full, which an
/// edge that has stopped taking connections would make forever; so it
/// runs on a thread of its own, which a stuck edge costs instead of the
/// worker. A link is opened once per edge and again only after a failure.
fn connect_by(path: PathBuf, deadline: Instant) -> io::Result<UnixStream> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("torpor-query-connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(path));
        })?;
    match rx.recv_timeout(remaining(deadline)?) {
        Ok(connected) => connected,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Time left before `deadline`; an error once it has passed (a zero
/// timeout would mean none at all to the socket).
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn answer_list() -> ToWorker {
        ToWorker::SocketList {
            handles: Vec::new(),
        }
    }

    fn query() -> ToEdge {
        ToEdge::ListSockets {
            object: 1,
            tag: None,
        }
    }

    #[test]
    fn an_edge_that_does_not_answer_costs_the_deadline_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge-0.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let queries = Queries::new(vec![path], 0);
        let started = Instant::now();
        assert_eq!(queries.ask(0, &query()), None);
        let took = started.elapsed();
        assert!(took >= QUERY_DEADLINE, "{took:?}");
        assert!(took < QUERY_DEADLINE * 3, "{took:?}");
    }

    #[test]
    fn an_edge_that_is_not_there_is_an_answer_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let queries = Queries::new(vec![dir.path().join("edge-0.sock")], 0);
        let started = Instant::now();
        assert_eq!(queries.ask(0, &query()), None);
        assert_eq!(queries.ask(7, &query()), None, "no such edge");
        assert!(started.elapsed() < QUERY_DEADLINE);
    }

    #[test]
    fn a_query_link_says_hello_then_asks_and_reads_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge-0.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let edge = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            let mut scratch = [0; 1024];
            while frames.len() < 2 {
                let n = stream.read(&mut scratch).unwrap();
                buf.extend_from_slice(&scratch[..n]);
                while let Some(frame) = ipc::split_frame(&mut buf).unwrap() {
                    frames.push(ToEdge::decode(frame).unwrap());
                }
            }
            let mut out = Vec::new();
            answer_list().encode(&mut out);
            // In two pieces: the worker reads until the frame is whole.
            stream.write_all(&out[..3]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            stream.write_all(&out[3..]).unwrap();
            frames
        });
        let queries = Queries::new(vec![path], 3);
        assert_eq!(queries.ask(0, &query()), Some(answer_list()));
        let frames = edge.join().unwrap();
        assert_eq!(
            frames,
            [
                ToEdge::QueryHello {
                    version: ipc::VERSION,
                    worker: 3
                },
                query()
            ]
        );
    }
}
