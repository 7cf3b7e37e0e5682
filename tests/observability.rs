//! "We never got the webhook": the attempt log, dead letters and event lookup of the admin API,
//! and sending again (replay, redeliver, send-test), against real deliveries.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use serde_json::{Value, json};

/// The event, once the router has indexed it.
async fn event(pipeline: &Pipeline, namespace: &str, id: &str) -> Value {
    let path = format!("/v1/events/{namespace}/{id}");
    let found = wait_until(Duration::from_secs(30), || async {
        pipeline.get(&path).await.0 == 200
    })
    .await;
    assert!(found, "event {id} never found");
    pipeline.get(&path).await.1
}

fn delivery<'a>(event: &'a Value, endpoint: &str) -> &'a Value {
    event["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["endpoint"] == endpoint))
        .unwrap_or_else(|| panic!("no delivery to {endpoint} in {event}"))
}

fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array: {value}"))
}

fn error_of(value: &Value) -> &str {
    value["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn attempts_dead_letters_and_events_show_what_happened() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.script("/flaky", [Reply::Status(500), Reply::Status(503)]);
    receiver.set_default("/down", Reply::Status(500));
    receiver.set_default("/later", Reply::Status(502));
    let hold = "  retry: { maxAttempts: 5, initialBackoff: 1h, maxBackoff: 1h, maxAge: 24h }";
    let mut manifests = String::new();
    for (name, spec) in [
        ("ok", FAST_RETRY),
        ("flaky", FAST_RETRY),
        ("down", FAST_RETRY),
        ("later", hold),
        ("held", "  paused: true"),
    ] {
        manifests += &endpoint("acme", name, &receiver.url(&format!("/{name}")), spec);
        manifests += &subscription("acme", name, name, &["order.*"]);
    }
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    nats.publish("events.acme.order.paid", Some("order-1"), br#"{"order":1}"#)
        .await;
    pipeline
        .wait_for_counter("acme", "ok", "delivered", 1)
        .await;
    pipeline
        .wait_for_counter("acme", "flaky", "delivered", 1)
        .await;
    pipeline
        .wait_for_counter("acme", "down", "deadLettered", 1)
        .await;
    pipeline
        .wait_for_counter("acme", "later", "failedAttempts", 1)
        .await;

    // Attempts: newest first, with what came back.
    let (status, down) = pipeline.get("/v1/endpoints/acme/down/attempts").await;
    assert_eq!(status, 200, "{down}");
    let down = array(&down);
    assert_eq!(
        down.iter()
            .map(|a| a["attempt"].clone())
            .collect::<Vec<_>>(),
        [3, 2, 1],
        "{down:?}"
    );
    for attempt in down {
        assert_eq!(attempt["eventId"], "order-1");
        assert_eq!(attempt["eventType"], "order.paid");
        assert_eq!(attempt["result"], "http_5xx");
        assert_eq!(attempt["reason"], "HTTP500");
        assert_eq!(attempt["statusCode"], 500);
        assert!(
            error_of(&json!({"error": attempt["error"]})).contains("500"),
            "{attempt}"
        );
        assert_eq!(attempt["responseBody"], "status 500");
        assert!(attempt["durationMs"].is_u64());
    }
    assert_eq!(down[0]["outcome"], json!({"state": "deadLettered"}));
    for retried in &down[1..] {
        assert_eq!(retried["outcome"]["state"], "retrying", "{retried}");
        assert!(
            retried["outcome"]["nextAttemptTime"].is_string(),
            "{retried}"
        );
    }
    let times: Vec<&str> = down.iter().filter_map(|a| a["time"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    let (_, flaky) = pipeline.get("/v1/endpoints/acme/flaky/attempts").await;
    let flaky = array(&flaky);
    assert_eq!(
        flaky
            .iter()
            .map(|a| (a["result"].clone(), a["statusCode"].clone()))
            .collect::<Vec<_>>(),
        [
            (json!("success"), json!(200)),
            (json!("http_5xx"), json!(503)),
            (json!("http_5xx"), json!(500)),
        ]
    );
    assert_eq!(flaky[0]["outcome"], json!({"state": "delivered"}));
    assert_eq!(flaky[0]["responseBody"], "status 200");
    assert!(flaky[0].get("reason").is_none(), "{}", flaky[0]);

    // Filters and limits.
    let results = |v: &Value| {
        array(v)
            .iter()
            .map(|a| a["statusCode"].clone())
            .collect::<Vec<_>>()
    };
    let (_, only) = pipeline
        .get("/v1/endpoints/acme/flaky/attempts?result=success")
        .await;
    assert_eq!(results(&only), [200]);
    let (_, failed) = pipeline
        .get("/v1/endpoints/acme/flaky/attempts?result=failure")
        .await;
    assert_eq!(results(&failed), [503, 500]);
    let (_, newest_failure) = pipeline
        .get("/v1/endpoints/acme/flaky/attempts?result=http_5xx&limit=1")
        .await;
    assert_eq!(results(&newest_failure), [503]);
    let (_, none) = pipeline
        .get("/v1/endpoints/acme/flaky/attempts?result=timeout")
        .await;
    assert_eq!(results(&none), Vec::<Value>::new());
    let (status, bad) = pipeline
        .get("/v1/endpoints/acme/flaky/attempts?result=nope")
        .await;
    assert_eq!(status, 400);
    assert!(error_of(&bad).contains("nope"), "{bad}");
    let (status, bad) = pipeline
        .get("/v1/endpoints/acme/flaky/attempts?limit=1001")
        .await;
    assert_eq!(status, 400);
    assert!(error_of(&bad).contains("limit"), "{bad}");

    // Dead letters.
    let (status, letters) = pipeline.get("/v1/endpoints/acme/down/dead-letters").await;
    assert_eq!(status, 200, "{letters}");
    let letters = array(&letters);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["eventId"], "order-1");
    assert_eq!(letters[0]["eventType"], "order.paid");
    assert_eq!(letters[0]["reason"], "HTTP500");
    assert_eq!(letters[0]["statusCode"], 500);
    assert_eq!(letters[0]["attempts"], 3);
    assert!(
        letters[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("500"))
    );
    assert!(letters[0]["publishedTime"].as_str() <= letters[0]["deadLetteredTime"].as_str());
    let (_, none) = pipeline.get("/v1/endpoints/acme/ok/dead-letters").await;
    assert_eq!(none, json!([]));

    // The event, and where it stands at each endpoint.
    let order = event(&pipeline, "acme", "order-1").await;
    assert_eq!(order["id"], "order-1");
    assert_eq!(order["namespace"], "acme");
    assert_eq!(order["eventType"], "order.paid");
    assert_eq!(order["contentType"], "application/json");
    assert_eq!(order["payload"], json!({"order": 1}));
    assert!(order["publishedTime"].is_string());
    assert_eq!(array(&order["deliveries"]).len(), 5, "{order}");
    let ok = delivery(&order, "ok");
    assert_eq!(
        (&ok["state"], &ok["attempts"]),
        (&json!("delivered"), &json!(1))
    );
    assert_eq!(ok["lastAttempt"]["result"], "success");
    let flaky = delivery(&order, "flaky");
    assert_eq!(
        (&flaky["state"], &flaky["attempts"]),
        (&json!("delivered"), &json!(3))
    );
    let down = delivery(&order, "down");
    assert_eq!(
        (&down["state"], &down["attempts"]),
        (&json!("deadLettered"), &json!(3))
    );
    assert_eq!(down["lastAttempt"]["statusCode"], 500);
    let later = delivery(&order, "later");
    assert_eq!(later["state"], "retrying", "{later}");
    assert_eq!(later["attempts"], 1);
    assert!(later["nextAttemptTime"].as_str() > later["lastAttempt"]["time"].as_str());
    let held = delivery(&order, "held");
    assert_eq!(held["state"], "pending", "{held}");
    assert_eq!(held["attempts"], 0);
    assert!(held.get("lastAttempt").is_none());

    // An event nobody subscribed to is found too: it went nowhere.
    let (status, _) = pipeline
        .ingest("acme", "user.created", "plain text?", Some("user-9"))
        .await;
    assert_eq!(status, 202);
    let user = event(&pipeline, "acme", "user-9").await;
    assert_eq!(user["deliveries"], json!([]));
    assert_eq!(user["payload"], "plain text?", "not JSON: the text");

    // Unknown things answer 404 with a message naming them.
    for path in [
        "/v1/endpoints/acme/nobody/attempts",
        "/v1/endpoints/acme/nobody/dead-letters",
        "/v1/endpoints/elsewhere/ok/attempts",
        "/v1/events/acme/never-published",
        "/v1/events/elsewhere/order-1",
        "/v1/events/Not%20a%20namespace/order-1",
    ] {
        let (status, body) = pipeline.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(!error_of(&body).is_empty(), "{path}: {body}");
    }
    let (status, body) = pipeline.get("/v1/endpoints/acme/nobody/attempts").await;
    assert_eq!(
        (status, error_of(&body)),
        (404, "endpoint acme/nobody not found")
    );
    for path in [
        "/v1/endpoints/acme/nobody/replay",
        "/v1/endpoints/acme/nobody/test",
        "/v1/events/acme/never-published/redeliver",
    ] {
        let (status, body) = pipeline.post(path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
}

#[tokio::test]
async fn newest_first_across_many_attempts() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = endpoint("acme", "busy", &receiver.url("/busy"), "")
        + &endpoint("acme", "other", &receiver.url("/other"), "")
        + &subscription("acme", "busy", "busy", &["tick"])
        + &subscription("acme", "other", "other", &["tock"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    // Interleaved with another endpoint's attempts, which the listing must skip.
    for n in 0..120 {
        let id = format!("tick-{n:03}");
        nats.publish("events.acme.tick", Some(&id), b"{}").await;
        nats.publish("events.acme.tock", Some(&format!("tock-{n:03}")), b"{}")
            .await;
    }
    pipeline
        .wait_for_counter("acme", "busy", "delivered", 120)
        .await;
    pipeline
        .wait_for_counter("acme", "other", "delivered", 120)
        .await;

    let (_, all) = pipeline
        .get("/v1/endpoints/acme/busy/attempts?limit=1000")
        .await;
    let all = array(&all);
    assert_eq!(all.len(), 120);
    let mut ids: Vec<&str> = all.iter().filter_map(|a| a["eventId"].as_str()).collect();
    assert!(ids.iter().all(|id| id.starts_with("tick-")), "{ids:?}");
    let times: Vec<&str> = all.iter().filter_map(|a| a["time"].as_str()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 120, "each attempt once");

    let (_, ten) = pipeline
        .get("/v1/endpoints/acme/busy/attempts?limit=10")
        .await;
    let ten = array(&ten);
    assert_eq!(ten.len(), 10);
    // The newest ten written; concurrent attempts may finish a few milliseconds out of order.
    assert!(
        ten.iter().all(|a| all[..15].contains(a)),
        "the newest ten: {ten:?}"
    );
    let (_, default) = pipeline.get("/v1/endpoints/acme/busy/attempts").await;
    assert_eq!(array(&default).len(), 50, "limit defaults to 50");

    // The oldest event is still found among the newer ones.
    let first = event(&pipeline, "acme", "tick-000").await;
    assert_eq!(delivery(&first, "busy")["state"], "delivered");
    assert_eq!(array(&first["deliveries"]).len(), 1);
}

#[tokio::test]
async fn replayed_dead_letters_are_delivered_once_more_signed_with_the_same_id() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/down", Reply::Status(503));
    let retry = "  retry: { maxAttempts: 2, initialBackoff: 100ms, maxBackoff: 1s, maxAge: 1h }";
    let manifests = endpoint("acme", "down", &receiver.url("/down"), retry)
        + &subscription("acme", "all", "down", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    let ids = ["lost-1", "lost-2", "lost-3"];
    for (n, id) in ids.iter().enumerate() {
        nats.publish(
            "events.acme.order.paid",
            Some(id),
            format!(r#"{{"n":{n}}}"#).as_bytes(),
        )
        .await;
    }
    pipeline
        .wait_for_counter("acme", "down", "deadLettered", 3)
        .await;
    let (_, letters) = pipeline.get("/v1/endpoints/acme/down/dead-letters").await;
    assert_eq!(array(&letters).len(), 3);

    // Nothing is dead-lettered after a time in the future; a bad time is refused.
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let (status, body) = pipeline
        .post(
            "/v1/endpoints/acme/down/replay",
            Some(json!({"since": future.to_string()})),
        )
        .await;
    assert_eq!((status, &body["replayed"]), (202, &json!(0)), "{body}");
    let (status, body) = pipeline
        .post(
            "/v1/endpoints/acme/down/replay",
            Some(json!({"since": "yesterday"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(error_of(&body).contains("since"), "{body}");

    // The receiver recovers; everything is replayed.
    receiver.set_default("/down", Reply::Status(200));
    let before = receiver.received("/down").len();
    assert_eq!(before, 6, "two failed attempts each");
    let (status, body) = pipeline.post("/v1/endpoints/acme/down/replay", None).await;
    assert_eq!((status, &body["replayed"]), (202, &json!(3)), "{body}");
    pipeline
        .wait_for_counter("acme", "down", "delivered", 3)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replayed = &receiver.received("/down")[before..];
    let mut got: Vec<&str> = replayed.iter().map(|r| header(r, "webhook-id")).collect();
    got.sort_unstable();
    assert_eq!(
        got, ids,
        "each dead letter delivered once more, same webhook-id"
    );
    for delivery in replayed {
        verify(SECRET, delivery).expect("signed afresh, verifies");
        let n = ids
            .iter()
            .position(|id| *id == header(delivery, "webhook-id"))
            .unwrap_or(usize::MAX);
        assert_eq!(delivery.body.as_ref(), format!(r#"{{"n":{n}}}"#).as_bytes());
    }

    // Replayed dead letters leave the list; a second replay has nothing to do.
    let (_, letters) = pipeline.get("/v1/endpoints/acme/down/dead-letters").await;
    assert_eq!(letters, json!([]));
    let (_, body) = pipeline
        .post("/v1/endpoints/acme/down/replay", Some(json!({})))
        .await;
    assert_eq!(body["replayed"], 0);
    let lost = event(&pipeline, "acme", "lost-2").await;
    let state = delivery(&lost, "down");
    assert_eq!(state["state"], "delivered", "{lost}");
    assert_eq!(state["lastAttempt"]["result"], "success");
}

#[tokio::test]
async fn redeliver_and_send_test() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let mut manifests = String::new();
    for name in ["a", "b", "c"] {
        manifests += &endpoint("acme", name, &receiver.url(&format!("/{name}")), "");
    }
    manifests += &subscription("acme", "a", "a", &["order.paid"]);
    manifests += &subscription("acme", "b", "b", &["order.paid"]);
    manifests += &subscription("acme", "c", "c", &["invoice.*"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    nats.publish("events.acme.order.paid", Some("x1"), br#"{"x":1}"#)
        .await;
    receiver.wait_for("/a", 1).await;
    receiver.wait_for("/b", 1).await;
    event(&pipeline, "acme", "x1").await;

    let (status, body) = pipeline
        .post(
            "/v1/events/acme/x1/redeliver",
            Some(json!({"endpoints": ["a"]})),
        )
        .await;
    assert_eq!((status, &body), (202, &json!({"endpoints": ["a"]})));
    let again = receiver.wait_for("/a", 2).await;
    assert_eq!(header(&again[1], "webhook-id"), "x1");
    assert_eq!(again[1].body.as_ref(), br#"{"x":1}"#);
    verify(SECRET, &again[1]).expect("redelivery verifies");

    let (status, body) = pipeline.post("/v1/events/acme/x1/redeliver", None).await;
    assert_eq!(status, 202);
    let mut endpoints: Vec<&str> = array(&body["endpoints"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    endpoints.sort_unstable();
    assert_eq!(endpoints, ["a", "b"], "every endpoint it was routed to");
    receiver.wait_for("/a", 3).await;
    receiver.wait_for("/b", 2).await;

    let (status, body) = pipeline
        .post(
            "/v1/events/acme/x1/redeliver",
            Some(json!({"endpoints": ["c"]})),
        )
        .await;
    assert_eq!(status, 400, "c never subscribed to order.paid: {body}");
    assert!(error_of(&body).contains("not routed"), "{body}");
    let (status, _) = pipeline
        .post(
            "/v1/events/acme/x1/redeliver",
            Some(json!({"endpoints": ["zzz"]})),
        )
        .await;
    assert_eq!(status, 404);

    // Send-test reaches exactly the endpoint asked for, whatever it subscribes to.
    let (status, body) = pipeline.post("/v1/endpoints/acme/a/test", None).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let tests = receiver.wait_for("/a", 4).await;
    let test = &tests[3];
    assert_eq!(header(test, "webhook-id"), id);
    assert_eq!(header(test, "webhook-event-type"), "webhook.test");
    verify(SECRET, test).expect("test event verifies");
    let payload: Value = serde_json::from_slice(&test.body).expect("JSON");
    assert_eq!(
        (&payload["test"], &payload["endpoint"]),
        (&json!(true), &json!("a"))
    );
    let (status, body) = pipeline
        .post(
            "/v1/endpoints/acme/c/test",
            Some(json!({"eventType": "order.paid", "payload": {"hello": 1}})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let to_c = receiver.wait_for("/c", 1).await;
    assert_eq!(header(&to_c[0], "webhook-event-type"), "order.paid");
    assert_eq!(to_c[0].body.as_ref(), br#"{"hello":1}"#);
    let test_event = event(&pipeline, "acme", body["id"].as_str().unwrap_or_default()).await;
    assert_eq!(
        array(&test_event["deliveries"])
            .iter()
            .map(|d| d["endpoint"].clone())
            .collect::<Vec<_>>(),
        [json!("c")]
    );
    let (status, body) = pipeline
        .post(
            "/v1/endpoints/acme/c/test",
            Some(json!({"eventType": "bad..type"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts: BTreeMap<&str, usize> = ["a", "b", "c"]
        .into_iter()
        .map(|n| (n, receiver.received(&format!("/{n}")).len()))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([("a", 4), ("b", 2), ("c", 1)]),
        "nothing else was sent"
    );
}

/// An event's state at an endpoint is found past the newest-first search's budget, by
/// following its attempts forward from its publication.
#[tokio::test]
async fn an_events_state_is_found_beyond_the_newest_first_budget() {
    use webhook_operator::{
        dataplane::{
            attempt_log::{AttemptRecord, AttemptResult, Outcome},
            inspect::{self, DeliveryState},
            publisher,
            topology::{self, ATTEMPTS_STREAM, Authority, TopologySettings},
        },
        model::EndpointKey,
    };

    init();
    let nats = Nats::start();
    let js = async_nats::jetstream::new(nats.client().await);
    topology::ensure(&js, &TopologySettings::default(), Authority::Owner)
        .await
        .expect("topology");
    let endpoint = EndpointKey::new("acme", "busy");
    let published = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
    let record =
        |event: &str, attempt: u32, result: AttemptResult, outcome: Outcome| AttemptRecord {
            time: jiff::Timestamp::now(),
            event_id: event.into(),
            event_type: "order.paid".into(),
            attempt,
            result,
            reason: None,
            status_code: Some(if result == AttemptResult::Success {
                200
            } else {
                500
            }),
            duration_ms: 1,
            error: None,
            response_body: None,
            outcome,
        };
    let mut log = vec![record(
        "target",
        1,
        AttemptResult::Http5xx,
        Outcome::Retrying {
            next_attempt_time: jiff::Timestamp::now(),
        },
    )];
    let noise = |from: usize| {
        (from..from + 50).map(move |n| {
            record(
                &format!("noise-{n}"),
                1,
                AttemptResult::Success,
                Outcome::Delivered,
            )
        })
    };
    log.extend(noise(0));
    log.push(record(
        "target",
        2,
        AttemptResult::Http5xx,
        Outcome::DeadLettered,
    ));
    log.extend(noise(50));
    for entry in &log {
        publisher::record_attempt(&js, &endpoint, entry)
            .await
            .expect("append");
    }
    let attempts = js.get_stream(ATTEMPTS_STREAM).await.expect("stream");
    let state = |event: &'static str, budget: u64| {
        let (attempts, endpoint) = (attempts.clone(), endpoint.clone());
        async move {
            let view = inspect::delivery_state(&attempts, &endpoint, event, published, budget)
                .await
                .expect("search");
            (view.state, view.attempts)
        }
    };
    // Found newest-first.
    assert_eq!(
        state("target", 1000).await,
        (DeliveryState::DeadLettered, 2)
    );
    // Too many records for that: found forward, attempt 1 leading to attempt 2.
    assert_eq!(state("target", 60).await, (DeliveryState::DeadLettered, 2));
    // The budget ends between them: the last attempt found.
    assert_eq!(state("target", 30).await, (DeliveryState::Retrying, 1));
    // Never attempted: pending when everything was read, unknown when not.
    assert_eq!(state("never", 1000).await, (DeliveryState::Pending, 0));
    assert_eq!(state("never", 30).await, (DeliveryState::Unknown, 0));
}
