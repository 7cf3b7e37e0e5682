//! `crds/` must be exactly what `webhook-operator crdgen` prints, and the CRDs' admission rules
//! must agree with the controller's own checks (`resources::compile`), which local mode and
//! the tenant API rely on.

use std::collections::BTreeMap;

use kube::CustomResourceExt;
use serde_json::{Value, json};
use webhook_operator::{
    model::NamespaceData,
    resources::{
        WebhookEndpoint, WebhookEndpointSpec,
        compile::{Policy, compile_tenant},
    },
};

#[test]
fn committed_crds_match_crdgen() {
    let generated = webhook_operator::resources::crd_yaml().expect("crdgen");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/webhook-operator.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/webhook-operator.yaml");
    assert!(
        committed == generated,
        "crds/ is stale: run `make crds` and commit the result"
    );
}

/// The WebhookEndpoint `spec` schema as the API server gets it.
fn endpoint_spec_schema() -> Value {
    let crd = serde_json::to_value(WebhookEndpoint::crd()).expect("crd");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// Evaluates one CEL rule with `self` bound to `spec`, as the API server would.
fn admits(rule: &str, spec: &Value) -> bool {
    let program = cel::Program::compile(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
    let mut context = cel::Context::default();
    context
        .add_variable("self", cel::to_value(spec).expect("value"))
        .expect("variable");
    match program.execute(&context) {
        Ok(cel::Value::Bool(ok)) => ok,
        other => panic!("{rule} on {spec}: {other:?}"),
    }
}

/// What the controller says of `spec`: `None` when valid, else the problem's message.
fn compiled(spec: &Value) -> Option<String> {
    let spec: WebhookEndpointSpec = serde_json::from_value(spec.clone()).expect("spec");
    let mut endpoint = WebhookEndpoint::new("a", spec);
    endpoint.metadata.namespace = Some("acme".into());
    let data = NamespaceData {
        secrets: BTreeMap::from([(
            "a-signing".to_string(),
            BTreeMap::from([(
                "secret".to_string(),
                b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_vec(),
            )]),
        )]),
        config_maps: BTreeMap::new(),
    };
    let report = compile_tenant("acme", &[endpoint], &[], &[], &data, Policy::default());
    report.endpoints["a"].clone().err().map(|p| p.message)
}

#[test]
fn the_partition_key_rule_agrees_with_the_controller() {
    let schema = endpoint_spec_schema();
    let rules = schema["x-kubernetes-validations"]
        .as_array()
        .expect("spec-level rules");
    let rule = rules
        .iter()
        .find(|r| {
            r["message"]
                .as_str()
                .unwrap_or_default()
                .contains("partitionKeyHeader")
        })
        .and_then(|r| r["rule"].as_str())
        .expect("the partitionKeyHeader rule");
    let pattern = schema["properties"]["partitionKeyHeader"]["pattern"]
        .as_str()
        .expect("header name pattern");
    let name_ok = |text: &str| regex::Regex::new(pattern).expect("regex").is_match(text);
    let url = "https://a.example/hook";
    for spec in [
        json!({ "url": url }),
        json!({ "url": url, "ordering": "fifo" }),
        json!({ "url": url, "ordering": "unordered" }),
        json!({ "url": url, "ordering": "fifo", "partitionKeyHeader": "X-Customer" }),
        json!({ "url": url, "partitionKeyHeader": "X-Customer" }),
        json!({ "url": url, "ordering": "unordered", "partitionKeyHeader": "X-Customer" }),
        json!({ "url": url, "ordering": "fifo", "partitionKeyHeader": "x y" }),
        json!({ "url": url, "ordering": "fifo", "partitionKeyHeader": "x:y" }),
    ] {
        let header = spec["partitionKeyHeader"].as_str();
        let admitted = admits(rule, &spec) && header.is_none_or(name_ok);
        let problem = compiled(&spec);
        assert_eq!(admitted, problem.is_none(), "{spec}: {problem:?}");
        if let Some(problem) = problem {
            assert!(
                problem.starts_with("spec.partitionKeyHeader: "),
                "{problem}"
            );
        }
    }
}
