//! Finding server frames in a byte stream that arrives in pieces, without a
//! read buffer per connection.
//!
//! The traffic clients read every socket into one shared scratch buffer and
//! feed it here; a [`FrameScanner`] keeps only what a frame split across
//! reads needs (a partial header, the payload bytes still to come, and the
//! payload's first [`PREFIX_BYTES`], which is where a broadcast carries its
//! sequence number). About 50 bytes a connection, where a buffering client
//! would keep kilobytes. Payloads past the prefix are skipped, not kept.

use crate::wire::client::FrameError;

/// Payload bytes kept from the start of each frame.
pub const PREFIX_BYTES: usize = 24;

/// One complete frame as the scanner saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScannedFrame<'a> {
    pub fin: bool,
    pub opcode: u8,
    /// The whole payload's length.
    pub len: u64,
    /// The payload's first bytes (all of it if shorter than [`PREFIX_BYTES`]).
    pub prefix: &'a [u8],
}

/// Per-connection frame boundary state.
#[derive(Debug, Clone)]
pub struct FrameScanner {
    max_payload: u64,
    header: [u8; 10],
    header_have: u8,
    in_payload: bool,
    len: u64,
    left: u64,
    prefix: [u8; PREFIX_BYTES],
    prefix_have: u8,
}

impl FrameScanner {
    pub fn new(max_payload: u64) -> FrameScanner {
        FrameScanner {
            max_payload,
            header: [0; 10],
            header_have: 0,
            in_payload: false,
            len: 0,
            left: 0,
            prefix: [0; PREFIX_BYTES],
            prefix_have: 0,
        }
    }

    /// Header bytes the current frame needs: 2, then 4 or 10 once the length
    /// byte says so.
    fn header_needed(&self) -> usize {
        if self.header_have < 2 {
            return 2;
        }
        match self.header[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        }
    }

    /// Consumes `data`, calling `on_frame` for every frame it completes.
    /// Server frames must be unmasked and carry no reserved bits.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        mut on_frame: impl FnMut(ScannedFrame<'_>),
    ) -> Result<(), FrameError> {
        while !data.is_empty() {
            if !self.in_payload {
                let need = self.header_needed();
                let have = usize::from(self.header_have);
                let take = (need - have).min(data.len());
                self.header[have..have + take].copy_from_slice(&data[..take]);
                // `take` is at most 10.
                self.header_have += take as u8;
                data = &data[take..];
                if usize::from(self.header_have) < need || self.header_needed() > need {
                    // Either more bytes are needed, or the second byte just
                    // told us the header is longer: go round again.
                    continue;
                }
                self.start_payload()?;
                if self.left == 0 {
                    self.finish(&mut on_frame);
                }
                continue;
            }
            // `left` may exceed usize on 32-bit targets only in theory; the
            // min keeps the cast in range anyway.
            let take = self.left.min(data.len() as u64) as usize;
            let have = usize::from(self.prefix_have);
            let keep = take.min(PREFIX_BYTES - have);
            self.prefix[have..have + keep].copy_from_slice(&data[..keep]);
            self.prefix_have += keep as u8;
            self.left -= take as u64;
            data = &data[take..];
            if self.left == 0 {
                self.finish(&mut on_frame);
            }
        }
        Ok(())
    }

    fn start_payload(&mut self) -> Result<(), FrameError> {
        let [b0, b1, ..] = self.header;
        let reserved = b0 & 0x70;
        if reserved != 0 {
            return Err(FrameError::ReservedBits { bits: reserved });
        }
        if b1 & 0x80 != 0 {
            return Err(FrameError::Masked);
        }
        let len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(be)
            }
            short => u64::from(short),
        };
        if len > self.max_payload {
            return Err(FrameError::TooLarge {
                len,
                limit: self.max_payload,
            });
        }
        self.in_payload = true;
        self.len = len;
        self.left = len;
        self.prefix_have = 0;
        Ok(())
    }

    fn finish(&mut self, on_frame: &mut impl FnMut(ScannedFrame<'_>)) {
        on_frame(ScannedFrame {
            fin: self.header[0] & 0x80 != 0,
            opcode: self.header[0] & 0x0f,
            len: self.len,
            prefix: &self.prefix[..usize::from(self.prefix_have)],
        });
        self.in_payload = false;
        self.header_have = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unmasked server frame.
    fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn scan(scanner: &mut FrameScanner, pieces: &[&[u8]]) -> Seen {
        let mut seen = Vec::new();
        for piece in pieces {
            scanner
                .feed(piece, |f| seen.push((f.opcode, f.len, f.prefix.to_vec())))
                .unwrap();
        }
        seen
    }

    /// Opcode, length and prefix of each frame.
    type Seen = Vec<(u8, u64, Vec<u8>)>;

    fn stream() -> (Vec<u8>, Seen) {
        let big = vec![b'z'; 70_000];
        let medium = vec![b'm'; 300];
        let mut bytes = frame(1, b"pong");
        bytes.extend(frame(1, b""));
        bytes.extend(frame(1, b"17:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"));
        bytes.extend(frame(2, &medium));
        bytes.extend(frame(1, &big));
        bytes.extend(frame(8, &[0x03, 0xe8]));
        let want = vec![
            (1, 4, b"pong".to_vec()),
            (1, 0, Vec::new()),
            (1, 35, b"17:xxxxxxxxxxxxxxxxxxxxx".to_vec()),
            (2, 300, vec![b'm'; PREFIX_BYTES]),
            (1, 70_000, vec![b'z'; PREFIX_BYTES]),
            (8, 2, vec![0x03, 0xe8]),
        ];
        (bytes, want)
    }

    #[test]
    fn frames_in_one_piece() {
        let (bytes, want) = stream();
        assert_eq!(scan(&mut FrameScanner::new(1 << 20), &[&bytes]), want);
    }

    #[test]
    fn frames_split_at_every_boundary_come_out_the_same() {
        let (bytes, want) = stream();
        // Two pieces, cut everywhere within the first few frames and around
        // the large one's header.
        for cut in (0..400).chain(380..420) {
            let cut = cut.min(bytes.len());
            let mut scanner = FrameScanner::new(1 << 20);
            let seen = scan(&mut scanner, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(seen, want, "cut at {cut}");
        }
        // And one byte at a time.
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(scan(&mut FrameScanner::new(1 << 20), &pieces), want);
    }

    #[test]
    fn bad_frames_are_refused() {
        let mut s = FrameScanner::new(1024);
        assert_eq!(
            s.feed(&[0x81, 0x82, 1, 2, 3, 4], |_| {}),
            Err(FrameError::Masked)
        );
        let mut s = FrameScanner::new(1024);
        assert_eq!(
            s.feed(&[0xc1, 0x00], |_| {}),
            Err(FrameError::ReservedBits { bits: 0x40 })
        );
        let mut s = FrameScanner::new(1024);
        assert_eq!(
            s.feed(&frame(1, &[0; 2000]), |_| {}),
            Err(FrameError::TooLarge {
                len: 2000,
                limit: 1024
            })
        );
    }

    #[test]
    fn fin_is_reported() {
        let mut s = FrameScanner::new(1024);
        let mut fins = Vec::new();
        s.feed(&[0x01, 0x01, b'a', 0x80, 0x01, b'b'], |f| fins.push(f.fin))
            .unwrap();
        assert_eq!(fins, [false, true]);
    }
}
