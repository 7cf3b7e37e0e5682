//! The HTTP side: routes, authentication, and the mapping of outcomes to status codes.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequestParts, Path, State, rejection::BytesRejection},
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use jiff::Timestamp;
use serde_json::json;

use super::{
    KeysRx,
    audit::{Action, AuditRecord, AuditSink, Outcome},
    keys::Principal,
    store::{Kind, Object, SigningSecret, Spec, StoreError, TenantStore},
    validate::{self, Invalid},
};

/// Largest request body accepted (a spec is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct TenantApiState {
    pub store: Arc<dyn TenantStore>,
    pub keys: KeysRx,
    pub audit: Arc<dyn AuditSink>,
    /// Overlap of a rotation whose body names none (`--signing-key-overlap`).
    pub default_overlap: Duration,
}

/// `/v1/tenant` (who am I), `/v1/tenant/{endpoints|subscriptions}[/{name}]`, and an endpoint's
/// signing keys: `/v1/tenant/endpoints/{name}/secret[/rotate]`.
pub fn router(state: TenantApiState) -> Router {
    Router::new()
        .route("/v1/tenant", get(whoami))
        .route("/v1/tenant/{collection}", get(list).post(create))
        .route(
            "/v1/tenant/{collection}/{name}",
            get(read).put(replace).delete(delete),
        )
        .route("/v1/tenant/endpoints/{name}/secret", get(read_secret))
        .route(
            "/v1/tenant/endpoints/{name}/secret/rotate",
            post(rotate_secret),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Everything a request can fail with.
#[derive(Debug)]
pub enum ApiError {
    Unauthenticated,
    NotReady,
    UnknownCollection(String),
    /// Too large (413) or not readable.
    Body(StatusCode, String),
    Invalid(Invalid),
    Store(StoreError),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::UnknownCollection(_) => StatusCode::NOT_FOUND,
            Self::Body(status, _) => *status,
            Self::Invalid(invalid) => {
                StatusCode::from_u16(invalid.status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            Self::Store(error) => match error {
                StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
                StoreError::AlreadyExists { .. } | StoreError::Conflict(_) => StatusCode::CONFLICT,
                StoreError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
                StoreError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                // The endpoint is there; its Secret is not (yet) one to show or rotate.
                StoreError::SigningSecret(_) => StatusCode::CONFLICT,
            },
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "Unauthorized",
            Self::NotReady => "NotReady",
            Self::UnknownCollection(_) => "NotFound",
            Self::Body(StatusCode::PAYLOAD_TOO_LARGE, _) => "PayloadTooLarge",
            Self::Body(..) => "InvalidBody",
            Self::Invalid(invalid) => invalid.reason,
            Self::Store(error) => match error {
                StoreError::NotFound { .. } => "NotFound",
                StoreError::AlreadyExists { .. } => "AlreadyExists",
                StoreError::Conflict(_) => "Conflict",
                StoreError::Rejected(_) => "Invalid",
                StoreError::Unavailable => "Unavailable",
                StoreError::SigningSecret(error) => error.reason(),
            },
        }
    }

    fn outcome(&self) -> Outcome {
        match self {
            Self::NotReady | Self::Store(StoreError::Unavailable) => Outcome::Failed,
            _ => Outcome::Rejected,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, field) = match &self {
            // The same answer for a missing, malformed, unknown or revoked key.
            Self::Unauthenticated => (
                "a valid API key is required: Authorization: Bearer <key>".to_owned(),
                None,
            ),
            Self::NotReady => ("API keys are not loaded yet; try again".to_owned(), None),
            Self::UnknownCollection(c) => (
                format!("no collection {c:?} (endpoints, subscriptions)"),
                None,
            ),
            Self::Body(_, message) => (message.clone(), None),
            Self::Invalid(invalid) => (invalid.message.clone(), invalid.field.clone()),
            Self::Store(error) => (error.to_string(), None),
        };
        let mut body = json!({ "error": message, "reason": self.reason() });
        if let Some(field) = field {
            body["field"] = json!(field);
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"webhook-operator\""),
            );
        }
        response
    }
}

/// The caller, from `Authorization: Bearer <key>`.
pub struct Caller(pub Principal);

impl FromRequestParts<TenantApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &TenantApiState,
    ) -> Result<Self, Self::Rejection> {
        let Some(index) = state.keys.borrow().clone() else {
            return Err(ApiError::NotReady);
        };
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or(ApiError::Unauthenticated)?;
        index
            .authenticate(presented)
            .map(Caller)
            .ok_or(ApiError::Unauthenticated)
    }
}

fn kind_of(collection: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(collection).ok_or_else(|| ApiError::UnknownCollection(collection.into()))
}

/// A name from the URL that no object can have (and that must not reach an API path, e.g.
/// `..%2Fsecrets`) is simply not found.
fn existing_name(kind: Kind, name: &str) -> Result<(), ApiError> {
    if validate::is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::Store(StoreError::NotFound {
            kind: kind.kind(),
            name: name.to_owned(),
        }))
    }
}

async fn whoami(Caller(caller): Caller) -> Response {
    Json(json!({ "namespace": caller.namespace, "keyId": caller.key_id })).into_response()
}

async fn list(
    State(state): State<TenantApiState>,
    Caller(caller): Caller,
    Path(collection): Path<String>,
) -> Result<Json<Vec<Object>>, ApiError> {
    let kind = kind_of(&collection)?;
    let objects = state
        .store
        .list(&caller.namespace, kind)
        .await
        .map_err(ApiError::Store)?;
    Ok(Json(objects))
}

async fn read(
    State(state): State<TenantApiState>,
    Caller(caller): Caller,
    Path((collection, name)): Path<(String, String)>,
) -> Result<Json<Object>, ApiError> {
    let kind = kind_of(&collection)?;
    existing_name(kind, &name)?;
    let object = state
        .store
        .get(&caller.namespace, kind, &name)
        .await
        .map_err(ApiError::Store)?;
    Ok(Json(object))
}

async fn create(
    State(state): State<TenantApiState>,
    Caller(caller): Caller,
    Path(collection): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(kind) => kind,
        Err(error) => return error.into_response(),
    };
    let mut name = String::new();
    let result = async {
        let body = read_body(body)?;
        name = validate::name_in(&body).unwrap_or_default();
        let (parsed, spec) =
            validate::parse(&caller.namespace, kind, &body, None).map_err(ApiError::Invalid)?;
        name = parsed;
        check_endpoint_exists(&state, &caller, &spec).await?;
        state
            .store
            .create(&caller.namespace, &name, spec)
            .await
            .map_err(ApiError::Store)
    }
    .await;
    let created = |object: Object| {
        let location = format!("/v1/tenant/{}/{}", kind.collection(), object.name);
        let mut response = (StatusCode::CREATED, Json(object)).into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    };
    let audited = Audited::new(Action::Create, kind, &name, StatusCode::CREATED);
    answer(&state, &caller, audited, result, created).await
}

async fn replace(
    State(state): State<TenantApiState>,
    Caller(caller): Caller,
    Path((collection, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(kind) => kind,
        Err(error) => return error.into_response(),
    };
    let result = async {
        let body = read_body(body)?;
        let (_, spec) = validate::parse(&caller.namespace, kind, &body, Some(&name))
            .map_err(ApiError::Invalid)?;
        check_endpoint_exists(&state, &caller, &spec).await?;
        state
            .store
            .replace(&caller.namespace, &name, spec)
            .await
            .map_err(ApiError::Store)
    }
    .await;
    let audited = Audited::new(Action::Replace, kind, &name, StatusCode::OK);
    answer(&state, &caller, audited, result, |object| {
        Json(object).into_response()
    })
    .await
}

async fn delete(
    State(state): State<TenantApiState>,
    Caller(caller): Caller,
    Path((collection, name)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&collection) {
        Ok(kind) => kind,
        Err(error) => return error.into_response(),
    };
    let result = match existing_name(kind, &name) {
        Ok(()) => state
            .store
            .delete(&caller.namespace, kind, &name)
            .await
            .map_err(ApiError::Store),
        Err(error) => Err(error),
    };
    let audited = Audited::new(Action::Delete, kind, &name, StatusCode::NO_CONTENT);
    answer(&state, &caller, audited, result, |()| {
        StatusCode::NO_CONTENT.into_response()
    })
    .await
}

/// The endpoint's signing keys, newest first (what Svix's `GET .../secret` answers, and every
/// key that signs). Audited like a change: it hands out key material.
async fn read_secret(
    State(state): State<TenantApiState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Response {
    let result = match existing_name(Kind::Endpoint, &name) {
        Ok(()) => state
            .store
            .signing_secret(&caller.namespace, &name)
            .await
            .map_err(ApiError::Store),
        Err(error) => Err(error),
    };
    let audited = Audited::new(Action::ReadSecret, Kind::Endpoint, &name, StatusCode::OK);
    answer(&state, &caller, audited, result, |s| secret_response(&s)).await
}

/// Puts a fresh key first; the previous keys keep signing for the body's `overlap` (or the
/// default). Answers like [`read_secret`], the new key first.
async fn rotate_secret(
    State(state): State<TenantApiState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        existing_name(Kind::Endpoint, &name)?;
        let body = read_body(body)?;
        let overlap = validate::overlap(&body, state.default_overlap).map_err(ApiError::Invalid)?;
        state
            .store
            .rotate_signing_key(&caller.namespace, &name, overlap)
            .await
            .map_err(ApiError::Store)
    }
    .await;
    let audited = Audited::new(Action::RotateSecret, Kind::Endpoint, &name, StatusCode::OK);
    answer(&state, &caller, audited, result, |s| secret_response(&s)).await
}

/// `{"key", "keys", "secretName", "previousKeysExpire"?}`, never cached on the way.
fn secret_response(secret: &SigningSecret) -> Response {
    let keys: Vec<&str> = secret.ring.keys().collect();
    let mut body = json!({
        "key": keys.first(),
        "keys": keys,
        "secretName": secret.secret,
    });
    if let Some(at) = secret.ring.previous_keys_expire() {
        body["previousKeysExpire"] = json!(at);
    }
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body larger than {MAX_BODY_BYTES} bytes")
        } else {
            rejection.body_text()
        };
        ApiError::Body(status, message)
    })
}

/// A subscription must name an endpoint of the caller's namespace that exists now. (The
/// controller tolerates any order; the API can tell its caller at once.)
async fn check_endpoint_exists(
    state: &TenantApiState,
    caller: &Principal,
    spec: &Spec,
) -> Result<(), ApiError> {
    let Spec::Subscription(spec) = spec else {
        return Ok(());
    };
    let endpoint = &spec.endpoint_ref.name;
    match state
        .store
        .get(&caller.namespace, Kind::Endpoint, endpoint)
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => Err(ApiError::Invalid(Invalid::value(
            "EndpointNotFound",
            "spec.endpointRef.name",
            format!(
                "spec.endpointRef.name: WebhookEndpoint {endpoint:?} does not exist in this namespace"
            ),
        ))),
        Err(error) => Err(ApiError::Store(error)),
    }
}

/// What one request did, for its audit record.
struct Audited<'a> {
    action: Action,
    kind: Kind,
    name: &'a str,
    /// The status a success answers with.
    success: StatusCode,
}

impl<'a> Audited<'a> {
    fn new(action: Action, kind: Kind, name: &'a str, success: StatusCode) -> Self {
        Self {
            action,
            kind,
            name,
            success,
        }
    }
}

/// Stores the audit record of `result` (before anything is answered), then answers: with
/// `respond` on success, with the error's status and body otherwise.
async fn answer<T>(
    state: &TenantApiState,
    caller: &Principal,
    audited: Audited<'_>,
    result: Result<T, ApiError>,
    respond: impl FnOnce(T) -> Response,
) -> Response {
    let (outcome, status, reason) = match &result {
        Ok(_) => (Outcome::Success, audited.success, None),
        Err(error) => (
            error.outcome(),
            error.status(),
            Some(error.reason().to_owned()),
        ),
    };
    state
        .audit
        .record(AuditRecord {
            time: Timestamp::now(),
            tenant: caller.namespace.clone(),
            key_id: caller.key_id.clone(),
            action: audited.action,
            kind: audited.kind.kind().to_owned(),
            name: audited.name.to_owned(),
            outcome,
            status: status.as_u16(),
            reason,
        })
        .await;
    match result {
        Ok(value) => respond(value),
        Err(error) => error.into_response(),
    }
}
