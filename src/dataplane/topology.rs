//! JetStream names and the idempotent creation of streams and buckets at start-up.
//!
//! | what            | kind      | name / subjects                                   |
//! |-----------------|-----------|---------------------------------------------------|
//! | events          | stream    | `WEBHOOK_EVENTS` on `events.>`                    |
//! | delivery jobs   | stream    | `WEBHOOK_JOBS` on `webhook.jobs.<tenant>.<ep>` (work queue) |
//! | dead letters    | stream    | `WEBHOOK_DEAD_LETTERS` on `webhook.dead.<tenant>.<ep>` |
//! | attempt log     | stream    | `WEBHOOK_ATTEMPTS` on `webhook.attempts.<tenant>.<ep>` |
//! | tenant API audit | stream   | `WEBHOOK_AUDIT` on `webhook.audit.<tenant>` (90 d)  |
//! | routes          | KV bucket | `webhook-routes`, key `<tenant>`                  |
//! | counters        | KV bucket | `webhook-stats`, key `<tenant>.<ep>`              |
//! | event index     | KV bucket | `webhook-event-index`, key `<tenant>.<base64url(event id)>`, kept as long as events |
//!
//! | consumer        | on stream        | name                  | filter / settings                  |
//! |-----------------|------------------|-----------------------|------------------------------------|
//! | routers         | `WEBHOOK_EVENTS` | `router`              | all events                          |
//! | endpoint jobs   | `WEBHOOK_JOBS`   | `deliver_<tenant>_<ep>` | `webhook.jobs.<tenant>.<ep>`; memory state, removed after 1 h unused |
//! | FIFO queue      | `WEBHOOK_EVENTS` | `fifo_<tenant>_<ep>`  | `events.<tenant>.>`; file state, never expires: it *is* the queue (see [`super::fifo_queue`]) |
//! | stats folder    | `WEBHOOK_ATTEMPTS` | `stats`             | the attempt log                     |
//!
//! `<ep>` is the endpoint name with `.` replaced by `_` (Kubernetes names never contain `_`,
//! NATS tokens never contain `.`), so the mapping is one-to-one.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::model::EndpointKey;

pub const EVENTS_STREAM: &str = "WEBHOOK_EVENTS";
pub const JOBS_STREAM: &str = "WEBHOOK_JOBS";
pub const DEAD_LETTER_STREAM: &str = "WEBHOOK_DEAD_LETTERS";
pub const ATTEMPTS_STREAM: &str = "WEBHOOK_ATTEMPTS";
pub const AUDIT_STREAM: &str = "WEBHOOK_AUDIT";
pub const ROUTES_BUCKET: &str = "webhook-routes";
pub const STATS_BUCKET: &str = "webhook-stats";
pub const EVENT_INDEX_BUCKET: &str = "webhook-event-index";
/// Durable consumer shared by every router replica.
pub const ROUTER_CONSUMER: &str = "router";
/// Durable consumer of the single stats folder.
pub const STATS_CONSUMER: &str = "stats";

pub const EVENTS_PREFIX: &str = "events";

/// Deduplication window of jobs and dead letters. Their ids only repeat when a router or a
/// delivery process re-publishes after a restart, within its ack deadline (seconds), so this
/// stays short: every id in the window costs the server memory.
const INTERNAL_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Retention and replication settings; defaults suit a single server.
#[derive(Debug, Clone)]
pub struct TopologySettings {
    pub replicas: usize,
    pub events_max_age: Duration,
    pub duplicate_window: Duration,
    pub jobs_max_age: Duration,
    pub dead_letter_max_age: Duration,
    pub attempts_max_age: Duration,
    pub attempts_max_bytes: i64,
    pub audit_max_age: Duration,
    /// Largest message the streams accept; payloads above the delivery limit are still
    /// stored so they can be dead-lettered with a reason instead of refused at publish.
    pub max_message_size: i32,
}

impl Default for TopologySettings {
    fn default() -> Self {
        Self {
            replicas: 1,
            events_max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(2 * 60),
            jobs_max_age: Duration::from_secs(14 * 24 * 3600),
            dead_letter_max_age: Duration::from_secs(30 * 24 * 3600),
            attempts_max_age: Duration::from_secs(7 * 24 * 3600),
            attempts_max_bytes: 1 << 30,
            audit_max_age: Duration::from_secs(90 * 24 * 3600),
            max_message_size: -1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("creating or updating stream {name}: {source}")]
    Stream {
        name: &'static str,
        source: jetstream::context::CreateStreamError,
    },
    #[error("creating or updating key-value bucket {name}: {source}")]
    Bucket {
        name: &'static str,
        source: jetstream::context::CreateKeyValueError,
    },
}

/// Handles to the buckets every role uses.
#[derive(Clone)]
pub struct Topology {
    pub routes: kv::Store,
    pub stats: kv::Store,
    pub event_index: kv::Store,
}

/// Who may change stream settings. One process owns them (the controller, or local mode);
/// routers and delivery processes only create what is missing, so a replica started with
/// different flags can never, say, scale a replicated stream back down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authority {
    Owner,
    Joiner,
}

/// Creates every missing stream and bucket, and (as [`Authority::Owner`]) updates the settings
/// of existing ones. Safe to run concurrently from several processes.
pub async fn ensure(
    js: &jetstream::Context,
    settings: &TopologySettings,
    authority: Authority,
) -> Result<Topology, TopologyError> {
    let streams = [
        stream::Config {
            name: EVENTS_STREAM.into(),
            subjects: vec![format!("{EVENTS_PREFIX}.>")],
            max_age: settings.events_max_age,
            duplicate_window: settings.duplicate_window,
            max_message_size: settings.max_message_size,
            ..base_stream(settings)
        },
        stream::Config {
            name: JOBS_STREAM.into(),
            subjects: vec!["webhook.jobs.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_age: settings.jobs_max_age,
            duplicate_window: INTERNAL_DUPLICATE_WINDOW,
            ..base_stream(settings)
        },
        stream::Config {
            name: DEAD_LETTER_STREAM.into(),
            subjects: vec!["webhook.dead.>".into()],
            max_age: settings.dead_letter_max_age,
            duplicate_window: INTERNAL_DUPLICATE_WINDOW,
            ..base_stream(settings)
        },
        stream::Config {
            name: ATTEMPTS_STREAM.into(),
            subjects: vec!["webhook.attempts.>".into()],
            max_age: settings.attempts_max_age,
            max_bytes: settings.attempts_max_bytes,
            ..base_stream(settings)
        },
        stream::Config {
            name: AUDIT_STREAM.into(),
            subjects: vec!["webhook.audit.>".into()],
            max_age: settings.audit_max_age,
            ..base_stream(settings)
        },
    ];
    for config in streams {
        let name = stream_name(&config.name);
        match authority {
            Authority::Owner => js.create_or_update_stream(config).await.map(drop),
            Authority::Joiner => js.get_or_create_stream(config).await.map(drop),
        }
        .map_err(|source| TopologyError::Stream { name, source })?;
    }
    let bucket = |name: &'static str, history, max_age| kv::Config {
        bucket: name.into(),
        history,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    let open = |name: &'static str, history, max_age| async move {
        if authority == Authority::Joiner
            && let Ok(store) = js.get_key_value(name).await
        {
            return Ok(store);
        }
        js.create_or_update_key_value(bucket(name, history, max_age))
            .await
            .map_err(|source| TopologyError::Bucket { name, source })
    };
    let routes = open(ROUTES_BUCKET, 5, Duration::ZERO).await?;
    let stats = open(STATS_BUCKET, 1, Duration::ZERO).await?;
    // An event can be looked up for as long as it is kept.
    let event_index = open(EVENT_INDEX_BUCKET, 1, settings.events_max_age).await?;
    Ok(Topology {
        routes,
        stats,
        event_index,
    })
}

fn base_stream(settings: &TopologySettings) -> stream::Config {
    stream::Config {
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        allow_direct: true,
        ..Default::default()
    }
}

fn stream_name(name: &str) -> &'static str {
    [
        EVENTS_STREAM,
        JOBS_STREAM,
        DEAD_LETTER_STREAM,
        ATTEMPTS_STREAM,
        AUDIT_STREAM,
    ]
    .into_iter()
    .find(|n| *n == name)
    .unwrap_or("unknown")
}

/// Subject token for an endpoint name (see the module docs).
pub fn endpoint_token(name: &str) -> String {
    name.replace('.', "_")
}

pub fn event_subject(tenant: &str, event_type: &str) -> String {
    format!("{EVENTS_PREFIX}.{tenant}.{event_type}")
}

/// Splits `events.<tenant>.<event-type>`; `None` when there is no event type.
pub fn parse_event_subject(subject: &str) -> Option<(&str, &str)> {
    let rest = subject.strip_prefix(EVENTS_PREFIX)?.strip_prefix('.')?;
    let (tenant, event_type) = rest.split_once('.')?;
    (!tenant.is_empty() && !event_type.is_empty()).then_some((tenant, event_type))
}

pub fn job_subject(key: &EndpointKey) -> String {
    format!("webhook.jobs.{}.{}", key.tenant, endpoint_token(&key.name))
}

pub fn dead_letter_subject(key: &EndpointKey) -> String {
    format!("webhook.dead.{}.{}", key.tenant, endpoint_token(&key.name))
}

pub fn attempt_subject(key: &EndpointKey) -> String {
    format!(
        "webhook.attempts.{}.{}",
        key.tenant,
        endpoint_token(&key.name)
    )
}

/// Audit records of the tenant API for one tenant.
pub fn audit_subject(tenant: &str) -> String {
    format!("webhook.audit.{tenant}")
}

/// Inverse of [`attempt_subject`].
pub fn endpoint_from_attempt_subject(subject: &str) -> Option<EndpointKey> {
    let rest = subject.strip_prefix("webhook.attempts.")?;
    let (tenant, token) = rest.split_once('.')?;
    Some(EndpointKey::new(tenant, token.replace('_', ".")))
}

pub fn stats_key(key: &EndpointKey) -> String {
    format!("{}.{}", key.tenant, endpoint_token(&key.name))
}

/// Inverse of [`stats_key`].
pub fn endpoint_from_stats_key(stats_key: &str) -> Option<EndpointKey> {
    let (tenant, token) = stats_key.split_once('.')?;
    Some(EndpointKey::new(tenant, token.replace('_', ".")))
}

/// Durable consumer for one endpoint's jobs, shared by every delivery replica of its tenant.
pub fn delivery_consumer(key: &EndpointKey) -> String {
    format!("deliver_{}_{}", key.tenant, endpoint_token(&key.name))
}

/// The FIFO queue of one endpoint: its durable consumer on the events stream.
pub fn fifo_consumer(key: &EndpointKey) -> String {
    format!("fifo_{}_{}", key.tenant, endpoint_token(&key.name))
}

/// What a tenant's FIFO queues read: every event of the tenant (see [`super::fifo_queue`]).
pub fn tenant_events(tenant: &str) -> String {
    format!("{EVENTS_PREFIX}.{tenant}.>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_dotted_names() {
        let key = EndpointKey::new("acme", "orders.v2");
        assert_eq!(job_subject(&key), "webhook.jobs.acme.orders_v2");
        assert_eq!(
            endpoint_from_attempt_subject(&attempt_subject(&key)),
            Some(key.clone())
        );
        assert_eq!(endpoint_from_stats_key(&stats_key(&key)), Some(key.clone()));
        assert_eq!(delivery_consumer(&key), "deliver_acme_orders_v2");
        assert_eq!(fifo_consumer(&key), "fifo_acme_orders_v2");
        assert_eq!(tenant_events("acme"), "events.acme.>");
    }

    #[test]
    fn event_subjects() {
        assert_eq!(
            parse_event_subject("events.acme.order.paid"),
            Some(("acme", "order.paid"))
        );
        assert_eq!(parse_event_subject("events.acme"), None);
        assert_eq!(parse_event_subject("events..x"), None);
        assert_eq!(parse_event_subject("other.acme.x"), None);
    }
}
