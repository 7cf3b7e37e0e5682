//! The EventSubscription reconciler: validation into the Ready condition, and its tenant's
//! routes; on deletion, its routes go.

use std::{sync::Arc, time::Duration};

use jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
    },
};
use serde_json::json;

use super::{
    conditions::{Desired, READY},
    context::Context,
    endpoint::FINALIZER,
    error::Error,
    tenant::{self, MANAGER},
};
use crate::resources::EventSubscription;

pub async fn reconcile(
    subscription: Arc<EventSubscription>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = subscription
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(subscription.name_any()))?;
    let key = format!("EventSubscription/{namespace}/{}", subscription.name_any());
    let api: Api<EventSubscription> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, subscription, |event| async {
        let report = ctx.compile(&namespace, Default::default());
        match event {
            Finalizer::Apply(subscription) => {
                let desired = match report.subscriptions.get(&subscription.name_any()) {
                    Some(Err(problem)) => {
                        Desired::new(READY, false, problem.reason, problem.message.clone())
                    }
                    _ => Desired::new(
                        READY,
                        true,
                        "Active",
                        "Routing matching events to the endpoint.",
                    ),
                };
                write_ready(&subscription, &namespace, &desired, &ctx).await?;
                tenant::sync(&ctx, &namespace, &report).await?;
                Ok(Action::requeue(Duration::from_secs(300)))
            }
            Finalizer::Cleanup(_) => {
                tenant::sync(&ctx, &namespace, &report).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
    .inspect(|_| ctx.reset_backoff(&key))
}

async fn write_ready(
    subscription: &EventSubscription,
    namespace: &str,
    desired: &Desired,
    ctx: &Context,
) -> Result<(), Error> {
    let status = subscription.status.clone().unwrap_or_default();
    let generation = subscription.metadata.generation;
    if desired.is_current(&status.conditions, generation)
        && status.observed_generation == generation
    {
        return Ok(());
    }
    let flipped = super::conditions::find(&status.conditions, READY).map(|c| c.status.as_str())
        != Some(desired.status);
    let condition = desired.to_condition(&status.conditions, generation, Timestamp::now());
    let patch = json!({
        "apiVersion": "webhook-operator.io/v1alpha1",
        "kind": "EventSubscription",
        "status": { "observedGeneration": generation, "conditions": [condition] }
    });
    let api: Api<EventSubscription> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &subscription.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    if flipped && desired.status == "False" {
        ctx.publish_event(
            subscription,
            true,
            desired.reason.as_str(),
            desired.message.clone(),
        )
        .await;
    }
    Ok(())
}

pub fn error_policy(
    subscription: Arc<EventSubscription>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = format!(
        "EventSubscription/{}/{}",
        subscription.namespace().unwrap_or_default(),
        subscription.name_any()
    );
    let delay = ctx.backoff(&key);
    tracing::warn!(object = %key, category = error.category(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
