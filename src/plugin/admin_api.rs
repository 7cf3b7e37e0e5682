//! How the plugin reaches the admin API: through the Kubernetes API server's service proxy (the
//! user's kubeconfig and RBAC decide), or straight to an admin URL (local mode, a port-forward).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;
use url::Url;

/// Characters left as they are in a path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A path of the admin API with its query, every part percent-encoded: `/v1/endpoints/acme/x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiPath(String);

impl ApiPath {
    pub fn new(segments: &[&str], query: &[(&str, String)]) -> Self {
        let mut path = String::new();
        for segment in segments {
            path.push('/');
            path.extend(utf8_percent_encode(segment, SEGMENT));
        }
        if !query.is_empty() {
            let mut encoded = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in query {
                encoded.append_pair(name, value);
            }
            path.push('?');
            path.push_str(&encoded.finish());
        }
        Self(path)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{request}: {message} (HTTP {status})")]
    Status {
        request: String,
        status: u16,
        message: String,
    },
    #[error("{request}")]
    Http {
        request: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{request} through the Kubernetes API server")]
    Kube {
        request: String,
        #[source]
        source: kube::Error,
    },
    #[error("{request}: unexpected answer")]
    Decode {
        request: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("--admin-url {url}: {reason}")]
    AdminUrl { url: String, reason: String },
    #[error("{command} needs a Kubernetes cluster (not --admin-url): {hint}")]
    NeedsCluster { command: String, hint: String },
}

/// The way to the admin API.
#[derive(Clone)]
pub enum AdminApi {
    Direct {
        http: reqwest::Client,
        base: String,
    },
    Proxy {
        client: kube::Client,
        prefix: String,
    },
}

impl AdminApi {
    /// Straight to an admin server, e.g. `http://127.0.0.1:8080` (a path prefix is kept).
    pub fn direct(base: &Url) -> Result<Self, ApiError> {
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ApiError::AdminUrl {
                url: base.to_string(),
                reason: "must be an http or https URL".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ApiError::AdminUrl {
                url: base.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self::Direct {
            http,
            base: base.as_str().trim_end_matches('/').to_owned(),
        })
    }

    /// Through the API server's proxy to `service:port` in the operator's namespace.
    pub fn proxy(client: kube::Client, namespace: &str, service: &str, port: &str) -> Self {
        let encode = |s| utf8_percent_encode(s, SEGMENT).to_string();
        // `name:port`, the colon literal as kubectl writes it.
        let prefix = format!(
            "/api/v1/namespaces/{}/services/{}:{}/proxy",
            encode(namespace),
            encode(service),
            encode(port)
        );
        Self::Proxy { client, prefix }
    }

    /// The Kubernetes client, when going through the API server.
    pub fn kube_client(&self) -> Option<&kube::Client> {
        match self {
            Self::Proxy { client, .. } => Some(client),
            Self::Direct { .. } => None,
        }
    }

    /// Sends one request; a non-2xx answer is an error carrying the server's message.
    pub async fn call(
        &self,
        method: Method,
        path: &ApiPath,
        body: Option<&Value>,
    ) -> Result<Bytes, ApiError> {
        let request = format!("{method} {}", path.as_str());
        let payload = body.map(|b| Bytes::from(b.to_string()));
        let (status, answer) = match self {
            Self::Direct { http, base } => {
                let mut builder = http
                    .request(method, format!("{base}{}", path.as_str()))
                    .header(header::ACCEPT, "application/json");
                if let Some(payload) = payload {
                    builder = builder
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(payload);
                }
                let http_error = |source: reqwest::Error| ApiError::Http {
                    request: request.clone(),
                    source: source.without_url(),
                };
                let response = builder.send().await.map_err(http_error)?;
                let status = response.status().as_u16();
                (status, response.bytes().await.map_err(http_error)?)
            }
            Self::Proxy { client, prefix } => {
                let kube_error = |source: kube::Error| ApiError::Kube {
                    request: request.clone(),
                    source,
                };
                let mut builder = Request::builder()
                    .method(method)
                    .uri(format!("{prefix}{}", path.as_str()))
                    .header(header::ACCEPT, "application/json");
                if payload.is_some() {
                    builder = builder.header(header::CONTENT_TYPE, "application/json");
                }
                let http_request = builder
                    .body(kube::client::Body::from(payload.unwrap_or_default()))
                    .map_err(|e| kube_error(kube::Error::HttpError(e)))?;
                let response = client.send(http_request).await.map_err(kube_error)?;
                let status = response.status().as_u16();
                let answer = response
                    .into_body()
                    .collect_bytes()
                    .await
                    .map_err(kube_error)?;
                (status, answer)
            }
        };
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        Err(ApiError::Status {
            message: self.error_message(status, &answer),
            request,
            status,
        })
    }

    /// Sends one request and parses the JSON answer.
    pub async fn call_json(
        &self,
        method: Method,
        path: &ApiPath,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let answer = self.call(method.clone(), path, body).await?;
        serde_json::from_slice(&answer).map_err(|source| ApiError::Decode {
            request: format!("{method} {}", path.as_str()),
            source,
        })
    }

    /// The admin API's `{"error": ...}`, the API server's `Status.message`, or what the status
    /// code says.
    fn error_message(&self, status: u16, answer: &[u8]) -> String {
        let json: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
        if let Some(error) = json.get("error").and_then(Value::as_str) {
            return error.to_owned();
        }
        if json.get("kind").and_then(Value::as_str) == Some("Status") {
            let message = json
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            return match self {
                Self::Proxy { prefix, .. } => format!(
                    "{message} (from the Kubernetes API server, proxying to {prefix}; see \
                     --operator-namespace, --service and --service-port)"
                ),
                Self::Direct { .. } => message.to_owned(),
            };
        }
        if status == 404 {
            return "no such route: the operator may be older than this plugin".into();
        }
        let text = String::from_utf8_lossy(answer);
        let text = text.trim();
        if text.is_empty() {
            http::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error")
                .to_owned()
        } else {
            text.chars().take(200).collect()
        }
    }
}
