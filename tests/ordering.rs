//! `ordering: fifo`: an endpoint receives its events one at a time in publish order, a failing
//! event holding back the ones behind it (per partition with `partitionKeyHeader`), across
//! crashes and switches of its ordering, while unordered endpoints go on in parallel.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::*;

/// A FIFO endpoint's spec; retries quick enough for tests.
fn fifo(extra: &str) -> String {
    format!(
        "  ordering: fifo\n  retry: {{ maxAttempts: 100, initialBackoff: 100ms, maxBackoff: 500ms, maxAge: 1h }}\n  timeout: 2s\n{extra}"
    )
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Publishes one event per id, in order, each stored before the next is sent (`pause` apart).
async fn publish_all(
    js: &async_nats::jetstream::Context,
    ids: &[String],
    headers: &[(&str, &str)],
    pause: Duration,
) {
    for (i, id) in ids.iter().enumerate() {
        let mut map = async_nats::HeaderMap::new();
        map.insert("Nats-Msg-Id", id.as_str());
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        js.publish_with_headers(
            "events.acme.order.paid",
            map,
            format!(r#"{{"i":{i}}}"#).into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        tokio::time::sleep(pause).await;
    }
}

async fn jetstream(nats: &Nats) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(nats.client().await)
}

async fn wait_for_all(receiver: &Receiver, path: &str, expected: &[String], pipeline: &Pipeline) {
    let want: BTreeSet<&String> = expected.iter().collect();
    let done = wait_until(Duration::from_secs(120), || async {
        let got = receiver.first_successes(path);
        want.iter().all(|id| got.contains(id))
    })
    .await;
    let got = receiver.first_successes(path);
    assert!(
        done,
        "{path}: {} of {} events delivered\nlog:\n{}",
        got.iter().filter(|id| want.contains(id)).count(),
        expected.len(),
        pipeline.log_text()
    );
}

/// Every event reached `path` once successfully at least, the first successes in `expected`'s
/// order; repeats (same `webhook-id`) only after their first success.
fn assert_in_order(receiver: &Receiver, path: &str, expected: &[String]) {
    let firsts: Vec<String> = receiver
        .first_successes(path)
        .into_iter()
        .filter(|id| expected.contains(id))
        .collect();
    assert_eq!(firsts.len(), expected.len(), "{path}: events lost");
    if let Some(at) = firsts.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{path}: out of order at position {at}: got {:?}, expected {:?}",
            &firsts[at.saturating_sub(2)..(at + 3).min(firsts.len())],
            &expected[at.saturating_sub(2)..(at + 3).min(expected.len())]
        );
    }
}

#[tokio::test]
async fn a_thousand_events_arrive_in_publish_order_despite_failures() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "ordered", &receiver.url("/ordered"), &fifo(""))
        + &endpoint("acme", "parallel", &receiver.url("/parallel"), FAST_RETRY)
        + &subscription("acme", "ordered", "ordered", &["order.*"])
        + &subscription("acme", "parallel", "parallel", &["order.*"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let events = ids("evt", 1000);
    // Every 50th event is refused twice before it is taken.
    let flaky: Vec<&String> = events.iter().step_by(50).collect();
    for id in &flaky {
        receiver.fail_first("/ordered", id, 2);
        receiver.fail_first("/parallel", id, 2);
    }
    // Events of a type the FIFO endpoint does not subscribe to are skipped, not delivered.
    nats.publish("events.acme.invoice.sent", Some("other-1"), b"{}")
        .await;
    publish_all(&jetstream(&nats).await, &events, &[], Duration::ZERO).await;

    wait_for_all(&receiver, "/parallel", &events, &pipeline).await;
    wait_for_all(&receiver, "/ordered", &events, &pipeline).await;
    assert_in_order(&receiver, "/ordered", &events);

    let ordered = receiver.received("/ordered");
    for id in flaky {
        let refused = ordered
            .iter()
            .filter(|r| header(r, "webhook-id") == id && !r.succeeded())
            .count();
        assert_eq!(refused, 2, "{id} was refused twice, then retried");
    }
    assert!(
        ordered.iter().all(|r| header(r, "webhook-id") != "other-1"),
        "an event the endpoint does not subscribe to is skipped"
    );
    assert_eq!(receiver.max_in_flight("/ordered"), 1, "one at a time");
    verify(SECRET, &ordered[0]).expect("signed as any delivery");
    let status = pipeline
        .wait_for_counter("acme", "ordered", "delivered", 1000)
        .await;
    assert_eq!(status["failedAttempts"], 40);
    assert_eq!(status["heldBack"], 0, "nothing fails any more: {status}");
    // Attempts are recorded as for any endpoint.
    let attempts = reqwest::get(format!(
        "{}/v1/endpoints/acme/ordered/attempts?limit=1&result=failure",
        pipeline.admin()
    ))
    .await
    .expect("attempts")
    .bytes()
    .await
    .expect("body");
    let attempts: serde_json::Value = serde_json::from_slice(&attempts).expect("json");
    assert_eq!(attempts[0]["reason"], "HTTP503", "{attempts}");
}

#[tokio::test]
async fn partitions_progress_independently_each_in_order() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let spec = fifo("  partitionKeyHeader: X-Customer\n  maxInFlight: 4");
    let manifests = endpoint("acme", "ordered", &receiver.url("/p"), &spec)
        + &subscription("acme", "all", "ordered", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let a = ids("a", 60);
    let b = ids("b", 60);
    let none = ids("none", 20);
    receiver.hold("/p", &a[0]);
    let js = jetstream(&nats).await;
    for i in 0..60 {
        publish_all(&js, &a[i..=i], &[("X-Customer", "a")], Duration::ZERO).await;
        publish_all(&js, &b[i..=i], &[("x-customer", "b")], Duration::ZERO).await;
        if i < 20 {
            publish_all(&js, &none[i..=i], &[], Duration::ZERO).await;
        }
    }
    // Customer a's first event keeps failing: b and the events without a key go on.
    wait_for_all(&receiver, "/p", &b, &pipeline).await;
    wait_for_all(&receiver, "/p", &none, &pipeline).await;
    let delivered = receiver.first_successes("/p");
    assert!(
        a.iter().all(|id| !delivered.contains(id)),
        "partition a is held back behind its failing head"
    );
    receiver.release("/p", &a[0]);
    wait_for_all(&receiver, "/p", &a, &pipeline).await;
    for partition in [&a, &b, &none] {
        assert_in_order(&receiver, "/p", partition);
    }
}

/// Kills the process while a FIFO endpoint's backlog is delivered; after the restart the
/// order holds and nothing is lost.
async fn survives_a_crash(extra: &str) {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/ordered", Reply::Delay(Duration::from_millis(10)));
    let manifests = endpoint("acme", "ordered", &receiver.url("/ordered"), &fifo(extra))
        + &subscription("acme", "all", "ordered", &[">"]);
    let mut pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    let events = ids("evt", 300);
    publish_all(
        &jetstream(&nats).await,
        &events,
        &[("X-Customer", "c")],
        Duration::ZERO,
    )
    .await;
    receiver.wait_for("/ordered", 40).await;
    pipeline.kill();
    let before = receiver.first_successes("/ordered").len();
    assert!(before < events.len(), "the kill interrupts the backlog");
    pipeline.restart().await;

    wait_for_all(&receiver, "/ordered", &events, &pipeline).await;
    assert_in_order(&receiver, "/ordered", &events);
}

#[tokio::test]
async fn a_crash_mid_stream_keeps_the_order() {
    survives_a_crash("").await;
}

#[tokio::test]
async fn a_crash_mid_stream_keeps_each_partition_in_order() {
    survives_a_crash("  partitionKeyHeader: X-Customer").await;
}

#[tokio::test]
async fn switching_to_fifo_and_back_while_events_flow_loses_nothing() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let unordered = endpoint("acme", "orders", &receiver.url("/orders"), FAST_RETRY)
        + &subscription("acme", "all", "orders", &[">"]);
    let ordered = endpoint("acme", "orders", &receiver.url("/orders"), &fifo(""))
        + &subscription("acme", "all", "orders", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", unordered.clone())]).await;

    let events = ids("evt", 600);
    let publisher = {
        let events = events.clone();
        let js = jetstream(&nats).await;
        tokio::spawn(async move { publish_all(&js, &events, &[], Duration::from_millis(5)).await })
    };
    let distinct = || receiver.first_successes("/orders").len();
    assert!(wait_until(Duration::from_secs(60), || async { distinct() >= 100 }).await);
    pipeline.write_manifest("acme.yaml", &ordered);
    let js = async_nats::jetstream::new(nats.client().await);
    let queue_exists = || async {
        js.get_stream("WEBHOOK_EVENTS")
            .await
            .expect("events stream")
            .consumer_info("fifo_acme_orders")
            .await
            .is_ok()
    };
    assert!(
        wait_until(Duration::from_secs(30), queue_exists).await,
        "the router creates the FIFO queue"
    );
    assert!(wait_until(Duration::from_secs(60), || async { distinct() >= 350 }).await);
    pipeline.write_manifest("acme.yaml", &unordered);
    publisher.await.expect("publisher");

    wait_for_all(&receiver, "/orders", &events, &pipeline).await;
    let drained = wait_until(Duration::from_secs(60), || async { !queue_exists().await }).await;
    assert!(
        drained,
        "the drained queue is removed\n{}",
        pipeline.log_text()
    );
}

#[tokio::test]
async fn the_held_back_count_shows_what_waits_behind_a_failing_head() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "ordered", &receiver.url("/ordered"), &fifo(""))
        + &endpoint("acme", "parallel", &receiver.url("/parallel"), "")
        + &subscription("acme", "ordered", "ordered", &[">"])
        + &subscription("acme", "parallel", "parallel", &[">"]);
    // The head fails for a while: with the breaker on, its circuit would hold the send-test too.
    let pipeline = Pipeline::start_with(
        &nats,
        &[("acme.yaml", manifests)],
        &["--circuit-breaker-threshold", "0"],
    )
    .await;

    let events = ids("evt", 10);
    receiver.hold("/ordered", &events[0]);
    publish_all(&jetstream(&nats).await, &events, &[], Duration::ZERO).await;
    let held = wait_until(Duration::from_secs(30), || async {
        pipeline.endpoint("acme", "ordered").await["heldBack"] == 9
    })
    .await;
    assert!(
        held,
        "nine events wait behind the failing head: {}",
        pipeline.endpoint("acme", "ordered").await
    );
    let parallel = pipeline.endpoint("acme", "parallel").await;
    assert!(parallel.get("heldBack").is_none(), "{parallel}");
    let gauge = wait_until(Duration::from_secs(15), || async {
        metric_value(
            &pipeline.metrics().await,
            r#"webhook_fifo_held_back{tenant="acme",endpoint="ordered"}"#,
        ) == Some(9.0)
    })
    .await;
    assert!(gauge, "{}", pipeline.metrics().await);

    // A send-test is outside the order: it arrives while the head is held.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/endpoints/acme/ordered/test",
            pipeline.admin()
        ))
        .send()
        .await
        .expect("send-test");
    assert_eq!(response.status(), 202);
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.expect("body")).expect("json");
    let test_id = body["id"].as_str().expect("id").to_owned();
    assert!(
        wait_until(Duration::from_secs(30), || async {
            receiver.first_successes("/ordered").contains(&test_id)
        })
        .await,
        "the send-test is delivered while the head is held"
    );
    assert!(receiver.first_successes("/ordered").len() == 1);

    receiver.release("/ordered", &events[0]);
    wait_for_all(&receiver, "/ordered", &events, &pipeline).await;
    assert_in_order(&receiver, "/ordered", &events);
    let recovered = wait_until(Duration::from_secs(30), || async {
        pipeline.endpoint("acme", "ordered").await["heldBack"] == 0
    })
    .await;
    assert!(recovered, "{}", pipeline.endpoint("acme", "ordered").await);
}
