//! An edge's admin API, on a Unix socket in the run directory: this edge's
//! part of an object's usage, its workers' pids, and its Prometheus
//! metrics. The node's admin listener (`node_admin`) asks every edge and
//! answers for the node.

use crate::hold::{Command, HoldHandle};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use torpor_objects::ids::NamespaceKey;
use tracing::warn;

/// What the admin API reads from.
pub struct Admin {
    /// The hold loop, which keeps usage.
    pub hold: HoldHandle,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Each namespace's class and key, to find objects by name.
    pub namespaces: Vec<(String, NamespaceKey)>,
}

/// Serves the admin API until the listener fails.
pub async fn serve(listener: UnixListener, admin: Arc<Admin>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                warn!(%err, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
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

pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

async fn ask<T>(
    hold: &HoldHandle,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    if !hold.send(command(tx)) {
        return None;
    }
    rx.await.ok()
}

async fn handle<B>(
    admin: Arc<Admin>,
    request: Request<B>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    if request.method() != hyper::Method::GET {
        return Ok(json(
            StatusCode::METHOD_NOT_ALLOWED,
            &serde_json::json!({"error": "only GET"}),
        ));
    }
    let path = request.uri().path();
    let unavailable = || {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"error": "edge is shutting down"}),
        )
    };
    if path == "/metrics" {
        return Ok(respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            admin.metrics.render(),
        ));
    }
    if path == "/admin/node" {
        let Some(pids) = ask(&admin.hold, |reply| Command::WorkerPids { reply }).await else {
            return Ok(unavailable());
        };
        let workers: Vec<_> = pids
            .iter()
            .enumerate()
            .map(|(index, pid)| serde_json::json!({"index": index, "pid": pid}))
            .collect();
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({"edge_pid": std::process::id(), "workers": workers}),
        ));
    }
    if let Some(rest) = path.strip_prefix("/admin/objects/") {
        let Some((class, name)) = rest.split_once('/') else {
            return Ok(json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": "use /admin/objects/{class}/{name}"}),
            ));
        };
        let mut report = None;
        // The segment is a name, or an id, in any namespace of the class.
        for key in admin
            .namespaces
            .iter()
            .filter(|(c, _)| c == class)
            .map(|(_, k)| k)
        {
            let id = key
                .id_from_string(name)
                .unwrap_or_else(|_| key.id_from_name(name));
            let namespace = key.namespace().to_owned();
            let Some(found) = ask(&admin.hold, |reply| Command::Report {
                namespace,
                id,
                reply,
            })
            .await
            else {
                return Ok(unavailable());
            };
            if found.is_some() {
                report = found;
                break;
            }
        }
        return Ok(match report.map(serde_json::to_value) {
            Some(Ok(value)) => json(StatusCode::OK, &value),
            Some(Err(err)) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": err.to_string()}),
            ),
            None => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": format!("no object {class}/{name} on this node")}),
            ),
        });
    }
    Ok(json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({"error": format!("no admin route {path}")}),
    ))
}
