//! `GameRelay`: relays each player's binary frames to the other players of
//! a match and, while the match is active, sends everyone a numbered tick
//! driven by the object's alarm. When the players go quiet the ticks stop
//! and no alarm is left, so the match hibernates with its sockets open.
//!
//! Wire protocol, at `/games/{match}`:
//! - WebSocket upgrade, optionally with `?tick_ms=N` (10 to 10000, default
//!   100) and `?idle_ms=N` (100 to 600000, default 2000); a value out of
//!   range or not a number is a 400. The first join of the match stores
//!   them in KV and they are kept for the match: later joins cannot change
//!   them.
//! - A binary frame is relayed unchanged to every other player (never back
//!   to its sender) and marks the match active.
//! - While some player sent a binary frame within the last `idle_ms`, every
//!   player gets a tick every `tick_ms`: a 9-byte binary frame, `0xFF` then
//!   the tick number as a big-endian u64 (1, 2, ...; the count is kept in
//!   storage, so it survives hibernation). Relayed frames are not altered,
//!   so players should not start their own frames with `0xFF`.
//! - Text `state` is answered with `{"players":N,"ticks":T}`; text `ping`
//!   is answered `pong` by the edge without waking the match; any other text
//!   gets `{"error":"..."}`.
//! - Plain `GET /games/{match}` returns the same summary as `state`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use torpor_sdk::{
    AlarmInfo, DurableObject, Env, HandlerResult, Message, Request, Response, State, WebSocket,
};

/// KV key of the match's [`MatchConfig`].
const CONFIG: &str = "config";
/// KV key of the number of ticks sent so far.
const TICKS: &str = "ticks";
/// KV key of when (ms since the epoch) a player last sent a binary frame.
const LAST_ACTIVE_MS: &str = "last_active_ms";
/// KV key of when (ms since the epoch) the pending tick is due.
const NEXT_TICK_MS: &str = "next_tick_ms";

/// First byte of a tick frame.
const TICK_MARKER: u8 = 0xFF;
const DEFAULT_TICK_MS: u64 = 100;
const TICK_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=10_000;
const DEFAULT_IDLE_MS: u64 = 2_000;
const IDLE_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;
/// The activity stamp is rewritten only once it is this fraction of
/// `idle_ms` old: a stamp that fresh already keeps the match ticking, and a
/// write on every relayed frame would cost a commit per frame.
const ACTIVITY_RESOLUTION_DIVISOR: u64 = 10;

/// The settings the first player chose, kept for the match.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct MatchConfig {
    tick_ms: u64,
    idle_ms: u64,
}

impl Default for MatchConfig {
    fn default() -> MatchConfig {
        MatchConfig {
            tick_ms: DEFAULT_TICK_MS,
            idle_ms: DEFAULT_IDLE_MS,
        }
    }
}

#[derive(Serialize)]
struct Summary {
    players: usize,
    ticks: u64,
}

/// A match relay at `/games/{match}?tick_ms=50`.
pub struct GameRelay {
    state: State,
    /// Loaded on first use; it never changes once stored.
    config: Option<MatchConfig>,
}

impl GameRelay {
    /// The stored settings, or `None` before the first join.
    fn config(&mut self) -> HandlerResult<Option<MatchConfig>> {
        if self.config.is_none() {
            self.config = self.state.storage().get_json(CONFIG)?;
        }
        Ok(self.config)
    }

    fn summary(&self) -> HandlerResult<Summary> {
        Ok(Summary {
            players: self.state.get_websockets(None).len(),
            ticks: self.state.storage().get_json(TICKS)?.unwrap_or(0),
        })
    }

    /// Stamps the match active and, if it was not ticking, schedules the
    /// first tick.
    fn note_activity(&mut self) -> HandlerResult<()> {
        let config = self.config()?.unwrap_or_default();
        let storage = self.state.storage();
        let now = now_ms();
        let last: u64 = storage.get_json(LAST_ACTIVE_MS)?.unwrap_or(0);
        // When the stamp is this fresh, the last write already made sure the
        // alarm is set and every tick since has seen the match active.
        if now.abs_diff(last) < config.idle_ms / ACTIVITY_RESOLUTION_DIVISOR {
            return Ok(());
        }
        storage.put_json(LAST_ACTIVE_MS, &now)?;
        if storage.get_alarm()?.is_none() {
            let due = now.saturating_add(config.tick_ms);
            storage.put_json(NEXT_TICK_MS, &due)?;
            storage.set_alarm(at(due))?;
        }
        Ok(())
    }
}

impl DurableObject for GameRelay {
    fn new(state: State, _env: Env) -> GameRelay {
        GameRelay {
            state,
            config: None,
        }
    }

    async fn fetch(&mut self, request: Request) -> HandlerResult<Response> {
        if !request.is_websocket_upgrade() {
            if request.method() != "GET" {
                return Ok(Response::error(405, "use GET, or connect with a websocket")
                    .with_header("allow", "GET"));
            }
            return Ok(Response::json(&self.summary()?)?);
        }
        let chosen = match (
            ms_param(&request, "tick_ms", TICK_MS_RANGE, DEFAULT_TICK_MS),
            ms_param(&request, "idle_ms", IDLE_MS_RANGE, DEFAULT_IDLE_MS),
        ) {
            (Ok(tick_ms), Ok(idle_ms)) => MatchConfig { tick_ms, idle_ms },
            (Err(message), _) | (_, Err(message)) => return Ok(Response::error(400, message)),
        };
        self.state.accept_websocket(&request, &[])?;
        if self.config()?.is_none() {
            // Not cached here: should this event roll back, the next join
            // is the first again.
            self.state.storage().put_json(CONFIG, &chosen)?;
        }
        // Set once per match; the edge keeps it across hibernation.
        if self.state.get_websocket_auto_response().is_none() {
            self.state.set_websocket_auto_response("ping", "pong")?;
        }
        Ok(Response::switching_protocols())
    }

    async fn websocket_message(&mut self, ws: WebSocket, message: Message) -> HandlerResult<()> {
        match message {
            Message::Binary(frame) => {
                // One edge command; the edge writes the same bytes to each
                // other player.
                self.state
                    .broadcast(Message::Binary(frame), None, Some(&ws));
                self.note_activity()
            }
            Message::Text(command) => {
                let reply = match command.as_str() {
                    "state" => serde_json::to_string(&self.summary()?)?,
                    _ => serde_json::json!({
                        "error": "unknown command; text commands are: state"
                    })
                    .to_string(),
                };
                ws.send(reply)?;
                Ok(())
            }
        }
    }

    async fn websocket_close(
        &mut self,
        ws: WebSocket,
        _code: u16,
        _reason: String,
        _was_clean: bool,
    ) -> HandlerResult<()> {
        // The closing socket is still listed while this runs.
        let others = self
            .state
            .get_websockets(None)
            .iter()
            .any(|other| *other != ws);
        if !others {
            // Nobody left to tick for: let the match hibernate now rather
            // than after `idle_ms`. The stamp goes too, so that the next
            // player's first frame is sure to start the ticks again.
            let storage = self.state.storage();
            storage.delete_alarm()?;
            storage.delete(LAST_ACTIVE_MS)?;
        }
        Ok(())
    }

    async fn alarm(&mut self, _info: AlarmInfo) -> HandlerResult<()> {
        let Some(config) = self.config()? else {
            return Ok(());
        };
        let storage = self.state.storage();
        let now = now_ms();
        let last_active: u64 = storage.get_json(LAST_ACTIVE_MS)?.unwrap_or(0);
        if self.state.get_websockets(None).is_empty()
            || now.saturating_sub(last_active) >= config.idle_ms
        {
            // Quiet: no next alarm, so the match hibernates; the next binary
            // frame starts the ticks again.
            return Ok(());
        }
        let tick = storage
            .get_json::<u64>(TICKS)?
            .unwrap_or(0)
            .saturating_add(1);
        storage.put_json(TICKS, &tick)?;
        let mut frame = Vec::with_capacity(9);
        frame.push(TICK_MARKER);
        frame.extend_from_slice(&tick.to_be_bytes());
        self.state.broadcast(frame, None, None);

        // Keep to the schedule so that handling time does not slow the rate;
        // after a stall, skip the missed ticks rather than burst them.
        let due: u64 = storage.get_json(NEXT_TICK_MS)?.unwrap_or(now);
        let mut next = due.saturating_add(config.tick_ms);
        if next <= now {
            next = now.saturating_add(config.tick_ms);
        }
        storage.put_json(NEXT_TICK_MS, &next)?;
        storage.set_alarm(at(next))?;
        Ok(())
    }
}

/// A millisecond query parameter: `default` if absent, else a number in
/// `range`.
fn ms_param(
    request: &Request,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> Result<u64, String> {
    let Some(text) = request.query_param(name) else {
        return Ok(default);
    };
    match text.parse::<u64>() {
        Ok(ms) if range.contains(&ms) => Ok(ms),
        _ => Err(format!(
            "{name} must be a number from {} to {}, got {text:?}",
            range.start(),
            range.end()
        )),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn request(uri: &str) -> Request {
        Request::from_parts("GET".into(), uri.into(), Vec::new(), Bytes::new(), None)
    }

    #[test]
    fn ms_params_default_and_stay_in_range() {
        let req = request("/games/m?tick_ms=50&idle_ms=9&bad=x");
        assert_eq!(ms_param(&req, "tick_ms", TICK_MS_RANGE, 100), Ok(50));
        assert_eq!(ms_param(&req, "missing", TICK_MS_RANGE, 100), Ok(100));
        assert!(ms_param(&req, "idle_ms", IDLE_MS_RANGE, 2000).is_err());
        assert!(ms_param(&req, "bad", TICK_MS_RANGE, 100).is_err());
        let edge = request("/games/m?tick_ms=10&idle_ms=600000");
        assert_eq!(ms_param(&edge, "tick_ms", TICK_MS_RANGE, 100), Ok(10));
        assert_eq!(ms_param(&edge, "idle_ms", IDLE_MS_RANGE, 2000), Ok(600_000));
        let over = request("/games/m?tick_ms=10001");
        assert!(ms_param(&over, "tick_ms", TICK_MS_RANGE, 100).is_err());
    }
}
