#!/usr/bin/env python3
"""Chaos run behind `make chaos`: the pipeline under faults, with a table of what arrived.

    PYTHONPATH=.tools/python python3 scripts/chaos.py

Starts, in a temporary folder and on loopback only: a nats-server with JetStream, TWO
`webhook-operator local --manifests DIR` processes on the same NATS and manifests (they share the
durable router consumer, the per-endpoint delivery consumers and the stats consumer: a scale-out of
routers and delivery workers without Kubernetes), and one HTTP receiver per endpoint that verifies
every delivery's Standard Webhooks signature and records its `webhook-id`.

A publisher sends a steady stream of events (JetStream publish, `Nats-Msg-Id` = a unique id,
retried with the same id until acknowledged) while faults are injected one phase after another.
After each phase it waits (bounded) until every acknowledged event reached every endpoint
subscribed to it, then counts: delivered, duplicates, lost, delivered to the wrong tenant, and the
recovery time (from the repair to the first delivery after it, and to the phase's last delivery).

Environment:
    WEBHOOK_OPERATOR_BIN  binary to run (default target/debug/webhook-operator)
    NATS_SERVER_BIN       nats-server (default .tools/bin/nats-server)
    CHAOS_QUICK=1         shorter phases (about a minute in all)
    CHAOS_RATE            events per second (default 100)
    CHAOS_CLUSTER=1       also a 3-server NATS cluster, --stream-replicas 3, one server killed
                          (CHAOS_CLUSTER=only: just that)
    CHAOS_KEEP=1          keep the temporary folder (logs) at the end
    CHAOS_WRITE=0         do not write the table into BENCHMARKS.md (a full, passing run does)

Exits non-zero when an event was lost, delivered to the wrong tenant, or a signature failed.
Every process it starts is killed at the end, also on failure or Ctrl-C.
"""

import asyncio
import base64
import json
import os
import random
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".tools", "python"))
import nats  # noqa: E402
import standardwebhooks  # noqa: E402

BIN = os.environ.get("WEBHOOK_OPERATOR_BIN") or os.path.join(ROOT, "target", "debug", "webhook-operator")
NATS_BIN = os.environ.get("NATS_SERVER_BIN") or os.path.join(ROOT, ".tools", "bin", "nats-server")
QUICK = os.environ.get("CHAOS_QUICK") == "1"
KEEP = os.environ.get("CHAOS_KEEP") == "1"
RATE = float(os.environ.get("CHAOS_RATE", "100"))
PHASE_SECONDS = 6.0 if QUICK else 15.0  # publishing time of one phase
DRAIN_LIMIT = 60.0  # seconds to wait for a phase's events after publishing stopped
ENDPOINT_TIMEOUT = 2.0  # seconds, the endpoints' `timeout` (slow receivers stall longer)

# Tenants (namespaces) and their endpoints: name -> subscribed patterns. The same endpoint name in
# two tenants ("orders") makes a cross-tenant mix-up visible.
TENANTS = {
    "acme": {"orders": ["order.*"], "billing": ["order.paid", "invoice.>"]},
    "globex": {"orders": ["order.*"]},
    "initech": {"audit": ["order.>", "invoice.>"]},
}
EVENT_TYPES = ["order.paid", "order.created", "invoice.created", "invoice.line.added", "user.signed_up"]


def matches(pattern, event_type):
    p, t = pattern.split("."), event_type.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(t) > i
        if i >= len(t) or (token != "*" and token != t[i]):
            return False
    return len(p) == len(t)


def subscribers(namespace, event_type):
    return [ep for ep, pats in TENANTS[namespace].items() if any(matches(p, event_type) for p in pats)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- receivers ------------------------------------------------------------------------------------

class Ledger:
    """Every verified delivery: (receiver namespace, endpoint) -> webhook-id -> count, and times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = defaultdict(Counter)
        self.wrong_tenant = []  # (receiver, webhook-id) whose event belongs to another tenant
        self.bad_signatures = 0
        self.times = []  # monotonic time of every verified delivery

    def record(self, receiver, webhook_id):
        now = time.monotonic()
        with self.lock:
            self.counts[receiver][webhook_id] += 1
            self.times.append(now)

    def misdelivered(self, receiver, webhook_id):
        with self.lock:
            self.wrong_tenant.append((receiver, webhook_id))

    def first_after(self, moment):
        with self.lock:
            return next((t for t in self.times if t >= moment), None)

    def longest_gap(self, start, end):
        """The longest time without any delivery between start and end."""
        with self.lock:
            inside = [t for t in self.times if start <= t <= end]
        points = [start] + inside + [end]
        return max(b - a for a, b in zip(points, points[1:]))


class ReceiverHandler(socketserver.StreamRequestHandler):
    """A minimal HTTP/1.1 server (keep-alive) whose behaviour the chaos run switches per phase."""

    def handle(self):
        server = self.server
        while True:
            try:
                request_line = self.rfile.readline(65537)
            except OSError:
                return
            if not request_line:
                return
            headers = {}
            while True:
                line = self.rfile.readline(65537)
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            mode = server.mode
            if mode == "reset":  # abortive close: the client sees a connection reset
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if mode == "garbage":
                self.wfile.write(bytes(random.getrandbits(8) for _ in range(64)) + b"\r\n\r\n")
                return
            if mode == "slow":  # slowloris: a status line and a header, then a stall past the timeout
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
                self.wfile.flush()
                time.sleep(ENDPOINT_TIMEOUT + 1.5)
                return
            if mode == "hang":  # never answers; the connection is dropped when the fault ends
                while server.mode == "hang":
                    time.sleep(0.1)
                return
            webhook_id = headers.get("webhook-id", "")
            try:
                event_namespace = json.loads(body)["ns"]
            except Exception:  # noqa: BLE001
                event_namespace = "?"
            if event_namespace != server.receiver[0]:  # counted whatever its signature
                server.ledger.misdelivered(server.receiver, webhook_id)
            try:
                server.verifier.verify(body, headers)
            except Exception:  # noqa: BLE001 - any failure means "not verified"
                with server.ledger.lock:
                    server.ledger.bad_signatures += 1
                self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                continue
            server.ledger.record(server.receiver, webhook_id)
            self.wfile.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            self.wfile.flush()


class Receiver(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, receiver, secret, ledger):
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.receiver = receiver
        self.verifier = standardwebhooks.Webhook(secret)
        self.ledger = ledger
        self.mode = "ok"
        threading.Thread(target=self.serve_forever, daemon=True).start()


# --- processes -------------------------------------------------------------------------------------

class Processes:
    def __init__(self, work):
        self.work = work
        self.running = {}  # name -> Popen

    def start(self, name, args, env=None):
        logfile = open(os.path.join(self.work, f"{name}.log"), "ab")
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                                   env={**os.environ, "NO_COLOR": "1", **(env or {})}, start_new_session=True)
        logfile.close()
        self.running[name] = process
        return process

    def kill(self, name):
        process = self.running.pop(name, None)
        if process and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def kill_all(self):
        for name in list(self.running)[::-1]:
            self.kill(name)

    def tail(self, name, lines=20):
        try:
            with open(os.path.join(self.work, f"{name}.log"), "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""


def wait_until(what, check, timeout=30.0, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except Exception:  # noqa: BLE001
        return False


class Pipeline:
    """nats-server(s) and two `webhook-operator local` processes."""

    def __init__(self, procs, manifests, cluster=False):
        self.procs = procs
        self.manifests = manifests
        self.cluster = cluster
        n = 3 if cluster else 1
        self.store_prefix = "cluster-js" if cluster else "js"  # never a store of the single-server run
        self.nats_ports = [free_port() for _ in range(n)]
        self.route_ports = [free_port() for _ in range(n)]
        self.monitor_ports = [free_port() for _ in range(n)]
        self.admin_ports = [free_port(), free_port()]
        self.nats_urls = [f"nats://127.0.0.1:{p}" for p in self.nats_ports]
        # One seed URL: src/nats.rs hands `--nats-url a,b,c` to async-nats as one address, which
        # fails to parse. The client learns the cluster's other servers from the seed's INFO.
        self.nats_url = self.nats_urls[0]

    def start_nats(self, i):
        args = [NATS_BIN, "-js", "-sd", os.path.join(self.procs.work, self.store_prefix + str(i)), "-p", str(self.nats_ports[i]),
                "-a", "127.0.0.1"]
        process = self.procs.start(f"nats{i}", args)
        wait_until(f"nats{i} to listen", lambda: port_open(self.nats_ports[i]), process=process)

    def start_operator(self, i):
        args = [BIN, "local", "--manifests", self.manifests, "--nats-url", self.nats_url,
                "--listen", f"127.0.0.1:{self.admin_ports[i]}", "--allow-private-networks",
                "--circuit-probe-interval", "1s"]
        if self.cluster:
            args += ["--stream-replicas", "3"]
        process = self.procs.start(f"operator{i}", args)
        wait_until(f"operator{i} /readyz", lambda: http_ok(f"http://127.0.0.1:{self.admin_ports[i]}/readyz"),
                   timeout=60, process=process)

    def start(self):
        if self.cluster:
            for i in range(3):
                self._start_nats_nowait(i)
            for i in range(3):
                wait_until(f"nats{i} JetStream /healthz",
                           lambda i=i: http_ok(f"http://127.0.0.1:{self.monitor_ports[i]}/healthz"), timeout=60)
        else:
            self.start_nats(0)
        for i in range(2):
            self.start_operator(i)

    def _start_nats_nowait(self, i):
        args = [NATS_BIN, "-js", "-sd", os.path.join(self.procs.work, self.store_prefix + str(i)), "-p", str(self.nats_ports[i]),
                "-a", "127.0.0.1", "-m", str(self.monitor_ports[i]), "-n", f"n{i}", "--cluster_name", "chaos",
                "--cluster", f"nats://127.0.0.1:{self.route_ports[i]}",
                "--routes", ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i)]
        return self.procs.start(f"nats{i}", args)

    def start_nats_cluster_member(self, i):
        process = self._start_nats_nowait(i)
        wait_until(f"nats{i} to listen", lambda: port_open(self.nats_ports[i]), process=process)


# --- publisher -------------------------------------------------------------------------------------

class Publisher:
    """Publishes events at a steady rate from its own thread; an event counts once JetStream acked it."""

    def __init__(self, nats_url):
        self.nats_url = nats_url
        self.loop = asyncio.new_event_loop()
        self.acked = []  # (namespace, event type, id)
        self.lock = threading.Lock()
        self.failures = 0
        self.seq = 0
        self.nc = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._connect(), self.loop).result(timeout=15)

    async def _connect(self):
        async def quiet(*_args):  # NATS restarts are the point of the run, not errors to print
            pass

        self.nc = await nats.connect(self.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                     connect_timeout=2, error_cb=quiet, disconnected_cb=quiet,
                                     reconnected_cb=quiet, closed_cb=quiet)
        self.js = self.nc.jetstream()

    async def _publish_one(self, phase, stop_at):
        self.seq += 1
        namespace = random.choice(list(TENANTS))
        event_type = random.choice(EVENT_TYPES)
        event_id = f"{namespace}-{phase}-{self.seq}"
        body = json.dumps({"ns": namespace, "type": event_type, "id": event_id}).encode()
        headers = {"Nats-Msg-Id": event_id, "Content-Type": "application/json"}
        while True:  # retried with the same id: the stream's deduplication makes that safe
            try:
                await self.js.publish(f"events.{namespace}.{event_type}", body, headers=headers, timeout=2)
                with self.lock:
                    self.acked.append((namespace, event_type, event_id))
                return
            except Exception:  # noqa: BLE001 - NATS down or restarting: try again
                self.failures += 1
                if time.monotonic() > stop_at + 60:
                    return  # never acknowledged: not counted as sent
                await asyncio.sleep(0.2)

    async def _run(self, phase, seconds):
        start = time.monotonic()
        stop_at = start + seconds
        pending = set()
        n = 0
        while time.monotonic() < stop_at:
            pending.add(asyncio.ensure_future(self._publish_one(phase, stop_at)))
            pending = {t for t in pending if not t.done()}
            n += 1
            delay = start + n / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if pending:
            await asyncio.gather(*pending)

    def run(self, phase, seconds):
        """Starts publishing for `seconds`; returns a future for its end."""
        return asyncio.run_coroutine_threadsafe(self._run(phase, seconds), self.loop)

    def close(self):
        try:
            asyncio.run_coroutine_threadsafe(self.nc.close(), self.loop).result(timeout=5)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)


# --- manifests -------------------------------------------------------------------------------------

def write_manifests(directory, receivers, secrets):
    os.makedirs(directory)
    for namespace, endpoints in TENANTS.items():
        docs = []
        for endpoint, patterns in endpoints.items():
            port = receivers[(namespace, endpoint)].server_address[1]
            docs.append(f"""apiVersion: webhook-operator.io/v1alpha1
kind: WebhookEndpoint
metadata: {{name: {endpoint}, namespace: {namespace}}}
spec:
  url: http://127.0.0.1:{port}/{namespace}/{endpoint}
  timeout: {ENDPOINT_TIMEOUT:g}s
  maxInFlight: 20
  retry: {{maxAttempts: 1000, initialBackoff: 200ms, maxBackoff: 2s, maxAge: 1h}}
""")
            docs.append(f"""apiVersion: webhook-operator.io/v1alpha1
kind: EventSubscription
metadata: {{name: {endpoint}-events, namespace: {namespace}}}
spec:
  endpointRef: {{name: {endpoint}}}
  eventTypes: {json.dumps(patterns)}
""")
            docs.append(f"""apiVersion: v1
kind: Secret
metadata: {{name: {endpoint}-signing, namespace: {namespace}}}
stringData:
  secret: {secrets[(namespace, endpoint)]}
""")
        with open(os.path.join(directory, f"{namespace}.yaml"), "w", encoding="utf-8") as f:
            f.write("---\n".join(docs))


# --- phases ----------------------------------------------------------------------------------------

def evaluate(name, publisher, ledger, first, start, pub_done_at, repair_at):
    """Waits (bounded) for the phase's events to reach every subscriber, then counts; a table row."""
    with publisher.lock:
        events = publisher.acked[first:]
    expected = [((ns, ep), event_id) for ns, event_type, event_id in events for ep in subscribers(ns, event_type)]

    def missing():
        with ledger.lock:
            return sum(1 for receiver, event_id in expected if ledger.counts[receiver][event_id] == 0)

    deadline = time.monotonic() + DRAIN_LIMIT
    while missing() and time.monotonic() < deadline:
        time.sleep(0.25)
    all_in_at = time.monotonic()
    time.sleep(1.0)  # late duplicates
    with ledger.lock:
        delivered = sum(1 for receiver, event_id in expected if ledger.counts[receiver][event_id] > 0)
        duplicates = sum(ledger.counts[receiver][event_id] - 1 for receiver, event_id in expected
                         if ledger.counts[receiver][event_id] > 1)
        ids = {event_id for _, _, event_id in events}
        wrong = sum(1 for _, event_id in ledger.wrong_tenant if event_id in ids)
    lost = len(expected) - delivered
    recovery = drained = "-"
    if repair_at is not None:
        first_after = ledger.first_after(repair_at)
        recovery = f"{first_after - repair_at:.1f}" if first_after else "never"
    if not lost:
        drained = f"{max(0.0, all_in_at - pub_done_at):.1f}"
    gap = f"{ledger.longest_gap(start, pub_done_at):.1f}"
    return [name, len(events), len(expected), delivered, duplicates, lost, wrong, gap, recovery, drained]


def run_phase(name, publisher, ledger, fault, repair):
    """Publishes for PHASE_SECONDS; injects `fault` after a third of it, `repair` after two thirds."""
    log(f"phase: {name}")
    with publisher.lock:
        first = len(publisher.acked)
    start = time.monotonic()
    done = publisher.run(name.split(" ")[0], PHASE_SECONDS)
    repair_at = None
    if fault:
        time.sleep(PHASE_SECONDS / 3)
        fault()
        time.sleep(PHASE_SECONDS / 3)
        repair_at = time.monotonic()
        repair()
    done.result(timeout=PHASE_SECONDS + 120)
    return evaluate(name, publisher, ledger, first, start, time.monotonic(), repair_at)


HEADER = ["fault", "events sent", "deliveries expected", "delivered", "duplicates", "lost", "wrong tenant",
          "longest gap s", "recovery s", "drained s"]


def table(rows):
    widths = [max(len(str(r[i])) for r in rows + [HEADER]) for i in range(len(HEADER))]

    def line(r):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"

    return "\n".join([line(HEADER), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


START, END = "<!-- chaos:start -->", "<!-- chaos:end -->"


def write_benchmarks(summary, text):
    """Replaces (or appends) the reliability section of BENCHMARKS.md after a full, passing run."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    try:
        with open(path, encoding="utf-8") as f:
            current = f.read()
    except FileNotFoundError:
        current = "# Benchmarks\n"
    command = "make chaos" + (f" CHAOS_CLUSTER={os.environ['CHAOS_CLUSTER']}" if os.environ.get("CHAOS_CLUSTER") else "")
    section = f"""{START}
## Reliability under faults (chaos run)

Command: `{command}` (runs `scripts/chaos.py`), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {os.cpu_count()} cores,
shared with other work (load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}), debug binary. {summary}.
Each phase publishes at a steady rate (JetStream, unique `Nats-Msg-Id`, retried with the same id until
acknowledged); the fault starts a third into the phase and is repaired at two thirds. Then the run waits
(at most {DRAIN_LIMIT:g} s) until every acknowledged event reached every endpoint subscribed to it. Receivers verify
every signature (`standardwebhooks`) and count by `webhook-id`. *deliveries expected*: (event, subscribed
endpoint) pairs; *lost*: pairs never delivered; *duplicates*: extra deliveries of a pair (at-least-once, same
`webhook-id`); *wrong tenant*: deliveries of another tenant's event; *longest gap*: the longest time without any
delivery while publishing; *recovery*: from the repair to the next delivery; *drained*: from the end of
publishing until everything was delivered. Endpoints: `timeout: {ENDPOINT_TIMEOUT:g}s`, backoff 200 ms to 2 s, 1,000
attempts; `--circuit-probe-interval 1s`. With one process killed the other carries on (recovery 0);
the jobs the killed one held come back after their ack deadline. The cluster rows (`CHAOS_CLUSTER=1`) run
on 3 nats-servers with `--stream-replicas 3` and kill the server both processes are connected to.

{text}
{END}
"""
    start, end = current.find(START), current.find(END)
    if start != -1 and end > start:
        updated = current[:start] + section + current[end + len(END):].lstrip("\n")
    else:
        updated = current.rstrip() + "\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(updated)
    print(f"updated {path}")


def successes(admin_port):
    """Successful delivery attempts this process made (its /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("webhook_delivery_attempts_total{") and 'result="success"' in line)


def chaos(procs, cluster):
    ledger = Ledger()
    secrets, receivers = {}, {}
    for namespace, endpoints in TENANTS.items():
        for endpoint in endpoints:
            key = "whsec_" + base64.b64encode(os.urandom(24)).decode()
            secrets[(namespace, endpoint)] = key
            receivers[(namespace, endpoint)] = Receiver((namespace, endpoint), key, ledger)
    manifests = os.path.join(procs.work, "manifests-cluster" if cluster else "manifests")
    write_manifests(manifests, receivers, secrets)

    pipeline = Pipeline(procs, manifests, cluster=cluster)
    log(f"starting {'a 3-server NATS cluster' if cluster else 'nats-server'} and two webhook-operator local processes")
    pipeline.start()
    publisher = Publisher(pipeline.nats_urls)
    rows = []

    def set_mode(mode):
        for receiver in receivers.values():
            receiver.mode = mode

    try:
        if cluster:
            rows.append(run_phase("cluster (R3): none (baseline)", publisher, ledger, None, None))
            rows.append(run_phase("cluster (R3): kill -9 the operators' nats-server, restart", publisher, ledger,
                                  lambda: procs.kill("nats0"), lambda: pipeline.start_nats_cluster_member(0)))
            return rows, ledger
        rows.append(run_phase("none (baseline)", publisher, ledger, None, None))
        shares = [successes(pipeline.admin_ports[i]) for i in range(2)]
        log(f"successful attempts per process after the baseline: {shares[0]:g} / {shares[1]:g}")
        if min(shares) == 0:
            raise RuntimeError("one of the two processes delivered nothing: no scale-out")
        rows.append(run_phase("kill -9 one operator, restart", publisher, ledger,
                              lambda: procs.kill("operator0"), lambda: pipeline.start_operator(0)))
        rows.append(run_phase("kill -9 both operators, restart", publisher, ledger,
                              lambda: (procs.kill("operator0"), procs.kill("operator1")),
                              lambda: (pipeline.start_operator(0), pipeline.start_operator(1))))
        rows.append(run_phase("kill -9 nats-server, restart", publisher, ledger,
                              lambda: procs.kill("nats0"), lambda: pipeline.start_nats(0)))
        for mode, label in [("reset", "receivers reset connections"),
                            ("slow", "receivers stall after headers (slowloris)"),
                            ("garbage", "receivers answer non-HTTP bytes"),
                            ("hang", "receivers hang")]:
            rows.append(run_phase(label, publisher, ledger, lambda m=mode: set_mode(m), lambda: set_mode("ok")))
        return rows, ledger
    finally:
        publisher.close()
        for receiver in receivers.values():
            receiver.mode = "ok"
            receiver.shutdown()


def main():
    for path, what in [(BIN, "WEBHOOK_OPERATOR_BIN"), (NATS_BIN, "NATS_SERVER_BIN")]:
        if not os.access(path, os.X_OK):
            sys.exit(f"chaos: {path} is not an executable ({what}); run `make build` / `make tools`")
    work = tempfile.mkdtemp(prefix="webhook-chaos.")
    procs = Processes(work)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    ok = False
    try:
        all_rows = []
        ledger_problems = 0
        runs = {"1": [False, True], "only": [True]}.get(os.environ.get("CHAOS_CLUSTER", ""), [False])
        for cluster in runs:
            rows, ledger = chaos(procs, cluster)
            procs.kill_all()
            all_rows += rows
            ledger_problems += ledger.bad_signatures + len(ledger.wrong_tenant)
            if ledger.bad_signatures:
                log(f"{ledger.bad_signatures} deliveries failed signature verification")
        summary = (f"{RATE:g} events/s, {PHASE_SECONDS:g} s of publishing per phase, 3 tenants, 4 endpoints, "
                   f"2 `webhook-operator local` processes sharing the consumers; {time.monotonic() - started:.0f} s in all")
        text = table(all_rows)
        print(f"\nChaos run: {summary}\n\n{text}\n")
        lost = sum(r[5] for r in all_rows)
        wrong = sum(r[6] for r in all_rows)
        ok = lost == 0 and wrong == 0 and ledger_problems == 0
        print("PASSED: nothing lost, nothing misdelivered" if ok else
              f"FAILED: {lost} lost, {wrong} to the wrong tenant, {ledger_problems} bad signatures or misdeliveries")
        if ok and not QUICK and os.environ.get("CHAOS_WRITE", "1") == "1":
            write_benchmarks(summary, text)
    except BaseException as error:  # noqa: BLE001 - report, show logs, clean up
        if not isinstance(error, SystemExit):
            print(f"chaos: {type(error).__name__}: {error}", file=sys.stderr)
    finally:
        if not ok:
            for name in sorted(os.listdir(work)):
                if name.endswith(".log"):
                    print(f"\n--- last lines of {name} ---\n{procs.tail(name[:-4])}", file=sys.stderr)
        procs.kill_all()
        if KEEP:
            print(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
