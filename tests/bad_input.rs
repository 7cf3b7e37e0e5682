//! Broken manifests, oversized or malformed payloads and stray events get a clear error or a
//! count, and everything else keeps working.

mod common;

use common::*;

#[tokio::test]
async fn a_broken_manifest_does_not_stop_the_good_ones() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let good = endpoint("acme", "good", &receiver.url("/good"), "")
        + &subscription("acme", "all", "good", &[">"]);
    let broken = "kind: WebhookEndpoint\nmetadata: { name: [unclosed\n---\n".to_string()
        + &endpoint(
            "acme",
            "typo",
            &receiver.url("/typo"),
            "  maxInFlight: lots",
        )
        + &endpoint("acme", "ftp", "ftp://files.example/drop", "");
    let pipeline = Pipeline::start(&nats, &[("good.yaml", good), ("broken.yaml", broken)]).await;

    pipeline.ingest("acme", "order.paid", "{}", None).await;
    pipeline
        .wait_for_counter("acme", "good", "delivered", 1)
        .await;
    let invalid = pipeline.endpoint("acme", "ftp").await;
    assert_eq!(invalid["health"], "Invalid");
    assert_eq!(invalid["reason"], "InvalidUrl");
    assert!(
        invalid["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.url"),
        "{invalid}"
    );
    let log = pipeline.log_text();
    assert!(
        log.contains("broken.yaml") && log.contains("document 1") && log.contains("invalid YAML"),
        "{log}"
    );
    assert!(
        log.contains("spec.maxInFlight"),
        "the bad field is named: {log}"
    );
    assert!(
        pipeline
            .endpoints()
            .await
            .iter()
            .all(|e| e["name"] != "typo"),
        "an unparsable document is skipped"
    );
}

#[tokio::test]
async fn oversized_and_non_json_payloads_are_dead_lettered_with_a_reason() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), "")
        + &subscription("acme", "all", "orders", &[">"]);
    let pipeline = Pipeline::start_with(
        &nats,
        &[("acme.yaml", manifests)],
        &["--max-payload-bytes", "1024"],
    )
    .await;

    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(4096));
    nats.publish("events.acme.order.paid", Some("too-big"), big.as_bytes())
        .await;
    let status = pipeline
        .wait_for_counter("acme", "orders", "deadLettered", 1)
        .await;
    assert_eq!(status["lastFailure"]["reason"], "PayloadTooLarge");
    assert_eq!(status["lastFailure"]["eventId"], "too-big");
    assert!(
        status["lastFailure"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1024"),
        "{status}"
    );

    nats.publish("events.acme.order.paid", Some("not-json"), b"{oops")
        .await;
    let status = pipeline
        .wait_for_counter("acme", "orders", "deadLettered", 2)
        .await;
    assert_eq!(status["lastFailure"]["reason"], "InvalidPayload");
    assert_eq!(status["lastFailure"]["eventId"], "not-json");

    nats.publish("events.acme.order.paid", Some("fine"), b"{}")
        .await;
    let got = receiver.wait_for("/orders", 1).await;
    assert_eq!(header(&got[0], "webhook-id"), "fine");
    assert_eq!(
        status["failedAttempts"], 0,
        "rejected events never reach the endpoint"
    );

    let (code, body) = pipeline.ingest("acme", "order.paid", &big, None).await;
    assert_eq!(code, 413, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeds"),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_ingest_requests_and_stray_subjects_are_refused_clearly() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), "")
        + &subscription("acme", "all", "orders", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let (code, body) = pipeline
        .ingest("Not_A_Namespace", "order.paid", "{}", None)
        .await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Not_A_Namespace"),
        "{body}"
    );
    let (code, body) = pipeline.ingest("acme", "order.*", "{}", None).await;
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("order.*"),
        "{body}"
    );

    // No event type in the subject, and a tenant nobody subscribed in: neither blocks the stream.
    nats.publish("events.acme", Some("no-type"), b"{}").await;
    nats.publish("events.nobody.order.paid", Some("nobody"), b"{}")
        .await;
    nats.publish("events.acme.order.paid", Some("after"), b"{}")
        .await;
    let got = receiver.wait_for("/orders", 1).await;
    assert_eq!(header(&got[0], "webhook-id"), "after");
    let metrics = pipeline.metrics().await;
    assert!(
        metrics.contains(r#"webhook_events_unrouted_total{tenant="nobody"} 1"#),
        "{metrics}"
    );
}
