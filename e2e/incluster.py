"""What the e2e run deploys in the in-cluster mode (E2E_INSTALL=helm|kustomize), and how.

Pure builders (the NATS and receiver manifests, the chart values, the kustomize overlay, the
offline checks of a rendered install, the receiver's log parsing and signature checks) and the
three ways to install the operator: the helm binary, Helm's Go SDK (PyPI helm-python-sdk, a real
release without a helm binary) and kustomize through `kubectl apply`. Used by run.py; the pure
parts are tested in test_run.py, the whole mode in test_flow.py.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "webhook-operator"
CONFIG = ROOT / "config"
RECEIVER_SCRIPT = Path(__file__).resolve().parent / "receiver.py"

# Official images, pinned. NATS: the server version of .tools/bin/nats-server (scripts/tools.sh).
NATS_IMAGE = "docker.io/library/nats:2.15.1"
RECEIVER_IMAGE = "docker.io/library/python:3.13.11-slim"

NATS_NAME = "e2e-nats"
NATS_PORT = 4222
NATS_MONITOR_PORT = 8222
RECEIVER_NAME = "e2e-receiver"
RECEIVER_PORT = 8080            # the container listens here; Service port 80
RECEIVER_CLOSED_PORT = 8081     # nothing listens here; Service port 81 (the failing endpoint)
ADMIN_PORT = 8080               # every webhook-operator pod's admin server (chart and config/)
ADMIN_PORT_NAME = "admin"
# The image name config/ uses; the kustomize overlay replaces it with E2E_IMAGE.
CONFIG_IMAGE = "ghcr.io/webhook-operator/webhook-operator"
INSTANCE_LABEL = "app.kubernetes.io/instance"
SIGNATURE_TOLERANCE = 300       # seconds between webhook-timestamp and the receiver's clock

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
HARDENED_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
HARDENED_POD = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}}


class InstallError(Exception):
    """Installing, rendering or removing the operator failed; the message says how."""


# --- names and configuration ---------------------------------------------------------------------

def release_name(run_id: str) -> str:
    """The Helm release (and kustomize name prefix) of a run: unique, so cluster-scoped objects are too."""
    return f"e2e-{run_id}"


def split_image(image: str) -> tuple[str, str]:
    """REPOSITORY:TAG -> (repository, tag); ValueError when there is no tag or a digest."""
    if "@" in image:
        raise ValueError("a digest reference cannot be set through the chart's image.repository/tag")
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon <= slash:
        raise ValueError("expected REPOSITORY:TAG")
    repository, tag = image[:colon], image[colon + 1:]
    if not repository or not tag:
        raise ValueError("expected REPOSITORY:TAG")
    return repository, tag


def image_problem(image: str) -> Optional[str]:
    """Why E2E_IMAGE cannot be used (None: it can)."""
    if not image:
        return ("E2E_IMAGE is required with E2E_INSTALL: the operator image the cluster can pull, e.g. "
                "`make image` then `kind load docker-image <that image>`")
    try:
        _, tag = split_image(image)
    except ValueError as error:
        return f"E2E_IMAGE={image!r}: {error}"
    if tag == "latest":
        return (f"E2E_IMAGE={image!r}: the tag `latest` makes Kubernetes pull the image on every start "
                "(imagePullPolicy Always for the delivery pods the operator creates), so an image loaded "
                "with `kind load docker-image` would not be used: give it another tag (make image tags "
                "the Cargo version)")
    return None


def default_nats_url(operator_namespace: str) -> str:
    """Where pods reach the NATS this run deploys."""
    return f"nats://{NATS_NAME}.{operator_namespace}.svc:{NATS_PORT}"


def nats_target(url: str) -> tuple[str, str, int]:
    """(namespace, service, port) to port-forward to for a NATS URL naming a Service."""
    first = url.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"nats://{first}")
    host = parts.hostname or ""
    labels = host.split(".")
    try:
        port = parts.port or NATS_PORT
    except ValueError:
        raise ValueError(f"{first!r}: bad port") from None
    if parts.scheme not in ("nats", "") or parts.username or parts.password:
        raise ValueError(f"{first!r}: expected nats://<service>.<namespace>.svc:<port> without credentials "
                         "(the run has no way to hand credentials or TLS settings to the operator)")
    if len(labels) < 2 or (len(labels) > 2 and labels[2] != "svc") or not all(labels[:2]):
        raise ValueError(f"{first!r}: expected nats://<service>.<namespace>.svc:<port> (a Service the run "
                         "can port-forward to)")
    return labels[1], labels[0], port


def chart_values(image: str, nats_url: str) -> dict:
    """The chart values of a run: everything else stays at the chart's defaults."""
    repository, tag = split_image(image)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "nats": {"url": nats_url},
        # The receiver is a Service in the cluster: a private address.
        "allowPrivateNetworks": True,
        "controller": {"leaderElection": True},
        "delivery": {"replicas": 1},
    }


# --- manifests of the helpers the run deploys ------------------------------------------------------

def _deployment(name: str, namespace: str, labels: dict, container: dict, volumes: list) -> dict:
    selector = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels, **selector)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(labels, **selector)},
                "spec": {"automountServiceAccountToken": False, "securityContext": dict(HARDENED_POD),
                         "containers": [dict(container, securityContext=json.loads(json.dumps(HARDENED_CONTAINER)))],
                         "volumes": volumes},
            },
        },
    }


def nats_manifests(namespace: str, labels: dict, image: str = NATS_IMAGE) -> list[dict]:
    """A single nats-server with JetStream (emptyDir storage) and its Service."""
    container = {
        "name": "nats", "image": image, "imagePullPolicy": "IfNotPresent",
        "args": ["-js", "-sd", "/data", "-m", str(NATS_MONITOR_PORT)],
        "ports": [{"name": "client", "containerPort": NATS_PORT},
                  {"name": "monitor", "containerPort": NATS_MONITOR_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"},
                           "periodSeconds": 2},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return [
        _deployment(NATS_NAME, namespace, labels, container, [{"name": "data", "emptyDir": {}}]),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": NATS_NAME, "namespace": namespace, "labels": dict(labels)},
         "spec": {"selector": {"app.kubernetes.io/name": NATS_NAME},
                  "ports": [{"name": "client", "port": NATS_PORT, "targetPort": "client"}]}},
    ]


def receiver_manifests(namespace: str, labels: dict, script: str, image: str = RECEIVER_IMAGE) -> list[dict]:
    """e2e/receiver.py in a ConfigMap, run by the official python image, behind a Service with an
    open port (80) and a closed one (81, for the failing endpoint)."""
    container = {
        "name": "receiver", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-u", "/receiver/receiver.py", "--port", str(RECEIVER_PORT)],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "ports": [{"name": "http", "containerPort": RECEIVER_PORT}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "script", "mountPath": "/receiver", "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": RECEIVER_NAME, "namespace": namespace, "labels": dict(labels)},
         "data": {"receiver.py": script}},
        _deployment(RECEIVER_NAME, namespace, labels, container,
                    [{"name": "script", "configMap": {"name": RECEIVER_NAME}}]),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": RECEIVER_NAME, "namespace": namespace, "labels": dict(labels)},
         "spec": {"selector": {"app.kubernetes.io/name": RECEIVER_NAME},
                  "ports": [{"name": "http", "port": 80, "targetPort": "http"},
                            {"name": "closed", "port": 81, "targetPort": RECEIVER_CLOSED_PORT}]}},
    ]


def receiver_urls(namespace: str, path: str) -> tuple[str, str]:
    """The receiver's URL for `path`, and the same path on the Service's closed port."""
    host = f"{RECEIVER_NAME}.{namespace}.svc"
    return f"http://{host}{path}", f"http://{host}:81{path}"


def kustomization(overlay: Path, namespace: str, release: str, image: str, nats_url: str) -> dict:
    """An overlay of config/rbac and config/manager for a run: its namespace, a name prefix (the
    ClusterRole and ClusterRoleBinding are cluster-wide), the image and the run's settings."""
    repository, tag = split_image(image)
    base = os.path.relpath(CONFIG, overlay)  # kustomize refuses absolute paths
    controller_env = [{"name": "NATS_URL", "value": nats_url}, {"name": "DELIVER_NATS_URL", "value": nats_url},
                      {"name": "DELIVER_IMAGE", "value": image}, {"name": "DELIVER_REPLICAS", "value": "1"},
                      {"name": "DELIVER_ALLOW_PRIVATE_NETWORKS", "value": "true"}]

    def env_patch(deployment: str, container: str, env: list) -> dict:
        patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": deployment},
                 "spec": {"template": {"spec": {"containers": [{"name": container, "env": env}]}}}}
        return {"patch": json.dumps(patch), "target": {"kind": "Deployment", "name": deployment}}
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace,
        "namePrefix": f"{release}-",
        "resources": [f"{base}/rbac", f"{base}/manager"],
        "labels": [{"pairs": {INSTANCE_LABEL: release}}],
        "images": [{"name": CONFIG_IMAGE, "newName": repository, "newTag": tag}],
        "patches": [env_patch("webhook-operator-controller", "controller", controller_env),
                    env_patch("webhook-operator-router", "router", [{"name": "NATS_URL", "value": nats_url}])],
    }


# --- checks of a rendered install ------------------------------------------------------------------

def parse_documents(text: str) -> list[dict]:
    """Kubernetes objects of a multi-document YAML text (NOTES and empty documents skipped)."""
    import yaml  # pyyaml, in .tools/python

    objects = []
    for document in yaml.safe_load_all(text):
        if not document:
            continue
        if document.get("kind") == "List":
            objects.extend(document.get("items") or [])
        else:
            objects.append(document)
    return objects


def _named(objects: list[dict], kind: str, suffix: str) -> list[dict]:
    return [o for o in objects if o.get("kind") == kind and o["metadata"]["name"].endswith(suffix)]


def components(objects: list[dict]) -> dict:
    """Names of what the run talks to: the controller and router Deployments, the controller's
    admin Service; KeyError naming what is missing."""
    found = {}
    for key, kind, suffix in (("controller", "Deployment", "-controller"), ("router", "Deployment", "-router"),
                              ("admin", "Service", "-controller-metrics")):
        matches = _named(objects, kind, suffix)
        if len(matches) != 1:
            raise KeyError(f"expected one {kind} named *{suffix}, found {[o['metadata']['name'] for o in matches]}")
        found[key] = matches[0]["metadata"]["name"]
    return found


def setting(container: dict, flag: str, env: str) -> Optional[str]:
    """A role's setting as its command line or environment gives it: `--flag=v`, `--flag v`, a bare
    `--flag` ("true"), or the environment variable; None when unset."""
    args = container.get("args") or []
    for index, arg in enumerate(args):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
        if arg == flag:
            following = args[index + 1] if index + 1 < len(args) else None
            return following if following is not None and not following.startswith("--") else "true"
    for variable in container.get("env") or []:
        if variable.get("name") == env and "value" in variable:
            return variable["value"]
    return None


def install_problems(objects: list[dict], namespace: str, release: str, image: str, nats_url: str) -> list[str]:
    """What in a rendered install would keep the run from working, or from cleaning up after itself."""
    problems = []
    try:
        names = components(objects)
    except KeyError as error:
        return [str(error.args[0])]
    for obj in objects:
        where = f"{obj.get('kind')} {obj['metadata'].get('name')}"
        if obj.get("kind") == "CustomResourceDefinition":
            problems.append(f"{where}: the install must not carry the CRDs (the run applies them itself)")
        elif obj.get("kind") in CLUSTER_SCOPED:
            if (obj["metadata"].get("labels") or {}).get(INSTANCE_LABEL) != release:
                problems.append(f"{where} is cluster-scoped but not labelled {INSTANCE_LABEL}={release} "
                                "(the clean-up finds leftovers by it)")
        elif obj["metadata"].get("namespace") != namespace:
            problems.append(f"{where} is in namespace {obj['metadata'].get('namespace')!r}, not {namespace!r}")

    def container(name: str) -> dict:
        deployment = _named(objects, "Deployment", f"-{name}")[0]
        return (deployment["spec"]["template"]["spec"].get("containers") or [{}])[0]
    controller, router = container("controller"), container("router")
    expected = {
        ("controller", "--nats-url", "NATS_URL"): nats_url,
        ("controller", "--deliver-nats-url", "DELIVER_NATS_URL"): nats_url,
        ("controller", "--deliver-image", "DELIVER_IMAGE"): image,
        ("controller", "--deliver-replicas", "DELIVER_REPLICAS"): "1",
        ("controller", "--deliver-allow-private-networks", "DELIVER_ALLOW_PRIVATE_NETWORKS"): "true",
        ("controller", "--leader-election", "LEADER_ELECTION"): "true",
        ("router", "--nats-url", "NATS_URL"): nats_url,
    }
    for (role, flag, env), want in expected.items():
        got = setting(controller if role == "controller" else router, flag, env)
        if got != want:
            problems.append(f"the {role} gets {flag} (or {env}) {got!r}, expected {want!r}")
    for role, c in (("controller", controller), ("router", router)):
        if c.get("image") != image:
            problems.append(f"the {role} runs image {c.get('image')!r}, expected {image!r}")
    downward = {v.get("name"): ((v.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
                for v in controller.get("env") or []}
    if downward.get("POD_NAME") != "metadata.name" or downward.get("POD_NAMESPACE") != "metadata.namespace":
        problems.append("the controller does not get POD_NAME/POD_NAMESPACE from the downward API (its Lease "
                        f"identity and namespace): env {controller.get('env')}")
    service = _named(objects, "Service", "-controller-metrics")[0]
    if ADMIN_PORT_NAME not in [p.get("name") for p in service["spec"].get("ports") or []]:
        problems.append(f"Service {names['admin']} has no port named {ADMIN_PORT_NAME!r} (the admin ingest)")
    return problems


# --- the receiver's log -------------------------------------------------------------------------------

def verify_signature(webhook, headers: dict, body: str, received: Optional[float]) -> tuple[bool, str]:
    """Standard Webhooks verification against the receiver's clock (the line may be read minutes
    after it arrived): the HMAC is the standardwebhooks package's own `sign`."""
    if webhook is None:
        return False, "no signing key known yet"
    msg_id, timestamp, signatures = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and timestamp and signatures):
        return False, "missing webhook-id, webhook-timestamp or webhook-signature"
    try:
        sent = int(timestamp)
    except ValueError:
        return False, f"webhook-timestamp {timestamp!r} is not a number"
    if received is not None and abs(received - sent) > SIGNATURE_TOLERANCE:
        return False, f"webhook-timestamp {sent} is {received - sent:+.0f}s off the receiver's clock"
    expected = base64.b64decode(webhook.sign(msg_id, datetime.fromtimestamp(sent, tz=timezone.utc), body)
                                .split(",", 1)[1])
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        try:
            if version == "v1" and hmac.compare_digest(expected, base64.b64decode(value)):
                return True, ""
        except ValueError:
            continue
    return False, "no matching v1 signature"


def deliveries_from_log(text: str, webhook) -> list[dict]:
    """The receiver's JSON lines, each checked; shaped like scripts/sample_receiver.py's lines."""
    deliveries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("kind") != "delivery":
            continue
        headers = entry.get("headers") or {}
        body = entry.get("body", "")
        verified, reason = verify_signature(webhook, headers, body, entry.get("time"))
        deliveries.append({"id": headers.get("webhook-id", ""), "eventType": headers.get("webhook-event-type", ""),
                           "path": entry.get("path"), "timestamp": headers.get("webhook-timestamp", ""),
                           "verified": verified, "reason": reason, "body": body})
    return deliveries


# --- workloads --------------------------------------------------------------------------------------

def rollout_problem(deployment: Optional[dict]) -> Optional[str]:
    """None when every replica of the Deployment's current generation is ready."""
    if deployment is None:
        return "the Deployment does not exist"
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    want = spec.get("replicas", 1)
    if (status.get("observedGeneration") or 0) < deployment["metadata"].get("generation", 0):
        return "the Deployment controller has not seen its current generation yet"
    ready, updated = status.get("readyReplicas") or 0, status.get("updatedReplicas") or 0
    if ready < want or updated < want:
        return f"{ready}/{want} replicas ready ({updated} up to date)"
    return None


def pods_summary(pods: list[dict]) -> str:
    """What keeps pods from being ready: phase, waiting reasons, restarts; with a hint for images."""
    if not pods:
        return "no pods"
    parts = []
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        text = f"pod {pod['metadata']['name']}: {status.get('phase', '?')}{', ready' if ready else ''}"
        for c in status.get("containerStatuses") or []:
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting:
                text += f"; {c.get('name')} waiting: {waiting.get('reason')} {waiting.get('message', '')[:200]}"
                if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"):
                    text += (f" (can the cluster pull {c.get('image')}? for kind: "
                             f"`kind load docker-image {c.get('image')}`)")
            if c.get("restartCount"):
                text += f"; {c.get('name')} restarted {c['restartCount']} times"
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                text += f"; unschedulable: {condition.get('message', '')[:200]}"
        parts.append(text)
    return "; ".join(parts)


def selector(deployment: dict) -> str:
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


# --- ways to install the operator -------------------------------------------------------------------

class Installer:
    """Renders the operator's install offline, installs it into the cluster and removes it again."""

    title = ""

    def __init__(self, namespace: str, release: str, image: str, nats_url: str, workdir: Path, kubectl_binary: str):
        self.namespace, self.release, self.image, self.nats_url = namespace, release, image, nats_url
        self.workdir, self.kubectl_binary = workdir, kubectl_binary
        self.objects: list[dict] = []

    def crds(self) -> list[str]:
        """kubectl apply arguments for the CRDs of this way of installing."""
        raise NotImplementedError

    def plan(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> list[dict]:
        raise NotImplementedError

    def install(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        raise NotImplementedError

    def uninstall(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        raise NotImplementedError

    def tool(self) -> tuple[str, Optional[str]]:
        """(what renders/installs, problem or None)."""
        raise NotImplementedError


class HelmCli(Installer):
    title = "helm"

    def __init__(self, helm: str, *args):
        super().__init__(*args)
        self.helm = helm

    def crds(self) -> list[str]:
        return ["-f", str(CHART / "crds")]

    def values(self) -> dict:
        return chart_values(self.image, self.nats_url)

    def values_file(self) -> Path:
        path = self.workdir / "values.json"
        path.write_text(json.dumps(self.values(), indent=2), encoding="utf-8")
        return path

    def argv(self, action: str) -> list[str]:
        common = ["-n", self.namespace]
        if action == "template":
            return [self.helm, "template", self.release, str(CHART), *common, "-f", str(self.values_file())]
        if action == "install":
            return [self.helm, "install", self.release, str(CHART), *common, "-f", str(self.values_file()),
                    "--skip-crds"]
        return [self.helm, "uninstall", self.release, *common]

    def plan(self) -> list[str]:
        return [f"{self.helm} install {self.release} charts/webhook-operator -n {self.namespace} -f "
                f"WORK/values.json --skip-crds   (values: {json.dumps(self.values(), sort_keys=True)})"]

    def tool(self) -> tuple[str, Optional[str]]:
        found = shutil.which(self.helm)
        return f"helm binary {found or self.helm}", None if found else f"{self.helm!r} not found (E2E_HELM)"

    def _run(self, argv: list[str], env: Optional[dict], timeout: float) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise InstallError(f"`{' '.join(argv)}`: {error}") from None
        if done.returncode != 0:
            raise InstallError(f"`{' '.join(argv)}` exited {done.returncode}: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def render(self) -> list[dict]:
        self.objects = parse_documents(self._run(self.argv("template"), None, 120))
        return self.objects

    def install(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        self._run(self.argv("install"), dict(os.environ, KUBECONFIG=str(kubeconfig)), timeout)

    def uninstall(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        try:
            self._run(self.argv("uninstall"), dict(os.environ, KUBECONFIG=str(kubeconfig)), timeout)
        except InstallError as error:
            if "not found" not in str(error):
                raise


def _helm_sdk():
    import helm_python  # PyPI helm-python-sdk, in .tools/python
    return helm_python


def sdk_install(kubeconfig: Path, chart: Path, release: str, values: dict, namespace: str, timeout: float) -> None:
    """`helm install` through Helm's Go SDK (the chart's crds/ are skipped when they exist)."""
    helm = _helm_sdk()
    try:
        with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
            cfg.install(str(chart), release, values, namespace=namespace, timeout=int(timeout))
    except helm.HelmError as error:
        raise InstallError(f"helm install {release} (Helm SDK): {error}") from None


def sdk_uninstall(kubeconfig: Path, release: str, namespace: str, timeout: float) -> None:
    helm = _helm_sdk()
    try:
        with helm.Config(kubeconfig_path=kubeconfig, namespace=namespace) as cfg:
            cfg.uninstall(release, ignore_not_found=True, timeout=int(timeout))
    except helm.HelmError as error:
        raise InstallError(f"helm uninstall {release} (Helm SDK): {error}") from None


class HelmSdk(HelmCli):
    title = "helm (Helm SDK)"

    def __init__(self, *args):
        super().__init__("", *args)

    def plan(self) -> list[str]:
        return [f"Helm SDK (helm-python-sdk, no helm binary): install release {self.release} of "
                f"charts/webhook-operator in {self.namespace}   (values: {json.dumps(self.values(), sort_keys=True)})"]

    def tool(self) -> tuple[str, Optional[str]]:
        try:
            helm = _helm_sdk()
        except ImportError:
            return "Helm SDK", "neither a helm binary nor helm-python-sdk (make tools) was found"
        return f"Helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__})", None

    def render(self) -> list[dict]:
        helm = _helm_sdk()
        try:
            with helm.Chart.load(CHART) as chart:
                rendered = chart.render(self.values(), name=self.release, namespace=self.namespace, is_install=True)
        except helm.HelmError as error:
            raise InstallError(f"rendering the chart: {error}") from None
        self.objects = [o for path, text in sorted(rendered.items()) if not path.endswith("NOTES.txt")
                        for o in parse_documents(text)]
        return self.objects

    def install(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        sdk_install(kubeconfig, CHART, self.release, self.values(), self.namespace, timeout)

    def uninstall(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        sdk_uninstall(kubeconfig, self.release, self.namespace, timeout)


class Kustomize(Installer):
    title = "kustomize"

    def overlay(self) -> Path:
        folder = self.workdir / "kustomize"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kustomization.yaml").write_text(
            json.dumps(kustomization(folder, self.namespace, self.release, self.image, self.nats_url), indent=2),
            encoding="utf-8")
        return folder

    def crds(self) -> list[str]:
        return ["-k", str(CONFIG / "crd")]

    def plan(self) -> list[str]:
        return [f"WORK/kustomize: overlay of config/rbac + config/manager (namespace {self.namespace}, namePrefix "
                f"{self.release}-, image {self.image}, NATS_URL/DELIVER_NATS_URL {self.nats_url}, DELIVER_REPLICAS 1, "
                "DELIVER_ALLOW_PRIVATE_NETWORKS true)",
                "kubectl kustomize WORK/kustomize | kubectl apply -f -"]

    def tool(self) -> tuple[str, Optional[str]]:
        found = shutil.which(self.kubectl_binary)
        return (f"kubectl kustomize ({found or self.kubectl_binary})",
                None if found else f"{self.kubectl_binary!r} not found")

    def render(self) -> list[dict]:
        try:
            done = subprocess.run([self.kubectl_binary, "kustomize", str(self.overlay())], capture_output=True,
                                  text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise InstallError(f"kubectl kustomize: {error}") from None
        if done.returncode != 0:
            raise InstallError(f"kubectl kustomize {self.workdir / 'kustomize'} failed: {done.stderr.strip()}")
        self.objects = parse_documents(done.stdout)
        return self.objects

    def _list(self) -> str:
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": self.objects or self.render()})

    def install(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        kubectl.run("apply", "-f", "-", input=self._list(), timeout=timeout)

    def uninstall(self, kubectl, kubeconfig: Path, timeout: float) -> None:
        kubectl.run("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=self._list(), timeout=timeout)


def installer(install: str, helm: str, namespace: str, release: str, image: str, nats_url: str,
              workdir: Path, kubectl: str) -> Installer:
    """The Installer for E2E_INSTALL and E2E_HELM: helm binary if given or on PATH, else Helm's SDK."""
    args = (namespace, release, image, nats_url, workdir, kubectl)
    if install == "kustomize":
        return Kustomize(*args)
    if helm and helm.lower() != "sdk":
        return HelmCli(helm, *args)
    if not helm and shutil.which("helm"):
        return HelmCli("helm", *args)
    return HelmSdk(*args)


def describe_objects(objects: list[dict]) -> str:
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj.get("kind", "?")] = counts.get(obj.get("kind", "?"), 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def receiver_script() -> str:
    return RECEIVER_SCRIPT.read_text(encoding="utf-8")


def script_problem(script: str) -> Optional[str]:
    """The receiver must compile, and use the standard library only (the python image has nothing else)."""
    try:
        compile(script, str(RECEIVER_SCRIPT), "exec")
    except SyntaxError as error:
        return f"e2e/receiver.py does not compile: {error}"
    imported = set(re.findall(r"^(?:from|import)\s+([a-zA-Z_][\w]*)", script, re.M))
    outside = sorted(m for m in imported if m not in sys.stdlib_module_names and m != "__future__")
    return f"e2e/receiver.py imports {outside}, which the python image lacks" if outside else None

