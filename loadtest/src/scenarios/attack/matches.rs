//! The `matches` attack: GameRelay matches (`/games/<run>-m<m>?tick_ms=N`)
//! whose players keep them active, so each match's alarm ticks every
//! `tick_ms` and every player gets every tick. The load is the ticks: one
//! alarm, one storage commit and one frame per player, per match, every
//! 10 ms. Measured beside the fresh client: the ticks each player got, and
//! the gaps between them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::sockets::upgrade;
use super::Ctx;
use crate::wire::client::{close_code, decode_frame, encode_frame, OPCODE_CLOSE};

const OPCODE_BINARY: u8 = 0x2;
/// The first byte of a tick frame, then the tick number (u64, big-endian).
const TICK_MARKER: u8 = 0xFF;
/// Keeps each match active (GameRelay stops ticking after idle_ms, 2 s by
/// default, without a player's frame) while staying far below the ticks,
/// which are the load.
const INPUT_EVERY: Duration = Duration::from_millis(500);
/// Ticks are 9 bytes and relayed inputs 16; anything larger is a fault.
const MAX_FRAME_BYTES: u64 = 64 * 1024;
const MASK: [u8; 4] = [0x21, 0x7e, 0x90, 0x0b];

/// The path of match `m`.
pub fn match_path(run_id: &str, m: u64, tick_ms: u64) -> String {
    format!("/games/{run_id}-m{m}?tick_ms={tick_ms}")
}

/// Player `player`'s input: 16 bytes that never start with the tick marker.
pub fn input(player: u64) -> Vec<u8> {
    let mut payload = vec![0x01; 16];
    payload[1..9].copy_from_slice(&player.to_be_bytes());
    encode_frame(OPCODE_BINARY, &payload, MASK)
}

/// The tick number of a frame's payload, if it is a tick.
pub fn tick_of(payload: &[u8]) -> Option<u64> {
    match payload {
        [TICK_MARKER, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

/// Player `n` (match `n / players`): joins, sends an input every
/// [`INPUT_EVERY`] and reads every frame until the node ends the socket
/// (returning how) or the attack stops.
pub async fn play(
    ctx: &Ctx,
    mut stream: TcpStream,
    n: u64,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let players = u64::from(ctx.opts.players.max(1));
    let path = match_path(&ctx.run_id, n / players, ctx.opts.tick_ms);
    let mut buf = match upgrade(&mut stream, &ctx.target.host, &path).await {
        Ok(early) => early,
        Err(why) => return Some(why),
    };
    let frame = input(n % players);
    let mut inputs = tokio::time::interval(INPUT_EVERY);
    let mut last_tick: Option<Instant> = None;
    loop {
        // Whole frames first: the upgrade's read may have brought some.
        let mut consumed = 0;
        loop {
            let decoded = match decode_frame(&buf[consumed..], MAX_FRAME_BYTES) {
                Ok(decoded) => decoded,
                Err(e) => return Some(format!("bad frame: {e}")),
            };
            let Some((frame, len)) = decoded else {
                break;
            };
            consumed += len;
            if frame.opcode == OPCODE_CLOSE {
                let code = close_code(frame.payload).map_or("-".into(), |c| c.to_string());
                return Some(format!("closed by server ({code})"));
            }
            match tick_of(frame.payload) {
                Some(_) => {
                    let now = Instant::now();
                    if let Some(last) = last_tick.replace(now) {
                        ctx.latency.borrow_mut().record(now - last);
                    }
                    ctx.counts.ops.fetch_add(1, Ordering::Relaxed);
                }
                None => ctx.counts.tally("relayed_received", 1),
            }
        }
        buf.drain(..consumed);
        tokio::select! {
            read = stream.read_buf(&mut buf) => match read {
                Ok(0) => return Some("closed by server".into()),
                Ok(got) => {
                    ctx.counts.bytes_received.fetch_add(got as u64, Ordering::Relaxed);
                }
                Err(e) => return Some(format!("read failed: {}", e.kind())),
            },
            _ = inputs.tick() => {
                // Written in the branch, not raced: a cut input would be a
                // torn frame.
                if let Err(e) = stream.write_all(&frame).await {
                    return Some(format!("write failed: {}", e.kind()));
                }
                ctx.counts.tally("inputs_sent", 1);
                ctx.counts.bytes_sent.fetch_add(frame.len() as u64, Ordering::Relaxed);
            }
            _ = stop.wait_for(|s| *s) => {
                ctx.counts.count("held to the end");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_the_marker_and_eight_bytes() {
        let mut tick = vec![TICK_MARKER];
        tick.extend_from_slice(&42u64.to_be_bytes());
        assert_eq!(tick_of(&tick), Some(42));
        assert_eq!(tick_of(&tick[..8]), None, "short");
        assert_eq!(tick_of(&[1; 9]), None, "a relayed input");
        assert_eq!(tick_of(&[]), None);
    }

    #[test]
    fn inputs_are_never_ticks() {
        for player in [0, 1, u64::MAX] {
            let frame = input(player);
            // Unmask the 16-byte payload after the 2-byte header and mask.
            let payload: Vec<u8> = frame[6..]
                .iter()
                .zip(MASK.iter().cycle())
                .map(|(b, m)| b ^ m)
                .collect();
            assert_eq!(payload.len(), 16);
            assert_eq!(tick_of(&payload), None);
            assert_eq!(payload[1..9], player.to_be_bytes());
        }
    }

    #[test]
    fn players_of_a_match_share_its_path() {
        assert_eq!(match_path("atk1p2", 3, 10), "/games/atk1p2-m3?tick_ms=10");
    }
}
