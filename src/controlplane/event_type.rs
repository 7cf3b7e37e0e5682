//! The EventType reconciler and the catalogue condition of subscriptions.
//!
//! An EventType gets a `Ready` condition (reasons `Active`, `InvalidSchema`,
//! `DuplicateEventType`, `InvalidEventType`) and its namespace's routes are re-synced, since they
//! carry the schemas. A subscription gets `EventTypesCatalogued` when its namespace has a
//! catalogue: written by a field manager of its own, so the `Ready` writer never removes it and
//! applying an empty list removes it once the namespace's last EventType is gone.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;

use super::{
    conditions::{self, Desired, READY},
    context::{Context, backoff_key},
    error::Error,
    tenant,
};
use crate::resources::{EventSubscription, EventType, compile::CompiledTenantReport};

/// Condition type on subscriptions: are their event types catalogued and current?
pub const CATALOGUED: &str = "EventTypesCatalogued";
/// Field manager of that condition.
pub const CATALOG_MANAGER: &str = "webhook-operator-catalog";
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(event_type: Arc<EventType>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = event_type
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(event_type.name_any()))?;
    let key = backoff_key(event_type.as_ref());
    ctx.stores.ready().await?;
    let report = ctx.compile(&namespace, Default::default());
    let desired = match report.event_types.get(&event_type.name_any()) {
        Some(Err(problem)) => Desired::new(READY, false, problem.reason, problem.message.clone()),
        _ => Desired::new(
            READY,
            true,
            "Active",
            "Catalogued: subscriptions are checked against it and payloads against its schema.",
        ),
    };
    let status = event_type.status.clone().unwrap_or_default();
    ctx.write_ready_and_warn(
        event_type.as_ref(),
        &status.conditions,
        status.observed_generation,
        &desired,
    )
    .await?;
    tenant::sync(&ctx, &namespace, &report).await?;
    ctx.reset_backoff(&key);
    Ok(Action::requeue(RESYNC))
}

pub fn error_policy(event_type: Arc<EventType>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.requeue_after_error(event_type.as_ref(), error)
}

/// The catalogue condition a subscription should show; `None` without a catalogue.
pub fn desired_catalog(report: &CompiledTenantReport, subscription: &str) -> Option<Desired> {
    let verdict = report.catalog.as_ref()?.get(subscription)?;
    Some(match verdict {
        Ok(()) => Desired::new(
            CATALOGUED,
            true,
            "Catalogued",
            "Every event type is declared by a current EventType.",
        ),
        Err(problem) => Desired::new(CATALOGUED, false, problem.reason, problem.message.clone()),
    })
}

/// Brings the catalogue condition in line with `desired`, writing only on change; raises a
/// Warning when it turns False.
pub async fn write_catalog(
    subscription: &EventSubscription,
    desired: Option<&Desired>,
    ctx: &Context,
) -> Result<(), Error> {
    let current = subscription
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let generation = subscription.meta().generation;
    let shown = conditions::find(current, CATALOGUED);
    let conditions = match desired {
        None if shown.is_none() => return Ok(()),
        Some(d) if d.is_current(current, generation) => return Ok(()),
        None => json!([]),
        Some(d) => json!([d.to_condition(current, generation, Timestamp::now())]),
    };
    let patch = json!({
        "apiVersion": EventSubscription::api_version(&()),
        "kind": EventSubscription::kind(&()),
        "status": { "conditions": conditions },
    });
    let namespace = subscription.namespace().unwrap_or_default();
    let api: Api<EventSubscription> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &subscription.name_any(),
        &PatchParams::apply(CATALOG_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    if let Some(d) = desired
        && d.status == "False"
        && shown.is_none_or(|c| c.status != "False" || c.reason != d.reason)
    {
        ctx.publish_event(subscription, true, d.reason.as_str(), d.message.clone())
            .await;
    }
    Ok(())
}
