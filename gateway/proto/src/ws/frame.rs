//! Frame headers (RFC 6455 §5.2): decoding client frames, encoding server
//! frames (never masked), masking, and close payloads.

use super::ProtocolError;

/// Frame opcodes that RFC 6455 defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// A UTF-8 text message (or its first fragment).
    Text,
    /// A binary message (or its first fragment).
    Binary,
    /// Starts or answers the close handshake.
    Close,
    /// Asks for a pong.
    Ping,
    /// Answers a ping (or is unsolicited).
    Pong,
}

impl OpCode {
    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn from_bits(bits: u8) -> Result<OpCode, ProtocolError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(ProtocolError::ReservedOpcode(other)),
        })
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Last fragment of a message.
    pub fin: bool,
    /// RSV1-3 as the low three bits.
    pub rsv: u8,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// The masking key, when the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

/// Decodes a frame header from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold the whole header, and the
/// header with its length in bytes otherwise. Reserved opcodes and invalid
/// lengths are errors; masking and reserved bits are left to the caller, which
/// knows its role.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let opcode = OpCode::from_bits(b0 & 0x0F)?;
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut len) = match b1 & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(bytes);
            let n = u64::from_be_bytes(be);
            if n >> 63 != 0 {
                return Err(ProtocolError::InvalidLength);
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let Some(key) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        len += 4;
        Some([key[0], key[1], key[2], key[3]])
    } else {
        None
    };
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, len)))
}

/// Appends an unmasked (server) frame header to `out`.
pub fn encode_header(out: &mut Vec<u8>, fin: bool, opcode: OpCode, payload_len: usize) {
    out.push(if fin { 0x80 } else { 0 } | opcode.bits());
    match payload_len {
        0..=125 => out.push(payload_len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(payload_len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(payload_len as u64).to_be_bytes());
        }
    }
}

/// One complete unmasked server frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    // Exactly the frame's size: `Bytes::from` takes a full Vec as it is,
    // but gives one with spare capacity a second allocation.
    let header = match payload.len() {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    let mut out = Vec::with_capacity(header + payload.len());
    encode_header(&mut out, true, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// The payload of a close frame: code then reason, the reason cut to fit the
/// 125 bytes of a control frame on a character boundary.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Vec::with_capacity(2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

/// XORs `buf` with the masking key; `offset` is the position of `buf[0]` in
/// the frame's payload, so a payload can be unmasked in pieces.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut rotated = [0u8; 4];
    for (i, byte) in rotated.iter_mut().enumerate() {
        *byte = key[(offset + i) % 4];
    }
    let word = u32::from_ne_bytes(rotated);
    let mut chunks = buf.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i];
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_frame_has_no_spare_capacity() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let frame = encode_frame(OpCode::Binary, &vec![7; len]);
            assert_eq!(frame.capacity(), frame.len(), "payload of {len} bytes");
        }
    }

    #[test]
    fn header_lengths_round_trip_through_all_three_encodings() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
            let mut out = Vec::new();
            encode_header(&mut out, true, OpCode::Binary, len);
            let (header, used) = decode_header(&out).unwrap().unwrap();
            assert_eq!(used, out.len());
            assert_eq!(header.payload_len, len as u64);
            assert!(header.fin);
            assert_eq!(header.mask, None);
        }
    }

    #[test]
    fn partial_header_asks_for_more() {
        let mut out = Vec::new();
        encode_header(&mut out, true, OpCode::Text, 70000);
        for cut in 0..out.len() {
            assert_eq!(decode_header(&out[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn reserved_opcode_is_refused() {
        assert_eq!(
            decode_header(&[0x83, 0x80]),
            Err(ProtocolError::ReservedOpcode(3))
        );
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 250];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(7);
        apply_mask(a, key, 0);
        apply_mask(b, key, 7);
        assert_eq!(whole, pieces);
        apply_mask(&mut whole, key, 0);
        assert_eq!(whole, data);
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let payload = close_payload(1000, &reason);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }
}
