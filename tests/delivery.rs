//! Events published to NATS or the HTTP ingest reach the right endpoints, signed and unchanged.

mod common;

use std::collections::BTreeSet;

use common::*;

#[tokio::test]
async fn delivers_one_event_signed_with_standard_webhooks_headers() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint(
        "acme",
        "orders",
        &receiver.url("/orders"),
        "  headers: { X-Env: test }",
    ) + &subscription("acme", "paid", "orders", &["order.paid"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let body = r#"{"order": 42, "total": "9.99"}"#;
    nats.publish("events.acme.order.paid", Some("evt-1"), body.as_bytes())
        .await;

    let delivery = receiver.wait_for("/orders", 1).await.remove(0);
    assert_eq!(delivery.body, body.as_bytes(), "payload bytes unchanged");
    assert_eq!(header(&delivery, "webhook-id"), "evt-1");
    assert_eq!(header(&delivery, "webhook-event-type"), "order.paid");
    assert_eq!(header(&delivery, "content-type"), "application/json");
    assert!(header(&delivery, "user-agent").starts_with("webhook-operator/"));
    assert_eq!(header(&delivery, "x-env"), "test");
    let timestamp: i64 = header(&delivery, "webhook-timestamp")
        .parse()
        .expect("unix seconds");
    assert!((jiff::Timestamp::now().as_second() - timestamp).abs() < 60);
    verify(SECRET, &delivery).expect("signature verifies with the standardwebhooks crate");
    verify(SECRET_2, &delivery).expect_err("a different key must not verify");

    let status = pipeline
        .wait_for_counter("acme", "orders", "delivered", 1)
        .await;
    assert_eq!(status["health"], "Healthy");
    assert_eq!(status["failedAttempts"], 0);
}

#[tokio::test]
async fn fans_out_to_every_subscribed_endpoint_once() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let mut manifests = String::new();
    for name in ["a", "b", "c"] {
        manifests += &endpoint("acme", name, &receiver.url(&format!("/{name}")), "");
    }
    // "a" is subscribed twice through overlapping patterns: it must still get one delivery.
    manifests += &subscription("acme", "a-orders", "a", &["order.*", "order.paid"]);
    manifests += &subscription("acme", "b-all", "b", &[">"]);
    manifests += &subscription("acme", "c-invoices", "c", &["invoice.paid"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let (status, body) = pipeline
        .ingest("acme", "order.paid", r#"{"n":1}"#, None)
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();

    for path in ["/a", "/b"] {
        let got = receiver.wait_for(path, 1).await;
        assert_eq!(
            header(&got[0], "webhook-id"),
            id,
            "same webhook-id on every endpoint"
        );
    }
    pipeline.wait_for_counter("acme", "b", "delivered", 1).await;
    pipeline.wait_for_counter("acme", "a", "delivered", 1).await;
    assert_eq!(
        receiver.received("/a").len(),
        1,
        "overlapping patterns deliver once"
    );
    assert!(receiver.received("/c").is_empty());
}

#[tokio::test]
async fn wildcards_match_single_and_trailing_tokens() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "star", &receiver.url("/star"), "")
        + &endpoint("acme", "rest", &receiver.url("/rest"), "")
        + &subscription("acme", "star", "star", &["invoice.*"])
        + &subscription("acme", "rest", "rest", &["payment.>"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    for event_type in [
        "invoice.paid",
        "invoice.paid.late",
        "payment",
        "payment.captured",
        "payment.card.declined",
    ] {
        let (status, _) = pipeline.ingest("acme", event_type, "{}", None).await;
        assert_eq!(status, 202);
    }
    pipeline
        .wait_for_counter("acme", "rest", "delivered", 2)
        .await;
    pipeline
        .wait_for_counter("acme", "star", "delivered", 1)
        .await;
    let types = |path| -> BTreeSet<String> {
        receiver
            .received(path)
            .iter()
            .map(|r| header(r, "webhook-event-type").to_owned())
            .collect()
    };
    assert_eq!(types("/star"), BTreeSet::from(["invoice.paid".to_string()]));
    assert_eq!(
        types("/rest"),
        BTreeSet::from([
            "payment.captured".to_string(),
            "payment.card.declined".to_string()
        ])
    );
}

#[tokio::test]
async fn tenants_are_isolated() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "hooks", &receiver.url("/acme"), "")
        + &subscription("acme", "all", "hooks", &[">"])
        + &endpoint("globex", "hooks", &receiver.url("/globex"), "")
        + &subscription("globex", "all", "hooks", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("tenants.yaml", manifests)]).await;

    for i in 0..5 {
        nats.publish("events.acme.order.paid", Some(&format!("acme-{i}")), b"{}")
            .await;
    }
    nats.publish("events.globex.order.paid", Some("globex-0"), b"{}")
        .await;
    // A tenant with no endpoints at all: counted, not delivered anywhere.
    nats.publish("events.initech.order.paid", Some("initech-0"), b"{}")
        .await;

    pipeline
        .wait_for_counter("acme", "hooks", "delivered", 5)
        .await;
    pipeline
        .wait_for_counter("globex", "hooks", "delivered", 1)
        .await;
    let ids = |path| webhook_ids(&receiver.received(path));
    assert!(
        ids("/acme").iter().all(|id| id.starts_with("acme-")),
        "{:?}",
        ids("/acme")
    );
    assert_eq!(ids("/globex"), ["globex-0"]);
    assert_eq!(receiver.all().len(), 6);
    let metrics = pipeline.metrics().await;
    assert!(
        metrics.contains(r#"webhook_events_unrouted_total{tenant="initech"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_active_key_signs_during_rotation() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let rotating = format!(
        r#"---
apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: {{ name: rotating, namespace: acme }}
spec:
  url: {}
---
apiVersion: v1
kind: Secret
metadata: {{ name: rotating-signing, namespace: acme }}
stringData:
  secret: "{SECRET} {SECRET_2}"
"#,
        receiver.url("/rotating")
    ) + &subscription("acme", "all", "rotating", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", rotating)]).await;

    pipeline
        .ingest("acme", "key.rotated", r#"{"k":1}"#, None)
        .await;
    let delivery = receiver.wait_for("/rotating", 1).await.remove(0);
    assert_eq!(header(&delivery, "webhook-signature").split(' ').count(), 2);
    verify(SECRET, &delivery).expect("receiver still on the old key verifies");
    verify(SECRET_2, &delivery).expect("receiver already on the new key verifies");
}

#[tokio::test]
async fn duplicate_publishes_deliver_once() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), "")
        + &subscription("acme", "all", "orders", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    for _ in 0..3 {
        nats.publish("events.acme.order.paid", Some("same-id"), b"{}")
            .await;
    }
    let (_, first) = pipeline
        .ingest("acme", "order.paid", "{}", Some("ingest-key"))
        .await;
    let (_, second) = pipeline
        .ingest("acme", "order.paid", "{}", Some("ingest-key"))
        .await;
    assert_eq!(first["duplicate"], false);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["id"], "ingest-key");
    // A marker event published last: once it is delivered, any duplicate would have been too.
    nats.publish("events.acme.order.paid", Some("marker"), b"{}")
        .await;
    pipeline
        .wait_for_counter("acme", "orders", "delivered", 3)
        .await;
    let ids = webhook_ids(&receiver.received("/orders"));
    assert_eq!(
        ids.iter().filter(|id| *id == "same-id").count(),
        1,
        "{ids:?}"
    );
    assert_eq!(
        ids.iter().filter(|id| *id == "ingest-key").count(),
        1,
        "{ids:?}"
    );
}

#[tokio::test]
async fn events_without_an_id_get_a_stable_one_and_content_type_is_kept() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), "")
        + &subscription("acme", "all", "orders", &[">"]);
    let _pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let client = nats.client().await;
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Content-Type", "text/plain");
    js.publish_with_headers(
        "events.acme.note.added",
        headers,
        "plain text, not JSON".into(),
    )
    .await
    .expect("publish")
    .await
    .expect("ack");
    js.publish("events.acme.note.added", "{}".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    let got = receiver.wait_for("/orders", 2).await;
    let plain = got
        .iter()
        .find(|r| header(r, "content-type") == "text/plain")
        .expect("text/plain delivery");
    assert_eq!(plain.body, "plain text, not JSON".as_bytes());
    let ids: BTreeSet<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!(ids.len(), 2, "each event has its own id: {ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("evt_")));
    for delivery in &got {
        verify(SECRET, delivery).expect("signature");
    }
}
