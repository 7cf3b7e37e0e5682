//! The `webhook-operator.io/enable` annotation: re-enables an auto-disabled endpoint.
//!
//! Acted on once per value: the value handled is recorded in `status.lastEnable`, and a value
//! that differs from it is a new request. The reconciler's watch lets a change of this
//! annotation through (see [`super::replay::operator_annotations`]), while status writes still do not trigger it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{context::Context, error::Error, replay::unhandled};
use crate::{
    model::EndpointKey,
    resources::{WebhookEndpoint, webhook_endpoint::LastEnable},
};

pub const ENABLE_ANNOTATION: &str = "webhook-operator.io/enable";
/// Field manager of `status.lastEnable` (its own, so applying it leaves other status fields be).
pub const ENABLE_MANAGER: &str = "webhook-operator-enable";

/// The annotation value not yet acted on, if any.
pub fn pending_request(endpoint: &WebhookEndpoint) -> Option<&str> {
    let handled = endpoint
        .status
        .as_ref()
        .and_then(|s| s.last_enable.as_ref());
    unhandled(
        endpoint,
        ENABLE_ANNOTATION,
        handled.map(|last| last.requested.as_str()),
    )
}

/// Re-enables the endpoint when its annotation asks for it, and records that in status.
pub async fn act_on_annotation(
    endpoint: &WebhookEndpoint,
    namespace: &str,
    ctx: &Context,
) -> Result<(), Error> {
    let Some(value) = pending_request(endpoint) else {
        return Ok(());
    };
    let name = endpoint.name_any();
    let was_disabled = ctx
        .routes
        .enable_endpoint(EndpointKey::new(namespace, &name))
        .await?;
    let record = LastEnable {
        requested: value.to_owned(),
        time: Time(Timestamp::now()),
        was_disabled,
    };
    ctx.record_request(endpoint, "lastEnable", &record, ENABLE_MANAGER)
        .await?;
    tracing::info!(endpoint = %format!("{namespace}/{name}"), was_disabled, "re-enable requested by annotation {ENABLE_ANNOTATION}");
    Ok(())
}
