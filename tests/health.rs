//! Endpoint health protection: the circuit breaker, auto-disable and re-enable, checked against
//! real receivers and, independently, against the attempt log in NATS.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use common::*;
use serde_json::Value;

/// Retries fast and often enough that only the breaker and auto-disable stop them.
const PATIENT_RETRY: &str = "  maxInFlight: 1\n  timeout: 2s\n  retry: { maxAttempts: 50, initialBackoff: 100ms, maxBackoff: 200ms, maxAge: 1h }";

/// Every record of the attempt log for one endpoint, read straight from the stream.
async fn attempt_log(nats: &Nats, subject: &str) -> Vec<Value> {
    let js = async_nats::jetstream::new(nats.client().await);
    let mut stream = js.get_stream("WEBHOOK_ATTEMPTS").await.expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut records = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await
            && message.subject.as_str() == subject
        {
            records.push(serde_json::from_slice(&message.payload).expect("record"));
        }
    }
    records
}

/// Each event's attempt numbers are exactly 1..=n (no attempt was used up without a request),
/// and there is one record per request the receiver saw.
fn assert_attempts_match_requests(records: &[Value], requests: usize) {
    let mut by_event: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for record in records {
        let attempt = record["attempt"].as_u64().expect("attempt");
        assert!(attempt > 0, "nothing was rejected: {record}");
        by_event
            .entry(record["eventId"].as_str().expect("eventId").to_owned())
            .or_default()
            .push(attempt);
    }
    for (event, mut attempts) in by_event {
        attempts.sort_unstable();
        let expected: Vec<u64> = (1..=attempts.len() as u64).collect();
        assert_eq!(attempts, expected, "attempt numbers of {event}");
    }
    assert_eq!(records.len(), requests, "one attempt record per request");
}

#[tokio::test]
async fn open_circuit_sends_only_probes_then_drains_the_backlog() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/orders", Reply::Status(503));
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), PATIENT_RETRY)
        + &subscription("acme", "all", "orders", &[">"]);
    let pipeline = Pipeline::start_with(
        &nats,
        &[("acme.yaml", manifests)],
        &[
            "--circuit-breaker-threshold",
            "3",
            "--circuit-probe-interval",
            "1s",
        ],
    )
    .await;
    let events: BTreeSet<String> = (0..8).map(|i| format!("evt-{i}")).collect();
    for id in &events {
        nats.publish("events.acme.order.paid", Some(id), b"{}")
            .await;
    }

    receiver.wait_for("/orders", 3).await;
    pipeline
        .wait_for_metric("webhook_circuit_open{tenant=\"acme\"}", 1.0)
        .await;
    // Open for several probe intervals: without the breaker, 100 ms retries would send
    // dozens of requests meanwhile.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let while_open = receiver.received("/orders");
    assert!(
        while_open.len() >= 5,
        "probes go on while open: {}",
        while_open.len()
    );
    for pair in while_open[2..].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "while the circuit is open only one probe per second is sent, got requests {gap:?} apart"
        );
    }
    assert_eq!(
        pipeline.endpoint("acme", "orders").await["deadLettered"],
        0,
        "held-back jobs are not given up on"
    );

    receiver.set_default("/orders", Reply::Status(200));
    pipeline
        .wait_for_counter("acme", "orders", "delivered", events.len() as u64)
        .await;
    pipeline
        .wait_for_metric("webhook_circuit_open{tenant=\"acme\"}", 0.0)
        .await;
    let all = receiver.received("/orders");
    assert_eq!(
        BTreeSet::from_iter(webhook_ids(&all)),
        events,
        "every queued event arrived"
    );
    for delivery in &all {
        verify(SECRET, delivery).expect("signature");
    }
    let view = pipeline.endpoint("acme", "orders").await;
    assert_eq!(view["deadLettered"], 0, "{view}");
    assert_eq!(view["health"], "Healthy", "{view}");
    assert_attempts_match_requests(
        &attempt_log(&nats, "webhook.attempts.acme.orders").await,
        all.len(),
    );
}

#[tokio::test]
async fn failing_endpoints_are_auto_disabled_and_resume_without_loss_when_re_enabled() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/orders", Reply::Status(500));
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), PATIENT_RETRY)
        + &endpoint("acme", "billing", &receiver.url("/billing"), "")
        + &subscription("acme", "orders", "orders", &["order.*"])
        + &subscription("acme", "billing", "billing", &["invoice.*"]);
    let args = [
        "--circuit-breaker-threshold",
        "2",
        "--circuit-probe-interval",
        "300ms",
        "--auto-disable-after",
        "2s",
    ];
    let mut pipeline = Pipeline::start_with(&nats, &[("acme.yaml", manifests)], &args).await;
    let events: BTreeSet<String> = (0..5).map(|i| format!("order-{i}")).collect();
    for id in &events {
        nats.publish("events.acme.order.paid", Some(id), b"{}")
            .await;
    }

    let disabled = wait_until(Duration::from_secs(30), || async {
        pipeline.endpoint("acme", "orders").await["health"] == "Disabled"
    })
    .await;
    assert!(
        disabled,
        "never auto-disabled: {}",
        pipeline.endpoint("acme", "orders").await
    );
    pipeline
        .wait_for_metric("webhook_endpoints{health=\"Disabled\"}", 1.0)
        .await;
    // Whatever was in flight when the flag landed has settled after a second; from then on,
    // nothing is sent (probes would come every 300 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent = receiver.received("/orders").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.received("/orders").len(),
        sent,
        "a disabled endpoint is sent nothing"
    );

    // Other endpoints are unaffected, and the disabled state survives a restart.
    pipeline.restart().await;
    nats.publish("events.acme.invoice.sent", Some("invoice-1"), b"{}")
        .await;
    receiver.wait_for("/billing", 1).await;
    assert_eq!(
        pipeline.endpoint("acme", "orders").await["health"],
        "Disabled"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.received("/orders").len(),
        sent,
        "still nothing sent after a restart"
    );
    assert_eq!(
        pipeline.endpoint("acme", "orders").await["deadLettered"],
        0,
        "queued events are kept"
    );

    receiver.set_default("/orders", Reply::Status(200));
    let (status, body) = pipeline
        .post("/v1/endpoints/acme/nowhere/enable", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("acme/nowhere"),
        "{body}"
    );
    let (status, body) = pipeline
        .post("/v1/endpoints/acme/orders/enable", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["enabled"], true, "{body}");
    assert_eq!(body["wasDisabled"], true, "{body}");

    let view = pipeline
        .wait_for_counter("acme", "orders", "delivered", events.len() as u64)
        .await;
    assert_eq!(view["health"], "Healthy", "{view}");
    assert_eq!(view["deadLettered"], 0, "{view}");
    let all = receiver.received("/orders");
    let after_enable = BTreeSet::from_iter(webhook_ids(&all[sent..]));
    assert_eq!(
        after_enable, events,
        "every queued event arrived after re-enable"
    );
    assert_attempts_match_requests(
        &attempt_log(&nats, "webhook.attempts.acme.orders").await,
        all.len(),
    );
}
