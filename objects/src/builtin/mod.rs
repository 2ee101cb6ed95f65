//! Classes the default worker ships, written only against `torpor-sdk`.

mod bench;
mod chat_room;
mod counter;
mod echo;

pub use bench::Bench;
pub use chat_room::ChatRoom;
pub use counter::Counter;
pub use echo::Echo;

use crate::Registry;

/// The registry of the default worker: `ChatRoom`, `Bench`, `Echo`, `Counter`.
pub fn registry() -> Registry {
    Registry::new()
        .with::<ChatRoom>("ChatRoom")
        .with::<Counter>("Counter")
        .with::<Bench>("Bench")
        .with::<Echo>("Echo")
}
