//! Failed attempts are retried with backoff, then dead-lettered with the last failure kept.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test]
async fn retries_with_backoff_then_succeeds_with_a_stable_id() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.script("/flaky", [Reply::Status(500), Reply::Status(503)]);
    let spec = "  retry: { maxAttempts: 5, initialBackoff: 300ms, maxBackoff: 5s, maxAge: 1h }";
    let manifests = endpoint("acme", "flaky", &receiver.url("/flaky"), spec)
        + &subscription("acme", "all", "flaky", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    nats.publish("events.acme.order.paid", Some("retry-me"), br#"{"n":1}"#)
        .await;
    let got = receiver.wait_for("/flaky", 3).await;
    assert!(
        got.iter().all(|r| header(r, "webhook-id") == "retry-me"),
        "webhook-id stable across retries"
    );
    for delivery in &got {
        verify(SECRET, delivery).expect("each retry is signed afresh and verifies");
    }
    // Backoff doubles from 300 ms with +/-20% jitter: at least 240 ms, then 480 ms.
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(240), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(480), "{gaps:?}");

    let status = pipeline
        .wait_for_counter("acme", "flaky", "delivered", 1)
        .await;
    assert_eq!(status["failedAttempts"], 2);
    assert_eq!(status["consecutiveFailures"], 0);
    assert_eq!(status["lastFailure"]["reason"], "HTTP503");
    assert_eq!(status["health"], "Healthy");
}

#[tokio::test]
async fn dead_letters_after_max_attempts_and_keeps_the_last_failure() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/down", Reply::Status(500));
    let manifests = endpoint("acme", "down", &receiver.url("/down"), FAST_RETRY)
        + &subscription("acme", "all", "down", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    nats.publish("events.acme.order.paid", Some("doomed"), b"{}")
        .await;
    let status = pipeline
        .wait_for_counter("acme", "down", "deadLettered", 1)
        .await;
    assert_eq!(status["failedAttempts"], 3);
    assert_eq!(status["delivered"], 0);
    assert_eq!(status["lastFailure"]["reason"], "HTTP500");
    assert_eq!(status["lastFailure"]["statusCode"], 500);
    assert_eq!(status["lastFailure"]["eventId"], "doomed");
    assert_eq!(status["health"], "Degraded");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.received("/down").len(),
        3,
        "no attempt after the last one"
    );

    // The dead letter is kept, with the event and the failure, for replay.
    let js = async_nats::jetstream::new(nats.client().await);
    let stream = js
        .get_stream("WEBHOOK_DEAD_LETTERS")
        .await
        .expect("dead-letter stream");
    let letter = stream
        .direct_get_last_for_subject("webhook.dead.acme.down")
        .await
        .expect("dead letter");
    assert_eq!(
        letter.headers.get("Webhook-Event-Id").map(|v| v.as_str()),
        Some("doomed")
    );
    assert_eq!(
        letter
            .headers
            .get("Webhook-Dead-Reason")
            .map(|v| v.as_str()),
        Some("HTTP500")
    );
    assert_eq!(
        letter
            .headers
            .get("Webhook-Dead-Attempts")
            .map(|v| v.as_str()),
        Some("3")
    );
    assert_eq!(letter.payload.as_ref(), b"{}");
}

#[tokio::test]
async fn every_failure_kind_is_classified() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.set_default("/redirect", Reply::Redirect("/elsewhere"));
    receiver.set_default("/missing", Reply::Status(404));
    receiver.set_default("/broken", Reply::Status(502));
    receiver.set_default("/slow", Reply::Delay(Duration::from_secs(5)));
    let refused = format!("http://127.0.0.1:{}/nobody-home", free_port());
    let retry = "  retry: { maxAttempts: 2, initialBackoff: 100ms, maxBackoff: 1s, maxAge: 1h }\n  timeout: 500ms";
    let cases = [
        ("redirect", receiver.url("/redirect"), "HTTP302", "http_3xx"),
        ("missing", receiver.url("/missing"), "HTTP404", "http_4xx"),
        ("broken", receiver.url("/broken"), "HTTP502", "http_5xx"),
        ("slow", receiver.url("/slow"), "Timeout", "timeout"),
        ("refused", refused, "ConnectError", "connect_error"),
    ];
    let mut manifests = String::new();
    for (name, url, _, _) in &cases {
        manifests += &endpoint("acme", name, url, retry);
        manifests += &subscription("acme", name, name, &[">"]);
    }
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    nats.publish("events.acme.order.paid", Some("kinds"), b"{}")
        .await;

    let metrics_text = {
        for (name, _, reason, _) in &cases {
            let status = pipeline
                .wait_for_counter("acme", name, "deadLettered", 1)
                .await;
            assert_eq!(status["failedAttempts"], 2, "{name}: {status}");
            assert_eq!(status["lastFailure"]["reason"], *reason, "{name}: {status}");
        }
        pipeline.metrics().await
    };
    for (name, _, _, label) in &cases {
        let series = format!(
            r#"webhook_delivery_attempts_total{{tenant="acme",endpoint="{name}",result="{label}"}} 2"#
        );
        assert!(
            metrics_text.contains(&series),
            "missing {series}\n{metrics_text}"
        );
    }
    assert!(
        receiver.received("/elsewhere").is_empty(),
        "redirects are not followed"
    );
}

#[tokio::test]
async fn retry_after_is_honoured() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.script("/busy", [Reply::RetryAfter(429, 2)]);
    let spec = "  retry: { maxAttempts: 3, initialBackoff: 100ms, maxBackoff: 10s, maxAge: 1h }";
    let manifests = endpoint("acme", "busy", &receiver.url("/busy"), spec)
        + &subscription("acme", "all", "busy", &[">"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;

    nats.publish("events.acme.order.paid", Some("later"), b"{}")
        .await;
    let got = receiver.wait_for("/busy", 2).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "second attempt after {gap:?}, Retry-After asked for 2 s"
    );
    pipeline
        .wait_for_counter("acme", "busy", "delivered", 1)
        .await;
}
