//! The `webhook-operator.io/enable` annotation: re-enables an auto-disabled endpoint.
//!
//! Acted on once per value: the value handled is recorded in `status.lastEnable`, and a value
//! that differs from it is a new request. The reconciler's watch lets a change of this
//! annotation through (see [`super::replay::operator_annotations`]), while status writes still do not trigger it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{context::Context, error::Error};
use crate::{
    model::EndpointKey,
    resources::{WebhookEndpoint, webhook_endpoint::LastEnable},
};

pub const ENABLE_ANNOTATION: &str = "webhook-operator.io/enable";
/// Field manager of `status.lastEnable` (its own, so applying it leaves other status fields be).
pub const ENABLE_MANAGER: &str = "webhook-operator-enable";

/// The annotation value not yet acted on, if any.
pub fn pending_request(endpoint: &WebhookEndpoint) -> Option<&str> {
    let value = endpoint.annotations().get(ENABLE_ANNOTATION)?;
    let done = endpoint
        .status
        .as_ref()
        .and_then(|s| s.last_enable.as_ref())
        .is_some_and(|last| last.requested == *value);
    (!done).then_some(value.as_str())
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
    let patch = json!({
        "apiVersion": "webhook-operator.io/v1alpha1",
        "kind": "WebhookEndpoint",
        "status": { "lastEnable": record },
    });
    let api: Api<WebhookEndpoint> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &name,
        &PatchParams::apply(ENABLE_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    tracing::info!(endpoint = %format!("{namespace}/{name}"), was_disabled, "re-enable requested by annotation {ENABLE_ANNOTATION}");
    Ok(())
}
