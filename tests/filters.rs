//! Payload filters end to end: only the events a subscription's filter matches reach its
//! endpoint; filtered-out events are counted per subscription.

mod common;

use std::collections::BTreeSet;

use common::*;

fn filtered_subscription(name: &str, endpoint: &str, filter: &str) -> String {
    format!(
        r#"---
apiVersion: webhook-operator.io/v1alpha1
kind: EventSubscription
metadata: {{ name: {name}, namespace: acme }}
spec:
  endpointRef: {{ name: {endpoint} }}
  eventTypes: ["order.paid"]
  filter:
{filter}
"#
    )
}

/// An event: its id, body and headers besides `Nats-Msg-Id`.
type Published<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

fn ids(receiver: &Receiver, path: &str) -> BTreeSet<String> {
    BTreeSet::from_iter(webhook_ids(&receiver.received(path)))
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Waits until the filtered-out counter of a subscription reaches `value`.
async fn wait_filtered(pipeline: &Pipeline, subscription: &str, value: f64) {
    let series =
        format!(r#"webhook_events_filtered_total{{tenant="acme",subscription="{subscription}"}}"#);
    pipeline.wait_for_metric(&series, value).await;
}

#[tokio::test]
async fn only_matching_events_reach_the_endpoint() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let mut manifests = String::new();
    for name in ["big-eu", "currency", "either", "everything"] {
        manifests += &endpoint("acme", name, &receiver.url(&format!("/{name}")), "");
    }
    // The filter of the README: big amounts, in euros or dollars (or untagged), from the EU.
    manifests += &filtered_subscription(
        "big-eu",
        "big-eu",
        r#"    all:
      - { field: "$.amount", gte: 100 }
      - any:
          - { field: "$.currency", in: ["EUR", "USD"] }
          - not: { field: "$.test", exists: true }
      - { header: x-region, prefix: "eu-" }"#,
    );
    manifests += &filtered_subscription(
        "currency",
        "currency",
        r#"    field: "$.currency"
    eq: "GBP""#,
    );
    // Two subscriptions of one endpoint: it receives what either lets through, once.
    manifests += &filtered_subscription(
        "either-small",
        "either",
        r#"    field: "$.amount"
    lt: 10"#,
    );
    manifests += &filtered_subscription(
        "either-test",
        "either",
        r#"    field: "$.test"
    eq: true"#,
    );
    manifests += &subscription("acme", "everything", "everything", &["order.paid"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let events: &[Published] = &[
        (
            "e1",
            r#"{"amount": 150, "currency": "EUR"}"#,
            &[("x-region", "eu-west-1")],
        ),
        (
            "e2",
            r#"{"amount": 150, "currency": "GBP"}"#,
            &[("X-Region", "eu-central-1")],
        ),
        (
            "e3",
            r#"{"amount": 150, "currency": "GBP", "test": true}"#,
            &[("x-region", "eu-west-1")],
        ),
        (
            "e4",
            r#"{"amount": 150, "currency": "EUR"}"#,
            &[("x-region", "us-east-1")],
        ),
        (
            "e5",
            r#"{"amount": "150", "currency": "USD"}"#,
            &[("x-region", "eu-west-1")],
        ),
        ("e6", r#"{"amount": 5}"#, &[]),
        (
            "e7",
            "not json at all",
            &[("Content-Type", "text/plain"), ("x-region", "eu-west-1")],
        ),
    ];
    for (id, body, headers) in events {
        let mut all = vec![("Nats-Msg-Id", *id)];
        all.extend_from_slice(headers);
        nats.publish_with("events.acme.order.paid", &all, body.as_bytes())
            .await;
    }

    // Settled when, per endpoint, deliveries plus filtered-out events account for everything.
    pipeline
        .wait_for_counter("acme", "everything", "delivered", 7)
        .await;
    pipeline
        .wait_for_counter("acme", "big-eu", "delivered", 2)
        .await;
    wait_filtered(&pipeline, "big-eu", 5.0).await;
    pipeline
        .wait_for_counter("acme", "currency", "delivered", 2)
        .await;
    wait_filtered(&pipeline, "currency", 5.0).await;
    pipeline
        .wait_for_counter("acme", "either", "delivered", 2)
        .await;
    wait_filtered(&pipeline, "either-small", 6.0).await;
    wait_filtered(&pipeline, "either-test", 6.0).await;

    // e2: GBP without a test flag passes `not exists`; e3 is GBP and a test; e4 is from the
    // US; e5's amount is a string (no coercion); e6 lacks most fields; e7 is not JSON.
    assert_eq!(ids(&receiver, "/big-eu"), set(&["e1", "e2"]));
    assert_eq!(ids(&receiver, "/currency"), set(&["e2", "e3"]));
    assert_eq!(ids(&receiver, "/either"), set(&["e3", "e6"]));
    assert_eq!(receiver.received("/either").len(), 2, "once per endpoint");
    assert_eq!(
        ids(&receiver, "/everything"),
        set(&["e1", "e2", "e3", "e4", "e5", "e6", "e7"])
    );
    let delivered = &receiver.received("/big-eu")[0];
    verify(SECRET, delivered).expect("filtered deliveries are signed as usual");
    let metrics = pipeline.metrics().await;
    assert!(
        metric_value(&metrics, r#"webhook_events_unrouted_total{tenant="acme"}"#)
            .is_none_or(|v| v == 0.0),
        "filtered events are not unrouted:\n{metrics}"
    );
}

#[tokio::test]
async fn a_broken_filter_is_reported_and_the_rest_keeps_working() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "hooks", &receiver.url("/hooks"), "")
        + &filtered_subscription(
            "broken",
            "hooks",
            r#"    any:
      - { field: "$.a", eq: 1 }
      - { field: "amount", gt: 5 }"#,
        )
        + &filtered_subscription(
            "fine",
            "hooks",
            r#"    header: x-kind
    eq: wanted"#,
        );
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    nats.publish_with(
        "events.acme.order.paid",
        &[("Nats-Msg-Id", "unwanted")],
        br#"{"a": 1}"#,
    )
    .await;
    nats.publish_with(
        "events.acme.order.paid",
        &[("Nats-Msg-Id", "wanted"), ("x-kind", "wanted")],
        b"{}",
    )
    .await;
    pipeline
        .wait_for_counter("acme", "hooks", "delivered", 1)
        .await;
    wait_filtered(&pipeline, "fine", 1.0).await;
    assert_eq!(ids(&receiver, "/hooks"), set(&["wanted"]));
    let log = pipeline.log_text();
    assert!(
        log.contains("InvalidFilter") && log.contains("spec.filter.any[1].field"),
        "the broken subscription is reported with the node at fault:\n{log}"
    );
}
