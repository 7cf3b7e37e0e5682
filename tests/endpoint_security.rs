//! Endpoint TLS, authentication and `--require-https`, end to end: HTTPS receivers with a
//! certificate from a CA made up for the test, trusted through `spec.tls.caBundleRef` (from a
//! ConfigMap or a Secret) or not at all; `Authorization` from `spec.auth`; plain http refused.

mod common;

use base64::{Engine, engine::general_purpose::STANDARD};
use common::{security::Pki, *};

fn ca_config_map(name: &str, pem: &str) -> String {
    let pem = pem.trim_end().replace('\n', "\n    ");
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: {name}, namespace: acme }}\ndata:\n  ca.crt: |\n    {pem}\n"
    )
}

fn ca_secret(name: &str, key: &str, pem: &str) -> String {
    let pem = pem.trim_end().replace('\n', "\n    ");
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{ name: {name}, namespace: acme }}\nstringData:\n  {key}: |\n    {pem}\n"
    )
}

#[tokio::test]
async fn https_receivers_are_verified_against_the_endpoint_ca_bundle() {
    init();
    let nats = Nats::start();
    let pki = Pki::new();
    let other = Pki::new();
    let (receiver, handshakes) =
        Receiver::start_tls("127.0.0.1", pki.server_config(&["localhost"])).await;
    let url = |path: &str| format!("https://localhost:{}{path}", receiver.port);
    let manifests = [
        subscribed_endpoint(
            "from-config-map",
            &url("/cm"),
            "  tls: { caBundleRef: { kind: ConfigMap, name: receiver-ca } }",
        ),
        subscribed_endpoint(
            "from-secret",
            &url("/secret"),
            "  tls: { caBundleRef: { kind: Secret, name: receiver-ca-secret, key: bundle.pem } }",
        ),
        subscribed_endpoint(
            "wrong-ca",
            &url("/wrong"),
            "  tls: { caBundleRef: { kind: ConfigMap, name: other-ca } }",
        ),
        // No bundle: the system roots, which do not know this test's CA.
        subscribed_endpoint("system-roots", &url("/system"), ""),
        ca_config_map("receiver-ca", &pki.ca_pem()),
        ca_secret("receiver-ca-secret", "bundle.pem", &pki.ca_pem()),
        ca_config_map("other-ca", &other.ca_pem()),
    ]
    .concat();
    // The breaker stays out of it: the wrong-CA endpoint fails many times in a row, and the
    // healing below must not wait for a probe interval.
    let pipeline = Pipeline::start_with(
        &nats,
        &[("acme.yaml", manifests)],
        &["--circuit-breaker-threshold", "0"],
    )
    .await;

    nats.publish("events.acme.order.paid", Some("tls-1"), b"{}")
        .await;
    for (name, path) in [("from-config-map", "/cm"), ("from-secret", "/secret")] {
        let status = pipeline
            .wait_for_counter("acme", name, "delivered", 1)
            .await;
        assert_eq!(status["failedAttempts"], 0, "{name}: {status}");
        let got = receiver.wait_for(path, 1).await;
        verify(SECRET, &got[0]).expect("signed");
    }
    // Refused certificates fail as TLS errors, retried like any failure (3 attempts), then
    // dead-lettered; nothing reaches the receiver's HTTP layer.
    for name in ["wrong-ca", "system-roots"] {
        let status = pipeline
            .wait_for_counter("acme", name, "deadLettered", 1)
            .await;
        assert_eq!(status["failedAttempts"], 3, "{name}: {status}");
        assert_eq!(
            status["lastFailure"]["reason"], "TlsError",
            "{name}: {status}"
        );
        let message = status["lastFailure"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.to_ascii_lowercase().contains("certificate"),
            "{name}: {message}"
        );
    }
    assert!(receiver.received("/wrong").is_empty() && receiver.received("/system").is_empty());
    let refused = wait_until(std::time::Duration::from_secs(10), || async {
        handshakes.count() >= 6
    })
    .await;
    assert!(
        refused,
        "handshakes refused by the client: {}",
        handshakes.count()
    );
    let metrics = pipeline.metrics().await;
    for name in ["wrong-ca", "system-roots"] {
        let series = format!(
            r#"webhook_delivery_attempts_total{{tenant="acme",endpoint="{name}",result="tls_error"}} 3"#
        );
        assert!(metrics.contains(&series), "{series}\n{metrics}");
    }

    // Fixing the bundle in place heals the endpoint for the next event.
    pipeline.write_manifest(
        "acme.yaml",
        &[
            subscribed_endpoint(
                "wrong-ca",
                &url("/wrong"),
                "  tls: { caBundleRef: { kind: ConfigMap, name: other-ca } }",
            ),
            ca_config_map("other-ca", &pki.ca_pem()),
        ]
        .concat(),
    );
    let healed = wait_until(std::time::Duration::from_secs(10), || async {
        nats.publish("events.acme.order.paid", None, b"{}").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        !receiver.received("/wrong").is_empty()
    })
    .await;
    assert!(healed, "the corrected CA bundle was not picked up");
}

#[tokio::test]
async fn unusable_tls_and_auth_references_make_the_endpoint_invalid() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = [
        subscribed_endpoint(
            "no-bundle",
            "https://localhost:1/x",
            "  tls: { caBundleRef: { kind: ConfigMap, name: missing } }",
        ),
        subscribed_endpoint("junk-bundle", "https://localhost:1/x", "  tls: { caBundleRef: { kind: ConfigMap, name: junk } }"),
        ca_config_map("junk", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----"),
        subscribed_endpoint("no-auth-secret", &receiver.url("/x"), "  auth: { bearer: { secretName: nowhere } }"),
        subscribed_endpoint(
            "header-clash",
            &receiver.url("/x"),
            "  auth: { bearer: { secretName: token } }\n  headers: { Authorization: 'Bearer mine' }",
        ),
        "---\napiVersion: v1\nkind: Secret\nmetadata: { name: token, namespace: acme }\nstringData: { token: t0k3n }\n".into(),
    ]
    .concat();
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    for (name, reason, field) in [
        ("no-bundle", "ConfigMapNotFound", "spec.tls.caBundleRef"),
        ("junk-bundle", "InvalidCaBundle", "spec.tls.caBundleRef"),
        (
            "no-auth-secret",
            "SecretNotFound",
            "spec.auth.bearer.tokenKey",
        ),
        (
            "header-clash",
            "InvalidHeader",
            "spec.headers.Authorization",
        ),
    ] {
        let status = pipeline.endpoint("acme", name).await;
        assert_eq!(status["health"], "Invalid", "{name}: {status}");
        assert_eq!(status["reason"], reason, "{name}: {status}");
        assert!(
            status["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with(field),
            "{name}: {status}"
        );
    }
}

#[tokio::test]
async fn basic_and_bearer_credentials_are_sent_as_authorization() {
    init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = [
        subscribed_endpoint("basic", &receiver.url("/basic"), "  auth: { basic: { secretName: basic-auth } }"),
        subscribed_endpoint(
            "bearer",
            &receiver.url("/bearer"),
            "  auth: { bearer: { secretName: api-token, tokenKey: value } }\n  headers: { X-Env: test }",
        ),
        subscribed_endpoint("none", &receiver.url("/none"), "  headers: { Authorization: 'Static abc' }"),
        "---\napiVersion: v1\nkind: Secret\nmetadata: { name: basic-auth, namespace: acme }\ntype: kubernetes.io/basic-auth\nstringData: { username: orders, password: 'p@ss: word' }\n".into(),
        "---\napiVersion: v1\nkind: Secret\nmetadata: { name: api-token, namespace: acme }\nstringData: { value: \"tok-42\\n\" }\n".into(),
    ]
    .concat();
    let pipeline = Pipeline::start(&nats, &[("acme.yaml", manifests)]).await;
    nats.publish("events.acme.order.paid", Some("auth-1"), b"{}")
        .await;

    let basic = receiver.wait_for("/basic", 1).await.remove(0);
    assert_eq!(
        header(&basic, "authorization"),
        format!("Basic {}", STANDARD.encode("orders:p@ss: word"))
    );
    verify(SECRET, &basic).expect("still signed");
    let bearer = receiver.wait_for("/bearer", 1).await.remove(0);
    assert_eq!(header(&bearer, "authorization"), "Bearer tok-42");
    assert_eq!(header(&bearer, "x-env"), "test");
    // Without spec.auth, a static Authorization header is the user's to set.
    let none = receiver.wait_for("/none", 1).await.remove(0);
    assert_eq!(header(&none, "authorization"), "Static abc");

    // Rotating the password takes effect without a restart.
    let manifests_after = std::fs::read_to_string(pipeline.manifests.path().join("acme.yaml"))
        .unwrap_or_default()
        .replace("'p@ss: word'", "second");
    pipeline.write_manifest("acme.yaml", &manifests_after);
    let expected = format!("Basic {}", STANDARD.encode("orders:second"));
    let rotated = wait_until(std::time::Duration::from_secs(10), || async {
        nats.publish("events.acme.order.paid", None, b"{}").await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        receiver
            .received("/basic")
            .iter()
            .any(|r| header(r, "authorization") == expected)
    })
    .await;
    assert!(rotated, "the new password was not used");
}

#[tokio::test]
async fn require_https_refuses_plain_http_endpoints() {
    init();
    let nats = Nats::start();
    let pki = Pki::new();
    let plain = Receiver::start().await;
    let (secure, _) = Receiver::start_tls("127.0.0.1", pki.server_config(&["localhost"])).await;
    let manifests = [
        subscribed_endpoint("plain", &plain.url("/plain"), ""),
        subscribed_endpoint(
            "secure",
            &format!("https://localhost:{}/secure", secure.port),
            "  tls: { caBundleRef: { kind: ConfigMap, name: ca } }",
        ),
        ca_config_map("ca", &pki.ca_pem()),
    ]
    .concat();
    let pipeline =
        Pipeline::start_with(&nats, &[("acme.yaml", manifests)], &["--require-https"]).await;
    let status = pipeline.endpoint("acme", "plain").await;
    assert_eq!(status["health"], "Invalid", "{status}");
    assert_eq!(status["reason"], "HttpsRequired", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--require-https"),
        "{status}"
    );

    nats.publish("events.acme.order.paid", Some("https-only"), b"{}")
        .await;
    secure.wait_for("/secure", 1).await;
    pipeline
        .wait_for_counter("acme", "secure", "delivered", 1)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        plain.all().is_empty(),
        "an http endpoint received {:?}",
        plain.all()
    );
}
