//! `crds/` must be exactly what `webhook-operator crdgen` prints.

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
