//! An event as the router reads it: id, type and content type from the subject and headers, or
//! from the CloudEvent it carries; its body parsed as JSON at most once, and only when needed.
//!
//! CloudEvents: binary mode (`ce-specversion`, `ce-id`, `ce-type`, `ce-source`, ... headers) or
//! structured mode (content type `application/cloudevents+json`). The CloudEvent's `type` is the
//! event type (routing, schemas, `webhook-event-type`) and its `id` the event id; the subject
//! still names the tenant. An event that claims to be a CloudEvent but is not a valid one keeps
//! the subject's type and is dead-lettered with reason `InvalidCloudEvent`.

use std::{collections::BTreeMap, sync::OnceLock};

use async_nats::HeaderMap;
use bytes::Bytes;
use jiff::Timestamp;
use serde_json::Value;

use super::job::Job;
use crate::model::{
    cloudevent::{self, CloudEvent},
    event_type::validate_event_type,
    filter::EventView,
};

pub const DEFAULT_CONTENT_TYPE: &str = "application/json";

/// One event read from the events stream.
pub struct Inbound<'a> {
    headers: Option<&'a HeaderMap>,
    payload: &'a Bytes,
    pub event_id: String,
    pub event_type: String,
    pub content_type: String,
    /// CloudEvents attributes besides id and type; plain events get a `source` naming the tenant.
    pub attributes: BTreeMap<String, String>,
    /// Why an event that claims to be a CloudEvent is not a valid one.
    pub invalid_cloudevent: Option<String>,
    json: bool,
    body: OnceLock<Result<Value, serde_json::Error>>,
}

/// Why `payload`, declared `content_type`, is not the JSON it claims to be (checked without
/// building a value); `None` when it is valid or not declared JSON. Routed events and re-sent
/// jobs are held to this same rule.
pub fn json_problem(content_type: &str, payload: &[u8]) -> Option<String> {
    if !cloudevent::is_json(content_type) {
        return None;
    }
    let error = serde_json::from_slice::<serde::de::IgnoredAny>(payload).err()?;
    Some(not_json(content_type, error))
}

fn not_json(content_type: &str, error: impl std::fmt::Display) -> String {
    format!("payload declared {content_type} is not valid JSON: {error}")
}

impl<'a> Inbound<'a> {
    /// Reads an event published to `events.<tenant>.<subject_type>`; `fallback_id` names it
    /// when neither `Nats-Msg-Id` nor a CloudEvent does. A structured CloudEvent over
    /// `max_payload_bytes` is not parsed: it is dead-lettered for its size anyway.
    pub fn read(
        tenant: &str,
        subject_type: &str,
        headers: Option<&'a HeaderMap>,
        payload: &'a Bytes,
        max_payload_bytes: usize,
        fallback_id: impl FnOnce() -> String,
    ) -> Self {
        let header = |name: &str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let binary = headers.and_then(|h| {
            cloudevent::from_headers(
                h.iter()
                    .filter_map(|(name, values)| Some((name.as_ref(), values.first()?.as_str()))),
            )
        });
        let declared = binary
            .as_ref()
            .and_then(|b| b.as_ref().ok())
            .and_then(|ce| ce.data_content_type.clone());
        let content_type = header("Content-Type")
            .or(declared)
            .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into());
        let mut event = Self {
            headers,
            payload,
            event_id: header(async_nats::header::NATS_MESSAGE_ID.as_ref())
                .unwrap_or_else(fallback_id),
            event_type: subject_type.to_owned(),
            json: cloudevent::is_json(&content_type),
            content_type,
            attributes: BTreeMap::from([("source".into(), format!("/namespaces/{tenant}"))]),
            invalid_cloudevent: None,
            body: OnceLock::new(),
        };
        let cloudevent = match binary {
            Some(result) => Some(result),
            // A structured event that is not JSON is dead-lettered as InvalidPayload.
            None if cloudevent::is_structured(&event.content_type)
                && payload.len() <= max_payload_bytes =>
            {
                event.body().map(cloudevent::from_structured)
            }
            None => None,
        };
        match cloudevent {
            None => {}
            Some(Ok(ce)) => event.adopt(ce),
            Some(Err(error)) => event.invalid_cloudevent = Some(error.to_string()),
        }
        event
    }

    fn adopt(&mut self, ce: CloudEvent) {
        if let Err(error) = validate_event_type(&ce.type_) {
            self.invalid_cloudevent = Some(format!(
                "CloudEvent type {:?} is not a valid event type: {error}",
                ce.type_
            ));
            return;
        }
        self.event_id = ce.id;
        self.event_type = ce.type_;
        self.attributes = ce.attributes;
    }

    /// Why a body declared JSON is not JSON. `need_value` parses it into the value filters and
    /// schemas read (so it is parsed once); otherwise it is only checked, which is cheaper.
    pub fn json_error(&self, need_value: bool) -> Option<String> {
        if !self.json {
            return None;
        }
        if need_value || self.body.get().is_some() {
            let error = self.parsed().as_ref().err()?;
            Some(not_json(&self.content_type, error))
        } else {
            json_problem(&self.content_type, self.payload)
        }
    }

    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    fn parsed(&self) -> &Result<Value, serde_json::Error> {
        self.body
            .get_or_init(|| serde_json::from_slice(self.payload))
    }

    /// The delivery job for this event.
    pub fn job(&self, published: Timestamp) -> Job {
        Job {
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            content_type: self.content_type.clone(),
            published,
            payload: self.payload.clone(),
            attributes: self.attributes.clone(),
            schema_invalid: false,
            resend: None,
        }
    }
}

impl EventView for Inbound<'_> {
    fn body(&self) -> Option<&Value> {
        if !self.json {
            return None;
        }
        self.parsed().as_ref().ok()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers?.iter().find_map(|(n, values)| {
            let n: &str = n.as_ref();
            n.eq_ignore_ascii_case(name)
                .then(|| values.first().map(|v| v.as_str()))
                .flatten()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, *value);
        }
        map
    }

    fn read<'a>(headers: Option<&'a HeaderMap>, payload: &'a Bytes) -> Inbound<'a> {
        Inbound::read("acme", "order.paid", headers, payload, 1 << 20, || {
            "evt_1".into()
        })
    }

    #[test]
    fn plain_events_take_subject_and_headers() {
        let payload = Bytes::from_static(br#"{"a":1}"#);
        let map = headers(&[("Nats-Msg-Id", "order-1"), ("X-Region", "eu-1")]);
        let event = read(Some(&map), &payload);
        assert_eq!(event.event_id, "order-1");
        assert_eq!(event.event_type, "order.paid");
        assert_eq!(event.content_type, DEFAULT_CONTENT_TYPE);
        assert_eq!(event.attributes["source"], "/namespaces/acme");
        assert_eq!(event.header("x-region"), Some("eu-1"));
        assert_eq!(event.body().and_then(|b| b["a"].as_i64()), Some(1));
        assert_eq!(read(None, &payload).event_id, "evt_1");
    }

    #[test]
    fn binary_cloudevents_name_type_and_id() {
        let payload = Bytes::from_static(b"hello");
        let map = headers(&[
            ("Nats-Msg-Id", "nats-1"),
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-1"),
            ("ce-type", "com.example.order.paid"),
            ("ce-source", "/shop"),
            ("ce-subject", "order/1"),
            ("ce-datacontenttype", "text/plain"),
        ]);
        let event = read(Some(&map), &payload);
        assert_eq!(event.invalid_cloudevent, None);
        assert_eq!(event.event_id, "ce-1");
        assert_eq!(event.event_type, "com.example.order.paid");
        assert_eq!(event.content_type, "text/plain");
        assert_eq!(event.attributes["source"], "/shop");
        assert_eq!(event.attributes["subject"], "order/1");
        assert!(event.body().is_none(), "text is not JSON");
        assert_eq!(event.json_error(true), None);
    }

    #[test]
    fn structured_cloudevents_are_parsed_once() {
        let payload = Bytes::from_static(
            br#"{"specversion":"1.0","id":"ce-2","type":"order.shipped","source":"/shop","data":{"n":2}}"#,
        );
        let map = headers(&[("Content-Type", "application/cloudevents+json")]);
        let event = read(Some(&map), &payload);
        assert_eq!(event.event_id, "ce-2");
        assert_eq!(event.event_type, "order.shipped");
        assert!(event.body.get().is_some(), "parsed while reading");
        assert_eq!(event.json_error(false), None);
        assert_eq!(event.body().map(|b| b["data"]["n"].clone()), Some(2.into()));
    }

    #[test]
    fn broken_cloudevents_keep_the_subject_type() {
        let payload = Bytes::from_static(b"{}");
        let missing = headers(&[("ce-specversion", "1.0"), ("ce-id", "1")]);
        let event = read(Some(&missing), &payload);
        assert_eq!(event.event_type, "order.paid");
        assert!(
            event
                .invalid_cloudevent
                .as_deref()
                .is_some_and(|e| e.contains("type"))
        );
        let wildcard = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-type", "order.*"),
            ("ce-source", "/s"),
        ]);
        let event = read(Some(&wildcard), &payload);
        assert!(
            event
                .invalid_cloudevent
                .as_deref()
                .is_some_and(|e| e.contains("not a valid event type")),
            "{:?}",
            event.invalid_cloudevent
        );
        let not_json = Bytes::from_static(b"{oops");
        let structured = headers(&[("Content-Type", "application/cloudevents+json")]);
        let event = read(Some(&structured), &not_json);
        assert_eq!(event.invalid_cloudevent, None);
        assert!(event.json_error(false).is_some());
    }
}
