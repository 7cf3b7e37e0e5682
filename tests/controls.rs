//! Endpoint controls (paused, maxInFlight, rateLimit) and live manifest changes.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn paused_endpoints_queue_and_resume_without_loss() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let subscribed = subscription("acme", "all", "orders", &[">"]);
    let paused =
        endpoint("acme", "orders", &receiver.url("/orders"), "  paused: true") + &subscribed;
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", paused)]).await;

    for i in 0..3 {
        pipeline
            .ingest("acme", "order.paid", "{}", Some(&format!("p{i}")))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        receiver.all().is_empty(),
        "a paused endpoint receives nothing"
    );
    assert_eq!(
        pipeline.endpoint("acme", "orders").await["health"],
        "Paused"
    );

    pipeline.write_manifest(
        "acme.yaml",
        &(endpoint("acme", "orders", &receiver.url("/orders"), "") + &subscribed),
    );
    receiver.wait_for("/orders", 3).await;
    pipeline
        .wait_for_counter("acme", "orders", "delivered", 3)
        .await;
}

#[tokio::test]
async fn max_in_flight_caps_concurrent_requests() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/orders", Reply::Delay(Duration::from_millis(200)));
    let manifests = endpoint(
        "acme",
        "orders",
        &receiver.url("/orders"),
        "  maxInFlight: 2",
    ) + &subscription("acme", "all", "orders", &[">"]);
    let _pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    for i in 0..10 {
        nats.publish("events.acme.order.paid", Some(&format!("e{i}")), b"{}")
            .await;
    }
    receiver.wait_for("/orders", 10).await;
    let peak = receiver.max_in_flight("/orders");
    assert!((1..=2).contains(&peak), "peak concurrency {peak}");
}

#[tokio::test]
async fn rate_limit_spaces_requests() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let spec = "  rateLimit: { requestsPerSecond: 5, burst: 5 }";
    let manifests = endpoint("acme", "orders", &receiver.url("/orders"), spec)
        + &subscription("acme", "all", "orders", &[">"]);
    let _pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    for i in 0..20 {
        nats.publish("events.acme.order.paid", Some(&format!("e{i}")), b"{}")
            .await;
    }
    let got = receiver.wait_for("/orders", 20).await;
    // A burst of 5, then 5 per second: the last 15 need at least 3 s.
    let span = got[19].at - got[0].at;
    assert!(
        span >= Duration::from_millis(2500),
        "20 requests within {span:?} despite 5/s"
    );
}

#[tokio::test]
async fn manifest_changes_take_effect_without_restart() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let endpoint_only = endpoint("acme", "orders", &receiver.url("/orders"), "");
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", endpoint_only.clone())]).await;

    pipeline
        .ingest("acme", "order.paid", "{}", Some("before"))
        .await;
    pipeline.write_manifest(
        "subs.yaml",
        &subscription("acme", "all", "orders", &["order.*"]),
    );
    let changed = Instant::now();
    let mut n = 0;
    let live = wait_until(Duration::from_secs(10), || {
        n += 1;
        let key = format!("probe-{n}");
        let pipeline = &pipeline;
        let receiver = &receiver;
        async move {
            pipeline
                .ingest("acme", "order.paid", "{}", Some(&key))
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            !receiver.received("/orders").is_empty()
        }
    })
    .await;
    assert!(live, "new subscription never took effect");
    eprintln!("subscription effective after {:?}", changed.elapsed());
    assert!(
        receiver
            .received("/orders")
            .iter()
            .all(|r| header(r, "webhook-id") != "before"),
        "events before the subscription are not delivered"
    );

    // Removing the subscription stops deliveries.
    std::fs::remove_file(pipeline.manifests.path().join("subs.yaml")).expect("remove");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = receiver.received("/orders").len();
    pipeline
        .ingest("acme", "order.paid", "{}", Some("after-removal"))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        receiver.received("/orders").len(),
        count,
        "no delivery after the subscription was removed"
    );
}
