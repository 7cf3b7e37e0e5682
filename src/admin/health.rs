//! `POST /v1/endpoints/{namespace}/{name}/enable`: re-enables an auto-disabled endpoint.
//!
//! The disabled flag lives in the stats bucket, so any replica of any role can clear it; every
//! delivery replica follows the bucket and resumes the endpoint's queued jobs.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::json;

use super::AdminState;
use crate::{
    dataplane::{stats, topology::STATS_BUCKET},
    model::EndpointKey,
};

pub fn routes() -> Router<AdminState> {
    Router::new().route("/v1/endpoints/{namespace}/{name}/enable", post(enable))
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn enable(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let key = EndpointKey::new(&namespace, &name);
    if !state.catalog.borrow().iter().any(|e| e.key == key) {
        return error(StatusCode::NOT_FOUND, format!("endpoint {key} not found"));
    }
    let store = match state.js.get_key_value(STATS_BUCKET).await {
        Ok(store) => store,
        Err(e) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("re-enabling endpoint {key}: stats bucket unavailable: {e}"),
            );
        }
    };
    match stats::enable(&store, &key).await {
        Ok(was_disabled) => {
            if was_disabled {
                tracing::info!(endpoint = %key, "endpoint re-enabled through the admin API");
            }
            Json(json!({ "enabled": true, "wasDisabled": was_disabled })).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
