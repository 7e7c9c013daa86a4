//! API routes over a datapath the daemon owns.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{monotonic_ms, ApiError, DatapathView, FlowsView, Status};
use crate::odp::socket::{OdpClient, OdpError};

/// What the handlers read.
pub struct AppState {
    pub status: Status,
    /// The kernel client, present when the daemon runs the fast datapath.
    pub odp: Option<Arc<OdpClient>>,
    pub datapath: Option<String>,
}

struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl From<OdpError> for Failure {
    fn from(e: OdpError) -> Self {
        Failure(StatusCode::BAD_GATEWAY, e.to_string())
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/datapath", get(datapath))
        .route("/v1/flows", get(flows))
        .with_state(state)
}

async fn status(State(s): State<Arc<AppState>>) -> Json<Status> {
    Json(s.status.clone())
}

fn fastdp(s: &AppState) -> Result<(Arc<OdpClient>, String), Failure> {
    match (&s.odp, &s.datapath) {
        (Some(c), Some(d)) => Ok((c.clone(), d.clone())),
        _ => Err(Failure(StatusCode::CONFLICT, format!("no fast datapath: {}", s.status.reason))),
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Failure> + Send + 'static) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn datapath(State(s): State<Arc<AppState>>) -> Result<Json<DatapathView>, Failure> {
    let (c, name) = fastdp(&s)?;
    blocking(move || {
        let dp = c
            .get_datapath(&name)?
            .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("datapath {name} is gone")))?;
        let ports = c.dump_vports(dp.dp_ifindex)?;
        Ok(Json(DatapathView { datapath: dp, ports }))
    })
    .await
}

async fn flows(State(s): State<Arc<AppState>>) -> Result<Json<FlowsView>, Failure> {
    let (c, name) = fastdp(&s)?;
    blocking(move || {
        let dp = c
            .get_datapath(&name)?
            .ok_or_else(|| Failure(StatusCode::NOT_FOUND, format!("datapath {name} is gone")))?;
        let flows = c.dump_flows(dp.dp_ifindex)?;
        Ok(Json(FlowsView { datapath: name, now_ms: monotonic_ms(), flows }))
    })
    .await
}
