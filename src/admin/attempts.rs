//! `GET /v1/endpoints/{namespace}/{name}/attempts` and `.../dead-letters`: what was sent to an
//! endpoint, when, and what came back.

use std::collections::HashMap;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};

use super::{
    AdminState,
    request::{ApiError, find_endpoint, limit},
};
use crate::dataplane::{
    attempt_log::AttemptRecord,
    inspect::{self, DeadLetterView, ResultFilter},
};

pub fn routes() -> Router<AdminState> {
    Router::new()
        .route(
            "/v1/endpoints/{namespace}/{name}/attempts",
            get(list_attempts),
        )
        .route(
            "/v1/endpoints/{namespace}/{name}/dead-letters",
            get(list_dead_letters),
        )
}

/// `?limit=&result=`: the newest attempts first; `result` is a result label or `failure`.
async fn list_attempts(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<AttemptRecord>>, ApiError> {
    let endpoint = find_endpoint(&state, &namespace, &name)?;
    let limit = limit(params.get("limit").map(String::as_str))?;
    let filter = match params.get("result") {
        None => ResultFilter::Any,
        Some(text) => text
            .parse()
            .map_err(|e: inspect::UnknownResult| ApiError::bad_request(e.to_string()))?,
    };
    inspect::attempts(&state.js, &endpoint.key, limit, filter)
        .await
        .map(Json)
        .map_err(ApiError::unavailable)
}

/// `?limit=`: the newest dead letters first.
async fn list_dead_letters(
    State(state): State<AdminState>,
    Path((namespace, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    let endpoint = find_endpoint(&state, &namespace, &name)?;
    let limit = limit(params.get("limit").map(String::as_str))?;
    inspect::dead_letters(&state.js, &endpoint.key, limit)
        .await
        .map(Json)
        .map_err(ApiError::unavailable)
}
