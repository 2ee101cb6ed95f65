//! Encoding and decoding of IPC frames; see the module docs of `ipc` for
//! the layout.

use super::{AutoResponse, SocketInfo, ToChild, ToEdge, ToSupervisor, ToWorker};
use crate::SocketHandle;
use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

/// Largest frame either side accepts: a message of the 32 MiB maximum plus
/// room for its fields.
pub const MAX_FRAME_BYTES: usize = 33 << 20;

/// A frame that does not follow the format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame ended in the middle of a field.
    Truncated,
    /// Unknown message tag.
    UnknownTag(u8),
    /// A string field is not UTF-8.
    InvalidUtf8,
    /// A frame's length is over [`MAX_FRAME_BYTES`].
    FrameTooLarge(usize),
    /// Bytes left over after the last field.
    TrailingBytes(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("ipc frame truncated"),
            DecodeError::UnknownTag(tag) => write!(f, "unknown ipc message tag {tag}"),
            DecodeError::InvalidUtf8 => f.write_str("ipc string is not utf-8"),
            DecodeError::FrameTooLarge(n) => {
                write!(f, "ipc frame of {n} bytes, limit {MAX_FRAME_BYTES}")
            }
            DecodeError::TrailingBytes(n) => write!(f, "{n} bytes after the last ipc field"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Takes one whole frame (tag and fields, without the length) off the front
/// of `buf`, or `None` until it has fully arrived.
pub fn split_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(DecodeError::FrameTooLarge(len));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut Vec<u8>, tag: u8) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0; 4]);
        out.push(tag);
        Writer { out, start }
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.out.extend_from_slice(v);
        self
    }
    fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn handle(&mut self, h: SocketHandle) -> &mut Self {
        self.u16(h.edge).u32(h.slot).u32(h.generation)
    }
    fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
                self
            }
        }
    }
    fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.u32(items.len() as u32);
        for item in items {
            f(self, item);
        }
        self
    }
    fn headers(&mut self, headers: &[(String, Bytes)]) -> &mut Self {
        self.list(headers, |w, (name, value)| {
            w.str(name).bytes(value);
        })
    }
    fn socket(&mut self, s: &SocketInfo) -> &mut Self {
        self.handle(s.handle)
            .tags(&s.tags)
            .opt(s.attachment.as_ref(), |w, a| {
                w.bytes(a);
            })
            .u64(s.auto_response_at_ms)
    }
    fn tags(&mut self, tags: &[String]) -> &mut Self {
        self.list(tags, |w, t| {
            w.str(t);
        })
    }
    fn auto_response(&mut self, pair: Option<&AutoResponse>) -> &mut Self {
        self.opt(pair, |w, p| {
            w.bool(p.binary).bytes(&p.request).bytes(&p.response);
        })
    }
    fn finish(self) {
        let len = (self.out.len() - self.start - 4) as u32;
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

struct Reader {
    frame: Bytes,
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.frame.len() < n {
            return Err(DecodeError::Truncated);
        }
        Ok(self.frame.split_to(n))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? != 0)
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(&b);
        Ok(u64::from_le_bytes(le))
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8)
    }
    fn handle(&mut self) -> Result<SocketHandle, DecodeError> {
        Ok(SocketHandle {
            edge: self.u16()?,
            slot: self.u32()?,
            generation: self.u32()?,
        })
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            _ => f(self).map(Some),
        }
    }
    fn list<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32()? as usize;
        // Each item takes at least one byte, so a lying count cannot make us
        // reserve more than the frame holds.
        let mut items = Vec::with_capacity(count.min(self.frame.len()));
        for _ in 0..count {
            items.push(f(self)?);
        }
        Ok(items)
    }
    fn headers(&mut self) -> Result<Vec<(String, Bytes)>, DecodeError> {
        self.list(|r| Ok((r.str()?, r.bytes()?)))
    }
    fn socket(&mut self) -> Result<SocketInfo, DecodeError> {
        Ok(SocketInfo {
            handle: self.handle()?,
            tags: self.list(Reader::str)?,
            attachment: self.opt(Reader::bytes)?,
            auto_response_at_ms: self.u64()?,
        })
    }
    fn auto_response(&mut self) -> Result<Option<AutoResponse>, DecodeError> {
        self.opt(|r| {
            Ok(AutoResponse {
                binary: r.bool()?,
                request: r.bytes()?,
                response: r.bytes()?,
            })
        })
    }
    fn finish<T>(self, value: T) -> Result<T, DecodeError> {
        match self.frame.len() {
            0 => Ok(value),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

impl ToWorker {
    /// Appends this message as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ToWorker::Activate {
                object,
                namespace,
                class,
                id,
                name,
                auto_response,
                auto_response_known,
                sockets,
            } => {
                let mut w = Writer::new(out, 1);
                w.u32(*object)
                    .str(namespace)
                    .str(class)
                    .str(id)
                    .opt(name.as_deref(), |w, n| {
                        w.str(n);
                    })
                    .auto_response(auto_response.as_ref())
                    .bool(*auto_response_known)
                    .u32(*sockets);
                w.finish();
            }
            ToWorker::SocketList { handles } => {
                let mut w = Writer::new(out, 12);
                w.list(handles, |w, h| {
                    w.handle(*h);
                });
                w.finish();
            }
            ToWorker::SocketDescription { socket } => {
                let mut w = Writer::new(out, 13);
                w.opt(socket.as_ref(), |w, s| {
                    w.socket(s);
                });
                w.finish();
            }
            ToWorker::Confirmed { token } => {
                let mut w = Writer::new(out, 15);
                w.u64(*token);
                w.finish();
            }
            ToWorker::SocketDescriptions { sockets, more } => {
                let mut w = Writer::new(out, 14);
                w.list(sockets, |w, s| {
                    w.socket(s);
                })
                .bool(*more);
                w.finish();
            }
            ToWorker::Lost { object, handles } => {
                let mut w = Writer::new(out, 10);
                w.u32(*object).list(handles, |w, h| {
                    w.handle(*h);
                });
                w.finish();
            }
            ToWorker::Fetch {
                object,
                request_id,
                upgrade,
                method,
                uri,
                headers,
                body,
                rpc,
                chain,
            } => {
                let mut w = Writer::new(out, 2);
                w.u32(*object)
                    .u64(*request_id)
                    .opt(*upgrade, |w, h| {
                        w.handle(h);
                    })
                    .str(method)
                    .str(uri)
                    .headers(headers)
                    .bytes(body)
                    .opt(rpc.as_deref(), |w, m| {
                        w.str(m);
                    })
                    .list(chain, |w, id| {
                        w.str(id);
                    });
                w.finish();
            }
            ToWorker::CallResult {
                call_id,
                status,
                headers,
                body,
            } => {
                let mut w = Writer::new(out, 8);
                w.u64(*call_id).u16(*status).headers(headers).bytes(body);
                w.finish();
            }
            ToWorker::Message {
                object,
                handle,
                is_text,
                auto_response_at_ms,
                payload,
            } => ToWorker::encode_message(
                out,
                *object,
                *handle,
                *is_text,
                *auto_response_at_ms,
                payload,
            ),
            ToWorker::Closed {
                object,
                handle,
                code,
                reason,
                was_clean,
                tags,
                attachment,
            } => {
                let mut w = Writer::new(out, 4);
                w.u32(*object)
                    .handle(*handle)
                    .u16(*code)
                    .str(reason)
                    .bool(*was_clean)
                    .tags(tags)
                    .opt(attachment.as_ref(), |w, a| {
                        w.bytes(a);
                    });
                w.finish();
            }
            ToWorker::Evict { object } => {
                let mut w = Writer::new(out, 5);
                w.u32(*object);
                w.finish();
            }
            ToWorker::Shutdown => Writer::new(out, 6).finish(),
            ToWorker::Retired => Writer::new(out, 11).finish(),
            ToWorker::Alarm {
                object,
                retry_count,
                last,
            } => {
                let mut w = Writer::new(out, 7);
                w.u32(*object).u32(*retry_count).bool(*last);
                w.finish();
            }
        }
    }

    /// Appends a `Message` straight from a borrowed payload: the edge
    /// forwards client messages from its read buffer without an extra copy.
    pub fn encode_message(
        out: &mut Vec<u8>,
        object: u32,
        handle: SocketHandle,
        is_text: bool,
        auto_response_at_ms: u64,
        payload: &[u8],
    ) {
        let mut w = Writer::new(out, 3);
        w.u32(object)
            .handle(handle)
            .bool(is_text)
            .u64(auto_response_at_ms)
            .bytes(payload);
        w.finish();
    }

    /// Decodes one frame from [`split_frame`].
    pub fn decode(frame: Bytes) -> Result<ToWorker, DecodeError> {
        let mut r = Reader { frame };
        let message = match r.u8()? {
            1 => ToWorker::Activate {
                object: r.u32()?,
                namespace: r.str()?,
                class: r.str()?,
                id: r.str()?,
                name: r.opt(Reader::str)?,
                auto_response: r.auto_response()?,
                auto_response_known: r.bool()?,
                sockets: r.u32()?,
            },
            2 => ToWorker::Fetch {
                object: r.u32()?,
                request_id: r.u64()?,
                upgrade: r.opt(Reader::handle)?,
                method: r.str()?,
                uri: r.str()?,
                headers: r.headers()?,
                body: r.bytes()?,
                rpc: r.opt(Reader::str)?,
                chain: r.list(Reader::str)?,
            },
            8 => ToWorker::CallResult {
                call_id: r.u64()?,
                status: r.u16()?,
                headers: r.headers()?,
                body: r.bytes()?,
            },
            3 => ToWorker::Message {
                object: r.u32()?,
                handle: r.handle()?,
                is_text: r.bool()?,
                auto_response_at_ms: r.u64()?,
                payload: r.bytes()?,
            },
            4 => ToWorker::Closed {
                object: r.u32()?,
                handle: r.handle()?,
                code: r.u16()?,
                reason: r.str()?,
                was_clean: r.bool()?,
                tags: r.list(Reader::str)?,
                attachment: r.opt(Reader::bytes)?,
            },
            5 => ToWorker::Evict { object: r.u32()? },
            12 => ToWorker::SocketList {
                handles: r.list(Reader::handle)?,
            },
            13 => ToWorker::SocketDescription {
                socket: r.opt(Reader::socket)?,
            },
            15 => ToWorker::Confirmed { token: r.u64()? },
            14 => ToWorker::SocketDescriptions {
                sockets: r.list(Reader::socket)?,
                more: r.bool()?,
            },
            10 => ToWorker::Lost {
                object: r.u32()?,
                handles: r.list(Reader::handle)?,
            },
            6 => ToWorker::Shutdown,
            11 => ToWorker::Retired,
            7 => ToWorker::Alarm {
                object: r.u32()?,
                retry_count: r.u32()?,
                last: r.bool()?,
            },
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        r.finish(message)
    }
}

impl ToEdge {
    /// Appends this message as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ToEdge::Hello {
                version,
                worker,
                pid,
            } => {
                let mut w = Writer::new(out, 0);
                w.u16(*version).u16(*worker).u32(*pid);
                w.finish();
            }
            ToEdge::QueryHello { version, worker } => {
                let mut w = Writer::new(out, 20);
                w.u16(*version).u16(*worker);
                w.finish();
            }
            ToEdge::ListSockets { object, tag } => {
                let mut w = Writer::new(out, 21);
                w.u32(*object).opt(tag.as_deref(), |w, t| {
                    w.str(t);
                });
                w.finish();
            }
            ToEdge::DescribeSocket { object, handle } => {
                let mut w = Writer::new(out, 22);
                w.u32(*object).handle(*handle);
                w.finish();
            }
            ToEdge::Confirm { token } => {
                let mut w = Writer::new(out, 24);
                w.u64(*token);
                w.finish();
            }
            ToEdge::DescribeSockets { object, after } => {
                let mut w = Writer::new(out, 23);
                w.u32(*object).opt(*after, |w, a| {
                    w.u32(a);
                });
                w.finish();
            }
            ToEdge::FetchResponse {
                request_id,
                status,
                headers,
                body,
            } => {
                let mut w = Writer::new(out, 1);
                w.u64(*request_id).u16(*status).headers(headers).bytes(body);
                w.finish();
            }
            ToEdge::Accept { handle, tags } => {
                let mut w = Writer::new(out, 10);
                w.handle(*handle).list(tags, |w, t| {
                    w.str(t);
                });
                w.finish();
            }
            ToEdge::Send {
                handle,
                is_text,
                payload,
            } => {
                let mut w = Writer::new(out, 2);
                w.handle(*handle).bool(*is_text).bytes(payload);
                w.finish();
            }
            ToEdge::Close {
                handle,
                code,
                reason,
            } => {
                let mut w = Writer::new(out, 3);
                w.handle(*handle).u16(*code).str(reason);
                w.finish();
            }
            ToEdge::Broadcast {
                object,
                tag,
                except,
                is_text,
                payload,
            } => {
                let mut w = Writer::new(out, 4);
                w.u32(*object)
                    .opt(tag.as_deref(), |w, t| {
                        w.str(t);
                    })
                    .opt(*except, |w, h| {
                        w.handle(h);
                    })
                    .bool(*is_text)
                    .bytes(payload);
                w.finish();
            }
            ToEdge::SetAttachment { handle, attachment } => {
                let mut w = Writer::new(out, 5);
                w.handle(*handle).opt(attachment.as_ref(), |w, a| {
                    w.bytes(a);
                });
                w.finish();
            }
            ToEdge::SetAutoResponse { object, pair } => {
                let mut w = Writer::new(out, 6);
                w.u32(*object).auto_response(pair.as_ref());
                w.finish();
            }
            ToEdge::Done {
                object,
                events,
                rows_read,
                rows_written,
                stored_bytes,
                active_us,
            } => {
                let mut w = Writer::new(out, 7);
                w.u32(*object)
                    .u32(*events)
                    .u64(*rows_read)
                    .u64(*rows_written)
                    .opt(*stored_bytes, |w, b| {
                        w.u64(b);
                    })
                    .u64(*active_us);
                w.finish();
            }
            ToEdge::Idle {
                object,
                handled,
                active_us,
            } => {
                let mut w = Writer::new(out, 8);
                w.u32(*object).u64(*handled).u64(*active_us);
                w.finish();
            }
            ToEdge::IdleExit => Writer::new(out, 9).finish(),
            ToEdge::SetAlarm {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let mut w = Writer::new(out, 11);
                w.str(namespace)
                    .str(id)
                    .opt(name.as_deref(), |w, n| {
                        w.str(n);
                    })
                    .opt(*at_ms, |w, at| {
                        w.u64(at);
                    });
                w.finish();
            }
            ToEdge::Woke { object } => {
                let mut w = Writer::new(out, 14);
                w.u32(*object);
                w.finish();
            }
            ToEdge::Gather {
                namespace,
                class,
                id,
                name,
            } => {
                let mut w = Writer::new(out, 15);
                w.str(namespace)
                    .str(class)
                    .str(id)
                    .opt(name.as_deref(), |w, n| {
                        w.str(n);
                    });
                w.finish();
            }
            ToEdge::StayUp => Writer::new(out, 16).finish(),
            ToEdge::Retire => Writer::new(out, 17).finish(),
            ToEdge::Call {
                caller,
                call_id,
                namespace,
                id,
                name,
                chain,
                rpc,
                method,
                uri,
                headers,
                body,
                upgrade,
            } => {
                let mut w = Writer::new(out, 13);
                w.u32(*caller)
                    .u64(*call_id)
                    .str(namespace)
                    .str(id)
                    .opt(name.as_deref(), |w, n| {
                        w.str(n);
                    })
                    .list(chain, |w, c| {
                        w.str(c);
                    })
                    .opt(rpc.as_deref(), |w, m| {
                        w.str(m);
                    })
                    .str(method)
                    .str(uri)
                    .headers(headers)
                    .bytes(body)
                    .opt(*upgrade, |w, h| {
                        w.handle(h);
                    });
                w.finish();
            }
            ToEdge::AlarmDone { object, ok, at_ms } => {
                let mut w = Writer::new(out, 12);
                w.u32(*object).bool(*ok).opt(*at_ms, |w, at| {
                    w.u64(at);
                });
                w.finish();
            }
            ToEdge::AlarmIntent {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let mut w = Writer::new(out, 19);
                w.str(namespace)
                    .str(id)
                    .opt(name.as_deref(), |w, n| {
                        w.str(n);
                    })
                    .u64(*at_ms);
                w.finish();
            }
            ToEdge::SyncAlarm {
                namespace,
                id,
                name,
                at_ms,
            } => {
                let mut w = Writer::new(out, 18);
                w.str(namespace)
                    .str(id)
                    .opt(name.as_deref(), |w, n| {
                        w.str(n);
                    })
                    .opt(*at_ms, |w, at| {
                        w.u64(at);
                    });
                w.finish();
            }
        }
    }

    /// Decodes one frame from [`split_frame`].
    pub fn decode(frame: Bytes) -> Result<ToEdge, DecodeError> {
        let mut r = Reader { frame };
        let message = match r.u8()? {
            0 => ToEdge::Hello {
                version: r.u16()?,
                worker: r.u16()?,
                pid: r.u32()?,
            },
            20 => ToEdge::QueryHello {
                version: r.u16()?,
                worker: r.u16()?,
            },
            21 => ToEdge::ListSockets {
                object: r.u32()?,
                tag: r.opt(Reader::str)?,
            },
            22 => ToEdge::DescribeSocket {
                object: r.u32()?,
                handle: r.handle()?,
            },
            24 => ToEdge::Confirm { token: r.u64()? },
            23 => ToEdge::DescribeSockets {
                object: r.u32()?,
                after: r.opt(Reader::u32)?,
            },
            1 => ToEdge::FetchResponse {
                request_id: r.u64()?,
                status: r.u16()?,
                headers: r.headers()?,
                body: r.bytes()?,
            },
            2 => ToEdge::Send {
                handle: r.handle()?,
                is_text: r.bool()?,
                payload: r.bytes()?,
            },
            3 => ToEdge::Close {
                handle: r.handle()?,
                code: r.u16()?,
                reason: r.str()?,
            },
            4 => ToEdge::Broadcast {
                object: r.u32()?,
                tag: r.opt(Reader::str)?,
                except: r.opt(Reader::handle)?,
                is_text: r.bool()?,
                payload: r.bytes()?,
            },
            5 => ToEdge::SetAttachment {
                handle: r.handle()?,
                attachment: r.opt(Reader::bytes)?,
            },
            6 => ToEdge::SetAutoResponse {
                object: r.u32()?,
                pair: r.auto_response()?,
            },
            7 => ToEdge::Done {
                object: r.u32()?,
                events: r.u32()?,
                rows_read: r.u64()?,
                rows_written: r.u64()?,
                stored_bytes: r.opt(Reader::u64)?,
                active_us: r.u64()?,
            },
            8 => ToEdge::Idle {
                object: r.u32()?,
                handled: r.u64()?,
                active_us: r.u64()?,
            },
            9 => ToEdge::IdleExit,
            10 => ToEdge::Accept {
                handle: r.handle()?,
                tags: r.list(Reader::str)?,
            },
            11 => ToEdge::SetAlarm {
                namespace: r.str()?,
                id: r.str()?,
                name: r.opt(Reader::str)?,
                at_ms: r.opt(Reader::u64)?,
            },
            12 => ToEdge::AlarmDone {
                object: r.u32()?,
                ok: r.bool()?,
                at_ms: r.opt(Reader::u64)?,
            },
            13 => ToEdge::Call {
                caller: r.u32()?,
                call_id: r.u64()?,
                namespace: r.str()?,
                id: r.str()?,
                name: r.opt(Reader::str)?,
                chain: r.list(Reader::str)?,
                rpc: r.opt(Reader::str)?,
                method: r.str()?,
                uri: r.str()?,
                headers: r.headers()?,
                body: r.bytes()?,
                upgrade: r.opt(Reader::handle)?,
            },
            14 => ToEdge::Woke { object: r.u32()? },
            15 => ToEdge::Gather {
                namespace: r.str()?,
                class: r.str()?,
                id: r.str()?,
                name: r.opt(Reader::str)?,
            },
            16 => ToEdge::StayUp,
            17 => ToEdge::Retire,
            19 => ToEdge::AlarmIntent {
                namespace: r.str()?,
                id: r.str()?,
                name: r.opt(Reader::str)?,
                at_ms: r.u64()?,
            },
            18 => ToEdge::SyncAlarm {
                namespace: r.str()?,
                id: r.str()?,
                name: r.opt(Reader::str)?,
                at_ms: r.opt(Reader::u64)?,
            },
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        r.finish(message)
    }
}

impl ToChild {
    /// Appends this message as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ToChild::Retire => Writer::new(out, 1).finish(),
            ToChild::Setup { json } => {
                let mut w = Writer::new(out, 2);
                w.bytes(json);
                w.finish();
            }
        }
    }

    /// Decodes one frame from [`split_frame`].
    pub fn decode(frame: Bytes) -> Result<ToChild, DecodeError> {
        let mut r = Reader { frame };
        let message = match r.u8()? {
            1 => ToChild::Retire,
            2 => ToChild::Setup { json: r.bytes()? },
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        r.finish(message)
    }
}

impl ToSupervisor {
    /// Appends this message as one frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ToSupervisor::Ready { version, pid } => {
                let mut w = Writer::new(out, 1);
                w.u16(*version).u32(*pid);
                w.finish();
            }
            ToSupervisor::StartWorker { index } => {
                let mut w = Writer::new(out, 2);
                w.u16(*index);
                w.finish();
            }
        }
    }

    /// Decodes one frame from [`split_frame`].
    pub fn decode(frame: Bytes) -> Result<ToSupervisor, DecodeError> {
        let mut r = Reader { frame };
        let message = match r.u8()? {
            1 => ToSupervisor::Ready {
                version: r.u16()?,
                pid: r.u32()?,
            },
            2 => ToSupervisor::StartWorker { index: r.u16()? },
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        r.finish(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::VERSION;
    use proptest::prelude::*;

    const H: SocketHandle = SocketHandle {
        edge: 1,
        slot: 2,
        generation: 3,
    };

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn round_trip_worker(message: ToWorker) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        let mut buf = BytesMut::from(&out[..]);
        let frame = split_frame(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(ToWorker::decode(frame).unwrap(), message);
        out
    }

    fn round_trip_edge(message: ToEdge) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        let mut buf = BytesMut::from(&out[..]);
        let frame = split_frame(&mut buf).unwrap().unwrap();
        assert_eq!(ToEdge::decode(frame).unwrap(), message);
        out
    }

    // Golden fixtures: if one of these changes, the format changed, and
    // VERSION must be bumped along with the fixture.
    #[test]
    fn hello_layout_is_stable() {
        let out = round_trip_edge(ToEdge::Hello {
            version: VERSION,
            worker: 2,
            pid: 0x01020304,
        });
        assert_eq!(hex(&out), "09000000000d00020004030201");
        assert_eq!(VERSION, 13);
        let out = round_trip_edge(ToEdge::QueryHello {
            version: VERSION,
            worker: 2,
        });
        assert_eq!(hex(&out), "05000000140d000200");
    }

    #[test]
    fn control_layouts_are_stable() {
        let mut out = Vec::new();
        ToSupervisor::Ready {
            version: VERSION,
            pid: 0x01020304,
        }
        .encode(&mut out);
        assert_eq!(hex(&out), "07000000010d0004030201");
        out.clear();
        ToSupervisor::StartWorker { index: 3 }.encode(&mut out);
        assert_eq!(hex(&out), "03000000020300");
        out.clear();
        ToChild::Retire.encode(&mut out);
        assert_eq!(hex(&out), "0100000001");
        let mut buf = BytesMut::from(&out[..]);
        let frame = split_frame(&mut buf).unwrap().unwrap();
        assert_eq!(ToChild::decode(frame), Ok(ToChild::Retire));
        out.clear();
        ToChild::Setup {
            json: Bytes::from_static(b"{}"),
        }
        .encode(&mut out);
        assert_eq!(hex(&out), "0700000002020000007b7d");
        let mut bytes = Vec::new();
        ToSupervisor::StartWorker { index: 7 }.encode(&mut bytes);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = split_frame(&mut buf).unwrap().unwrap();
        assert_eq!(
            ToSupervisor::decode(frame),
            Ok(ToSupervisor::StartWorker { index: 7 })
        );
    }

    #[test]
    fn message_layout_is_stable() {
        let out = round_trip_worker(ToWorker::Message {
            object: 7,
            handle: H,
            is_text: true,
            auto_response_at_ms: 0,
            payload: Bytes::from_static(b"hi"),
        });
        assert_eq!(
            hex(&out),
            "1e000000030700000001000200000003000000010000000000000000020000006869"
        );
    }

    #[test]
    fn alarm_layouts_are_stable() {
        let out = round_trip_worker(ToWorker::Alarm {
            object: 4,
            retry_count: 6,
            last: true,
        });
        assert_eq!(hex(&out), "0a00000007040000000600000001");
        let out = round_trip_edge(ToEdge::AlarmDone {
            object: 4,
            ok: true,
            at_ms: Some(0x0102),
        });
        assert_eq!(hex(&out), "0f0000000c0400000001010201000000000000");
        let out = round_trip_edge(ToEdge::SyncAlarm {
            namespace: "N".into(),
            id: "i".into(),
            name: None,
            at_ms: None,
        });
        assert_eq!(hex(&out), "0d00000012010000004e01000000690000");
        let out = round_trip_edge(ToEdge::AlarmIntent {
            namespace: "N".into(),
            id: "i".into(),
            name: Some("n".into()),
            at_ms: 0x0102,
        });
        assert_eq!(
            hex(&out),
            "1900000013010000004e010000006901010000006e0201000000000000"
        );
    }

    #[test]
    fn broadcast_layout_is_stable() {
        let out = round_trip_edge(ToEdge::Broadcast {
            object: 1,
            tag: Some("t".into()),
            except: None,
            is_text: false,
            payload: Bytes::from_static(b"x"),
        });
        assert_eq!(hex(&out), "12000000040100000001010000007400000100000078");
    }

    #[test]
    fn every_message_round_trips() {
        round_trip_worker(ToWorker::Activate {
            object: 9,
            namespace: "ROOMS".into(),
            class: "ChatRoom".into(),
            id: "ab".repeat(32),
            name: Some("lobby".into()),
            auto_response: Some(AutoResponse {
                binary: false,
                request: Bytes::from_static(b"ping"),
                response: Bytes::from_static(b"pong"),
            }),
            auto_response_known: true,
            sockets: 32_768,
        });
        round_trip_worker(ToWorker::Lost {
            object: 3,
            handles: vec![
                H,
                SocketHandle {
                    edge: 1,
                    slot: 9,
                    generation: 4,
                },
            ],
        });
        let info = SocketInfo {
            handle: H,
            tags: vec!["a".into(), "b".into()],
            attachment: Some(Bytes::from_static(b"{\"name\":\"ada\"}")),
            auto_response_at_ms: 17,
        };
        round_trip_worker(ToWorker::SocketList {
            handles: vec![H, H],
        });
        round_trip_worker(ToWorker::SocketDescription {
            socket: Some(info.clone()),
        });
        round_trip_worker(ToWorker::SocketDescription { socket: None });
        round_trip_worker(ToWorker::SocketDescriptions {
            sockets: vec![
                info,
                SocketInfo {
                    handle: H,
                    tags: vec![],
                    attachment: None,
                    auto_response_at_ms: 0,
                },
            ],
            more: true,
        });
        round_trip_edge(ToEdge::Confirm {
            token: u64::MAX - 1,
        });
        round_trip_worker(ToWorker::Confirmed { token: 1 << 40 });
        round_trip_edge(ToEdge::ListSockets {
            object: 9,
            tag: Some("t".into()),
        });
        round_trip_edge(ToEdge::DescribeSocket {
            object: 9,
            handle: H,
        });
        round_trip_edge(ToEdge::DescribeSockets {
            object: 9,
            after: Some(4),
        });
        round_trip_worker(ToWorker::Fetch {
            object: 1,
            request_id: 99,
            upgrade: Some(H),
            method: "GET".into(),
            uri: "/rooms/x?name=ada".into(),
            headers: vec![("upgrade".into(), Bytes::from_static(b"websocket"))],
            body: Bytes::new(),
            rpc: None,
            chain: vec![],
        });
        round_trip_worker(ToWorker::Fetch {
            object: 2,
            request_id: 7,
            upgrade: None,
            method: "POST".into(),
            uri: "/rpc".into(),
            headers: vec![],
            body: Bytes::from_static(b"[1]"),
            rpc: Some("add".into()),
            chain: vec!["ab".repeat(32)],
        });
        round_trip_worker(ToWorker::CallResult {
            call_id: 3,
            status: 200,
            headers: vec![],
            body: Bytes::from_static(b"{}"),
        });
        round_trip_edge(ToEdge::Call {
            caller: 1,
            call_id: 3,
            namespace: "BENCH".into(),
            id: "cd".repeat(32),
            name: Some("b".into()),
            chain: vec!["ab".repeat(32)],
            rpc: Some("echo".into()),
            method: "POST".into(),
            uri: "/".into(),
            headers: vec![],
            body: Bytes::from_static(b"\"hi\""),
            upgrade: None,
        });
        round_trip_edge(ToEdge::Call {
            caller: 1,
            call_id: 4,
            namespace: "ROOMS".into(),
            id: "cd".repeat(32),
            name: None,
            chain: vec![],
            rpc: None,
            method: "GET".into(),
            uri: "/rooms/a".into(),
            headers: vec![("upgrade".into(), Bytes::from_static(b"websocket"))],
            body: Bytes::new(),
            upgrade: Some(H),
        });
        round_trip_worker(ToWorker::Closed {
            object: 1,
            handle: H,
            code: 1006,
            reason: String::new(),
            was_clean: false,
            tags: vec!["t".into()],
            attachment: Some(Bytes::from_static(b"{}")),
        });
        round_trip_worker(ToWorker::Evict { object: 3 });
        round_trip_worker(ToWorker::Shutdown);
        round_trip_worker(ToWorker::Retired);
        round_trip_worker(ToWorker::Alarm {
            object: 4,
            retry_count: 2,
            last: false,
        });
        round_trip_edge(ToEdge::SetAlarm {
            namespace: "BENCH".into(),
            id: "ab".repeat(32),
            name: Some("b".into()),
            at_ms: Some(1_700_000_000_000),
        });
        round_trip_edge(ToEdge::SetAlarm {
            namespace: "BENCH".into(),
            id: "ab".repeat(32),
            name: None,
            at_ms: None,
        });
        round_trip_edge(ToEdge::Woke { object: 4 });
        round_trip_edge(ToEdge::Gather {
            namespace: "BENCH".into(),
            class: "Bench".into(),
            id: "ab".repeat(32),
            name: None,
        });
        round_trip_edge(ToEdge::StayUp);
        round_trip_edge(ToEdge::Retire);
        round_trip_edge(ToEdge::AlarmDone {
            object: 4,
            ok: false,
            at_ms: None,
        });
        round_trip_edge(ToEdge::AlarmIntent {
            namespace: "BENCH".into(),
            id: "ab".repeat(32),
            name: Some("b".into()),
            at_ms: 1_700_000_000_000,
        });
        round_trip_edge(ToEdge::SyncAlarm {
            namespace: "BENCH".into(),
            id: "ab".repeat(32),
            name: None,
            at_ms: Some(1_700_000_000_000),
        });
        round_trip_edge(ToEdge::FetchResponse {
            request_id: 99,
            status: 101,
            headers: vec![],
            body: Bytes::new(),
        });
        round_trip_edge(ToEdge::Accept {
            handle: H,
            tags: vec!["red".into()],
        });
        round_trip_edge(ToEdge::Send {
            handle: H,
            is_text: false,
            payload: Bytes::from_static(&[0, 1, 2]),
        });
        round_trip_edge(ToEdge::Close {
            handle: H,
            code: 4000,
            reason: "bye".into(),
        });
        round_trip_edge(ToEdge::SetAttachment {
            handle: H,
            attachment: None,
        });
        round_trip_edge(ToEdge::SetAutoResponse {
            object: 1,
            pair: None,
        });
        let out = round_trip_edge(ToEdge::SetAutoResponse {
            object: 1,
            pair: Some(AutoResponse {
                binary: true,
                request: Bytes::from_static(&[0xC0, 0x00]),
                response: Bytes::from_static(&[0xD0, 0x00]),
            }),
        });
        assert_eq!(hex(&out), "130000000601000000010102000000c00002000000d000");
        round_trip_edge(ToEdge::Done {
            object: 1,
            events: 4,
            rows_read: 10,
            rows_written: 3,
            stored_bytes: Some(4096),
            active_us: 1_500,
        });
        round_trip_edge(ToEdge::Idle {
            object: 1,
            handled: 12,
            active_us: 10_000_000,
        });
        round_trip_edge(ToEdge::IdleExit);
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering() {
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert!(matches!(
            split_frame(&mut buf),
            Err(DecodeError::FrameTooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = ToEdge::decode(Bytes::from(bytes.clone()));
            let _ = ToWorker::decode(Bytes::from(bytes));
        }

        #[test]
        fn payloads_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..2048), is_text: bool) {
            round_trip_edge(ToEdge::Send { handle: H, is_text, payload: Bytes::from(payload) });
        }
    }
}
