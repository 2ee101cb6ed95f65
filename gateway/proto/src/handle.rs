//! Identifiers that cross process boundaries.

use std::fmt;

/// A socket held by an edge: which edge, which slab slot, and the slot's
/// generation, so that a stale handle never reaches another client's socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketHandle {
    /// Index of the edge process holding the socket.
    pub edge: u16,
    /// Slot in that edge's socket slab.
    pub slot: u32,
    /// Incremented every time the slot is reused.
    pub generation: u32,
}

impl SocketHandle {
    /// Packs the handle into one integer, for maps and logs.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.edge) << 48) ^ (u64::from(self.slot) << 24) ^ u64::from(self.generation)
    }
}

impl fmt::Display for SocketHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.edge, self.slot, self.generation)
    }
}
