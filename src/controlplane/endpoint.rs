//! The WebhookEndpoint reconciler: signing Secret, validation into the Ready condition, routes
//! and workload of its tenant, a requested dead-letter replay, signing key rotation and the
//! expiry of previous keys; on deletion, its routes and queued jobs go.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    ByteString, api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{ObjectMeta, PostParams},
    runtime::{
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
    },
};
use serde_json::json;

use super::{
    conditions::{Desired, READY},
    context::{Context, backoff_key, created_secret},
    enable,
    error::Error,
    replay, rotate,
    tenant::{self, MANAGER},
};
use crate::{
    model::{EndpointKey, signing_keys::SigningKeys},
    resources::{WebhookEndpoint, compile},
};

pub const FINALIZER: &str = "webhook-operator.io/cleanup";
/// Upper bound for a routes change to reach every router and delivery process.
const ROUTE_PROPAGATION: Duration = Duration::from_secs(3);
/// Periodic re-check, so drift (e.g. a deleted workload) heals without any event.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn reconcile(endpoint: Arc<WebhookEndpoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = endpoint
        .namespace()
        .ok_or_else(|| Error::NotNamespaced(endpoint.name_any()))?;
    let key = backoff_key(endpoint.as_ref());
    ctx.stores.ready().await?;
    let api: Api<WebhookEndpoint> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, endpoint, |event| async {
        match event {
            Finalizer::Apply(endpoint) => apply(&endpoint, &namespace, &ctx).await,
            Finalizer::Cleanup(endpoint) => cleanup(&endpoint, &namespace, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
    .inspect(|_| ctx.reset_backoff(&key))
}

async fn apply(
    endpoint: &WebhookEndpoint,
    namespace: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    enable::act_on_annotation(endpoint, namespace, ctx).await?;
    let name = endpoint.name_any();
    let secret_ref = compile::secret_ref(endpoint);
    let mut created = Default::default();
    if !ctx.secret_exists(namespace, &secret_ref.name) {
        let Some(key) = create_signing_secret(endpoint, namespace, &secret_ref, ctx).await? else {
            // It exists after all (the Secret cache is behind): judge the endpoint once the
            // cache has it rather than call it invalid meanwhile.
            return Ok(Action::requeue(Duration::from_secs(2)));
        };
        created = created_secret(&secret_ref.name, &secret_ref.key, key.into_bytes());
    }
    let report = ctx.compile(namespace, created);
    let desired = match report.endpoints.get(&name) {
        Some(Err(problem)) => Desired::new(READY, false, problem.reason, problem.message.clone()),
        _ => Desired::new(
            READY,
            true,
            "Active",
            "Valid; events of subscribed types are delivered.",
        ),
    };
    write_ready(endpoint, &desired, ctx).await?;
    tenant::sync(ctx, namespace, &report).await?;
    replay::reconcile(endpoint, namespace, ctx).await?;
    let next_expiry = rotate::reconcile(endpoint, namespace, ctx).await?;
    Ok(Action::requeue(
        next_expiry.map_or(RESYNC, |due| due.min(RESYNC)),
    ))
}

async fn cleanup(
    endpoint: &WebhookEndpoint,
    namespace: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    // Routes first, so no new job is created for the endpoint; once routers and delivery have
    // seen that, its queued jobs (and a consumer a worker may have recreated) go.
    let report = ctx.compile(namespace, Default::default());
    tenant::sync(ctx, namespace, &report).await?;
    tokio::time::sleep(ROUTE_PROPAGATION).await;
    ctx.routes
        .discard_endpoint(EndpointKey::new(namespace, endpoint.name_any()))
        .await?;
    tracing::info!(
        endpoint = %format!("{namespace}/{}", endpoint.name_any()),
        "endpoint deleted: routes removed, queued jobs discarded"
    );
    Ok(Action::await_change())
}

/// Creates the missing signing Secret, owned by the endpoint so it goes with it (and managed
/// for it: see [`crate::resources::signing_secret`]); `None` when it turned out to exist
/// already. Never written over afterwards: only rotation changes its keys, through a patch
/// that refuses to overwrite a concurrent change.
async fn create_signing_secret(
    endpoint: &WebhookEndpoint,
    namespace: &str,
    secret_ref: &crate::resources::webhook_endpoint::SecretKeyRef,
    ctx: &Context,
) -> Result<Option<String>, Error> {
    let key = SigningKeys::generate();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_ref.name.clone()),
            namespace: Some(namespace.into()),
            owner_references: endpoint
                .controller_owner_ref(&())
                .map(|o: OwnerReference| vec![o]),
            labels: Some(
                [(
                    "app.kubernetes.io/managed-by".to_string(),
                    MANAGER.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some([(secret_ref.key.clone(), ByteString(key.clone().into_bytes()))].into()),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .create(
            &PostParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &secret,
        )
        .await
    {
        Ok(_) => {
            ctx.publish_event(
                endpoint,
                false,
                "SecretCreated",
                format!("Created Secret {} with a new signing key under {:?}; share it with the receiver.", secret_ref.name, secret_ref.key),
            )
            .await;
            Ok(Some(key))
        }
        // Someone created it meanwhile: theirs wins; the next reconcile reads it.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Writes the Ready condition (an invalid endpoint's health too) and raises an Event on a flip.
async fn write_ready(
    endpoint: &WebhookEndpoint,
    desired: &Desired,
    ctx: &Context,
) -> Result<(), Error> {
    let status = endpoint.status.clone().unwrap_or_default();
    let mut extra = serde_json::Map::new();
    if desired.status == "False" {
        extra.insert("health".into(), json!("Invalid"));
    }
    let written = ctx
        .write_ready(
            endpoint,
            &status.conditions,
            status.observed_generation,
            desired,
            extra,
        )
        .await?;
    let Some(previous) = written else {
        return Ok(());
    };
    if previous.as_deref() == Some(desired.status) {
        return Ok(());
    }
    if desired.status == "False" {
        ctx.publish_event(
            endpoint,
            true,
            desired.reason.as_str(),
            desired.message.clone(),
        )
        .await;
    } else if previous.is_some() {
        ctx.publish_event(
            endpoint,
            false,
            "Valid",
            "The endpoint is valid again.".into(),
        )
        .await;
    }
    Ok(())
}

pub fn error_policy(endpoint: Arc<WebhookEndpoint>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.requeue_after_error(endpoint.as_ref(), error)
}
