//! The event catalogue end to end: payloads that fail their EventType's schema are
//! dead-lettered with the validation error (or delivered flagged, with `onInvalid: deliver`).

mod common;

use common::*;

fn event_type(object: &str, spec: &str) -> String {
    format!(
        r#"---
apiVersion: webhook-operator.io/v1alpha1
kind: EventType
metadata: {{ name: {object}, namespace: acme }}
spec:
{spec}
"#
    )
}

const ORDER_SCHEMA: &str = r#"  schema:
    type: object
    required: [order, amount]
    properties:
      order: { type: integer }
      amount: { type: number, minimum: 0 }"#;

async fn dead_letter(nats: &Nats, endpoint: &str) -> async_nats::jetstream::message::StreamMessage {
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js
        .get_stream("WEBHOOK_DEAD_LETTERS")
        .await
        .expect("dead-letter stream");
    stream
        .direct_get_last_for_subject(format!("webhook.dead.acme.{endpoint}"))
        .await
        .expect("dead letter")
}

fn header_of<'a>(letter: &'a async_nats::jetstream::message::StreamMessage, name: &str) -> &'a str {
    letter
        .headers
        .get(name)
        .map(|v| v.as_str())
        .unwrap_or_default()
}

#[tokio::test]
async fn payloads_that_fail_their_schema_are_dead_lettered_with_the_error() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), "")
        + &subscription("acme", "all", "orders", &["order.>"])
        + &event_type(
            "order-paid",
            &format!("  name: order.paid\n  description: An order was paid.\n{ORDER_SCHEMA}"),
        )
        + &event_type("order-note", "  name: order.note");
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    nats.publish(
        "events.acme.order.paid",
        Some("valid"),
        br#"{"order": 1, "amount": 9.5}"#,
    )
    .await;
    pipeline
        .wait_for_counter("acme", "orders", "delivered", 1)
        .await;

    let secret_email = "jane@example.com";
    let invalid = format!(r#"{{"order": "one", "amount": -1, "email": "{secret_email}"}}"#);
    nats.publish(
        "events.acme.order.paid",
        Some("invalid"),
        invalid.as_bytes(),
    )
    .await;
    let status = pipeline
        .wait_for_counter("acme", "orders", "deadLettered", 1)
        .await;
    assert_eq!(status["lastFailure"]["reason"], "SchemaValidationFailed");
    assert_eq!(status["lastFailure"]["eventId"], "invalid");
    let message = status["lastFailure"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("order.paid") && message.contains("/order") && message.contains("/amount"),
        "{message}"
    );
    let letter = dead_letter(&nats, "orders").await;
    assert_eq!(
        header_of(&letter, "Webhook-Dead-Reason"),
        "SchemaValidationFailed"
    );
    assert!(header_of(&letter, "Webhook-Dead-Message").contains("/amount"));
    assert_eq!(
        letter.payload.as_ref(),
        invalid.as_bytes(),
        "the event is kept as published"
    );
    for text in [message, header_of(&letter, "Webhook-Dead-Message")] {
        assert!(
            !text.contains(secret_email),
            "payload values stay out of errors: {text}"
        );
    }

    // A type without a schema is not checked.
    nats.publish(
        "events.acme.order.note",
        Some("note"),
        br#"{"free": "form"}"#,
    )
    .await;
    pipeline
        .wait_for_counter("acme", "orders", "delivered", 2)
        .await;
    let delivered = webhook_ids(&receiver.received("/orders"));
    assert_eq!(delivered, ["valid", "note"]);
    assert!(
        receiver
            .received("/orders")
            .iter()
            .all(|r| r.headers.get("webhook-schema-invalid").is_none())
    );
}

#[tokio::test]
async fn on_invalid_deliver_flags_the_delivery() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), "")
        + &subscription("acme", "paid", "orders", &["order.paid"])
        + &event_type(
            "order-paid",
            &format!("  name: order.paid\n  onInvalid: deliver\n{ORDER_SCHEMA}"),
        );
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    nats.publish(
        "events.acme.order.paid",
        Some("valid"),
        br#"{"order": 1, "amount": 1}"#,
    )
    .await;
    nats.publish(
        "events.acme.order.paid",
        Some("invalid"),
        br#"{"order": 1}"#,
    )
    .await;
    pipeline
        .wait_for_counter("acme", "orders", "delivered", 2)
        .await;
    for delivery in receiver.received("/orders") {
        let flagged = header(&delivery, "webhook-schema-invalid");
        match header(&delivery, "webhook-id") {
            "valid" => assert_eq!(flagged, ""),
            "invalid" => assert_eq!(flagged, "true"),
            other => panic!("unexpected delivery {other}"),
        }
        verify(SECRET, &delivery).expect("signed as usual");
    }
    assert_eq!(pipeline.endpoint("acme", "orders").await["deadLettered"], 0);
}

#[tokio::test]
async fn subscriptions_outside_the_catalogue_are_reported() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), "")
        + &subscription("acme", "typo", "orders", &["order.payed"])
        + &subscription("acme", "legacy", "orders", &["order.legacy"])
        + &event_type("order-paid", "  name: order.paid")
        + &event_type("order-legacy", "  name: order.legacy\n  deprecated: true")
        + &event_type("broken", "  name: order.broken\n  schema: { type: 7 }");
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    // Reporting never stops routing: the deprecated type is still delivered.
    nats.publish("events.acme.order.legacy", Some("old"), b"{}")
        .await;
    pipeline
        .wait_for_counter("acme", "orders", "delivered", 1)
        .await;
    let log = pipeline.log_text();
    for needle in [
        "UnknownEventTypes",
        "matches \"order.payed\"",
        "DeprecatedEventTypes",
        "InvalidSchema",
    ] {
        assert!(
            log.contains(needle),
            "{needle} missing from the log:\n{log}"
        );
    }
}
