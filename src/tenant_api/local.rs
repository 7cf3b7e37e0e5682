//! The tenant API in local mode: objects in memory, beside the manifest files.
//!
//! The manifests stay the source of what they define: the API shows those objects but refuses to
//! change or delete them (409). Objects created through the API live in this process only and are
//! gone after a restart. A file that later defines the same name wins over the API's object.
//!
//! Signing keys are read from the manifests' Secrets. A rotation through the API is kept in
//! memory too, over the file's value it started from: delivery signs with the rotated keys until
//! the process restarts or the file's value changes (the file wins again).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use jiff::Timestamp;
use kube::{ResourceExt, api::ObjectMeta};
use tokio::sync::watch;

use super::{
    KeysRx,
    keys::KeyIndex,
    store::{self, Kind, Object, SigningSecret, Spec, StoreError, TenantStore},
};
use crate::{
    local::manifests::Manifests,
    model::signing_keys::{KeyRing, SigningKeys},
    resources::{
        EventSubscription, WebhookEndpoint, compile,
        signing_secret::{self, SigningSecretError},
    },
};

/// `(namespace, name)`.
type Key = (String, String);

/// The objects of each kind, by namespace and name.
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub endpoints: BTreeMap<Key, WebhookEndpoint>,
    pub subscriptions: BTreeMap<Key, EventSubscription>,
    /// What the files define: their Secrets.
    pub secrets: BTreeMap<Key, FileSecret>,
    /// What the API changed: signing Secrets rotated through it, by Secret.
    pub rotated: BTreeMap<Key, Rotated>,
    /// Bumped on every change, so the manifest watcher knows to recompile.
    pub generation: u64,
}

/// A Secret as a manifest defines it.
#[derive(Debug, Clone)]
pub struct FileSecret {
    meta: ObjectMeta,
    data: BTreeMap<String, Vec<u8>>,
}

/// A signing Secret's keys after a rotation through the API, and the file's value (under `key`)
/// they replace. `Debug` never prints either.
#[derive(Clone)]
pub struct Rotated {
    key: String,
    base: Vec<u8>,
    ring: KeyRing,
}

impl std::fmt::Debug for Rotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rotated({:?}, {:?})", self.key, self.ring)
    }
}

impl Rotated {
    /// The keys still signing at `now`.
    fn at(&self, now: Timestamp) -> KeyRing {
        let mut ring = self.ring.clone();
        ring.drop_expired(now);
        ring
    }
}

impl Objects {
    fn from_manifests(manifests: &Manifests) -> Self {
        fn by_key<K: ResourceExt + Clone>(
            by_namespace: &BTreeMap<String, Vec<K>>,
        ) -> BTreeMap<Key, K> {
            by_namespace
                .iter()
                .flat_map(|(namespace, objects)| {
                    objects
                        .iter()
                        .map(move |o| ((namespace.clone(), o.name_any()), o.clone()))
                })
                .collect()
        }
        let secrets = manifests
            .secret_meta
            .iter()
            .filter_map(|((namespace, name), meta)| {
                let data = manifests.data.get(namespace)?.secrets.get(name)?;
                let secret = FileSecret {
                    meta: meta.clone(),
                    data: data.clone(),
                };
                Some(((namespace.clone(), name.clone()), secret))
            })
            .collect();
        Self {
            endpoints: by_key(&manifests.endpoints),
            subscriptions: by_key(&manifests.subscriptions),
            secrets,
            rotated: BTreeMap::new(),
            generation: 0,
        }
    }

    fn contains(&self, kind: Kind, key: &Key) -> bool {
        match kind {
            Kind::Endpoint => self.endpoints.contains_key(key),
            Kind::Subscription => self.subscriptions.contains_key(key),
        }
    }

    fn object(&self, kind: Kind, key: &Key) -> Option<Object> {
        match kind {
            Kind::Endpoint => self.endpoints.get(key).map(Object::of),
            Kind::Subscription => self.subscriptions.get(key).map(Object::of),
        }
    }

    fn in_namespace(&self, kind: Kind, namespace: &str) -> Vec<(String, Object)> {
        let of = |(k, o): (&Key, Object)| (k.0 == namespace).then(|| (k.1.clone(), o));
        match kind {
            Kind::Endpoint => self
                .endpoints
                .iter()
                .filter_map(|(k, e)| of((k, Object::of(e))))
                .collect(),
            Kind::Subscription => self
                .subscriptions
                .iter()
                .filter_map(|(k, s)| of((k, Object::of(s))))
                .collect(),
        }
    }
}

/// The store the tenant API uses in local mode.
pub struct MemoryStore {
    files: watch::Receiver<Arc<Objects>>,
    created: watch::Sender<Objects>,
}

/// The manifest watcher's side: it publishes what the files define and the keys they hold, and
/// merges the API's objects into what it compiles.
pub struct LocalLink {
    files: watch::Sender<Arc<Objects>>,
    created: watch::Receiver<Objects>,
    keys: watch::Sender<Option<Arc<KeyIndex>>>,
}

pub fn store() -> (MemoryStore, LocalLink, KeysRx) {
    let (files_tx, files_rx) = watch::channel(Arc::new(Objects::default()));
    let (created_tx, created_rx) = watch::channel(Objects::default());
    let (keys_tx, keys_rx) = watch::channel(None);
    (
        MemoryStore {
            files: files_rx,
            created: created_tx,
        },
        LocalLink {
            files: files_tx,
            created: created_rx,
            keys: keys_tx,
        },
        keys_rx,
    )
}

impl LocalLink {
    /// What the API changed, as of `now`: part of the watcher's fingerprint. Besides the
    /// generation it counts the rotated keys whose overlap is over, so that their expiry
    /// reaches delivery like any change.
    pub fn revision(&self, now: Timestamp) -> (u64, usize) {
        let created = self.created.borrow();
        let expired = created
            .rotated
            .values()
            .map(|r| r.ring.len() - r.at(now).len())
            .sum();
        (created.generation, expired)
    }

    /// Resolves when the API changed an object. Never, once the API is gone.
    pub async fn changed(&mut self) {
        if self.created.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Publishes what `manifests` define (objects and API keys), then adds the API's objects that
    /// no file defines.
    pub fn merge(&mut self, manifests: &mut Manifests) {
        let files = Objects::from_manifests(manifests);
        self.keys
            .send_replace(Some(Arc::new(KeyIndex::new(manifests.api_keys.clone()))));
        let created = self.created.borrow_and_update().clone();
        let now = Timestamp::now();
        for ((namespace, name), rotated) in &created.rotated {
            let value = manifests
                .data
                .get_mut(namespace)
                .and_then(|d| d.secrets.get_mut(name))
                .and_then(|s| s.get_mut(&rotated.key));
            match value {
                Some(value) if *value == rotated.base => {
                    *value = rotated.at(now).value().into_bytes();
                }
                _ => {
                    tracing::warn!(%namespace, secret = %name, "signing Secret changed in its manifest since its key was rotated through the tenant API: the file wins")
                }
            }
        }
        for ((namespace, name), endpoint) in created.endpoints {
            if shadowed(&files, Kind::Endpoint, &namespace, &name) {
                continue;
            }
            manifests
                .endpoints
                .entry(namespace)
                .or_default()
                .push(endpoint);
        }
        for ((namespace, name), subscription) in created.subscriptions {
            if shadowed(&files, Kind::Subscription, &namespace, &name) {
                continue;
            }
            manifests
                .subscriptions
                .entry(namespace)
                .or_default()
                .push(subscription);
        }
        self.files.send_replace(Arc::new(files));
    }
}

fn shadowed(files: &Objects, kind: Kind, namespace: &str, name: &str) -> bool {
    let defined = files.contains(kind, &(namespace.to_owned(), name.to_owned()));
    if defined {
        tracing::warn!(%namespace, %name, kind = kind.kind(), "defined in a manifest file and through the tenant API: the file wins");
    }
    defined
}

impl MemoryStore {
    fn key(namespace: &str, name: &str) -> Key {
        (namespace.to_owned(), name.to_owned())
    }

    fn file_defined(&self, kind: Kind, key: &Key) -> bool {
        self.files.borrow().contains(kind, key)
    }

    fn read_only(kind: Kind, name: &str) -> StoreError {
        StoreError::Conflict(format!(
            "{} {name:?} is defined in a manifest file; change it there",
            kind.kind()
        ))
    }

    /// Applies `change` to the API's objects; publishes (and bumps the generation) only on success.
    fn modify<T>(
        &self,
        change: impl FnOnce(&mut Objects) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut result = None;
        self.created.send_if_modified(|objects| {
            let outcome = change(objects);
            let changed = outcome.is_ok();
            if changed {
                objects.generation += 1;
            }
            result = Some(outcome);
            changed
        });
        result.unwrap_or(Err(StoreError::Unavailable))
    }
}

/// The current keys of endpoint `name`'s signing Secret: the file's, or the API's rotation of
/// them while the file's value is the one rotated. Returns also the Secret's key and the file's
/// value (what a rotation starts from).
fn signing_keys(
    files: &Objects,
    created: &Objects,
    namespace: &str,
    name: &str,
    now: Timestamp,
) -> Result<(SigningSecret, Key, String, Vec<u8>), StoreError> {
    let key = MemoryStore::key(namespace, name);
    let endpoint = files
        .endpoints
        .get(&key)
        .or_else(|| created.endpoints.get(&key))
        .ok_or_else(|| StoreError::NotFound {
            kind: Kind::Endpoint.kind(),
            name: name.to_owned(),
        })?;
    let reference = compile::secret_ref(endpoint);
    let secret_key = MemoryStore::key(namespace, &reference.name);
    let file = files
        .secrets
        .get(&secret_key)
        .ok_or_else(|| SigningSecretError::NotFound {
            secret: reference.name.clone(),
        })?;
    let value = file.data.get(&reference.key);
    let ring = signing_secret::key_ring(endpoint, &file.meta, value.map(Vec::as_slice))?;
    let base = value.cloned().unwrap_or_default();
    let ring = match created.rotated.get(&secret_key) {
        Some(rotated) if rotated.key == reference.key && rotated.base == base => rotated.at(now),
        _ => ring,
    };
    let shown = SigningSecret {
        secret: reference.name,
        ring,
    };
    Ok((shown, secret_key, reference.key, base))
}

impl TenantStore for MemoryStore {
    fn list<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
    ) -> BoxFuture<'a, Result<Vec<Object>, StoreError>> {
        let mut objects: BTreeMap<String, Object> = self
            .created
            .borrow()
            .in_namespace(kind, namespace)
            .into_iter()
            .collect();
        // The file's object wins a name both define.
        objects.extend(self.files.borrow().in_namespace(kind, namespace));
        let objects = objects.into_values().collect();
        async move { Ok(objects) }.boxed()
    }

    fn get<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        let key = Self::key(namespace, name);
        let found = self
            .files
            .borrow()
            .object(kind, &key)
            .or_else(|| self.created.borrow().object(kind, &key));
        let result = found.ok_or_else(|| StoreError::NotFound {
            kind: kind.kind(),
            name: name.to_owned(),
        });
        async move { result }.boxed()
    }

    fn create<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: Spec,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        let kind = spec.kind();
        let key = Self::key(namespace, name);
        let exists = StoreError::AlreadyExists {
            kind: kind.kind(),
            name: name.to_owned(),
        };
        let result = if self.file_defined(kind, &key) {
            Err(exists)
        } else {
            self.modify(|objects| {
                if objects.contains(kind, &key) {
                    return Err(exists);
                }
                Ok(match spec {
                    Spec::Endpoint(spec) => {
                        let object = store::endpoint(namespace, name, spec);
                        let shown = Object::of(&object);
                        objects.endpoints.insert(key, object);
                        shown
                    }
                    Spec::Subscription(spec) => {
                        let object = store::subscription(namespace, name, spec);
                        let shown = Object::of(&object);
                        objects.subscriptions.insert(key, object);
                        shown
                    }
                })
            })
        };
        async move { result }.boxed()
    }

    fn replace<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        spec: Spec,
    ) -> BoxFuture<'a, Result<Object, StoreError>> {
        let kind = spec.kind();
        let key = Self::key(namespace, name);
        let result = if self.file_defined(kind, &key) {
            Err(Self::read_only(kind, name))
        } else {
            self.modify(|objects| {
                let not_found = || StoreError::NotFound {
                    kind: kind.kind(),
                    name: name.to_owned(),
                };
                match spec {
                    Spec::Endpoint(spec) => {
                        let object = objects.endpoints.get_mut(&key).ok_or_else(not_found)?;
                        object.spec = spec;
                        Ok(Object::of(object))
                    }
                    Spec::Subscription(spec) => {
                        let object = objects.subscriptions.get_mut(&key).ok_or_else(not_found)?;
                        object.spec = spec;
                        Ok(Object::of(object))
                    }
                }
            })
        };
        async move { result }.boxed()
    }

    fn delete<'a>(
        &'a self,
        namespace: &'a str,
        kind: Kind,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = Self::key(namespace, name);
        let result = if self.file_defined(kind, &key) {
            Err(Self::read_only(kind, name))
        } else {
            self.modify(|objects| {
                let removed = match kind {
                    Kind::Endpoint => objects.endpoints.remove(&key).is_some(),
                    Kind::Subscription => objects.subscriptions.remove(&key).is_some(),
                };
                removed.then_some(()).ok_or_else(|| StoreError::NotFound {
                    kind: kind.kind(),
                    name: name.to_owned(),
                })
            })
        };
        async move { result }.boxed()
    }

    fn signing_secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<SigningSecret, StoreError>> {
        let result = signing_keys(
            &self.files.borrow(),
            &self.created.borrow(),
            namespace,
            name,
            Timestamp::now(),
        )
        .map(|(shown, ..)| shown);
        async move { result }.boxed()
    }

    fn rotate_signing_key<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
        overlap: Duration,
    ) -> BoxFuture<'a, Result<SigningSecret, StoreError>> {
        let now = Timestamp::now();
        let files = self.files.borrow().clone();
        let result = self.modify(|created| {
            let (mut shown, secret, key, base) =
                signing_keys(&files, created, namespace, name, now)?;
            shown.ring.rotate(SigningKeys::generate(), now, overlap);
            let rotated = Rotated {
                key,
                base,
                ring: shown.ring.clone(),
            };
            created.rotated.insert(secret, rotated);
            Ok(shown)
        });
        async move { result }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{EventSubscriptionSpec, event_subscription::EndpointRef};

    fn endpoint_spec(url: &str) -> Spec {
        Spec::Endpoint(serde_json::from_value(serde_json::json!({ "url": url })).unwrap())
    }

    fn manifests_with_file_endpoint() -> Manifests {
        let mut manifests = Manifests::default();
        manifests.endpoints.insert(
            "acme".into(),
            vec![store::endpoint(
                "acme",
                "from-file",
                serde_json::from_value(serde_json::json!({ "url": "https://file.example" }))
                    .unwrap(),
            )],
        );
        manifests
    }

    #[tokio::test]
    async fn api_objects_live_beside_file_objects_which_stay_read_only() {
        let (store, mut link, _keys) = store();
        link.merge(&mut manifests_with_file_endpoint());

        let created = store
            .create("acme", "api", endpoint_spec("https://api.example"))
            .await
            .unwrap();
        assert_eq!(created.spec["url"], "https://api.example");
        assert_eq!(
            store
                .create("acme", "from-file", endpoint_spec("https://x.example"))
                .await,
            Err(StoreError::AlreadyExists {
                kind: "WebhookEndpoint",
                name: "from-file".into()
            })
        );
        assert!(matches!(
            store.delete("acme", Kind::Endpoint, "from-file").await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .replace("acme", "from-file", endpoint_spec("https://y.example"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        let names = |objects: Vec<Object>| objects.into_iter().map(|o| o.name).collect::<Vec<_>>();
        assert_eq!(
            names(store.list("acme", Kind::Endpoint).await.unwrap()),
            ["api", "from-file"]
        );
        // Another namespace sees neither.
        assert!(
            store
                .list("globex", Kind::Endpoint)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            store.get("globex", Kind::Endpoint, "api").await,
            Err(StoreError::NotFound { .. })
        ));

        // The watcher compiles both, and wakes up for the API's change.
        let generation = link.revision(Timestamp::now()).0;
        assert!(generation > 0);
        let mut manifests = manifests_with_file_endpoint();
        link.merge(&mut manifests);
        assert_eq!(manifests.endpoints["acme"].len(), 2);

        store
            .create(
                "acme",
                "sub",
                Spec::Subscription(EventSubscriptionSpec {
                    endpoint_ref: EndpointRef { name: "api".into() },
                    event_types: vec!["order.*".into()],
                    filter: None,
                }),
            )
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), link.changed())
            .await
            .unwrap();
        store.delete("acme", Kind::Endpoint, "api").await.unwrap();
        assert!(link.revision(Timestamp::now()).0 > generation);
        let mut manifests = manifests_with_file_endpoint();
        link.merge(&mut manifests);
        assert_eq!(manifests.endpoints["acme"].len(), 1);
        assert_eq!(manifests.subscriptions["acme"].len(), 1);
        assert!(matches!(
            store.delete("acme", Kind::Endpoint, "api").await,
            Err(StoreError::NotFound { .. })
        ));
    }

    /// Manifests of endpoint `orders` and its Secret holding `value`, handed over to it.
    fn manifests_with_signing_secret(value: &str) -> Manifests {
        let text = format!(
            "apiVersion: webhook-operator.io/v1alpha1\nkind: WebhookEndpoint\nmetadata: {{ name: orders, namespace: acme }}\nspec: {{ url: \"https://orders.example\" }}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{ name: orders-signing, namespace: acme, annotations: {{ webhook-operator.io/signing-key-for: orders }} }}\nstringData: {{ secret: \"{value}\" }}\n"
        );
        crate::local::manifests::load(&[(std::path::PathBuf::from("acme.yaml"), text)])
    }

    fn delivered_value(manifests: &Manifests) -> String {
        String::from_utf8_lossy(&manifests.data["acme"].secrets["orders-signing"]["secret"])
            .into_owned()
    }

    #[tokio::test]
    async fn rotations_live_in_memory_until_the_file_changes() {
        let (store, mut link, _keys) = store();
        let old = SigningKeys::generate();
        let mut manifests = manifests_with_signing_secret(&old);
        assert!(manifests.errors.is_empty(), "{:?}", manifests.errors);
        link.merge(&mut manifests);
        let shown = store.signing_secret("acme", "orders").await.unwrap();
        assert_eq!(shown.ring.keys().collect::<Vec<_>>(), [old.as_str()]);

        let hour = Duration::from_secs(3600);
        let rotated = store
            .rotate_signing_key("acme", "orders", hour)
            .await
            .unwrap();
        let keys: Vec<String> = rotated.ring.keys().map(str::to_owned).collect();
        assert_eq!((keys.len(), keys[1].as_str()), (2, old.as_str()));
        // What delivery gets: the rotated keys, in place of the file's value.
        let mut manifests = manifests_with_signing_secret(&old);
        link.merge(&mut manifests);
        assert_eq!(delivered_value(&manifests), keys.join(" "));
        let later = Timestamp::now() + jiff::SignedDuration::from_hours(2);
        assert_eq!(
            link.revision(later).1,
            1,
            "the old key's expiry is a change"
        );

        // Someone edits the file: it wins, and the API shows what it holds.
        let edited = SigningKeys::generate();
        let mut manifests = manifests_with_signing_secret(&edited);
        link.merge(&mut manifests);
        assert_eq!(delivered_value(&manifests), edited);
        let shown = store.signing_secret("acme", "orders").await.unwrap();
        assert_eq!(shown.ring.keys().collect::<Vec<_>>(), [edited.as_str()]);
        assert!(matches!(
            store.signing_secret("globex", "orders").await,
            Err(StoreError::NotFound { .. })
        ));
    }
}
