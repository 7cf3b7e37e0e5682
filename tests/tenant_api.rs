//! The tenant API in local mode, end to end: keys issued with `api-key create --dry-run` into the
//! manifests, objects created over HTTP, deliveries to a real receiver, the audit stream.

mod common;

use std::{
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use common::*;
use serde_json::{Value, json};

/// `webhook-operator api-key create --dry-run`: the Secret manifest (stdout) and the key (stderr).
fn issue_key(namespace: &str, name: &str) -> (String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .args([
            "api-key",
            "create",
            "--namespace",
            namespace,
            "--name",
            name,
            "--dry-run",
        ])
        .output()
        .expect("run api-key create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let manifest = String::from_utf8(output.stdout).expect("utf-8");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    let key = stderr
        .split_whitespace()
        .find(|w| w.starts_with("wok_"))
        .unwrap_or_else(|| panic!("no key in {stderr:?}"))
        .to_owned();
    assert!(
        !manifest.contains(&key),
        "the manifest holds the digest, not the key"
    );
    (format!("---\n{manifest}"), key)
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut request = self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.base),
        );
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("tenant API request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

async fn audit_records(nats: &Nats) -> Vec<(String, Value)> {
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("WEBHOOK_AUDIT").await.expect("audit stream");
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut records = Vec::new();
    for sequence in 1..=last {
        let message = stream
            .get_raw_message(sequence)
            .await
            .expect("audit record");
        let text = String::from_utf8(message.payload.to_vec()).expect("utf-8");
        let value: Value = serde_json::from_str(&text).expect("json");
        records.push((message.subject.to_string(), value));
    }
    records
}

#[tokio::test]
async fn tenants_manage_their_own_endpoints_over_http() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let (acme_keys, acme) = issue_key("acme", "ci");
    let (globex_keys, globex) = issue_key("globex", "ops");
    let signing = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{ name: orders-signing, namespace: acme }}\nstringData:\n  secret: \"{SECRET}\"\n"
    );
    // Globex's endpoint comes from a file; acme starts with nothing but its signing Secret.
    let globex_files = endpoint("globex", "billing", &receiver.url("/billing"), "")
        + &subscription("globex", "all", "billing", &[">"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let pipeline = Pipeline::start_with(
        &nats,
        &[
            ("keys.yaml", acme_keys + &globex_keys),
            ("acme.yaml", signing),
            ("globex.yaml", globex_files),
        ],
        &["--tenant-api-listen", &listen],
    )
    .await;
    let api = Api {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
    };

    // Who may call.
    let (status, _) = api.send("GET", "/v1/tenant/endpoints", None, None).await;
    assert_eq!(status, 401, "no key");
    let (_, stranger) = issue_key("acme", "unknown");
    let (status, _) = api
        .send("GET", "/v1/tenant/endpoints", Some(&stranger), None)
        .await;
    assert_eq!(status, 401, "a key nobody stored");
    let (status, me) = api.send("GET", "/v1/tenant", Some(&acme), None).await;
    assert_eq!(
        (status, me),
        (200, json!({"namespace": "acme", "keyId": "ci"}))
    );

    // Another tenant's objects do not exist for this key.
    for method in ["GET", "DELETE"] {
        let (status, _) = api
            .send(method, "/v1/tenant/endpoints/billing", Some(&acme), None)
            .await;
        assert_eq!(status, 404, "{method} of globex's endpoint with acme's key");
    }
    let (status, list) = api
        .send("GET", "/v1/tenant/endpoints", Some(&acme), None)
        .await;
    assert_eq!((status, list), (200, json!([])));
    let (status, billing) = api
        .send("GET", "/v1/tenant/endpoints/billing", Some(&globex), None)
        .await;
    assert_eq!(
        (status, &billing["spec"]["url"]),
        (200, &json!(receiver.url("/billing")))
    );
    // File-defined objects are read-only through the API.
    let (status, _) = api
        .send(
            "DELETE",
            "/v1/tenant/endpoints/billing",
            Some(&globex),
            None,
        )
        .await;
    assert_eq!(status, 409);

    // Bad bodies.
    let huge = json!({"name": "orders", "spec": {"url": format!("https://x.example/{}", "a".repeat(70_000))}});
    let (status, _) = api
        .send(
            "POST",
            "/v1/tenant/endpoints",
            Some(&acme),
            Some(huge.to_string()),
        )
        .await;
    assert_eq!(status, 413);
    let ftp = json!({"name": "orders", "spec": {"url": "ftp://orders.example"}});
    let (status, invalid) = api
        .send(
            "POST",
            "/v1/tenant/endpoints",
            Some(&acme),
            Some(ftp.to_string()),
        )
        .await;
    assert_eq!(
        (status, &invalid["field"], &invalid["reason"]),
        (422, &json!("spec.url"), &json!("InvalidUrl")),
        "{invalid}"
    );

    // Create an endpoint and a subscription: deliveries flow, signed with the endpoint's Secret.
    let orders =
        json!({"name": "orders", "spec": {"url": receiver.url("/orders"), "timeout": "2s"}});
    let (status, created) = api
        .send(
            "POST",
            "/v1/tenant/endpoints",
            Some(&acme),
            Some(orders.to_string()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let paid = json!({"name": "paid", "spec": {"endpointRef": {"name": "orders"}, "eventTypes": ["order.*"]}});
    let (status, created) = api
        .send(
            "POST",
            "/v1/tenant/subscriptions",
            Some(&acme),
            Some(paid.to_string()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let (_, listed) = api
        .send("GET", "/v1/tenant/subscriptions", Some(&acme), None)
        .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    let mut n = 0;
    let delivered = wait_until(Duration::from_secs(20), || {
        n += 1;
        let (pipeline, receiver) = (&pipeline, &receiver);
        async move {
            pipeline
                .ingest(
                    "acme",
                    "order.paid",
                    "{\"order\":1}",
                    Some(&format!("probe-{n}")),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            !receiver.received("/orders").is_empty()
        }
    })
    .await;
    assert!(
        delivered,
        "no delivery to the API-created endpoint\n{}",
        pipeline.log_text()
    );
    let first = &receiver.received("/orders")[0];
    verify(SECRET, first).expect("signed with the endpoint's Secret");
    assert_eq!(header(first, "webhook-event-type"), "order.paid");
    assert!(
        receiver.received("/billing").is_empty(),
        "acme's events stay in acme"
    );

    // Delete the subscription: deliveries stop.
    let (status, _) = api
        .send("DELETE", "/v1/tenant/subscriptions/paid", Some(&acme), None)
        .await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = receiver.received("/orders").len();
    pipeline
        .ingest("acme", "order.paid", "{}", Some("after-delete"))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.received("/orders").len(),
        count,
        "delivered after the subscription was deleted"
    );
    let (status, _) = api
        .send("DELETE", "/v1/tenant/endpoints/orders", Some(&acme), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .send("GET", "/v1/tenant/endpoints/orders", Some(&acme), None)
        .await;
    assert_eq!(status, 404);

    // Every change attempted with a key is audited, by key id and tenant; no key anywhere.
    let records = audit_records(&nats).await;
    let summary: Vec<(String, String, String, String, u64)> = records
        .iter()
        .map(|(_, r)| {
            let s = |f: &str| r[f].as_str().unwrap_or_default().to_owned();
            (
                s("keyId"),
                s("action"),
                s("name"),
                s("outcome"),
                r["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let expect = |key: &str, action: &str, name: &str, outcome: &str, status: u64| {
        (
            key.to_owned(),
            action.to_owned(),
            name.to_owned(),
            outcome.to_owned(),
            status,
        )
    };
    assert_eq!(
        summary,
        [
            expect("ci", "delete", "billing", "rejected", 404),
            expect("ops", "delete", "billing", "rejected", 409),
            expect("ci", "create", "", "rejected", 413),
            expect("ci", "create", "orders", "rejected", 422),
            expect("ci", "create", "orders", "success", 201),
            expect("ci", "create", "paid", "success", 201),
            expect("ci", "delete", "paid", "success", 204),
            expect("ci", "delete", "orders", "success", 204),
        ],
        "{records:?}"
    );
    assert!(records.iter().all(|(subject, r)| *subject
        == format!("webhook.audit.{}", r["tenant"].as_str().unwrap_or_default())));
    assert!(records.iter().all(|(_, r)| r["time"].is_string()));
    let everything = format!("{records:?}{}", pipeline.log_text());
    for key in [&acme, &globex, &stranger] {
        assert!(
            !everything.contains(key.as_str()),
            "a key leaked into the audit records or logs"
        );
    }
    assert!(
        pipeline.log_text().contains("tenant API change"),
        "the audit tracing line"
    );
}

/// How many signatures a delivery carries (one per active key).
fn signatures(delivery: &Received) -> usize {
    header(delivery, "webhook-signature")
        .split_whitespace()
        .count()
}

/// Probe events published so far (their ids must differ).
static PROBES: AtomicUsize = AtomicUsize::new(0);

/// Publishes probes until a delivery to `path` arriving from now on satisfies `wanted`; returns
/// the latest such.
async fn delivery_where(
    pipeline: &Pipeline,
    receiver: &Receiver,
    path: &str,
    wanted: impl Fn(&Received) -> bool,
) -> Received {
    let before = receiver.received(path).len();
    let matching = || {
        receiver
            .received(path)
            .into_iter()
            .skip(before)
            .rev()
            .find(|d| wanted(d))
    };
    let seen = wait_until(Duration::from_secs(30), || {
        let matching = &matching;
        async move {
            let n = PROBES.fetch_add(1, Ordering::Relaxed);
            pipeline
                .ingest("acme", "order.paid", "{}", Some(&format!("probe-{n}")))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            matching().is_some()
        }
    })
    .await;
    assert!(seen, "no such delivery\n{}", pipeline.log_text());
    matching().expect("delivery")
}

#[tokio::test]
async fn signing_keys_are_read_and_rotated_over_http_and_deliveries_follow() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let (acme_keys, acme) = issue_key("acme", "ci");
    let (globex_keys, globex) = issue_key("globex", "ops");
    // orders' Secret is handed over to it; sneaky points its secretRef at another app's Secret.
    let files = format!(
        r#"---
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: {{ name: orders, namespace: acme }}
spec:
  url: {orders}
{FAST_RETRY}
---
apiVersion: v1
kind: Secret
metadata:
  name: orders-signing
  namespace: acme
  annotations: {{ webhook-operator.io/signing-key-for: orders }}
stringData:
  secret: "{SECRET}"
---
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: {{ name: sneaky, namespace: acme }}
spec:
  url: {sneaky}
  secretRef: {{ name: db-credentials, key: password }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: db-credentials, namespace: acme }}
stringData:
  password: "{SECRET_2}"
"#,
        orders = receiver.url("/orders"),
        sneaky = receiver.url("/sneaky"),
    ) + &subscription("acme", "paid", "orders", &["order.*"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let pipeline = Pipeline::start_logged(
        &nats,
        &[
            ("keys.yaml", acme_keys + &globex_keys),
            ("acme.yaml", files),
        ],
        &["--tenant-api-listen", &listen, "--allow-private-networks"],
        "debug,async_nats=info,hyper=info,reqwest=info",
    )
    .await;
    let api = Api {
        base: format!("http://{listen}"),
        http: reqwest::Client::new(),
    };
    let secret = "/v1/tenant/endpoints/orders/secret";
    let rotate = "/v1/tenant/endpoints/orders/secret/rotate";

    let (status, shown) = api.send("GET", secret, Some(&acme), None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        shown,
        json!({"key": SECRET, "keys": [SECRET], "secretName": "orders-signing"})
    );
    let (status, _) = api.send("GET", secret, None, None).await;
    assert_eq!(status, 401);
    let (status, _) = api.send("GET", secret, Some(&globex), None).await;
    assert_eq!(status, 404, "another tenant's endpoint");
    let (status, refused) = api
        .send(
            "GET",
            "/v1/tenant/endpoints/sneaky/secret",
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(
        (status, &refused["reason"]),
        (409, &json!("SecretNotManaged"))
    );
    assert!(!refused.to_string().contains(SECRET_2));

    // Rotate, keeping the old key for an hour: deliveries carry both signatures.
    let (status, rotated) = api
        .send(
            "POST",
            rotate,
            Some(&acme),
            Some(json!({"overlap": "1h"}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let first = rotated["key"].as_str().expect("new key").to_owned();
    assert_eq!(rotated["keys"], json!([first, SECRET]));
    assert!(rotated["previousKeysExpire"].is_string(), "{rotated}");
    let both = delivery_where(&pipeline, &receiver, "/orders", |d| {
        verify(&first, d).is_ok()
    })
    .await;
    assert_eq!(signatures(&both), 2);
    verify(SECRET, &both).expect("the old key still signs");

    // Rotate again with a short overlap: once it is over, only the newest key signs.
    let (status, rotated) = api
        .send(
            "POST",
            rotate,
            Some(&acme),
            Some(json!({"overlap": "2s"}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["key"].as_str().expect("new key").to_owned();
    assert_eq!(rotated["keys"], json!([second, first, SECRET]));
    let single = delivery_where(&pipeline, &receiver, "/orders", |d| signatures(d) == 1).await;
    verify(&second, &single).expect("the newest key signs");
    assert!(verify(&first, &single).is_err() && verify(SECRET, &single).is_err());
    let (_, shown) = api.send("GET", secret, Some(&acme), None).await;
    assert_eq!(shown["keys"], json!([second]), "{shown}");

    // Reads and rotations are audited; no key, signing or API, in the records or the logs.
    let records = audit_records(&nats).await;
    let summary: Vec<(String, String, u64)> = records
        .iter()
        .map(|(_, r)| {
            let s = |f: &str| r[f].as_str().unwrap_or_default().to_owned();
            (s("action"), s("name"), r["status"].as_u64().unwrap_or(0))
        })
        .collect();
    let expect =
        |action: &str, name: &str, status: u64| (action.to_owned(), name.to_owned(), status);
    assert_eq!(
        summary,
        [
            expect("readSecret", "orders", 200),
            expect("readSecret", "orders", 404),
            expect("readSecret", "sneaky", 409),
            expect("rotateSecret", "orders", 200),
            expect("rotateSecret", "orders", 200),
            expect("readSecret", "orders", 200),
        ],
        "{records:?}"
    );
    let log = pipeline.log_text();
    assert!(log.contains("DEBUG"), "debug logging is on");
    assert!(log.contains("tenant API read of signing keys"));
    let everything = format!("{records:?}{log}");
    for key in [SECRET, SECRET_2, &first, &second] {
        assert!(
            !everything.contains(&key["whsec_".len()..]),
            "a signing key leaked into the audit records or logs"
        );
    }
    for key in [&acme, &globex] {
        assert!(!everything.contains(key.as_str()), "an API key leaked");
    }
}
