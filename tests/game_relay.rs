//! The GameRelay class: binary frames reach the other players of a match only, ticks come
//! from the object's alarm at the first player's rate while the match is active, and a quiet
//! match stops ticking and hibernates until the next frame.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{http_request_head, unique_name, Client, Node, NETWORK_TIMEOUT};

const HIBERNATE_WAIT: Duration = Duration::from_secs(10);
/// Long enough for any frame still in flight to arrive.
const SETTLE: Duration = Duration::from_millis(500);

/// The tick number if `message` is a tick frame (`0xFF` + u64 big-endian).
fn tick_of(message: &Message) -> Option<u64> {
    match message {
        Message::Binary(bytes) if bytes.len() == 9 && bytes[0] == 0xFF => {
            Some(u64::from_be_bytes(bytes[1..].try_into().unwrap()))
        }
        _ => None,
    }
}

/// The next relayed binary frame within `wait`, ticks skipped; `None` if none came.
async fn try_recv_relayed(client: &mut Client, wait: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = client.try_recv(left).await?;
        if tick_of(&message).is_some() {
            continue;
        }
        match message {
            Message::Binary(bytes) => return Some(bytes.to_vec()),
            other => panic!("{}: expected a binary frame, got {other:?}", client.url()),
        }
    }
}

/// Every tick number received within `window`; panics on anything but ticks.
async fn ticks_within(client: &mut Client, window: Duration) -> Vec<u64> {
    let deadline = Instant::now() + window;
    let mut ticks = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(message) = client.try_recv(left).await else {
            return ticks;
        };
        match tick_of(&message) {
            Some(tick) => ticks.push(tick),
            None => panic!("{}: expected only ticks, got {message:?}", client.url()),
        }
    }
}

/// The next tick number; panics if none comes within `NETWORK_TIMEOUT`.
async fn next_tick(client: &mut Client) -> u64 {
    let message = client.recv().await;
    tick_of(&message).unwrap_or_else(|| panic!("expected a tick, got {message:?}"))
}

async fn state(client: &mut Client) -> serde_json::Value {
    client.send_text("state").await;
    // Ticks may arrive before the answer.
    loop {
        let message = client.recv().await;
        if tick_of(&message).is_some() {
            continue;
        }
        let Message::Text(text) = message else {
            panic!("expected the state as text, got {message:?}");
        };
        return serde_json::from_str(text.as_str())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    }
}

async fn join(node: &Node, game: &str, query: &str) -> Client {
    Client::connect(&node.ws_url(&format!("/games/{game}{query}"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_reaches_every_other_player_once_and_never_its_sender() {
    let node = Node::start();
    let game = unique_name("relay");
    let mut a = join(&node, &game, "").await;
    let mut b = join(&node, &game, "").await;
    let mut c = join(&node, &game, "").await;
    assert_eq!(state(&mut a).await, json!({"players": 3, "ticks": 0}));

    let frame = vec![1, 2, 3, 0, 255];
    a.send_binary(frame.clone()).await;
    for (who, client) in [("b", &mut b), ("c", &mut c)] {
        assert_eq!(
            try_recv_relayed(client, NETWORK_TIMEOUT).await,
            Some(frame.clone()),
            "{who} did not get a's frame"
        );
    }
    b.send_binary(vec![9]).await;
    for (who, client) in [("a", &mut a), ("c", &mut c)] {
        assert_eq!(
            try_recv_relayed(client, NETWORK_TIMEOUT).await,
            Some(vec![9]),
            "{who} did not get b's frame"
        );
    }
    for (who, client) in [("a", &mut a), ("b", &mut b), ("c", &mut c)] {
        assert_eq!(
            try_recv_relayed(client, SETTLE).await,
            None,
            "{who} got a frame twice, or its own"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_arrive_at_roughly_the_configured_rate_while_players_are_active() {
    let node = Node::start();
    let game = unique_name("ticks");
    let mut a = join(&node, &game, "?tick_ms=50").await;
    let mut b = join(&node, &game, "").await;
    assert_eq!(
        ticks_within(&mut b, SETTLE).await,
        Vec::<u64>::new(),
        "a match nobody has played in must not tick"
    );
    a.send_binary(vec![1]).await;
    assert_eq!(
        try_recv_relayed(&mut b, NETWORK_TIMEOUT).await,
        Some(vec![1])
    );

    // Well inside the default idle_ms of 2 s after a's frame.
    let ticks = ticks_within(&mut b, Duration::from_secs(1)).await;
    assert!(
        (5..=40).contains(&ticks.len()),
        "{} ticks in 1 s at tick_ms=50: {ticks:?}",
        ticks.len()
    );
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks are not numbered one by one: {ticks:?}"
    );
    let summary = state(&mut b).await;
    assert_eq!(summary["players"], 2);
    assert!(
        summary["ticks"].as_u64().unwrap() >= *ticks.last().unwrap(),
        "state {summary} behind the ticks seen {ticks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_match_stops_ticking_and_hibernates_until_a_new_frame() {
    let node = Node::builder().hibernate_after("300ms").start();
    let game = unique_name("quiet");
    let mut a = join(&node, &game, "?tick_ms=50&idle_ms=300").await;
    let mut b = join(&node, &game, "").await;
    a.send_binary(vec![7]).await;
    assert_eq!(
        try_recv_relayed(&mut b, NETWORK_TIMEOUT).await,
        Some(vec![7])
    );
    let first = next_tick(&mut a).await;

    let quiet = node
        .wait_hibernated("GameRelay", &game, HIBERNATE_WAIT)
        .await;
    // Everything sent before hibernation has arrived by now; after it, nothing.
    let before = ticks_within(&mut a, SETTLE).await;
    let last = before.last().copied().unwrap_or(first);
    assert!(
        last >= first,
        "ticks went backwards: {first} then {before:?}"
    );
    let seen_by_b = ticks_within(&mut b, Duration::from_millis(100)).await;
    assert_eq!(
        seen_by_b.last(),
        Some(&last),
        "b must have had the same ticks as a"
    );
    assert_eq!(
        ticks_within(&mut a, Duration::from_secs(1)).await,
        Vec::<u64>::new(),
        "a quiet match kept ticking"
    );
    let still = node.stats("GameRelay", &game).await;
    assert!(!still.active, "a quiet match woke up: {still:?}");
    assert_eq!(still.wakes, quiet.wakes, "a quiet match woke up: {still:?}");

    b.send_binary(vec![8]).await;
    assert_eq!(
        try_recv_relayed(&mut a, NETWORK_TIMEOUT).await,
        Some(vec![8])
    );
    assert_eq!(
        next_tick(&mut a).await,
        last + 1,
        "the tick count must survive hibernation"
    );
    assert_eq!(next_tick(&mut b).await, last + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_players_settings_are_kept_for_the_match() {
    let node = Node::start();
    let game = unique_name("settings");
    let mut a = join(&node, &game, "?tick_ms=10000").await;
    let mut b = join(&node, &game, "?tick_ms=10").await;
    b.send_binary(vec![5]).await;
    assert_eq!(
        try_recv_relayed(&mut a, NETWORK_TIMEOUT).await,
        Some(vec![5])
    );
    assert_eq!(
        ticks_within(&mut a, Duration::from_secs(1)).await,
        Vec::<u64>::new(),
        "the second player's tick_ms=10 replaced the first's 10000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_with_400_and_unknown_commands_get_an_error() {
    let node = Node::start();
    let game = unique_name("bad");
    for query in [
        "?tick_ms=9",
        "?tick_ms=10001",
        "?tick_ms=fast",
        "?idle_ms=99",
    ] {
        let path = format!("/games/{game}{query}");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let addr = node.http_addr();
        let response = tokio::task::spawn_blocking(move || {
            http_request_head(addr, request.as_bytes(), NETWORK_TIMEOUT)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(response.status, 400, "upgrade to {path}: {}", response.head);
    }
    let mut a = join(&node, &game, "").await;
    let reply: serde_json::Value = serde_json::from_str(&a.request("jump").await).unwrap();
    assert!(reply["error"].is_string(), "unexpected reply {reply}");
    assert_eq!(a.request("ping").await, "pong");
}
