"""The kustomize bases under config/ (`kubectl apply -k config/default`, make deploy)."""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache

import pytest
import yaml

import manifests as m
from conftest import ROOT, kubectl
from test_chart import objects as chart_objects

NAMESPACE = "webhook-operator"
IMAGE = "ghcr.io/webhook-operator/webhook-operator"


@lru_cache(maxsize=None)
def build(folder: str) -> str:
    run = subprocess.run([kubectl(), "kustomize", str(ROOT / "config" / folder)],
                         capture_output=True, text=True)
    assert run.returncode == 0, f"kubectl kustomize config/{folder} failed:\n{run.stderr}"
    return run.stdout


@pytest.mark.parametrize("folder", ["crd", "rbac", "manager", "default"])
def test_each_base_renders(folder):
    assert m.parse(build(folder))


def test_default_is_valid_and_least_privilege():
    rendered = m.parse(build("default"))
    namespaced = [o for o in rendered if o["kind"] != "Namespace"]
    m.check_all(namespaced, NAMESPACE)
    (namespace,) = m.of_kind(rendered, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    # Every pod of ours, the controller's delivery pods included, is built to meet "restricted".
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


def test_default_installs_what_the_chart_installs():
    rendered = m.parse(build("default"))
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(["Namespace", *["CustomResourceDefinition"] * 3,
                            "ServiceAccount", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                            "Role", "RoleBinding", "Deployment", "Deployment", "Service", "Service",
                            "PodDisruptionBudget", "PodDisruptionBudget"])
    chart = chart_objects({})
    for kind in ("ClusterRole", "Role"):
        assert m.one(rendered, kind, "-controller")["rules"] == m.one(chart, kind, "-controller")["rules"], (
            f"the {kind} of config/rbac and of the chart differ")
    for suffix in ("-controller", "-router"):
        ours = m.one(rendered, "Deployment", suffix)["spec"]
        theirs = m.one(chart, "Deployment", suffix)["spec"]
        assert ours["replicas"] == theirs["replicas"] == 2
        for field in ("securityContext", "automountServiceAccountToken"):
            assert ours["template"]["spec"].get(field) == theirs["template"]["spec"].get(field), field
        (a,), (b,) = ours["template"]["spec"]["containers"], theirs["template"]["spec"]["containers"]
        for field in ("securityContext", "resources", "livenessProbe", "readinessProbe", "ports"):
            assert a[field] == b[field], f"{suffix} container {field} differs from the chart's"


def test_tenant_api_component_matches_the_chart(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    rel = lambda folder: os.path.relpath(ROOT / "config" / folder, overlay)  # noqa: E731
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [rel("default")], "components": [rel("tenant-api")]}))
    run = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rendered = [o for o in m.parse(run.stdout) if o["kind"] != "Namespace"]
    m.check_all(rendered, NAMESPACE)  # RBAC included: the component grants what the API writes
    assert m.tenant_api_on(rendered)
    chart = chart_objects({"tenantApi": {"enabled": True}})
    assert m.one(rendered, "ClusterRole", "-tenant-api")["rules"] == m.one(chart, "ClusterRole", "-tenant-api")["rules"]
    ours, theirs = m.container(rendered, "-controller"), m.container(chart, "-controller")
    by_name = lambda ports: sorted(ports, key=lambda p: p["name"])  # noqa: E731
    assert by_name(ours["ports"]) == by_name(theirs["ports"])
    assert m.env(ours)["TENANT_API_LISTEN"] == m.flag_value(theirs, "--tenant-api-listen")


def test_image_override_reaches_the_delivery_pods():
    rendered = m.parse(build("default"))
    default = yaml.safe_load((ROOT / "config" / "default" / "kustomization.yaml").read_text())
    (override,) = default["images"]
    image = f"{override['newName']}:{override['newTag']}"
    controller = m.container(rendered, "-controller")
    assert controller["image"] == m.container(rendered, "-router")["image"] == image
    assert m.env(controller)["DELIVER_IMAGE"] == image
    assert m.env(controller)["NATS_URL"] == m.env(controller)["DELIVER_NATS_URL"]


def test_crds_are_the_generated_ones():
    generated = (ROOT / "crds" / "webhook-operator.yaml").read_bytes()
    copy = ROOT / "config" / "crd" / "webhook-operator.yaml"
    assert copy.read_bytes() == generated, (
        "config/crd/webhook-operator.yaml differs from crds/webhook-operator.yaml: "
        "cp crds/webhook-operator.yaml config/crd/")
    by_name = lambda objs: {o["metadata"]["name"]: o for o in objs}  # noqa: E731
    rendered = m.of_kind(m.parse(build("default")), "CustomResourceDefinition")
    assert by_name(rendered) == by_name(m.parse(generated.decode())), "kustomize changed the CRDs"
