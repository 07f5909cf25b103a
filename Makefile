# Loyalty scoring pipeline — developer and CI entry points.
#
#   make test         go test -race -short ./..., the Redis-facing packages again on a Redis
#                     Cluster, and the chaos suite (CI size); FULL=1 adds the TestAcceptance*
#                     runs at full size and the full chaos suite. Against real brokers when
#                     KAFKA_BROKERS / REDIS_ADDR are set (eval "$(deploy/local/infra.sh env)");
#                     otherwise the tests start an in-process Kafka (kfake) and a redis-server.
#   make test-kfake   the same tests forced onto the in-process broker (KAFKA_BROKERS empty),
#                     but the TestAcceptance* runs, which are for real Kafka (make test)
#   make chaos        the chaos suite alone (TestChaos): its own broker and Redis, kills, restarts,
#                     outages, promote, erase, poison; CI size, or full size with CHAOS_FULL=1
#   make infra-up     real Kafka 4.x + Redis on 127.0.0.1 (deploy/local/infra.sh); prints the env
#   make lint | bench | fuzz | build
#
# Variables: FULL=1, TEST_FLAGS (extra go test flags, e.g. TEST_FLAGS='-run TestX -v'), PKGS,
# CLUSTER_PKGS, BENCH, BENCH_FLAGS, FUZZTIME.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

GO          ?= go
PKGS        ?= ./...
TEST_FLAGS  ?=
TEST_TIMEOUT ?= 15m
BENCH       ?= .
BENCH_FLAGS ?= -benchtime=1s
FUZZTIME    ?= 10s

# Version, commit and build date stamped into every binary (--version, loyalty_build_info).
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT     ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
BUILDINFO  := github.com/loyalty-scoring/loyalty/pkg/buildinfo
LDFLAGS    := -X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT) -X $(BUILDINFO).date=$(BUILD_DATE)

GOLANGCI_LINT_VERSION := v2.15.0
BIN           := $(CURDIR)/bin
GOLANGCI_LINT := $(BIN)/golangci-lint

INFRA := deploy/local/infra.sh
GO_FILES = find . -name '*.go' -not -path './.git/*' -not -path './bin/*' -not -path '*/testdata/*' -not -path './deploy/local/.run/*'

.PHONY: all test test-kfake chaos redis-server tools lint lint-tools tidy-check fmt bench fuzz build \
        infra-up infra-down infra-status run help

all: lint test

help:
	@sed -n '2,16p' Makefile | sed 's/^# \{0,1\}//'

## ---- build & test ----------------------------------------------------------------------

# Every binary of ./services into bin/, stamped with VERSION, COMMIT and BUILD_DATE.
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./services/...

# The tests need a redis-server binary (a child server when REDIS_ADDR is unset, the Redis
# Cluster pass, the chaos and security tests): install it (as root) or fail with the command to
# run — never skip.
redis-server:
	@deploy/local/redis.sh install

# promtool (Debian's prometheus package) for the tests of deploy/prometheus and the dashboards,
# chromium for the console's browser test: installed when missing, or a failure with the
# command to run — never skipped.
tools:
	@deploy/local/tools.sh install promtool chromium

# What CI runs, in three passes sized for a 2-core machine:
#   1. every test with the race detector, -short (the acceptance runs at CI size);
#   2. the integration tests of the Redis-facing packages again on a three-node Redis Cluster
#      (TEST_REDIS_CLUSTER=1: store, relay, sweeper, notifier, erasure, promote and drop);
#   3. the chaos suite at CI size (make chaos: a broker and a Redis of its own).
# FULL=1 adds the acceptance runs (TestAcceptance*: >= 100k events, kills, replays) at full size
# without the race detector, whose 5-10x slowdown would only measure the machine, and runs the
# chaos suite at full size.
FULL         ?=
CLUSTER_PKGS ?= ./pkg/state ./pkg/relay ./pkg/pipeline ./pkg/notifier ./pkg/namespace ./pkg/replay
test: redis-server tools
	@echo "go test -race -short: KAFKA_BROKERS=$${KAFKA_BROKERS:-<in-process kfake>} REDIS_ADDR=$${REDIS_ADDR:-<redis-server child>}"
	$(GO) test -race -short -count=1 -timeout $(TEST_TIMEOUT) -skip '^TestChaos' $(TEST_FLAGS) $(PKGS)
	@echo "go test -short on a three-node Redis Cluster (a cluster of redis-server children per test): $(CLUSTER_PKGS)"
	TEST_REDIS_CLUSTER=1 $(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) -skip '^TestChaos' $(TEST_FLAGS) $(CLUSTER_PKGS)
	$(MAKE) --no-print-directory chaos CHAOS_FULL=$(FULL) TEST_FLAGS=
ifeq ($(FULL),1)
	@echo "go test -run '^TestAcceptance' (full size): KAFKA_BROKERS=$${KAFKA_BROKERS:-<in-process kfake>}"
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) -run '^TestAcceptance' $(TEST_FLAGS) $(PKGS)
endif

# Empty KAFKA_BROKERS = in-process broker (the harness treats empty like unset). The race
# suite only: the acceptance runs (pkg/e2e, the retail replay) belong to the real broker and
# run in make test (full size with FULL=1); the security test (pkg/securetest) starts a SASL_SSL
# broker of its own whatever KAFKA_BROKERS says, so a second run here would only repeat it.
test-kfake: redis-server tools
	@echo "go test -race -short: KAFKA_BROKERS=<in-process kfake> REDIS_ADDR=$${REDIS_ADDR:-<redis-server child>}"
	KAFKA_BROKERS= $(GO) test -race -short -count=1 -timeout $(TEST_TIMEOUT) -skip '^(TestAcceptance|TestChaos|TestThePipelineRunsOverSASL)' $(TEST_FLAGS) $(PKGS)

# The chaos suite (pkg/e2e TestChaos, excluded from test and test-kfake): it starts its own
# Kafka broker (deploy/local/kafka/kafka.sh, own run dir) and redis-server with AOF, because it
# kills and restarts them; KAFKA_BROKERS/REDIS_ADDR are not used. CI size by default (about
# three minutes); CHAOS_FULL=1 runs the full size (>= 200k events, 20 kills, 2-minute outages).
CHAOS_FULL    ?=
# Twice the run's bound plus 6 minutes (chaosSize.run): near a UTC midnight the suite waits for
# the next day before it runs.
CHAOS_TIMEOUT ?= $(if $(filter 1,$(CHAOS_FULL)),100m,30m)
chaos:
	$(GO) test -count=1 -timeout $(CHAOS_TIMEOUT) -run '^TestChaos$$' -v $(TEST_FLAGS) ./pkg/e2e $(if $(filter 1,$(CHAOS_FULL)),-args -chaos.full)

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem $(BENCH_FLAGS) $(PKGS)

# Every Fuzz target, FUZZTIME each. `go test -list` prints a package's matching names and then
# its "ok <pkg>" line, so the names are attributed to the package that follows them.
fuzz:
	@targets=$$($(GO) test -list '^Fuzz' $(PKGS) | awk '/^Fuzz/ { names = names " " $$1; next } \
	  /^ok / { n = split(names, a, " "); for (i = 1; i <= n; i++) print $$2, a[i]; names = "" }'); \
	if [ -z "$$targets" ]; then echo "no Fuzz targets found"; exit 0; fi; \
	while read -r pkg name; do \
	  echo "== fuzz $$pkg $$name ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
	done <<< "$$targets"

## ---- lint ------------------------------------------------------------------------------

lint: lint-tools tidy-check
	@echo "== gofmt"; \
	unformatted=$$(gofmt -l $$($(GO_FILES))); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	@echo "== go vet"
	$(GO) vet $(PKGS)
	@echo "== golangci-lint $(GOLANGCI_LINT_VERSION)"
	$(GOLANGCI_LINT) run $(PKGS)

# Fails when `go mod tidy` would change go.mod or go.sum (a direct requirement marked
# indirect, a stale checksum): run `go mod tidy` and commit the result.
tidy-check:
	@echo "== go mod tidy -diff"
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy" >&2; exit 1; }

fmt:
	gofmt -w $$($(GO_FILES))

lint-tools:
	@if ! [ -x $(GOLANGCI_LINT) ] || ! $(GOLANGCI_LINT) version 2>/dev/null | grep -q 'version $(patsubst v%,%,$(GOLANGCI_LINT_VERSION)) '; then \
	  echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into $(BIN)"; \
	  GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi

## ---- real local infrastructure (no Docker) ---------------------------------------------

infra-up:
	@$(INFRA) up
	@echo '# in your shell: eval "$$($(INFRA) env)"'

infra-down:
	@$(INFRA) down

infra-status:
	@$(INFRA) status

## ---- running the pipeline (owned by the pipeline/services work) ------------------------

# The in-process demo of the developer harness (services/loyalty-dev): no Kafka or Redis needed.
# The demo with the loyalty console: it prints the console's URL, user and password.
run:
	$(GO) run ./services/loyalty-dev demo --for $(or $(FOR),5m)

.PHONY: services-up services-down services-status bench-e2e

SERVICES := deploy/local/services.sh
BENCH_E2E_EVENTS ?= 1000000
BENCH_E2E_RUNS   ?= 3
BENCH_E2E_FLAGS  ?=

# Every service of ./services as a background process against `make infra-up`'s Kafka and
# Redis (deploy/local/.run/env); logs and PID files in deploy/local/.run/services/.
services-up:
	@$(SERVICES) up

services-down:
	@$(SERVICES) down

services-status:
	@$(SERVICES) status

# End-to-end benchmark against real Kafka + Redis (`make infra-up` first): builds every binary
# into bin/ (make build), starts those services in a fresh namespace and topic suffix, produces
# BENCH_E2E_EVENTS events, BENCH_E2E_RUNS times (medians: the machines are shared and noisy),
# prints each run's table and the summary (the JSON report goes to deploy/local/.run/bench-e2e.json).
bench-e2e: build
	@if [ -z "$${KAFKA_BROKERS:-}" ] && [ -f deploy/local/.run/env ]; then source deploy/local/.run/env; fi; \
	if [ -z "$${KAFKA_BROKERS:-}" ]; then echo "bench-e2e needs real Kafka and Redis: make infra-up" >&2; exit 1; fi; \
	mkdir -p deploy/local/.run; \
	$(BIN)/loyalty-dev bench-e2e --bin $(BIN) --events $(BENCH_E2E_EVENTS) --runs $(BENCH_E2E_RUNS) --write-json deploy/local/.run/bench-e2e.json $(BENCH_E2E_FLAGS)
