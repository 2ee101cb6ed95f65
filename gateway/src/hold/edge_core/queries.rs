//! The worker's questions about the sockets this edge holds, asked on its
//! query link (see `torpor_proto::ipc`): who the sockets of an object are,
//! and what their tags and attachments are. A wake tells the worker none
//! of this, so that it costs the same for any room size; a handler that
//! wants to know asks, and pays for what it reads.
//!
//! The answers are pure functions of the core's state. The link itself is
//! a buffer in and a buffer out, as a main link is.

use super::*;

/// Most attachment and tag bytes in one page of `DescribeSockets`: a page
/// of 32,768 sockets with 16 KiB attachments would be 512 MiB.
const PAGE_BYTES: usize = 1 << 20;

/// Most bytes of answers a query link may have unwritten. A worker asks
/// one question at a time and reads each answer before the next, so it
/// never comes near this; one that does is not reading, and is cut off
/// rather than let grow the edge's memory.
pub(crate) const QUERY_BACKLOG_BYTES: usize = 8 << 20;

/// A worker's query link, as the core sees it.
#[derive(Default)]
pub(super) struct QueryLink {
    up: bool,
    rbuf: BytesMut,
    out: Vec<u8>,
    written: usize,
}

impl EdgeCore {
    /// Worker `worker` opened its query link; `rbuf` holds what it sent
    /// after the hello. False if the link is to be dropped.
    pub(crate) fn query_link_up(&mut self, worker: usize, rbuf: BytesMut) -> bool {
        let Some(link) = self.queries.get_mut(worker) else {
            return false;
        };
        *link = QueryLink {
            up: true,
            rbuf,
            ..QueryLink::default()
        };
        self.answer_queries(worker)
    }

    /// Bytes from a query link; answers the questions they complete. False
    /// if the link is to be dropped: a bad frame, or answers left unread.
    pub(crate) fn query_bytes(&mut self, worker: usize, bytes: &[u8]) -> bool {
        let Some(link) = self.queries.get_mut(worker).filter(|l| l.up) else {
            return false;
        };
        link.rbuf.extend_from_slice(bytes);
        self.answer_queries(worker)
    }

    /// What is to be written on the query link now.
    pub(crate) fn query_output(&self, worker: usize) -> &[u8] {
        self.queries
            .get(worker)
            .filter(|l| l.up)
            .map_or(&[], |l| &l.out[l.written.min(l.out.len())..])
    }

    /// `n` bytes of [`query_output`](Self::query_output) were written.
    pub(crate) fn query_wrote(&mut self, worker: usize, n: usize) {
        let Some(link) = self.queries.get_mut(worker) else {
            return;
        };
        link.written += n;
        if link.written >= link.out.len() {
            link.out.clear();
            link.written = 0;
            if link.out.capacity() > PAGE_BYTES * 2 {
                link.out.shrink_to(64 * 1024);
            }
        }
    }

    /// The query link closed.
    pub(crate) fn query_link_down(&mut self, worker: usize) {
        if let Some(link) = self.queries.get_mut(worker) {
            *link = QueryLink::default();
        }
    }

    fn answer_queries(&mut self, worker: usize) -> bool {
        loop {
            let Some(link) = self.queries.get_mut(worker) else {
                return false;
            };
            if link.out.len() - link.written.min(link.out.len()) > QUERY_BACKLOG_BYTES {
                warn!(
                    worker,
                    "worker does not read its query answers, dropping the link"
                );
                self.query_link_down(worker);
                return false;
            }
            let frame = match ipc::split_frame(&mut link.rbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return true,
                Err(err) => {
                    error!(%err, worker, "worker sent a bad query, dropping the link");
                    self.query_link_down(worker);
                    return false;
                }
            };
            let answer = match ToEdge::decode(frame) {
                Ok(query) => self.answer_query(query),
                Err(err) => {
                    error!(%err, worker, "worker sent a bad query, dropping the link");
                    self.query_link_down(worker);
                    return false;
                }
            };
            let Some(answer) = answer else {
                warn!(
                    worker,
                    "worker sent a non-query on its query link, dropping it"
                );
                self.query_link_down(worker);
                return false;
            };
            if let Some(link) = self.queries.get_mut(worker) {
                answer.encode(&mut link.out);
            }
        }
    }

    /// The answer to a query, or `None` if `query` is not one.
    pub(crate) fn answer_query(&self, query: ToEdge) -> Option<ToWorker> {
        Some(match query {
            ToEdge::ListSockets { object, tag } => ToWorker::SocketList {
                handles: self.list_sockets(object, tag.as_deref()),
            },
            ToEdge::DescribeSocket { object, handle } => ToWorker::SocketDescription {
                socket: self.describe_socket(object, handle),
            },
            ToEdge::DescribeSockets { object, after } => {
                let (sockets, more) = self.describe_sockets(object, after);
                ToWorker::SocketDescriptions { sockets, more }
            }
            _ => return None,
        })
    }

    /// The object's listed sockets, those with `tag` if given.
    fn list_sockets(&self, object: u32, tag: Option<&str>) -> Vec<SocketHandle> {
        let Some(o) = self.objects.get(object) else {
            return Vec::new();
        };
        if tag.is_some_and(|t| !o.has_tagged(t)) {
            return Vec::new();
        }
        o.sockets
            .iter()
            .filter_map(|&slot| {
                let session = self.sessions.get(slot as usize)?;
                tag.is_none_or(|t| session.has_tag(t))
                    .then(|| self.handle_of(slot as usize))
            })
            .collect()
    }

    /// One socket of the object, listed or closing: a handler may read
    /// what a socket it just closed carried. `None` for a stale handle,
    /// another object's socket, or one not accepted yet.
    fn describe_socket(&self, object: u32, handle: SocketHandle) -> Option<SocketInfo> {
        let slot = self.slot_of(handle)?;
        let session = self.sessions.get(slot)?;
        (session.object == object && session.phase != Phase::Reserved)
            .then(|| self.info_of(slot, session))
    }

    /// The object's listed sockets past slot `after`, by slot, as many as
    /// fit a page; and whether more follow.
    fn describe_sockets(&self, object: u32, after: Option<u32>) -> (Vec<SocketInfo>, bool) {
        let Some(o) = self.objects.get(object) else {
            return (Vec::new(), false);
        };
        let mut slots: Vec<u32> = o
            .sockets
            .iter()
            .copied()
            .filter(|&slot| after.is_none_or(|a| slot > a))
            .collect();
        slots.sort_unstable();
        let mut page = Vec::new();
        let mut bytes = 0;
        for &slot in &slots {
            if bytes >= PAGE_BYTES {
                return (page, true);
            }
            let Some(session) = self.sessions.get(slot as usize) else {
                continue;
            };
            let info = self.info_of(slot as usize, session);
            bytes += info.attachment.as_ref().map_or(0, Bytes::len)
                + info.tags.iter().map(String::len).sum::<usize>()
                + 32;
            page.push(info);
        }
        (page, false)
    }

    fn info_of(&self, slot: usize, session: &Session) -> SocketInfo {
        SocketInfo {
            handle: SocketHandle {
                edge: self.options.edge,
                slot: slot as u32,
                generation: session.generation,
            },
            tags: session.tags.iter().map(|t| t.to_string()).collect(),
            attachment: session.attachment.as_deref().map(Bytes::copy_from_slice),
            auto_response_at_ms: session.auto_response_at_ms,
        }
    }
}
