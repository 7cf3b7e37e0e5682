//! `--egress-proxy`: deliveries leave through a forward proxy (written here: it records what
//! it forwards), and the address guard still applies. The proxy listens on 127.0.0.1, which the
//! guard refuses as a target; receivers that may be reached listen on 127.0.0.2, which
//! `--allow-cidr` allows; targets on 127.0.0.1 must be refused before the proxy is asked.

mod common;

use common::{
    security::{ForwardProxy, Pki},
    *,
};

#[tokio::test]
async fn deliveries_go_through_the_proxy_and_the_guard_still_applies() {
    init();
    let nats = Nats::start();
    let proxy = ForwardProxy::start().await;
    let allowed = Receiver::start_on("127.0.0.2").await;
    let pki = Pki::new();
    let (secure, _) = Receiver::start_tls("127.0.0.2", pki.server_config(&["127.0.0.2"])).await;
    let forbidden = Receiver::start().await;
    let ca = pki.ca_pem().trim_end().replace('\n', "\n    ");
    let manifests = [
        subscribed_endpoint("plain", &format!("http://127.0.0.2:{}/plain", allowed.port), ""),
        subscribed_endpoint(
            "tls",
            &format!("https://127.0.0.2:{}/tls", secure.port),
            "  tls: { caBundleRef: { kind: ConfigMap, name: ca } }",
        ),
        subscribed_endpoint("literal", &forbidden.url("/literal"), ""),
        subscribed_endpoint("named", &format!("http://localhost:{}/named", forbidden.port), ""),
        format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: ca, namespace: acme }}\ndata:\n  ca.crt: |\n    {ca}\n"),
    ]
    .concat();
    let proxy_url = format!("http://relay:hunter2@127.0.0.1:{}", proxy.port);
    let pipeline = Pipeline::start_guarded(
        &nats,
        &[("acme.yaml", manifests)],
        &["--egress-proxy", &proxy_url, "--allow-cidr", "127.0.0.2/32"],
    )
    .await;

    nats.publish("events.acme.order.paid", Some("proxied-1"), br#"{"n":1}"#)
        .await;
    let plain = allowed.wait_for("/plain", 1).await;
    verify(SECRET, &plain[0]).expect("signed through the proxy");
    secure.wait_for("/tls", 1).await;
    for name in ["plain", "tls"] {
        pipeline
            .wait_for_counter("acme", name, "delivered", 1)
            .await;
    }
    let requests = proxy.requests();
    assert!(
        requests.contains(&format!(
            "POST http://127.0.0.2:{}/plain HTTP/1.1",
            allowed.port
        )),
        "{requests:?}"
    );
    assert!(
        requests.contains(&format!("CONNECT 127.0.0.2:{} HTTP/1.1", secure.port)),
        "https goes through a CONNECT tunnel, verified end to end: {requests:?}"
    );
    // The proxy's credentials from the URL reach the proxy, not the receivers.
    assert!(
        proxy
            .authorizations()
            .iter()
            .all(|a| a.starts_with("Basic ")),
        "{:?}",
        proxy.authorizations()
    );
    assert!(!proxy.authorizations().is_empty());
    assert!(
        allowed
            .all()
            .iter()
            .all(|r| r.headers.get("proxy-authorization").is_none())
    );

    for name in ["literal", "named"] {
        let status = pipeline
            .wait_for_counter("acme", name, "deadLettered", 1)
            .await;
        assert_eq!(
            status["failedAttempts"], 1,
            "refused once, never retried: {status}"
        );
        assert_eq!(
            status["lastFailure"]["reason"], "BlockedAddress",
            "{status}"
        );
        assert!(
            status["lastFailure"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("127.0.0.1 is loopback"),
            "{status}"
        );
    }
    let port = forbidden.port.to_string();
    assert!(
        proxy.requests().iter().all(|r| !r.contains(&port)),
        "a refused target reached the proxy: {:?}",
        proxy.requests()
    );
    assert!(forbidden.all().is_empty());
    assert!(
        !pipeline.log_text().contains("hunter2"),
        "the proxy password was logged"
    );
}

#[tokio::test]
async fn a_bad_proxy_url_is_a_startup_error() {
    let manifests = tempfile::tempdir().expect("tempdir");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_webhook-operator"))
        .arg("local")
        .arg("--manifests")
        .arg(manifests.path())
        .args(["--egress-proxy", "socks5://user:hunter2@proxy:1080"])
        .output()
        .await
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--egress-proxy") && stderr.contains("http or https"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the proxy password was echoed: {stderr}"
    );
}
