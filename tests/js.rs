//! JavaScript Durable Objects apps (tests/apps/), run unchanged: the chat
//! room's class reached through a route, over real WebSockets.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::{unique_name, Client, Node, NodeBuilder};

fn app_main(app: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/apps")
        .join(app)
        .join("src/index.js")
}

/// A node whose `/rooms/{name}` reaches the chat app's `ChatRoom`.
fn chat_node() -> NodeBuilder {
    let main = app_main("chat");
    Node::builder().extra_config(&format!(
        "[vars]\nGREETING = \"welcome\"\n\
         [[apps]]\nname = \"chat\"\nmain = {main:?}\n\
         [[namespaces]]\nname = \"ROOMS\"\nclass = \"ChatRoom\"\napp = \"chat\"\n\
         [[routes]]\npath = \"/rooms/{{name}}\"\nnamespace = \"ROOMS\"\n"
    ))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_chat_room_broadcasts_and_keeps_names_in_attachments() {
    let node = chat_node().start();
    let room = unique_name("js-chat");
    let mut ada =
        Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada&role=admin"))).await;
    let hello = json(&ada.recv_text().await);
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["greeting"], "welcome");
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "join", "name": "ada"})
    );

    let mut linus = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=linus"))).await;
    assert_eq!(json(&linus.recv_text().await)["type"], "hello");
    assert_eq!(json(&linus.recv_text().await)["name"], "linus");
    assert_eq!(json(&ada.recv_text().await)["name"], "linus");

    ada.send_text("hi all").await;
    for client in [&mut ada, &mut linus] {
        assert_eq!(
            json(&client.recv_text().await),
            serde_json::json!({"type": "message", "name": "ada", "text": "hi all"})
        );
    }
    ada.send_text("whoami").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "whoami", "name": "ada", "tags": ["admin"]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_chat_room_hibernates_answers_ping_asleep_and_wakes_with_its_state() {
    let node = chat_node().hibernate_after("1s").start();
    let room = unique_name("js-sleep");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    ada.recv_text().await;
    ada.recv_text().await;
    ada.send_text("before sleep").await;
    assert_eq!(json(&ada.recv_text().await)["text"], "before sleep");

    let asleep = node
        .wait_hibernated("ChatRoom", &room, Duration::from_secs(10))
        .await;
    assert_eq!(ada.request("ping").await, "pong");
    let still = node.stats("ChatRoom", &room).await;
    assert_eq!(still.wakes, asleep.wakes, "ping woke the room");

    ada.send_text("after sleep").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "message", "name": "ada", "text": "after sleep"}),
        "the name came back from the attachment"
    );
    let mut late = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=late"))).await;
    let hello = json(&late.recv_text().await);
    let texts: Vec<&str> = hello["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["before sleep", "after sleep"],
        "SQL storage kept the history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_exception_in_a_socket_handler_is_logged_with_its_stack() {
    let node = chat_node().start();
    let room = unique_name("js-boom");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    ada.recv_text().await;
    ada.recv_text().await;
    ada.send_text("boom").await;
    // The worker's log line, then the stack's frames under it.
    crate::support::assert_eventually!(
        {
            let lines = node.stderr_lines();
            lines
                .iter()
                .any(|l| l.contains("Error: the room was asked to fail"))
                && lines.iter().any(|l| l.contains("chat/src/index.js:57:"))
        },
        Duration::from_secs(5),
        "the exception and its file:line reach the log"
    );
}

/// A config naming an app whose module does not parse: the node refuses to
/// start, naming the file, the line and the engine's message.
#[test]
fn an_app_with_a_syntax_error_refuses_to_start_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.js"),
        "import { helper } from \"./helper.js\";\nexport class Room {}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("helper.js"),
        "export function helper() {\n  return 1 +;\n}\n",
    )
    .unwrap();
    let config = dir.path().join("torpor.toml");
    std::fs::write(
        &config,
        "[[apps]]\nname = \"bad\"\nmain = \"index.js\"\n\
         [[namespaces]]\nname = \"R\"\nclass = \"Room\"\napp = \"bad\"\n\
         [[routes]]\npath = \"/r/{name}\"\nnamespace = \"R\"\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_torpor"))
        .arg("--config")
        .arg(&config)
        .env_remove("TORPOR_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("SyntaxError"), "{stderr}");
    assert!(stderr.contains("helper.js:2"), "{stderr}");
}

/// A node whose `/lab/{name}` reaches the lab app's `Lab`.
fn lab_node() -> NodeBuilder {
    let main = app_main("lab");
    Node::builder().extra_config(&format!(
        "[[apps]]\nname = \"lab\"\nmain = {main:?}\n\
         [[namespaces]]\nname = \"LAB\"\nclass = \"Lab\"\napp = \"lab\"\n\
         [[routes]]\npath = \"/lab/{{name}}\"\nnamespace = \"LAB\"\n"
    ))
}

fn lab(node: &Node, name: &str, op: &str) -> crate::support::HttpResponse {
    let path = format!("/lab/{name}?op={op}");
    crate::support::http_get(node.http_addr(), &path, Duration::from_secs(10)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_loop_that_never_yields_is_interrupted_at_the_handler_timeout() {
    let node = lab_node().handler_timeout("1s").start();
    let name = unique_name("spin");
    assert_eq!(lab(&node, &name, "count").text(), "1");
    let spun = lab(&node, &name, "spin");
    assert_eq!(spun.status, 504, "{}", spun.text());
    // The instance was reset; storage and the worker carry on.
    assert_eq!(lab(&node, &name, "count").text(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_js_app_past_its_memory_limit_fails_the_handler_not_the_worker() {
    let node = lab_node().limit("max_js_memory_bytes", "33554432").start();
    let name = unique_name("hog");
    assert_eq!(lab(&node, &name, "count").text(), "1");
    let hog = lab(&node, &name, "hog");
    assert_eq!(hog.status, 500, "{}", hog.text());
    assert!(hog.text().contains("out of memory"), "{}", hog.text());
    assert_eq!(lab(&node, &name, "count").text(), "2");
    let deep = lab(&node, &name, "recurse");
    assert_eq!(deep.status, 500, "{}", deep.text());
    assert!(
        deep.text().contains("Maximum call stack size exceeded"),
        "{}",
        deep.text()
    );
    // Host work is bounded too: timers hold memory the engine does not count.
    let timers = lab(&node, &name, "timers");
    assert_eq!(timers.status, 500, "{}", timers.text());
    assert!(timers.text().contains("limit 10000"), "{}", timers.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_storage_web_apis_timers_alarms_and_rpc_work() {
    let node = lab_node().start();
    let name = unique_name("lab");
    let kv = lab(&node, &name, "kv").json();
    assert_eq!(
        kv,
        serde_json::json!({
            "date": true, "set": true, "many": ["a:2", "b:1"], "listed": ["a:1", "a:2"],
            "removed": 1, "after": 2
        })
    );
    let sql = lab(&node, &name, "sql").json();
    assert_eq!(
        sql,
        serde_json::json!({"k": "x", "v": 42, "blob": [1, 2], "raw": [[42]]})
    );
    let web = lab(&node, &name, "web").json();
    assert_eq!(
        web["href"],
        "https://example.com/b/c?x=1&y=two+words&z=3#frag"
    );
    assert_eq!(web["host"], "example.com");
    assert_eq!(web["y"], "two words");
    assert_eq!(web["text"], "héllo");
    assert_eq!(
        web["digest"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(web["sha1"], "a9993e364706816aba3e25717850c26c9cd0d89d");
    assert_eq!(web["b64"], "aGkh");
    assert_eq!(web["unb64"], "hi!");
    assert_eq!(web["map"], "one");
    assert_eq!(web["date"], 5);
    assert_eq!(web["header"], "1, 2");
    assert_eq!(web["uuid"], true);
    assert_eq!(web["random"], 8);
    assert_eq!(web["microtask"], true);
    assert_eq!(web["rewritten"], "payload");
    assert_eq!(web["numbered"], "5");
    assert_eq!(web["note"], "imported as text");
    assert_eq!(web["blob"], serde_json::json!([0, 1, 2, 255]));
    assert_eq!(web["method"], "GET");
    assert_eq!(web["id"], 64);
    assert_eq!(web["name"], name.as_str());

    assert_eq!(lab(&node, &name, "wait&ms=30").json()["waited"], true);
    assert_eq!(
        lab(&node, &name, "loaded").json()["loaded"],
        0,
        "the constructor's blockConcurrencyWhile finished before the event"
    );
    assert_eq!(lab(&node, &name, "alarm").text(), "set");
    crate::support::assert_eventually!(
        lab(&node, &name, "alarms").text() == "1",
        Duration::from_secs(10),
        "the alarm fired once"
    );
    assert_eq!(
        lab(&node, &name, "ids").json(),
        serde_json::json!({
            "roundTrip": true, "distinct": true, "refused": "TypeError",
            "sameAsMine": true, "cleared": true
        })
    );
    assert_eq!(lab(&node, &name, "fire").text(), "fired");
    crate::support::assert_eventually!(
        lab(&node, &format!("{name}-target"), "peek").text() == "1",
        Duration::from_secs(5),
        "a call the handler did not await is made all the same"
    );
    let rpc = lab(&node, &name, "rpc");
    assert_eq!(rpc.status, 200, "{}", rpc.text());
    assert_eq!(
        rpc.json(),
        serde_json::json!({"sum": 5, "echoed": "1", "types": true})
    );
    let thrown = lab(&node, &name, "throw");
    assert_eq!(thrown.status, 500);
    assert!(
        thrown.text().contains("TypeError: thrown on purpose"),
        "{}",
        thrown.text()
    );
}

/// The chat app as deployed: every path goes to its Worker's `fetch`,
/// which picks the room with `env.ROOMS.get(env.ROOMS.idFromName(..))`.
fn chat_front_node() -> NodeBuilder {
    let main = app_main("chat");
    Node::builder().extra_config(&format!(
        "[vars]\nGREETING = \"welcome\"\n\
         [[apps]]\nname = \"chat\"\nmain = {main:?}\n\
         [[namespaces]]\nname = \"ROOMS\"\nclass = \"ChatRoom\"\napp = \"chat\"\n\
         [[routes]]\npath = \"/*\"\napp = \"chat\"\n"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_fetch_forwards_upgrades_and_requests_to_the_room() {
    let node = chat_front_node().start();
    let room = unique_name("front");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    assert_eq!(json(&ada.recv_text().await)["type"], "hello");
    assert_eq!(json(&ada.recv_text().await)["name"], "ada");
    let mut bob = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=bob"))).await;
    bob.recv_text().await;
    bob.recv_text().await;
    assert_eq!(json(&ada.recv_text().await)["name"], "bob");
    bob.send_text("via the front").await;
    for client in [&mut ada, &mut bob] {
        assert_eq!(json(&client.recv_text().await)["text"], "via the front");
    }
    // The sockets are the room's: the room's counters see them.
    let stats = node.stats("ChatRoom", &room).await;
    assert_eq!(stats.connections, 2, "{stats:?}");

    let plain = crate::support::http_get(
        node.http_addr(),
        &format!("/rooms/{room}"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(
        plain.json(),
        serde_json::json!({"messages": 1, "sockets": 2, "lastSpeaker": "bob"})
    );
    let missing =
        crate::support::http_get(node.http_addr(), "/nowhere", Duration::from_secs(5)).unwrap();
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "Not found");
}

fn wrangler_config(app: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/apps")
        .join(app)
        .join("wrangler.toml")
}

/// The chat app under `torpor dev`, exactly as `wrangler dev` would be
/// given it: messages broadcast, the room hibernates after 10 s of quiet,
/// `ping` does not wake it, and attachments and storage survive both the
/// hibernation and a restart of the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torpor_dev_serves_the_chat_app_across_hibernation_and_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dev = || {
        Node::builder()
            .dev(&wrangler_config("chat"))
            .data_dir(data.path())
    };
    let node = dev().start();
    let room = unique_name("dev");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    assert_eq!(json(&ada.recv_text().await)["greeting"], "welcome");
    ada.recv_text().await;
    let mut bob = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=bob"))).await;
    bob.recv_text().await;
    bob.recv_text().await;
    ada.recv_text().await;
    ada.send_text("one").await;
    for client in [&mut ada, &mut bob] {
        assert_eq!(json(&client.recv_text().await)["text"], "one");
    }

    let asleep = node
        .wait_hibernated("ChatRoom", &room, Duration::from_secs(20))
        .await;
    assert_eq!(bob.request("ping").await, "pong");
    assert_eq!(
        node.stats("ChatRoom", &room).await.wakes,
        asleep.wakes,
        "ping woke the room"
    );
    bob.send_text("two").await;
    for client in [&mut ada, &mut bob] {
        assert_eq!(
            json(&client.recv_text().await),
            serde_json::json!({"type": "message", "name": "bob", "text": "two"}),
            "bob's name came back from his socket's attachment"
        );
    }
    drop((ada, bob));
    drop(node);

    let node = dev().start();
    let mut carol = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=carol"))).await;
    let hello = json(&carol.recv_text().await);
    let texts: Vec<&str> = hello["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two"], "SQL storage survived the restart");
    let plain = crate::support::http_get(
        node.http_addr(),
        &format!("/rooms/{room}"),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(
        plain.json()["lastSpeaker"],
        "bob",
        "KV storage survived the restart"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// New JavaScript deployed with `torpor reload`: the sockets stay open,
/// the new code handles their next messages, and the names in their
/// attachments are still there. A change that does not parse is refused
/// and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_changed_js_keeps_every_socket_open() {
    let app = tempfile::tempdir().unwrap();
    copy_dir(
        &wrangler_config("chat").parent().unwrap().join("src"),
        &app.path().join("src"),
    );
    std::fs::copy(wrangler_config("chat"), app.path().join("wrangler.toml")).unwrap();
    let node = Node::builder()
        .dev(&app.path().join("wrangler.toml"))
        .start();
    let room = unique_name("reload");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    ada.recv_text().await;
    ada.recv_text().await;
    ada.send_text("old code").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "message", "name": "ada", "text": "old code"})
    );

    let messages = app.path().join("src/messages.js");
    let old = std::fs::read_to_string(&messages).unwrap();
    std::fs::write(&messages, "export const HISTORY = 20 +;\n").unwrap();
    let (code, _, stderr) = node.reload().await;
    assert_eq!(code, 1, "a module that does not parse is refused: {stderr}");
    assert!(stderr.contains("messages.js:1"), "{stderr}");

    let new = old.replace(
        "JSON.stringify({ type: \"message\", name, text })",
        "JSON.stringify({ type: \"message\", name, text, version: 2 })",
    );
    assert_ne!(new, old, "the test's edit applies");
    std::fs::write(&messages, new).unwrap();
    let (code, stdout, stderr) = node.reload().await;
    assert_eq!(code, 0, "reload: {stdout} {stderr}");
    ada.send_text("new code").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "message", "name": "ada", "text": "new code", "version": 2}),
        "the same socket, its attachment, and the new code"
    );
}

/// A worker running JavaScript objects exits cleanly when idle (its
/// engine torn down with nothing left alive in it) and the next message
/// wakes the room in a new worker, its name still in the attachment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_js_worker_exits_cleanly_and_the_next_message_wakes_the_room() {
    let node = chat_node()
        .workers(1)
        .hibernate_after("300ms")
        .worker_idle_exit("1s")
        .start();
    let room = unique_name("js-idle");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    ada.recv_text().await;
    ada.recv_text().await;
    crate::support::assert_eventually!(
        node.worker_pids().await.iter().all(Option::is_none),
        Duration::from_secs(15),
        "the worker exits once the room hibernated"
    );
    ada.send_text("back").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "message", "name": "ada", "text": "back"})
    );
    let lines = node.stderr_lines();
    assert!(
        lines.iter().any(|l| l.contains("worker exited while idle")),
        "{lines:#?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("Assertion") || l.contains("abort") || l.contains("signal")),
        "a worker died instead of exiting: {lines:#?}"
    );
}

/// The code a node runs changes only with a reload: a worker restarted
/// after a crash runs what the node checked, not what the files hold now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_runs_the_checked_js_not_the_files_edited_since() {
    let app = tempfile::tempdir().unwrap();
    copy_dir(
        &wrangler_config("chat").parent().unwrap().join("src"),
        &app.path().join("src"),
    );
    let main = app.path().join("src/index.js");
    let node = Node::builder()
        .workers(1)
        .extra_config(&format!(
            "[vars]\nGREETING = \"welcome\"\n\
             [[apps]]\nname = \"chat\"\nmain = {main:?}\n\
             [[namespaces]]\nname = \"ROOMS\"\nclass = \"ChatRoom\"\napp = \"chat\"\n\
             [[routes]]\npath = \"/*\"\napp = \"chat\"\n"
        ))
        .start();
    let room = unique_name("pinned");
    let mut ada = Client::connect(&node.ws_url(&format!("/rooms/{room}?name=ada"))).await;
    ada.recv_text().await;
    ada.recv_text().await;

    let messages = app.path().join("src/messages.js");
    let old = std::fs::read_to_string(&messages).unwrap();
    let new = old.replace(
        "JSON.stringify({ type: \"message\", name, text })",
        "JSON.stringify({ type: \"message\", name, text, version: 2 })",
    );
    assert_ne!(new, old, "the test's edit applies");
    std::fs::write(&messages, new).unwrap();
    let worker = node.worker_pids().await[0].expect("a worker runs the room");
    assert!(node.kill_descendant(worker));
    crate::support::assert_eventually!(
        node.worker_pids().await[0].is_some_and(|pid| pid != worker),
        Duration::from_secs(10),
        "a new worker replaces the killed one"
    );
    ada.send_text("after the crash").await;
    assert_eq!(
        json(&ada.recv_text().await),
        serde_json::json!({"type": "message", "name": "ada", "text": "after the crash"}),
        "the restarted worker runs the code the node checked"
    );
    let (code, stdout, stderr) = node.reload().await;
    assert_eq!(code, 0, "reload: {stdout} {stderr}");
    ada.send_text("after the reload").await;
    assert_eq!(json(&ada.recv_text().await)["version"], 2);
}

/// An upgrade the front forwards to an object that does not accept it is
/// answered with the object's response, and leaves no socket behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_upgrade_the_object_refuses_gets_its_answer() {
    let main = app_main("lab");
    let node = Node::builder()
        .extra_config(&format!(
            "[[apps]]\nname = \"lab\"\nmain = {main:?}\n\
             [[namespaces]]\nname = \"LAB\"\nclass = \"Lab\"\napp = \"lab\"\n\
             [[routes]]\npath = \"/*\"\napp = \"lab\"\n"
        ))
        .start();
    let name = unique_name("refuse");
    let addr = node.http_addr();
    let refused = crate::support::upgrade_response(addr, &format!("/lab/{name}?op=nope"));
    assert_eq!(refused.status, 404, "{}", refused.head);
    let plain = crate::support::upgrade_response(addr, &format!("/lab/{name}?op=count"));
    assert_eq!(plain.status, 200, "{}", plain.head);
    let stats = node.stats("Lab", &name).await;
    assert_eq!(stats.connections, 0, "{stats:?}");
    assert_eq!(stats.upgrades, 0, "{stats:?}");
}

/// The load generator's JS app (loadtest/apps/bench-js) under `torpor dev`
/// answers the part of the Bench protocol loadtest's idle, ping, echo,
/// broadcast and wake scenarios send, as the native Bench does, so that its
/// figures against workerd's are for the same work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loadtest_js_app_speaks_the_bench_protocol_across_hibernation() {
    let config =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../loadtest/apps/bench-js/wrangler.toml");
    let node = Node::builder().dev(&config).start();
    let name = unique_name("bench-js");
    let mut a = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    let mut b = Client::connect(&node.ws_url(&format!("/bench/{name}"))).await;
    assert_eq!(a.request("echo:hello").await, "hello");
    let attachment = "a".repeat(2000);
    assert_eq!(a.request(&format!("attach:{attachment}")).await, "ok");
    assert_eq!(b.request("count").await, "2");
    a.send_text("bcast:all").await;
    assert_eq!(a.recv_text().await, "all");
    assert_eq!(b.recv_text().await, "all");
    assert_eq!(a.request("put:probe=1").await, "ok");
    assert_eq!(a.request("remember:live").await, "ok");
    assert_eq!(a.request("recall").await, "live");

    let asleep = node
        .wait_hibernated("Bench", &name, Duration::from_secs(20))
        .await;
    assert_eq!(b.request("ping").await, "pong");
    assert_eq!(
        node.stats("Bench", &name).await.wakes,
        asleep.wakes,
        "ping woke it"
    );
    assert_eq!(a.request("echo:x").await, "x");
    assert_eq!(a.request("recall").await, "", "the instance was a new one");
    assert_eq!(a.request("getattach").await, attachment);
    assert_eq!(a.request("get:probe").await, "1");
}
