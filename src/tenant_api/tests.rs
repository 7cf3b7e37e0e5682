//! The tenant API over HTTP against a mocked Kubernetes API server (tower-test): which calls it
//! makes, in which namespace, with which body, and what the caller gets back.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use futures::{FutureExt, future::BoxFuture};
use http::{Request, Response};
use kube::{Client, client::Body};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{
    TenantApiState,
    audit::{AuditRecord, AuditSink, Outcome},
    cluster::KubeStore,
    keys::{ApiKey, KeyIndex, key_secret},
};
use crate::model::signing_keys::{SigningKeys, fingerprint};

const ENDPOINTS: &str = "/apis/webhook-operator.io/v1alpha1/namespaces";

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: Value,
}

/// A small API server: keeps objects by path, honours resourceVersion on PUT, records calls.
#[derive(Clone, Default)]
struct MockApi {
    calls: Arc<Mutex<Vec<Call>>>,
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason})
}

impl MockApi {
    fn start() -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api = Self::default();
        let this = api.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let path = parts.uri.path().to_owned();
                let method = parts.method.to_string();
                this.calls.lock().unwrap().push(Call {
                    method: method.clone(),
                    path: path.clone(),
                    body: body.clone(),
                });
                let (code, answer) = this.answer(&method, &path, body);
                let response = Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()));
                send.send_response(response.unwrap());
            }
        });
        (Client::new(service, "default"), api)
    }

    fn answer(&self, method: &str, path: &str, mut body: Value) -> (u16, Value) {
        let mut objects = self.objects.lock().unwrap();
        let collection =
            path.ends_with("/webhookendpoints") || path.ends_with("/eventsubscriptions");
        match (method, collection) {
            ("GET", true) => {
                let prefix = format!("{path}/");
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(p, _)| p.starts_with(&prefix))
                    .map(|(_, o)| o.clone())
                    .collect();
                (
                    200,
                    json!({"apiVersion": "webhook-operator.io/v1alpha1", "kind": "List", "metadata": {}, "items": items}),
                )
            }
            ("GET", false) => match objects.get(path) {
                Some(object) => (200, object.clone()),
                None => (404, status(404, "NotFound")),
            },
            ("POST", true) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let at = format!("{path}/{name}");
                if objects.contains_key(&at) {
                    return (409, status(409, "AlreadyExists"));
                }
                body["metadata"]["resourceVersion"] = json!("1");
                objects.insert(at, body.clone());
                (201, body)
            }
            ("PUT", false) => {
                let Some(stored) = objects.get(path) else {
                    return (404, status(404, "NotFound"));
                };
                let version = stored["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or("0")
                    .to_owned();
                if body["metadata"]["resourceVersion"] != json!(version) {
                    return (409, status(409, "Conflict"));
                }
                let next: u64 = version.parse::<u64>().unwrap_or(0) + 1;
                body["metadata"]["resourceVersion"] = json!(next.to_string());
                objects.insert(path.to_owned(), body.clone());
                (200, body)
            }
            // Merge patches (a signing Secret's rotation), with resourceVersion as a precondition.
            ("PATCH", false) => {
                let Some(stored) = objects.get_mut(path) else {
                    return (404, status(404, "NotFound"));
                };
                let version: u64 = stored["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let asked = &body["metadata"]["resourceVersion"];
                if asked.is_string() && *asked != json!(version.to_string()) {
                    return (409, status(409, "Conflict"));
                }
                json_patch::merge(stored, &body);
                stored["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                (200, stored.clone())
            }
            ("DELETE", false) => match objects.remove(path) {
                Some(_) => (
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                None => (404, status(404, "NotFound")),
            },
            _ => (405, status(405, "MethodNotAllowed")),
        }
    }

    fn seed(&self, namespace: &str, name: &str, spec: Value) {
        let path = format!("{ENDPOINTS}/{namespace}/webhookendpoints/{name}");
        let object = json!({
            "apiVersion": "webhook-operator.io/v1alpha1", "kind": "WebhookEndpoint",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "resourceVersion": "7", "finalizers": ["webhook-operator.io/cleanup"]},
            "spec": spec,
            "status": {"health": "Healthy", "delivered": 3},
        });
        self.objects.lock().unwrap().insert(path, object);
    }

    /// A Secret holding `value` under `secret`, with extra `metadata` (owner, annotations).
    fn seed_secret(&self, namespace: &str, name: &str, value: &str, metadata: Value) {
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        let mut object = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7"},
            "data": {"secret": STANDARD.encode(value)},
        });
        json_patch::merge(&mut object["metadata"], &metadata);
        self.objects.lock().unwrap().insert(path, object);
    }

    /// Endpoint `sneaky` of acme, whose secretRef names another app's Secret.
    fn seed_sneaky(&self) {
        self.seed(
            "acme",
            "sneaky",
            json!({"url": "https://x.example", "secretRef": {"name": "db-credentials"}}),
        );
        self.seed_secret("acme", "db-credentials", "hunter2-canary", json!({}));
    }

    fn secret_value(&self, namespace: &str, name: &str) -> String {
        let path = format!("/api/v1/namespaces/{namespace}/secrets/{name}");
        let objects = self.objects.lock().unwrap();
        let data = objects[&path]["data"]["secret"].as_str().unwrap();
        String::from_utf8(STANDARD.decode(data).unwrap()).unwrap()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// Metadata of a Secret the controller created for endpoint `name` (as [`MockApi::seed`] makes it).
fn owned_by(name: &str) -> Value {
    json!({"ownerReferences": [{
        "apiVersion": "webhook-operator.io/v1alpha1", "kind": "WebhookEndpoint",
        "name": name, "uid": format!("uid-{name}"), "controller": true,
    }]})
}

#[derive(Default)]
struct RecordingAudit(Mutex<Vec<AuditRecord>>);

impl AuditSink for RecordingAudit {
    fn record(&self, record: AuditRecord) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push(record);
        async {}.boxed()
    }
}

struct Harness {
    base: String,
    api: MockApi,
    audit: Arc<RecordingAudit>,
    keys: watch::Sender<Option<Arc<KeyIndex>>>,
    acme: ApiKey,
    globex: ApiKey,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (client, api) = MockApi::start();
        let acme = ApiKey::generate();
        let globex = ApiKey::generate();
        // As the API server stores them: stringData becomes data.
        let secrets: Vec<_> = [
            key_secret("acme", "ci", &acme),
            key_secret("globex", "ops", &globex),
        ]
        .into_iter()
        .map(|mut s| {
            s.data = s.string_data.take().map(|d| {
                d.into_iter()
                    .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                    .collect()
            });
            s
        })
        .collect();
        let index = super::cluster::index_of(secrets.iter());
        assert_eq!(index.len(), 2);
        let (keys, keys_rx) = watch::channel(Some(Arc::new(index)));
        let audit = Arc::new(RecordingAudit::default());
        let state = TenantApiState {
            store: Arc::new(KubeStore::new(client)),
            keys: keys_rx,
            audit: audit.clone(),
            default_overlap: crate::model::signing_keys::DEFAULT_OVERLAP,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, super::router(state)).await });
        Self {
            base,
            api,
            audit,
            keys,
            acme,
            globex,
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&ApiKey>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (code, _, body) = self.exchange(method, path, key, body).await;
        (code, body)
    }

    /// [`Self::send`], with the answer's headers.
    async fn exchange(
        &self,
        method: &str,
        path: &str,
        key: Option<&ApiKey>,
        body: Option<Value>,
    ) -> (u16, http::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key.expose());
        }
        if let Some(body) = body {
            request = request.body(serde_json::to_vec(&body).unwrap());
        }
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        (
            code,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn audit(&self) -> Vec<AuditRecord> {
        self.audit.0.lock().unwrap().clone()
    }
}

fn endpoint_body(name: &str, url: &str) -> Value {
    json!({"name": name, "spec": {"url": url, "headers": {"X-Env": "prod"}}})
}

#[tokio::test]
async fn create_posts_to_the_keys_namespace() {
    let h = Harness::start().await;
    let (code, body) = h
        .send(
            "POST",
            "/v1/tenant/endpoints",
            Some(&h.acme),
            Some(endpoint_body("orders", "https://orders.example/hook")),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["name"], "orders");
    assert_eq!(body["spec"]["url"], "https://orders.example/hook");
    assert_eq!(
        body["spec"]["retry"]["maxAttempts"], 24,
        "defaults are filled in"
    );

    let calls = h.api.calls();
    let post = calls.iter().find(|c| c.method == "POST").expect("a POST");
    assert_eq!(post.path, format!("{ENDPOINTS}/acme/webhookendpoints"));
    assert_eq!(post.body["kind"], "WebhookEndpoint");
    assert_eq!(post.body["metadata"]["namespace"], "acme");
    assert_eq!(post.body["metadata"]["name"], "orders");
    assert_eq!(post.body["spec"]["headers"]["X-Env"], "prod");
    assert!(
        calls.iter().all(|c| c.path.contains("/namespaces/acme/")),
        "{calls:?}"
    );

    // The same name again: 409.
    let (code, _) = h
        .send(
            "POST",
            "/v1/tenant/endpoints",
            Some(&h.acme),
            Some(endpoint_body("orders", "https://orders.example/hook")),
        )
        .await;
    assert_eq!(code, 409);

    let audit = h.audit();
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (
            audit[0].tenant.as_str(),
            audit[0].key_id.as_str(),
            audit[0].name.as_str()
        ),
        ("acme", "ci", "orders")
    );
    assert_eq!((audit[0].outcome, audit[0].status), (Outcome::Success, 201));
    assert_eq!(
        (audit[1].outcome, audit[1].reason.as_deref()),
        (Outcome::Rejected, Some("AlreadyExists"))
    );
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains(h.acme.expose()) && !text.contains("wok_"),
        "{text}"
    );
}

#[tokio::test]
async fn another_tenants_objects_answer_404() {
    let h = Harness::start().await;
    h.api.seed(
        "globex",
        "orders",
        json!({"url": "https://globex.example/hook"}),
    );

    for (method, body) in [
        ("GET", None),
        (
            "PUT",
            Some(json!({"spec": {"url": "https://acme.example/steal"}})),
        ),
        ("DELETE", None),
    ] {
        let (code, answer) = h
            .send(method, "/v1/tenant/endpoints/orders", Some(&h.acme), body)
            .await;
        assert_eq!(code, 404, "{method}: {answer}");
        assert_eq!(answer["reason"], "NotFound");
    }
    let (code, list) = h
        .send("GET", "/v1/tenant/endpoints", Some(&h.acme), None)
        .await;
    assert_eq!((code, list), (200, json!([])));
    assert!(
        h.api.calls().iter().all(|c| !c.path.contains("/globex/")),
        "an acme key never reaches globex: {:?}",
        h.api.calls()
    );

    // Globex's own key sees it, status included, and it is untouched.
    let (code, object) = h
        .send("GET", "/v1/tenant/endpoints/orders", Some(&h.globex), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(object["spec"]["url"], "https://globex.example/hook");
    assert_eq!(object["status"]["health"], "Healthy");
}

#[tokio::test]
async fn replace_swaps_the_whole_spec_and_delete_removes() {
    let h = Harness::start().await;
    h.api.seed(
        "acme",
        "orders",
        json!({"url": "https://old.example", "headers": {"X-Old": "1"}, "paused": true}),
    );

    let (code, object) = h
        .send(
            "PUT",
            "/v1/tenant/endpoints/orders",
            Some(&h.acme),
            Some(json!({"spec": {"url": "https://new.example/hook"}})),
        )
        .await;
    assert_eq!(code, 200, "{object}");
    assert_eq!(object["spec"]["url"], "https://new.example/hook");
    assert!(
        object["spec"].get("headers").is_none(),
        "a replace drops what the new spec leaves out"
    );
    assert_eq!(object["spec"]["paused"], false);
    let calls = h.api.calls();
    let put = calls.iter().find(|c| c.method == "PUT").expect("a PUT");
    assert_eq!(
        put.path,
        format!("{ENDPOINTS}/acme/webhookendpoints/orders")
    );
    assert_eq!(
        put.body["metadata"]["resourceVersion"], "7",
        "optimistic concurrency"
    );
    assert_eq!(
        put.body["metadata"]["finalizers"],
        json!(["webhook-operator.io/cleanup"]),
        "metadata kept"
    );

    let (code, _) = h
        .send("DELETE", "/v1/tenant/endpoints/orders", Some(&h.acme), None)
        .await;
    assert_eq!(code, 204);
    assert!(
        h.api.calls().iter().any(|c| c.method == "DELETE"
            && c.path == format!("{ENDPOINTS}/acme/webhookendpoints/orders"))
    );
    let (code, _) = h
        .send("GET", "/v1/tenant/endpoints/orders", Some(&h.acme), None)
        .await;
    assert_eq!(code, 404);

    let actions: Vec<_> = h.audit().iter().map(|r| (r.action, r.outcome)).collect();
    use super::audit::Action;
    assert_eq!(
        actions,
        [
            (Action::Replace, Outcome::Success),
            (Action::Delete, Outcome::Success)
        ]
    );
}

#[tokio::test]
async fn keys_are_required_and_checked_before_anything_else() {
    let h = Harness::start().await;
    let wrong = ApiKey::generate();
    let body = Some(endpoint_body("orders", "https://orders.example"));
    for (key, auth) in [
        (None, None),
        (Some(&wrong), None),
        (None, Some(format!("Basic {}", h.acme.expose()))),
        (None, Some(h.acme.expose().to_owned())),
    ] {
        let mut request = h
            .http
            .post(format!("{}/v1/tenant/endpoints", h.base))
            .body(serde_json::to_vec(&body).unwrap());
        if let Some(key) = key {
            request = request.bearer_auth(key.expose());
        }
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert!(response.headers().contains_key("www-authenticate"));
    }
    // A scheme in any case is accepted.
    let response = h
        .http
        .get(format!("{}/v1/tenant", h.base))
        .header("authorization", format!("bearer {}", h.acme.expose()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&response.bytes().await.unwrap()).unwrap(),
        json!({"namespace": "acme", "keyId": "ci"})
    );

    // Keys not loaded yet: 503, not 401.
    h.keys.send_replace(None);
    let (code, _) = h
        .send("GET", "/v1/tenant/endpoints", Some(&h.acme), None)
        .await;
    assert_eq!(code, 503);
    assert!(h.api.calls().is_empty(), "nothing reached the API server");
    assert!(h.audit().is_empty(), "no identity, no audit record");
}

#[tokio::test]
async fn invalid_bodies_never_reach_the_api_server() {
    let h = Harness::start().await;
    let (code, answer) = h
        .send(
            "POST",
            "/v1/tenant/endpoints",
            Some(&h.acme),
            Some(json!({"name": "a", "spec": {"url": "https://a.example", "timeout": "soon"}})),
        )
        .await;
    assert_eq!(
        (code, answer["field"].as_str()),
        (422, Some("spec.timeout")),
        "{answer}"
    );
    let (code, answer) = h
        .send("POST", "/v1/tenant/subscriptions", Some(&h.acme), Some(json!({"name": "s", "spec": {"endpointRef": {"name": "missing"}, "eventTypes": ["a"]}})))
        .await;
    assert_eq!(
        (code, answer["reason"].as_str()),
        (422, Some("EndpointNotFound")),
        "{answer}"
    );
    assert_eq!(answer["field"], "spec.endpointRef.name");
    let big = "x".repeat(super::http::MAX_BODY_BYTES + 1);
    let (code, answer) = h
        .send(
            "POST",
            "/v1/tenant/endpoints",
            Some(&h.acme),
            Some(json!({"name": "a", "spec": {"url": format!("https://a.example/{big}")}})),
        )
        .await;
    assert_eq!(
        (code, answer["reason"].as_str()),
        (413, Some("PayloadTooLarge"))
    );
    // Names that cannot exist never reach an API path.
    for method in ["GET", "DELETE"] {
        let (code, _) = h
            .send(
                method,
                "/v1/tenant/endpoints/..%2F..%2F..%2Fapi%2Fv1%2Fsecrets",
                Some(&h.acme),
                None,
            )
            .await;
        assert_eq!(code, 404, "{method}");
    }
    let (code, _) = h
        .send(
            "PUT",
            "/v1/tenant/endpoints/..%2Fx",
            Some(&h.acme),
            Some(json!({"spec": {"url": "https://a.example"}})),
        )
        .await;
    assert_eq!(code, 422);
    let (code, _) = h
        .send("GET", "/v1/tenant/widgets", Some(&h.acme), None)
        .await;
    assert_eq!(code, 404);

    let calls = h.api.calls();
    assert!(
        calls.iter().all(|c| c.method == "GET"),
        "only the endpoint lookup: {calls:?}"
    );
    let reasons: Vec<_> = h
        .audit()
        .into_iter()
        .map(|r| (r.status, r.reason.unwrap_or_default()))
        .collect();
    assert_eq!(
        reasons,
        [
            (422, "InvalidDuration".into()),
            (422, "EndpointNotFound".into()),
            (413, "PayloadTooLarge".into()),
            (404, "NotFound".into()),
            (422, "InvalidName".into()),
        ]
    );

    // With the endpoint there, the subscription goes to the API server.
    h.api
        .seed("acme", "orders", json!({"url": "https://orders.example"}));
    let (code, answer) = h
        .send("POST", "/v1/tenant/subscriptions", Some(&h.acme), Some(json!({"name": "s", "spec": {"endpointRef": {"name": "orders"}, "eventTypes": ["order.*"]}})))
        .await;
    assert_eq!(code, 201, "{answer}");
    let post = h
        .api
        .calls()
        .into_iter()
        .find(|c| c.method == "POST")
        .unwrap();
    assert_eq!(post.path, format!("{ENDPOINTS}/acme/eventsubscriptions"));
    assert_eq!(
        post.body["spec"],
        json!({"endpointRef": {"name": "orders"}, "eventTypes": ["order.*"]})
    );
}

#[tokio::test]
async fn signing_keys_are_shown_for_managed_secrets_of_the_keys_namespace_only() {
    let h = Harness::start().await;
    let key = SigningKeys::generate();
    h.api
        .seed("acme", "orders", json!({"url": "https://orders.example"}));
    h.api
        .seed_secret("acme", "orders-signing", &key, owned_by("orders"));
    let path = "/v1/tenant/endpoints/orders/secret";

    let (code, headers, answer) = h.exchange("GET", path, Some(&h.acme), None).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"key": key, "keys": [key], "secretName": "orders-signing"})
    );
    assert_eq!(headers["cache-control"], "no-store");

    // No key, another tenant's key: nothing.
    let (code, _) = h.send("GET", path, None, None).await;
    assert_eq!(code, 401);
    let (code, answer) = h.send("GET", path, Some(&h.globex), None).await;
    assert_eq!((code, &answer["reason"]), (404, &json!("NotFound")));

    // secretRef pointing at another app's Secret of the namespace: not shown.
    h.api.seed_sneaky();
    let (code, answer) = h
        .send(
            "GET",
            "/v1/tenant/endpoints/sneaky/secret",
            Some(&h.acme),
            None,
        )
        .await;
    assert_eq!((code, &answer["reason"]), (409, &json!("SecretNotManaged")));
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("webhook-operator.io/signing-key-for"),
        "{answer}"
    );
    // A Secret the controller made for an earlier endpoint of the same name: not this one's.
    h.api
        .seed("acme", "stale", json!({"url": "https://x.example"}));
    let mut stale_owner = owned_by("stale");
    stale_owner["ownerReferences"][0]["uid"] = json!("uid-of-a-deleted-endpoint");
    h.api
        .seed_secret("acme", "stale-signing", &key, stale_owner);
    let (code, _) = h
        .send(
            "GET",
            "/v1/tenant/endpoints/stale/secret",
            Some(&h.acme),
            None,
        )
        .await;
    assert_eq!(code, 409);
    // One handed over by annotation is shown.
    h.api.seed(
        "acme",
        "byo",
        json!({"url": "https://x.example", "secretRef": {"name": "own-key"}}),
    );
    h.api.seed_secret(
        "acme",
        "own-key",
        &key,
        json!({"annotations": {"webhook-operator.io/signing-key-for": "byo"}}),
    );
    let (code, answer) = h
        .send(
            "GET",
            "/v1/tenant/endpoints/byo/secret",
            Some(&h.acme),
            None,
        )
        .await;
    assert_eq!((code, &answer["key"]), (200, &json!(key)));
    // The controller has not created it yet.
    h.api
        .seed("acme", "fresh", json!({"url": "https://x.example"}));
    let (code, answer) = h
        .send(
            "GET",
            "/v1/tenant/endpoints/fresh/secret",
            Some(&h.acme),
            None,
        )
        .await;
    assert_eq!((code, &answer["reason"]), (409, &json!("SecretNotFound")));
    assert!(answer["error"].as_str().unwrap().contains("try again"));

    // Every read is audited, successful or not, without key material.
    let audit = h.audit();
    let reads: Vec<_> = audit
        .iter()
        .map(|r| (r.action, r.name.as_str(), r.status))
        .collect();
    use super::audit::Action::ReadSecret;
    assert_eq!(
        reads,
        [
            (ReadSecret, "orders", 200),
            (ReadSecret, "orders", 404),
            (ReadSecret, "sneaky", 409),
            (ReadSecret, "stale", 409),
            (ReadSecret, "byo", 200),
            (ReadSecret, "fresh", 409),
        ]
    );
    assert_eq!(audit[1].tenant, "globex");
    let text = serde_json::to_string(&audit).unwrap();
    assert!(
        !text.contains(&key[6..]) && !text.contains("whsec_") && !text.contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn rotation_puts_a_new_key_first_and_keeps_the_old_one_for_the_overlap() {
    let h = Harness::start().await;
    let old = SigningKeys::generate();
    h.api
        .seed("acme", "orders", json!({"url": "https://orders.example"}));
    h.api
        .seed_secret("acme", "orders-signing", &old, owned_by("orders"));
    let rotate = "/v1/tenant/endpoints/orders/secret/rotate";

    let before = jiff::Timestamp::now();
    let (code, answer) = h
        .send(
            "POST",
            rotate,
            Some(&h.acme),
            Some(json!({"overlap": "1h"})),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let new = answer["key"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!(answer["keys"], json!([new, old]));
    let expire: jiff::Timestamp = answer["previousKeysExpire"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let hour = jiff::SignedDuration::from_hours(1);
    assert!(expire >= before + hour && expire <= jiff::Timestamp::now() + hour);

    // One merge patch, guarded by the version read; the keys newest first, the old key's
    // expiry beside them by fingerprint.
    let calls = h.api.calls();
    let patches: Vec<_> = calls.iter().filter(|c| c.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{calls:?}");
    assert_eq!(
        patches[0].path,
        "/api/v1/namespaces/acme/secrets/orders-signing"
    );
    assert_eq!(patches[0].body["metadata"]["resourceVersion"], "7");
    assert_eq!(
        h.api.secret_value("acme", "orders-signing"),
        format!("{new} {old}")
    );
    let expiry =
        patches[0].body["metadata"]["annotations"]["webhook-operator.io/signing-key-expiry"]
            .as_str()
            .unwrap();
    assert!(
        expiry.contains(&fingerprint(&old)) && !expiry.contains(&old[6..]),
        "{expiry}"
    );
    let (_, shown) = h
        .send(
            "GET",
            "/v1/tenant/endpoints/orders/secret",
            Some(&h.acme),
            None,
        )
        .await;
    assert_eq!(shown["keys"], json!([new, old]));

    // Without a body: the default overlap.
    let (code, answer) = h.send("POST", rotate, Some(&h.acme), None).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["keys"].as_array().map(Vec::len), Some(3));

    // Overlaps are bounded; bodies are checked.
    for (body, code, reason) in [
        (json!({"overlap": "169h"}), 422, "InvalidOverlap"),
        (json!({"overlap": "soon"}), 422, "InvalidDuration"),
        (json!({"overlap": 3600}), 400, "InvalidBody"),
        (
            json!({"overlap": "1h", "key": "whsec_mine"}),
            400,
            "InvalidBody",
        ),
    ] {
        let (status, answer) = h
            .send("POST", rotate, Some(&h.acme), Some(body.clone()))
            .await;
        assert_eq!(
            (status, answer["reason"].as_str()),
            (code, Some(reason)),
            "{body}"
        );
    }
    // Another tenant's endpoint, and a Secret the operator does not manage: untouched.
    let (code, _) = h.send("POST", rotate, Some(&h.globex), None).await;
    assert_eq!(code, 404);
    h.api.seed_sneaky();
    let (code, answer) = h
        .send(
            "POST",
            "/v1/tenant/endpoints/sneaky/secret/rotate",
            Some(&h.acme),
            None,
        )
        .await;
    assert_eq!((code, &answer["reason"]), (409, &json!("SecretNotManaged")));
    assert_eq!(
        h.api.secret_value("acme", "db-credentials"),
        "hunter2-canary"
    );
    assert_eq!(
        h.api.calls().iter().filter(|c| c.method == "PATCH").count(),
        2,
        "only the two rotations wrote"
    );

    let audit = h.audit();
    let rotations: Vec<_> = audit
        .iter()
        .filter(|r| r.action == super::audit::Action::RotateSecret)
        .map(|r| (r.outcome, r.status))
        .collect();
    assert_eq!(rotations.len(), 8, "{audit:?}");
    assert_eq!(rotations[0], (Outcome::Success, 200));
    let text = serde_json::to_string(&audit).unwrap();
    assert!(!text.contains("whsec_"), "{text}");
}
