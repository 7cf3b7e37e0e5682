# Developer entry points; `make help` lists them. Tools (nats-server, Python helpers) live in .tools/.
NATS_SERVER_BIN := $(CURDIR)/.tools/bin/nats-server

.DEFAULT_GOAL := help
.PHONY: help tools build run test bench crds fmt lint

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-7s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

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

bench: tools ## Pipeline benchmark against a real nats-server
	NATS_SERVER_BIN=$(NATS_SERVER_BIN) cargo bench --bench pipeline

crds: ## Regenerate crds/webhook-operator.yaml from the Rust types
	cargo run -q -- crdgen > crds/webhook-operator.yaml.tmp && mv crds/webhook-operator.yaml.tmp crds/webhook-operator.yaml \
		|| { rm -f crds/webhook-operator.yaml.tmp; exit 1; }

fmt: ## Format the code
	cargo fmt --all

lint: ## Format check and clippy, as in `make test`
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
