//! Turns a tenant's resources (and the Secrets and ConfigMaps they reference) into
//! [`TenantRoutes`].
//!
//! Each object gets a verdict; an invalid object is left out of the routes and never affects
//! the valid ones. The same code serves the controller and local mode.
//!
//! The namespace's `EventType`s form its event catalogue: their schemas go into the routes, and
//! each subscription is compared with the catalogue (only when the namespace has one).

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::{
    EventSubscription, EventType, EventTypeSpec, WebhookEndpoint,
    webhook_endpoint::{CaBundleKind, SecretKeyRef},
};
use crate::model::{
    DeliveryOrder, EndpointAuth, EndpointConfig, NamespaceData, ObjectKey, ObjectKind, RateLimit,
    RetryPolicy, Route, SecretLocation, TenantRoutes,
    credentials::ReferenceProblem,
    duration,
    event_type::{Pattern, validate_event_type},
    filter::Filter,
    payload_schema::{CompiledSchema, PayloadSchema},
};

/// Secret (or ConfigMap) data of one namespace: name -> key -> value.
pub type SecretData = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Why an object is not (fully) in the routes. `reason` is a CamelCase condition reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl From<ReferenceProblem> for Problem {
    fn from(problem: ReferenceProblem) -> Self {
        Self::new(problem.reason, problem.to_string())
    }
}

/// Outcome for one object, by name.
pub type Verdicts = BTreeMap<String, Result<(), Problem>>;

/// Routes of one tenant plus a verdict for each of its objects.
#[derive(Debug, Clone, Default)]
pub struct CompiledTenantReport {
    pub routes: TenantRoutes,
    pub endpoints: Verdicts,
    pub subscriptions: Verdicts,
    pub event_types: Verdicts,
    /// Per subscription, whether its event types are catalogued and current (reasons
    /// `UnknownEventTypes`, `DeprecatedEventTypes`); `None` when the namespace has no EventType.
    pub catalog: Option<Verdicts>,
}

/// What the catalogue knows of one event type.
struct Catalogued {
    /// The EventType object declaring it.
    object: String,
    deprecated: bool,
}

/// Subscriptions routed to one endpoint; more are reported `TooManySubscriptions`.
pub const MAX_SUBSCRIPTIONS_PER_ENDPOINT: usize = 100;
/// Static headers of one endpoint (also the CRD's limit).
pub const MAX_HEADERS: usize = 32;
/// Bytes of one static header value.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;
/// Bytes of all static header names and values of one endpoint together.
pub const MAX_HEADERS_BYTES: usize = 16 * 1024;
/// Patterns of one subscription (also the CRD's limit).
pub const MAX_PATTERNS: usize = 64;

/// Installation-wide rules applied on top of each resource's own validation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Refuse `http://` endpoint URLs (`--require-https`).
    pub require_https: bool,
}

/// The Secret an endpoint signs with, applying the documented default name.
pub fn secret_ref(endpoint: &WebhookEndpoint) -> SecretKeyRef {
    endpoint
        .spec
        .secret_ref
        .clone()
        .unwrap_or_else(|| SecretKeyRef {
            name: format!("{}-signing", endpoint.name_any()),
            key: "secret".into(),
        })
}

/// The CA bundle an endpoint trusts, if it names one.
pub fn ca_bundle_ref(endpoint: &WebhookEndpoint) -> Option<ObjectKey> {
    let reference = endpoint.spec.tls.as_ref()?.ca_bundle_ref.as_ref()?;
    Some(ObjectKey {
        kind: match reference.kind {
            CaBundleKind::Secret => ObjectKind::Secret,
            CaBundleKind::ConfigMap => ObjectKind::ConfigMap,
        },
        name: reference.name.clone(),
        key: reference.key.clone(),
    })
}

/// The endpoint's authentication, in model form.
pub fn auth(endpoint: &WebhookEndpoint) -> Option<EndpointAuth> {
    let spec = endpoint.spec.auth.as_ref()?;
    match (&spec.basic, &spec.bearer) {
        (Some(basic), _) => Some(EndpointAuth::Basic {
            secret: basic.secret_name.clone(),
            username_key: basic.username_key.clone(),
            password_key: basic.password_key.clone(),
        }),
        (None, Some(bearer)) => Some(EndpointAuth::Bearer {
            secret: bearer.secret_name.clone(),
            token_key: bearer.token_key.clone(),
        }),
        (None, None) => None,
    }
}

/// Names of every Secret / ConfigMap the endpoint reads (a change to one re-validates it).
pub fn referenced(endpoint: &WebhookEndpoint, kind: ObjectKind) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if kind == ObjectKind::Secret {
        names.insert(secret_ref(endpoint).name);
        if let Some(auth) = auth(endpoint) {
            names.insert(auth.secret().to_owned());
        }
    }
    if let Some(ca) = ca_bundle_ref(endpoint).filter(|ca| ca.kind == kind) {
        names.insert(ca.name);
    }
    names
}

pub fn compile_tenant(
    tenant: &str,
    endpoints: &[WebhookEndpoint],
    subscriptions: &[EventSubscription],
    event_types: &[EventType],
    data: &NamespaceData,
    policy: Policy,
) -> CompiledTenantReport {
    let mut report = CompiledTenantReport::default();
    let catalog = catalog(event_types, &mut report);
    let mut valid = BTreeMap::new();
    for endpoint in endpoints {
        let name = endpoint.name_any();
        let verdict = endpoint_config(endpoint, data, policy).map(|config| {
            valid.insert(name.clone(), config);
        });
        report.endpoints.insert(name, verdict);
    }
    // By name, so which subscriptions are over the limit does not depend on listing order.
    let mut ordered: Vec<&EventSubscription> = subscriptions.iter().collect();
    ordered.sort_by_key(|s| s.name_any());
    let mut per_endpoint: BTreeMap<String, usize> = BTreeMap::new();
    for subscription in ordered {
        let name = subscription.name_any();
        let verdict = route(subscription, &report.endpoints).and_then(|route| {
            let count = per_endpoint.entry(route.endpoint.clone()).or_default();
            if *count >= MAX_SUBSCRIPTIONS_PER_ENDPOINT {
                return Err(Problem::new(
                    "TooManySubscriptions",
                    format!(
                        "spec.endpointRef: WebhookEndpoint {:?} already has {MAX_SUBSCRIPTIONS_PER_ENDPOINT} subscriptions (the limit; taken by name order)",
                        route.endpoint
                    ),
                ));
            }
            *count += 1;
            report.routes.routes.push(route);
            Ok(())
        });
        if !catalog.is_empty() {
            report.catalog.get_or_insert_default().insert(
                name.clone(),
                check_catalog(&subscription.spec.event_types, &catalog),
            );
        }
        report.subscriptions.insert(name, verdict);
    }
    report.routes.tenant = tenant.to_owned();
    report.routes.endpoints = valid.into_values().collect();
    report
        .routes
        .routes
        .sort_by(|a, b| a.subscription.cmp(&b.subscription));
    report
}

fn endpoint_config(
    endpoint: &WebhookEndpoint,
    data: &NamespaceData,
    policy: Policy,
) -> Result<EndpointConfig, Problem> {
    let spec = &endpoint.spec;
    let url = check_url(&spec.url, policy)?;
    if spec.tls.is_some() && url.scheme() != "https" {
        return Err(Problem::new(
            "InvalidTls",
            "spec.tls: applies to https URLs only",
        ));
    }
    let duration_field = |field: &str, value: &str| {
        duration::parse(value).map_err(|e| Problem::new("InvalidDuration", format!("{field}: {e}")))
    };
    let timeout = duration_field("spec.timeout", &spec.timeout)?;
    let retry = RetryPolicy {
        max_attempts: positive("spec.retry.maxAttempts", spec.retry.max_attempts)?,
        initial_backoff: duration_field("spec.retry.initialBackoff", &spec.retry.initial_backoff)?,
        max_backoff: duration_field("spec.retry.maxBackoff", &spec.retry.max_backoff)?,
        max_age: duration_field("spec.retry.maxAge", &spec.retry.max_age)?,
    };
    if retry.initial_backoff > retry.max_backoff {
        return Err(Problem::new(
            "InvalidRetryPolicy",
            "spec.retry.initialBackoff is longer than spec.retry.maxBackoff",
        ));
    }
    let auth = auth(endpoint);
    check_headers(&spec.headers, auth.is_some())?;
    let rate_limit = match &spec.rate_limit {
        None => None,
        Some(r) => {
            let requests_per_second =
                positive("spec.rateLimit.requestsPerSecond", r.requests_per_second)?;
            let burst = positive(
                "spec.rateLimit.burst",
                r.burst.unwrap_or(r.requests_per_second),
            )?;
            Some(RateLimit {
                requests_per_second,
                burst,
            })
        }
    };
    let secret = secret_ref(endpoint);
    let secret = SecretLocation {
        name: secret.name,
        key: secret.key,
    };
    data.signing_keys(&secret)?;
    if let Some(auth) = &auth {
        data.authorization(auth)?;
    }
    let ca_bundle = ca_bundle_ref(endpoint);
    if let Some(reference) = &ca_bundle {
        data.ca_bundle(reference)?;
    }
    check_partition_key(spec.ordering, spec.partition_key_header.as_deref())?;
    Ok(EndpointConfig {
        name: endpoint.name_any(),
        url: url.to_string(),
        secret,
        headers: spec.headers.clone(),
        timeout,
        retry,
        rate_limit,
        max_in_flight: positive("spec.maxInFlight", spec.max_in_flight)?,
        paused: spec.paused,
        format: spec.format,
        ca_bundle,
        auth,
        ordering: spec.ordering,
        partition_key_header: spec.partition_key_header.clone(),
    })
}

/// `spec.partitionKeyHeader`: a header name, and only with `ordering: fifo` (the CRD's rule,
/// checked again for local mode and the tenant API).
fn check_partition_key(ordering: DeliveryOrder, header: Option<&str>) -> Result<(), Problem> {
    let Some(header) = header else {
        return Ok(());
    };
    if ordering != DeliveryOrder::Fifo {
        return Err(Problem::new(
            "InvalidSpec",
            "spec.partitionKeyHeader: requires spec.ordering: fifo",
        ));
    }
    http::HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
        Problem::new(
            "InvalidHeader",
            format!("spec.partitionKeyHeader: {header:?} is not a valid header name"),
        )
    })?;
    Ok(())
}

/// Parses `spec.url`. Messages never repeat the URL: it is in the spec already, and a
/// malformed one may hold credentials.
fn check_url(text: &str, policy: Policy) -> Result<url::Url, Problem> {
    let url =
        url::Url::parse(text).map_err(|e| Problem::new("InvalidUrl", format!("spec.url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Problem::new(
            "InvalidUrl",
            "spec.url: must be an http or https URL with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Problem::new(
            "InvalidUrl",
            "spec.url: must not contain credentials (they would show in status and listings); use spec.auth",
        ));
    }
    if policy.require_https && url.scheme() != "https" {
        return Err(Problem::new(
            "HttpsRequired",
            "spec.url: plain http is refused on this installation (--require-https); use an https URL",
        ));
    }
    Ok(url)
}

/// Header names an endpoint may not set: they carry the signature and the framing.
const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "host",
    "content-length",
    "user-agent",
    "transfer-encoding",
    "connection",
];

fn check_headers(headers: &BTreeMap<String, String>, has_auth: bool) -> Result<(), Problem> {
    if headers.len() > MAX_HEADERS {
        return Err(Problem::new(
            "InvalidHeader",
            format!(
                "spec.headers: {} headers; at most {MAX_HEADERS}",
                headers.len()
            ),
        ));
    }
    let total: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if total > MAX_HEADERS_BYTES {
        return Err(Problem::new(
            "InvalidHeader",
            format!("spec.headers: {total} bytes of names and values; at most {MAX_HEADERS_BYTES}"),
        ));
    }
    for (name, value) in headers {
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(Problem::new(
                "InvalidHeader",
                format!(
                    "spec.headers.{name}: value is {} bytes; at most {MAX_HEADER_VALUE_BYTES}",
                    value.len()
                ),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("webhook-") || RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(Problem::new(
                "InvalidHeader",
                format!("spec.headers.{name}: reserved header cannot be overridden"),
            ));
        }
        if has_auth && lower == "authorization" {
            return Err(Problem::new(
                "InvalidHeader",
                format!("spec.headers.{name}: cannot be set together with spec.auth"),
            ));
        }
        http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Problem::new(
                "InvalidHeader",
                format!("spec.headers: {name:?} is not a valid header name"),
            )
        })?;
        http::HeaderValue::from_str(value).map_err(|_| {
            Problem::new(
                "InvalidHeader",
                format!("spec.headers.{name}: value is not a valid header value"),
            )
        })?;
    }
    Ok(())
}

fn positive(field: &str, value: i32) -> Result<u32, Problem> {
    u32::try_from(value).ok().filter(|v| *v > 0).ok_or_else(|| {
        Problem::new(
            "InvalidSpec",
            format!("{field}: must be at least 1, got {value}"),
        )
    })
}

fn route(subscription: &EventSubscription, endpoints: &Verdicts) -> Result<Route, Problem> {
    let spec = &subscription.spec;
    match endpoints.get(&spec.endpoint_ref.name) {
        None => {
            return Err(Problem::new(
                "EndpointNotFound",
                format!(
                    "WebhookEndpoint {:?} does not exist in this namespace",
                    spec.endpoint_ref.name
                ),
            ));
        }
        Some(Err(problem)) => {
            return Err(Problem::new(
                "EndpointNotReady",
                format!(
                    "WebhookEndpoint {:?} is invalid: {}",
                    spec.endpoint_ref.name, problem.message
                ),
            ));
        }
        Some(Ok(())) => {}
    }
    if spec.event_types.is_empty() {
        return Err(Problem::new(
            "InvalidPattern",
            "spec.eventTypes: at least one pattern is required",
        ));
    }
    if spec.event_types.len() > MAX_PATTERNS {
        return Err(Problem::new(
            "InvalidPattern",
            format!(
                "spec.eventTypes: {} patterns; at most {MAX_PATTERNS}",
                spec.event_types.len()
            ),
        ));
    }
    for (i, pattern) in spec.event_types.iter().enumerate() {
        Pattern::parse(pattern)
            .map_err(|e| Problem::new("InvalidPattern", format!("spec.eventTypes[{i}]: {e}")))?;
    }
    if let Some(filter) = &spec.filter {
        Filter::parse(&filter.0)
            .map_err(|e| Problem::new("InvalidFilter", format!("spec.filter{e}")))?;
    }
    Ok(Route {
        subscription: subscription.name_any(),
        endpoint: spec.endpoint_ref.name.clone(),
        event_types: spec.event_types.clone(),
        filter: spec.filter.as_ref().map(|f| f.0.clone()),
    })
}

/// The namespace's catalogue by event type, with a verdict per EventType; valid schemas go
/// into the routes. Of two EventTypes declaring one type, the first by object name counts.
fn catalog(
    event_types: &[EventType],
    report: &mut CompiledTenantReport,
) -> BTreeMap<String, Catalogued> {
    let mut sorted: Vec<&EventType> = event_types.iter().collect();
    sorted.sort_by_key(|e| e.name_any());
    let mut catalog = BTreeMap::new();
    for event_type in sorted {
        let object = event_type.name_any();
        let verdict = declare(&event_type.spec, &object, &mut catalog)
            .map(|schema| report.routes.schemas.extend(schema));
        report.event_types.insert(object, verdict);
    }
    report
        .routes
        .schemas
        .sort_by(|a, b| a.event_type.cmp(&b.event_type));
    catalog
}

/// Adds one EventType to the catalogue and returns its schema (compiled here to check it).
/// A type with a broken schema is still declared: only its validation is off.
fn declare(
    spec: &EventTypeSpec,
    object: &str,
    catalog: &mut BTreeMap<String, Catalogued>,
) -> Result<Option<PayloadSchema>, Problem> {
    validate_event_type(&spec.name)
        .map_err(|e| Problem::new("InvalidEventType", format!("spec.name: {e}")))?;
    if let Some(first) = catalog.get(&spec.name) {
        return Err(Problem::new(
            "DuplicateEventType",
            format!(
                "spec.name {:?} is already declared by EventType {:?}",
                spec.name, first.object
            ),
        ));
    }
    catalog.insert(
        spec.name.clone(),
        Catalogued {
            object: object.to_owned(),
            deprecated: spec.deprecated,
        },
    );
    let Some(schema) = &spec.schema else {
        return Ok(None);
    };
    CompiledSchema::compile(schema, spec.on_invalid)
        .map_err(|e| Problem::new("InvalidSchema", format!("spec.schema: {e}")))?;
    Ok(Some(PayloadSchema {
        event_type: spec.name.clone(),
        schema: schema.clone(),
        on_invalid: spec.on_invalid,
    }))
}

/// Patterns that select no catalogued type, and literal names of deprecated types.
fn check_catalog(
    patterns: &[String],
    catalog: &BTreeMap<String, Catalogued>,
) -> Result<(), Problem> {
    let mut unknown = Vec::new();
    let mut deprecated = Vec::new();
    for text in patterns {
        // An invalid pattern is the Ready condition's business.
        let Ok(pattern) = Pattern::parse(text) else {
            continue;
        };
        if pattern.is_literal() {
            match catalog.get(text) {
                None => unknown.push(format!("{text:?}")),
                Some(entry) if entry.deprecated => deprecated.push(format!("{text:?}")),
                Some(_) => {}
            }
        } else if !catalog.keys().any(|t| pattern.matches(t)) {
            unknown.push(format!("{text:?}"));
        }
    }
    let mut sentences = Vec::new();
    if !unknown.is_empty() {
        sentences.push(format!(
            "spec.eventTypes: no EventType in this namespace matches {}",
            unknown.join(", ")
        ));
    }
    if !deprecated.is_empty() {
        sentences.push(format!(
            "spec.eventTypes names deprecated event types: {}",
            deprecated.join(", ")
        ));
    }
    match (unknown.is_empty(), deprecated.is_empty()) {
        (true, true) => Ok(()),
        (false, _) => Err(Problem::new("UnknownEventTypes", sentences.join("; "))),
        (true, false) => Err(Problem::new("DeprecatedEventTypes", sentences.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::signing_keys::SigningKeys,
        resources::{EventSubscriptionSpec, WebhookEndpointSpec, event_subscription::EndpointRef},
    };

    fn endpoint(name: &str, url: &str) -> WebhookEndpoint {
        endpoint_with(name, serde_json::json!({ "url": url }))
    }

    fn endpoint_with(name: &str, spec: serde_json::Value) -> WebhookEndpoint {
        let spec: WebhookEndpointSpec =
            serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}"));
        let mut e = WebhookEndpoint::new(name, spec);
        e.metadata.namespace = Some("acme".into());
        e
    }

    fn subscription(name: &str, endpoint: &str, types: &[&str]) -> EventSubscription {
        EventSubscription::new(
            name,
            EventSubscriptionSpec {
                endpoint_ref: EndpointRef {
                    name: endpoint.into(),
                },
                event_types: types.iter().map(|s| s.to_string()).collect(),
                filter: None,
            },
        )
    }

    fn event_type(object: &str, name: &str, extra: serde_json::Value) -> EventType {
        let mut spec = serde_json::json!({ "name": name });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let spec = serde_json::from_value(spec).unwrap_or_else(|e| panic!("{e}"));
        EventType::new(object, spec)
    }

    fn secrets(names: &[&str]) -> NamespaceData {
        let secrets = names
            .iter()
            .map(|n| {
                let key =
                    BTreeMap::from([("secret".to_string(), SigningKeys::generate().into_bytes())]);
                (format!("{n}-signing"), key)
            })
            .collect();
        NamespaceData {
            secrets,
            config_maps: BTreeMap::new(),
        }
    }

    fn verdict(
        endpoint: WebhookEndpoint,
        data: &NamespaceData,
        policy: Policy,
    ) -> Result<(), Problem> {
        let name = endpoint.name_any();
        compile_tenant("acme", &[endpoint], &[], &[], data, policy).endpoints[&name].clone()
    }

    #[test]
    fn defaults_apply_and_valid_objects_route() {
        let report = compile_tenant(
            "acme",
            &[endpoint("a", "https://a.example/hook")],
            &[subscription("s", "a", &["order.*"])],
            &[],
            &secrets(&["a"]),
            Policy::default(),
        );
        assert_eq!(report.endpoints["a"], Ok(()));
        let config = &report.routes.endpoints[0];
        assert_eq!(config.timeout, std::time::Duration::from_secs(15));
        assert_eq!(config.retry, RetryPolicy::default());
        assert_eq!(config.max_in_flight, 10);
        assert_eq!(
            config.secret,
            SecretLocation {
                name: "a-signing".into(),
                key: "secret".into()
            }
        );
        assert_eq!(report.routes.routes.len(), 1);
    }

    #[test]
    fn invalid_objects_are_reported_and_left_out() {
        let mut bad_duration = endpoint("slow", "https://slow.example");
        bad_duration.spec.retry.max_backoff = "forever".into();
        let mut bad_header = endpoint("hdr", "https://hdr.example");
        bad_header
            .spec
            .headers
            .insert("Webhook-Signature".into(), "x".into());
        let report = compile_tenant(
            "acme",
            &[
                endpoint("good", "https://good.example"),
                endpoint("ftp", "ftp://files.example"),
                endpoint("nosecret", "https://x.example"),
                bad_duration,
                bad_header,
            ],
            &[
                subscription("ok", "good", &["a.b"]),
                subscription("dangling", "missing", &["a.b"]),
                subscription("to-invalid", "ftp", &["a.b"]),
                subscription("bad-pattern", "good", &["a.>.b"]),
            ],
            &[],
            &secrets(&["good", "ftp", "slow", "hdr"]),
            Policy::default(),
        );
        let reason = |v: &Verdicts, n: &str| v[n].as_ref().err().map(|p| p.reason);
        assert_eq!(reason(&report.endpoints, "good"), None);
        assert_eq!(reason(&report.endpoints, "ftp"), Some("InvalidUrl"));
        assert_eq!(
            reason(&report.endpoints, "nosecret"),
            Some("SecretNotFound")
        );
        assert_eq!(reason(&report.endpoints, "slow"), Some("InvalidDuration"));
        assert_eq!(reason(&report.endpoints, "hdr"), Some("InvalidHeader"));
        assert_eq!(
            reason(&report.subscriptions, "dangling"),
            Some("EndpointNotFound")
        );
        assert_eq!(
            reason(&report.subscriptions, "to-invalid"),
            Some("EndpointNotReady")
        );
        assert_eq!(
            reason(&report.subscriptions, "bad-pattern"),
            Some("InvalidPattern")
        );
        let msg = report.endpoints["slow"]
            .as_ref()
            .err()
            .map(|p| p.message.clone())
            .unwrap_or_default();
        assert!(msg.contains("spec.retry.maxBackoff"), "{msg}");
        assert_eq!(
            report
                .routes
                .endpoints
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>(),
            ["good"]
        );
        assert_eq!(report.routes.routes.len(), 1);
    }

    #[test]
    fn bad_secret_material_is_reported_without_leaking_it() {
        let mut data = secrets(&[]);
        data.secrets.insert(
            "a-signing".into(),
            BTreeMap::from([("secret".into(), b"supersecretvalue".to_vec())]),
        );
        let problem = verdict(endpoint("a", "https://a.example"), &data, Policy::default()).err();
        assert_eq!(problem.as_ref().map(|p| p.reason), Some("InvalidSecret"));
        assert!(
            !problem
                .map(|p| p.message)
                .unwrap_or_default()
                .contains("supersecretvalue")
        );
    }

    #[test]
    fn filters_are_validated_and_routed() {
        let mut filtered = subscription("big", "a", &["order.paid"]);
        filtered.spec.filter = Some(crate::resources::filter::FilterSpec(serde_json::json!(
            {"all": [{"field": "$.amount", "gte": 100}, {"header": "x-region", "prefix": "eu-"}]}
        )));
        let mut broken = subscription("broken", "a", &["order.paid"]);
        broken.spec.filter = Some(crate::resources::filter::FilterSpec(serde_json::json!(
            {"any": [{"field": "$.a", "eq": 1}, {"field": "$.b", "gt": "many"}]}
        )));
        let report = compile_tenant(
            "acme",
            &[endpoint("a", "https://a.example")],
            &[filtered, broken],
            &[],
            &secrets(&["a"]),
            Policy::default(),
        );
        assert_eq!(report.subscriptions["big"], Ok(()));
        let problem = report.subscriptions["broken"].clone().expect_err("invalid");
        assert_eq!(problem.reason, "InvalidFilter");
        assert!(
            problem.message.starts_with("spec.filter.any[1].gt: "),
            "{}",
            problem.message
        );
        assert_eq!(report.routes.routes.len(), 1);
        assert!(report.routes.routes[0].filter.is_some());
        assert!(
            report.catalog.is_none(),
            "no EventType, no catalogue verdicts"
        );
    }

    #[test]
    fn urls_with_credentials_or_plain_http_under_require_https_are_refused() {
        let data = secrets(&["a"]);
        let creds = verdict(
            endpoint("a", "https://user:hunter2@a.example/x"),
            &data,
            Policy::default(),
        );
        let creds = creds.err().unwrap_or_else(|| panic!("accepted"));
        assert_eq!(creds.reason, "InvalidUrl");
        assert!(
            creds.message.contains("spec.auth") && !creds.message.contains("hunter2"),
            "{}",
            creds.message
        );

        let strict = Policy {
            require_https: true,
        };
        let http = verdict(endpoint("a", "http://a.example/x"), &data, strict).err();
        assert_eq!(http.as_ref().map(|p| p.reason), Some("HttpsRequired"));
        assert!(
            http.map(|p| p.message)
                .unwrap_or_default()
                .contains("--require-https")
        );
        assert_eq!(
            verdict(endpoint("a", "https://a.example/x"), &data, strict),
            Ok(())
        );
        assert_eq!(
            verdict(
                endpoint("a", "http://a.example/x"),
                &data,
                Policy::default()
            ),
            Ok(())
        );
    }

    #[test]
    fn auth_and_ca_references_are_checked_and_name_their_field() {
        let mut data = secrets(&["a"]);
        let auth = serde_json::json!({ "basic": { "secretName": "a-auth" } });
        let spec = |extra: serde_json::Value| {
            let mut spec = serde_json::json!({ "url": "https://a.example/x" });
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            endpoint_with("a", spec)
        };
        let problem =
            |e: WebhookEndpoint, data: &NamespaceData| verdict(e, data, Policy::default()).err();

        let missing = problem(spec(serde_json::json!({ "auth": auth })), &data);
        assert_eq!(missing.as_ref().map(|p| p.reason), Some("SecretNotFound"));
        assert!(
            missing
                .map(|p| p.message)
                .unwrap_or_default()
                .starts_with("spec.auth.basic.usernameKey: Secret \"a-auth\"")
        );

        data.secrets.insert(
            "a-auth".into(),
            BTreeMap::from([("username".into(), b"app".to_vec())]),
        );
        let key = problem(spec(serde_json::json!({ "auth": auth })), &data);
        assert_eq!(key.as_ref().map(|p| p.reason), Some("SecretKeyMissing"));
        assert!(
            key.map(|p| p.message)
                .unwrap_or_default()
                .contains("spec.auth.basic.passwordKey")
        );

        data.secrets
            .get_mut("a-auth")
            .map(|s| s.insert("password".into(), b"pw".to_vec()));
        assert_eq!(
            verdict(
                spec(serde_json::json!({ "auth": auth })),
                &data,
                Policy::default()
            ),
            Ok(())
        );
        let config = compile_tenant(
            "acme",
            &[spec(serde_json::json!({ "auth": auth }))],
            &[],
            &[],
            &data,
            Policy::default(),
        );
        assert_eq!(
            config.routes.endpoints[0].auth,
            Some(EndpointAuth::Basic {
                secret: "a-auth".into(),
                username_key: "username".into(),
                password_key: "password".into()
            })
        );

        // Authorization among static headers is refused only when auth is set.
        let headers =
            serde_json::json!({ "auth": auth, "headers": { "authorization": "Bearer x" } });
        assert_eq!(
            problem(spec(headers), &data).map(|p| p.reason),
            Some("InvalidHeader")
        );
        assert_eq!(
            verdict(
                spec(serde_json::json!({ "headers": { "Authorization": "Bearer x" } })),
                &data,
                Policy::default()
            ),
            Ok(())
        );

        let ca =
            serde_json::json!({ "tls": { "caBundleRef": { "kind": "ConfigMap", "name": "ca" } } });
        let no_ca = problem(spec(ca.clone()), &data);
        assert_eq!(no_ca.as_ref().map(|p| p.reason), Some("ConfigMapNotFound"));
        data.config_maps.insert(
            "ca".into(),
            BTreeMap::from([("ca.crt".into(), b"junk".to_vec())]),
        );
        let bad = problem(spec(ca.clone()), &data);
        assert_eq!(bad.as_ref().map(|p| p.reason), Some("InvalidCaBundle"));
        assert!(
            bad.map(|p| p.message)
                .unwrap_or_default()
                .starts_with("spec.tls.caBundleRef: ConfigMap \"ca\" key \"ca.crt\"")
        );

        let http_tls = endpoint_with(
            "a",
            serde_json::json!({ "url": "http://a.example", "tls": {} }),
        );
        assert_eq!(
            problem(http_tls, &data).map(|p| p.reason),
            Some("InvalidTls")
        );
    }

    #[test]
    fn event_types_form_the_catalogue_and_carry_schemas() {
        let schema = serde_json::json!({"schema": {"type": "object", "required": ["order"]}});
        let report = compile_tenant(
            "acme",
            &[endpoint("a", "https://a.example")],
            &[
                subscription("known", "a", &["order.paid", "order.*"]),
                subscription("typo", "a", &["order.payed", "invoice.*", "order.legacy"]),
                subscription("old", "a", &["order.legacy"]),
                subscription("dangling", "missing", &["order.paid"]),
            ],
            &[
                event_type("order-paid", "order.paid", schema.clone()),
                event_type(
                    "order-legacy",
                    "order.legacy",
                    serde_json::json!({"deprecated": true}),
                ),
                event_type("z-dup", "order.paid", serde_json::json!({})),
                event_type(
                    "broken",
                    "order.broken",
                    serde_json::json!({"schema": {"type": 7}}),
                ),
                event_type("wild", "order.*", serde_json::json!({})),
            ],
            &secrets(&["a"]),
            Policy::default(),
        );
        let reason = |v: &Verdicts, n: &str| v[n].as_ref().err().map(|p| p.reason);
        assert_eq!(reason(&report.event_types, "order-paid"), None);
        assert_eq!(
            reason(&report.event_types, "z-dup"),
            Some("DuplicateEventType")
        );
        assert_eq!(reason(&report.event_types, "broken"), Some("InvalidSchema"));
        assert_eq!(
            reason(&report.event_types, "wild"),
            Some("InvalidEventType")
        );
        assert_eq!(
            report
                .routes
                .schemas
                .iter()
                .map(|s| s.event_type.as_str())
                .collect::<Vec<_>>(),
            ["order.paid"],
            "only valid schemas are routed"
        );
        let catalog = report.catalog.expect("the namespace has a catalogue");
        assert_eq!(catalog["known"], Ok(()));
        assert_eq!(
            reason(&catalog, "dangling"),
            None,
            "judged even when not routed"
        );
        assert_eq!(reason(&catalog, "old"), Some("DeprecatedEventTypes"));
        let typo = catalog["typo"].clone().expect_err("unknown types");
        assert_eq!(typo.reason, "UnknownEventTypes");
        assert!(
            typo.message.contains(r#""order.payed", "invoice.*""#)
                && typo
                    .message
                    .contains(r#"deprecated event types: "order.legacy""#),
            "{}",
            typo.message
        );
        // A declared type whose schema is broken is still catalogued.
        assert!(
            check_catalog(&["order.broken".into()], &{
                let mut r = CompiledTenantReport::default();
                super::catalog(
                    &[event_type(
                        "broken",
                        "order.broken",
                        serde_json::json!({"schema": {"type": 7}}),
                    )],
                    &mut r,
                )
            })
            .is_ok()
        );
    }

    #[test]
    fn ordering_and_partition_key_are_compiled_and_checked() {
        let data = secrets(&["a"]);
        let spec = |extra: serde_json::Value| {
            let mut spec = serde_json::json!({ "url": "https://a.example/x" });
            if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
                spec.extend(extra.clone());
            }
            endpoint_with("a", spec)
        };
        let compiled = |e: WebhookEndpoint| {
            compile_tenant("acme", &[e], &[], &[], &data, Policy::default())
                .routes
                .endpoints
                .pop()
        };
        let plain = compiled(endpoint("a", "https://a.example/x")).expect("valid");
        assert_eq!(plain.ordering, DeliveryOrder::Unordered);
        assert!(!plain.is_fifo());
        let fifo = compiled(spec(serde_json::json!({
            "ordering": "fifo", "partitionKeyHeader": "X-Customer"
        })))
        .expect("valid");
        assert!(fifo.is_fifo());
        assert_eq!(fifo.partition_key_header.as_deref(), Some("X-Customer"));

        let problem = |extra| {
            verdict(spec(extra), &data, Policy::default())
                .err()
                .map(|p| (p.reason, p.message))
        };
        assert_eq!(
            problem(serde_json::json!({ "partitionKeyHeader": "X-Customer" })),
            Some((
                "InvalidSpec",
                "spec.partitionKeyHeader: requires spec.ordering: fifo".to_owned()
            ))
        );
        assert_eq!(
            problem(serde_json::json!({ "ordering": "fifo", "partitionKeyHeader": "x y" })),
            Some((
                "InvalidHeader",
                "spec.partitionKeyHeader: \"x y\" is not a valid header name".to_owned()
            ))
        );
        let unknown: Result<WebhookEndpointSpec, _> = serde_json::from_value(
            serde_json::json!({ "url": "https://a.example", "ordering": "lifo" }),
        );
        assert!(unknown.is_err(), "only unordered and fifo exist");
    }

    #[test]
    fn limits_are_enforced_with_clear_reasons() {
        let data = secrets(&["a"]);
        let problem = |headers: serde_json::Value| {
            verdict(
                endpoint_with(
                    "a",
                    serde_json::json!({ "url": "https://a.example", "headers": headers }),
                ),
                &data,
                Policy::default(),
            )
            .err()
            .map(|p| (p.reason, p.message))
        };
        let many: serde_json::Map<_, _> = (0..33)
            .map(|i| (format!("X-H{i}"), serde_json::json!("v")))
            .collect();
        assert_eq!(
            problem(serde_json::Value::Object(many)),
            Some((
                "InvalidHeader",
                "spec.headers: 33 headers; at most 32".to_owned()
            ))
        );
        let big = problem(serde_json::json!({ "X-Big": "v".repeat(5000) }));
        assert_eq!(
            big,
            Some((
                "InvalidHeader",
                "spec.headers.X-Big: value is 5000 bytes; at most 4096".to_owned()
            ))
        );
        let bulky: serde_json::Map<_, _> = (0..5)
            .map(|i| (format!("X-H{i}"), serde_json::json!("v".repeat(4000))))
            .collect();
        assert!(
            problem(serde_json::Value::Object(bulky))
                .is_some_and(|p| p.1.contains("at most 16384"))
        );

        let subscriptions: Vec<EventSubscription> = (0..=MAX_SUBSCRIPTIONS_PER_ENDPOINT)
            .rev()
            .map(|i| subscription(&format!("s{i:03}"), "a", &["a.b"]))
            .collect();
        let report = compile_tenant(
            "acme",
            &[endpoint("a", "https://a.example")],
            &subscriptions,
            &[],
            &data,
            Policy::default(),
        );
        assert_eq!(report.routes.routes.len(), MAX_SUBSCRIPTIONS_PER_ENDPOINT);
        let over = report.subscriptions["s100"]
            .as_ref()
            .err()
            .map(|p| p.reason);
        assert_eq!(
            over,
            Some("TooManySubscriptions"),
            "the last by name is the one over"
        );
        assert_eq!(report.subscriptions["s000"], Ok(()));
        let patterns: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
        let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let report = compile_tenant(
            "acme",
            &[endpoint("a", "https://a.example")],
            &[subscription("wide", "a", &patterns)],
            &[],
            &data,
            Policy::default(),
        );
        assert_eq!(
            report.subscriptions["wide"]
                .as_ref()
                .err()
                .map(|p| p.message.as_str()),
            Some("spec.eventTypes: 65 patterns; at most 64")
        );
    }
}
