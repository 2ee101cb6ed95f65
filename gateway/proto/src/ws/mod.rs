//! The server side of RFC 6455: frame headers, the per-socket decoder state
//! machine, close codes, and the frames the edge writes.
//!
//! Not here: the HTTP handshake (the front door does it) and any socket I/O.

mod conn;
mod error;
mod frame;

pub use conn::{Conn, Event, Limits, Suspended};
pub use error::ProtocolError;
pub use frame::{
    apply_mask, close_payload, decode_header, encode_frame, encode_header, is_valid_close_code,
    FrameHeader, OpCode,
};
