//! `/metrics` after real traffic: it passes `promtool check metrics`, its counters agree with
//! what the receivers saw, and the endpoint label folds into `_overflow` above the limit.

mod common;

use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

fn promtool() -> PathBuf {
    let path = std::env::var_os("PROMTOOL_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/promtool"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "promtool not found at {}: run `make tools` (it extracts promtool from the Debian package \
         prometheus into .tools/), or point PROMTOOL_BIN at one",
        path.display()
    );
    path
}

/// Runs `promtool check metrics` on `text`; its complaints, if any.
fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

async fn scrape(pipeline: &Pipeline, accept: &str) -> (String, String) {
    let response = reqwest::Client::new()
        .get(format!("{}/metrics", pipeline.admin()))
        .header("accept", accept)
        .send()
        .await
        .expect("metrics");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (content_type, response.text().await.expect("text"))
}

/// The value of one series, e.g. `webhook_events_received_total{tenant="acme"}`; 0 if absent.
fn value(metrics: &str, series: &str) -> f64 {
    metric_value(metrics, series).unwrap_or(0.0)
}

fn attempts(endpoint: &str, result: &str) -> String {
    format!(
        "webhook_delivery_attempts_total{{tenant=\"acme\",endpoint=\"{endpoint}\",result=\"{result}\"}}"
    )
}

#[tokio::test]
async fn metrics_pass_promtool_and_match_what_receivers_saw() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    receiver.script("/flaky", [Reply::Status(500), Reply::Status(502)]);
    receiver.set_default("/dead", Reply::Status(503));
    let retry = "  retry: { maxAttempts: 2, initialBackoff: 100ms, maxBackoff: 200ms, maxAge: 1h }";
    let manifests = endpoint("acme", "ok", &receiver.url("/ok"), "")
        + &endpoint("acme", "flaky", &receiver.url("/flaky"), FAST_RETRY)
        + &endpoint("acme", "dead", &receiver.url("/dead"), retry)
        + &subscription("acme", "ok", "ok", &["order.*"])
        + &subscription("acme", "flaky", "flaky", &["order.*"])
        + &subscription("acme", "dead", "dead", &["order.paid"]);
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    for i in 0..4 {
        nats.publish("events.acme.order.paid", Some(&format!("paid-{i}")), b"{}")
            .await;
    }
    nats.publish("events.acme.order.shipped", Some("shipped-0"), b"{}")
        .await;
    nats.publish("events.acme.user.created", Some("unrouted-0"), b"{}")
        .await;

    pipeline
        .wait_for_counter("acme", "ok", "delivered", 5)
        .await;
    pipeline
        .wait_for_counter("acme", "flaky", "delivered", 5)
        .await;
    pipeline
        .wait_for_counter("acme", "dead", "deadLettered", 4)
        .await;

    let (content_type, text) = scrape(&pipeline, "text/plain; version=0.0.4").await;
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    if let Err(problems) = promtool_check(&text) {
        panic!("promtool check metrics rejected /metrics:\n{problems}\n--- metrics ---\n{text}");
    }

    // Prometheus itself negotiates OpenMetrics; plain clients get it too, per the contract.
    let (content_type, openmetrics) = scrape(
        &pipeline,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    )
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(openmetrics.ends_with("# EOF\n"));
    assert!(openmetrics.contains("# TYPE webhook_delivery_attempts counter\n"));

    let ok = receiver.received("/ok").len() as f64;
    let flaky = receiver.received("/flaky").len() as f64;
    let dead = receiver.received("/dead").len() as f64;
    assert_eq!((ok, flaky, dead), (5.0, 7.0, 8.0), "what the receivers saw");
    assert_eq!(value(&text, &attempts("ok", "success")), ok);
    assert_eq!(value(&text, &attempts("flaky", "success")), 5.0);
    assert_eq!(value(&text, &attempts("flaky", "http_5xx")), flaky - 5.0);
    assert_eq!(value(&text, &attempts("dead", "http_5xx")), dead);
    assert_eq!(value(&text, &attempts("dead", "success")), 0.0);
    assert_eq!(
        value(
            &text,
            "webhook_deliveries_dead_lettered_total{tenant=\"acme\",endpoint=\"dead\"}"
        ),
        4.0
    );
    assert_eq!(
        value(&text, "webhook_events_received_total{tenant=\"acme\"}"),
        6.0
    );
    assert_eq!(
        value(&text, "webhook_events_unrouted_total{tenant=\"acme\"}"),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "webhook_delivery_duration_seconds_count{tenant=\"acme\"}"
        ),
        ok + flaky + dead,
        "one duration per HTTP attempt"
    );
    assert_eq!(
        value(
            &text,
            "webhook_delivery_latency_seconds_count{tenant=\"acme\"}"
        ),
        10.0,
        "one latency per delivered event"
    );
    assert_eq!(value(&text, "webhook_endpoints{health=\"Healthy\"}"), 2.0);
    assert_eq!(
        value(&text, "webhook_endpoints{health=\"Failing\"}"),
        1.0,
        "dead: 8 failures in a row"
    );
    assert_eq!(value(&text, "webhook_endpoints{health=\"Disabled\"}"), 0.0);
    assert_eq!(value(&text, "webhook_circuit_open{tenant=\"acme\"}"), 0.0);
    assert!(
        text.contains("webhook_pending_deliveries{tenant=\"acme\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn above_the_limit_the_endpoint_label_folds_into_overflow() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let endpoints = |names: &[&str]| {
        names
            .iter()
            .map(|n| {
                endpoint("acme", n, &receiver.url(&format!("/{n}")), "")
                    + &subscription("acme", n, n, &["order.*"])
            })
            .collect::<String>()
    };
    let pipeline = Pipeline::start_with(
        &nats,
        &[("acme.yaml", endpoints(&["a", "b", "c"]))],
        &["--metrics-max-endpoints", "2"],
    )
    .await;
    nats.publish("events.acme.order.paid", Some("e1"), b"{}")
        .await;
    for name in ["a", "b", "c"] {
        pipeline
            .wait_for_counter("acme", name, "delivered", 1)
            .await;
    }
    let text = pipeline.metrics().await;
    assert_eq!(
        value(&text, &attempts("_overflow", "success")),
        3.0,
        "{text}"
    );
    assert!(
        !text.contains("endpoint=\"a\""),
        "no per-endpoint series above the limit:\n{text}"
    );

    // Back under the limit, endpoints are labelled again.
    pipeline.write_manifest("acme.yaml", &endpoints(&["a", "b"]));
    let relabelled = wait_until(Duration::from_secs(30), || async {
        let key = format!("e-{}", receiver.received("/a").len());
        nats.publish("events.acme.order.paid", Some(&key), b"{}")
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        value(&pipeline.metrics().await, &attempts("a", "success")) > 0.0
    })
    .await;
    assert!(relabelled, "{}", pipeline.metrics().await);
    let text = pipeline.metrics().await;
    assert!(!text.contains("endpoint=\"c\""), "{text}");
}
