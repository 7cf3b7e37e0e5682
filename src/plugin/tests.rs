//! The plugin against a mocked Kubernetes API server (tower-test): the requests it sends through
//! the service proxy, and what it prints of the answers.

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

use super::{AdminApi, Output, PluginCommand, execute};

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// An API server that answers each request with the next scripted (status, JSON body).
fn api_server(answers: Vec<(u16, Value)>) -> (AdminApi, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut answers = answers.into_iter();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await.unwrap().to_vec();
            record.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                uri: parts.uri.to_string(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.to_str().unwrap().to_owned()),
                body,
            });
            let (status, answer) = answers.next().expect("an answer for every request");
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    let client = kube::Client::new(service, "default");
    let api = AdminApi::proxy(
        client,
        "webhook-operator",
        "webhook-operator-controller-metrics",
        "admin",
    );
    (api, seen)
}

const PROXY: &str =
    "/api/v1/namespaces/webhook-operator/services/webhook-operator-controller-metrics:admin/proxy";

fn attempt(result: &str, status: Option<u16>, outcome: Value) -> Value {
    json!({
        "time": "2026-01-01T10:00:00Z", "eventId": "order-42", "eventType": "order.paid",
        "attempt": 2, "result": result, "reason": "HTTP503", "statusCode": status,
        "durationMs": 12, "responseBody": "down for\tmaintenance\n\u{1b}[31m", "outcome": outcome,
    })
}

#[tokio::test]
async fn attempts_go_through_the_service_proxy_and_print_as_a_table() {
    let (api, seen) = api_server(vec![(
        200,
        json!([
            attempt(
                "http_5xx",
                Some(503),
                json!({"state": "retrying", "nextAttemptTime": "2999-01-01T00:00:00Z"})
            ),
            attempt("http_5xx", Some(503), json!({"state": "deadLettered"})),
        ]),
    )]);
    let command = PluginCommand::Attempts {
        endpoint: "orders".into(),
        result: None,
        failures: true,
        limit: 20,
    };
    let text = execute(&command, &api, "acme", Output::Table)
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(
        seen[0].uri,
        format!("{PROXY}/v1/endpoints/acme/orders/attempts?limit=20&result=failure")
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for header in [
        "AGE", "EVENT", "RESULT", "REASON", "CODE", "OUTCOME", "DETAIL",
    ] {
        assert!(lines[0].contains(header), "{}", lines[0]);
    }
    assert!(lines[1].contains("order-42") && lines[1].contains("http_5xx"));
    assert!(lines[1].contains("HTTP503") && lines[1].contains("503"));
    assert!(lines[1].contains("retrying, next in"), "{}", lines[1]);
    assert!(lines[2].contains("deadLettered"), "{}", lines[2]);
    // The receiver's body, on one line and without its escape sequence.
    assert!(lines[1].contains("down for maintenance"), "{}", lines[1]);
    assert!(!text.contains('\u{1b}') && !text.contains('\t'));
    // Columns line up: every row starts its RESULT column at the header's offset.
    let column = lines[0].find("RESULT").unwrap();
    assert!(
        lines[1..]
            .iter()
            .all(|l| l[column..].starts_with("http_5xx"))
    );
}

#[tokio::test]
async fn replay_sends_since_and_says_how_many() {
    let (api, seen) = api_server(vec![
        (202, json!({"replayed": 3})),
        (202, json!({"replayed": 0})),
    ]);
    let since = "2026-01-01T00:00:00Z".parse().unwrap();
    let command = PluginCommand::Replay {
        endpoint: "orders".into(),
        since: Some(since),
    };
    let text = execute(&command, &api, "acme", Output::Table)
        .await
        .unwrap();
    assert_eq!(text, "Replayed 3 dead letter(s) of acme/orders.\n");
    let all = PluginCommand::Replay {
        endpoint: "orders".into(),
        since: None,
    };
    execute(&all, &api, "acme", Output::Table).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(
        seen[0].uri,
        format!("{PROXY}/v1/endpoints/acme/orders/replay")
    );
    assert_eq!(seen[0].content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body, json!({"since": "2026-01-01T00:00:00Z"}));
    // Without --since: no body at all (the contract's "absent: all").
    assert!(seen[1].body.is_empty() && seen[1].content_type.is_none());
}

#[tokio::test]
async fn send_test_sends_only_what_was_given() {
    let (api, seen) = api_server(vec![
        (202, json!({"id": "t-1"})),
        (202, json!({"id": "t-2"})),
    ]);
    let plain = PluginCommand::SendTest {
        endpoint: "orders".into(),
        event_type: None,
        payload: None,
    };
    let text = execute(&plain, &api, "acme", Output::Table).await.unwrap();
    assert_eq!(text, "Queued test event t-1 for acme/orders.\n");
    let custom = PluginCommand::SendTest {
        endpoint: "orders".into(),
        event_type: Some("order.paid".into()),
        payload: Some(json!({"order": 42})),
    };
    execute(&custom, &api, "acme", Output::Table).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].uri,
        format!("{PROXY}/v1/endpoints/acme/orders/test")
    );
    assert!(seen[0].body.is_empty());
    let body: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(
        body,
        json!({"eventType": "order.paid", "payload": {"order": 42}})
    );
}

#[tokio::test]
async fn enable_and_redeliver() {
    let (api, seen) = api_server(vec![
        (200, json!({"enabled": true})),
        (202, json!({"endpoints": ["orders", "billing"]})),
    ]);
    let enable = PluginCommand::Enable {
        endpoint: "orders".into(),
    };
    assert_eq!(
        execute(&enable, &api, "acme", Output::Table).await.unwrap(),
        "Enabled acme/orders.\n"
    );
    let redeliver = PluginCommand::Redeliver {
        id: "order 42/paid".into(),
        endpoints: vec!["orders".into(), "billing".into()],
    };
    let text = execute(&redeliver, &api, "acme", Output::Table)
        .await
        .unwrap();
    assert_eq!(
        text,
        "Redelivering acme/order 42/paid to orders, billing.\n"
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        (seen[0].method.as_str(), seen[0].uri.as_str()),
        (
            "POST",
            format!("{PROXY}/v1/endpoints/acme/orders/enable").as_str()
        )
    );
    // An event id is one path segment, whatever it contains.
    assert_eq!(
        seen[1].uri,
        format!("{PROXY}/v1/events/acme/order%2042%2Fpaid/redeliver")
    );
    let body: Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(body, json!({"endpoints": ["orders", "billing"]}));
}

#[tokio::test]
async fn event_shows_payload_and_each_delivery() {
    let (api, seen) = api_server(vec![(
        200,
        json!({
            "id": "order-42", "namespace": "acme", "eventType": "order.paid",
            "publishedTime": "2026-01-01T10:00:00Z", "contentType": "application/json",
            "payload": {"order": 42},
            "deliveries": [
                {"endpoint": "orders", "state": "delivered", "attempts": 2,
                 "lastAttempt": attempt("success", Some(200), json!({"state": "delivered"}))},
                {"endpoint": "billing", "state": "pending", "attempts": 0},
            ],
        }),
    )]);
    let command = PluginCommand::Event {
        id: "order-42".into(),
    };
    let text = execute(&command, &api, "acme", Output::Table)
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap()[0].uri,
        format!("{PROXY}/v1/events/acme/order-42")
    );
    assert!(
        text.contains("order.paid") && text.contains("\"order\": 42"),
        "{text}"
    );
    let orders = text
        .lines()
        .find(|l| l.trim_start().starts_with("orders"))
        .unwrap();
    assert!(
        orders.contains("delivered") && orders.contains("success (200)"),
        "{orders}"
    );
    let billing = text
        .lines()
        .find(|l| l.trim_start().starts_with("billing"))
        .unwrap();
    assert!(billing.contains("pending"), "{billing}");
}

#[tokio::test]
async fn endpoints_of_one_namespace_or_all() {
    let rows = json!([
        {"namespace": "acme", "name": "orders", "url": "https://a.example/h", "health": "Failing",
         "delivered": 10, "failedAttempts": 7, "deadLettered": 2, "consecutiveFailures": 6,
         "lastFailure": {"reason": "HTTP503", "statusCode": 503, "message": "503 Service Unavailable",
                         "eventId": "e1", "time": "2026-01-01T10:00:00Z"}},
        {"namespace": "globex", "name": "crm", "url": "https://g.example/h", "health": "Disabled",
         "delivered": 0, "failedAttempts": 0, "deadLettered": 0, "consecutiveFailures": 0},
    ]);
    let (api, _) = api_server(vec![(200, rows.clone()), (200, rows.clone()), (200, rows)]);
    let one = PluginCommand::Endpoints {
        all_namespaces: false,
    };
    let text = execute(&one, &api, "acme", Output::Table).await.unwrap();
    assert!(text.starts_with("NAME ") && text.contains("orders") && !text.contains("crm"));
    assert!(text.contains("HTTP503 (503)"), "{text}");
    let all = PluginCommand::Endpoints {
        all_namespaces: true,
    };
    let text = execute(&all, &api, "acme", Output::Table).await.unwrap();
    assert!(
        text.starts_with("NAMESPACE ") && text.contains("Disabled"),
        "{text}"
    );
    // JSON output is the API's answer (filtered to the namespace), not a re-rendering.
    let json_text = execute(&one, &api, "acme", Output::Json).await.unwrap();
    let parsed: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 1);
    assert_eq!(parsed[0]["consecutiveFailures"], 6);
}

#[tokio::test]
async fn errors_carry_the_admin_apis_message() {
    let (api, _) = api_server(vec![(
        404,
        json!({"error": "endpoint acme/nope not found"}),
    )]);
    let command = PluginCommand::DeadLetters {
        endpoint: "nope".into(),
        limit: 50,
    };
    let error = execute(&command, &api, "acme", Output::Table)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "GET /v1/endpoints/acme/nope/dead-letters?limit=50: endpoint acme/nope not found (HTTP 404)"
    );
}

#[tokio::test]
async fn api_server_errors_point_at_the_service_settings() {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
        "message": "services \"webhook-operator-controller-metrics\" not found",
    });
    let (api, _) = api_server(vec![(404, status)]);
    let command = PluginCommand::Enable {
        endpoint: "orders".into(),
    };
    let error = execute(&command, &api, "acme", Output::Table)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("services \"webhook-operator-controller-metrics\" not found"),
        "{error}"
    );
    assert!(error.contains("--operator-namespace"), "{error}");
}

#[tokio::test]
async fn an_unexpected_answer_is_an_error_naming_the_request() {
    let (api, _) = api_server(vec![(200, json!({"not": "a list"}))]);
    let command = PluginCommand::Attempts {
        endpoint: "orders".into(),
        result: Some("timeout".into()),
        failures: false,
        limit: 50,
    };
    let error = execute(&command, &api, "acme", Output::Table)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "GET /v1/endpoints/acme/orders/attempts?limit=50&result=timeout: unexpected answer"
    );
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(cause.contains("expected a sequence"), "{cause}");
}

#[tokio::test]
async fn rotate_secret_annotates_the_endpoint_through_the_api_server() {
    let endpoint = json!({
        "apiVersion": "webhook-operator.io/v1alpha1", "kind": "WebhookEndpoint",
        "metadata": {"name": "orders", "namespace": "acme"}, "spec": {"url": "https://a.example"},
    });
    let not_found = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
        "message": "webhookendpoints.webhook-operator.io \"nope\" not found",
    });
    let (api, seen) = api_server(vec![(200, endpoint), (404, not_found)]);
    let rotate = |name: &str| PluginCommand::RotateSecret {
        endpoint: name.into(),
    };
    let text = execute(&rotate("orders"), &api, "acme", Output::Table)
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].method, "PATCH");
    assert!(
        seen[0].uri.starts_with(
            "/apis/webhook-operator.io/v1alpha1/namespaces/acme/webhookendpoints/orders?"
        ),
        "straight to the resource, not the admin API: {}",
        seen[0].uri
    );
    assert_eq!(
        seen[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let value = body["metadata"]["annotations"]["webhook-operator.io/rotate-signing-key"]
        .as_str()
        .unwrap();
    assert!(value.parse::<jiff::Timestamp>().is_ok(), "{value}");
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(1),
        "only the annotation"
    );
    assert!(
        text.contains("rotate the signing key of acme/orders") && text.contains(value),
        "{text}"
    );
    assert!(text.contains(".status.lastRotation"), "{text}");

    let error = execute(&rotate("nope"), &api, "acme", Output::Table)
        .await
        .unwrap_err();
    let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(
        chain.contains("acme/nope") && chain.contains("not found"),
        "{chain}"
    );

    // An admin URL (local mode) has no API server to annotate through.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let direct = AdminApi::direct(&"http://127.0.0.1:9".parse().unwrap()).unwrap();
    let error = execute(&rotate("orders"), &direct, "acme", Output::Table)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("needs a Kubernetes cluster")
            && error.contains("/v1/tenant/endpoints/orders/secret/rotate"),
        "{error}"
    );
}
