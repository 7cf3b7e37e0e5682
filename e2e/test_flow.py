"""A walkthrough of every step of e2e/run.py against a simulated cluster and operator.

There is no cluster here, so this drives Run.execute() end to end with kubectl, NATS, the local
processes and HTTP replaced by an in-memory World that behaves as the operator's contract says
(finalizers, the signing Secret, conditions, status counters, routes, workload, deliveries).
It proves the steps, waits and clean-up run without errors in the intended order, pass on a
conforming operator, and fail with a precise message (and still clean up) on a deviating one.
Both modes: local workloads, and in-cluster (E2E_INSTALL=helm through the Helm SDK, and
kustomize), where the World takes the rendered install (the real chart and kustomize bases),
runs the operator once its controller Deployment exists, and plays the receiver's log with
real Standard Webhooks signatures. It says nothing about the real operator or a real cluster:
that is what `make e2e` against a cluster is for.

    python3 -m unittest e2e/test_flow.py      (from the repository root, or discover -s e2e)
"""

import base64
import io
import itertools
import json
import sys
import time
import unittest
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))
import incluster  # noqa: E402
import run  # noqa: E402

EP, SUB = run.ENDPOINTS, run.SUBSCRIPTIONS
CANONICAL = {"namespace": "namespaces", "namespaces": "namespaces", "crd": "crd", "secret": "secrets",
             EP: EP, SUB: SUB, "deployments.apps": "deployments", "serviceaccounts": "serviceaccounts",
             "roles.rbac.authorization.k8s.io": "roles", "rolebindings.rbac.authorization.k8s.io": "rolebindings",
             "clusterroles.rbac.authorization.k8s.io": "clusterroles",
             "clusterrolebindings.rbac.authorization.k8s.io": "clusterrolebindings",
             "leases.coordination.k8s.io": "leases", "events.events.k8s.io": "events", "pods": "pods"}
KIND_RESOURCE = {"Namespace": "namespaces", "WebhookEndpoint": EP, "EventSubscription": SUB,
                 "Deployment": "deployments", "Service": "services", "ConfigMap": "configmaps",
                 "ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
                 "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
                 "PodDisruptionBudget": "poddisruptionbudgets"}
KEY = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_KEY = "whsec_" + base64.b64encode(b"another key, not the Secret's one").decode()
IMAGE = "registry.local/webhook-operator:e2e"


def selected(obj, selector):
    """kubectl -l: comma-separated `key` (present) or `key=value` terms."""
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if key not in labels or ("=" in term and labels[key] != value):
            return False
    return True


def matches(pattern: str, event_type: str) -> bool:
    p, t = pattern.split("."), event_type.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(t) > i
        if i >= len(t) or (token != "*" and token != t[i]):
            return False
    return len(p) == len(t)


class World:
    """The cluster plus an idealised operator; `quirks` switch off parts of the contract."""

    def __init__(self, deliveries: Path, quirks=(), cluster=False):
        self.objects = {}  # (resource, namespace, name) -> object
        self.deliveries = deliveries
        self.quirks = set(quirks)
        self.cluster = cluster
        self.deliver_replicas = 0
        self.deliver_image = None
        self.nats_url = None
        self.releases = {}  # helm release -> its objects
        self.receiver_log = []
        self.ingested = itertools.count(1)
        self.uid = 0
        self.seen_ids = set()
        self.unrouted = {}
        self.stats = {}  # (ns, endpoint) -> counters
        self.held = {}  # (ns, endpoint) -> [event ids waiting for a retry]
        self.leader = None
        self.opns = None
        self.receiver_urls = set()
        self.log = []

    # -- kubectl --

    def kubectl(self, *args, input=None):
        self.log.append(args)
        a = list(args)
        ns = None
        if "-n" in a:
            i = a.index("-n")
            ns = a[i + 1]
            del a[i:i + 2]
        if a[:2] == ["config", "current-context"]:
            return "fake\n"
        if a[:2] == ["config", "view"]:
            return "https://fake:6443" if "-o" in a else "apiVersion: v1\nkind: Config\n"
        if a[:2] == ["config", "use-context"] or a[0] == "wait":
            return ""
        if a[0] == "version":
            return json.dumps({"serverVersion": {"gitVersion": "v1.31.0-fake"}})
        if a[:2] == ["get", "--raw"]:
            return self.proxy_get(a[2])
        if a[:2] == ["create", "--raw"]:
            return self.ingest(a[2], Path(a[a.index("-f") + 1]).read_bytes())
        if a[0] == "logs":
            return "\n".join(self.receiver_log) + "\n" if a[1] == f"deployment/{incluster.RECEIVER_NAME}" else ""
        if a[0] in ("apply", "create"):
            if input is None:  # apply -f crds/, -f charts/webhook-operator/crds, -k config/crd
                for name in run.CRDS:
                    self.put("crd", None, {"metadata": {"name": name}})
                return ""
            obj = json.loads(input)
            for item in obj["items"] if obj["kind"] == "List" else [obj]:
                self.apply(KIND_RESOURCE[item["kind"]], item["metadata"].get("namespace"), item)
            return ""
        if a[0] == "patch":
            resource, name = CANONICAL[a[1]], a[2]
            patch = json.loads(a[a.index("-p") + 1])
            self.patch(resource, ns, name, patch)
            return ""
        if a[0] == "delete":
            if a[1] == "-f":  # kubectl delete -f - (what kustomize rendered)
                for item in json.loads(input)["items"]:
                    meta = item["metadata"]
                    self.delete(KIND_RESOURCE[item["kind"]], meta.get("namespace"), meta["name"])
                return ""
            if "-l" in a:
                label = a[a.index("-l") + 1]
                for resource in (CANONICAL[r] for r in a[1].split(",")):
                    for key in [k for k, o in self.objects.items() if k[0] == resource and selected(o, label)]:
                        self.delete(*key)
                return ""
            resource = CANONICAL[a[1]]
            names = [x for x in a[2:] if not x.startswith("--")]
            if "--all" in a:
                names = [k[2] for k in list(self.objects) if k[0] == resource and k[1] == ns]
            for name in names:
                self.delete(resource, ns, name)
            return ""
        if a[0] == "get":
            resource = CANONICAL.get(a[1], a[1])
            if resource == "events":
                return "" if "-o" not in a else json.dumps({"items": []})
            if "-o" not in a:  # the table of kubectl get webhookendpoints
                return self.table(ns)
            if a[2] != "-o":  # one object
                obj = self.get(resource, ns, a[2])
                return json.dumps(obj) if obj else ""
            if resource == "pods":
                items = self.pods(ns)
            else:
                items = [self.view(k) for k in sorted(self.objects) if k[0] == resource and ("-A" in a or k[1] == ns)]
            if "-l" in a:
                label = a[a.index("-l") + 1]
                items = [o for o in items if selected(o, label)]
            if resource in (EP, SUB) and not self.get("crd", None, resource):
                raise run.KubectlError(list(args), 1, f'the server doesn\'t have a resource type "{a[1]}"')
            return json.dumps({"items": items})
        raise AssertionError(f"unexpected kubectl {args}")

    def table(self, ns):
        rows = [("NAME", "URL", "HEALTH", "DELIVERED", "FAILED", "DEAD", "AGE")]
        for key in sorted(k for k in self.objects if k[0] == EP and k[1] == ns):
            o = self.view(key)
            s = o["status"]
            rows.append((o["metadata"]["name"], o["spec"]["url"], s.get("health", ""), str(s.get("delivered", 0)),
                         str(s.get("failedAttempts", 0)), str(s.get("deadLettered", 0)), "1m"))
        widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(rows[0]))]
        return "\n".join("".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"

    # -- the store --

    def get(self, resource, ns, name):
        key = (resource, ns, name)
        return self.view(key) if key in self.objects else None

    def view(self, key):
        self.tick()
        obj = json.loads(json.dumps(self.objects[key]))
        if key[0] == EP and "no-status" not in self.quirks:
            obj.setdefault("status", {}).update(self.counters(key[1], key[2]))
            health = obj["status"]["health"]
            obj["status"].setdefault("conditions", []).append({
                "type": "Healthy", "status": {"Healthy": "True", "Pending": "Unknown"}.get(health, "False"),
                "reason": health, "message": "", "observedGeneration": obj["metadata"]["generation"]})
        if key[0] == "leases" and self.leader:
            obj["spec"] = {"holderIdentity": self.leader}
        if key[0] == "deployments":
            replicas = obj["spec"].get("replicas", 1)
            ready = 0 if self.stuck(obj) else replicas
            obj["status"] = {"observedGeneration": obj["metadata"].get("generation", 0), "replicas": replicas,
                             "readyReplicas": ready, "updatedReplicas": replicas}
        return obj

    # -- pods, as the Deployments the World holds would have them --

    def stuck(self, deployment):
        """Quirks that keep pods from becoming ready."""
        containers = deployment["spec"]["template"]["spec"].get("containers") or [{}]
        if "image-pull" in self.quirks and containers[0].get("image") == IMAGE:
            return "ImagePullBackOff"
        if "deliver-crashloop" in self.quirks and deployment["metadata"]["name"].startswith("webhook-deliver-"):
            return "CrashLoopBackOff"
        return None

    def pods(self, ns):
        pods = []
        for key in sorted(k for k in self.objects if k[0] == "deployments" and k[1] == ns):
            deployment = self.objects[key]
            template = deployment["spec"]["template"]
            reason = self.stuck(deployment)
            for i in range(deployment["spec"].get("replicas", 1)):
                container = template["spec"]["containers"][0]
                status = {"name": container.get("name", "c"), "image": container.get("image"),
                          "restartCount": 4 if reason == "CrashLoopBackOff" else 0, "state": {}}
                if reason:
                    status["state"] = {"waiting": {"reason": reason, "message": "back-off"}}
                pods.append({"metadata": {"name": f"{key[2]}-{i}", "namespace": ns,
                                          "labels": dict(template["metadata"]["labels"])},
                             "status": {"phase": "Pending" if reason == "ImagePullBackOff" else "Running",
                                        "conditions": [{"type": "Ready", "status": "False" if reason else "True"}],
                                        "containerStatuses": [status]}})
        return pods

    # -- the API server's proxies --

    def proxy_get(self, path):
        parts = path.split("/")  # /api/v1/namespaces/NS/pods/NAME:PORT/proxy/...
        assert parts[:4] == ["", "api", "v1", "namespaces"] and parts[5] == "pods" and parts[7] == "proxy", path
        pod, _, port = parts[6].partition(":")
        assert port == str(incluster.ADMIN_PORT), path
        if pod not in [p["metadata"]["name"] for p in self.pods(parts[4])]:
            raise run.KubectlError(["get", "--raw", path], 1, f'pods "{pod}" not found')
        rest = "/" + "/".join(parts[8:])
        if rest == "/metrics":  # every count on the first router pod: the run must sum over the pods
            status, text = self.http_get("/metrics")
            return text if pod.endswith("-0") else "# EOF\n"
        if rest == "/v1/endpoints":
            return self.http_get("/v1/endpoints")[1]
        raise AssertionError(f"unexpected proxy path {path}")

    def ingest(self, path, payload):
        parts = path.split("/")  # /api/v1/namespaces/NS/services/SVC:admin/proxy/v1/events/TENANT/TYPE
        assert parts[5] == "services" and parts[6].endswith(":admin") and parts[7:10] == ["proxy", "v1", "events"]
        if "ingest-down" in self.quirks:
            raise run.KubectlError(["create", "--raw", path], 1,
                                   "Error from server (ServiceUnavailable): the server is currently unable to "
                                   "handle the request")
        assert (parts[4], parts[6][:-len(":admin")]) in [(k[1], k[2]) for k in self.objects if k[0] == "services"]
        event_id = f"msg_{next(self.ingested):04d}"
        return json.dumps(self.publish(None, parts[10], parts[11], payload, event_id) | {"id": event_id})

    # -- installs --

    def helm_install(self, release, values, namespace):
        import helm_python
        with helm_python.Chart.load(incluster.CHART) as chart:
            rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
        objects = [o for path, text in rendered.items() if not path.endswith("NOTES.txt")
                   for o in incluster.parse_documents(text)]
        self.releases[release] = objects
        for obj in objects:
            self.apply(KIND_RESOURCE[obj["kind"]], obj["metadata"].get("namespace"), obj)

    def helm_uninstall(self, release):
        for obj in self.releases.pop(release, []):
            self.delete(KIND_RESOURCE[obj["kind"]], obj["metadata"].get("namespace"), obj["metadata"]["name"])

    def sync_operator(self):
        """In-cluster: the operator runs while its controller Deployment exists and its pods can start."""
        if not self.cluster:
            return
        controllers = [(k, o) for k, o in self.objects.items() if k[0] == "deployments" and k[2].endswith("-controller")
                       and (o["spec"]["template"]["spec"]["containers"][0].get("args") or [""])[0] == "controller"]
        if not controllers or self.stuck(controllers[0][1]):
            self.leader = None
            return
        (_, opns, name), deployment = controllers[0]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.leader, self.opns = f"{name}-0", opns
        self.nats_url = incluster.setting(container, "--deliver-nats-url", "DELIVER_NATS_URL")
        self.deliver_replicas = int(incluster.setting(container, "--deliver-replicas", "DELIVER_REPLICAS"))
        self.deliver_image = incluster.setting(container, "--deliver-image", "DELIVER_IMAGE")
        if "wrong-deliver-image" in self.quirks:
            self.deliver_image = "ghcr.io/webhook-operator/webhook-operator:latest"
        if ("leases", opns, run.LEASE) not in self.objects:
            self.put("leases", opns, {"metadata": {"name": run.LEASE}})

    def put(self, resource, ns, obj):
        self.uid += 1
        obj["metadata"].setdefault("uid", f"uid-{self.uid}")
        obj["metadata"].setdefault("generation", 1)
        self.objects[(resource, ns, obj["metadata"]["name"])] = obj

    def apply(self, resource, ns, obj):
        key = (resource, ns, obj["metadata"]["name"])
        if key in self.objects:
            current = self.objects[key]
            if current.get("spec") != obj.get("spec"):
                current["spec"] = obj["spec"]
                current["metadata"]["generation"] += 1
        else:
            self.put(resource, ns, obj)
        self.sync_operator()
        self.reconcile(ns)

    def patch(self, resource, ns, name, patch):
        obj = self.objects[(resource, ns, name)]
        if "spec" in patch:
            obj["spec"].update(patch["spec"])
            obj["metadata"]["generation"] += 1
        if patch.get("metadata", {}).get("finalizers", "keep") is None:
            obj["metadata"].pop("finalizers", None)
            if obj["metadata"].get("deletionTimestamp"):
                del self.objects[(resource, ns, name)]
        self.reconcile(ns)
        if resource == EP and obj["spec"]["url"] in self.receiver_urls:
            for event_id in self.held.pop((ns, name), []):
                self.deliver(ns, name, event_id)

    def delete(self, resource, ns, name):
        key = (resource, ns, name)
        if key not in self.objects:
            return
        obj = self.objects[key]
        if obj["metadata"].get("finalizers") and ("stuck-finalizer" in self.quirks or not self.controller_up()):
            obj["metadata"]["deletionTimestamp"] = "now"
            return
        del self.objects[key]
        self.sync_operator()
        if resource == "namespaces":
            for k in [k for k in self.objects if k[1] == name]:
                if not self.objects[k]["metadata"].get("finalizers"):
                    del self.objects[k]
        if resource == EP:
            self.stats.pop((ns, name), None)
            if "no-gc" not in self.quirks:  # the garbage collector takes the Secret it owned
                for key in [k for k, o in self.objects.items() if k[0] == "secrets" and k[1] == ns and any(
                        r.get("uid") == obj["metadata"]["uid"] for r in o["metadata"].get("ownerReferences", []))]:
                    del self.objects[key]
        self.reconcile(ns)

    def controller_up(self):
        return self.leader is not None

    # -- the operator --

    def live(self, resource, ns):
        return {k[2]: o for k, o in self.objects.items()
                if k[0] == resource and k[1] == ns and not o["metadata"].get("deletionTimestamp")}

    def reconcile(self, ns):
        if not self.controller_up() or ns is None:
            return
        endpoints = self.live(EP, ns)
        for name, ep in endpoints.items():
            ep["metadata"]["finalizers"] = [run.FINALIZER]
            secret = f"{name}-signing"
            if ("secrets", ns, secret) not in self.objects and "no-secret" not in self.quirks:
                key = KEY
                self.put("secrets", ns, {"metadata": {"name": secret, "namespace": ns, "ownerReferences": [{
                    "kind": "WebhookEndpoint", "name": name, "uid": ep["metadata"]["uid"], "controller": True}]},
                    "data": {"secret": base64.b64encode(key.encode()).decode()}})
            ready = ("True", "Active") if ("secrets", ns, secret) in self.objects else ("False", "SecretNotFound")
            self.set_ready(ep, *ready)
        for name, sub in self.live(SUB, ns).items():
            sub["metadata"]["finalizers"] = [run.FINALIZER]
            ok = sub["spec"]["endpointRef"]["name"] in endpoints
            self.set_ready(sub, *(("True", "Active") if ok else ("False", "EndpointNotFound")))
        name = run.workload_name(ns)
        if endpoints and "no-workload" not in self.quirks:
            labels = {"app.kubernetes.io/name": "webhook-deliver", "app.kubernetes.io/managed-by": "webhook-operator",
                      "webhook-operator.io/tenant": ns}

            def meta(n, where):
                return {"name": n, "namespace": where, "labels": dict(labels)}
            self.objects[("deployments", self.opns, name)] = {"metadata": meta(name, self.opns), "spec": {
                "replicas": self.deliver_replicas, "selector": {"matchLabels": dict(labels)},
                "template": {"metadata": {"labels": dict(labels)}, "spec": {
                    "serviceAccountName": name, "containers": [{
                        "name": "deliver", "image": self.deliver_image,
                        "args": ["deliver", "--tenant", ns, "--allow-private-networks"],
                        "env": [{"name": "NATS_URL", "value": self.nats_url}]}]}}}}
            self.objects[("serviceaccounts", self.opns, name)] = {"metadata": meta(name, self.opns)}
            self.objects[("roles", ns, run.TENANT_ROLE)] = {"metadata": meta(run.TENANT_ROLE, ns), "rules": [
                {"apiGroups": [""], "resources": ["secrets", "configmaps"], "verbs": ["get", "list", "watch"]}]}
            self.objects[("rolebindings", ns, run.TENANT_ROLE)] = {
                "metadata": meta(run.TENANT_ROLE, ns), "roleRef": {"kind": "Role", "name": run.TENANT_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": self.opns}]}
        elif not endpoints:
            for key in (("deployments", self.opns, name), ("serviceaccounts", self.opns, name),
                        ("roles", ns, run.TENANT_ROLE), ("rolebindings", ns, run.TENANT_ROLE)):
                self.objects.pop(key, None)

    def set_ready(self, obj, status, reason):
        generation = obj["metadata"]["generation"]
        obj["status"] = {"observedGeneration": generation, "conditions": [
            {"type": "Ready", "status": status, "reason": reason, "message": reason,
             "observedGeneration": generation}]}

    def routes(self, ns):
        endpoints = self.live(EP, ns)
        if not endpoints:
            return None
        return {"tenant": ns,
                "endpoints": [{"name": n, "url": e["spec"]["url"]} for n, e in sorted(endpoints.items())],
                "routes": [{"subscription": n, "endpoint": s["spec"]["endpointRef"]["name"],
                            "eventTypes": s["spec"]["eventTypes"]} for n, s in sorted(self.live(SUB, ns).items())
                           if s["spec"]["endpointRef"]["name"] in endpoints]}

    def counters(self, ns, name):
        zero = {"delivered": 0, "failedAttempts": 0, "deadLettered": 0, "consecutiveFailures": 0,
                "lastSuccessTime": None, "lastFailure": None}
        c = self.stats.setdefault((ns, name), zero)
        if c["consecutiveFailures"]:
            health = "Failing" if c["consecutiveFailures"] >= 5 else "Degraded"
        else:
            health = "Healthy" if c["delivered"] else "Pending"
        return dict(c, health=health)

    def tick(self):
        """Time passes: held events are retried against their endpoint and fail again."""
        for (ns, name), held in self.held.items():
            if held:
                c = self.counters(ns, name)
                self.stats[(ns, name)].update(failedAttempts=c["failedAttempts"] + 1,
                                              consecutiveFailures=c["consecutiveFailures"] + 1,
                                              lastFailure={"reason": "ConnectError", "message": "refused"})

    # -- NATS and deliveries --

    def publish(self, url, ns, event_type, payload, event_id):
        if event_id in self.seen_ids:
            return {"stream": "WEBHOOK_EVENTS", "seq": 0, "duplicate": True}
        self.seen_ids.add(event_id)
        self.payloads = getattr(self, "payloads", {})
        self.payloads[event_id] = (event_type, payload)
        routes = self.routes(ns)
        targets = sorted({r["endpoint"] for r in (routes or {}).get("routes", [])
                          if any(matches(p, event_type) for p in r["eventTypes"])})
        if not targets:
            self.unrouted[ns] = self.unrouted.get(ns, 0) + 1
        for name in targets:
            if self.live(EP, ns)[name]["spec"]["url"] in self.receiver_urls:
                self.deliver(ns, name, event_id)
            else:
                self.held.setdefault((ns, name), []).append(event_id)
        return {"stream": "WEBHOOK_EVENTS", "seq": len(self.seen_ids), "duplicate": False}

    def deliver(self, ns, name, event_id):
        event_type, payload = self.payloads[event_id]
        if self.cluster:  # the in-cluster receiver logs what it got; the run verifies the signature
            signer = run.import_standardwebhooks().Webhook(OTHER_KEY if "bad-signature" in self.quirks else KEY)
            now = int(time.time())
            signature = signer.sign(event_id, datetime.fromtimestamp(now, tz=timezone.utc), payload.decode())
            self.receiver_log.append(json.dumps({
                "kind": "delivery", "time": time.time(), "path": f"/{ns}/{name}", "body": payload.decode(),
                "headers": {"webhook-id": event_id, "webhook-timestamp": str(now), "webhook-signature": signature,
                            "webhook-event-type": event_type, "content-type": "application/json"}}))
        else:
            with open(self.deliveries, "a", encoding="utf-8") as f:
                f.write(json.dumps({"id": event_id, "eventType": event_type, "path": f"/{ns}/{name}",
                                    "verified": "bad-signature" not in self.quirks, "reason": "",
                                    "body": payload.decode()}) + "\n")
        c = self.counters(ns, name)
        self.stats[(ns, name)].update(delivered=c["delivered"] + 1, consecutiveFailures=0,
                                      lastSuccessTime="2025-01-01T00:00:00Z")

    def http_get(self, url, timeout=5):
        if url.endswith("/metrics"):
            return 200, "".join(f'webhook_events_unrouted_total{{tenant="{ns}"}} {n}\n'
                                for ns, n in self.unrouted.items()) + "# EOF\n"
        if url.endswith("/v1/endpoints"):
            names = [{"namespace": k[1], "name": k[2]} for k in self.objects if k[0] == EP]
            return 200, json.dumps(names)
        return 200, "ok"


class FakeProcesses:
    def __init__(self, world):
        self.world = world
        self.running = []
        self.argv = {}

    def start(self, name, argv, env):
        self.running.append(name)
        self.argv[name] = argv
        if name == "controller":
            self.world.deliver_replicas = int(argv[argv.index("--deliver-replicas") + 1])
            self.world.leader = argv[argv.index("--identity") + 1]
            self.world.opns = argv[argv.index("--namespace") + 1]
            self.world.nats_url = argv[argv.index("--nats-url") + 1]
            self.world.put("leases", self.world.opns, {"metadata": {"name": run.LEASE}})
        if name == "receiver":
            port = argv[argv.index("--port") + 1]
            self.world.receiver_urls = {u for u in [self.world.receiver_url] if f":{port}/" in u}

    def check_alive(self):
        pass

    def stop_all(self):
        self.world.leader = None
        self.running.clear()

    def logs(self):
        return []


def execute(quirks=(), env=None, mode="local", run_id="flow01"):
    """Run.execute() against a World; returns (exit code, stdout, stderr, world, run)."""
    base = {"E2E_RUN_ID": run_id, "E2E_TIMEOUT": "3", "E2E_STATUS_TIMEOUT": "3", "E2E_DELIVERY_TIMEOUT": "3",
            "E2E_ROLLOUT_TIMEOUT": "3"}
    if mode == "local":
        base.update(E2E_LOCAL_WORKLOADS="1", E2E_BIN=sys.executable)
    else:
        base.update(E2E_INSTALL=mode, E2E_IMAGE=IMAGE, E2E_HELM="sdk")
    cfg = run.config_from_env(dict(base, **(env or {})))
    r = run.Run(cfg)
    world = World(r.deliveries, quirks, cluster=mode != "local")
    r.procs = FakeProcesses(world)
    if mode == "local":
        original_start = r.step_start

        def step_start():
            original_start()
            world.receiver_url = r.receiver_url
        r.step_start = step_start
    else:
        original_start = r.step_start_cluster

        def step_start_cluster():
            world.receiver_url = None
            original_start()
            world.receiver_urls = {r.receiver_url}
        r.step_start_cluster = step_start_cluster
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.object(run.Kubectl, "run", lambda self, *a, input=None, timeout=90: world.kubectl(
            *a, input=input)), \
            mock.patch.object(run, "nats_publish", world.publish), \
            mock.patch.object(run, "nats_routes", lambda url, ns: world.routes(ns)), \
            mock.patch.object(run, "nats_consumer_exists",
                              lambda url, stream, name: any(run.delivery_consumer(k[1], k[2]) == name
                                                            for k in world.objects if k[0] == EP)), \
            mock.patch.object(run, "nats_jetstream", lambda url: {"streams": 0, "consumers": 0}), \
            mock.patch.object(incluster, "sdk_install", lambda kubeconfig, chart, release, values, namespace,
                              timeout: world.helm_install(release, values, namespace)), \
            mock.patch.object(incluster, "sdk_uninstall", lambda kubeconfig, release, namespace,
                              timeout: world.helm_uninstall(release)), \
            mock.patch.object(run, "http_get", world.http_get), \
            mock.patch.object(run, "port_problem", lambda port: None), \
            mock.patch.object(run, "cli_problems", lambda binary: []), \
            mock.patch.object(run.shutil, "which", lambda name: "/usr/bin/" + Path(name).name), \
            mock.patch.object(run.os, "access", lambda path, mode: True), \
            mock.patch.object(run.time, "sleep", lambda s: None), \
            redirect_stdout(out), redirect_stderr(err):
        code = r.execute()
    return code, out.getvalue(), err.getvalue(), world, r


def leftovers(world, run_id):
    """Everything of a run still in the World: objects of its namespaces, the namespaces, cluster-scoped
    objects of its install, CRDs."""
    namespaces = (f"e2e-{run_id}", f"e2e-{run_id}-operator")
    return [k for k, o in world.objects.items() if k[1] in namespaces or k[2] in namespaces or k[0] == "crd"
            or (o["metadata"].get("labels") or {}).get(incluster.INSTANCE_LABEL) == f"e2e-{run_id}"]


class FlowTest(unittest.TestCase):
    def execute(self, quirks=(), env=None):
        return execute(quirks, env)

    def test_a_conforming_operator_passes_every_step_and_leaves_nothing(self):
        code, out, err, world, r = self.execute()
        self.assertEqual(code, 0, out + err)
        self.assertIn("e2e passed", out)
        for index, (title, _) in enumerate(r.steps(), 1):
            self.assertIn(f"[{index}/11] {title}", out)
        self.assertEqual(leftovers(world, "flow01"), [],
                         "namespaces, their objects and the CRDs this run installed are gone")
        self.assertFalse(r.workdir.exists(), "the work folder goes after a pass")
        deleted = [a for a in world.log if a[0] == "delete"]
        self.assertTrue(any(a[1] == "crd" for a in deleted))

    def test_b_existing_crds_stay_and_foreign_objects_are_refused(self):
        code, out, err, world, r = self.execute(env={"E2E_DELETE_CRDS": "auto"})
        self.assertEqual(code, 0, out + err)
        # Second run on a cluster where the CRDs exist and someone else's endpoint lives.
        cfg = run.config_from_env({"E2E_LOCAL_WORKLOADS": "1", "E2E_RUN_ID": "flow02", "E2E_BIN": sys.executable})
        r2 = run.Run(cfg)
        for name in run.CRDS:
            world.put("crd", None, {"metadata": {"name": name}})
        world.put(EP, "prod", {"kind": "WebhookEndpoint", "metadata": {"name": "real", "namespace": "prod"},
                               "spec": {"url": "https://x"}})
        r2.kubectl.run = lambda *a, input=None, timeout=90: world.kubectl(*a, input=input)
        try:
            with self.assertRaisesRegex(run.E2EFailure, r"prod/real.*dedicated cluster"):
                r2.step_crds()
        finally:
            run.shutil.rmtree(r2.workdir, ignore_errors=True)
        self.assertIsNotNone(world.get("crd", None, run.ENDPOINTS), "CRDs this run did not install stay")

    def check_failure(self, quirks, words):
        code, out, err, world, r = self.execute(quirks=quirks)
        self.assertEqual(code, 1, out)
        self.assertIn("e2e FAILED", err)
        self.assertRegex(err, words)
        self.assertIn("Cleanup", out)
        self.assertEqual([k for k in world.objects if k[0] == "namespaces"], [], "namespaces deleted on failure")
        return out, err

    def test_c_no_signing_secret(self):
        self.check_failure({"no-secret"}, r"Ready=True/Active: Ready is False/SecretNotFound")

    def test_d_no_workload(self):
        self.check_failure({"no-workload"}, r"delivery workload of the tenant: missing: \['Deployment'")

    def test_e_bad_signature(self):
        self.check_failure({"bad-signature"}, r"could not verify the signature")

    def test_f_no_status(self):
        self.check_failure({"no-status"}, r"status.health Pending")

    def test_g_stuck_finalizer_is_reported_and_stripped_at_cleanup(self):
        out, err = self.check_failure({"stuck-finalizer"}, r"to be gone: still there .*finalizers")
        self.assertIn("removed the finalizer", out)



def _helm_sdk_present() -> bool:
    try:
        import helm_python  # noqa: F401
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


@unittest.skipUnless(_helm_sdk_present(), "needs helm-python-sdk and pyyaml (make tools)")
class InClusterFlowTest(unittest.TestCase):
    """E2E_INSTALL=helm (Helm SDK: the World installs what the real chart renders) and kustomize
    (the real `kubectl kustomize` of config/, applied with kubectl)."""

    def check_pass(self, mode, run_id):
        code, out, err, world, r = execute(mode=mode, run_id=run_id)
        self.assertEqual(code, 0, out + err)
        self.assertIn("e2e passed", out)
        for index, (title, _) in enumerate(r.steps(), 1):
            self.assertIn(f"[{index}/11] {title}", out)
        self.assertIn("Install NATS, the operator and a receiver", out)
        self.assertEqual(leftovers(world, run_id), [], "namespaces, the install, its ClusterRole(Binding) and the "
                                                       "CRDs this run installed are gone")
        self.assertEqual(world.releases, {}, "the Helm release was uninstalled")
        self.assertFalse(r.workdir.exists())
        return out, world, r

    def test_a_helm_install_passes_every_step_and_removes_everything(self):
        out, world, r = self.check_pass("helm", "flow03")
        for words in ("helm (Helm SDK) renders",
                      "NATS ready in the cluster: nats://e2e-nats.e2e-flow03-operator.svc:4222",
                      "controller pod e2e-flow03-webhook-operator-controller-0 holds Lease",
                      "delivery Deployment webhook-deliver-e2e-flow03 ready (image "
                      "registry.local/webhook-operator:e2e)",
                      "the delivery pod lists e2e-flow03/orders in /v1/endpoints",
                      "the controller's admin ingest (POST /v1/events through the API server's service proxy) accepted "
                      "invoice.created as msg_0001", "the tenant's delivery pods are gone",
                      "removed the install (helm (Helm SDK), e2e-flow03)"):
            self.assertIn(words, out)
        self.assertTrue(any(a[:3] == ("apply", "-f", str(incluster.CHART / "crds")) for a in world.log),
                        "CRDs from the chart")
        forward = r.procs.argv["port-forward"]
        self.assertEqual(forward[1:5], ["port-forward", "-n", "e2e-flow03-operator", "svc/e2e-nats"])
        self.assertTrue(forward[5].endswith(":4222") and forward[6:] == ["--address", "127.0.0.1"], forward)

    def test_b_kustomize_install_passes_every_step_and_removes_everything(self):
        out, world, r = self.check_pass("kustomize", "flow04")
        self.assertIn("kustomize renders", out)
        self.assertTrue(any(a[:3] == ("apply", "-k", str(incluster.CONFIG / "crd")) for a in world.log),
                        "CRDs from config/crd")
        self.assertTrue(any(a[:2] == ("delete", "-f") for a in world.log), "the rendered objects were deleted")

    def test_c_an_existing_nats_is_used_and_not_deployed(self):
        code, out, err, world, r = execute(mode="helm", run_id="flow05",
                                           env={"E2E_NATS_URL": "nats://nats.messaging.svc:4222"})
        self.assertEqual(code, 0, out + err)
        self.assertNotIn(("deployments", "e2e-flow05-operator", incluster.NATS_NAME),
                         [a for a in world.objects], "no NATS deployed")
        self.assertIn("JetStream at nats://nats.messaging.svc:4222 answers", out)
        self.assertEqual(world.nats_url, "nats://nats.messaging.svc:4222", "the operator was given that URL")

    def check_failure(self, quirks, words, mode="helm", run_id="flow06"):
        code, out, err, world, r = execute(quirks=quirks, mode=mode, run_id=run_id)
        self.assertEqual(code, 1, out)
        self.assertIn("e2e FAILED", err)
        self.assertRegex(err, words)
        self.assertIn("Cleanup", out)
        self.assertEqual(leftovers(world, run_id), [], "everything removed after a failure too")
        self.assertIn("--- diagnostics ---", err)
        self.assertIn("pods in e2e-" + run_id + "-operator", err)
        run.shutil.rmtree(r.workdir, ignore_errors=True)
        return out, err

    def test_d_an_image_the_cluster_cannot_pull(self):
        self.check_failure({"image-pull"}, r"(?s)Deployment e2e-flow06-operator/e2e-flow06-webhook-operator-controller "
                                           r"to be ready: 0/2 replicas ready.*ImagePullBackOff.*kind load docker-image "
                                           r"registry.local/webhook-operator:e2e")

    def test_e_bad_signatures_in_the_receivers_log(self):
        self.check_failure({"bad-signature"}, r"could not verify the signature .* no matching v1 signature",
                           mode="kustomize", run_id="flow07")

    def test_f_delivery_pods_never_ready(self):
        self.check_failure({"deliver-crashloop"}, r"(?s)webhook-deliver-e2e-flow08 to be ready: 0/1 replicas ready.*"
                                                  r"CrashLoopBackOff.*restarted 4 times", run_id="flow08")

    def test_g_the_delivery_image_is_not_the_operators(self):
        self.check_failure({"wrong-deliver-image"}, r"runs image 'ghcr.io/webhook-operator/webhook-operator:latest', "
                                                    r"expected 'registry.local/webhook-operator:e2e'", run_id="flow09")

    def test_h_the_admin_ingest_is_unreachable(self):
        self.check_failure({"ingest-down"}, r"kubectl create --raw /api/v1/namespaces/e2e-flow10-operator/services/"
                                            r"e2e-flow10-webhook-operator-controller-metrics:admin/proxy/v1/events/"
                                            r"e2e-flow10/invoice.created` failed .*ServiceUnavailable", run_id="flow10")


if __name__ == "__main__":
    unittest.main()
