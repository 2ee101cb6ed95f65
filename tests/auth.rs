//! Authentication at the edge: HMAC tokens per route and an Origin allowlist. A refused
//! request gets 401 or 403 from the edge and wakes, counts and bills nothing; a valid token
//! connects from each of its three places; `torpor token` mints tokens the node accepts.
//! Tokens are minted here with hmac + sha2 from the documented format, not with the
//! gateway's own code, so that the format itself is under test.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{http_request, unique_name, HttpResponse, Node, NETWORK_TIMEOUT};

/// The variable `/secure/{name}`'s secret comes from.
const SECRET_VAR: &str = "TORPOR_TEST_SECURE_SECRET";
const SECURE_SECRET: &str = "secure-route-secret-0123456789";
/// `/web/{name}`'s inline secret.
const WEB_SECRET: &str = "web-route-secret-abcdefghij";
const ALLOWED_ORIGIN: &str = "https://a.example";

/// Replaces the default namespaces and routes (so it lists all it needs).
const AUTH_CONFIG: &str = r#"
[[namespaces]]
name = "SECURE"
class = "Bench"

[[namespaces]]
name = "WEB"
class = "Echo"

[[namespaces]]
name = "COUNTERS"
class = "Counter"

[[routes]]
path = "/secure/{name}"
namespace = "SECURE"
auth = "hmac"
secret_env = "TORPOR_TEST_SECURE_SECRET"

[[routes]]
path = "/web/{name}"
namespace = "WEB"
auth = "hmac"
secret = "web-route-secret-abcdefghij"
origins = ["https://a.example", "http://localhost:3000"]

[[routes]]
path = "/counters"
namespace = "COUNTERS"
id = "unique"
"#;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A node with the auth routes on a data dir the test can read the node secret from.
fn start(data_dir: &Path) -> Node {
    Node::builder()
        .data_dir(data_dir)
        .extra_config(AUTH_CONFIG)
        .env(SECRET_VAR, SECURE_SECRET)
        .start()
}

/// The id the front door resolves for `name` in `namespace`, as 64 hex characters.
fn object_id(data_dir: &Path, namespace: &str, name: &str) -> String {
    let secret = torpor_objects::ids::load_or_create_secret(data_dir).unwrap();
    torpor_objects::ids::NamespaceKey::derive(&secret, namespace)
        .id_from_name(name)
        .to_hex()
}

/// `<expiry>.<base64url-nopad(HMAC-SHA256(secret, "<id>.<expiry>"))>`, from the docs.
fn mint(secret: &str, id_hex: &str, expiry: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{id_hex}.{expiry}").as_bytes());
    let mac = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{expiry}.{mac}")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A raw upgrade request for `target` with extra header lines, answered in full.
async fn raw_upgrade(node: &Node, target: &str, extra: &[(&str, &str)]) -> HttpResponse {
    let addr = node.http_addr();
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        request += &format!("{name}: {value}\r\n");
    }
    request += "\r\n";
    tokio::task::spawn_blocking(move || http_request(addr, request.as_bytes(), NETWORK_TIMEOUT))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("upgrade request for {target} failed: {e}"))
}

/// A tokio-tungstenite handshake with extra request headers; the 101's subprotocol.
async fn connect(
    node: &Node,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<(Socket, Option<String>), String> {
    let mut request = node.ws_url(target).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let (socket, response) =
        tokio::time::timeout(NETWORK_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| format!("handshake for {target} timed out"))?
            .map_err(|e| format!("handshake for {target} failed: {e}"))?;
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((socket, protocol))
}

/// Sends `text` and returns the next text message.
async fn request(socket: &mut Socket, text: &str) -> String {
    socket.send(Message::text(text)).await.unwrap();
    loop {
        let next = tokio::time::timeout(NETWORK_TIMEOUT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no answer to {text:?}"));
        match next {
            Some(Ok(Message::Text(reply))) => return reply.as_str().to_owned(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text answer to {text:?}, got {other:?}"),
        }
    }
}

fn assert_unauthorized(response: &HttpResponse, reason: &str, what: &str) {
    assert_eq!(response.status, 401, "{what}: {}", response.head);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate {challenge:?}"
    );
    assert!(
        response.text().contains(reason),
        "{what}: body {:?}, expected {reason:?}",
        response.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_get_401_and_wake_nothing() {
    let data = tempfile::tempdir().unwrap();
    let node = start(data.path());
    let name = unique_name("guarded");
    let id = object_id(data.path(), "SECURE", &name);
    let target = format!("/secure/{name}");
    let expired = mint(SECURE_SECRET, &id, now() - 60);
    let other_object = mint(
        SECURE_SECRET,
        &object_id(data.path(), "SECURE", "someone-else"),
        now() + 3600,
    );
    let other_secret = mint("not-the-route-secret-at-all", &id, now() + 3600);
    // (target, extra headers, reason told, what the case is)
    type Case = (
        String,
        Vec<(&'static str, String)>,
        &'static str,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (target.clone(), vec![], "token missing", "no token"),
        (
            format!("{target}?token=garbage"),
            vec![],
            "token invalid",
            "malformed",
        ),
        (
            target.clone(),
            vec![("Authorization", format!("Bearer {other_secret}"))],
            "token invalid",
            "bad signature",
        ),
        (
            target.clone(),
            vec![("Sec-WebSocket-Protocol", format!("torpor-token.{expired}"))],
            "token expired",
            "expired",
        ),
        (
            format!("{target}?token={other_object}"),
            vec![],
            "token invalid",
            "token of another object",
        ),
    ];
    for (path, headers, reason, what) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = raw_upgrade(&node, path, &headers).await;
        assert_unauthorized(&response, reason, what);
    }
    // A plain request is refused the same way.
    let addr = node.http_addr();
    let plain = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let response = tokio::task::spawn_blocking(move || {
        http_request(addr, plain.as_bytes(), NETWORK_TIMEOUT).unwrap()
    })
    .await
    .unwrap();
    assert_unauthorized(&response, "token missing", "plain GET");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = node.stats("Bench", &name).await;
    assert_eq!(
        (stats.wakes, stats.events, stats.upgrades),
        (0, 0, 0),
        "{stats:?}"
    );
    assert_eq!(stats.billable_requests, 0.0, "{stats:?}");

    let metrics = node.admin_get("/metrics").await.text();
    let rejects = metrics
        .lines()
        .find(|l| l.starts_with("torpor_frontdoor_rejects_total{status=\"401\"}"))
        .unwrap_or_else(|| panic!("no 401 rejects counted:\n{metrics}"));
    let counted: f64 = rejects.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(counted >= 6.0, "{rejects}");

    // The same object does wake for a valid token, so the zeros above were its counters.
    let token = mint(SECURE_SECRET, &id, now() + 60);
    let (mut socket, _) = connect(&node, &format!("{target}?token={token}"), &[])
        .await
        .unwrap();
    assert_eq!(request(&mut socket, "echo:x").await, "x");
    let stats = node.stats("Bench", &name).await;
    assert!(stats.wakes >= 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_connects_from_each_of_its_places() {
    let data = tempfile::tempdir().unwrap();
    let node = start(data.path());
    let name = unique_name("open-sesame");
    let target = format!("/secure/{name}");
    let token = mint(
        SECURE_SECRET,
        &object_id(data.path(), "SECURE", &name),
        now() + 300,
    );

    let (mut by_query, _) = connect(&node, &format!("{target}?token={token}"), &[])
        .await
        .unwrap();
    assert_eq!(request(&mut by_query, "echo:x").await, "x");

    let bearer = format!("Bearer {token}");
    let (mut by_header, protocol) = connect(&node, &target, &[("Authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(protocol, None);
    assert_eq!(request(&mut by_header, "echo:x").await, "x");

    // Offered alone, the token entry is echoed (a browser fails an unanswered offer).
    let entry = format!("torpor-token.{token}");
    let (mut by_protocol, protocol) =
        connect(&node, &target, &[("Sec-WebSocket-Protocol", &entry)])
            .await
            .unwrap();
    assert_eq!(protocol.as_deref(), Some(entry.as_str()));
    assert_eq!(request(&mut by_protocol, "echo:x").await, "x");

    // Offered with `torpor`, the 101 answers `torpor` and the token stays out of it.
    let offered = format!("torpor, {entry}");
    let (mut named, protocol) = connect(&node, &target, &[("Sec-WebSocket-Protocol", &offered)])
        .await
        .unwrap();
    assert_eq!(protocol.as_deref(), Some("torpor"));
    assert_eq!(request(&mut named, "echo:x").await, "x");
    assert_eq!(request(&mut named, "count").await, "4");
}

/// Runs `torpor token` with `args` against `node`'s config, with or without the secret's
/// variable; returns (exit code, stdout, stderr).
fn torpor_token(node: &Node, args: &[&str], with_secret: bool) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_torpor"));
    command
        .arg("token")
        .arg("--config")
        .arg(node.config_path())
        .args(args)
        .env_remove(SECRET_VAR);
    if with_secret {
        command.env(SECRET_VAR, SECURE_SECRET);
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_minted_by_torpor_token_are_accepted() {
    let data = tempfile::tempdir().unwrap();
    let node = start(data.path());
    let name = unique_name("minted");
    let target = format!("/secure/{name}");

    let (code, stdout, stderr) = torpor_token(&node, &["--route", &target, "--ttl", "1h"], true);
    assert_eq!(code, 0, "stderr: {stderr}");
    let token = stdout.trim();
    let (expiry, _) = token.split_once('.').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert!((now() + 3590..=now() + 3600).contains(&expiry), "{token}");

    let bearer = format!("Bearer {token}");
    let (mut socket, _) = connect(&node, &target, &[("Authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(request(&mut socket, "echo:x").await, "x");
    // For this object only.
    let other = raw_upgrade(&node, &format!("/secure/{name}-2?token={token}"), &[]).await;
    assert_unauthorized(&other, "token invalid", "minted for another object");

    let (code, _, stderr) = torpor_token(&node, &["--route", "/counters", "--ttl", "1h"], true);
    assert_eq!(code, 64, "a unique route: {stderr}");
    assert!(stderr.contains("cannot have tokens"), "{stderr}");
    let (code, _, stderr) = torpor_token(&node, &["--route", "/nowhere", "--ttl", "1h"], true);
    assert_eq!(code, 64, "no route: {stderr}");
    let (code, _, stderr) = torpor_token(&node, &["--route", &target, "--ttl", "soon"], true);
    assert_eq!(code, 64, "bad ttl: {stderr}");
    let (code, _, stderr) = torpor_token(&node, &["--route", &target, "--ttl", "1h"], false);
    assert_eq!(code, 78, "secret variable unset: {stderr}");
    assert!(
        stderr.contains("routes[0].secret_env") && stderr.contains(SECRET_VAR),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_not_listed_gets_403_and_a_listed_one_connects() {
    let data = tempfile::tempdir().unwrap();
    let node = start(data.path());
    let name = unique_name("web");
    let target = format!("/web/{name}");
    let token = mint(
        WEB_SECRET,
        &object_id(data.path(), "WEB", &name),
        now() + 300,
    );
    let with_token = format!("{target}?token={token}");

    let foreign = raw_upgrade(&node, &with_token, &[("Origin", "https://evil.example")]).await;
    assert_eq!(foreign.status, 403, "{}", foreign.head);
    let missing = raw_upgrade(&node, &with_token, &[]).await;
    assert_eq!(missing.status, 403, "{}", missing.head);
    let stats = node.stats("Echo", &name).await;
    assert_eq!((stats.wakes, stats.events), (0, 0), "{stats:?}");

    let (mut socket, _) = connect(&node, &with_token, &[("Origin", ALLOWED_ORIGIN)])
        .await
        .unwrap();
    socket.send(Message::text("hello")).await.unwrap();
    let echoed = tokio::time::timeout(NETWORK_TIMEOUT, socket.next())
        .await
        .unwrap();
    assert!(
        matches!(&echoed, Some(Ok(Message::Text(t))) if t.as_str() == "hello"),
        "{echoed:?}"
    );
    // A listed origin still needs its token.
    let tokenless = raw_upgrade(&node, &target, &[("Origin", ALLOWED_ORIGIN)]).await;
    assert_unauthorized(&tokenless, "token missing", "listed origin without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_object_answers_503_with_retry_after() {
    let node = Node::builder()
        .limit("max_connections_per_object", "1")
        .start();
    let path = format!("/bench/{}", unique_name("full"));
    let (mut first, _) = connect(&node, &path, &[]).await.unwrap();
    assert_eq!(request(&mut first, "echo:x").await, "x");
    let refused = raw_upgrade(&node, &path, &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
}
