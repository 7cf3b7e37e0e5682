//! CloudEvents 1.0: recognising events published in binary mode (`ce-` headers) or structured
//! mode (`application/cloudevents+json`), and turning them into HTTP binary mode.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

pub const SPEC_VERSION: &str = "1.0";
/// Content type of a structured-mode event.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Prefix of binary-mode attribute headers (NATS and HTTP alike).
pub const HEADER_PREFIX: &str = "ce-";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudEventError {
    #[error("CloudEvent lacks the required attribute {0:?}")]
    Missing(&'static str),
    #[error("CloudEvents specversion {0:?} is not supported (only 1.0)")]
    SpecVersion(String),
    #[error("CloudEvent attribute {name:?}: {reason}")]
    Attribute { name: String, reason: String },
    #[error("a structured CloudEvent must be a JSON object")]
    NotAnObject,
    #[error("CloudEvent data_base64 is not valid base64: {0}")]
    Base64(String),
}

/// The context attributes of one CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloudEvent {
    pub id: String,
    pub type_: String,
    /// Every other attribute (`source`, `time`, `subject`, `dataschema`, extensions) as text.
    pub attributes: BTreeMap<String, String>,
    pub data_content_type: Option<String>,
}

/// True for `application/cloudevents+json` (parameters ignored).
pub fn is_structured(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(STRUCTURED_CONTENT_TYPE))
}

/// A binary-mode event from its headers (names compared without regard to case); `None` when
/// there is no `ce-specversion`, so the event is not a CloudEvent.
pub fn from_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<Result<CloudEvent, CloudEventError>> {
    let mut found = BTreeMap::new();
    for (name, value) in headers {
        let Some(attribute) = strip_prefix_ignore_case(name, HEADER_PREFIX) else {
            continue;
        };
        found
            .entry(attribute.to_ascii_lowercase())
            .or_insert_with(|| value.to_owned());
    }
    found.contains_key("specversion").then(|| build(found))
}

/// A structured-mode event from its parsed JSON envelope.
pub fn from_structured(envelope: &Value) -> Result<CloudEvent, CloudEventError> {
    let object = envelope.as_object().ok_or(CloudEventError::NotAnObject)?;
    let mut found = BTreeMap::new();
    for (name, value) in object {
        if name == "data" || name == "data_base64" {
            continue;
        }
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => continue,
            _ => {
                return Err(CloudEventError::Attribute {
                    name: name.clone(),
                    reason: "must be a string, number or boolean".into(),
                });
            }
        };
        found.insert(name.clone(), text);
    }
    build(found)
}

fn build(mut found: BTreeMap<String, String>) -> Result<CloudEvent, CloudEventError> {
    let version = found.remove("specversion").unwrap_or_default();
    if version != SPEC_VERSION {
        return Err(CloudEventError::SpecVersion(version));
    }
    let mut required = |name: &'static str| {
        found
            .remove(name)
            .filter(|v| !v.is_empty())
            .ok_or(CloudEventError::Missing(name))
    };
    let id = required("id")?;
    let type_ = required("type")?;
    let source = required("source")?;
    if let Some(bad) = id.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(CloudEventError::Attribute {
            name: "id".into(),
            reason: format!("must be printable ASCII (found {bad:?})"),
        });
    }
    let data_content_type = found.remove("datacontenttype");
    found.insert("source".into(), source);
    if let Some(name) = found
        .iter()
        .find(|(_, value)| value.chars().any(char::is_control))
        .map(|(name, _)| name)
    {
        return Err(CloudEventError::Attribute {
            name: name.clone(),
            reason: "contains a control character".into(),
        });
    }
    if let Some(name) = found.keys().find(|n| {
        n.is_empty()
            || !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    }) {
        return Err(CloudEventError::Attribute {
            name: name.clone(),
            reason: "attribute names are lower-case letters and digits".into(),
        });
    }
    Ok(CloudEvent {
        id,
        type_,
        attributes: found,
        data_content_type,
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The data of a structured event as an HTTP binary-mode body: its content type (absent when
/// the event has no data) and bytes. JSON data is serialised; `data_base64` is decoded.
pub fn structured_data(envelope: &Value) -> Result<(Option<String>, Vec<u8>), CloudEventError> {
    let object = envelope.as_object().ok_or(CloudEventError::NotAnObject)?;
    let declared = object
        .get("datacontenttype")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let content_type = declared.unwrap_or_else(|| "application/json".into());
    if let Some(encoded) = object.get("data_base64").and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| CloudEventError::Base64(e.to_string()))?;
        return Ok((Some(content_type), bytes));
    }
    let Some(data) = object.get("data") else {
        return Ok((None, Vec::new()));
    };
    let bytes = match data {
        Value::String(text) if !is_json(&content_type) => text.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    };
    Ok((Some(content_type), bytes))
}

/// `application/json` or any `+json` type.
pub fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|t| {
        let t = t.trim().to_ascii_lowercase();
        t == "application/json" || t.ends_with("+json")
    })
}

/// An attribute value as an HTTP header value: space, `"`, `%` and everything outside printable
/// ASCII percent-encoded, as the CloudEvents HTTP binding requires.
pub fn header_value(value: &str) -> String {
    const ENCODE: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');
    percent_encoding::utf8_percent_encode(value, ENCODE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_mode_is_read_from_headers() {
        let headers = [
            ("ce-specversion", "1.0"),
            ("Ce-Id", "evt-1"),
            ("ce-type", "order.paid"),
            ("ce-source", "/shop"),
            ("ce-time", "2024-05-01T10:00:00Z"),
            ("ce-traceparent", "00-abc-01"),
            ("Content-Type", "application/json"),
        ];
        let event = from_headers(headers)
            .expect("a CloudEvent")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.id, "evt-1");
        assert_eq!(event.type_, "order.paid");
        assert_eq!(
            event.attributes,
            BTreeMap::from([
                ("source".to_string(), "/shop".to_string()),
                ("time".to_string(), "2024-05-01T10:00:00Z".to_string()),
                ("traceparent".to_string(), "00-abc-01".to_string()),
            ])
        );
        assert!(from_headers([("Nats-Msg-Id", "x")]).is_none());
    }

    #[test]
    fn incomplete_or_foreign_events_are_errors() {
        let missing = from_headers([("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "a")]);
        assert_eq!(missing, Some(Err(CloudEventError::Missing("source"))));
        let old = from_headers([("ce-specversion", "0.3")]);
        assert!(matches!(old, Some(Err(CloudEventError::SpecVersion(_)))));
        let bad_id = from_structured(
            &json!({"specversion": "1.0", "id": "a\nb", "type": "t", "source": "s"}),
        );
        assert!(matches!(bad_id, Err(CloudEventError::Attribute { .. })));
        let bad_name = from_structured(
            &json!({"specversion": "1.0", "id": "1", "type": "t", "source": "s", "Trace_Id": "x"}),
        );
        assert!(matches!(bad_name, Err(CloudEventError::Attribute { .. })));
        let nested = from_structured(
            &json!({"specversion": "1.0", "id": "1", "type": "t", "source": "s", "ext": {"a": 1}}),
        );
        assert!(matches!(nested, Err(CloudEventError::Attribute { .. })));
        assert_eq!(
            from_structured(&json!([1])),
            Err(CloudEventError::NotAnObject)
        );
    }

    #[test]
    fn structured_mode_and_its_data() {
        let envelope = json!({
            "specversion": "1.0", "id": "evt-2", "type": "order.paid", "source": "/shop",
            "subject": "order/42", "sequence": 7, "urgent": true,
            "datacontenttype": "application/json", "data": {"order": 42}
        });
        let event = from_structured(&envelope).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (event.id.as_str(), event.type_.as_str()),
            ("evt-2", "order.paid")
        );
        assert_eq!(event.attributes["subject"], "order/42");
        assert_eq!(event.attributes["sequence"], "7");
        assert_eq!(event.attributes["urgent"], "true");
        assert_eq!(event.data_content_type.as_deref(), Some("application/json"));
        assert_eq!(
            structured_data(&envelope),
            Ok((Some("application/json".into()), br#"{"order":42}"#.to_vec()))
        );
        let text = json!({"datacontenttype": "text/plain", "data": "hello"});
        assert_eq!(
            structured_data(&text),
            Ok((Some("text/plain".into()), b"hello".to_vec()))
        );
        let binary = json!({"datacontenttype": "application/octet-stream", "data_base64": "AAEC"});
        assert_eq!(
            structured_data(&binary),
            Ok((Some("application/octet-stream".into()), vec![0, 1, 2]))
        );
        assert_eq!(structured_data(&json!({})), Ok((None, Vec::new())));
        assert!(structured_data(&json!({"data_base64": "@@"})).is_err());
    }

    #[test]
    fn content_types_and_header_values() {
        assert!(is_structured("application/cloudevents+json; charset=utf-8"));
        assert!(!is_structured("application/json"));
        assert!(is_json("application/cloudevents+json"));
        assert!(is_json("Application/JSON"));
        assert!(!is_json("text/plain"));
        assert_eq!(header_value("a b\"c%d"), "a%20b%22c%25d");
        assert_eq!(header_value("é"), "%C3%A9");
        assert_eq!(header_value("/shop/orders"), "/shop/orders");
    }
}
