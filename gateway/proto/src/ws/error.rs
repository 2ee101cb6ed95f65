//! Violations of RFC 6455 by a client, each with the close code the edge sends.

use std::fmt;

/// A client broke the protocol or a limit; the socket is closed with
/// [`ProtocolError::close_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A client frame without a mask (RFC 6455 §5.1).
    UnmaskedFrame,
    /// RSV1-3 set without a negotiated extension.
    ReservedBits,
    /// Opcode 3-7 or 0xB-0xF.
    ReservedOpcode(u8),
    /// A control frame with FIN clear.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong(u64),
    /// A continuation frame with no message in progress.
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is still in progress.
    ExpectedContinuation,
    /// A text message that is not UTF-8.
    InvalidUtf8,
    /// A close frame with a one-byte payload or a code that must not be sent.
    InvalidClosePayload,
    /// A message larger than the configured limit.
    MessageTooBig {
        /// Bytes the message would have (at least).
        size: u64,
        /// The limit in force.
        limit: usize,
    },
    /// A 64-bit length with the most significant bit set.
    InvalidLength,
}

impl ProtocolError {
    /// The close code the edge answers with.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8 => 1007,
            ProtocolError::MessageTooBig { .. } => 1009,
            _ => 1002,
        }
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::UnmaskedFrame => "unmasked",
            ProtocolError::ReservedBits => "reserved_bits",
            ProtocolError::ReservedOpcode(_) => "reserved_opcode",
            ProtocolError::FragmentedControl => "fragmented_control",
            ProtocolError::ControlTooLong(_) => "control_too_long",
            ProtocolError::UnexpectedContinuation => "unexpected_continuation",
            ProtocolError::ExpectedContinuation => "expected_continuation",
            ProtocolError::InvalidUtf8 => "invalid_utf8",
            ProtocolError::InvalidClosePayload => "invalid_close",
            ProtocolError::MessageTooBig { .. } => "too_big",
            ProtocolError::InvalidLength => "invalid_length",
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::ReservedBits => f.write_str("reserved bits set"),
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::FragmentedControl => f.write_str("fragmented control frame"),
            ProtocolError::ControlTooLong(n) => {
                write!(f, "control frame of {n} bytes, limit 125")
            }
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message")
            }
            ProtocolError::ExpectedContinuation => {
                f.write_str("new message before the last one finished")
            }
            ProtocolError::InvalidUtf8 => f.write_str("text is not valid utf-8"),
            ProtocolError::InvalidClosePayload => f.write_str("invalid close frame"),
            ProtocolError::MessageTooBig { size, limit } => {
                write!(f, "message of {size} bytes, limit {limit}")
            }
            ProtocolError::InvalidLength => f.write_str("invalid 64-bit payload length"),
        }
    }
}

impl std::error::Error for ProtocolError {}
