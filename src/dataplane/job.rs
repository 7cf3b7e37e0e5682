//! Delivery jobs and dead letters as JetStream messages.
//!
//! The payload travels as the message body, unchanged; the event's metadata travels in headers,
//! so a job never needs re-encoding and a dead letter can be replayed as it is.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;
use jiff::Timestamp;

pub const EVENT_ID: &str = "Webhook-Event-Id";
pub const EVENT_TYPE: &str = "Webhook-Event-Type";
pub const PUBLISHED: &str = "Webhook-Published";
pub const CONTENT_TYPE: &str = "Content-Type";
pub const DEAD_REASON: &str = "Webhook-Dead-Reason";
pub const DEAD_MESSAGE: &str = "Webhook-Dead-Message";
pub const DEAD_STATUS: &str = "Webhook-Dead-Status";
pub const DEAD_ATTEMPTS: &str = "Webhook-Dead-Attempts";
pub const DEAD_TIME: &str = "Webhook-Dead-Time";
pub const RESEND_ID: &str = "Webhook-Resend-Id";
pub const EVENT_PUBLISHED: &str = "Webhook-Event-Published";
/// On an event: deliver it to this one endpoint of the tenant instead of its subscribers
/// (how send-test reaches exactly one endpoint).
pub const TARGET_ENDPOINT: &str = "Webhook-Target-Endpoint";
pub const SCHEMA_INVALID: &str = "Webhook-Schema-Invalid";
/// Prefix of the headers carrying CloudEvents attributes (`Ce-Source`, `Ce-Time`, ...).
pub const ATTRIBUTE_PREFIX: &str = "Ce-";

/// One event on its way to one endpoint.
#[derive(Debug, Clone)]
pub struct Job {
    pub event_id: String,
    pub event_type: String,
    pub content_type: String,
    /// When the event reached the events stream, or when it was re-sent; retry age and
    /// latency count from here.
    pub published: Timestamp,
    pub payload: Bytes,
    /// CloudEvents attributes besides id and type (`source`, `time`, `subject`, extensions).
    pub attributes: BTreeMap<String, String>,
    /// The payload failed its event type's schema and is delivered anyway (`onInvalid: deliver`).
    pub schema_invalid: bool,
    /// Set on a job re-sent by replay or redeliver.
    pub resend: Option<Resend>,
}

/// What sets a re-sent job apart from the event's first job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resend {
    /// Part of the job's (and its dead letter's) message id, which would otherwise repeat the
    /// first job's and be dropped as a duplicate within the deduplication window.
    pub id: String,
    /// When the event itself was published.
    pub event_published: Timestamp,
}

#[derive(Debug, thiserror::Error)]
#[error("delivery job is missing header {0}")]
pub struct MissingHeader(&'static str);

impl Job {
    /// Headers of the job message. `Nats-Msg-Id` makes re-publication by a restarted router a no-op.
    pub fn headers(&self, endpoint: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let message_id = match &self.resend {
            None => format!("{}:{endpoint}", self.event_id),
            Some(resend) => format!("{}:{endpoint}:{}", self.event_id, resend.id),
        };
        headers.insert(async_nats::header::NATS_MESSAGE_ID, message_id.as_str());
        headers.insert(EVENT_ID, self.event_id.as_str());
        headers.insert(EVENT_TYPE, self.event_type.as_str());
        headers.insert(CONTENT_TYPE, self.content_type.as_str());
        headers.insert(PUBLISHED, self.published.to_string().as_str());
        for (name, value) in &self.attributes {
            headers.insert(format!("{ATTRIBUTE_PREFIX}{name}").as_str(), value.as_str());
        }
        if self.schema_invalid {
            headers.insert(SCHEMA_INVALID, "true");
        }
        if let Some(resend) = &self.resend {
            headers.insert(RESEND_ID, resend.id.as_str());
            headers.insert(EVENT_PUBLISHED, resend.event_published.to_string().as_str());
        }
        headers
    }

    /// When the event was published, whether or not this job is a re-send.
    pub fn event_published(&self) -> Timestamp {
        self.resend
            .as_ref()
            .map_or(self.published, |r| r.event_published)
    }

    /// This job sent again: its clock (`maxAge`, latency) restarts at `now`, and `resend_id`
    /// gives it message ids of its own.
    pub fn resent(&self, resend_id: String, now: Timestamp) -> Self {
        Self {
            published: now,
            resend: Some(Resend {
                id: resend_id,
                event_published: self.event_published(),
            }),
            ..self.clone()
        }
    }

    pub fn from_message(
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<Self, MissingHeader> {
        let get = |name: &'static str| {
            headers
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
                .ok_or(MissingHeader(name))
        };
        Ok(Self {
            event_id: get(EVENT_ID)?,
            event_type: get(EVENT_TYPE)?,
            content_type: get(CONTENT_TYPE)?,
            published: get(PUBLISHED)?
                .parse()
                .map_err(|_| MissingHeader(PUBLISHED))?,
            payload,
            resend: match get(RESEND_ID) {
                Ok(id) => Some(Resend {
                    id,
                    event_published: get(EVENT_PUBLISHED)?
                        .parse()
                        .map_err(|_| MissingHeader(EVENT_PUBLISHED))?,
                }),
                Err(_) => None,
            },
            attributes: headers.map(attributes).unwrap_or_default(),
            schema_invalid: headers
                .and_then(|h| h.get(SCHEMA_INVALID))
                .is_some_and(|v| v.as_str() == "true"),
        })
    }
}

fn attributes(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter_map(|(name, values)| {
            let name: &str = name.as_ref();
            let attribute = name
                .get(..ATTRIBUTE_PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(ATTRIBUTE_PREFIX))
                .map(|_| name[ATTRIBUTE_PREFIX.len()..].to_ascii_lowercase())?;
            Some((attribute, values.first()?.as_str().to_owned()))
        })
        .collect()
}

/// Why an event was given up on for an endpoint.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: String,
    pub message: String,
    pub status_code: Option<u16>,
    pub attempts: u32,
    pub time: Timestamp,
}

impl DeadLetter {
    /// Headers of the dead-letter message: the job's own plus the last failure.
    pub fn headers(&self, job: &Job, endpoint: &str) -> HeaderMap {
        let mut headers = job.headers(endpoint);
        headers.insert(DEAD_REASON, self.reason.as_str());
        headers.insert(DEAD_MESSAGE, sanitize_header(&self.message).as_str());
        if let Some(status) = self.status_code {
            headers.insert(DEAD_STATUS, status.to_string().as_str());
        }
        headers.insert(DEAD_ATTEMPTS, self.attempts.to_string().as_str());
        headers.insert(DEAD_TIME, self.time.to_string().as_str());
        headers
    }
}

/// Header values cannot carry line breaks; messages come from remote servers.
fn sanitize_header(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event `msg_1` of type `order.paid`, as first routed.
    fn order_paid() -> Job {
        Job {
            event_id: "msg_1".into(),
            event_type: "order.paid".into(),
            content_type: "application/json".into(),
            published: Timestamp::from_second(1_700_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
            payload: Bytes::from_static(b"{}"),
            attributes: BTreeMap::new(),
            schema_invalid: false,
            resend: None,
        }
    }

    #[test]
    fn job_round_trips_through_headers() {
        let job = Job {
            attributes: BTreeMap::from([
                ("source".to_string(), "/shop".to_string()),
                ("traceparent".to_string(), "00-1-01".to_string()),
            ]),
            schema_invalid: true,
            ..order_paid()
        };
        let headers = job.headers("orders");
        assert_eq!(
            headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some("msg_1:orders")
        );
        let back = Job::from_message(Some(&headers), job.payload.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.event_id, job.event_id);
        assert_eq!(back.published, job.published);
        assert_eq!(back.attributes, job.attributes);
        assert!(back.schema_invalid);
        assert!(Job::from_message(None, Bytes::new()).is_err());
    }

    #[test]
    fn a_resent_job_has_its_own_message_id_and_keeps_the_publication_time() {
        let job = order_paid();
        let now = Timestamp::from_second(1_700_100_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let again = job
            .resent("replay-7".into(), now)
            .resent("replay-9".into(), now);
        let headers = again.headers("orders");
        assert_eq!(
            headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str()),
            Some("msg_1:orders:replay-9")
        );
        let back = Job::from_message(Some(&headers), again.payload.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.published, now, "the retry clock restarts");
        assert_eq!(back.event_published(), job.published);
        assert_eq!(back.event_id, "msg_1", "the webhook-id stays");
    }
}
