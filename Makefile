# Developer entry points; `make help` lists them. Tools (nats-server, Python helpers) live in .tools/.
NATS_SERVER_BIN := $(CURDIR)/.tools/bin/nats-server
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= ghcr.io/webhook-operator/webhook-operator:$(VERSION)
KUBECTL ?= kubectl

.DEFAULT_GOAL := help
.PHONY: help tools build run test e2e bench bench-routes bench-scaleout soak chaos crds fmt lint chart-test dashboard-test dashboard-screenshot image deploy undeploy

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z0-9-]*:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

tools: ## Install nats-server and the Python helpers into .tools/ (idempotent)
	bash scripts/tools.sh

build: ## Build the binary (debug)
	cargo build

run: ## Demo: NATS + operator + sample receiver, a few events delivered end to end
	bash scripts/demo.sh

test: tools ## fmt check, clippy, all tests (with a real nats-server), then the demo as a smoke test
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	NATS_SERVER_BIN=$(NATS_SERVER_BIN) cargo test --lib --bins --tests
	bash scripts/demo.sh
	$(MAKE) --no-print-directory chart-test
	$(MAKE) --no-print-directory dashboard-test
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(CURDIR)/.tools/python python3 -m pytest e2e -q

e2e: tools ## End-to-end test on the cluster KUBECONFIG points to: E2E_INSTALL=helm|kustomize, or E2E_LOCAL_WORKLOADS=1 (e2e/README.md)
	E2E_IMAGE="$${E2E_IMAGE:-$(IMAGE)}" PYTHONPATH=$(CURDIR)/.tools/python python3 e2e/run.py $(E2E_ARGS)

bench: tools ## Benchmarks (pipeline against a real nats-server; scale-out to 3 pipelines; controller at 1,000 objects; routes at 10,000 endpoints; filter cost); update BENCHMARKS.md
	NATS_SERVER_BIN=$(NATS_SERVER_BIN) cargo bench --bench pipeline
	NATS_SERVER_BIN=$(NATS_SERVER_BIN) cargo bench --bench scaleout
	cargo bench --bench controller
	cargo bench --bench routes

bench-routes: ## Route compile time, memory and lookups/s at 10,000 endpoints and 20,000 subscriptions; routing with 1,000 filtered subscriptions
	cargo bench --bench routes

bench-scaleout: tools ## Deliveries/s with 1, 2, 3 pipeline processes sharing one tenant (SCALEOUT_RUNS, SCALEOUT_SECONDS, SCALEOUT_PROCESSES)
	NATS_SERVER_BIN=$(NATS_SERVER_BIN) cargo bench --bench scaleout

soak: tools ## 10 minutes at 1,000 events/s through the real pipeline: RSS and latency per minute, nothing lost (SOAK_SECONDS, SOAK_RATE shorten it)
	NATS_SERVER_BIN=$(NATS_SERVER_BIN) cargo bench --bench soak

WEBHOOK_OPERATOR_BIN ?= $(CURDIR)/target/debug/webhook-operator
chaos: tools build ## Faults under load (kill -9, NATS restart, bad receivers); CHAOS_QUICK=1 ~1 min, CHAOS_CLUSTER=1 adds a 3-server NATS
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(CURDIR)/.tools/python WEBHOOK_OPERATOR_BIN=$(WEBHOOK_OPERATOR_BIN) \
		NATS_SERVER_BIN=$(NATS_SERVER_BIN) python3 scripts/chaos.py

crds: ## Regenerate crds/ from the Rust types, and its copies in the chart and config/crd
	cargo run -q -- crdgen > crds/webhook-operator.yaml.tmp && mv crds/webhook-operator.yaml.tmp crds/webhook-operator.yaml \
		|| { rm -f crds/webhook-operator.yaml.tmp; exit 1; }
	cp crds/webhook-operator.yaml charts/webhook-operator/crds/webhook-operator.yaml
	cp crds/webhook-operator.yaml config/crd/webhook-operator.yaml

fmt: ## Format the code
	cargo fmt --all

lint: ## Format check and clippy, as in `make test`
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

chart-test: tools build ## Helm chart (Helm's Go SDK), kustomize bases and Dockerfile checks (tests/chart)
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$(CURDIR)/.tools/python python3 -m pytest tests/chart -q

dashboard-test: tools build ## The admin dashboard in headless Chromium against the real pipeline (tests/dashboard)
	cd tests/dashboard && npm ci --no-audit --no-fund --loglevel=error
	cd tests/dashboard && NATS_SERVER_BIN=$(NATS_SERVER_BIN) node --test --test-reporter=spec dashboard.test.mjs

dashboard-screenshot: ## Run the dashboard test and keep its screenshot as docs/dashboard.png (README)
	DASHBOARD_DOCS_SCREENSHOT=1 $(MAKE) --no-print-directory dashboard-test

image: ## Build the container image (IMAGE=repo:tag, default: ghcr.io/webhook-operator/webhook-operator:<Cargo version>)
	docker build -t $(IMAGE) .

deploy: ## Install CRDs, RBAC, controller and routers into the current kube context (config/default)
	$(KUBECTL) apply -k config/default

undeploy: ## Remove what deploy installed; endpoints and subscriptions first, while the controller can finalize them
	-$(KUBECTL) delete webhookendpoints,eventsubscriptions --all --all-namespaces --timeout=120s
	$(KUBECTL) delete -k config/default --ignore-not-found
