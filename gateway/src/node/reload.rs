//! `torpor reload` and `torpor upgrade`: ask the running node (its admin
//! listener) to replace its workers or its edges, and print the report.

use crate::config::Config;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

/// A reload waits for every worker's last events: up to the handler
/// timeout each, and then some.
const MARGIN: Duration = Duration::from_secs(60);

/// What to replace.
#[derive(Clone, Copy, Debug)]
pub(super) enum Deploy {
    /// The workers: new code for the objects, the config re-read.
    Reload,
    /// The edges: new code for the edges.
    Upgrade,
}

pub(super) fn run(
    config: &Config,
    admin: Option<std::net::SocketAddr>,
    deploy: Deploy,
) -> ExitCode {
    let admin = admin.unwrap_or(config.listen.admin);
    let (path, command) = match deploy {
        Deploy::Reload => ("/admin/reload", "torpor reload"),
        Deploy::Upgrade => ("/admin/upgrade", "torpor upgrade"),
    };
    let timeout =
        config.handler_timeout * u32::from(config.workers.max(config.edge_count())) + MARGIN;
    match post(admin, path, timeout) {
        Ok((200, body)) => {
            #[allow(clippy::print_stdout)] // the report is the command's output
            {
                println!("{body}");
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("{command}: the node answered {status}: {body}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("{command}: cannot reach the node's admin listener on {admin}: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One `POST` on loopback: a plain HTTP/1.1 exchange needs no client crate.
fn post(
    addr: std::net::SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok((status, body.trim().to_owned()))
}
