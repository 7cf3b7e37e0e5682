//! The EventSubscription reconciler: validation into the Ready condition, and its tenant's
//! routes; on deletion, its routes go.

use std::{sync::Arc, time::Duration};

use kube::{
    Api, ResourceExt,
    runtime::{
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
    },
};

use super::{
    conditions::{Desired, READY},
    context::{Context, backoff_key},
    endpoint::FINALIZER,
    error::Error,
    event_type::{desired_catalog, write_catalog},
    tenant,
};
use crate::resources::EventSubscription;

pub async fn reconcile(
    subscription: Arc<EventSubscription>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = subscription
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(subscription.name_any()))?;
    let key = backoff_key(subscription.as_ref());
    ctx.stores.ready().await?;
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
                let status = subscription.status.clone().unwrap_or_default();
                ctx.write_ready_and_warn(
                    subscription.as_ref(),
                    &status.conditions,
                    status.observed_generation,
                    &desired,
                )
                .await?;
                let catalog = desired_catalog(&report, &subscription.name_any());
                write_catalog(&subscription, catalog.as_ref(), &ctx).await?;
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

pub fn error_policy(
    subscription: Arc<EventSubscription>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    ctx.requeue_after_error(subscription.as_ref(), error)
}
