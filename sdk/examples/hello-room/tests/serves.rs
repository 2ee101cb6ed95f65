//! Runs the hello-room binary as a user would, on a config of its own, and
//! talks to it over loopback: HTTP, WebSockets, and a refused config.

use futures_util::{SinkExt, StreamExt};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(20);

/// The node, stopped when the test ends or fails: SIGTERM lets the
/// supervisor take its edges and workers down with it.
struct Node {
    child: Child,
    dir: PathBuf,
    http: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hello-room-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temp dir");
    dir
}

fn config(dir: &Path, class: &str) -> PathBuf {
    let text = format!(
        "data_dir = {:?}\n\n[listen]\nhttp = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n\
         [[namespaces]]\nname = \"ROOMS\"\nclass = \"{class}\"\n\n\
         [[routes]]\npath = \"/rooms/{{name}}\"\nnamespace = \"ROOMS\"\n",
        dir.join("data")
    );
    let path = dir.join("torpor.toml");
    std::fs::write(&path, text).expect("the config is written");
    path
}

fn start(name: &str) -> Node {
    let dir = temp_dir(name);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hello-room"))
        .arg("--config")
        .arg(config(&dir, "Room"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("hello-room starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("torpor ready http=") {
                let _ = tx.send(
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    });
    let mut node = Node {
        child,
        dir,
        http: String::new(),
    };
    node.http = rx.recv_timeout(TIMEOUT).expect("the ready line");
    node
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .expect("sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("an answer");
    response
}

async fn next_text<S>(socket: &mut S) -> String
where
    S: StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(TIMEOUT, socket.next())
            .await
            .expect("a message in time")
            .expect("the socket is open")
            .expect("a good frame");
        if let Message::Text(text) = message {
            return text.to_string();
        }
    }
}

#[tokio::test]
async fn the_room_serves_http_and_websockets() {
    let node = start("serves");
    let url = |who: &str| format!("ws://{}/rooms/lobby?name={who}", node.http);
    let (mut ada, _) = tokio_tungstenite::connect_async(url("ada"))
        .await
        .expect("ada joins");
    let (mut linus, _) = tokio_tungstenite::connect_async(url("linus"))
        .await
        .expect("linus joins");

    ada.send(Message::text("hello")).await.expect("sent");
    assert_eq!(next_text(&mut ada).await, "ada: hello");
    assert_eq!(next_text(&mut linus).await, "ada: hello");
    linus.send(Message::text("hi")).await.expect("sent");
    assert_eq!(next_text(&mut ada).await, "linus: hi");

    let http = node.http.clone();
    let answer = tokio::task::spawn_blocking(move || http_get(&http, "/rooms/lobby"))
        .await
        .expect("the request ran");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("2 messages\n"), "{answer}");
}

#[test]
fn a_config_naming_a_class_the_binary_lacks_is_refused_by_name() {
    let dir = temp_dir("refused");
    let output = Command::new(env!("CARGO_BIN_EXE_hello-room"))
        .arg("--config")
        .arg(config(&dir, "ChatRoom"))
        .output()
        .expect("hello-room runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("\"ChatRoom\""), "{stderr}");
    assert!(stderr.contains("it has: Room"), "{stderr}");
}
