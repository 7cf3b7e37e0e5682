//! Rotating an endpoint's signing Secret through the Kubernetes API: the one implementation
//! behind the `rotate-signing-key` annotation (the controller) and the tenant API's
//! `POST .../secret/rotate`, and the clean-up of previous keys whose overlap is over.
//!
//! Each change reads the Secret, checks that it is managed for the endpoint, changes its
//! [`KeyRing`] and writes it back with a merge patch guarded by the resourceVersion read, so a
//! concurrent change (another rotation, a user's edit) is never overwritten: the step is read and
//! done again.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::{
    model::signing_keys::{KeyRing, SigningKeys},
    resources::{
        WebhookEndpoint, compile,
        signing_secret::{self, ROTATION_REQUEST_ANNOTATION, SigningSecretError},
    },
};

/// Field manager of the Secret writes (and of `status.lastRotation`).
pub const ROTATION_MANAGER: &str = "webhook-operator-rotation";
/// Attempts of a change that keeps meeting concurrent changes.
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Secret(#[from] SigningSecretError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("Secret {0:?} kept changing while it was being written; try again")]
    Contended(String),
}

/// The Secret's keys after a change, and how many keys the change added or dropped (0: nothing
/// was written).
#[derive(Debug)]
pub struct Changed {
    pub secret: String,
    pub ring: KeyRing,
    pub changes: usize,
}

/// Puts a fresh key first; the keys there keep signing for `overlap`. With `request` (the
/// annotation value asking for it), a Secret already rotated for that request is left as it is:
/// a request is acted on once, even if the controller stopped between writing the Secret and
/// recording it in status.
pub async fn rotate(
    client: &Client,
    endpoint: &WebhookEndpoint,
    overlap: Duration,
    now: Timestamp,
    request: Option<&str>,
) -> Result<Changed, RotationError> {
    change(client, endpoint, request, |secret, ring| {
        let done = request.is_some()
            && secret
                .annotations()
                .get(ROTATION_REQUEST_ANNOTATION)
                .map(String::as_str)
                == request;
        if done {
            return 0;
        }
        ring.rotate(SigningKeys::generate(), now, overlap);
        1
    })
    .await
}

/// Drops the previous keys whose overlap is over at `now`.
pub async fn drop_expired(
    client: &Client,
    endpoint: &WebhookEndpoint,
    now: Timestamp,
) -> Result<Changed, RotationError> {
    change(client, endpoint, None, |_, ring| ring.drop_expired(now)).await
}

/// The endpoint's managed signing Secret as it is now, and its keys.
pub async fn current(
    client: &Client,
    endpoint: &WebhookEndpoint,
) -> Result<Changed, RotationError> {
    let (_, changed) = read(&secrets(client, endpoint), endpoint).await?;
    Ok(changed)
}

fn secrets(client: &Client, endpoint: &WebhookEndpoint) -> Api<Secret> {
    Api::namespaced(client.clone(), &endpoint.namespace().unwrap_or_default())
}

async fn read(
    api: &Api<Secret>,
    endpoint: &WebhookEndpoint,
) -> Result<(Secret, Changed), RotationError> {
    let name = compile::secret_ref(endpoint).name;
    let secret = api
        .get_opt(&name)
        .await?
        .ok_or_else(|| SigningSecretError::NotFound {
            secret: name.clone(),
        })?;
    let ring = signing_secret::secret_key_ring(endpoint, &secret)?;
    let changed = Changed {
        secret: name,
        ring,
        changes: 0,
    };
    Ok((secret, changed))
}

/// Reads the endpoint's managed signing Secret, applies `apply` (which returns how many keys
/// it changed) and writes the result unless nothing changed.
async fn change(
    client: &Client,
    endpoint: &WebhookEndpoint,
    request: Option<&str>,
    mut apply: impl FnMut(&Secret, &mut KeyRing) -> usize,
) -> Result<Changed, RotationError> {
    let api = secrets(client, endpoint);
    let key = compile::secret_ref(endpoint).key;
    for _ in 0..ATTEMPTS {
        let (secret, mut changed) = read(&api, endpoint).await?;
        changed.changes = apply(&secret, &mut changed.ring);
        if changed.changes == 0 {
            return Ok(changed);
        }
        let mut patch = signing_secret::patch(
            &changed.ring,
            &key,
            secret.metadata.resource_version.as_deref(),
        );
        if let Some(request) = request {
            patch["metadata"]["annotations"][ROTATION_REQUEST_ANNOTATION] = json!(request);
        }
        let params = PatchParams {
            field_manager: Some(ROTATION_MANAGER.into()),
            ..Default::default()
        };
        match api
            .patch(&changed.secret, &params, &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(changed),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(RotationError::Contended(compile::secret_ref(endpoint).name))
}
