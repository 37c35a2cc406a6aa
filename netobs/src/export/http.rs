//! The agent's HTTP endpoint: `/metrics`, `/healthz` and a read-only JSON
//! API under `/api/v1/` (flows, inventory, alerts). Loopback by default;
//! with a token, every request but `/healthz` must carry it.
use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming, server::conn::http1, service::service_fn, Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::Registry;
use serde::Serialize;
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
};

use crate::{
    api::{
        self, AlertList, AlertsEndpoint, AuditEndpoint, Doc, Endpoint, FlowList, FlowsEndpoint,
        HealthEndpoint, InventoryEndpoint, OverlayHealth, SettledEndpoint, SettledFlows, Summary,
        SummaryEndpoint,
    },
    inventory::Inventory,
    token::Token,
};

/// What the API serves, replaced as a whole after every read of the maps.
#[derive(Debug, Default)]
pub struct ApiState {
    pub flows: Arc<FlowList>,
    /// The read before, `dt` seconds earlier: the audit's rates.
    pub flows_before: Arc<FlowList>,
    pub dt: f64,
    pub inventory: Arc<Inventory>,
    pub alerts: AlertList,
    pub summary: Summary,
    pub health: OverlayHealth,
    /// This node's VXLAN flows that went quiet (both ways): peers' agents
    /// are offered the egress ones, the loss checker reads the ingress.
    pub settled: Arc<SettledFlows>,
}

/// A client that never finishes its headers is cut off after this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once: past it new ones are closed straight away,
/// so a flood of clients costs a bounded amount of memory.
const MAX_CONNECTIONS: usize = 256;
/// Any connection is closed after this, keep-alive or not (a scraper
/// simply reconnects).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Request headers larger than this are refused (hyper's smallest buffer).
const MAX_REQUEST_BYTES: usize = 8192;

/// Binds `addr` and serves until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    state: watch::Receiver<Arc<ApiState>>,
    token: Option<Token>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let token = Arc::new(token);
    let listener = TcpListener::bind(addr).await?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let registry = registry.clone();
            let state = state.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let resp = handle(&req, &registry, &state, token.as_ref().as_ref());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_REQUEST_BYTES)
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
                drop(slot);
            });
        }
    }))
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// A document of the API, with its version.
fn json<T: Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec(&Doc::new(v)) {
        Ok(b) => reply(StatusCode::OK, "application/json", b),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

fn handle(
    req: &Request<Incoming>,
    registry: &Registry,
    state: &watch::Receiver<Arc<ApiState>>,
    token: Option<&Token>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "read-only\n");
    }
    if let Some(t) = token {
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if req.uri().path() != "/healthz" && !t.accepts(given) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "missing or wrong bearer token\n",
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    let s = state.borrow().clone();
    match req.uri().path() {
        "/metrics" => {
            let enc = prometheus::TextEncoder::new();
            match enc.encode_to_string(&registry.gather()) {
                Ok(text) => reply(StatusCode::OK, prometheus::TEXT_FORMAT, text),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    e.to_string(),
                ),
            }
        }
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        FlowsEndpoint::PATH => json(&s.flows),
        InventoryEndpoint::PATH => json(&*s.inventory),
        AlertsEndpoint::PATH => json(&s.alerts),
        SummaryEndpoint::PATH => json(&s.summary),
        HealthEndpoint::PATH => json(&s.health),
        SettledEndpoint::PATH => {
            let to = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("to=")));
            match to.map(str::parse::<std::net::IpAddr>).transpose() {
                Ok(to) => json(&crate::loss::offered(&s.settled, to)),
                Err(_) => reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "to= must be an IP address\n",
                ),
            }
        }
        // Judged on request: the kernel's IPsec state is read now, in this
        // namespace (a netlink dump, milliseconds).
        AuditEndpoint::PATH => json(&crate::audit::of_this_node(
            &crate::audit::AgentDocs {
                inv: &s.inventory,
                flows: &s.flows.flows,
                flows_before: &s.flows_before.flows,
                alerts: &s.alerts.alerts,
                dt: s.dt,
                summary: &s.summary,
            },
            None,
            None,
        )),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            format!(
                "not found: try /metrics, /healthz, {}\n",
                api::PATHS.join(", ")
            ),
        ),
    }
}
