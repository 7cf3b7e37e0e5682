//! An endpoint's signing Secret as the operator manages it: which Secret counts as managed for
//! an endpoint (only such a Secret is shown through the tenant API or rotated), where the expiry
//! of its previous keys is kept, and the patch that writes a rotated [`KeyRing`].
//!
//! Managed for endpoint `E` means: an owner reference to `E` (what the controller puts on the
//! Secrets it creates), or the annotation `webhook-operator.io/signing-key-for: E` (a Secret a
//! user created and hands over). A tenant who can only set `spec.secretRef` therefore cannot
//! point it at another Secret of the namespace (another app's credentials) and read it out.

use base64::{Engine, engine::general_purpose::STANDARD};
use k8s_openapi::api::core::v1::Secret;
use kube::{ResourceExt, api::ObjectMeta};
use serde_json::{Value, json};

use super::{WebhookEndpoint, compile};
use crate::model::signing_keys::{KeyRing, SigningKeyError};

/// Annotation by which a user hands a Secret they created over as endpoint `<value>`'s signing
/// Secret. (An annotation, not a label: endpoint names may be longer than a label value.)
pub const SIGNING_KEY_FOR_ANNOTATION: &str = "webhook-operator.io/signing-key-for";
/// Annotation on the Secret: when its previous keys stop signing (see [`KeyRing::expiry`]).
/// Kept on the Secret, so it survives controller restarts and holds whoever rotated.
pub const KEY_EXPIRY_ANNOTATION: &str = "webhook-operator.io/signing-key-expiry";
/// Annotation on the Secret: the `rotate-signing-key` request it was last rotated for, written
/// with the keys so that a request is never carried out twice.
pub const ROTATION_REQUEST_ANNOTATION: &str = "webhook-operator.io/signing-key-rotated-for";

/// Why an endpoint's signing Secret cannot be shown or rotated. Never holds a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningSecretError {
    #[error(
        "Secret {secret:?} does not exist yet; the controller creates a missing signing Secret, try again shortly"
    )]
    NotFound { secret: String },
    #[error(
        "Secret {secret:?} is not managed for endpoint {endpoint:?}: it has neither an owner reference to the endpoint nor the annotation {SIGNING_KEY_FOR_ANNOTATION}: {endpoint}"
    )]
    NotManaged { secret: String, endpoint: String },
    #[error("Secret {secret:?} key {key:?}: {problem}")]
    Invalid {
        secret: String,
        key: String,
        problem: SigningKeyError,
    },
}

impl SigningSecretError {
    /// The reason shown in API answers, Events and audit records.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "SecretNotFound",
            Self::NotManaged { .. } => "SecretNotManaged",
            Self::Invalid { .. } => "InvalidSecret",
        }
    }
}

/// Whether the Secret with metadata `meta` is managed for `endpoint`. An owner reference must
/// carry the endpoint's uid when the endpoint has one (in a cluster), so a Secret left from an
/// earlier endpoint of the same name does not count.
pub fn managed_for(meta: &ObjectMeta, endpoint: &WebhookEndpoint) -> bool {
    let name = endpoint.name_any();
    let uid = endpoint.metadata.uid.as_deref();
    let owned = meta.owner_references.iter().flatten().any(|owner| {
        owner.kind == "WebhookEndpoint"
            && owner.api_version.starts_with("webhook-operator.io/")
            && owner.name == name
            && uid.is_none_or(|uid| owner.uid == uid)
    });
    owned
        || meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNING_KEY_FOR_ANNOTATION))
            == Some(&name)
}

/// The keys of `endpoint`'s signing Secret (metadata `meta`, `value` under `spec.secretRef.key`),
/// if the Secret is managed for it.
pub fn key_ring(
    endpoint: &WebhookEndpoint,
    meta: &ObjectMeta,
    value: Option<&[u8]>,
) -> Result<KeyRing, SigningSecretError> {
    let reference = compile::secret_ref(endpoint);
    if !managed_for(meta, endpoint) {
        return Err(SigningSecretError::NotManaged {
            secret: reference.name,
            endpoint: endpoint.name_any(),
        });
    }
    let expiry = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEY_EXPIRY_ANNOTATION));
    KeyRing::parse(value.unwrap_or_default(), expiry.map(String::as_str)).map_err(|problem| {
        SigningSecretError::Invalid {
            secret: reference.name,
            key: reference.key,
            problem,
        }
    })
}

/// [`key_ring`] of a Secret as the Kubernetes API has it.
pub fn secret_key_ring(
    endpoint: &WebhookEndpoint,
    secret: &Secret,
) -> Result<KeyRing, SigningSecretError> {
    let key = compile::secret_ref(endpoint).key;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&key))
        .map(|v| v.0.as_slice());
    key_ring(endpoint, &secret.metadata, value)
}

/// A JSON merge patch that stores `ring` under `key` with its expiry annotation (removed when
/// nothing expires). With `resource_version` the API server refuses it (409) if the Secret
/// changed since it was read: keys are never written over a concurrent change.
pub fn patch(ring: &KeyRing, key: &str, resource_version: Option<&str>) -> Value {
    let mut patch = json!({
        "metadata": { "annotations": { KEY_EXPIRY_ANNOTATION: ring.expiry() } },
        "data": { key: STANDARD.encode(ring.value()) },
    });
    if let Some(version) = resource_version {
        patch["metadata"]["resourceVersion"] = json!(version);
    }
    patch
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::Resource;

    use super::*;
    use crate::model::signing_keys::SigningKeys;

    fn endpoint(name: &str, uid: Option<&str>) -> WebhookEndpoint {
        let spec = serde_json::from_value(json!({"url": "https://a.example"})).unwrap();
        let mut e = WebhookEndpoint::new(name, spec);
        e.metadata.namespace = Some("acme".into());
        e.metadata.uid = uid.map(str::to_owned);
        e
    }

    fn owned_by(e: &WebhookEndpoint) -> ObjectMeta {
        ObjectMeta {
            owner_references: e.controller_owner_ref(&()).map(|o: OwnerReference| vec![o]),
            ..Default::default()
        }
    }

    #[test]
    fn only_secrets_owned_by_or_handed_to_the_endpoint_are_managed() {
        let orders = endpoint("orders", Some("uid-1"));
        assert!(managed_for(&owned_by(&orders), &orders));
        // The same name, another object (deleted and created again): not its Secret.
        assert!(!managed_for(
            &owned_by(&orders),
            &endpoint("orders", Some("uid-2"))
        ));
        assert!(!managed_for(&owned_by(&orders), &endpoint("billing", None)));
        // A Secret of another app: neither owner nor annotation.
        let foreign = ObjectMeta {
            labels: Some([("app".to_string(), "db".to_string())].into()),
            ..Default::default()
        };
        assert!(!managed_for(&foreign, &orders));
        let handed_over = ObjectMeta {
            annotations: Some(
                [(SIGNING_KEY_FOR_ANNOTATION.to_string(), "orders".to_string())].into(),
            ),
            ..Default::default()
        };
        assert!(managed_for(&handed_over, &orders));
        assert!(!managed_for(&handed_over, &endpoint("billing", None)));
        // Local mode: manifests carry no uids; the owner's name decides.
        let local = endpoint("orders", None);
        assert!(managed_for(&owned_by(&orders), &local));
    }

    #[test]
    fn a_ring_is_read_from_and_written_back_to_the_secret() {
        let orders = endpoint("orders", Some("uid-1"));
        let old = SigningKeys::generate();
        let meta = owned_by(&orders);
        let mut ring = key_ring(&orders, &meta, Some(old.as_bytes())).unwrap();
        let new = SigningKeys::generate();
        ring.rotate(
            new.clone(),
            jiff::Timestamp::now(),
            std::time::Duration::from_secs(60),
        );
        let written = patch(&ring, "secret", Some("42"));
        assert_eq!(written["metadata"]["resourceVersion"], "42");
        let stored = STANDARD
            .decode(written["data"]["secret"].as_str().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(stored).unwrap(), format!("{new} {old}"));
        let expiry = written["metadata"]["annotations"][KEY_EXPIRY_ANNOTATION]
            .as_str()
            .unwrap();
        assert!(!expiry.contains(&old) && !expiry.contains(&old[6..]));

        // Nothing expiring: the annotation is removed (null in a merge patch).
        let single = key_ring(&orders, &meta, Some(new.as_bytes())).unwrap();
        let cleared = patch(&single, "secret", None);
        assert!(cleared["metadata"]["annotations"][KEY_EXPIRY_ANNOTATION].is_null());
        assert!(cleared["metadata"].get("resourceVersion").is_none());

        let error = key_ring(&orders, &ObjectMeta::default(), Some(old.as_bytes())).unwrap_err();
        assert_eq!(error.reason(), "SecretNotManaged");
        assert!(
            error.to_string().contains(SIGNING_KEY_FOR_ANNOTATION),
            "{error}"
        );
        let error = key_ring(&orders, &meta, Some(b"hunter2")).unwrap_err();
        assert_eq!(error.reason(), "InvalidSecret");
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert_eq!(
            key_ring(&orders, &meta, None).unwrap_err().reason(),
            "InvalidSecret"
        );
    }
}
