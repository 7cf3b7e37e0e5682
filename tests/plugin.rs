//! The kubectl plugin, the real binary, against `webhook-operator local` with --admin-url: run as
//! `webhook-operator kubectl ...` and, through a symlink, as `kubectl-webhooks ...` (what kubectl
//! runs for `kubectl webhooks ...`).

mod common;

use std::{path::Path, process::Output};

use common::{Nats, Pipeline, Receiver, endpoint, subscription};
use serde_json::Value;

async fn run(program: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(program)
        .args(args)
        .env_remove("WEBHOOKS_ADMIN_URL")
        .output()
        .await
        .expect("run the plugin")
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_webhook-operator"))
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "plugin failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

#[tokio::test]
async fn endpoints_as_a_subcommand_and_as_kubectl_webhooks() {
    common::init();
    let nats = Nats::start();
    let receiver = Receiver::start().await;
    let manifests = [
        endpoint("acme", "orders", &receiver.url("/orders"), ""),
        subscription("acme", "orders-paid", "orders", &["order.paid"]),
        endpoint("globex", "crm", &receiver.url("/crm"), "  paused: true"),
    ]
    .join("");
    let pipeline = Pipeline::start(&nats, &[("tenants.yaml", manifests)]).await;
    let admin = pipeline.admin();
    let (status, _) = pipeline
        .ingest("acme", "order.paid", r#"{"order":1}"#, Some("order-1"))
        .await;
    assert_eq!(status, 202);
    pipeline
        .wait_for_counter("acme", "orders", "delivered", 1)
        .await;

    // Every namespace, as a table.
    let text = stdout(
        &run(
            binary(),
            &["kubectl", "--admin-url", &admin, "endpoints", "-A"],
        )
        .await,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "URL",
            "HEALTH",
            "DELIVERED",
            "FAILED",
            "DEAD",
            "LAST",
            "FAILURE"
        ]
    );
    let row = |ns: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(ns))
            .unwrap_or_else(|| panic!("no {ns} row in\n{text}"))
            .split_whitespace()
            .collect()
    };
    let orders_url = receiver.url("/orders");
    assert_eq!(
        row("acme"),
        [
            "acme",
            "orders",
            orders_url.as_str(),
            "Healthy",
            "1",
            "0",
            "0",
            "-"
        ]
    );
    assert_eq!(row("globex")[3], "Paused");

    // One namespace, as JSON, through a `kubectl-webhooks` symlink.
    let bin_dir = tempfile::tempdir().expect("tempdir");
    let plugin = bin_dir.path().join("kubectl-webhooks");
    std::os::unix::fs::symlink(binary(), &plugin).expect("symlink");
    let json = stdout(
        &run(
            &plugin,
            &[
                "endpoints",
                "-n",
                "acme",
                "-o",
                "json",
                "--admin-url",
                &admin,
            ],
        )
        .await,
    );
    let rows: Vec<Value> = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["name"], "orders");
    assert_eq!(rows[0]["delivered"], 1);
    assert_eq!(rows[0]["health"], "Healthy");

    // The plugin's own help names it the way kubectl users type it.
    let help = stdout(&run(&plugin, &["--help"]).await);
    assert!(help.contains("Usage: kubectl webhooks"), "{help}");

    // An endpoint the server does not know: a non-zero exit and a message naming it.
    let missing = run(
        &plugin,
        &["dead-letters", "nope", "-n", "acme", "--admin-url", &admin],
    )
    .await;
    assert!(!missing.status.success());
    let error = String::from_utf8_lossy(&missing.stderr);
    assert!(
        error.contains("/v1/endpoints/acme/nope/dead-letters") && error.contains("HTTP 404"),
        "{error}"
    );
}

#[tokio::test]
async fn an_unreachable_admin_server_is_a_clear_error() {
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let output = run(binary(), &["kubectl", "--admin-url", &closed, "endpoints"]).await;
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.starts_with("error: GET /v1/endpoints: "), "{error}");
}

/// A request the stand-in API server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    body: Value,
}

/// A stand-in Kubernetes API server on a local port: records each request and answers with a
/// WebhookEndpoint. Returns its URL.
async fn api_server(seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) -> String {
    use axum::{body::Bytes, http::Request, response::IntoResponse};
    let app = axum::Router::new().fallback(move |request: Request<axum::body::Body>| {
        let seen = seen.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes: Bytes = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            seen.lock().expect("lock").push(Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                content_type: parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            });
            axum::Json(serde_json::json!({
                "apiVersion": "webhook-operator.io/v1alpha1", "kind": "WebhookEndpoint",
                "metadata": {"name": "orders", "namespace": "acme"},
                "spec": {"url": "https://orders.example"},
            }))
            .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn rotate_secret_annotates_the_endpoint_through_the_api_server() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = api_server(seen.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: \"{server}\"}}}}]\n\
             users: [{{name: test, user: {{token: test-token}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: test, namespace: acme}}}}]\n"
        ),
    )
    .expect("kubeconfig");
    let output = tokio::process::Command::new(binary())
        .args(["kubectl", "rotate-secret", "orders"])
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("WEBHOOKS_ADMIN_URL")
        .output()
        .await
        .expect("run the plugin");
    let text = stdout(&output);

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        (
            "PATCH",
            "/apis/webhook-operator.io/v1alpha1/namespaces/acme/webhookendpoints/orders"
        ),
        "the context's namespace, straight to the resource"
    );
    assert_eq!(seen[0].content_type, "application/merge-patch+json");
    let value = seen[0].body["metadata"]["annotations"]["webhook-operator.io/rotate-signing-key"]
        .as_str()
        .expect("the annotation");
    assert!(
        text.contains("acme/orders") && text.contains(value),
        "{text}"
    );

    // Without a cluster there is nothing to annotate: a clear error, pointing at the tenant API.
    let local = run(
        binary(),
        &[
            "kubectl",
            "--admin-url",
            "http://127.0.0.1:9",
            "rotate-secret",
            "orders",
        ],
    )
    .await;
    assert!(!local.status.success());
    let error = String::from_utf8_lossy(&local.stderr);
    assert!(
        error.contains("needs a Kubernetes cluster") && error.contains("secret/rotate"),
        "{error}"
    );
}
