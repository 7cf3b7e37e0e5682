//! What the endpoint and event routes share: JSON errors, the endpoint a path names, `limit`,
//! and optional JSON bodies.

use axum::{
    Json,
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use super::{AdminState, CatalogEntry};
use crate::{dataplane::inspect::MAX_LIMIT, model::EndpointKey};

/// `{"error": "..."}` with a status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// NATS did not answer as it should: worth retrying.
    pub fn unavailable(error: impl std::fmt::Display) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// The endpoint `namespace/name` as this process knows it; 404 when it does not.
pub fn find_endpoint(
    state: &AdminState,
    namespace: &str,
    name: &str,
) -> Result<CatalogEntry, ApiError> {
    let key = EndpointKey::new(namespace, name);
    state
        .catalog
        .borrow()
        .iter()
        .find(|e| e.key == key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("endpoint {key} not found")))
}

/// `limit`: 1 to [`MAX_LIMIT`], default 50.
pub fn limit(value: Option<&str>) -> Result<usize, ApiError> {
    let Some(value) = value else {
        return Ok(50);
    };
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "limit {value:?} must be a number from 1 to {MAX_LIMIT}"
            ))
        })
}

/// An optional JSON body: empty means `T::default()`.
pub fn json_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert_eq!(limit(None).ok(), Some(50));
        assert_eq!(limit(Some("1000")).ok(), Some(1000));
        for bad in ["0", "1001", "-1", "ten", ""] {
            let error = limit(Some(bad)).err().map(|e| e.message);
            assert!(
                error.as_deref().is_some_and(|m| m.contains("limit")),
                "{bad}: {error:?}"
            );
        }
    }

    #[test]
    fn bodies_are_optional() {
        #[derive(serde::Deserialize, Default, PartialEq, Debug)]
        struct Body {
            since: Option<String>,
        }
        assert_eq!(json_body::<Body>(&Bytes::new()).ok(), Some(Body::default()));
        assert_eq!(
            json_body::<Body>(&Bytes::from_static(br#"{"since":"x"}"#))
                .ok()
                .and_then(|b| b.since),
            Some("x".into())
        );
        assert!(json_body::<Body>(&Bytes::from_static(b"{")).is_err());
    }
}
