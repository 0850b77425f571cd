# keepgate — see README.md.
GO       ?= go
export GOFLAGS := -buildvcs=false
export GOTOOLCHAIN := local
BIN      := $(CURDIR)/bin

.PHONY: all build test test-short run bench bench-tunnel lint fuzz setup clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

setup:
	bash scripts/setup.sh test

# The README's test command: installs what the tests need, then runs every
# test with the race detector. Tests start real nginx, runit, MinIO and
# Chromium on loopback; under CI=true none of them may be skipped.
test: setup
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

# Quick run without external components.
test-short:
	$(GO) test -short -count=1 ./...

# The README's run command: a local cluster (2 keepstores, keepproxy, nginx TLS).
run: build
	bash scripts/setup.sh run
	bash scripts/run.sh

bench: build
	$(GO) run ./cmd/keepbench -out BENCHMARKS.md
	KEEPGATE_FAIRNESS_OUT=$(CURDIR)/docs/benchmarks-fairness.md $(GO) test -run XXX -bench Fairness -benchtime 1x ./e2e/
	KEEPGATE_AUDIT_OUT=$(CURDIR)/docs/benchmarks-audit.md $(GO) test -run XXX -bench Audit -benchtime 1x -timeout 20m ./e2e/
	KEEPGATE_ARVAPI_OUT=$(CURDIR)/docs/benchmarks-arvapi.md $(GO) test -run XXX -bench ArvAPI -benchtime 1x -timeout 20m ./e2e/
	KEEPGATE_USAGE_OUT=$(CURDIR)/docs/benchmarks-usage.md $(GO) test -run XXX -bench Usage -benchtime 1x -timeout 20m ./e2e/
	KEEPGATE_ACCESSKEY_OUT=$(CURDIR)/docs/benchmarks-accesskeys.md $(GO) test -run XXX -bench AccessKey -benchtime 1x -timeout 20m ./e2e/
	KEEPGATE_RULES_OUT=$(CURDIR)/docs/benchmarks-rules.md $(GO) test -run XXX -bench Rules -benchtime 1x -timeout 20m ./e2e/

# keeptunnel vs OpenSSH ssh -R vs direct: 64 MiB PUT/GET through keepproxy
# (needs sshd: scripts/setup.sh test); writes docs/tunnel-benchmarks.md.
bench-tunnel:
	KEEPGATE_TUNNEL_BENCH_OUT=$(CURDIR)/docs/tunnel-benchmarks.md $(GO) test -count=1 -run '^TestTunnelThroughput$$' -v -timeout 20m ./e2e

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@# The Keep protocol's header names live in blockstore/keepwire only.
	@out=$$(git grep -n '"X-Keep-' -- '*.go' ':!*_test.go' ':!blockstore/keepwire/*'); if [ -n "$$out" ]; then echo "X-Keep-* literal outside blockstore/keepwire (use its constants):"; echo "$$out"; exit 1; fi

fuzz:
	$(GO) test -run XXX -fuzz FuzzParseLocator -fuzztime 60s ./blockstore
	$(GO) test -run XXX -fuzz FuzzFromAuthorization -fuzztime 60s ./access

clean:
	rm -rf $(BIN)
