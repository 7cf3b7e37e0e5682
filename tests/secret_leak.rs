//! No secret ever shows: deliveries run with known signing keys (two, as during a rotation),
//! Basic and Bearer credentials, an egress proxy with a password and a NATS password, through
//! successes, HTTP failures, TLS failures and invalid Secrets; then everything observable is
//! scanned for those values: the process output at debug level, `/metrics`, `/v1/endpoints`,
//! the attempt log, dead letters, and the routes and counters buckets.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use base64::{Engine, engine::general_purpose::STANDARD};
use common::{
    security::{ForwardProxy, Pki},
    *,
};
use futures::StreamExt;
use webhook_operator::model::signing_keys::SigningKeys;

const NATS_PASSWORD: &str = "natspw-canary-7f3a";
const BASIC_PASSWORD: &str = "basic-pw-canary-91c2";
const BEARER_TOKEN: &str = "bearer-canary-4e1d";
const PROXY_PASSWORD: &str = "proxy-canary-8d8d";
const URL_PASSWORD: &str = "url-canary-3c3c";
const BAD_KEY: &str = "whsec_!!!badkey-canary-55aa";
const BAD_TOKEN_TAIL: &str = "bad-token-canary-0b9e";

fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let data: Vec<String> = data.iter().map(|(k, v)| format!("  {k}: {v:?}")).collect();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: acme }}\nstringData:\n{}\n",
        data.join("\n")
    )
}

fn hook(name: &str, url: &str, signing: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: webhook-operator.io/v1alpha1\nkind: WebhookEndpoint\nmetadata: {{ name: {name}, namespace: acme }}\nspec:\n  url: {url}\n  secretRef: {{ name: {signing} }}\n{FAST_RETRY}\n{extra}\n"
    ) + &subscription("acme", name, name, &[">"])
}

/// Every message of a stream: subject, headers and payload, as text.
async fn stream_text(js: &jetstream::Context, name: &str) -> String {
    let stream = js.get_stream(name).await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("consumer");
    let pending = consumer.cached_info().num_pending as usize;
    let mut messages = consumer.messages().await.expect("messages");
    let mut text = String::new();
    for _ in 0..pending {
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        else {
            break;
        };
        text.push_str(&format!(
            "{} {:?} {}\n",
            message.subject,
            message.headers,
            String::from_utf8_lossy(&message.payload)
        ));
    }
    text
}

/// Every value of a bucket, as text.
async fn bucket_text(js: &jetstream::Context, name: &str) -> String {
    let store = js.get_key_value(name).await.expect("bucket");
    let mut keys = store.keys().await.expect("keys");
    let mut text = String::new();
    while let Some(Ok(key)) = keys.next().await {
        if let Ok(Some(value)) = store.get(&key).await {
            text.push_str(&format!("{key} {}\n", String::from_utf8_lossy(&value)));
        }
    }
    text
}

#[tokio::test]
async fn no_secret_appears_in_logs_metrics_api_or_streams() {
    init();
    let nats = Nats::start_with_auth("webhooks", NATS_PASSWORD);
    let proxy = ForwardProxy::start().await;
    let receiver = Receiver::start_on("127.0.0.2").await;
    let pki = Pki::new();
    let other = Pki::new();
    let (tls, _) = Receiver::start_tls("127.0.0.2", pki.server_config(&["127.0.0.2"])).await;
    let (key_a, key_b) = (SigningKeys::generate(), SigningKeys::generate());
    let base = |path: &str| format!("http://127.0.0.2:{}{path}", receiver.port);
    receiver.script("/basic", [Reply::Status(401)]);
    receiver.script("/bearer", [Reply::RetryAfter(503, 0)]);
    let other_ca = other.ca_pem().trim_end().replace('\n', "\n    ");
    let manifests = [
        secret("signing", &[("secret", &format!("{key_a}\n{key_b}"))]),
        secret("basic", &[("username", "svc"), ("password", BASIC_PASSWORD)]),
        secret("bearer", &[("token", BEARER_TOKEN)]),
        secret("bad-signing", &[("secret", BAD_KEY)]),
        secret("bad-bearer", &[("token", &format!("line1\n{BAD_TOKEN_TAIL}"))]),
        hook("signed", &base("/signed"), "signing", ""),
        hook("basic", &base("/basic"), "signing", "  auth: { basic: { secretName: basic } }"),
        hook("bearer", &base("/bearer"), "signing", "  auth: { bearer: { secretName: bearer } }"),
        hook(
            "tls-refused",
            &format!("https://127.0.0.2:{}/tls", tls.port),
            "signing",
            "  auth: { bearer: { secretName: bearer } }\n  tls: { caBundleRef: { kind: ConfigMap, name: other-ca } }",
        ),
        format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: other-ca, namespace: acme }}\ndata:\n  ca.crt: |\n    {other_ca}\n"),
        hook("bad-key", &base("/bad-key"), "bad-signing", ""),
        hook("bad-token", &base("/bad-token"), "signing", "  auth: { bearer: { secretName: bad-bearer } }"),
        hook("url-creds", &format!("https://someone:{URL_PASSWORD}@example.invalid/x"), "signing", ""),
    ]
    .concat();
    let proxy_url = format!("http://relay:{PROXY_PASSWORD}@127.0.0.1:{}", proxy.port);
    let pipeline = Pipeline::start_logged(
        &nats,
        &[("acme.yaml", manifests)],
        &["--egress-proxy", &proxy_url, "--allow-cidr", "127.0.0.2/32"],
        "debug",
    )
    .await;

    for i in 0..3 {
        nats.publish(
            "events.acme.order.paid",
            Some(&format!("leak-{i}")),
            br#"{"order":42}"#,
        )
        .await;
    }
    for name in ["signed", "basic", "bearer"] {
        pipeline
            .wait_for_counter("acme", name, "delivered", 3)
            .await;
    }
    pipeline
        .wait_for_counter("acme", "tls-refused", "deadLettered", 3)
        .await;
    let signed = receiver.received("/signed");
    verify(&key_a, &signed[0]).expect("first key signs");
    verify(&key_b, &signed[0]).expect("second key signs");
    assert!(
        receiver
            .received("/bearer")
            .iter()
            .any(|r| header(r, "authorization") == format!("Bearer {BEARER_TOKEN}"))
    );
    for (name, reason) in [
        ("bad-key", "InvalidSecret"),
        ("bad-token", "InvalidSecret"),
        ("url-creds", "InvalidUrl"),
    ] {
        let status = pipeline.endpoint("acme", name).await;
        assert_eq!(status["reason"], reason, "{name}: {status}");
    }

    let js = jetstream::new(nats.client().await);
    let observed = [
        ("process output (debug)", pipeline.log_text()),
        ("/metrics", pipeline.metrics().await),
        (
            "/v1/endpoints",
            serde_json::to_string(&pipeline.endpoints().await).unwrap_or_default(),
        ),
        ("attempt log", stream_text(&js, "WEBHOOK_ATTEMPTS").await),
        (
            "dead letters",
            stream_text(&js, "WEBHOOK_DEAD_LETTERS").await,
        ),
        ("routes bucket", bucket_text(&js, "webhook-routes").await),
        ("counters bucket", bucket_text(&js, "webhook-stats").await),
    ];
    // What was observed is real: the scan below looks at text that describes these deliveries.
    assert!(observed[0].1.contains("DEBUG"), "debug logging is on");
    assert!(
        observed[3].1.contains("TlsError") && observed[3].1.contains("HTTP401"),
        "{}",
        observed[3].1
    );
    assert!(
        observed[5].1.contains("\"scheme\":\"bearer\""),
        "{}",
        observed[5].1
    );

    let forbidden = [
        key_a.clone(),
        key_a["whsec_".len()..].to_owned(),
        key_b.clone(),
        key_b["whsec_".len()..].to_owned(),
        NATS_PASSWORD.into(),
        BASIC_PASSWORD.into(),
        STANDARD.encode(format!("svc:{BASIC_PASSWORD}")),
        BEARER_TOKEN.into(),
        PROXY_PASSWORD.into(),
        STANDARD.encode(format!("relay:{PROXY_PASSWORD}")),
        URL_PASSWORD.into(),
        "badkey-canary-55aa".into(),
        BAD_TOKEN_TAIL.into(),
    ];
    let mut leaks = Vec::new();
    for (place, text) in &observed {
        for value in &forbidden {
            if text.contains(value.as_str()) {
                let at = text.find(value.as_str()).unwrap_or_default();
                let context =
                    &text[at.saturating_sub(200)..(at + value.len() + 50).min(text.len())];
                leaks.push(format!("{place}: {value:?} in …{context}…"));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n\n"));
}
