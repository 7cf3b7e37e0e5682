"""Tests of e2e/run.py and e2e/incluster.py that need no cluster.

    PYTHONPATH=.tools/python python3 -m unittest discover -s e2e -v     (or: python3 -m pytest e2e)

The pure helpers are tested directly; the in-cluster mode's chart values and kustomize overlay
are rendered for real (Helm SDK, kubectl kustomize) and checked, and e2e/receiver.py runs as a
real HTTP server whose lines are verified. LocalPipelineTest checks the NATS, metrics and receiver
helpers against the real pipeline (`webhook-operator local`, which publishes routes to the same
bucket the controller does) and the real sample receiver; it is skipped when nats-server or the
binary (E2E_BIN, default target/debug/webhook-operator) is missing (make tools; cargo build).
"""

import base64
import copy
import json
import os
import re
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import incluster  # noqa: E402
import run  # noqa: E402

ROOT = run.ROOT
IMAGE = "localhost:5001/webhook-operator:0.1.0"


class ConfigTest(unittest.TestCase):
    def test_defaults_derive_both_namespaces_from_the_run_id(self):
        cfg = run.config_from_env({"E2E_RUN_ID": "abc123", "E2E_LOCAL_WORKLOADS": "1"})
        self.assertEqual((cfg.namespace, cfg.operator_namespace), ("e2e-abc123", "e2e-abc123-operator"))
        self.assertTrue(cfg.local_workloads)
        self.assertEqual((cfg.timeout, cfg.delivery_timeout, cfg.status_timeout), (60, 30, 45))
        self.assertIsNone(run.mode_problem(cfg))

    def test_random_run_ids_are_valid_and_differ(self):
        a, b = run.config_from_env({}), run.config_from_env({})
        self.assertNotEqual(a.run_id, b.run_id)
        self.assertTrue(run.valid_namespace(a.namespace, run.MAX_TENANT_NAMESPACE))

    def test_modes_that_cannot_run_fail_fast_with_a_hint(self):
        for env, words in (({}, "choose a mode: `make e2e E2E_INSTALL=helm E2E_IMAGE="),
                           ({"E2E_INSTALL": "helm", "E2E_LOCAL_WORKLOADS": "1", "E2E_IMAGE": IMAGE}, "choose one"),
                           ({"E2E_INSTALL": "kustomize"}, "E2E_IMAGE is required"),
                           ({"E2E_INSTALL": "helm", "E2E_IMAGE": "webhook-operator"}, "expected REPOSITORY:TAG"),
                           ({"E2E_INSTALL": "helm", "E2E_IMAGE": "localhost:5001/webhook-operator"}, "REPOSITORY:TAG"),
                           ({"E2E_INSTALL": "helm", "E2E_IMAGE": "x:latest"}, "kind load docker-image"),
                           ({"E2E_INSTALL": "helm", "E2E_IMAGE": "x@sha256:" + "0" * 64}, "digest"),
                           ({"E2E_INSTALL": "terraform"}, "unknown")):
            problem = run.mode_problem(run.config_from_env(env))
            self.assertIsNotNone(problem, env)
            self.assertIn(words, problem)

    def test_the_in_cluster_mode(self):
        cfg = run.config_from_env({"E2E_RUN_ID": "abc123", "E2E_INSTALL": "Helm", "E2E_IMAGE": IMAGE})
        self.assertIsNone(run.mode_problem(cfg))
        self.assertTrue(cfg.in_cluster)
        self.assertEqual((cfg.install, cfg.release, cfg.rollout_timeout), ("helm", "e2e-abc123", 180))
        self.assertEqual(cfg.pod_nats_url, "nats://e2e-nats.e2e-abc123-operator.svc:4222")
        self.assertEqual(incluster.split_image(IMAGE), ("localhost:5001/webhook-operator", "0.1.0"))
        given = run.config_from_env({"E2E_INSTALL": "helm", "E2E_IMAGE": IMAGE,
                                     "E2E_NATS_URL": "nats://nats.messaging.svc.cluster.local:4333"})
        self.assertEqual(given.pod_nats_url, "nats://nats.messaging.svc.cluster.local:4333")
        self.assertEqual(incluster.nats_target(given.pod_nats_url), ("messaging", "nats", 4333))
        self.assertEqual(incluster.nats_target("nats://a.b:1,nats://c.d:2"), ("b", "a", 1))
        self.assertEqual(incluster.nats_target("nats.nats"), ("nats", "nats", 4222))
        for url, words in (("nats://nats:4222", "<service>.<namespace>.svc"), ("tls://n.ns.svc:4222", "credentials"),
                           ("nats://u:p@n.ns.svc:4222", "credentials"), ("nats://10.0.0.1:4222", "<service>"),
                           ("nats://n.ns.svc:port", "bad port")):
            with self.assertRaisesRegex(run.ConfigError, words, msg=url):
                run.config_from_env({"E2E_NATS_URL": url})

    def test_the_helm_tool_follows_e2e_helm(self):
        with tempfile.TemporaryDirectory() as tmp:
            def make(helm):
                cfg = run.config_from_env({"E2E_INSTALL": "helm", "E2E_IMAGE": IMAGE, "E2E_HELM": helm})
                return run.make_installer(cfg, Path(tmp))
            self.assertIsInstance(make("sdk"), incluster.HelmSdk)
            cli = make("/opt/helm/bin/helm")
            self.assertIsInstance(cli, incluster.HelmCli)
            self.assertNotIsInstance(cli, incluster.HelmSdk)
            install = cli.argv("install")
            self.assertEqual(install[:4], ["/opt/helm/bin/helm", "install", cli.release, str(incluster.CHART)])
            self.assertIn("--skip-crds", install)
            self.assertEqual(json.loads(Path(install[install.index("-f") + 1]).read_text()), cli.values())
            self.assertEqual(cli.argv("uninstall"), ["/opt/helm/bin/helm", "uninstall", cli.release, "-n",
                                                     cli.namespace])
            self.assertEqual(cli.tool()[1], "'/opt/helm/bin/helm' not found (E2E_HELM)")
            kustomize = run.make_installer(run.config_from_env(
                {"E2E_INSTALL": "kustomize", "E2E_IMAGE": IMAGE}), Path(tmp))
            self.assertEqual(kustomize.crds(), ["-k", str(incluster.CONFIG / "crd")])

    def test_bad_values_are_refused(self):
        for env in ({"E2E_LOCAL_WORKLOADS": "maybe"}, {"E2E_TIMEOUT": "soon"}, {"E2E_TIMEOUT": "0"},
                    {"E2E_NAMESPACE": "Bad_Name"}, {"E2E_NAMESPACE": "n" * 48},
                    {"E2E_NAMESPACE": "same", "E2E_OPERATOR_NAMESPACE": "same"},
                    {"E2E_DELETE_CRDS": "sometimes"}, {"E2E_RUN_ID": "UPPER"}):
            with self.assertRaises(run.ConfigError, msg=env):
                run.config_from_env(env)

    def test_seconds_accept_a_trailing_s(self):
        self.assertEqual(run.config_from_env({"E2E_STATUS_TIMEOUT": "90s"}).status_timeout, 90)

    def test_the_plan_labels_every_step_and_ends_with_cleanup(self):
        cfg = run.config_from_env({"E2E_RUN_ID": "abc123"})
        steps = run.plan(cfg, {"binary": "webhook-operator"})
        r = run.Run.__new__(run.Run)  # steps() only needs cfg, binary and installer
        r.cfg, r.binary, r.installer = cfg, Path("webhook-operator"), None
        self.assertEqual(len(steps), len(r.steps()) + 1)
        self.assertTrue(steps[-1][0].startswith("Cleanup"))
        text = json.dumps(steps)
        for flag in sum(run.REQUIRED_FLAGS.values(), []):
            self.assertIn(flag, text, "every flag the run passes appears in the plan")

    def test_the_in_cluster_plan_has_the_same_steps(self):
        local = run.plan(run.config_from_env({"E2E_RUN_ID": "abc123"}), {"binary": "webhook-operator"})
        cfg = run.config_from_env({"E2E_RUN_ID": "abc123", "E2E_INSTALL": "helm", "E2E_IMAGE": IMAGE,
                                   "E2E_HELM": "sdk"})
        with tempfile.TemporaryDirectory() as tmp:
            steps = run.plan(cfg, {"installer": run.make_installer(cfg, Path(tmp))})
        self.assertEqual(len(steps), len(local))
        self.assertEqual([t for t, _ in steps[4:]], [t for t, _ in local[4:]], "steps 5-12 are shared")
        text = json.dumps(steps)
        for words in ("Install NATS, the operator and a receiver", incluster.NATS_IMAGE, incluster.RECEIVER_IMAGE,
                      "kubectl port-forward", "helm-python-sdk", IMAGE, "closed port",
                      "http://e2e-receiver.e2e-abc123.svc:81/e2e-abc123/orders", "admin ingest",
                      "e2e-abc123-webhook-operator-controller-metrics:admin", "charts/webhook-operator/crds",
                      "app.kubernetes.io/instance=e2e-abc123"):
            self.assertIn(words, text)


class ObjectHelpersTest(unittest.TestCase):
    def obj(self, generation=2, observed=2, ready=("True", "Active", 2), **status):
        conditions = []
        if ready:
            conditions.append({"type": "Ready", "status": ready[0], "reason": ready[1],
                               "observedGeneration": ready[2], "message": "m"})
        return {"metadata": {"name": "orders", "generation": generation},
                "status": dict(status, observedGeneration=observed, conditions=conditions)}

    def test_ready_problem(self):
        self.assertIsNone(run.ready_problem(self.obj()))
        self.assertIsNone(run.ready_problem(self.obj(ready=("False", "EndpointNotFound", 2)), "False",
                                            "EndpointNotFound"))
        self.assertIn("does not exist", run.ready_problem(None))
        self.assertIn("no Ready", run.ready_problem(self.obj(ready=None)))
        self.assertIn("expected True", run.ready_problem(self.obj(ready=("False", "SecretNotFound", 2))))
        self.assertIn("expected False/EndpointNotFound",
                      run.ready_problem(self.obj(ready=("False", "InvalidPattern", 2)), "False", "EndpointNotFound"))
        self.assertIn("metadata.generation is 3", run.ready_problem(self.obj(generation=3)))
        self.assertIn("Ready observedGeneration 1", run.ready_problem(self.obj(ready=("True", "Active", 1))))

    def test_counters_default_to_zero(self):
        c = run.counters({"status": {"health": "Pending"}})
        self.assertEqual((c["health"], c["delivered"], c["failedAttempts"]), ("Pending", 0, 0))
        self.assertIn("health=None", run.describe_counters(None))
        described = run.describe_counters({"status": {"health": "Degraded", "failedAttempts": 2,
                                                      "lastFailure": {"reason": "ConnectError", "message": "refused"}}})
        self.assertIn("lastFailure=ConnectError: refused", described)

    def test_secret_key_reads_the_first_whsec_key(self):
        value = base64.b64encode(b"whsec_AAAA whsec_BBBB").decode()
        self.assertEqual(run.secret_key({"metadata": {"name": "s"}, "data": {"secret": value}}), "whsec_AAAA")
        with self.assertRaises(run.E2EFailure):
            run.secret_key({"metadata": {"name": "s"}, "data": {"other": value}})
        with self.assertRaises(run.E2EFailure):
            run.secret_key({"metadata": {"name": "s"}, "data": {"secret": base64.b64encode(b"plain").decode()}})

    def test_names_follow_the_operator(self):
        self.assertEqual(run.workload_name("acme"), "webhook-deliver-acme")
        self.assertEqual(run.delivery_consumer("acme", "a.b"), "deliver_acme_a_b")
        self.assertLessEqual(len(run.workload_name("n" * run.MAX_TENANT_NAMESPACE)), 63)


def good_workload(tenant="t1", opns="t1-operator", nats="nats://127.0.0.1:4222"):
    """The workload as the API server returns what workloads.rs builds (trimmed)."""
    name = f"webhook-deliver-{tenant}"
    labels = {"app.kubernetes.io/name": "webhook-deliver", "app.kubernetes.io/managed-by": "webhook-operator",
              "webhook-operator.io/tenant": tenant}

    def meta(ns, n):
        return {"name": n, "namespace": ns, "labels": dict(labels)}
    return {
        "Deployment": {"metadata": meta(opns, name), "spec": {"replicas": 0, "template": {"spec": {
            "serviceAccountName": name,
            "containers": [{"name": "deliver", "image": "webhook-operator:e2e",
                            "args": ["deliver", "--tenant", tenant, "--listen", "0.0.0.0:8080",
                                     "--log-format", "json", "--allow-private-networks"],
                            "env": [{"name": "NATS_URL", "value": nats},
                                    {"name": "POD_NAME",
                                     "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}}},
        "ServiceAccount": {"metadata": meta(opns, name)},
        "Role": {"metadata": meta(tenant, "webhook-operator-deliver"),
                 "rules": [{"apiGroups": [""], "resources": ["secrets", "configmaps"],
                            "verbs": ["get", "list", "watch"]}]},
        "RoleBinding": {"metadata": meta(tenant, "webhook-operator-deliver"),
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                    "name": "webhook-operator-deliver"},
                        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": opns}]},
    }


class WorkloadTest(unittest.TestCase):
    def problems(self, objects):
        return run.workload_problems("t1", "t1-operator", objects, "nats://127.0.0.1:4222", replicas=0,
                                     image="webhook-operator:e2e")

    def test_the_expected_workload_passes(self):
        self.assertEqual(self.problems(good_workload()), [])

    def test_each_deviation_is_named(self):
        cases = [
            (lambda w: w.update(Role=None), "Role t1/webhook-operator-deliver does not exist"),
            (lambda w: w["ServiceAccount"]["metadata"]["labels"].pop("webhook-operator.io/tenant"), "labels"),
            (lambda w: w["Deployment"]["spec"]["template"]["spec"]["containers"][0].update(args=["router"]),
             "expected `deliver --tenant t1"),
            (lambda w: w["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"][0].update(value="x"),
             "NATS_URL"),
            (lambda w: w["Deployment"]["spec"].update(replicas=1), "replicas 1"),
            (lambda w: w["Deployment"]["spec"]["template"]["spec"]["containers"][0].update(image="other:1"),
             "runs image 'other:1', expected 'webhook-operator:e2e'"),
            (lambda w: w["Role"]["rules"][0]["verbs"].append("delete"), "only get/list/watch"),
            (lambda w: w["Role"]["rules"].append({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}),
             "only get/list/watch"),
            (lambda w: w["RoleBinding"]["subjects"][0].update(namespace="elsewhere"), "binds"),
        ]
        for mutate, words in cases:
            objects = good_workload()
            mutate(objects)
            problems = self.problems(objects)
            self.assertTrue(any(words in p for p in problems), f"{words!r} not in {problems}")


class RoutesTest(unittest.TestCase):
    entry = {"tenant": "t1", "endpoints": [{"name": "orders", "url": "http://127.0.0.1:1/t1/orders"}],
             "routes": [{"subscription": "orders-paid", "endpoint": "orders",
                         "eventTypes": ["order.paid", "invoice.*"]}]}

    def test_expectations(self):
        self.assertIsNone(run.routes_problem(self.entry, "t1", "orders", "http://127.0.0.1:1/t1/orders",
                                             {"orders-paid": ["invoice.*", "order.paid"]}))
        self.assertIsNone(run.routes_problem(None, "t1"))
        self.assertIn("still holds", run.routes_problem(self.entry, "t1"))
        self.assertIn("no routes", run.routes_problem(None, "t1", "orders"))
        self.assertIn("not other", run.routes_problem(self.entry, "t1", "other"))
        self.assertIn("expected 'http://x'", run.routes_problem(self.entry, "t1", "orders", "http://x"))
        self.assertIn("expected {}", run.routes_problem(self.entry, "t1", "orders", routes={}))


class TextHelpersTest(unittest.TestCase):
    def test_metric_value_sums_matching_samples(self):
        text = "\n".join([
            "# TYPE webhook_events_unrouted counter",
            'webhook_events_unrouted_total{tenant="a"} 2',
            'webhook_events_unrouted_total{tenant="b"} 5',
            'webhook_events_unrouted_created{tenant="a"} 1.7e9',
            'webhook_events_unrouted_total{tenant="a",x="y \\"q\\""} 1 1700000000',
            "webhook_events_received_total 9",
            "# EOF",
        ])
        self.assertEqual(run.metric_value(text, "webhook_events_unrouted_total", {"tenant": "a"}), 3)
        self.assertEqual(run.metric_value(text, "webhook_events_unrouted_total"), 8)
        self.assertEqual(run.metric_value(text, "webhook_events_unrouted_total", {"tenant": "zzz"}), 0)
        self.assertEqual(run.metric_value(text, "webhook_events_received_total"), 9)

    def test_parse_table_splits_at_header_offsets(self):
        # kubectl pads each column to the widest cell; cells start at the header's offsets
        text = ("NAME     URL                           HEALTH    DELIVERED   FAILED   DEAD   AGE\n"
                "orders   http://127.0.0.1:1/t/orders   Healthy   3           0        0      2m\n")
        self.assertEqual(run.parse_table(text), [{"NAME": "orders", "URL": "http://127.0.0.1:1/t/orders",
                                                  "HEALTH": "Healthy", "DELIVERED": "3", "FAILED": "0",
                                                  "DEAD": "0", "AGE": "2m"}])
        widths = (9, 11, 29, 8, 3)  # kubectl pads every cell of a column to one width
        lines = [("NAME", "ENDPOINT", "EVENTS", "READY", "AGE"),
                 ("sub", "orders", '["order.paid","invoice.*"]', "True", "5s")]
        rows = run.parse_table("\n".join("".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines))
        self.assertEqual(rows[0]["EVENTS"], '["order.paid","invoice.*"]')
        self.assertEqual(run.parse_table(""), [])

    def test_missing_flags(self):
        help_text = "  --nats-url <NATS_URL>\n  --deliver-nats-url <URL>\n  --listen <LISTEN>\n"
        self.assertEqual(run.missing_flags(help_text, ["--nats-url", "--listen", "--deliver-nats-url"]), [])
        self.assertEqual(run.missing_flags("  --deliver-nats-url <URL>\n", ["--nats-url"]), ["--nats-url"])
        self.assertEqual(run.missing_flags("  --namespaces\n", ["--namespace"]), ["--namespace"])

    def test_read_deliveries_skips_a_partial_line(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "d.jsonl"
            self.assertEqual(run.read_deliveries(path), [])
            path.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c', encoding="utf-8")
            self.assertEqual([d["id"] for d in run.read_deliveries(path)], ["a", "b"])

    def test_free_ports_differ(self):
        ports = run.free_ports(6)
        self.assertEqual(len(set(ports)), 6)


class WaitTest(unittest.TestCase):
    def fake_clock(self):
        now = [0.0]
        return (lambda: now[0]), (lambda s: now.__setitem__(0, now[0] + s))

    def test_returns_the_value_once_the_problem_is_gone(self):
        clock, sleep = self.fake_clock()
        answers = iter([(None, "not yet"), (None, "still not"), (42, None)])
        self.assertEqual(run.wait_until("x", lambda: next(answers), 10, clock=clock, sleep=sleep), 42)

    def test_times_out_with_the_last_problem(self):
        clock, sleep = self.fake_clock()
        with self.assertRaisesRegex(run.E2EFailure, r"timed out after 5s waiting for the thing: last detail"):
            run.wait_until("the thing", lambda: (None, "last detail"), 5, clock=clock, sleep=sleep)

    def test_transient_errors_are_retried_and_failures_are_not(self):
        clock, sleep = self.fake_clock()
        calls = []

        def flaky():
            calls.append(1)
            if len(calls) < 3:
                raise run.KubectlError(["get", "x"], 1, "connection refused")
            return "done", None
        self.assertEqual(run.wait_until("x", flaky, 10, clock=clock, sleep=sleep), "done")

        def broken():
            raise run.E2EFailure("wrong")
        with self.assertRaisesRegex(run.E2EFailure, "^wrong$"):
            run.wait_until("x", broken, 10, clock=clock, sleep=sleep)

    def test_a_dead_process_ends_the_wait(self):
        clock, sleep = self.fake_clock()

        def alive():
            raise run.E2EFailure("controller exited")
        with self.assertRaisesRegex(run.E2EFailure, "controller exited"):
            run.wait_until("x", lambda: (None, "no"), 10, alive=alive, clock=clock, sleep=sleep)


class CrdSchemaTest(unittest.TestCase):
    """What the run applies passes the CRD's admission patterns (read from crds/)."""

    @classmethod
    def setUpClass(cls):
        text = (ROOT / "crds" / "webhook-operator.yaml").read_text(encoding="utf-8")
        cls.patterns = {}
        for field in ("url", "eventTypes", "timeout"):
            match = re.search(rf"\n( +){field}:\n(?:\1 .*\n)*?\1 +pattern: (\S+)\n", text)
            assert match, f"no pattern for {field} in the CRD"
            cls.patterns[field] = re.compile(match.group(2))

    def test_urls_event_types_and_durations(self):
        cfg = run.config_from_env({"E2E_RUN_ID": "abc123"})
        for url in (f"http://127.0.0.1:40000/{cfg.namespace}/{run.ENDPOINT}",):
            self.assertRegex(url, self.patterns["url"])
        for pattern in ("order.paid", "invoice.*", "order.refunded", "order.*"):
            self.assertRegex(pattern, self.patterns["eventTypes"])
        for value in [run.ENDPOINT_TIMEOUT] + [v for k, v in run.RETRY.items() if k != "maxAttempts"]:
            self.assertRegex(value, self.patterns["timeout"])

    def test_manifests(self):
        endpoint = run.endpoint_manifest("ns1", "orders", "http://127.0.0.1:1/ns1/orders")
        self.assertNotIn("secretRef", endpoint["spec"], "the run relies on the controller creating the Secret")
        self.assertEqual(endpoint["apiVersion"], "webhook-operator.io/v1alpha1")
        sub = run.subscription_manifest("ns1", "s", "orders", ["a.b"])
        self.assertEqual(sub["spec"], {"endpointRef": {"name": "orders"}, "eventTypes": ["a.b"]})


def _importable(*modules: str) -> bool:
    try:
        for module in modules:
            __import__(module)
    except ImportError:
        return False
    return True


@unittest.skipUnless(_importable("helm_python", "yaml"), "needs helm-python-sdk and pyyaml (make tools)")
class InstallTest(unittest.TestCase):
    """The install the in-cluster mode renders (the real chart and kustomize bases) and its checks."""

    NS, RELEASE, NATS = "e2e-abc123-operator", "e2e-abc123", "nats://e2e-nats.e2e-abc123-operator.svc:4222"

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.rendered = {}
        for kind in ("helm", "kustomize"):
            installer = incluster.installer(kind, "sdk", cls.NS, cls.RELEASE, IMAGE, cls.NATS, Path(cls.tmp.name),
                                            run.default_kubectl())
            cls.rendered[kind] = installer.render()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def problems(self, objects):
        return incluster.install_problems(objects, self.NS, self.RELEASE, IMAGE, self.NATS)

    def test_both_installs_fit_the_run(self):
        for kind, objects in self.rendered.items():
            self.assertEqual(self.problems(objects), [], kind)
            self.assertEqual(incluster.components(objects), {
                "controller": "e2e-abc123-webhook-operator-controller", "router": "e2e-abc123-webhook-operator-router",
                "admin": "e2e-abc123-webhook-operator-controller-metrics"}, kind)
            cluster_scoped = sorted(o["kind"] for o in objects if "namespace" not in o["metadata"])
            self.assertEqual(cluster_scoped, ["ClusterRole", "ClusterRoleBinding"], kind)

    def test_the_helm_values_reach_the_flags(self):
        controller = [o for o in self.rendered["helm"] if o["kind"] == "Deployment"
                      and o["metadata"]["name"].endswith("-controller")][0]
        c = controller["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(c["imagePullPolicy"], "IfNotPresent", "an image loaded with kind load is used")
        self.assertIn("--deliver-allow-private-networks", c["args"])
        self.assertIn("--deliver-replicas=1", c["args"])

    def test_each_deviation_is_named(self):
        def containers(objects, suffix):
            return [o for o in objects if o["kind"] == "Deployment"
                    and o["metadata"]["name"].endswith(suffix)][0]["spec"]["template"]["spec"]["containers"][0]

        def drop(flag, env):  # the chart passes flags, config/ environment variables
            def mutate(objects):
                c = containers(objects, "-controller")
                c["args"] = [a for a in c["args"] if not a.startswith(flag)]
                c["env"] = [e for e in c.get("env") or [] if e["name"] != env]
            return mutate
        cases = [
            (lambda o: containers(o, "-controller").update(image="other:1"), "the controller runs image 'other:1'"),
            (lambda o: containers(o, "-router").update(args=["router", "--nats-url=nats://x.y:1"]),
             "the router gets --nats-url (or NATS_URL) 'nats://x.y:1', expected"),
            (drop("--deliver-allow-private-networks", "DELIVER_ALLOW_PRIVATE_NETWORKS"),
             "--deliver-allow-private-networks (or DELIVER_ALLOW_PRIVATE_NETWORKS) None, expected 'true'"),
            (drop("--leader-election", "LEADER_ELECTION"), "--leader-election (or LEADER_ELECTION) None"),
            (drop("--deliver-image", "DELIVER_IMAGE"), "--deliver-image (or DELIVER_IMAGE) None"),
            (lambda o: containers(o, "-controller").update(env=[]), "POD_NAME/POD_NAMESPACE"),
            (lambda o: o[0]["metadata"].update(namespace="elsewhere"), "in namespace 'elsewhere'"),
            (lambda o: [x for x in o if x["kind"] == "ClusterRole"][0]["metadata"].update(labels={}),
             "not labelled app.kubernetes.io/instance=e2e-abc123"),
            (lambda o: o.append({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                                 "metadata": {"name": "x"}}), "must not carry the CRDs"),
            (lambda o: o.remove([x for x in o if x["metadata"]["name"].endswith("-router")
                                 and x["kind"] == "Deployment"][0]), "expected one Deployment named *-router"),
            (lambda o: [x for x in o if x["kind"] == "Service" and x["metadata"]["name"].endswith(
                "-controller-metrics")][0]["spec"].update(ports=[{"name": "http", "port": 80}]), "no port named"),
        ]
        for mutate, words in cases:
            for kind in ("helm", "kustomize"):
                objects = copy.deepcopy(self.rendered[kind])
                mutate(objects)
                problems = self.problems(objects)
                self.assertTrue(any(words in p for p in problems), f"{kind}: {words!r} not in {problems}")

    def test_setting_reads_flags_and_environment(self):
        c = {"args": ["controller", "--a=1", "--b", "2", "--c", "--d"], "env": [{"name": "E", "value": "5"},
                                                                               {"name": "F", "valueFrom": {}}]}
        self.assertEqual([incluster.setting(c, f, e) for f, e in (("--a", ""), ("--b", ""), ("--c", ""),
                                                                 ("--d", ""), ("--x", "E"), ("--x", "F"))],
                         ["1", "2", "true", "true", "5", None])

    def test_the_helm_binary_is_run_and_its_failures_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            helm = Path(tmp) / "helm"
            document = json.dumps(self.rendered["helm"][0])
            helm.write_text("#!/bin/sh\nif [ \"$1\" = template ]; then printf '%s\\n---\\n' '" + document +
                            "'; exit 0; fi\necho \"Error: INSTALLATION FAILED: $1 broke\" >&2; exit 1\n")
            helm.chmod(0o755)
            cli = incluster.installer("helm", str(helm), self.NS, self.RELEASE, IMAGE, self.NATS, Path(tmp), "kubectl")
            self.assertEqual(cli.render(), [self.rendered["helm"][0]])
            with self.assertRaisesRegex(incluster.InstallError, r"helm install e2e-abc123 .* exited 1: Error: "
                                                                r"INSTALLATION FAILED: install broke"):
                cli.install(None, Path(tmp) / "kubeconfig", 10)
            with self.assertRaisesRegex(incluster.InstallError, "uninstall broke"):
                cli.uninstall(None, Path(tmp) / "kubeconfig", 10)

    def test_a_broken_overlay_is_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            k = incluster.installer("kustomize", "", self.NS, self.RELEASE, IMAGE, self.NATS, Path(tmp),
                                    run.default_kubectl())
            with mock_attr(incluster, "CONFIG", Path(tmp) / "nowhere"):
                with self.assertRaisesRegex(incluster.InstallError, "kubectl kustomize .* failed: .*nowhere"):
                    k.render()


class mock_attr:
    def __init__(self, target, name, value):
        self.target, self.name, self.value = target, name, value

    def __enter__(self):
        self.old = getattr(self.target, self.name)
        setattr(self.target, self.name, self.value)

    def __exit__(self, *exc):
        setattr(self.target, self.name, self.old)


class HelperManifestsTest(unittest.TestCase):
    def manifests(self):
        labels = {run.RUN_LABEL: "abc123"}
        return (incluster.nats_manifests("e2e-abc123-operator", labels)
                + incluster.receiver_manifests("e2e-abc123", labels, incluster.receiver_script()))

    def test_they_are_valid_hardened_and_pinned(self):
        objects = self.manifests()
        self.assertEqual([o["kind"] for o in objects], ["Deployment", "Service", "ConfigMap", "Deployment", "Service"])
        for deployment in [o for o in objects if o["kind"] == "Deployment"]:
            pod = deployment["spec"]["template"]["spec"]
            selector = deployment["spec"]["selector"]["matchLabels"]
            self.assertLessEqual(selector.items(), deployment["spec"]["template"]["metadata"]["labels"].items())
            self.assertEqual(pod["securityContext"]["runAsNonRoot"], True)
            for c in pod["containers"]:
                self.assertIsNone(incluster.image_problem(c["image"]), c["image"])
                self.assertEqual(c["securityContext"]["readOnlyRootFilesystem"], True)
        service = objects[-1]
        self.assertEqual([(p["port"], p["targetPort"]) for p in service["spec"]["ports"]],
                         [(80, "http"), (81, incluster.RECEIVER_CLOSED_PORT)])
        self.assertEqual(incluster.receiver_urls("e2e-abc123", "/e2e-abc123/orders"),
                         ("http://e2e-receiver.e2e-abc123.svc/e2e-abc123/orders",
                          "http://e2e-receiver.e2e-abc123.svc:81/e2e-abc123/orders"))
        self.assertIsNone(incluster.script_problem(incluster.receiver_script()))
        self.assertIn("['yaml']", incluster.script_problem("import yaml\n"))

    @unittest.skipUnless(_importable("kubernetes_validate"), "needs kubernetes-validate (make tools)")
    def test_they_pass_the_kubernetes_schemas(self):
        import kubernetes_validate.utils as kv
        for obj in self.manifests():
            kv.validate(obj, kv.latest_version(), strict=True)

    def test_rollout_and_pod_summaries(self):
        deployment = {"metadata": {"name": "d", "generation": 2}, "spec": {"replicas": 2},
                      "status": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 2}}
        self.assertIn("1/2 replicas ready", incluster.rollout_problem(deployment))
        deployment["status"]["readyReplicas"] = 2
        self.assertIsNone(incluster.rollout_problem(deployment))
        deployment["metadata"]["generation"] = 3
        self.assertIn("not seen its current generation", incluster.rollout_problem(deployment))
        self.assertIn("does not exist", incluster.rollout_problem(None))
        pods = [{"metadata": {"name": "p"}, "status": {"phase": "Pending", "containerStatuses": [
            {"name": "c", "image": "i:1", "restartCount": 0,
             "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}],
            "conditions": [{"type": "PodScheduled", "status": "False", "message": "Insufficient cpu"}]}}]
        summary = incluster.pods_summary(pods)
        for words in ("pod p: Pending", "ErrImagePull not found", "kind load docker-image i:1", "Insufficient cpu"):
            self.assertIn(words, summary)
        self.assertEqual(incluster.pods_summary([]), "no pods")
        self.assertEqual(incluster.selector({"spec": {"selector": {"matchLabels": {"b": "2", "a": "1"}}}}), "a=1,b=2")


@unittest.skipUnless(_importable("standardwebhooks"), "needs standardwebhooks (make tools)")
class ReceiverTest(unittest.TestCase):
    """e2e/receiver.py as a real server; its lines verified as the run verifies them."""

    KEY = "whsec_" + base64.b64encode(b"e2e-receiver-test-key-32-bytes-x").decode()

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="e2e-receiver."))
        cls.procs = run.Processes(cls.tmp)
        cls.port = run.free_ports(1)[0]
        cls.procs.start("receiver", [sys.executable, "-u", str(incluster.RECEIVER_SCRIPT), "--port", str(cls.port)],
                        dict(os.environ))
        run.wait_until("the receiver", lambda: (None, run.port_problem(cls.port)), 20, interval=0.2,
                       alive=cls.procs.check_alive)
        cls.webhook = run.import_standardwebhooks().Webhook(cls.KEY)

    @classmethod
    def tearDownClass(cls):
        cls.procs.stop_all()
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def post(self, path, body, msg_id, timestamp=None, key=None, chunked=False):
        import http.client
        from datetime import datetime, timezone
        ts = int(timestamp if timestamp is not None else time.time())
        signer = run.import_standardwebhooks().Webhook(key or self.KEY)
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-event-type": "order.paid",
                   "webhook-signature": signer.sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body),
                   "Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        data = body.encode()
        if chunked:
            conn.request("POST", path, body=iter([data[:5], data[5:]]), headers=headers, encode_chunked=True)
        else:
            conn.request("POST", path, body=data, headers=headers)
        status = conn.getresponse().status
        conn.close()
        return status

    def lines(self, msg_id):
        log = (self.tmp / "receiver.log").read_text(encoding="utf-8")
        return [d for d in incluster.deliveries_from_log(log, self.webhook) if d["id"] == msg_id]

    def wait_line(self, msg_id):
        return run.wait_until(msg_id, lambda: (self.lines(msg_id), None if self.lines(msg_id) else "no line"), 10,
                              interval=0.1)

    def test_health(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5) as response:
            self.assertEqual(response.status, 200)

    def test_a_signed_delivery_verifies_with_body_path_and_type(self):
        body = json.dumps({"order": 1, "note": "ünïcode"})
        self.assertEqual(self.post("/t1/orders", body, "msg_good"), 204)
        (line,) = self.wait_line("msg_good")
        self.assertEqual((line["verified"], line["path"], line["eventType"], line["body"]),
                         (True, "/t1/orders", "order.paid", body), line)

    def test_a_chunked_body_is_read_whole(self):
        self.assertEqual(self.post("/t1/orders", '{"chunked": true}', "msg_chunked", chunked=True), 204)
        (line,) = self.wait_line("msg_chunked")
        self.assertTrue(line["verified"], line)

    def test_a_wrong_key_a_tampered_body_or_an_old_timestamp_do_not_verify(self):
        self.post("/t1/orders", "{}", "msg_wrong_key", key="whsec_" + base64.b64encode(b"x" * 32).decode())
        self.assertEqual(self.wait_line("msg_wrong_key")[0]["reason"], "no matching v1 signature")
        self.post("/t1/orders", "{}", "msg_old", timestamp=time.time() - 3600)
        self.assertIn("off the receiver's clock", self.wait_line("msg_old")[0]["reason"])
        line = {"kind": "delivery", "time": time.time(), "path": "/t1/orders", "body": "{}",
                "headers": {"webhook-id": "x", "webhook-timestamp": str(int(time.time())),
                            "webhook-signature": "v1,AAAA"}}
        tampered = incluster.deliveries_from_log(json.dumps(line) + "\nnot json\n", self.webhook)
        self.assertEqual([(d["verified"], d["reason"]) for d in tampered], [(False, "no matching v1 signature")])
        self.assertEqual(incluster.deliveries_from_log(json.dumps(line), None)[0]["reason"], "no signing key known yet")
        line["headers"].pop("webhook-signature")
        self.assertIn("missing", incluster.deliveries_from_log(json.dumps(line), self.webhook)[0]["reason"])


class DryRunTest(unittest.TestCase):
    def dry_run(self, env):
        import io
        from contextlib import redirect_stdout
        from unittest import mock
        out = io.StringIO()
        with mock.patch.dict(os.environ, env), redirect_stdout(out):
            for name in ("E2E_LOCAL_WORKLOADS", "E2E_NATS_URL", "E2E_NAMESPACE", "E2E_OPERATOR_NAMESPACE"):
                os.environ.pop(name, None)
            code = run.main(["--dry-run"])
        return code, out.getvalue()

    @unittest.skipUnless(_importable("helm_python", "yaml", "nats", "standardwebhooks"), "needs .tools (make tools)")
    def test_in_cluster_dry_runs_render_and_check_the_install(self):
        for install, words in (("helm", "helm (Helm SDK) renders"), ("kustomize", "kustomize renders")):
            code, out = self.dry_run({"E2E_INSTALL": install, "E2E_IMAGE": IMAGE, "E2E_HELM": "sdk",
                                      "E2E_RUN_ID": "dry001"})
            self.assertEqual(code, 0, out)
            self.assertIn(f"{words} 1 ClusterRole, 1 ClusterRoleBinding, 2 Deployment", out)
            self.assertIn("as the run expects", out)
            self.assertIn("[4] Install NATS, the operator and a receiver", out)
            self.assertIn("all offline checks passed", out)
        code, out = self.dry_run({"E2E_INSTALL": "helm", "E2E_IMAGE": "", "E2E_HELM": "sdk"})
        self.assertIn("a real run would stop at once: E2E_IMAGE is required", out)
        self.assertIn("rendering with webhook-operator:e2e-dry-run instead", out)


def _tools_present() -> bool:
    cfg = run.config_from_env({})
    binary = _binary()
    try:
        run._import_nats()
        run.import_standardwebhooks()
    except run.E2EFailure:
        return False
    return os.access(cfg.nats_server, os.X_OK) and os.access(binary, os.X_OK)


def _binary() -> Path:
    """E2E_BIN, else the debug build."""
    if os.environ.get("E2E_BIN"):
        return Path(os.environ["E2E_BIN"])
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "webhook-operator"


@unittest.skipUnless(_tools_present(), "needs .tools (make tools) and the binary (E2E_BIN or cargo build)")
class LocalPipelineTest(unittest.TestCase):
    """The run's NATS, metrics and receiver helpers against the real pipeline, without Kubernetes."""

    KEY = "whsec_" + base64.b64encode(b"e2e-helper-test-key-32-bytes-abc").decode()

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="e2e-helpers."))
        cls.procs = run.Processes(cls.tmp)
        try:
            cls._start()
        except BaseException:
            cls.procs.stop_all()
            raise

    @classmethod
    def _start(cls):
        cfg = run.config_from_env({})
        binary = _binary()
        nats_port, admin_port, receiver_port = run.free_ports(3)
        cls.nats_url = f"nats://127.0.0.1:{nats_port}"
        cls.admin = f"http://127.0.0.1:{admin_port}"
        cls.receiver_url = f"http://127.0.0.1:{receiver_port}/t1/orders"
        cls.deliveries = cls.tmp / "deliveries.jsonl"
        manifests = cls.tmp / "manifests"
        manifests.mkdir()
        cls.manifest = manifests / "t1.yaml"
        documents = [run.endpoint_manifest("t1", "orders", cls.receiver_url),
                     run.subscription_manifest("t1", "orders-paid", "orders", ["order.paid"]),
                     {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "orders-signing", "namespace": "t1"},
                      "stringData": {"secret": cls.KEY}}]
        # JSON is YAML: one document per `---`.
        cls.manifest.write_text("\n---\n".join(json.dumps(d) for d in documents) + "\n", encoding="utf-8")
        env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(run.TOOLS_PYTHON))
        cls.procs.start("nats", [cfg.nats_server, "-js", "-sd", str(cls.tmp / "js"), "-a", "127.0.0.1",
                                 "-p", str(nats_port)], env)
        run.wait_until("nats", lambda: (None, run.port_problem(nats_port)), 20, alive=cls.procs.check_alive)
        cls.procs.start("receiver", [sys.executable, "-u", str(ROOT / "scripts" / "sample_receiver.py"),
                                     "--port", str(receiver_port), "--log", str(cls.deliveries),
                                     "--secret", f"/t1/orders={cls.KEY}"], env)
        cls.procs.start("local", [str(binary), "local", "--manifests", str(manifests), "--nats-url", cls.nats_url,
                                  "--listen", f"127.0.0.1:{admin_port}", "--allow-private-networks"], env)

        def ready():
            status, body = run.http_get(cls.admin + "/readyz")
            return None, None if status == 200 else f"{status} {body}"
        run.wait_until("local mode", ready, 60, alive=cls.procs.check_alive)

    @classmethod
    def tearDownClass(cls):
        cls.procs.stop_all()
        import shutil
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def wait(self, what, probe, timeout=20):
        return run.wait_until(what, probe, timeout, interval=0.3, alive=self.procs.check_alive)

    def test_a_routes_publish_deliver_and_count(self):
        def routes():
            entry = run.nats_routes(self.nats_url, "t1")
            return None, run.routes_problem(entry, "t1", "orders", self.receiver_url, {"orders-paid": ["order.paid"]})
        self.wait("routes", routes)
        self.assertIsNone(run.nats_routes(self.nats_url, "nobody"))
        event_id = f"helper-{time.time_ns()}"
        first = run.nats_publish(self.nats_url, "t1", "order.paid", b'{"n":1}', event_id)
        again = run.nats_publish(self.nats_url, "t1", "order.paid", b'{"n":1}', event_id)
        self.assertEqual((first["duplicate"], again["duplicate"]), (False, True))
        run.nats_publish(self.nats_url, "t1", "order.shipped", b'{"n":2}', event_id + "-unrouted")

        def delivered():
            got = [d for d in run.read_deliveries(self.deliveries) if d["id"] == event_id]
            return got, None if got else "not yet"
        got = self.wait("the delivery", delivered)
        self.assertTrue(got[0]["verified"], got[0])
        self.assertEqual((got[0]["eventType"], got[0]["body"], got[0]["path"]), ("order.paid", '{"n":1}', "/t1/orders"))

        def unrouted():
            value = run.metric_value(run.http_get(self.admin + "/metrics")[1], run.UNROUTED_METRIC, {"tenant": "t1"})
            return value, None if value >= 1 else f"{value}"
        self.assertEqual(self.wait("unrouted", unrouted), 1)
        consumer = run.delivery_consumer("t1", "orders")
        self.assertTrue(run.nats_consumer_exists(self.nats_url, run.JOBS_STREAM, consumer))
        self.assertFalse(run.nats_consumer_exists(self.nats_url, run.JOBS_STREAM, "deliver_t1_nobody"))

    def test_b_removed_routes_read_as_none(self):
        self.manifest.unlink()
        self.wait("routes removed", lambda: (None, run.routes_problem(run.nats_routes(self.nats_url, "t1"), "t1")))

    def test_c_nats_trouble_is_transient(self):
        with self.assertRaises(run.TransientError):
            run.nats_routes(f"nats://127.0.0.1:{run.free_ports(1)[0]}", "t1")

    def test_d_a_dead_process_is_reported_with_its_log(self):
        procs = run.Processes(self.tmp)
        procs.start("quitter", [sys.executable, "-c", "print('bye'); raise SystemExit(3)"], dict(os.environ))
        time.sleep(1)
        with self.assertRaisesRegex(run.E2EFailure, r"(?s)quitter exited with code 3.*bye"):
            procs.check_alive()
        procs.stop_all()


if __name__ == "__main__":
    unittest.main()
