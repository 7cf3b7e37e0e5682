//! The audit trail of the tenant API: one record per change, and per read of signing keys,
//! attempted with a valid key (who = key id and tenant, what, when, result), as a tracing line
//! (target `audit`) and in the JetStream stream `WEBHOOK_AUDIT` (subject
//! `webhook.audit.<tenant>`). Never an API key, never a signing key.

use std::time::Duration;

use async_nats::jetstream;
use futures::{FutureExt, future::BoxFuture};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::dataplane::{publisher::publish_durably, topology::audit_subject};

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Create,
    Replace,
    Delete,
    /// An endpoint's signing keys were asked for.
    ReadSecret,
    /// An endpoint's signing key was rotated.
    RotateSecret,
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused because of the request (invalid, not found, conflict).
    Rejected,
    /// Not done because of the system (store unavailable).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub time: Timestamp,
    pub tenant: String,
    pub key_id: String,
    pub action: Action,
    pub kind: String,
    /// Empty when the body was unreadable.
    pub name: String,
    pub outcome: Outcome,
    /// The HTTP status answered.
    pub status: u16,
    /// Why it was refused (e.g. `InvalidUrl`, `NotFound`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where audit records go.
pub trait AuditSink: Send + Sync {
    fn record(&self, record: AuditRecord) -> BoxFuture<'_, ()>;
}

/// The tracing line, then the stream.
pub struct JetStreamAudit {
    pub js: jetstream::Context,
}

/// Attempts to store a record before giving up (the tracing line stays).
const ATTEMPTS: u32 = 3;

impl AuditSink for JetStreamAudit {
    fn record(&self, record: AuditRecord) -> BoxFuture<'_, ()> {
        async move {
            log(&record);
            let payload = match serde_json::to_vec(&record) {
                Ok(payload) => bytes::Bytes::from(payload),
                Err(error) => {
                    tracing::error!(target: "audit", %error, "could not encode an audit record");
                    return;
                }
            };
            for attempt in 1..=ATTEMPTS {
                match publish_durably(&self.js, audit_subject(&record.tenant), None, payload.clone())
                    .await
                {
                    Ok(()) => return,
                    Err(error) if attempt == ATTEMPTS => {
                        tracing::error!(target: "audit", %error, tenant = %record.tenant, "audit record not stored in the stream (it is in this log)");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await,
                }
            }
        }
        .boxed()
    }
}

/// The tracing line, written for every record whatever happens to the stream.
pub fn log(record: &AuditRecord) {
    let what = match record.action {
        Action::ReadSecret => "tenant API read of signing keys",
        _ => "tenant API change",
    };
    tracing::info!(
        target: "audit",
        tenant = %record.tenant,
        key_id = %record.key_id,
        action = ?record.action,
        kind = %record.kind,
        name = %record.name,
        outcome = ?record.outcome,
        status = record.status,
        reason = record.reason.as_deref().unwrap_or(""),
        "{what}"
    );
}
