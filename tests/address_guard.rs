//! The outbound address guard, end to end: without `--allow-private-networks` a delivery to a
//! loopback receiver is refused before anything connects, dead-lettered after one attempt with
//! reason `BlockedAddress`, and `--allow-cidr` lets the listed range through.
//!
//! Every target here is on loopback; even a broken guard could only reach this machine.

mod common;

use std::time::Duration;

use common::*;

/// Delivers with fast retries, so a wrongly retried refusal would show up within the test.
fn endpoints(cases: &[(&str, String)]) -> String {
    cases
        .iter()
        .map(|(name, url)| subscribed_endpoint(name, url, ""))
        .collect()
}

#[tokio::test]
async fn loopback_receivers_are_refused_without_the_flag() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let port = receiver.port;
    let cases = [
        ("direct", receiver.url("/direct")),
        ("named", format!("http://localhost:{port}/named")),
        ("decimal", format!("http://2130706433:{port}/decimal")),
        ("hex", format!("http://0x7f.1:{port}/hex")),
        ("mapped", format!("http://[::ffff:127.0.0.1]:{port}/mapped")),
        ("v6", format!("http://[::1]:{port}/v6")),
    ];
    let pipeline = Pipeline::start_guarded(&nats, &[("acme.yaml", endpoints(&cases))], &[]).await;

    nats.publish("events.acme.order.paid", Some("ssrf"), b"{}")
        .await;
    for (name, _) in &cases {
        let status = pipeline
            .wait_for_counter("acme", name, "deadLettered", 1)
            .await;
        assert_eq!(status["failedAttempts"], 1, "{name}: {status}");
        assert_eq!(status["delivered"], 0, "{name}: {status}");
        let failure = &status["lastFailure"];
        assert_eq!(failure["reason"], "BlockedAddress", "{name}: {status}");
        let message = failure["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(" is loopback, in ")
                && message.contains("allow with --allow-private-networks or --allow-cidr"),
            "{name}: {message}"
        );
    }
    let status = pipeline.endpoint("acme", "direct").await;
    assert_eq!(
        status["lastFailure"]["message"],
        "127.0.0.1 is loopback, in 127.0.0.0/8 (blocked; allow with \
         --allow-private-networks or --allow-cidr)"
    );
    let status = pipeline.endpoint("acme", "named").await;
    assert!(
        status["lastFailure"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("localhost resolves only to blocked addresses: ")),
        "{status}"
    );

    let metrics = pipeline.metrics().await;
    for (name, _) in &cases {
        let series = format!(
            r#"webhook_delivery_attempts_total{{tenant="acme",endpoint="{name}",result="blocked"}} 1"#
        );
        assert!(metrics.contains(&series), "missing {series}\n{metrics}");
    }

    // Never retried: well past the 200 ms backoff, still one attempt and nothing received.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, _) in &cases {
        let status = pipeline.endpoint("acme", name).await;
        assert_eq!(status["failedAttempts"], 1, "{name}: {status}");
    }
    assert!(
        receiver.all().is_empty(),
        "the receiver got {:?}",
        receiver.all()
    );

    let js = async_nats::jetstream::new(nats.client().await);
    let letter = js
        .get_stream("WEBHOOK_DEAD_LETTERS")
        .await
        .expect("dead-letter stream")
        .direct_get_last_for_subject("webhook.dead.acme.direct")
        .await
        .expect("dead letter");
    let header = |name: &str| letter.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(
        header("Webhook-Dead-Reason").as_deref(),
        Some("BlockedAddress")
    );
    assert_eq!(header("Webhook-Dead-Attempts").as_deref(), Some("1"));
}

#[tokio::test]
async fn allow_cidr_lets_the_listed_range_through() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let port = receiver.port;
    let cases = [
        ("direct", receiver.url("/direct")),
        // localhost is 127.0.0.1 and ::1; only 127.0.0.1 is allowed, and that is dialled.
        ("named", format!("http://localhost:{port}/named")),
        // Outside 127.0.0.0/8: still refused.
        ("v6", format!("http://[::1]:{port}/v6")),
    ];
    let pipeline = Pipeline::start_guarded(
        &nats,
        &[("acme.yaml", endpoints(&cases))],
        &["--allow-cidr", "127.0.0.0/8"],
    )
    .await;

    nats.publish("events.acme.order.paid", Some("allowed"), b"{}")
        .await;
    for name in ["direct", "named"] {
        let status = pipeline
            .wait_for_counter("acme", name, "delivered", 1)
            .await;
        assert_eq!(status["failedAttempts"], 0, "{name}: {status}");
        let got = receiver.wait_for(&format!("/{name}"), 1).await;
        verify(SECRET, &got[0]).expect("signed");
    }
    let status = pipeline
        .wait_for_counter("acme", "v6", "deadLettered", 1)
        .await;
    assert_eq!(
        status["lastFailure"]["reason"], "BlockedAddress",
        "{status}"
    );
    assert!(receiver.received("/v6").is_empty());
}

/// Runs the binary with `args` and `env`, expecting it to refuse to start.
async fn startup_error(args: &[&str], env: &[(&str, &str)]) -> String {
    let manifests = tempfile::tempdir().expect("tempdir");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"));
    command
        .arg("local")
        .arg("--manifests")
        .arg(manifests.path())
        .args(["--nats-url", &format!("nats://127.0.0.1:{}", free_port())])
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("exits promptly")
        .expect("runs");
    assert!(!output.status.success(), "started with {args:?} {env:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_bad_cidr_is_a_startup_error_naming_it() {
    let error = startup_error(&["--allow-cidr", "10.0.0.0/33"], &[]).await;
    assert!(
        error.contains("--allow-cidr") && error.contains("\"10.0.0.0/33\" is not a CIDR"),
        "{error}"
    );
    let error = startup_error(&[], &[("ALLOW_CIDRS", "10.0.0.0/8,bogus")]).await;
    assert!(error.contains("\"bogus\" is not a CIDR"), "{error}");
}
