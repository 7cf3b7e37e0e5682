//! One delivery attempt, top to bottom: build the signed request, send it, classify the answer.

use std::{error::Error as _, time::Duration};

use jiff::Timestamp;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use tokio::time::Instant;

use super::{
    ResolvedEndpoint,
    address_guard::{ResolveError, blocked_cause},
    backoff::parse_retry_after,
    outgoing::{self, Outgoing},
    signature,
};
use crate::{
    dataplane::{attempt_log::AttemptResult, job::Job},
    model::EndpointConfig,
};

/// Bytes of the response body kept for the attempt log.
pub const RESPONSE_BODY_LIMIT: usize = 1024;

pub const USER_AGENT_VALUE: &str = concat!("webhook-operator/", env!("CARGO_PKG_VERSION"));

/// Failure reason of a target refused by the address guard.
pub const BLOCKED_REASON: &str = "BlockedAddress";

/// What one attempt produced.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub result: AttemptResult,
    pub status_code: Option<u16>,
    pub duration: Duration,
    /// CamelCase reason for failures (`HTTP503`, `Timeout`, ...).
    pub reason: Option<String>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    pub retry_after: Option<Duration>,
}

impl AttemptReport {
    pub fn succeeded(&self) -> bool {
        self.result == AttemptResult::Success
    }

    /// Blocked targets will be blocked next time too: retrying only delays the dead letter.
    pub fn retryable(&self) -> bool {
        !matches!(self.result, AttemptResult::Success | AttemptResult::Blocked)
    }
}

/// Sends `job` to `endpoint`, signed with its keys, authenticated and over the client that
/// trusts its CA.
pub async fn send(
    endpoint: &EndpointConfig,
    resolved: &ResolvedEndpoint,
    job: &Job,
) -> AttemptReport {
    let started = Instant::now();
    let timestamp = Timestamp::now().as_second();
    let outgoing = match outgoing::build(endpoint.format, job) {
        Ok(outgoing) => outgoing,
        Err(message) => return failure(AttemptResult::Error, "InvalidRequest", message, started),
    };
    let headers = match request_headers(endpoint, resolved, job, &outgoing, timestamp) {
        Ok(headers) => headers,
        Err(message) => return failure(AttemptResult::Error, "InvalidRequest", message, started),
    };
    // IP-literal targets (and, through the egress proxy, names) are refused here; without a
    // proxy, names are refused while they are resolved.
    let prepared = tokio::time::timeout(endpoint.timeout, resolved.client.post(&endpoint.url));
    let request = match prepared.await {
        Err(_) => {
            let message = "resolving the target before the egress proxy timed out".to_owned();
            return failure(AttemptResult::Timeout, "Timeout", message, started);
        }
        Ok(Ok(request)) => request,
        Ok(Err(ResolveError::Blocked(blocked))) => {
            return failure(
                AttemptResult::Blocked,
                BLOCKED_REASON,
                blocked.to_string(),
                started,
            );
        }
        Ok(Err(error)) => {
            return failure(
                AttemptResult::ConnectError,
                "ConnectError",
                error.to_string(),
                started,
            );
        }
    };
    let response = request
        .headers(headers)
        // The whole attempt, checks included, stays within the timeout (and the ack deadline).
        .timeout(endpoint.timeout.saturating_sub(started.elapsed()))
        .body(outgoing.body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error) => return transport_failure(error.without_url(), started),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let response_body = read_body_prefix(response).await;
    let duration = started.elapsed();
    let code = status.as_u16();
    if status.is_success() {
        return AttemptReport {
            result: AttemptResult::Success,
            status_code: Some(code),
            duration,
            reason: None,
            error: None,
            response_body,
            retry_after: None,
        };
    }
    let result = match code {
        300..=399 => AttemptResult::Http3xx,
        400..=499 => AttemptResult::Http4xx,
        _ => AttemptResult::Http5xx,
    };
    let honour_retry_after = matches!(code, 429 | 503);
    AttemptReport {
        result,
        status_code: Some(code),
        duration,
        reason: Some(format!("HTTP{code}")),
        error: Some(format!("endpoint answered {status}")),
        response_body,
        retry_after: retry_after.filter(|_| honour_retry_after),
    }
}

fn request_headers(
    endpoint: &EndpointConfig,
    resolved: &ResolvedEndpoint,
    job: &Job,
    outgoing: &Outgoing,
    timestamp: i64,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    // Static headers first, so the protocol headers below always win.
    for (name, value) in &endpoint.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
        headers.insert(name, value);
    }
    if let Some(authorization) = &resolved.authorization {
        let mut value = HeaderValue::from_str(authorization.as_str())
            .map_err(|_| "spec.auth: unusable credentials".to_owned())?;
        // Kept out of debug output by the HTTP stack (and by hpack indexing in HTTP/2).
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    let value =
        |v: &str| HeaderValue::from_str(v).map_err(|_| format!("invalid header value {v:?}"));
    for (name, format_value) in &outgoing.headers {
        headers.insert(name, format_value.clone());
    }
    if let Some(content_type) = &outgoing.content_type {
        headers.insert(CONTENT_TYPE, value(content_type)?);
    }
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    headers.insert("webhook-id", value(&job.event_id)?);
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert(
        "webhook-signature",
        value(&signature::sign(
            &resolved.keys,
            &job.event_id,
            timestamp,
            &outgoing.body,
        ))?,
    );
    headers.insert("webhook-event-type", value(&job.event_type)?);
    Ok(headers)
}

async fn read_body_prefix(mut response: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < RESPONSE_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(RESPONSE_BODY_LIMIT);
    (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned())
}

fn transport_failure(error: reqwest::Error, started: Instant) -> AttemptReport {
    // Before the connect check: reqwest reports the resolver's refusal as a connect error.
    if let Some(blocked) = blocked_cause(&error) {
        return failure(
            AttemptResult::Blocked,
            BLOCKED_REASON,
            blocked.to_string(),
            started,
        );
    }
    let (result, reason) = if error.is_timeout() {
        (AttemptResult::Timeout, "Timeout")
    } else if is_tls_error(&error) {
        (AttemptResult::TlsError, "TlsError")
    } else if error.is_connect() {
        (AttemptResult::ConnectError, "ConnectError")
    } else {
        (AttemptResult::Error, "RequestError")
    };
    failure(result, reason, describe(&error), started)
}

fn failure(
    result: AttemptResult,
    reason: &str,
    message: String,
    started: Instant,
) -> AttemptReport {
    AttemptReport {
        result,
        status_code: None,
        duration: started.elapsed(),
        reason: Some(reason.into()),
        error: Some(message),
        response_body: None,
        retry_after: None,
    }
}

/// A TLS failure anywhere in the chain. `io::Error` hides the error it wraps from `source()`,
/// and handshake failures arrive as a rustls error inside (nested) `io::Error`s, so those are
/// opened too.
fn is_tls_error(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(err) = source {
        let mut layer: &(dyn std::error::Error + 'static) = err;
        loop {
            if layer.is::<rustls::Error>() {
                return true;
            }
            match layer
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => layer = inner,
                None => break,
            }
        }
        source = err.source();
    }
    false
}

/// The error with its causes. The caller strips the URL: it may carry credentials.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(err) = source {
        text.push_str(": ");
        text.push_str(&err.to_string());
        source = err.source();
    }
    text
}
