//! Signing key rotation the Kubernetes way: the annotation
//! `webhook-operator.io/rotate-signing-key: <any new value>` on a WebhookEndpoint puts a fresh
//! key first in its signing Secret, and the previous keys keep signing for
//! `--signing-key-overlap`. Acted on once per value (recorded in `status.lastRotation`, and on
//! the Secret itself); every reconcile also drops previous keys whose overlap is over, whoever
//! rotated (annotation or tenant API), and asks to be run again when the next one is due.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{ResourceExt, runtime::reflector::ObjectRef};

use super::{
    context::Context,
    error::Error,
    key_rotation::{self, ROTATION_MANAGER, RotationError},
    replay::unhandled,
};
use crate::{
    model::signing_keys::KeyRing,
    resources::{
        WebhookEndpoint, compile,
        signing_secret::{self, SigningSecretError},
        webhook_endpoint::LastRotation,
    },
};

pub const ROTATE_ANNOTATION: &str = "webhook-operator.io/rotate-signing-key";
/// How soon to look again when the Secret is not in the cache yet (just created).
const SECRET_PENDING: Duration = Duration::from_secs(2);

/// The annotation value not yet acted on, if any.
pub fn pending_request(endpoint: &WebhookEndpoint) -> Option<&str> {
    let handled = endpoint
        .status
        .as_ref()
        .and_then(|s| s.last_rotation.as_ref());
    unhandled(
        endpoint,
        ROTATE_ANNOTATION,
        handled.map(|last| last.requested.as_str()),
    )
}

/// Rotates when the annotation asks for it and drops expired previous keys. Returns how soon
/// to reconcile again for the next key to expire, if any.
pub async fn reconcile(
    endpoint: &WebhookEndpoint,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<Duration>, Error> {
    let reference = compile::secret_ref(endpoint);
    let Some(cached) = ctx
        .stores
        .secrets
        .get(&ObjectRef::new(&reference.name).within(namespace))
    else {
        return Ok(pending_request(endpoint).map(|_| SECRET_PENDING));
    };
    let now = Timestamp::now();
    let ring = match pending_request(endpoint) {
        Some(request) => act_on_annotation(endpoint, request, ctx, now).await?,
        None => {
            // A Secret the operator does not manage, or cannot read, has nothing to clean up.
            match signing_secret::secret_key_ring(endpoint, &cached) {
                Ok(ring) if ring.next_expiry().is_some_and(|at| at <= now) => {
                    Some(drop_expired(endpoint, ctx, now).await?)
                }
                Ok(ring) => Some(ring),
                Err(_) => None,
            }
        }
    };
    Ok(ring
        .and_then(|ring| ring.next_expiry())
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default()))
}

async fn drop_expired(
    endpoint: &WebhookEndpoint,
    ctx: &Context,
    now: Timestamp,
) -> Result<KeyRing, Error> {
    let changed = key_rotation::drop_expired(&ctx.client, endpoint, now).await?;
    if changed.changes > 0 {
        tracing::info!(endpoint = %endpoint_name(endpoint), secret = %changed.secret, removed = changed.changes, "previous signing keys expired");
        ctx.publish_event(
            endpoint,
            false,
            "PreviousSigningKeysRemoved",
            format!(
                "Removed {} previous signing key(s) from Secret {} after their overlap; {} key(s) sign now.",
                changed.changes,
                changed.secret,
                changed.ring.len()
            ),
        )
        .await;
    }
    Ok(changed.ring)
}

/// Rotates (or finds the Secret already rotated for `request`) and records it; a Secret the
/// operator does not manage, or cannot read, is refused with a Warning Event and recorded too.
async fn act_on_annotation(
    endpoint: &WebhookEndpoint,
    request: &str,
    ctx: &Context,
    now: Timestamp,
) -> Result<Option<KeyRing>, Error> {
    let (record, ring) = match key_rotation::rotate(
        &ctx.client,
        endpoint,
        ctx.signing_key_overlap,
        now,
        Some(request),
    )
    .await
    {
        Ok(changed) => {
            let expire = changed.ring.previous_keys_expire();
            if changed.changes > 0 {
                let until = expire.map_or_else(
                    || "no previous key is kept".to_owned(),
                    |at| format!("the previous key(s) keep signing until {at}"),
                );
                tracing::info!(endpoint = %endpoint_name(endpoint), secret = %changed.secret, %request, "signing key rotated on request");
                ctx.publish_event(
                    endpoint,
                    false,
                    "SigningKeyRotated",
                    format!(
                        "Put a new signing key first in Secret {}; {until}. Give receivers the new key.",
                        changed.secret
                    ),
                )
                .await;
            }
            let record = LastRotation {
                requested: request.to_owned(),
                time: Time(now),
                rotated: true,
                previous_keys_expire: expire.map(Time),
                message: None,
            };
            (record, Some(changed.ring))
        }
        Err(RotationError::Secret(
            refused @ (SigningSecretError::NotManaged { .. } | SigningSecretError::Invalid { .. }),
        )) => {
            let message = format!("Not rotated: {refused}");
            tracing::warn!(endpoint = %endpoint_name(endpoint), %request, reason = refused.reason(), "{message}");
            ctx.publish_event(endpoint, true, refused.reason(), message.clone())
                .await;
            let record = LastRotation {
                requested: request.to_owned(),
                time: Time(now),
                rotated: false,
                previous_keys_expire: None,
                message: Some(message),
            };
            (record, None)
        }
        Err(other) => return Err(other.into()),
    };
    ctx.record_request(endpoint, "lastRotation", &record, ROTATION_MANAGER)
        .await?;
    Ok(ring)
}

fn endpoint_name(endpoint: &WebhookEndpoint) -> String {
    format!(
        "{}/{}",
        endpoint.namespace().unwrap_or_default(),
        endpoint.name_any()
    )
}
