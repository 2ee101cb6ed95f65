//! The per-socket decoder: turns bytes from a client into messages and control
//! frames, enforcing RFC 6455 and the message size limit.
//!
//! An idle socket owns no buffer: `Conn` is two words until a frame arrives
//! split across reads or a message arrives in fragments, and it returns to
//! that as soon as the frame or message is complete.

use super::frame::{apply_mask, decode_header, is_valid_close_code, OpCode};
use super::ProtocolError;

/// Limits the decoder enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest message, all fragments together.
    pub max_message_bytes: usize,
}

/// What a client sent, borrowed from the bytes just handled.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A complete text message, already checked to be UTF-8.
    Text(&'a [u8]),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A ping; the edge answers with a pong carrying the same payload.
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// The client's close frame; nothing after it is read.
    Close {
        /// The status code, if the frame had one.
        code: Option<u16>,
        /// The reason, UTF-8.
        reason: &'a str,
    },
}

/// A [`Conn`]'s state between reads, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Suspended {
    /// Bytes of a frame that has not fully arrived.
    pub pending: Vec<u8>,
    /// While a fragmented message is being assembled: whether it is text.
    pub fragmented_text: Option<bool>,
    /// The fragments' payload so far.
    pub fragments: Vec<u8>,
    /// The client's Close has been read.
    pub close_received: bool,
}

/// Decoder state of one server-side WebSocket.
#[derive(Debug, Default)]
pub struct Conn {
    partial: Option<Box<Partial>>,
    close_received: bool,
}

#[derive(Debug, Default)]
struct Partial {
    /// Bytes of a frame that has not fully arrived.
    pending: Vec<u8>,
    /// A fragmented message being assembled.
    message: Option<Fragmented>,
}

#[derive(Debug)]
struct Fragmented {
    is_text: bool,
    data: Vec<u8>,
    /// Prefix of `data` known to be valid UTF-8 (ends on a char boundary).
    utf8_checked: usize,
}

impl Conn {
    /// Feeds bytes read from the socket. Complete messages and control frames
    /// go to `on_event` in order, unmasked in place inside `data` when they
    /// arrived whole. An error means the socket must be closed with its
    /// [`ProtocolError::close_code`]; the `Conn` is then spent.
    ///
    /// Events borrow either `data` or this `Conn`'s buffers, which is why they
    /// go to a callback rather than out of a `poll_*` method.
    pub fn handle_bytes(
        &mut self,
        data: &mut [u8],
        limits: &Limits,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        if self.close_received {
            return Ok(());
        }
        let mut pending = self
            .partial
            .as_mut()
            .map(|partial| std::mem::take(&mut partial.pending))
            .unwrap_or_default();
        let result = if pending.is_empty() {
            self.parse(data, limits, on_event).map(|consumed| {
                pending.extend_from_slice(&data[consumed..]);
            })
        } else {
            pending.extend_from_slice(data);
            self.parse(&mut pending, limits, on_event).map(|consumed| {
                pending.drain(..consumed);
            })
        };
        result?;
        if !pending.is_empty() && !self.close_received {
            self.partial.get_or_insert_with(Default::default).pending = pending;
        }
        if self
            .partial
            .as_ref()
            .is_some_and(|p| p.pending.is_empty() && p.message.is_none())
        {
            self.partial = None;
        }
        Ok(())
    }

    /// What the decoder holds between reads, so that another process can
    /// go on decoding the same connection ([`Conn::resume`]).
    pub fn suspend(&self) -> Suspended {
        let partial = self.partial.as_deref();
        let message = partial.and_then(|p| p.message.as_ref());
        Suspended {
            pending: partial.map(|p| p.pending.clone()).unwrap_or_default(),
            fragmented_text: message.map(|m| m.is_text),
            fragments: message.map(|m| m.data.clone()).unwrap_or_default(),
            close_received: self.close_received,
        }
    }

    /// A decoder that goes on where [`Conn::suspend`] left off.
    pub fn resume(state: Suspended) -> Conn {
        let message = state.fragmented_text.map(|is_text| Fragmented {
            is_text,
            data: state.fragments,
            // Checked again from the start: a suspended state is not trusted.
            utf8_checked: 0,
        });
        let partial = (!state.pending.is_empty() || message.is_some()).then(|| {
            Box::new(Partial {
                pending: state.pending,
                message,
            })
        });
        Conn {
            partial,
            close_received: state.close_received,
        }
    }

    /// True when the socket owns no buffer.
    pub fn is_idle(&self) -> bool {
        self.partial.is_none()
    }

    /// True once the client's close frame has been read.
    pub fn is_close_received(&self) -> bool {
        self.close_received
    }

    fn message_len(&self) -> Option<usize> {
        self.partial
            .as_ref()
            .and_then(|p| p.message.as_ref())
            .map(|m| m.data.len())
    }

    fn parse(
        &mut self,
        buf: &mut [u8],
        limits: &Limits,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<usize, ProtocolError> {
        let mut pos = 0;
        while !self.close_received {
            let Some((header, header_len)) = decode_header(&buf[pos..])? else {
                break;
            };
            if header.rsv != 0 {
                return Err(ProtocolError::ReservedBits);
            }
            let Some(key) = header.mask else {
                return Err(ProtocolError::UnmaskedFrame);
            };
            if header.opcode.is_control() {
                if !header.fin {
                    return Err(ProtocolError::FragmentedControl);
                }
                if header.payload_len > 125 {
                    return Err(ProtocolError::ControlTooLong(header.payload_len));
                }
            } else {
                let so_far = self.message_len();
                match (header.opcode, so_far) {
                    (OpCode::Continuation, None) => {
                        return Err(ProtocolError::UnexpectedContinuation)
                    }
                    (OpCode::Text | OpCode::Binary, Some(_)) => {
                        return Err(ProtocolError::ExpectedContinuation)
                    }
                    _ => {}
                }
                let size = so_far.unwrap_or(0) as u64 + header.payload_len;
                if size > limits.max_message_bytes as u64 {
                    return Err(ProtocolError::MessageTooBig {
                        size,
                        limit: limits.max_message_bytes,
                    });
                }
            }
            // Bounded above by the message limit or 125, so it fits a usize.
            let payload_len = header.payload_len as usize;
            let start = pos + header_len;
            let end = start + payload_len;
            if end > buf.len() {
                break;
            }
            pos = end;
            let payload = &mut buf[start..end];
            apply_mask(payload, key, 0);
            self.dispatch(header.opcode, header.fin, payload, on_event)?;
        }
        Ok(pos)
    }

    fn dispatch(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<(), ProtocolError> {
        match opcode {
            OpCode::Ping => on_event(Event::Ping(payload)),
            OpCode::Pong => on_event(Event::Pong(payload)),
            OpCode::Close => {
                let (code, reason) = parse_close(payload)?;
                self.close_received = true;
                self.partial = None;
                on_event(Event::Close { code, reason });
            }
            OpCode::Text | OpCode::Binary if fin => {
                if opcode == OpCode::Text {
                    std::str::from_utf8(payload).map_err(|_| ProtocolError::InvalidUtf8)?;
                    on_event(Event::Text(payload));
                } else {
                    on_event(Event::Binary(payload));
                }
            }
            OpCode::Text | OpCode::Binary => {
                let mut message = Fragmented {
                    is_text: opcode == OpCode::Text,
                    data: payload.to_vec(),
                    utf8_checked: 0,
                };
                message.check_utf8(false)?;
                self.partial.get_or_insert_with(Default::default).message = Some(message);
            }
            OpCode::Continuation => {
                let partial = self.partial.get_or_insert_with(Default::default);
                let Some(message) = partial.message.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                message.data.extend_from_slice(payload);
                message.check_utf8(fin)?;
                if fin {
                    if let Some(message) = partial.message.take() {
                        on_event(if message.is_text {
                            Event::Text(&message.data)
                        } else {
                            Event::Binary(&message.data)
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl Fragmented {
    /// Validates what arrived since the last check, so invalid text fails as
    /// soon as the bad fragment arrives (and a code point may straddle two).
    fn check_utf8(&mut self, complete: bool) -> Result<(), ProtocolError> {
        if !self.is_text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.utf8_checked..]) {
            Ok(_) => self.utf8_checked = self.data.len(),
            Err(e) if e.error_len().is_none() && !complete => self.utf8_checked += e.valid_up_to(),
            Err(_) => return Err(ProtocolError::InvalidUtf8),
        }
        Ok(())
    }
}

fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), ProtocolError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(ProtocolError::InvalidClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidClosePayload);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_message_bytes: 1 << 16,
    };

    /// A client-side frame: masked, as a browser would send it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&key);
        let mut body = payload.to_vec();
        apply_mask(&mut body, key, 0);
        out.extend_from_slice(&body);
        out
    }

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum Owned {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    fn feed(conn: &mut Conn, bytes: &[u8]) -> (Vec<Owned>, Result<(), ProtocolError>) {
        let mut events = Vec::new();
        let mut data = bytes.to_vec();
        let result = conn.handle_bytes(&mut data, &LIMITS, &mut |event| {
            events.push(match event {
                Event::Text(t) => Owned::Text(t.to_vec()),
                Event::Binary(b) => Owned::Binary(b.to_vec()),
                Event::Ping(p) => Owned::Ping(p.to_vec()),
                Event::Pong(p) => Owned::Pong(p.to_vec()),
                Event::Close { code, reason } => Owned::Close(code, reason.to_owned()),
            })
        });
        (events, result)
    }

    fn error_of(bytes: &[u8]) -> ProtocolError {
        let (_, result) = feed(&mut Conn::default(), bytes);
        result.unwrap_err()
    }

    #[test]
    fn whole_text_frame_is_one_event_and_leaves_no_buffer() {
        let mut conn = Conn::default();
        let (events, result) = feed(&mut conn, &client_frame(true, 1, b"hello"));
        result.unwrap();
        assert_eq!(events, vec![Owned::Text(b"hello".to_vec())]);
        assert!(conn.is_idle());
    }

    #[test]
    fn unmasked_frame_closes_with_1002() {
        let err = error_of(&[0x81, 0x02, b'h', b'i']);
        assert_eq!(err, ProtocolError::UnmaskedFrame);
        assert_eq!(err.close_code(), 1002);
    }

    #[test]
    fn reserved_bits_and_opcodes_close_with_1002() {
        let mut frame = client_frame(true, 1, b"x");
        frame[0] |= 0x40;
        assert_eq!(error_of(&frame), ProtocolError::ReservedBits);
        assert_eq!(error_of(&client_frame(true, 3, b"x")).close_code(), 1002);
        assert_eq!(error_of(&client_frame(true, 0xB, b"")).close_code(), 1002);
    }

    #[test]
    fn invalid_utf8_closes_with_1007() {
        let err = error_of(&client_frame(true, 1, &[0xC3, 0x28]));
        assert_eq!(err.close_code(), 1007);
    }

    #[test]
    fn invalid_utf8_in_a_fragment_fails_before_the_message_ends() {
        let mut conn = Conn::default();
        let (_, first) = feed(&mut conn, &client_frame(false, 1, &[b'a', 0xC3]));
        first.unwrap();
        let (_, second) = feed(&mut conn, &client_frame(false, 0, &[0x28]));
        assert_eq!(second, Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn code_point_split_across_fragments_is_valid() {
        let euro = "€".as_bytes();
        let mut bytes = client_frame(false, 1, &euro[..1]);
        bytes.extend(client_frame(false, 0, &euro[1..2]));
        bytes.extend(client_frame(true, 0, &euro[2..]));
        let (events, result) = feed(&mut Conn::default(), &bytes);
        result.unwrap();
        assert_eq!(events, vec![Owned::Text(euro.to_vec())]);
    }

    #[test]
    fn truncated_code_point_at_the_end_is_invalid() {
        let mut bytes = client_frame(false, 1, b"a");
        bytes.extend(client_frame(true, 0, &[0xE2, 0x82]));
        assert_eq!(error_of(&bytes), ProtocolError::InvalidUtf8);
    }

    #[test]
    fn control_frames_may_come_between_fragments() {
        let mut bytes = client_frame(false, 2, b"ab");
        bytes.extend(client_frame(true, 9, b"p"));
        bytes.extend(client_frame(true, 0, b"cd"));
        let (events, result) = feed(&mut Conn::default(), &bytes);
        result.unwrap();
        assert_eq!(
            events,
            vec![Owned::Ping(b"p".to_vec()), Owned::Binary(b"abcd".to_vec())]
        );
    }

    #[test]
    fn fragmentation_errors_close_with_1002() {
        assert_eq!(
            error_of(&client_frame(true, 0, b"x")),
            ProtocolError::UnexpectedContinuation
        );
        let mut bytes = client_frame(false, 1, b"x");
        bytes.extend(client_frame(true, 1, b"y"));
        assert_eq!(error_of(&bytes), ProtocolError::ExpectedContinuation);
        assert_eq!(
            error_of(&client_frame(false, 9, b"")),
            ProtocolError::FragmentedControl
        );
        assert_eq!(
            error_of(&client_frame(true, 9, &[0; 126])),
            ProtocolError::ControlTooLong(126)
        );
    }

    #[test]
    fn message_over_the_limit_fails_on_the_header_alone() {
        let frame = client_frame(true, 2, &vec![0; LIMITS.max_message_bytes + 1]);
        let err = error_of(&frame[..14]);
        assert_eq!(err.close_code(), 1009);
    }

    #[test]
    fn fragments_adding_up_past_the_limit_close_with_1009() {
        let half = vec![0; LIMITS.max_message_bytes / 2 + 1];
        let mut bytes = client_frame(false, 2, &half);
        bytes.extend(client_frame(true, 0, &half));
        assert_eq!(error_of(&bytes).close_code(), 1009);
    }

    #[test]
    fn close_frames_are_checked() {
        let (events, result) = feed(&mut Conn::default(), &client_frame(true, 8, &[0x03, 0xE8]));
        result.unwrap();
        assert_eq!(events, vec![Owned::Close(Some(1000), String::new())]);
        assert_eq!(
            error_of(&client_frame(true, 8, &[0x03])),
            ProtocolError::InvalidClosePayload
        );
        // 1005 and 1006 must never be sent on the wire.
        assert_eq!(
            error_of(&client_frame(true, 8, &1006u16.to_be_bytes())),
            ProtocolError::InvalidClosePayload
        );
        let mut bad_reason = 1000u16.to_be_bytes().to_vec();
        bad_reason.push(0xFF);
        assert_eq!(
            error_of(&client_frame(true, 8, &bad_reason)).close_code(),
            1007
        );
    }

    #[test]
    fn nothing_is_read_after_a_close() {
        let mut bytes = client_frame(true, 8, &[]);
        bytes.extend(client_frame(true, 1, b"late"));
        let (events, result) = feed(&mut Conn::default(), &bytes);
        result.unwrap();
        assert_eq!(events, vec![Owned::Close(None, String::new())]);
    }

    fn stream() -> Vec<u8> {
        let mut bytes = client_frame(true, 1, b"hello");
        bytes.extend(client_frame(false, 1, "ünï".as_bytes()));
        bytes.extend(client_frame(true, 10, b"pong"));
        bytes.extend(client_frame(true, 0, "cødé".as_bytes()));
        bytes.extend(client_frame(true, 2, &[7; 300]));
        bytes.extend(client_frame(true, 2, &[9; 60000]));
        bytes.extend(client_frame(true, 8, &[0x03, 0xE9, b'b', b'y', b'e']));
        bytes
    }

    proptest! {
        #[test]
        fn a_stream_split_anywhere_decodes_the_same(cuts in proptest::collection::vec(0usize..62000, 0..12)) {
            let bytes = stream();
            let (expected, result) = feed(&mut Conn::default(), &bytes);
            result.unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            let mut conn = Conn::default();
            let mut events = Vec::new();
            let mut last = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                let (mut got, result) = feed(&mut conn, &bytes[last..cut]);
                result.unwrap();
                events.append(&mut got);
                last = cut;
            }
            prop_assert_eq!(events, expected);
        }

        /// A connection handed to another process between any two reads
        /// decodes as if it never moved.
        #[test]
        fn a_stream_suspended_between_reads_decodes_the_same(cuts in proptest::collection::vec(0usize..62000, 0..12)) {
            let bytes = stream();
            let (expected, result) = feed(&mut Conn::default(), &bytes);
            result.unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            let mut conn = Conn::default();
            let mut events = Vec::new();
            let mut last = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                let (mut got, result) = feed(&mut conn, &bytes[last..cut]);
                result.unwrap();
                events.append(&mut got);
                conn = Conn::resume(conn.suspend());
                last = cut;
            }
            prop_assert_eq!(events, expected);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = feed(&mut Conn::default(), &bytes);
        }
    }
}
