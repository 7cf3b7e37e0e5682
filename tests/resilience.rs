//! Nothing is lost when the process dies, counters survive restarts, and one bad endpoint
//! cannot hold up another.

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use common::*;

#[tokio::test]
async fn killed_mid_backlog_and_restarted_delivers_every_event() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/orders", Reply::Delay(Duration::from_millis(20)));
    let manifests = endpoint(
        "acme",
        "orders",
        &receiver.url("/orders"),
        "  maxInFlight: 4\n  timeout: 2s",
    ) + &subscription("acme", "all", "orders", &[">"]);
    let mut pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    const EVENTS: usize = 300;
    for i in 0..EVENTS {
        nats.publish(
            "events.acme.order.paid",
            Some(&format!("evt-{i}")),
            format!(r#"{{"i":{i}}}"#).as_bytes(),
        )
        .await;
    }
    receiver.wait_for("/orders", 40).await;
    pipeline.kill();
    let before_restart = receiver.received("/orders").len();
    assert!(
        before_restart < EVENTS,
        "the kill must interrupt a backlog ({before_restart} delivered)"
    );
    pipeline.restart().await;

    let unique = || BTreeSet::from_iter(webhook_ids(&receiver.received("/orders")));
    let all = wait_until(Duration::from_secs(60), || async {
        unique().len() == EVENTS
    })
    .await;
    assert!(
        all,
        "only {} of {EVENTS} distinct events delivered after restart",
        unique().len()
    );
    for delivery in receiver.received("/orders").iter().take(5) {
        verify(SECRET, delivery).expect("signature");
    }
}

#[tokio::test]
async fn counters_survive_a_restart() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.script("/orders", [Reply::Status(500)]);
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), FAST_RETRY)
        + &subscription("acme", "all", "orders", &[">"]);
    let mut pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    for i in 0..5 {
        pipeline
            .ingest("acme", "order.paid", "{}", Some(&format!("k{i}")))
            .await;
    }
    let before = pipeline
        .wait_for_counter("acme", "orders", "delivered", 5)
        .await;
    assert_eq!(before["failedAttempts"], 1);

    pipeline.kill();
    pipeline.restart().await;
    let after = pipeline
        .wait_for_counter("acme", "orders", "delivered", 5)
        .await;
    assert_eq!(after["failedAttempts"], 1);
    assert_eq!(after["lastFailure"], before["lastFailure"]);
    assert_eq!(after["lastSuccessTime"], before["lastSuccessTime"]);
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_delay_a_healthy_one() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/hanging", Reply::Delay(Duration::from_secs(30)));
    let hanging_timeout = Duration::from_secs(6);
    let manifests = endpoint(
        "acme",
        "hanging",
        &receiver.url("/hanging"),
        "  timeout: 6s\n  maxInFlight: 10",
    ) + &endpoint("acme", "healthy", &receiver.url("/healthy"), "")
        + &subscription("acme", "hanging", "hanging", &[">"])
        + &subscription("acme", "healthy", "healthy", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let client = nats.client().await;
    let js = async_nats::jetstream::new(client);
    let mut sent = HashMap::new();
    const EVENTS: usize = 60;
    for i in 0..EVENTS {
        let id = format!("evt-{i}");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        sent.insert(id, Instant::now());
        js.publish_with_headers("events.acme.order.paid", headers, "{}".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let healthy = receiver.wait_for("/healthy", EVENTS).await;
    let latencies: Vec<Duration> = healthy
        .iter()
        .map(|r| r.at - sent[header(r, "webhook-id")])
        .collect();
    let worst = latencies.iter().max().copied().unwrap_or_default();
    let mut sorted = latencies.clone();
    sorted.sort();
    eprintln!(
        "healthy latency: median {:?}, worst {worst:?}",
        sorted[sorted.len() / 2]
    );
    // Were the healthy endpoint queued behind the hanging one, its deliveries would wait for
    // the hanging requests to time out. (Speed itself is measured by `make bench`, not here.)
    assert!(
        worst < hanging_timeout,
        "healthy endpoint delayed up to {worst:?} (hanging timeout {hanging_timeout:?})"
    );
    assert!(
        receiver.max_in_flight("/hanging") <= 10,
        "maxInFlight caps the hanging endpoint"
    );
    assert!(!receiver.received("/hanging").is_empty());
    pipeline
        .wait_for_counter("acme", "healthy", "delivered", EVENTS as u64)
        .await;
}
