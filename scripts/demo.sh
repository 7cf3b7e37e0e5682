#!/usr/bin/env bash
# The demo behind `make run`: the whole pipeline on this machine, no Kubernetes needed.
#
#   NATS JetStream (temporary) <- webhook-operator local --manifests config/samples
#                                    -> signed POSTs -> scripts/sample_receiver.py on :9000
#
# Publishes a few events for the two sample tenants (HTTP ingest and straight to NATS), waits
# until they are delivered and verified, and prints what happened. Exits non-zero if they are
# not. Everything it starts is stopped and its temporary folder removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
SAMPLES=$ROOT/config/samples
RECEIVER_PORT=9000          # fixed: the sample manifests point at it
TIMEOUT=${DEMO_TIMEOUT:-30} # seconds to wait for each stage
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/webhook-operator
export PYTHONPATH=$ROOT/.tools/python${PYTHONPATH:+:$PYTHONPATH}

if [[ -t 1 ]]; then BOLD=$'\033[1m' GREEN=$'\033[32m' RED=$'\033[31m' RESET=$'\033[0m'; else BOLD='' GREEN='' RED='' RESET=''; fi
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }

# --- processes and clean-up ---------------------------------------------------------------------
WORK=""
PIDS=()
NAMES=()

start() { # start NAME LOGFILE CMD...: runs CMD in the background, remembers its pid
    local name=$1 log=$2
    shift 2
    "$@" </dev/null >"$log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
}

show_logs() {
    [[ -n $WORK && -d $WORK ]] || return 0
    local name log
    for name in operator receiver nats; do
        log=$WORK/$name.log
        [[ -s $log ]] || continue
        printf '\n--- last lines of %s ---\n' "$name.log" >&2
        tail -n "$([[ $name == nats ]] && echo 8 || echo 25)" "$log" >&2
    done
}

fail() {
    printf '\n%sdemo FAILED: %s%s\n' "$RED" "$*" "$RESET" >&2
    show_logs
    exit 1
}

cleanup() {
    local rc=$? i pid waited
    trap - EXIT INT TERM
    # Stop in reverse order of start (operator before NATS), politely first.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for ((waited = 0; waited < 50; waited++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "demo: ${NAMES[i]} (pid $pid) did not stop; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    [[ -n $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

alive() { kill -0 "${PIDS[$1]}" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for WHAT PROC_INDEX CMD...: until CMD succeeds, the process dies, or TIMEOUT
    local what=$1 index=$2 deadline=$((SECONDS + TIMEOUT))
    shift 2
    until "$@"; do
        alive "$index" || fail "${NAMES[index]} exited while waiting for $what"
        ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for $what"
        sleep 0.2
    done
}

# --- 1. build and tools -------------------------------------------------------------------------
if port_open "$RECEIVER_PORT"; then
    printf '%sdemo: port %s is already in use.%s The sample manifests deliver to http://127.0.0.1:%s,\n' \
        "$RED" "$RECEIVER_PORT" "$RESET" "$RECEIVER_PORT" >&2
    echo "so the demo's receiver must listen there: stop whatever listens on it and retry." >&2
    exit 1
fi
say "Building webhook-operator (debug)"
cargo build --bin webhook-operator
say "Installing helper tools into .tools/"
bash scripts/tools.sh

WORK=$(mktemp -d "${TMPDIR:-/tmp}/webhook-operator-demo.XXXXXX")
ports=$(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
read -r NATS_PORT ADMIN_PORT <<<"$ports"
ADMIN=http://127.0.0.1:$ADMIN_PORT
NATS_URL=nats://127.0.0.1:$NATS_PORT

# --- 2. NATS, receiver, operator ----------------------------------------------------------------
say "Starting NATS JetStream on $NATS_URL"
start nats-server "$WORK/nats.log" "$ROOT/.tools/bin/nats-server" -js -sd "$WORK/jetstream" -p "$NATS_PORT" -a 127.0.0.1
NATS_I=$((${#PIDS[@]} - 1))
wait_for "NATS to accept connections" "$NATS_I" port_open "$NATS_PORT"

say "Starting the sample receiver on http://127.0.0.1:$RECEIVER_PORT"
secret_in() { # the whsec_ key in a sample file (one Secret per file)
    sed -n 's/^ *secret: *\(whsec_[A-Za-z0-9+/=]*\) *$/\1/p' "$1" | head -n 1
}
ACME_SECRET=$(secret_in "$SAMPLES/acme.yaml")
GLOBEX_SECRET=$(secret_in "$SAMPLES/globex.yaml")
[[ -n $ACME_SECRET && -n $GLOBEX_SECRET ]] || fail "no whsec_ secret found in $SAMPLES/acme.yaml or globex.yaml"
DELIVERIES=$WORK/deliveries.jsonl
start receiver "$WORK/receiver.log" python3 -u "$ROOT/scripts/sample_receiver.py" --port "$RECEIVER_PORT" \
    --secret "/acme/orders-app=$ACME_SECRET" --secret "/globex/billing=$GLOBEX_SECRET" --log "$DELIVERIES"
RECEIVER_I=$((${#PIDS[@]} - 1))
wait_for "the receiver to listen" "$RECEIVER_I" curl -sf -o /dev/null "http://127.0.0.1:$RECEIVER_PORT/healthz"

say "Starting webhook-operator local (admin API on $ADMIN)"
echo "    $BIN local --manifests config/samples --nats-url $NATS_URL --listen 127.0.0.1:$ADMIN_PORT --allow-private-networks"
start webhook-operator "$WORK/operator.log" env NO_COLOR=1 "$BIN" local --manifests "$SAMPLES" --nats-url "$NATS_URL" \
    --listen "127.0.0.1:$ADMIN_PORT" --allow-private-networks
OPERATOR_I=$((${#PIDS[@]} - 1))
wait_for "GET /readyz to answer 200" "$OPERATOR_I" curl -sf -o /dev/null "$ADMIN/readyz"
echo "    ready"

# --- 3. events ----------------------------------------------------------------------------------
ANSWER=""
ingest() { # ingest NAMESPACE EVENT_TYPE PAYLOAD [IDEMPOTENCY_KEY]: POSTs, prints and keeps the answer
    local args=(-sS --fail-with-body -X POST -H 'content-type: application/json' --data "$3")
    [[ -n ${4:-} ]] && args+=(-H "idempotency-key: $4")
    ANSWER=$(curl "${args[@]}" "$ADMIN/v1/events/$1/$2") || fail "ingest of $1 $2 was refused: $ANSWER"
    printf '    HTTP POST /v1/events/%s/%s%s\n         -> %s\n' "$1" "$2" "${4:+  (idempotency-key: $4)}" "$ANSWER"
}
publish() { # publish NAMESPACE EVENT_TYPE ID PAYLOAD: straight to NATS, as a service would
    printf '    NATS events.%s.%s  (Nats-Msg-Id: %s)\n         -> ' "$1" "$2" "$3"
    python3 "$ROOT/scripts/nats_publish.py" --url "$NATS_URL" --id "$3" "$1" "$2" "$4" || fail "NATS publish of $1 $2 failed"
}

say "Publishing events"
echo "  acme  (orders-app subscribes to order.paid and invoice.*)"
ingest acme order.paid '{"order":1001,"amount":4200,"currency":"EUR"}' ord_1001_paid
ingest acme order.paid '{"order":1001,"amount":4200,"currency":"EUR"}' ord_1001_paid
[[ $ANSWER == *'"duplicate":true'* ]] || fail "the repeated idempotency-key was not reported as a duplicate"
echo "         (same idempotency-key again: recognised as a duplicate, delivered once)"
ingest acme invoice.created '{"invoice":"INV-8","amount":990}'
publish acme invoice.finalized evt_inv8_final '{"invoice":"INV-8","status":"final"}'
ingest acme order.shipped '{"order":1001}'
echo "         (nobody subscribes to order.shipped: counted as unrouted, delivered nowhere)"
echo "  globex  (billing subscribes to payment.>)"
ingest globex payment.succeeded '{"payment":"pay_1","amount":1500}'
publish globex payment.refund.issued evt_refund_1 '{"payment":"pay_1","refund":"re_1","amount":500}'

# --- 4. wait for the deliveries and check them ---------------------------------------------------
# Expected: acme/orders-app 3 (order.paid once, invoice.created, invoice.finalized),
# globex/billing 2, all 5 verified by the receiver, acme's order.shipped unrouted.
check() { # check at-least|exact: compares the admin API, the metrics and the receiver's log
    python3 - "$1" "$ADMIN" "$DELIVERIES" <<'PY'
import json, sys, urllib.request
mode, admin, log = sys.argv[1:]
expected = {("acme", "orders-app"): 3, ("globex", "billing"): 2}
try:
    endpoints = json.load(urllib.request.urlopen(admin + "/v1/endpoints", timeout=5))
    metrics = urllib.request.urlopen(admin + "/metrics", timeout=5).read().decode()
except Exception as error:
    print(f"admin API: {error}")
    sys.exit(1)
delivered = {(e["namespace"], e["name"]): e["delivered"] for e in endpoints}
try:
    lines = [json.loads(line) for line in open(log, encoding="utf-8") if line.endswith("\n")]
except FileNotFoundError:
    lines = []
unrouted = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
               if l.startswith("webhook_events_unrouted") and 'tenant="acme"' in l)
problems = []
for key, want in expected.items():
    got = delivered.get(key, 0)
    if got < want or (mode == "exact" and got != want):
        problems.append(f"{'/'.join(key)} delivered={got}, expected {want}")
if len(lines) < 5 or (mode == "exact" and len(lines) != 5):
    problems.append(f"the receiver got {len(lines)} deliveries, expected 5")
if any(not l["verified"] for l in lines):
    problems.append("the receiver could not verify a signature")
if unrouted < 1 or (mode == "exact" and unrouted != 1):
    problems.append(f"acme unrouted events = {unrouted:g}, expected 1")
if problems:
    print("; ".join(problems))
    sys.exit(1)
PY
}

say "Waiting for deliveries (up to ${TIMEOUT}s)"
deadline=$((SECONDS + TIMEOUT))
until status=$(check at-least); do
    alive "$OPERATOR_I" || fail "webhook-operator exited"
    ((SECONDS < deadline)) || fail "deliveries did not arrive within ${TIMEOUT}s: $status"
    sleep 0.5
done
sleep 2 # let anything unexpected (a second copy of the duplicate, say) show up, then recheck
status=$(check exact) || fail "unexpected deliveries: $status"

say "What the receiver saw"
sed 's/^/    /' "$WORK/receiver.log"

say "GET /v1/endpoints"
curl -sf "$ADMIN/v1/endpoints" | python3 -m json.tool | sed 's/^/    /'

say "Unrouted events (GET /metrics)"
curl -sf "$ADMIN/metrics" | grep '^webhook_events_unrouted' | sed 's/^/    /'

printf '\n%sDemo passed:%s 5 deliveries signed and verified (acme 3, globex 2), 1 duplicate ignored, 1 unrouted event.\n' "$GREEN" "$RESET"
echo "Stopping NATS, the receiver and the operator, and removing $WORK."
