//! Classes the default worker ships, written only against `torpor-sdk`.

mod bench;
mod chat_room;
mod echo;

pub use bench::Bench;
pub use chat_room::ChatRoom;
pub use echo::Echo;

use crate::Registry;

/// The registry of the default worker: `ChatRoom`, `Bench`, `Echo`.
pub fn registry() -> Registry {
    Registry::new()
        .with::<ChatRoom>("ChatRoom")
        .with::<Bench>("Bench")
        .with::<Echo>("Echo")
}
