//! Reading `WebhookEndpoint`, `EventSubscription`, `EventType`, `Secret` and `ConfigMap` manifests from a
//! directory.
//!
//! Every document is parsed on its own: a broken one is reported with its file, position and
//! field, and the others load as usual.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{ResourceExt, api::ObjectMeta};
use serde::de::DeserializeOwned;

use crate::{
    dataplane::delivery::TenantData,
    resources::{
        EventSubscription, EventType, WebhookEndpoint,
        object_data::{config_map_data, secret_data},
    },
    tenant_api::keys::{API_KEY_LABEL, KeyRecord, record_from_secret},
};

pub const API_VERSION: &str = "webhook-operator.io/v1alpha1";
const DEFAULT_NAMESPACE: &str = "default";

/// A document that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based position of the document in its file.
    pub document: usize,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (document {}): {}",
            self.file.display(),
            self.document,
            self.message
        )
    }
}

/// Everything found under a manifests directory, by namespace.
#[derive(Debug, Default)]
pub struct Manifests {
    pub endpoints: BTreeMap<String, Vec<WebhookEndpoint>>,
    pub subscriptions: BTreeMap<String, Vec<EventSubscription>>,
    pub event_types: BTreeMap<String, Vec<EventType>>,
    /// Secrets and ConfigMaps, by namespace.
    pub data: TenantData,
    /// The metadata of those Secrets, by namespace and name: whether a Secret is managed for an
    /// endpoint ([`crate::resources::signing_secret`]) is written there.
    pub secret_meta: BTreeMap<(String, String), ObjectMeta>,
    /// Tenant API keys: Secrets labelled `webhook-operator.io/api-key=true`.
    pub api_keys: Vec<KeyRecord>,
    pub errors: Vec<ManifestError>,
}

impl Manifests {
    /// Namespaces with at least one endpoint, subscription or event type.
    pub fn tenants(&self) -> impl Iterator<Item = &String> {
        let mut all: Vec<&String> = self
            .endpoints
            .keys()
            .chain(self.subscriptions.keys())
            .chain(self.event_types.keys())
            .collect();
        all.sort();
        all.dedup();
        all.into_iter()
    }
}

/// `*.yaml` and `*.yml` files under `dir`, recursively, in a stable order.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the given files. Only an unreadable directory is an error; bad documents are collected.
pub fn load(files: &[(PathBuf, String)]) -> Manifests {
    let mut manifests = Manifests::default();
    for (file, text) in files {
        for (index, document) in split_documents(text).into_iter().enumerate() {
            if let Err(message) = add_document(&mut manifests, document) {
                manifests.errors.push(ManifestError {
                    file: file.clone(),
                    document: index + 1,
                    message,
                });
            }
        }
    }
    manifests
}

/// Splits a multi-document YAML stream on `---` separator lines.
fn split_documents(text: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            documents.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    documents.push(&text[start..]);
    documents.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    documents
}

fn add_document(manifests: &mut Manifests, document: &str) -> Result<(), String> {
    let value: serde_json::Value =
        serde_saphyr::from_str(document).map_err(|e| format!("invalid YAML: {e}"))?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    let api_version = value
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned();
    let label = format!("{kind} {name:?}");
    if name.is_empty() {
        let what = if kind.is_empty() { "document" } else { &kind };
        return Err(match value.pointer("/metadata/name") {
            // YAML reads unquoted y, no, on, 123 ... as booleans or numbers.
            Some(other) if !other.is_null() => {
                format!("{what}: metadata.name {other} is not a string (quote it)")
            }
            _ => format!("{what} has no metadata.name"),
        });
    }
    let expect_api = |expected: &str| {
        if api_version == expected {
            Ok(())
        } else {
            Err(format!(
                "{label}: apiVersion is {api_version:?}, expected {expected:?}"
            ))
        }
    };
    match kind.as_str() {
        "WebhookEndpoint" => {
            expect_api(API_VERSION)?;
            let mut endpoint: WebhookEndpoint = typed(value, &label)?;
            let namespace = namespace_of(&mut endpoint.metadata.namespace);
            insert_unique(
                manifests.endpoints.entry(namespace).or_default(),
                endpoint,
                &label,
            )
        }
        "EventSubscription" => {
            expect_api(API_VERSION)?;
            let mut subscription: EventSubscription = typed(value, &label)?;
            let namespace = namespace_of(&mut subscription.metadata.namespace);
            insert_unique(
                manifests.subscriptions.entry(namespace).or_default(),
                subscription,
                &label,
            )
        }
        "EventType" => {
            expect_api(API_VERSION)?;
            let mut event_type: EventType = typed(value, &label)?;
            let namespace = namespace_of(&mut event_type.metadata.namespace);
            insert_unique(
                manifests.event_types.entry(namespace).or_default(),
                event_type,
                &label,
            )
        }
        "Secret" => {
            expect_api("v1")?;
            let mut secret: Secret = typed(value, &label)?;
            let namespace = namespace_of(&mut secret.metadata.namespace);
            let data = secret_data(&secret);
            let labels = secret.metadata.labels.clone().unwrap_or_default();
            if labels.get(API_KEY_LABEL).is_some_and(|v| v == "true") {
                let record = record_from_secret(&namespace, &name, &data)
                    .map_err(|e| format!("{label} (API key): data {e}"))?;
                manifests.api_keys.push(record);
                return Ok(());
            }
            manifests
                .secret_meta
                .insert((namespace.clone(), name.clone()), secret.metadata);
            manifests
                .data
                .entry(namespace)
                .or_default()
                .secrets
                .insert(name, data);
            Ok(())
        }
        "ConfigMap" => {
            expect_api("v1")?;
            let mut config_map: ConfigMap = typed(value, &label)?;
            let namespace = namespace_of(&mut config_map.metadata.namespace);
            let data = config_map_data(&config_map);
            manifests
                .data
                .entry(namespace)
                .or_default()
                .config_maps
                .insert(name, data);
            Ok(())
        }
        "" => Err("document has no kind".into()),
        other => Err(format!(
            "{other} {name:?}: unsupported kind (local mode reads WebhookEndpoint, EventSubscription, EventType, Secret and ConfigMap)"
        )),
    }
}

fn typed<T: DeserializeOwned>(value: serde_json::Value, label: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        format!("{label}: field {path}: {}", e.inner())
    })
}

fn namespace_of(namespace: &mut Option<String>) -> String {
    namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.into())
        .clone()
}

fn insert_unique<K: kube::Resource>(
    list: &mut Vec<K>,
    object: K,
    label: &str,
) -> Result<(), String> {
    if list.iter().any(|o| o.name_any() == object.name_any()) {
        return Err(format!(
            "{label}: defined twice in namespace {:?}; keeping the first",
            object.namespace().unwrap_or_default()
        ));
    }
    list.push(object);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: { name: orders, namespace: acme }
spec:
  url: https://orders.example/hook
---
# a comment-only document is skipped
---
apiVersion: webhook-operator.io/v1alpha1
kind: EventSubscription
metadata: { name: paid, namespace: acme }
spec:
  endpointRef: { name: orders }
  eventTypes: ["order.paid"]
---
apiVersion: v1
kind: Secret
metadata: { name: orders-signing, namespace: acme }
stringData:
  secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
---
apiVersion: webhook-operator.io/v1alpha1
kind: EventType
metadata: { name: order-paid, namespace: acme }
spec:
  name: order.paid
  description: An order was paid.
  schema: { type: object, required: [order] }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: receiver-ca, namespace: acme }
data:
  ca.crt: PEM
"#;

    #[test]
    fn loads_multi_document_files() {
        let m = load(&[(PathBuf::from("good.yaml"), GOOD.into())]);
        assert!(m.errors.is_empty(), "{:?}", m.errors);
        assert_eq!(m.endpoints["acme"].len(), 1);
        assert_eq!(m.subscriptions["acme"].len(), 1);
        let event_type = &m.event_types["acme"][0];
        assert_eq!(event_type.spec.name, "order.paid");
        assert!(event_type.spec.schema.is_some());
        assert_eq!(m.tenants().collect::<Vec<_>>(), ["acme"]);
        assert!(m.data["acme"].secrets["orders-signing"].contains_key("secret"));
        assert_eq!(
            m.data["acme"].config_maps["receiver-ca"]
                .get("ca.crt")
                .map(Vec::as_slice),
            Some(&b"PEM"[..])
        );
    }

    #[test]
    fn broken_documents_name_file_document_and_field() {
        let bad = r#"
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: { name: broken, namespace: acme }
spec:
  url: https://x.example
  retry: { maxAttempts: many }
---
kind: WebhookEndpoint
metadata: { name: [unclosed
---
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: { name: fine, namespace: acme }
spec: { url: "https://fine.example" }
"#;
        let m = load(&[
            (PathBuf::from("bad.yaml"), bad.into()),
            (PathBuf::from("good.yaml"), GOOD.into()),
        ]);
        let unquoted = load(&[(
            PathBuf::from("y.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata: { name: y }\n".into(),
        )]);
        assert_eq!(
            unquoted.errors[0].message,
            "Secret: metadata.name true is not a string (quote it)"
        );
        assert_eq!(m.errors.len(), 2, "{:?}", m.errors);
        let first = m.errors[0].to_string();
        assert!(
            first.contains("bad.yaml (document 1)") && first.contains("spec.retry.maxAttempts"),
            "{first}"
        );
        assert!(
            m.errors[1].to_string().contains("document 2"),
            "{}",
            m.errors[1]
        );
        let names: Vec<_> = m.endpoints["acme"].iter().map(|e| e.name_any()).collect();
        assert_eq!(names, ["fine", "orders"]);
    }

    proptest::proptest! {
        /// Whatever a file holds, loading reports it and never panics; valid endpoints among
        /// broken documents still load.
        #[test]
        fn any_text_loads_without_panicking(junk in "[-a-zA-Z0-9:{}\\[\\], #'\"\n]{0,300}", name in "[a-z][a-z0-9-]{0,20}") {
            let good = format!(
                "apiVersion: webhook-operator.io/v1alpha1\nkind: WebhookEndpoint\nmetadata: {{ name: \"{name}\", namespace: acme }}\nspec: {{ url: \"https://x.example\" }}\n"
            );
            let text = format!("{junk}\n---\n{good}");
            let m = load(&[(PathBuf::from("fuzz.yaml"), text)]);
            let found = m.endpoints.get("acme").is_some_and(|e| e.iter().any(|e| e.name_any() == name));
            proptest::prop_assert!(found, "{:?}", m.errors);
        }
    }
}
