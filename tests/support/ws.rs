//! `Client`: a tokio-tungstenite WebSocket client where every network await is bounded by a
//! timeout, so a test fails with a message instead of hanging.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::NETWORK_TIMEOUT;

/// One WebSocket connection to the node.
pub struct Client {
    url: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects (handshake bounded by `NETWORK_TIMEOUT`); panics if it fails.
    pub async fn connect(url: &str) -> Client {
        let (ws, _response) = timeout(NETWORK_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|_| panic!("WebSocket handshake with {url} timed out"))
            .unwrap_or_else(|e| panic!("WebSocket handshake with {url} failed: {e}"));
        Client {
            url: url.to_owned(),
            ws,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn send(&mut self, message: Message) {
        let what = describe(&message);
        timeout(NETWORK_TIMEOUT, self.ws.send(message))
            .await
            .unwrap_or_else(|_| panic!("{}: sending {what} timed out", self.url))
            .unwrap_or_else(|e| panic!("{}: sending {what} failed: {e}", self.url));
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.send(Message::binary(bytes)).await;
    }

    /// Queues many text messages and flushes once (pipelined).
    pub async fn send_many_text(&mut self, text: &str, count: usize) {
        let url = self.url.clone();
        let ws = &mut self.ws;
        let all = async move {
            for _ in 0..count {
                ws.feed(Message::text(text)).await?;
            }
            ws.flush().await
        };
        timeout(NETWORK_TIMEOUT, all)
            .await
            .unwrap_or_else(|_| panic!("{url}: sending {count} x {text:?} timed out"))
            .unwrap_or_else(|e| panic!("{url}: sending {count} x {text:?} failed: {e}"));
    }

    /// The next data or close message within `wait` (protocol pings and pongs skipped);
    /// `None` if nothing came. Panics if the connection failed or ended without a Close.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match next {
                None => panic!("{}: the connection ended without a Close frame", self.url),
                Some(Err(e)) => panic!("{}: the connection failed: {e}", self.url),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
            }
        }
    }

    /// Every data message until the socket is quiet for `quiet`, and whether
    /// the connection ended (closed, reset, or a Close frame) meanwhile.
    pub async fn drain_until_quiet_or_end(&mut self, quiet: Duration) -> (Vec<Message>, bool) {
        let mut messages = Vec::new();
        loop {
            match tokio::time::timeout(quiet, self.ws.next()).await {
                Err(_) => return (messages, false),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return (messages, true),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(message))) => messages.push(message),
            }
        }
    }

    /// The next data or close message; panics after `NETWORK_TIMEOUT`.
    pub async fn recv(&mut self) -> Message {
        match self.try_recv(NETWORK_TIMEOUT).await {
            Some(message) => message,
            None => panic!("{}: nothing received within {NETWORK_TIMEOUT:?}", self.url),
        }
    }

    /// The next message, which must be text.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!(
                "{}: expected a text message, got {}",
                self.url,
                describe(&other)
            ),
        }
    }

    /// Sends `text` and returns the next text message.
    pub async fn request(&mut self, text: &str) -> String {
        self.send_text(text).await;
        self.recv_text().await
    }

    /// The next message, which must be a Close frame; returns its code.
    pub async fn recv_close_code(&mut self) -> u16 {
        match self.recv().await {
            Message::Close(Some(frame)) => u16::from(frame.code),
            other => panic!(
                "{}: expected a Close frame, got {}",
                self.url,
                describe(&other)
            ),
        }
    }

    /// Starts a clean close (code 1000) without waiting for the reply.
    pub async fn close(&mut self) {
        let url = self.url.clone();
        let _ = timeout(NETWORK_TIMEOUT, self.ws.close(None))
            .await
            .unwrap_or_else(|_| panic!("{url}: sending Close timed out"));
    }
}

/// A short description of a message for failure output (long payloads are cut).
pub fn describe(message: &Message) -> String {
    const SHOWN: usize = 120;
    match message {
        Message::Text(text) => {
            let text = text.as_str();
            if text.len() > SHOWN {
                let cut = (0..=SHOWN)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                format!("text of {} bytes {:?}..", text.len(), &text[..cut])
            } else {
                format!("text {text:?}")
            }
        }
        Message::Binary(bytes) => format!("binary of {} bytes", bytes.len()),
        Message::Ping(p) => format!("ping {:?}", p.as_ref()),
        Message::Pong(p) => format!("pong {:?}", p.as_ref()),
        Message::Close(frame) => format!("close {frame:?}"),
        Message::Frame(_) => "raw frame".to_owned(),
    }
}

/// A client that sends `echo:<name>-<n>` one after the other and checks
/// each answer, until told to stop; returns how many it sent.
pub async fn echo_until(
    mut client: Client,
    name: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Client, u64) {
    let mut sent = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let text = format!("{name}-{sent}");
        let answer = client.request(&format!("echo:{text}")).await;
        assert_eq!(
            answer, text,
            "{name}: a reply out of order, lost or repeated"
        );
        sent += 1;
    }
    (client, sent)
}
