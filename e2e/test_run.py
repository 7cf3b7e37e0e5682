"""Tests of e2e/run.py that need no cluster.

    PYTHONPATH=.tools/python python3 -m unittest discover -s e2e -v     (or: python3 -m pytest e2e)

The pure helpers are tested directly. LocalPipelineTest checks the NATS, metrics and receiver
helpers against the real pipeline (`webhook-operator local`, which publishes routes to the same
bucket the controller does) and the real sample receiver; it is skipped when nats-server or the
debug binary is missing (make tools; cargo build).
"""

import base64
import json
import os
import re
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

ROOT = run.ROOT


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

    def test_default_mode_and_reserved_installs_fail_fast_with_a_hint(self):
        for env, words in (({}, "E2E_LOCAL_WORKLOADS=1"),
                           ({"E2E_INSTALL": "helm", "E2E_LOCAL_WORKLOADS": "1"}, "reserved"),
                           ({"E2E_INSTALL": "kustomize"}, "does not exist yet"),
                           ({"E2E_INSTALL": "terraform"}, "unknown")):
            problem = run.mode_problem(run.config_from_env(env))
            self.assertIsNotNone(problem, env)
            self.assertIn(words, problem)

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
        r = run.Run.__new__(run.Run)  # steps() only needs cfg and binary
        r.cfg, r.binary = cfg, Path("webhook-operator")
        self.assertEqual(len(steps), len(r.steps()) + 1)
        self.assertTrue(steps[-1][0].startswith("Cleanup"))
        text = json.dumps(steps)
        for flag in sum(run.REQUIRED_FLAGS.values(), []):
            self.assertIn(flag, text, "every flag the run passes appears in the plan")


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
            "containers": [{"name": "deliver", "args": ["deliver", "--tenant", tenant, "--listen", "0.0.0.0:8080",
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
        return run.workload_problems("t1", "t1-operator", objects, "nats://127.0.0.1:4222")

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


def _tools_present() -> bool:
    cfg = run.config_from_env({})
    binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "webhook-operator"
    try:
        run._import_nats()
        run.import_standardwebhooks()
    except run.E2EFailure:
        return False
    return os.access(cfg.nats_server, os.X_OK) and os.access(binary, os.X_OK)


@unittest.skipUnless(_tools_present(), "needs .tools (make tools) and target/debug/webhook-operator (cargo build)")
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
        binary = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "webhook-operator"
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
