//! Commands that ask the controller for an action by annotating the resource, through the
//! Kubernetes API server with the user's kubeconfig (RBAC: `patch` on `webhookendpoints`):
//! `rotate-secret`. The controller acts once per annotation value and records it in status.

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{AdminApi, ApiError, Output, pretty};
use crate::{controlplane::rotate::ROTATE_ANNOTATION, resources::WebhookEndpoint};

/// Field manager of the plugin's annotations.
const FIELD_MANAGER: &str = "kubectl-webhooks";

/// Sets `webhook-operator.io/rotate-signing-key` on the endpoint to a new value (the time).
pub async fn rotate_secret(
    api: &AdminApi,
    namespace: &str,
    endpoint: &str,
    output: Output,
) -> Result<String, ApiError> {
    let request = format!("annotate webhookendpoint {namespace}/{endpoint}");
    let Some(client) = api.kube_client() else {
        return Err(ApiError::NeedsCluster {
            command: "rotate-secret".into(),
            hint: format!(
                "it sets the annotation {ROTATE_ANNOTATION} through the Kubernetes API server; \
                 without a cluster (local mode) rotate through the tenant API: \
                 POST /v1/tenant/endpoints/{endpoint}/secret/rotate"
            ),
        });
    };
    let value = Timestamp::now().to_string();
    let patch = json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: value } } });
    Api::<WebhookEndpoint>::namespaced(client.clone(), namespace)
        .patch(
            endpoint,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|source| ApiError::Kube { request, source })?;
    Ok(match output {
        Output::Json => pretty(&json!({
            "namespace": namespace,
            "endpoint": endpoint,
            "annotation": ROTATE_ANNOTATION,
            "value": value,
        })),
        Output::Table => format!(
            "Asked the operator to rotate the signing key of {namespace}/{endpoint} \
             ({ROTATE_ANNOTATION}={value}).\n\
             The new key goes first in its Secret; the previous one keeps signing for the \
             overlap (--signing-key-overlap). Done when\n  \
             kubectl get webhookendpoint {endpoint} -n {namespace} -o jsonpath='{{.status.lastRotation}}'\n\
             shows requested={value}.\n"
        ),
    })
}
