//! Hibernation: idle objects leave memory while their sockets stay open, auto-responses are
//! answered by the edge without a wake, and socket state (attachments, tags) survives.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{assert_eventually, unique_name, Client, Node};

const HIBERNATE_AFTER: &str = "300ms";
const HIBERNATE_WAIT: Duration = Duration::from_secs(10);
const STATS_WAIT: Duration = Duration::from_secs(5);

fn node() -> Node {
    Node::builder().hibernate_after(HIBERNATE_AFTER).start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_to_a_hibernated_object_are_answered_without_waking_it() {
    let node = node();
    let name = unique_name("ping");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("echo:warm").await, "warm");

    let before = node.wait_hibernated("Bench", &name, HIBERNATE_WAIT).await;

    client.send_many_text("ping", 1000).await;
    for i in 0..1000 {
        let reply = client.recv_text().await;
        assert_eq!(reply, "pong", "reply {i} of 1000 to `ping`");
    }

    let after = node
        .stats_when(
            "Bench",
            &name,
            STATS_WAIT,
            "auto_responses grew by 1000",
            |s| s.auto_responses >= before.auto_responses + 1000,
        )
        .await;
    assert_eq!(
        after.auto_responses,
        before.auto_responses + 1000,
        "auto_responses should grow by exactly 1000: before {before:?}, after {after:?}"
    );
    assert_eq!(
        after.wakes, before.wakes,
        "pings woke the object: before {before:?}, after {after:?}"
    );
    assert_eq!(
        after.events, before.events,
        "pings reached the object: before {before:?}, after {after:?}"
    );
    assert!(
        !after.active,
        "the object is live after pings only: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_and_tags_survive_hibernation() {
    let node = node();
    let name = unique_name("attach");
    let mut client =
        Client::connect(&node.ws_url(&format!("/bench/{name}?tag=red&tag=blue"))).await;
    assert_eq!(client.request("attach:hello").await, "ok");
    assert_eq!(client.request("getattach").await, "hello");

    let hibernated = node.wait_hibernated("Bench", &name, HIBERNATE_WAIT).await;

    assert_eq!(
        client.request("getattach").await,
        "hello",
        "the attachment after hibernation"
    );
    assert_eq!(
        client.request("tags").await,
        "red,blue",
        "the tags after hibernation"
    );
    node.stats_when(
        "Bench",
        &name,
        STATS_WAIT,
        "a wake after hibernation",
        |s| s.wakes > hibernated.wakes,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_runs_again_after_hibernation() {
    let node = node();
    let name = unique_name("rewake");
    let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(client.request("echo:one").await, "one");
    let first = node
        .stats_when("Bench", &name, STATS_WAIT, "a first wake", |s| s.wakes >= 1)
        .await;
    assert_eq!(
        first.wakes, 1,
        "one wake for the upgrade and first message: {first:?}"
    );

    let hibernated = node.wait_hibernated("Bench", &name, HIBERNATE_WAIT).await;
    assert_eq!(
        hibernated.wakes, 1,
        "hibernation is not a wake: {hibernated:?}"
    );

    assert_eq!(client.request("echo:two").await, "two");
    let second = node
        .stats_when("Bench", &name, STATS_WAIT, "a second wake", |s| {
            s.wakes >= 2
        })
        .await;
    assert_eq!(
        second.wakes, 2,
        "the message after hibernation runs `new` again: {second:?}"
    );
}

async fn recv_json(client: &mut Client) -> serde_json::Value {
    let text = client.recv_text().await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_room_hibernates_between_messages_and_keeps_names() {
    let node = node();
    let room = unique_name("room");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    assert_eq!(
        recv_json(&mut ada).await,
        json!({"type": "join", "name": "ada"})
    );
    let mut linus = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=linus"))).await;
    let linus_joined = json!({"type": "join", "name": "linus"});
    assert_eq!(
        recv_json(&mut ada).await,
        linus_joined,
        "ada sees linus join"
    );
    assert_eq!(
        recv_json(&mut linus).await,
        linus_joined,
        "linus sees his own join"
    );

    ada.send_text("hello linus").await;
    let from_ada = json!({"type": "message", "name": "ada", "text": "hello linus"});
    assert_eq!(recv_json(&mut ada).await, from_ada);
    assert_eq!(recv_json(&mut linus).await, from_ada);
    linus.send_text("hi ada").await;
    let from_linus = json!({"type": "message", "name": "linus", "text": "hi ada"});
    assert_eq!(recv_json(&mut ada).await, from_linus);
    assert_eq!(recv_json(&mut linus).await, from_linus);

    let quiet = node
        .wait_hibernated("ChatRoom", &room, HIBERNATE_WAIT)
        .await;

    assert_eq!(ada.request("ping").await, "pong");
    assert_eq!(linus.request("ping").await, "pong");
    let pinged = node
        .stats_when(
            "ChatRoom",
            &room,
            STATS_WAIT,
            "2 more auto-responses",
            |s| s.auto_responses >= quiet.auto_responses + 2,
        )
        .await;
    assert_eq!(
        pinged.wakes, quiet.wakes,
        "pings woke the room: quiet {quiet:?}, now {pinged:?}"
    );
    assert!(!pinged.active, "pings made the room live: {pinged:?}");

    linus.send_text("still there?").await;
    let woken = json!({"type": "message", "name": "linus", "text": "still there?"});
    assert_eq!(
        recv_json(&mut ada).await,
        woken,
        "ada gets linus's message with his name"
    );
    assert_eq!(
        recv_json(&mut linus).await,
        woken,
        "linus gets his own message with his name"
    );
    let after = node
        .stats_when(
            "ChatRoom",
            &room,
            STATS_WAIT,
            "a wake after hibernation",
            |s| s.wakes > quiet.wakes,
        )
        .await;
    assert_eq!(
        after.wakes,
        quiet.wakes + 1,
        "the first message after hibernation wakes the room once: quiet {quiet:?}, now {after:?}"
    );

    // Nothing else is pending for either client.
    for (who, client) in [("ada", &mut ada), ("linus", &mut linus)] {
        if let Some(extra) = client.try_recv(Duration::from_millis(200)).await {
            panic!("{who} got an unexpected extra message {extra:?}");
        }
    }
}

/// Past `max_live_objects_per_worker`, idle objects hibernate after a
/// second instead of `hibernate_after`: objects woken faster than they
/// sleep (a client minting names) stay bounded in the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_live_object_bound_idle_objects_hibernate_early() {
    let node = Node::builder()
        .workers(1)
        .hibernate_after("60s")
        .limit("max_live_objects_per_worker", "3")
        .start();
    let names: Vec<String> = (0..6)
        .map(|i| unique_name(&format!("pressed{i}")))
        .collect();
    let mut clients = Vec::new();
    for name in &names {
        let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
        assert_eq!(client.request("echo:up").await, "up");
        clients.push(client);
    }
    // Those woken past the bound sleep within seconds, not a minute.
    for name in &names[3..] {
        node.wait_hibernated("Bench", name, Duration::from_secs(10))
            .await;
    }
    // And wake again on their next message, their sockets kept.
    assert_eq!(clients[5].request("echo:again").await, "again");
}

/// A worker wakes a few objects at a time for clients, each keeping its
/// turn a short while at most: more sleeping handlers than there are
/// turns, each woken by a message it answers 8 s later, all run at once,
/// and a live object's events go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_wakes_past_the_turns_stop_neither_other_wakes_nor_live_objects() {
    let node = Node::builder()
        .workers(1)
        .hibernate_after(HIBERNATE_AFTER)
        .start();
    let names: Vec<String> = (0..=torpor_objects::WAKES_AT_ONCE * 2)
        .map(|i| unique_name(&format!("sleeper{i}")))
        .collect();
    let mut sleepers = Vec::new();
    for name in &names {
        let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
        assert_eq!(client.request("echo:up").await, "up");
        sleepers.push(client);
    }
    let mut woken_before = Vec::new();
    for name in &names {
        let stats = node.wait_hibernated("Bench", name, HIBERNATE_WAIT).await;
        woken_before.push(stats.wakes);
    }
    // A live object, kept busy from here on: its events never idle long
    // enough for it to hibernate, so none of them is a wake.
    let live_name = unique_name("live");
    let mut live = Client::connect(&node.ws_url(&format!("/bench/{live_name}"))).await;
    assert_eq!(live.request("echo:warm").await, "warm");
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let echoes = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = echoes.clone();
    let busy = tokio::spawn(async move {
        loop {
            assert_eq!(live.request("echo:busy").await, "busy");
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if stopped.try_recv().is_ok() {
                return;
            }
        }
    });

    for client in &mut sleepers {
        client.send_text("sleep:8000").await;
    }
    let seen = echoes.load(std::sync::atomic::Ordering::Relaxed);
    let mut woken;
    assert_eventually!(
        {
            woken = 0;
            for (name, before) in names.iter().zip(&woken_before) {
                woken += usize::from(node.stats("Bench", name).await.wakes > *before);
            }
            woken == names.len()
        },
        Duration::from_secs(5),
        "{woken} of {} sleepers woke while the first slept",
        names.len()
    );
    assert_eventually!(
        echoes.load(std::sync::atomic::Ordering::Relaxed) >= seen + 20,
        Duration::from_secs(5),
        "the live object stopped handling events while objects woke"
    );
    let _ = stop.send(());
    busy.await.unwrap();
    for client in &mut sleepers {
        let reply = client.try_recv(Duration::from_secs(30)).await;
        assert_eq!(reply, Some(Message::Text("slept".into())));
    }
}

/// The wake no longer copies the room into the worker (the edges keep tags
/// and attachments and answer questions): a handler woken by one message
/// still reads every socket of a room spread over two edges, with its tags
/// and attachment, and the wake is one wake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_room_of_many_sockets_wakes_on_one_message_and_reads_them_all() {
    const SOCKETS: usize = 200;
    let node = Node::builder()
        .edges(2)
        .hibernate_after(HIBERNATE_AFTER)
        .start();
    let name = unique_name("roster");
    let mut clients = Vec::new();
    let mut expected = Vec::new();
    for i in 0..SOCKETS {
        let parity = if i % 2 == 0 { "even" } else { "odd" };
        let url = node.ws_url(&format!("/bench/{name}?tag={parity}&tag=n{i:03}"));
        let mut client = Client::connect(&url).await;
        let attachment = format!("member-{i:03}-{}", "x".repeat(100));
        assert_eq!(client.request(&format!("attach:{attachment}")).await, "ok");
        expected.push(format!("{parity}+n{i:03}={attachment}"));
        clients.push(client);
    }
    expected.sort_unstable();
    let before = node.wait_hibernated("Bench", &name, HIBERNATE_WAIT).await;

    let roster = clients[17].request("roster").await;
    let woken = node.stats("Bench", &name).await;
    assert_eq!(woken.wakes, before.wakes + 1, "{woken:?}");
    let roster: Vec<&str> = roster.split(',').collect();
    assert_eq!(roster.len(), SOCKETS);
    assert_eq!(roster, expected);
    // The same live instance answers from the edges again, by tag too.
    assert_eq!(clients[3].request("counttag:even").await, "100");
    assert_eq!(clients[4].request("counttag:n004").await, "1");
    assert_eq!(clients[5].request("count").await, SOCKETS.to_string());
    assert_eq!(
        clients[6].request("getattach").await,
        format!("member-006-{}", "x".repeat(100))
    );
}

/// A live object keeps the attachments it set only until their edge
/// confirms holding them (and then only a few): a room that set far more
/// than the worker keeps still reads every one, old and new, from the
/// same live instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_room_reads_every_attachment_it_set_after_the_worker_forgot_them() {
    // 160 × 1.5 KB is about 4 times what an object keeps once confirmed.
    const SOCKETS: usize = 160;
    let node = Node::builder().edges(2).hibernate_after("60s").start();
    let name = unique_name("forgotten");
    let attachment = |i: usize, round: &str| format!("{round}-{i:03}-{}", "y".repeat(1_500));
    let mut clients = Vec::new();
    for i in 0..SOCKETS {
        let mut client = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
        let set = format!("attach:{}", attachment(i, "first"));
        assert_eq!(client.request(&set).await, "ok");
        clients.push(client);
    }
    let live = node.stats("Bench", &name).await;
    for (i, client) in clients.iter_mut().enumerate().step_by(40) {
        assert_eq!(client.request("getattach").await, attachment(i, "first"));
    }
    // Set again, some of them: the newer value wins over the edge's older
    // one, whether or not the edge has it yet.
    for (i, client) in clients.iter_mut().enumerate().step_by(3) {
        let set = format!("attach:{}", attachment(i, "second"));
        assert_eq!(client.request(&set).await, "ok");
    }
    let roster = clients[7].request("roster").await;
    let mut expected: Vec<String> = (0..SOCKETS)
        .map(|i| match i % 3 {
            0 => format!("={}", attachment(i, "second")),
            _ => format!("={}", attachment(i, "first")),
        })
        .collect();
    expected.sort_unstable();
    assert_eq!(roster.split(',').collect::<Vec<_>>(), expected);
    assert_eq!(
        clients[0].request("getattach").await,
        attachment(0, "second")
    );
    assert_eq!(
        clients[1].request("getattach").await,
        attachment(1, "first")
    );
    let after = node.stats("Bench", &name).await;
    assert_eq!(after.wakes, live.wakes, "one live instance throughout");
}

/// A woken object reads its sender's attachment on each message: from
/// the edge the first time, from what it kept after that, and what it set
/// itself once it set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_object_reads_the_same_attachment_message_after_message_until_it_sets_another() {
    let node = node();
    let name = unique_name("kept");
    let url = node.ws_url(&format!("/bench/{name}"));
    let mut ada = Client::connect(&url).await;
    let mut bob = Client::connect(&url).await;
    assert_eq!(ada.request("attach:ada").await, "ok");
    assert_eq!(bob.request("attach:bob").await, "ok");
    let before = node.wait_hibernated("Bench", &name, HIBERNATE_WAIT).await;
    for _ in 0..3 {
        assert_eq!(ada.request("getattach").await, "ada");
        assert_eq!(bob.request("getattach").await, "bob");
    }
    assert_eq!(ada.request("attach:ada-2").await, "ok");
    assert_eq!(ada.request("getattach").await, "ada-2");
    assert_eq!(bob.request("getattach").await, "bob");
    let after = node.stats("Bench", &name).await;
    assert_eq!(after.wakes, before.wakes + 1, "one wake: {after:?}");
}
