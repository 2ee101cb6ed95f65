//! The node's admin listener, in the supervisor: it asks every edge's own
//! admin socket (`run/edge-<i>.admin`) and answers for the whole node:
//! an object's counts summed over the edges that hold its sockets, the
//! metrics summed series by series, and the pids of every process.

use crate::admin::{json, respond};
use crate::supervisor::{Pids, ReloadRequest};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};
use tracing::warn;

/// How long one edge may take to answer an admin question.
const EDGE_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from an edge.
const MAX_EDGE_ANSWER_BYTES: u64 = 64 << 20;

/// The admin socket of edge `edge` in `run_dir`.
pub fn edge_admin_path(run_dir: &Path, edge: u16) -> PathBuf {
    run_dir.join(format!("edge-{edge}.admin"))
}

/// What the node's admin API reads from.
pub struct NodeAdmin {
    /// Where the edges' admin sockets are.
    pub run_dir: PathBuf,
    /// Number of edges.
    pub edges: u16,
    /// The children's pids, kept by the supervisor.
    pub pids: Arc<Mutex<Pids>>,
    /// Where `POST /admin/reload` goes.
    pub reload: tokio::sync::mpsc::UnboundedSender<ReloadRequest>,
    /// Where `POST /admin/upgrade` goes.
    pub upgrade: tokio::sync::mpsc::UnboundedSender<ReloadRequest>,
}

/// Serves the node's admin API until the listener fails.
pub async fn serve(listener: TcpListener, admin: Arc<NodeAdmin>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                warn!(%err, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(admin.clone(), request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle<B>(
    admin: Arc<NodeAdmin>,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let deploy = match request.uri().path() {
        "/admin/reload" => Some(("POST /admin/reload", &admin.reload)),
        "/admin/upgrade" => Some(("POST /admin/upgrade", &admin.upgrade)),
        _ => None,
    };
    if let Some((what, requests)) = deploy {
        if request.method() != hyper::Method::POST {
            return Ok(json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({"error": what}),
            ));
        }
        return Ok(deploy_and_report(requests).await);
    }
    if request.method() != hyper::Method::GET {
        return Ok(json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "only GET"}),
        ));
    }
    let path = request.uri().path().to_owned();
    if path == "/admin/node" {
        return Ok(json(StatusCode::OK, &node(&admin)));
    }
    let answers = ask_edges(&admin, &path).await;
    if answers.iter().all(Option::is_none) {
        return Ok(json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "no edge answered"}),
        ));
    }
    if path == "/metrics" {
        let texts: Vec<&str> = answers
            .iter()
            .flatten()
            .filter(|(status, _)| *status == 200)
            .filter_map(|(_, body)| std::str::from_utf8(body).ok())
            .collect();
        return Ok(respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            sum_metrics(&texts),
        ));
    }
    if path.starts_with("/admin/objects/") {
        return Ok(merge_objects(&answers));
    }
    // Anything else: the first edge's answer speaks for all.
    let (status, body) = answers.into_iter().flatten().next().unwrap_or_default();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok(respond(status, "application/json", body))
}

/// Reloads (or upgrades) and answers with the report: 200 when every
/// worker (edge) was replaced, 409 when it was refused (nothing changed),
/// 500 when it failed part way.
async fn deploy_and_report(
    requests: &tokio::sync::mpsc::UnboundedSender<ReloadRequest>,
) -> Response<Full<Bytes>> {
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let gone = || {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "the supervisor is shutting down"}),
        )
    };
    if requests.send(reply).is_err() {
        return gone();
    }
    match outcome.await {
        Ok(Ok(report)) => json(StatusCode::OK, &report),
        Ok(Err(err)) => {
            let status = if err.refused {
                StatusCode::CONFLICT
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            json(
                status,
                &serde_json::json!({"error": err.message, "refused": err.refused}),
            )
        }
        Err(_) => gone(),
    }
}

fn node(admin: &NodeAdmin) -> serde_json::Value {
    let pids = match admin.pids.lock() {
        Ok(pids) => pids.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let list = |pids: &[Option<u32>]| -> Vec<serde_json::Value> {
        pids.iter()
            .enumerate()
            .map(|(index, pid)| serde_json::json!({"index": index, "pid": pid}))
            .collect()
    };
    let workers: Vec<serde_json::Value> = pids
        .workers
        .iter()
        .enumerate()
        .map(|(index, pid)| {
            let version = pids.worker_versions.get(index).cloned().flatten();
            serde_json::json!({"index": index, "pid": pid, "version": version})
        })
        .collect();
    serde_json::json!({
        "supervisor_pid": std::process::id(),
        "supervisor_version": torpor_objects::build_version(),
        "edge_pid": pids.edges.first().copied().flatten(),
        "edges": list(&pids.edges),
        "workers": workers,
    })
}

/// Each edge's answer to `GET path` (status and body), in edge order;
/// `None` for an edge that is down or does not answer in time.
async fn ask_edges(admin: &NodeAdmin, path: &str) -> Vec<Option<(u16, Vec<u8>)>> {
    let asks = (0..admin.edges).map(|edge| {
        let socket = edge_admin_path(&admin.run_dir, edge);
        async move {
            match tokio::time::timeout(EDGE_ANSWER_TIMEOUT, get(&socket, path)).await {
                Ok(Ok(answer)) => Some(answer),
                Ok(Err(err)) => {
                    warn!(%err, edge, "edge admin did not answer");
                    None
                }
                Err(_) => {
                    warn!(edge, "edge admin timed out");
                    None
                }
            }
        }
    });
    futures_util::future::join_all(asks).await
}

/// A `GET` over HTTP/1.0 on a Unix socket: the edge closes the connection
/// after its answer, so the body is what follows the head.
async fn get(socket: &Path, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = UnixStream::connect(socket).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nhost: edge\r\n\r\n").as_bytes())
        .await?;
    let mut answer = Vec::new();
    stream
        .take(MAX_EDGE_ANSWER_BYTES)
        .read_to_end(&mut answer)
        .await?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed edge answer");
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let status = answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(bad)?;
    Ok((status, answer.split_off(head_end + 4)))
}

/// Prometheus text of every edge, as one: samples of the same series are
/// summed (every edge metric is a counter or a gauge of a count), comments
/// kept once.
fn sum_metrics(texts: &[&str]) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut samples: BTreeMap<String, f64> = BTreeMap::new();
    let mut seen_comments = std::collections::HashSet::new();
    for text in texts {
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if line.starts_with('#') {
                if seen_comments.insert(line.to_owned()) {
                    order.push(line.to_owned());
                }
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match samples.get_mut(series) {
                Some(sum) => *sum += value,
                None => {
                    samples.insert(series.to_owned(), value);
                    order.push(series.to_owned());
                }
            }
        }
    }
    let mut out = String::new();
    for line in order {
        match samples.get(&line) {
            Some(value) => out.push_str(&format!("{line} {value}\n")),
            None => {
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

/// One object's report from each edge that knows it, as one: counts
/// summed, `active` if live from any edge, plus the connections per edge.
fn merge_objects(answers: &[Option<(u16, Vec<u8>)>]) -> Response<Full<Bytes>> {
    let mut merged: Option<serde_json::Map<String, serde_json::Value>> = None;
    let mut per_edge = Vec::new();
    let mut not_found = None;
    for (edge, answer) in answers.iter().enumerate() {
        let Some((status, body)) = answer else {
            continue;
        };
        let Ok(serde_json::Value::Object(report)) = serde_json::from_slice(body) else {
            continue;
        };
        if *status != 200 {
            not_found.get_or_insert((*status, report));
            continue;
        }
        per_edge.push(serde_json::json!({
            "edge": edge,
            "connections": report.get("connections").cloned().unwrap_or_default(),
            "active": report.get("active").cloned().unwrap_or_default(),
        }));
        match merged.as_mut() {
            None => merged = Some(report),
            Some(total) => add_report(total, report),
        }
    }
    match merged {
        Some(mut total) => {
            total.insert("edges".to_owned(), serde_json::Value::Array(per_edge));
            json(StatusCode::OK, &serde_json::Value::Object(total))
        }
        None => {
            let (status, report) = not_found.unwrap_or_default();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
            json(status, &serde_json::Value::Object(report))
        }
    }
}

fn add_report(
    total: &mut serde_json::Map<String, serde_json::Value>,
    report: serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::Value;
    for (key, value) in report {
        let slot = total.entry(key.clone()).or_insert(Value::Null);
        match (key.as_str(), &*slot, value) {
            ("active", Value::Bool(a), Value::Bool(b)) => *slot = Value::Bool(*a || b),
            // The database size is the object's, not the edge's: take the
            // one reported, not a sum.
            ("stored_bytes", _, Value::Number(n)) => *slot = Value::Number(n),
            ("name", Value::Null, name) => *slot = name,
            (_, Value::Number(a), Value::Number(b)) => {
                if let (Some(a), Some(b)) = (a.as_u64(), b.as_u64()) {
                    *slot = Value::from(a + b);
                } else if let (Some(a), Some(b)) = (a.as_f64(), b.as_f64()) {
                    *slot = serde_json::Number::from_f64(a + b).map_or(Value::Null, Value::Number);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_of_two_edges_sum_by_series() {
        let a = "# TYPE torpor_edge_wakes_total counter\ntorpor_edge_wakes_total 2\ntorpor_frontdoor_rejects_total{status=\"401\"} 1\n";
        let b = "# TYPE torpor_edge_wakes_total counter\ntorpor_edge_wakes_total 3\ntorpor_frontdoor_rejects_total{status=\"404\"} 4\n";
        let text = sum_metrics(&[a, b]);
        assert_eq!(
            text,
            "# TYPE torpor_edge_wakes_total counter\ntorpor_edge_wakes_total 5\n\
             torpor_frontdoor_rejects_total{status=\"401\"} 1\n\
             torpor_frontdoor_rejects_total{status=\"404\"} 4\n"
        );
    }

    #[test]
    fn reports_of_two_edges_add_up() {
        let mut total = serde_json::json!({
            "name": null, "connections": 3, "active": false, "wakes": 1,
            "billable_requests": 1.5, "stored_bytes": null
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        let other = serde_json::json!({
            "name": "lobby", "connections": 4, "active": true, "wakes": 0,
            "billable_requests": 2.0, "stored_bytes": 4096
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        add_report(&mut total, other);
        assert_eq!(
            serde_json::Value::Object(total),
            serde_json::json!({
                "name": "lobby", "connections": 7, "active": true, "wakes": 1,
                "billable_requests": 3.5, "stored_bytes": 4096
            })
        );
    }
}
