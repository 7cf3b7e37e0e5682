//! Request bodies (`{"name": ..., "spec": {...}}`), checked by the controller's own compile step
//! ([`crate::resources::compile`]), so the API accepts exactly what the controller would route.
//!
//! A body that does not have the resource's shape (not JSON, a wrong type, an unknown or missing
//! field) is a 400; a well-formed spec with invalid values (URL, duration, pattern, header) is a
//! 422. Both name the field.

use std::{collections::BTreeMap, time::Duration};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::store::{self, Kind, Spec};
use crate::{
    model::{
        NamespaceData, duration,
        signing_keys::{SigningKeys, check_overlap},
    },
    resources::compile::{self, Policy, Problem},
};

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// 400 (shape) or 422 (values).
    pub status: u16,
    pub reason: &'static str,
    pub field: Option<String>,
    pub message: String,
}

impl Invalid {
    fn shape(field: Option<String>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            reason: "InvalidBody",
            field,
            message: message.into(),
        }
    }

    pub fn value(
        reason: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status: 422,
            reason,
            field: Some(field.into()),
            message: message.into(),
        }
    }

    fn problem(problem: Problem) -> Self {
        Self {
            status: 422,
            reason: problem.reason,
            field: field_of(&problem.message),
            message: problem.message,
        }
    }
}

/// Parses and validates a body. `path_name` is the name in the URL (replace): the body's name may
/// then be left out, and must match when given. Returns the name and the spec.
pub fn parse(
    namespace: &str,
    kind: Kind,
    body: &[u8],
    path_name: Option<&str>,
) -> Result<(String, Spec), Invalid> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid::shape(None, format!("body is not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(Invalid::shape(
            None,
            "body must be a JSON object with name and spec",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["name", "spec"].contains(&k.as_str()))
    {
        return Err(Invalid::shape(
            Some(unknown.clone()),
            format!("{unknown}: unknown field (expected name and spec)"),
        ));
    }
    let name = match (fields.remove("name"), path_name) {
        (Some(Value::String(name)), Some(path)) if name != path => {
            return Err(Invalid::value(
                "NameMismatch",
                "name",
                format!("name: {name:?} differs from the name in the URL ({path:?})"),
            ));
        }
        (Some(Value::String(name)), _) => name,
        (Some(_), _) => {
            return Err(Invalid::shape(
                Some("name".into()),
                "name: must be a string",
            ));
        }
        (None, Some(path)) => path.to_owned(),
        (None, None) => return Err(Invalid::shape(Some("name".into()), "name: required")),
    };
    check_name("name", &name)?;
    let spec = fields
        .remove("spec")
        .ok_or_else(|| Invalid::shape(Some("spec".into()), "spec: required"))?;
    let spec = match kind {
        Kind::Endpoint => Spec::Endpoint(typed(spec)?),
        Kind::Subscription => Spec::Subscription(typed(spec)?),
    };
    check_spec(namespace, &name, &spec)?;
    Ok((name, spec))
}

/// The overlap a rotation body (`{"overlap": "1h"}`, optional) asks for, or `default`.
pub fn overlap(body: &[u8], default: Duration) -> Result<Duration, Invalid> {
    if body.trim_ascii().is_empty() {
        return Ok(default);
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Invalid::shape(None, format!("body is not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(Invalid::shape(None, "body must be a JSON object"));
    };
    if let Some(unknown) = fields.keys().find(|k| k.as_str() != "overlap") {
        return Err(Invalid::shape(
            Some(unknown.clone()),
            format!("{unknown}: unknown field (expected overlap)"),
        ));
    }
    let text = match fields.remove("overlap") {
        None => return Ok(default),
        Some(Value::String(text)) => text,
        Some(_) => {
            return Err(Invalid::shape(
                Some("overlap".into()),
                "overlap: must be a string such as \"1h\"",
            ));
        }
    };
    let overlap = duration::parse(&text)
        .map_err(|e| Invalid::value("InvalidDuration", "overlap", format!("overlap: {e}")))?;
    check_overlap(overlap)
        .map_err(|e| Invalid::value("InvalidOverlap", "overlap", format!("overlap: {e}")))
}

/// The name a body gives, even when the body is invalid otherwise (for the audit record);
/// cut to the longest valid length.
pub fn name_in(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let name = value.get("name")?.as_str()?;
    Some(name.chars().take(253).collect())
}

/// The spec in its Rust type; unknown fields are refused rather than silently dropped, so a typo
/// (`maxInflight`) is not mistaken for a default.
fn typed<T: DeserializeOwned>(spec: Value) -> Result<T, Invalid> {
    let mut unknown = Vec::new();
    let typed: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        spec,
        &mut |path: serde_ignored::Path| unknown.push(path.to_string()),
    ));
    let typed = typed.map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_owned()
        } else {
            format!("spec.{path}")
        };
        Invalid::shape(Some(field.clone()), format!("{field}: {}", e.inner()))
    })?;
    if let Some(path) = unknown.first() {
        let field = format!("spec.{path}");
        return Err(Invalid::shape(
            Some(field.clone()),
            format!("{field}: unknown field"),
        ));
    }
    Ok(typed)
}

/// Kubernetes object names (RFC 1123 subdomain): lowercase letters, digits, '-' and '.', at most
/// 253, starting and ending with a letter or digit. Names from URLs are checked too: they become
/// part of the Kubernetes API path.
pub fn is_valid_name(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| alnum(b) || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(alnum)
        && name.bytes().last().is_some_and(alnum)
}

fn check_name(field: &str, name: &str) -> Result<(), Invalid> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Invalid::value(
            "InvalidName",
            field,
            format!(
                "{field}: {name:?} is not a valid name (lowercase letters, digits, '-' and '.', at most 253)"
            ),
        ))
    }
}

/// Compiles the object alone. Secrets and the referenced endpoint are stood in for: a missing
/// signing Secret is created by the controller, and whether the endpoint exists is the caller's
/// check (against the store).
fn check_spec(namespace: &str, name: &str, spec: &Spec) -> Result<(), Invalid> {
    let (endpoint, subscriptions) = match spec {
        Spec::Endpoint(spec) => (store::endpoint(namespace, name, spec.clone()), Vec::new()),
        Spec::Subscription(spec) => {
            check_name("spec.endpointRef.name", &spec.endpoint_ref.name)?;
            let stand_in =
                serde_json::from_value(serde_json::json!({ "url": "https://stand-in.invalid/" }))
                    .map_err(|e| Invalid::shape(None, e.to_string()))?;
            (
                store::endpoint(namespace, &spec.endpoint_ref.name, stand_in),
                vec![store::subscription(namespace, name, spec.clone())],
            )
        }
    };
    let secret = compile::secret_ref(&endpoint);
    let data = NamespaceData {
        secrets: BTreeMap::from([(
            secret.name,
            BTreeMap::from([(secret.key, SigningKeys::generate().into_bytes())]),
        )]),
        config_maps: BTreeMap::new(),
    };
    let report = compile::compile_tenant(
        namespace,
        &[endpoint],
        &subscriptions,
        &[],
        &data,
        Policy::default(),
    );
    let verdict = match spec {
        Spec::Endpoint(_) => report.endpoints.into_values().next(),
        Spec::Subscription(_) => report.subscriptions.into_values().next(),
    };
    match verdict {
        // What referenced Secrets and ConfigMaps hold is not the body's fault: like the
        // controller, the object is accepted and its conditions say what is missing.
        Some(Err(problem)) if !REFERENCE_PROBLEMS.contains(&problem.reason) => {
            Err(Invalid::problem(problem))
        }
        _ => Ok(()),
    }
}

/// Reasons about the objects a spec references rather than the spec itself.
const REFERENCE_PROBLEMS: &[&str] = &[
    "SecretNotFound",
    "SecretKeyMissing",
    "InvalidSecret",
    "ConfigMapNotFound",
    "ConfigMapKeyMissing",
    "InvalidCaBundle",
];

/// The field a compile problem names: its message starts with it (`spec.retry.maxBackoff: ...`).
fn field_of(message: &str) -> Option<String> {
    let first = message.split([' ', ':']).next()?;
    first.starts_with("spec.").then(|| first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: Kind, body: &str) -> Result<(String, Spec), Invalid> {
        parse("acme", kind, body.as_bytes(), None)
    }

    fn refused(kind: Kind, body: &str) -> (u16, &'static str, Option<String>, String) {
        let invalid = check(kind, body).expect_err(body);
        (
            invalid.status,
            invalid.reason,
            invalid.field,
            invalid.message,
        )
    }

    #[test]
    fn valid_bodies_get_the_crd_defaults() {
        let (name, spec) = check(
            Kind::Endpoint,
            r#"{"name": "orders", "spec": {"url": "https://orders.example/hook"}}"#,
        )
        .unwrap();
        assert_eq!(name, "orders");
        let Spec::Endpoint(spec) = spec else { panic!() };
        assert_eq!((spec.timeout.as_str(), spec.max_in_flight), ("15s", 10));
        let (_, spec) = check(
            Kind::Subscription,
            r#"{"name": "paid", "spec": {"endpointRef": {"name": "orders"}, "eventTypes": ["order.*"]}}"#,
        )
        .unwrap();
        assert_eq!(spec.kind(), Kind::Subscription);
        // Replace: the name comes from the URL.
        let (name, _) = parse(
            "acme",
            Kind::Endpoint,
            br#"{"spec": {"url": "https://x.example"}}"#,
            Some("x"),
        )
        .unwrap();
        assert_eq!(name, "x");
    }

    #[test]
    fn bad_shapes_are_400_naming_the_field() {
        for (body, field) in [
            (
                r#"{"name": "a", "spec": {"url": "https://a.example", "maxInflight": 3}}"#,
                "spec.maxInflight",
            ),
            (
                r#"{"name": "a", "spec": {"url": "https://a.example", "retry": {"maxAttempts": "many"}}}"#,
                "spec.retry.maxAttempts",
            ),
            (
                r#"{"name": "a", "spec": {"url": "https://a.example", "retry": {"maxAtempts": 3}}}"#,
                "spec.retry.maxAtempts",
            ),
            (r#"{"name": "a", "spec": {}}"#, "spec"),
            (r#"{"name": "a"}"#, "spec"),
            (r#"{"spec": {"url": "https://a.example"}}"#, "name"),
            (
                r#"{"name": 7, "spec": {"url": "https://a.example"}}"#,
                "name",
            ),
            (
                r#"{"name": "a", "metadata": {}, "spec": {"url": "https://a.example"}}"#,
                "metadata",
            ),
        ] {
            let (status, reason, got, message) = refused(Kind::Endpoint, body);
            assert_eq!(
                (status, reason, got.as_deref()),
                (400, "InvalidBody", Some(field)),
                "{body}: {message}"
            );
            assert!(message.contains(field), "{message}");
        }
        let (status, _, field, _) = refused(Kind::Endpoint, "{not json");
        assert_eq!((status, field), (400, None));
    }

    #[test]
    fn invalid_values_are_422_with_the_compile_reason_and_field() {
        for (kind, body, reason, field) in [
            (
                Kind::Endpoint,
                r#"{"name": "a", "spec": {"url": "ftp://a.example"}}"#,
                "InvalidUrl",
                "spec.url",
            ),
            (
                Kind::Endpoint,
                r#"{"name": "a", "spec": {"url": "https://a.example", "timeout": "soon"}}"#,
                "InvalidDuration",
                "spec.timeout",
            ),
            (
                Kind::Endpoint,
                r#"{"name": "a", "spec": {"url": "https://a.example", "headers": {"Webhook-Id": "x"}}}"#,
                "InvalidHeader",
                "spec.headers.Webhook-Id",
            ),
            (
                Kind::Endpoint,
                r#"{"name": "a", "spec": {"url": "https://a.example", "maxInFlight": 0}}"#,
                "InvalidSpec",
                "spec.maxInFlight",
            ),
            (
                Kind::Endpoint,
                r#"{"name": "Orders", "spec": {"url": "https://a.example"}}"#,
                "InvalidName",
                "name",
            ),
            (
                Kind::Subscription,
                r#"{"name": "s", "spec": {"endpointRef": {"name": "a"}, "eventTypes": ["a.>.b"]}}"#,
                "InvalidPattern",
                "spec.eventTypes[0]",
            ),
            (
                Kind::Subscription,
                r#"{"name": "s", "spec": {"endpointRef": {"name": "a"}, "eventTypes": []}}"#,
                "InvalidPattern",
                "spec.eventTypes",
            ),
            (
                Kind::Subscription,
                r#"{"name": "s", "spec": {"endpointRef": {"name": ""}, "eventTypes": ["a"]}}"#,
                "InvalidName",
                "spec.endpointRef.name",
            ),
        ] {
            let (status, got_reason, got_field, message) = refused(kind, body);
            assert_eq!(
                (status, got_reason, got_field.as_deref()),
                (422, reason, Some(field)),
                "{body}: {message}"
            );
        }
        let mismatch = parse(
            "acme",
            Kind::Endpoint,
            br#"{"name": "b", "spec": {"url": "https://x.example"}}"#,
            Some("a"),
        )
        .unwrap_err();
        assert_eq!(
            (mismatch.status, mismatch.field.as_deref()),
            (422, Some("name"))
        );
    }
}
