//! `GET /v1/events/{namespace}/{id}`: one event and where it stands at each endpoint;
//! `POST /v1/events/{namespace}/{id}/redeliver`: send it again.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;

use super::{
    AdminState,
    request::{ApiError, json_body},
};
use crate::{
    dataplane::{
        inspect::{self, EventView},
        plan::EventLimits,
        replay::{self, RedeliverError},
    },
    model::EndpointKey,
};

/// Ingest's `POST /v1/events/{namespace}/{event_type}` has the same shape: one path string, two
/// methods (the path router allows one parameter name per position). Here the last segment
/// is the event id (percent-encoded when it holds `/`).
const EVENT_PATH: &str = "/v1/events/{namespace}/{event_type}";

pub fn routes() -> Router<AdminState> {
    Router::new().route(EVENT_PATH, get(show_event)).route(
        "/v1/events/{namespace}/{id}/redeliver",
        post(redeliver_event),
    )
}

async fn show_event(
    State(state): State<AdminState>,
    Path((namespace, id)): Path<(String, String)>,
) -> Result<Json<EventView>, ApiError> {
    inspect::event(&state.js, &namespace, &id)
        .await
        .map_err(ApiError::unavailable)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "event {id} not found in namespace {namespace} (unknown, or older than the events retention)"
            ))
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RedeliverRequest {
    endpoints: Option<Vec<String>>,
}

async fn redeliver_event(
    State(state): State<AdminState>,
    Path((namespace, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let request: RedeliverRequest = json_body(&body)?;
    let catalog = state.catalog.borrow().clone();
    let exists = |name: &str| {
        let key = EndpointKey::new(&namespace, name);
        catalog.iter().any(|e| e.key == key)
    };
    let limits = EventLimits {
        max_payload_bytes: state.max_payload_bytes,
    };
    let endpoints = replay::redeliver(
        &state.js,
        &namespace,
        &id,
        request.endpoints,
        exists,
        &limits,
    )
    .await
    .map_err(|error| match &error {
        RedeliverError::NotFound(_)
        | RedeliverError::Expired(_)
        | RedeliverError::UnknownEndpoint(_) => ApiError::not_found(error.to_string()),
        RedeliverError::NotRouted { .. } | RedeliverError::Undeliverable { .. } => {
            ApiError::bad_request(error.to_string())
        }
        RedeliverError::Inspect(_) | RedeliverError::Replay(_) => ApiError::unavailable(error),
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "endpoints": endpoints })),
    ))
}
