//! What goes on the wire for a job, by endpoint format: the body, its content type, and the
//! headers besides the Standard Webhooks ones (which sign this body).
//!
//! `standard`: the payload as published. `cloudevents`: CloudEvents HTTP binary mode as well:
//! `ce-specversion`, `ce-id`, `ce-type`, `ce-source`, `ce-time` and the event's other attributes
//! as `ce-*` headers; the body is the event's data (a structured CloudEvent is unwrapped).

use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::{
    dataplane::job::Job,
    model::{
        DeliveryFormat,
        cloudevent::{self, HEADER_PREFIX, SPEC_VERSION},
    },
};

/// Header telling the receiver the payload failed its event type's schema (`onInvalid: deliver`).
pub const SCHEMA_INVALID_HEADER: &str = "webhook-schema-invalid";

/// The request body and the headers that depend on the format.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub body: Bytes,
    /// Absent for a CloudEvent without data.
    pub content_type: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn build(format: DeliveryFormat, job: &Job) -> Result<Outgoing, String> {
    let mut outgoing = match format {
        DeliveryFormat::Standard => Outgoing {
            body: job.payload.clone(),
            content_type: Some(job.content_type.clone()),
            headers: Vec::new(),
        },
        DeliveryFormat::CloudEvents => binary_mode(job)?,
    };
    if job.schema_invalid {
        outgoing.headers.push((
            HeaderName::from_static(SCHEMA_INVALID_HEADER),
            HeaderValue::from_static("true"),
        ));
    }
    Ok(outgoing)
}

fn binary_mode(job: &Job) -> Result<Outgoing, String> {
    let (content_type, body) = if cloudevent::is_structured(&job.content_type) {
        let envelope: Value = serde_json::from_slice(&job.payload)
            .map_err(|e| format!("structured CloudEvent is not JSON: {e}"))?;
        let (content_type, data) =
            cloudevent::structured_data(&envelope).map_err(|e| e.to_string())?;
        (content_type, Bytes::from(data))
    } else {
        (Some(job.content_type.clone()), job.payload.clone())
    };
    let time = job.published.to_string();
    let mut attributes: Vec<(&str, &str)> = vec![
        ("specversion", SPEC_VERSION),
        ("id", &job.event_id),
        ("type", &job.event_type),
    ];
    if !job.attributes.contains_key("time") {
        attributes.push(("time", &time));
    }
    attributes.extend(job.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let headers = attributes
        .into_iter()
        .map(|(name, value)| {
            let name = HeaderName::from_bytes(format!("{HEADER_PREFIX}{name}").as_bytes())
                .map_err(|_| format!("CloudEvents attribute name {name:?} is not a header name"))?;
            let value = HeaderValue::from_str(&cloudevent::header_value(value))
                .map_err(|_| format!("CloudEvents attribute {name} is not a header value"))?;
            Ok((name, value))
        })
        .collect::<Result<_, String>>()?;
    Ok(Outgoing {
        body,
        content_type,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use jiff::Timestamp;

    fn job(content_type: &str, payload: &'static [u8]) -> Job {
        Job {
            event_id: "evt-1".into(),
            event_type: "order.paid".into(),
            content_type: content_type.into(),
            published: Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
            payload: Bytes::from_static(payload),
            attributes: BTreeMap::from([("source".to_string(), "/namespaces/acme".to_string())]),
            schema_invalid: false,
            resend: None,
        }
    }

    fn header<'a>(outgoing: &'a Outgoing, name: &str) -> Option<&'a str> {
        outgoing
            .headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn standard_sends_the_payload_as_published() {
        let job = job("application/json", br#"{"a":1}"#);
        let outgoing = build(DeliveryFormat::Standard, &job).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outgoing.body, job.payload);
        assert_eq!(outgoing.content_type.as_deref(), Some("application/json"));
        assert!(outgoing.headers.is_empty());
    }

    #[test]
    fn cloudevents_binary_mode_for_a_plain_event() {
        let job = job("application/json", br#"{"a":1}"#);
        let outgoing = build(DeliveryFormat::CloudEvents, &job).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outgoing.body, job.payload);
        assert_eq!(header(&outgoing, "ce-specversion"), Some("1.0"));
        assert_eq!(header(&outgoing, "ce-id"), Some("evt-1"));
        assert_eq!(header(&outgoing, "ce-type"), Some("order.paid"));
        assert_eq!(header(&outgoing, "ce-source"), Some("/namespaces/acme"));
        assert_eq!(header(&outgoing, "ce-time"), Some("2023-11-14T22:13:20Z"));
    }

    #[test]
    fn a_structured_event_is_unwrapped_with_its_attributes() {
        let mut job = job(
            "application/cloudevents+json",
            br#"{"specversion":"1.0","id":"evt-1","type":"order.paid","source":"/shop","time":"2024-01-01T00:00:00Z","subject":"a b","data":{"n":1}}"#,
        );
        job.attributes = BTreeMap::from([
            ("source".to_string(), "/shop".to_string()),
            ("time".to_string(), "2024-01-01T00:00:00Z".to_string()),
            ("subject".to_string(), "a b".to_string()),
        ]);
        job.schema_invalid = true;
        let outgoing = build(DeliveryFormat::CloudEvents, &job).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outgoing.body.as_ref(), br#"{"n":1}"#);
        assert_eq!(outgoing.content_type.as_deref(), Some("application/json"));
        assert_eq!(header(&outgoing, "ce-source"), Some("/shop"));
        assert_eq!(header(&outgoing, "ce-time"), Some("2024-01-01T00:00:00Z"));
        assert_eq!(header(&outgoing, "ce-subject"), Some("a%20b"));
        assert_eq!(header(&outgoing, SCHEMA_INVALID_HEADER), Some("true"));
        let standard = build(DeliveryFormat::Standard, &job).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(standard.body, job.payload, "standard keeps the envelope");
        assert_eq!(
            standard.content_type.as_deref(),
            Some("application/cloudevents+json")
        );
    }
}
