"""Checks that every way of installing (Helm chart, kustomize) must pass on its rendered objects.

Each check takes the list of rendered objects (dicts) and raises AssertionError naming the object
and the field at fault.
"""

from __future__ import annotations

import subprocess
from typing import Any, Iterable

import kubernetes_validate.utils as kv
import yaml

from conftest import ROLES, binary, role_env_flags

# Kubernetes versions the objects must be valid for: the oldest the chart supports (Chart.yaml
# kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = ("1.27", kv.latest_version())

# Kinds of the Prometheus Operator: no schema in kubernetes-validate, checked by hand below.
MONITORING = "monitoring.coreos.com/v1"

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

# Environment not checked as flags: the downward API's (no literal value; the controller reads
# them as --namespace and --identity).
DOWNWARD_API = {"POD_NAME", "POD_NAMESPACE"}
# Environment that may come from Secret keys (passwords, tokens): never a literal value.
FROM_SECRETS = {"NATS_USER", "NATS_PASSWORD", "NATS_TOKEN"}

# What the controller does with the Kubernetes API (src/controlplane): (apiGroup, resource, verb).
# Cluster-wide ...
CONTROLLER_CLUSTER_PERMISSIONS = {
    *{("webhook-operator.io", r, v) for r in ("webhookendpoints", "eventsubscriptions")
      for v in ("get", "list", "watch", "patch")},
    *{("webhook-operator.io", "eventtypes", v) for v in ("get", "list", "watch")},
    *{("webhook-operator.io", f"{r}/status", v)
      for r in ("webhookendpoints", "eventsubscriptions", "eventtypes") for v in ("get", "patch")},
    # Signing Secrets are created with an owner reference (blockOwnerDeletion) to the endpoint.
    ("webhook-operator.io", "webhookendpoints/finalizers", "update"),
    # ... and patched: rotation and the expiry of previous keys (src/controlplane/key_rotation.rs).
    *{("", "secrets", v) for v in ("get", "list", "watch", "create", "patch")},
    # CA bundles of endpoints (spec.tls.caBundleRef) may be in ConfigMaps.
    *{("", "configmaps", v) for v in ("get", "list", "watch")},
    *{(g, "events", v) for g in ("", "events.k8s.io") for v in ("create", "patch")},
    *{("rbac.authorization.k8s.io", r, v) for r in ("roles", "rolebindings")
      for v in ("get", "create", "patch", "delete")},
}
# ... and in its own namespace only.
CONTROLLER_NAMESPACE_PERMISSIONS = {
    *{("coordination.k8s.io", "leases", v)
      for v in ("get", "list", "watch", "create", "update", "patch")},
    *{("apps", "deployments", v) for v in ("get", "list", "watch", "create", "patch", "delete")},
    *{("", "serviceaccounts", v) for v in ("get", "create", "patch", "delete")},
}
# ... and with the tenant API on (--tenant-api-listen, env TENANT_API_LISTEN): it writes the custom
# resources for API-key holders (src/tenant_api/cluster.rs: create, replace, delete).
TENANT_API_CLUSTER_PERMISSIONS = {("webhook-operator.io", r, v) for r in ("webhookendpoints", "eventsubscriptions")
                                  for v in ("create", "update", "delete")}
# What the controller grants each tenant's delivery pods (src/controlplane/workloads.rs): RBAC
# lets it grant only what it holds itself.
DELIVERY_TENANT_PERMISSIONS = {(("", r, v)) for r in ("secrets", "configmaps")
                               for v in ("get", "list", "watch")}


def parse(text: str) -> list[dict[str, Any]]:
    """Every non-empty YAML document of `text`; each must be a Kubernetes object."""
    objects = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    for obj in objects:
        assert isinstance(obj, dict), f"not an object: {obj!r}"
        for field in ("apiVersion", "kind"):
            assert obj.get(field), f"object without {field}: {obj}"
        assert obj.get("metadata", {}).get("name"), f"{obj['kind']} without metadata.name"
    return objects


def name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def of_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, name_suffix: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, found {[name(o) for o in found]}"
    return found[0]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def container(objects, deployment_suffix: str) -> dict[str, Any]:
    (only,) = containers(one(objects, "Deployment", deployment_suffix))
    return only


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def flag_value(c: dict[str, Any], flag: str) -> str | None:
    for arg in c.get("args", []):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    return None


# --- validity per kind --------------------------------------------------------------------------

def check_valid_for_kind(objects: list[dict[str, Any]]) -> None:
    """Built-in kinds against the Kubernetes OpenAPI schemas, strictly (no unknown fields)."""
    for obj in objects:
        if obj["apiVersion"] == MONITORING:
            check_monitoring(obj)
            continue
        for version in KUBE_VERSIONS:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                raise AssertionError(
                    f"{name(obj)} invalid for Kubernetes {version}: {path}: {e.message}") from None
            except kv.SchemaNotFoundError:
                raise AssertionError(f"{name(obj)}: unknown kind {obj['apiVersion']} {obj['kind']}") from None


def check_monitoring(obj: dict[str, Any]) -> None:
    """The fields of the Prometheus Operator kinds that must be there and well-formed."""
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert spec["selector"] and spec["endpoints"], name(obj)
        assert all(e.get("port") for e in spec["endpoints"]), name(obj)
    elif obj["kind"] == "PodMonitor":
        assert spec["selector"] and spec["podMetricsEndpoints"], name(obj)
        assert all(e.get("port") for e in spec["podMetricsEndpoints"]), name(obj)
    elif obj["kind"] == "PrometheusRule":
        for group in spec["groups"]:
            assert group["name"] and group["rules"], name(obj)
            for rule in group["rules"]:
                assert rule.get("alert") and rule.get("expr"), f"{name(obj)}: {rule}"
                assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
    else:
        raise AssertionError(f"unexpected kind {obj['apiVersion']} {obj['kind']}")


def check_namespaces(objects: list[dict[str, Any]], namespace: str) -> None:
    for obj in objects:
        actual = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert actual is None, f"{name(obj)} is cluster-scoped but has namespace {actual}"
        else:
            assert actual == namespace, f"{name(obj)} in namespace {actual!r}, not {namespace!r}"


# --- RBAC ---------------------------------------------------------------------------------------

def check_no_wildcards(objects: list[dict[str, Any]]) -> None:
    for obj in of_kind(objects, "ClusterRole") + of_kind(objects, "Role"):
        assert obj.get("rules"), f"{name(obj)} has no rules"
        assert "aggregationRule" not in obj, name(obj)
        for rule in obj["rules"]:
            for field in ("verbs", "resources", "apiGroups", "resourceNames", "nonResourceURLs"):
                for value in rule.get(field, []):
                    assert "*" not in value, f"{name(obj)}: wildcard in {field}: {rule}"


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def bound_to(objects, binding_kind: str, service_account: str) -> list[dict[str, Any]]:
    """The (Cluster)Roles that (Cluster)RoleBindings grant to `service_account`."""
    roles = []
    for binding in of_kind(objects, binding_kind):
        if any(s["kind"] == "ServiceAccount" and s["name"] == service_account
               for s in binding.get("subjects", [])):
            ref = binding["roleRef"]
            (role,) = [r for r in of_kind(objects, ref["kind"]) if r["metadata"]["name"] == ref["name"]]
            roles.append(role)
    return roles


def tenant_api_on(objects: list[dict[str, Any]]) -> bool:
    """Whether the controller serves the tenant API (flag or environment)."""
    c = container(objects, "-controller")
    return flag_value(c, "--tenant-api-listen") is not None or "TENANT_API_LISTEN" in env(c)


def check_rbac(objects: list[dict[str, Any]], namespace: str) -> None:
    """Least privilege: the controller gets exactly what it uses; routers get nothing."""
    check_no_wildcards(objects)
    controller = one(objects, "Deployment", "-controller")["spec"]["template"]["spec"]
    router = one(objects, "Deployment", "-router")["spec"]["template"]["spec"]
    sa = controller["serviceAccountName"]
    expected = CONTROLLER_CLUSTER_PERMISSIONS | (TENANT_API_CLUSTER_PERMISSIONS if tenant_api_on(objects) else set())

    cluster = set().union(*(granted(r["rules"]) for r in bound_to(objects, "ClusterRoleBinding", sa)))
    assert cluster == expected, (
        f"cluster-wide grants differ from what the controller uses:\n"
        f"  extra:   {sorted(cluster - expected)}\n"
        f"  missing: {sorted(expected - cluster)}")
    local_roles = bound_to(objects, "RoleBinding", sa)
    assert all(r["kind"] == "Role" and r["metadata"]["namespace"] == namespace for r in local_roles)
    local = set().union(*(granted(r["rules"]) for r in local_roles))
    assert local == CONTROLLER_NAMESPACE_PERMISSIONS, (
        f"namespace grants differ:\n  extra:   {sorted(local - CONTROLLER_NAMESPACE_PERMISSIONS)}\n"
        f"  missing: {sorted(CONTROLLER_NAMESPACE_PERMISSIONS - local)}")
    # It can grant the tenant Role because it holds those permissions itself (no bind/escalate).
    assert DELIVERY_TENANT_PERMISSIONS <= cluster

    router_sa = router["serviceAccountName"]
    assert router["automountServiceAccountToken"] is False
    assert not bound_to(objects, "ClusterRoleBinding", router_sa)
    assert not bound_to(objects, "RoleBinding", router_sa)
    (router_account,) = [a for a in of_kind(objects, "ServiceAccount") if a["metadata"]["name"] == router_sa]
    assert router_account.get("automountServiceAccountToken") is False
    assert sa in {a["metadata"]["name"] for a in of_kind(objects, "ServiceAccount")}


# --- workloads ----------------------------------------------------------------------------------

def check_hardened(objects: list[dict[str, Any]]) -> None:
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True, name(deployment)
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name(deployment)
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name(deployment)
        for c in pod["containers"]:
            sc = c["securityContext"]
            where = f"{name(deployment)} container {c['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), where
            assert not sc.get("privileged"), where
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], where
            for probe in ("livenessProbe", "readinessProbe"):
                assert c[probe]["httpGet"]["port"] == "admin", where
            assert any(p["name"] == "admin" for p in c["ports"]), where


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_selectors(objects: list[dict[str, Any]]) -> None:
    """Deployments select their own pods; Services and PDBs select some Deployment's pods."""
    pods = []
    for deployment in of_kind(objects, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels_match(deployment["spec"]["selector"]["matchLabels"], labels), name(deployment)
        pods.append((labels, deployment["spec"]["template"]["spec"]))
    for service in of_kind(objects, "Service"):
        matched = [spec for labels, spec in pods if labels_match(service["spec"]["selector"], labels)]
        assert len(matched) == 1, f"{name(service)} selects {len(matched)} Deployments"
        ports = {p["name"] for c in matched[0]["containers"] for p in c["ports"]}
        assert all(p["targetPort"] in ports for p in service["spec"]["ports"]), name(service)
    for pdb in of_kind(objects, "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert sum(labels_match(selector, labels) for labels, _ in pods) == 1, name(pdb)


def check_leader_election(objects: list[dict[str, Any]]) -> None:
    c = container(objects, "-controller")
    variables = {e["name"]: e for e in c["env"]}
    for var, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        assert variables[var]["valueFrom"]["fieldRef"]["fieldPath"] == path


def check_flags(objects: list[dict[str, Any]]) -> None:
    """Containers pass only flags the binary has, with values it accepts, and set only env vars
    it reads (also turned into flags, so their values are checked too). clap validates every
    argument before a trailing `--help` and prints the help only if they all parse, so
    `webhook-operator <role> <args> --help` exits 0 exactly when the arguments are accepted."""
    for deployment in of_kind(objects, "Deployment"):
        for c in containers(deployment):
            role, *args = c["args"]
            where = f"{name(deployment)} container {c['name']}"
            assert role in ROLES, f"{where}: first argument {role!r} is no role"
            known = role_env_flags(role)
            for variable, value in env(c).items():
                if variable in DOWNWARD_API:
                    continue
                assert variable in known, f"{where}: env {variable} is read by no flag of `{role}`"
                flag, takes_value = known[variable]
                if variable in FROM_SECRETS:
                    assert isinstance(value, dict) and value.get("secretKeyRef", {}).get("key"), (
                        f"{where}: env {variable} must come from a Secret key, not {value!r}")
                    value = "from-secret"
                assert isinstance(value, str), f"{where}: env {variable} must be a literal"
                if takes_value:
                    args.append(f"{flag}={value}")
                elif value == "true":
                    args.append(flag)
            run = subprocess.run([str(binary()), role, *args, "--help"],
                                 capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
            assert run.returncode == 0, f"{where}: `{role} {' '.join(args)}` is refused:\n{run.stderr}"


def check_all(objects: list[dict[str, Any]], namespace: str) -> None:
    check_valid_for_kind(objects)
    check_namespaces(objects, namespace)
    check_rbac(objects, namespace)
    check_hardened(objects)
    check_selectors(objects)
    check_leader_election(objects)
    check_flags(objects)
