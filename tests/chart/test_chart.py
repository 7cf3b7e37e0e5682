"""The Helm chart, rendered and linted with Helm's own Go SDK (PyPI helm-python-sdk)."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

import manifests as m
from conftest import CHART, ROOT

RELEASE = "webhook-operator"
NAMESPACE = "webhook-system"

TLS = {
    "nats": {
        "url": "tls://nats.nats.svc:4222",
        "credentialsSecret": "nats-creds",
        "tls": {"enabled": True, "caSecret": "nats-ca", "clientSecret": "nats-client"},
    }
}
MONITORING = {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                          "prometheusRule": {"enabled": True, "alertLabels": {"team": "platform"}},
                          "grafanaDashboard": {"enabled": True}}}
PRIVATE = {"allowPrivateNetworks": True, "allowCidrs": ["10.20.0.0/16", "192.168.1.7"]}
NETWORK_POLICY = {"networkPolicy": {"enabled": True}, "allowCidrs": ["10.20.0.0/16", "fd00::1"]}
SINGLE = {"controller": {"replicas": 1, "leaderElection": False}}
TENANT_API = {"tenantApi": {"enabled": True, "port": 9443}}
NATS_USERS = {"nats": {"userSecret": "nats-controller", "roleInboxes": True},
              "router": {"nats": {"nkeySecret": "nats-router"}},
              "delivery": {"nats": {"tokenSecret": "nats-deliver-{tenant}"},
                           "replicas": 1, "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                                        "limits": {"cpu": 1, "memory": "256Mi"}}}}
PROXY = {"egressProxy": "http://egress.internal:3128", "requireHttps": True,
         "networkPolicy": {"enabled": True, "egressProxyPeers": [{"ipBlock": {"cidr": "10.9.0.7/32"}}]}}
EVERYTHING = {**TLS, **MONITORING, **PRIVATE, **NETWORK_POLICY, **SINGLE, **TENANT_API,
              "egressProxy": "http://proxy:3128", "requireHttps": True,
              "delivery": {"image": {"repository": "registry.example/webhook-operator", "tag": "1.2.3"},
                           "replicas": 3, "natsUrl": "nats://nats-delivery:4222",
                           "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                         "limits": {"cpu": 2, "memory": "1Gi"}}},
              "logFormat": "text", "signingKeyOverlap": "12h"}

VARIANTS = {
    "default": {},
    "tls": TLS,
    "monitoring": MONITORING,
    "private-networks": PRIVATE,
    "network-policy": NETWORK_POLICY,
    "leader-election-off": SINGLE,
    "tenant-api": TENANT_API,
    "nats-users": NATS_USERS,
    "proxy": PROXY,
    "everything": EVERYTHING,
}


def production_values() -> dict[str, Any]:
    import yaml
    return yaml.safe_load((CHART / "values-production.yaml").read_text())


VARIANTS["production"] = production_values()


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = render(values)
    return [obj for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
            for obj in m.parse(text)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_lints_clean(variant):
    report = helm.lint(CHART, VARIANTS[variant], strict=True, namespace=NAMESPACE)
    problems = [msg for msg in report["messages"] if msg["severity"] >= 2]
    assert not report["errors"] and not problems, report


@pytest.mark.parametrize("variant", VARIANTS)
def test_renders_valid_objects(variant):
    rendered = objects(VARIANTS[variant])
    m.check_all(rendered, NAMESPACE)


def test_default_install():
    rendered = objects({})
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                            "ServiceAccount", "ServiceAccount", "Deployment", "Deployment",
                            "Service", "Service", "PodDisruptionBudget", "PodDisruptionBudget"])
    controller = m.one(rendered, "Deployment", "-controller")
    router = m.one(rendered, "Deployment", "-router")
    assert controller["metadata"]["name"] == "webhook-operator-controller"
    assert controller["spec"]["replicas"] == 2 and router["spec"]["replicas"] == 2
    c = m.container(rendered, "-controller")
    image = c["image"]
    with helm.Chart.load(CHART) as chart:
        assert image == f"ghcr.io/webhook-operator/webhook-operator:{chart.metadata['appVersion']}"
    assert m.flag_value(c, "--leader-election") == "true"
    assert m.flag_value(c, "--signing-key-overlap") == "24h"
    # Delivery pods run the operator's own image, with the safe default (private networks refused).
    assert m.flag_value(c, "--deliver-image") == image
    assert "--deliver-allow-private-networks" not in c["args"]
    assert m.flag_value(c, "--deliver-nats-url") == m.flag_value(c, "--nats-url") == "nats://nats:4222"
    assert m.flag_value(c, "--log-format") == m.flag_value(c, "--deliver-log-format") == "json"
    assert m.container(rendered, "-router")["args"][0] == "router"


def test_other_release_name():
    with helm.Chart.load(CHART) as chart:
        rendered = [o for path, text in chart.render({}, name="prod", namespace="ops").items()
                    if not path.endswith("NOTES.txt") for o in m.parse(text)]
    m.check_all(rendered, "ops")
    assert m.one(rendered, "Deployment", "-controller")["metadata"]["name"] == "prod-webhook-operator-controller"


def test_delivery_settings_reach_the_controller_flags():
    c = m.container(objects(EVERYTHING), "-controller")
    assert m.flag_value(c, "--deliver-image") == "registry.example/webhook-operator:1.2.3"
    assert m.flag_value(c, "--deliver-replicas") == "3"
    assert [m.flag_value(c, f"--deliver-{f}") for f in
            ("cpu-request", "memory-request", "cpu-limit", "memory-limit")] == ["100m", "128Mi", "2", "1Gi"]
    assert m.flag_value(c, "--deliver-nats-url") == "nats://nats-delivery:4222"
    assert m.flag_value(c, "--deliver-nats-creds-secret") == "nats-creds"
    assert m.flag_value(c, "--deliver-log-format") == "text"
    assert m.flag_value(c, "--deliver-egress-proxy") == "http://proxy:3128"
    assert "--require-https" in c["args"]
    assert m.flag_value(c, "--signing-key-overlap") == "12h"
    # TLS of the delivery pods: the same CA and client certificate Secrets.
    assert m.flag_value(c, "--deliver-nats-tls-ca-secret") == "nats-ca"
    assert m.flag_value(c, "--deliver-nats-tls-ca-key") == "ca.crt"
    assert m.flag_value(c, "--deliver-nats-tls-client-secret") == "nats-client"


def test_tls_and_credentials_are_mounted_where_the_flags_point():
    rendered = objects(TLS)
    for suffix in ("-controller", "-router"):
        deployment = m.one(rendered, "Deployment", suffix)
        (c,) = m.containers(deployment)
        mounts = {v["mountPath"]: v["name"] for v in c["volumeMounts"]}
        secrets = {v["name"]: v["secret"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
        expected = {"--nats-creds": ("nats-creds", "creds"), "--nats-tls-ca": ("nats-ca", "ca.crt"),
                    "--nats-tls-cert": ("nats-client", "tls.crt"), "--nats-tls-key": ("nats-client", "tls.key")}
        for flag, (secret, key) in expected.items():
            path = m.flag_value(c, flag)
            directory, file = path.rsplit("/", 1)
            volume = secrets[mounts[directory]]
            assert (volume["secretName"], file) == (secret, key), flag
            assert key in {item["key"] for item in volume["items"]}
        assert m.flag_value(c, "--nats-url") == "tls://nats.nats.svc:4222"


def test_each_role_gets_its_own_nats_identity_and_inbox():
    rendered = objects(NATS_USERS)
    controller, router = m.container(rendered, "-controller"), m.container(rendered, "-router")
    for variable, key in (("NATS_USER", "username"), ("NATS_PASSWORD", "password")):
        assert m.env(controller)[variable] == {"secretKeyRef": {"name": "nats-controller", "key": key}}
    assert m.flag_value(controller, "--nats-inbox-prefix") == "_INBOX_controller"
    # The routers: their own NKey seed, mounted where the flag points, and no password.
    assert "NATS_USER" not in m.env(router)
    assert m.flag_value(router, "--nats-nkey") == "/etc/webhook-operator/nats-nkey/nkey"
    deployment = m.one(rendered, "Deployment", "-router")
    volumes = {v["name"]: v["secret"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["nats-nkey"]["secretName"] == "nats-router"
    assert m.flag_value(router, "--nats-inbox-prefix") == "_INBOX_router"
    # The delivery pods: a Secret per tenant, and their inbox, through the controller's flags.
    assert m.flag_value(controller, "--deliver-nats-token-secret") == "nats-deliver-{tenant}"
    assert m.flag_value(controller, "--deliver-nats-user-secret") is None
    assert m.flag_value(controller, "--deliver-nats-inbox-prefix") == "_INBOX_deliver_{tenant}"


def test_nats_accepts_one_authentication_method():
    with pytest.raises(helm.HelmError, match="at most one of credentialsSecret"):
        render({"nats": {"userSecret": "a", "tokenSecret": "b"}})
    with pytest.raises(helm.HelmError, match="at most one of credentialsSecret"):
        render({"delivery": {"nats": {"userSecret": "a", "nkeySecret": "b"}}})


def test_egress_proxy_and_https_rule_reach_the_delivery_pods():
    rendered = objects(PROXY)
    c = m.container(rendered, "-controller")
    assert m.flag_value(c, "--deliver-egress-proxy") == "http://egress.internal:3128"
    assert "--require-https" in c["args"]
    assert not any("PROXY" in name for name in m.env(c)), "no proxy environment: the flag carries it"
    delivery = next(p for p in m.of_kind(rendered, "NetworkPolicy") if p["metadata"]["name"].endswith("-delivery"))
    peers = [peer for rule in delivery["spec"]["egress"] for peer in rule.get("to", [])]
    assert {"ipBlock": {"cidr": "10.9.0.7/32"}} in peers, "the proxy's private address is let through"
    default = m.container(objects({}), "-controller")
    assert "--require-https" not in default["args"] and m.flag_value(default, "--deliver-egress-proxy") is None


def test_production_profile_refuses_plain_http_and_separates_roles():
    values = production_values()
    assert values["requireHttps"] is True and values["allowPrivateNetworks"] is False
    rendered = objects(values)
    c = m.container(rendered, "-controller")
    assert "--require-https" in c["args"]
    assert m.flag_value(c, "--nats-inbox-prefix") == "_INBOX_controller"
    assert m.flag_value(c, "--deliver-nats-user-secret") == "nats-deliver-{tenant}"
    assert m.env(m.container(rendered, "-router"))["NATS_USER"]["secretKeyRef"]["name"] == "nats-router"
    assert m.of_kind(rendered, "NetworkPolicy")


def test_tls_needs_a_ca_secret():
    with pytest.raises(helm.HelmError, match="nats.tls.caSecret is required"):
        render({"nats": {"tls": {"enabled": True}}})


def test_monitoring_objects_and_alerts():
    rendered = objects(MONITORING)
    monitor = m.one(rendered, "ServiceMonitor", RELEASE)
    assert monitor["metadata"]["labels"]["release"] == "prom"
    services = [s for s in m.of_kind(rendered, "Service")
                if m.labels_match(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
    assert len(services) == 2, "the ServiceMonitor selects the controller and router Services"
    pods = m.one(rendered, "PodMonitor", "-delivery")
    # The delivery pods the controller creates (src/controlplane/workloads.rs labels).
    assert pods["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "webhook-deliver", "app.kubernetes.io/managed-by": "webhook-operator"}
    rules = {r["alert"]: r for g in m.one(rendered, "PrometheusRule", RELEASE)["spec"]["groups"]
             for r in g["rules"]}
    assert set(rules) == {"WebhookEndpointFailing", "WebhookEndpointDisabled", "WebhookDeadLettersGrowing",
                          "WebhookBacklogGrowing"}
    assert 'webhook_endpoints{health="Disabled"}' in rules["WebhookEndpointDisabled"]["expr"]
    assert 'webhook_endpoints{health="Failing"}' in rules["WebhookEndpointFailing"]["expr"]
    assert rules["WebhookEndpointFailing"]["for"] == "10m"
    assert "increase(webhook_deliveries_dead_lettered_total[15m])" in rules["WebhookDeadLettersGrowing"]["expr"]
    backlog = rules["WebhookBacklogGrowing"]["expr"]
    assert "deriv(webhook_pending_deliveries[15m])" in backlog and "> 1000" in backlog
    assert all(r["labels"]["team"] == "platform" for r in rules.values())
    assert "{{ $labels.tenant }}" in rules["WebhookBacklogGrowing"]["annotations"]["description"]


def test_private_networks_only_when_asked():
    c = m.container(objects(PRIVATE), "-controller")
    assert "--deliver-allow-private-networks" in c["args"]
    assert [a for a in c["args"] if a.startswith("--deliver-allow-cidr")] == [
        "--deliver-allow-cidr=10.20.0.0/16", "--deliver-allow-cidr=192.168.1.7"]


def test_network_policies():
    rendered = objects(NETWORK_POLICY)
    policies = {p["metadata"]["name"].rsplit("-", 1)[1]: p["spec"] for p in m.of_kind(rendered, "NetworkPolicy")}
    assert set(policies) == {"controller", "router", "delivery"}
    ports = lambda rules: {p["port"] for r in rules for p in r.get("ports", [])}  # noqa: E731
    assert ports(policies["router"]["egress"]) == {53, 4222}, "routers reach only DNS and NATS"
    assert {443, 6443, 4222} <= ports(policies["controller"]["egress"])
    blocks = [peer["ipBlock"] for rule in policies["delivery"]["egress"] for peer in rule.get("to", [])
              if "ipBlock" in peer]
    public = next(b for b in blocks if b["cidr"] == "0.0.0.0/0" and "except" in b)
    assert {"10.0.0.0/8", "169.254.0.0/16", "127.0.0.0/8"} <= set(public["except"])
    assert {"cidr": "10.20.0.0/16"} in blocks and {"cidr": "fd00::1/128"} in blocks
    # allowPrivateNetworks opens the fence as well.
    opened = objects({**NETWORK_POLICY, "allowPrivateNetworks": True})
    delivery = next(p for p in m.of_kind(opened, "NetworkPolicy") if p["metadata"]["name"].endswith("-delivery"))
    assert not any("except" in peer.get("ipBlock", {}) for r in delivery["spec"]["egress"] for peer in r.get("to", []))


def test_tenant_api_has_its_own_port_service_and_grants():
    assert not [o for o in objects({}) if "tenant-api" in o["metadata"]["name"]], "off by default"
    rendered = objects(EVERYTHING)
    c = m.container(rendered, "-controller")
    assert m.flag_value(c, "--tenant-api-listen") == "0.0.0.0:9443"
    assert {"name": "tenant-api", "containerPort": 9443, "protocol": "TCP"} in c["ports"]
    service = m.one(rendered, "Service", "-tenant-api")
    assert service["spec"]["ports"] == [{"name": "tenant-api", "port": 9443, "targetPort": "tenant-api", "protocol": "TCP"}]
    # Not scraped: the ServiceMonitor selects the controller and router components only.
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "tenant-api"
    role = m.one(rendered, "ClusterRole", "-tenant-api")
    assert m.granted(role["rules"]) == m.TENANT_API_CLUSTER_PERMISSIONS
    controller_policy = next(p for p in m.of_kind(rendered, "NetworkPolicy") if p["metadata"]["name"].endswith("-controller"))
    assert {"port": 9443, "protocol": "TCP"} in [p for r in controller_policy["spec"]["ingress"] for p in r["ports"]]
    with pytest.raises(helm.HelmError, match="tenantApi.port must differ from metrics.port"):
        render({"tenantApi": {"enabled": True, "port": 8080}})


def test_leader_election_off_runs_one_replica():
    rendered = objects(SINGLE)
    c = m.container(rendered, "-controller")
    assert m.flag_value(c, "--leader-election") == "false"
    assert m.one(rendered, "Deployment", "-controller")["spec"]["replicas"] == 1
    assert [p["metadata"]["name"] for p in m.of_kind(rendered, "PodDisruptionBudget")] == ["webhook-operator-router"]
    with pytest.raises(helm.HelmError, match="leaderElection=false needs controller.replicas=1"):
        render({"controller": {"leaderElection": False}})


@pytest.mark.parametrize("bad", [
    {"controller": {"replicas": "two"}},
    {"router": {"replicas": -1}},
    {"logFormat": "xml"},
    {"nats": {"url": "http://nats:4222"}},
    {"allowPrivateNetworks": "yes"},
    {"delivery": {"resources": {"requests": {"cpu": "lots", "memory": "64Mi"}}}},
    {"requireHttps": "yes"},
    {"egressProxy": "socks5://proxy:1080"},
    {"egressProxy": {"httpsProxy": "http://proxy:3128"}},
    {"nats": {"url": "nats://nats:4222", "roleInboxes": "on"}},
    {"controller": {"replica": 2}},
    {"signingKeyOverlap": "a day"},
])
def test_schema_rejects_bad_values(bad):
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)
    with pytest.raises(helm.HelmError):
        render(bad)


def test_schema_describes_every_value():
    with helm.Chart.load(CHART) as chart:
        schema, values = chart.schema, chart.values
    assert schema["additionalProperties"] is False

    def resolve(node):
        ref = node.get("$ref", "")
        return resolve(schema["definitions"][ref.rsplit("/", 1)[1]]) if ref else node

    def walk(value, node, path):
        node = resolve(node)
        if not isinstance(value, dict) or "properties" not in node:
            return  # a leaf, or a free-form object (resources, nodeSelector, securityContext, ...)
        for key, child in value.items():
            assert key in node["properties"], f"values.yaml {path}{key} is not in values.schema.json"
            walk(child, node["properties"][key], f"{path}{key}.")

    walk(values, schema, "")


@pytest.mark.parametrize("variant", VARIANTS)
def test_schema_accepts_the_variants(variant):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(VARIANTS[variant])


def test_crds_are_the_generated_ones():
    generated = (ROOT / "crds" / "webhook-operator.yaml").read_bytes()
    copy = CHART / "crds" / "webhook-operator.yaml"
    assert copy.read_bytes() == generated, (
        f"{copy.relative_to(ROOT)} differs from crds/webhook-operator.yaml: "
        f"cp crds/webhook-operator.yaml {copy.relative_to(ROOT)}")
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["webhook-operator.yaml"]
    with helm.Chart.load(CHART) as chart:
        (crd_file,) = chart.crds
    crds = m.parse(crd_file["data"])
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "eventsubscriptions.webhook-operator.io", "eventtypes.webhook-operator.io",
        "webhookendpoints.webhook-operator.io"]
    m.check_valid_for_kind(crds)


def test_notes_render():
    notes = render({**TLS, **PRIVATE, "egressProxy": "http://user:hunter2@proxy:3128"})
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert f"installed in namespace {NAMESPACE}" in text
    assert "WARNING: allowPrivateNetworks is true" in text
    assert "egress proxy http://***@proxy:3128" in text and "hunter2" not in text
    assert "requireHttps is false" in text
    default = next(v for k, v in render({}).items() if k.endswith("NOTES.txt"))
    assert "WARNING" not in default
    strict = next(v for k, v in render({"requireHttps": True}).items() if k.endswith("NOTES.txt"))
    assert "requireHttps is false" not in strict
