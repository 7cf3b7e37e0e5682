//! `POST /v1/endpoints/{namespace}/{name}/replay` (dead letters, all or since a time) and
//! `POST /v1/endpoints/{namespace}/{name}/test` (a synthetic event for that endpoint).

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    routing::post,
};
use jiff::Timestamp;
use serde::Deserialize;

use super::{
    AdminState,
    request::{ApiError, find_endpoint, json_body},
};
use crate::dataplane::{
    ingest::{self, IngestError},
    plan::EventLimits,
    replay,
};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/v1/endpoints/{namespace}/{name}/replay",
            post(replay_dead_letters),
        )
        .route("/v1/endpoints/{namespace}/{name}/test", post(send_test))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReplayRequest {
    /// RFC 3339; dead letters dead-lettered at or after it. Absent: all.
    since: Option<String>,
}

async fn replay_dead_letters(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let endpoint = find_endpoint(&state, &namespace, &name)?;
    let request: ReplayRequest = json_body(&body)?;
    let since = request
        .since
        .map(|text| {
            text.parse::<Timestamp>().map_err(|e| {
                ApiError::bad_request(format!("since {text:?} is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()?;
    let limits = EventLimits {
        max_payload_bytes: state.max_payload_bytes,
    };
    let report = replay::replay_dead_letters(&state.js, &endpoint.key, since, &limits)
        .await
        .map_err(ApiError::unavailable)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "replayed": report.replayed, "skipped": report.skipped })),
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TestRequest {
    event_type: Option<String>,
    payload: Option<serde_json::Value>,
}

async fn send_test(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let endpoint = find_endpoint(&state, &namespace, &name)?;
    if let Some((reason, message)) = &endpoint.problem {
        return Err(ApiError::bad_request(format!(
            "endpoint {} is invalid ({reason}): {message}",
            endpoint.key
        )));
    }
    let request: TestRequest = json_body(&body)?;
    let accepted = ingest::publish_test(
        &state.js,
        &endpoint.key,
        request.event_type.as_deref(),
        request.payload,
    )
    .await
    .map_err(|error| match error {
        IngestError::Publish(_) => ApiError::unavailable(error),
        _ => ApiError::bad_request(error.to_string()),
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": accepted.id })),
    ))
}
