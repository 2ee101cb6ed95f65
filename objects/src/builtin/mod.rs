//! Classes the default worker ships, written only against `torpor-sdk`.

mod bench;
mod chat_room;
mod counter;
mod echo;
mod game_relay;
mod presence;

pub use bench::Bench;
pub use chat_room::ChatRoom;
pub use counter::Counter;
pub use echo::Echo;
pub use game_relay::GameRelay;
pub use presence::Presence;
