//! CloudEvents in (binary and structured mode over NATS) and out (HTTP binary mode, still
//! signed the Standard Webhooks way).

mod common;

use common::*;

const STRUCTURED: &str = r#"{"specversion":"1.0","id":"ce-structured","type":"order.paid","source":"/shop/eu","time":"2024-05-01T10:00:00Z","subject":"order 42","datacontenttype":"application/json","data":{"order":42,"amount":150}}"#;

#[tokio::test]
async fn cloudevents_are_routed_by_their_type_and_id() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "paid", &receiver.url("/paid"), "")
        + &endpoint("acme", "inbox", &receiver.url("/inbox"), "")
        + &subscription("acme", "paid", "paid", &["order.paid"])
        + &subscription("acme", "inbox", "inbox", &["inbox"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    // Binary mode: the subject names the tenant; the ce-type names the event type.
    nats.publish_with(
        "events.acme.inbox",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-binary"),
            ("ce-type", "order.paid"),
            ("ce-source", "/shop/eu"),
            ("Content-Type", "application/json"),
        ],
        br#"{"order":41}"#,
    )
    .await;
    // Structured mode, published as is.
    nats.publish_with(
        "events.acme.inbox",
        &[("Content-Type", "application/cloudevents+json")],
        STRUCTURED.as_bytes(),
    )
    .await;
    // Claims to be a CloudEvent but has no source: dead-lettered to the subject type's subscribers.
    nats.publish_with(
        "events.acme.inbox",
        &[
            ("Nats-Msg-Id", "broken"),
            ("ce-specversion", "1.0"),
            ("ce-id", "ce-broken"),
            ("ce-type", "order.paid"),
        ],
        b"{}",
    )
    .await;

    pipeline
        .wait_for_counter("acme", "paid", "delivered", 2)
        .await;
    let status = pipeline
        .wait_for_counter("acme", "inbox", "deadLettered", 1)
        .await;
    assert_eq!(status["lastFailure"]["reason"], "InvalidCloudEvent");
    assert!(
        status["lastFailure"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("source"),
        "{status}"
    );
    assert!(receiver.received("/inbox").is_empty());
    let mut got = receiver.received("/paid");
    got.sort_by_key(|r| header(r, "webhook-id").to_owned());
    assert_eq!(header(&got[0], "webhook-id"), "ce-binary");
    assert_eq!(header(&got[0], "webhook-event-type"), "order.paid");
    assert_eq!(got[0].body.as_ref(), br#"{"order":41}"#);
    // A standard endpoint receives the structured event unchanged.
    assert_eq!(header(&got[1], "webhook-id"), "ce-structured");
    assert_eq!(
        header(&got[1], "content-type"),
        "application/cloudevents+json"
    );
    assert_eq!(got[1].body.as_ref(), STRUCTURED.as_bytes());
    for delivery in &got {
        verify(SECRET, delivery).expect("signed");
        assert!(
            delivery.headers.get("ce-id").is_none(),
            "standard format adds no ce-*"
        );
    }
}

#[tokio::test]
async fn cloudevents_endpoints_get_http_binary_mode_signed() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "ce", &receiver.url("/ce"), "  format: cloudevents")
        + &subscription("acme", "paid", "ce", &["order.paid"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    nats.publish("events.acme.order.paid", Some("plain-1"), br#"{"order":1}"#)
        .await;
    pipeline
        .wait_for_counter("acme", "ce", "delivered", 1)
        .await;
    nats.publish_with(
        "events.acme.order.paid",
        &[("Content-Type", "application/cloudevents+json")],
        STRUCTURED.as_bytes(),
    )
    .await;
    pipeline
        .wait_for_counter("acme", "ce", "delivered", 2)
        .await;

    let got = receiver.received("/ce");
    let plain = &got[0];
    assert_eq!(header(plain, "ce-specversion"), "1.0");
    assert_eq!(header(plain, "ce-id"), "plain-1");
    assert_eq!(header(plain, "ce-type"), "order.paid");
    assert_eq!(header(plain, "ce-source"), "/namespaces/acme");
    let time = header(plain, "ce-time");
    assert!(
        time.parse::<jiff::Timestamp>().is_ok(),
        "RFC 3339: {time:?}"
    );
    assert_eq!(header(plain, "content-type"), "application/json");
    assert_eq!(header(plain, "webhook-id"), "plain-1");
    assert_eq!(plain.body.as_ref(), br#"{"order":1}"#);
    verify(SECRET, plain).expect("Standard Webhooks signature alongside ce-*");

    // A structured event is unwrapped: attributes become headers, data the body.
    let structured = &got[1];
    assert_eq!(header(structured, "ce-id"), "ce-structured");
    assert_eq!(header(structured, "ce-source"), "/shop/eu");
    assert_eq!(header(structured, "ce-time"), "2024-05-01T10:00:00Z");
    assert_eq!(header(structured, "ce-subject"), "order%2042");
    assert_eq!(header(structured, "content-type"), "application/json");
    let data: serde_json::Value = serde_json::from_slice(&structured.body).expect("JSON data");
    assert_eq!(data, serde_json::json!({"order": 42, "amount": 150}));
    verify(SECRET, structured).expect("the signature covers the body as sent");
}
