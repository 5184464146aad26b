# Floodgate make targets (see README.md). .ci/run runs test, lint,
# test-integration, test-cluster and test-chaos.
GO        ?= go
BIN       := bin/floodgate
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 10s
# Extra go test flags, e.g. GOTESTFLAGS=-v (.ci/run counts the tests from -v).
GOTESTFLAGS ?=
# staticcheck release that supports the Go of go.mod; .ci/run installs it.
STATICCHECK_VERSION := v0.8.2
STATICCHECK ?= staticcheck
# Build tags whose files lint checks too (their own suites run them).
LINT_TAGS := integration,cluster,chaos,browser

.PHONY: build run test test-integration test-cluster test-chaos test-browser console-vendor console-screenshots lint bench mutants load fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/floodgate

run: build
	./$(BIN) serve --demo-feed --log-format console

# The race suite, then the allocation tests without -race (the race detector
# makes sync.Pool drop items, so testing.AllocsPerRun tests skip under it).
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 $(GOTESTFLAGS) ./...
	$(GO) test -count=1 -run Alloc $(GOTESTFLAGS) ./...

# The integration tests on real servers. Tests that use internal/testdeps
# start private nats-server / redis-server processes (in CI always; outside
# CI unless NATS_URL / REDIS_URL are set); scripts/with-deps provides
# NATS_URL and REDIS_URL the same way to tests that read them directly.
test-integration:
	./scripts/with-deps $(GO) test -race -count=1 -tags integration -run Integration $(GOTESTFLAGS) ./...

# Three floodgate serve processes on real NATS and Redis (cluster/main_test.go).
test-cluster:
	$(GO) test -tags cluster -count=1 -v $(GOTESTFLAGS) ./cluster/

# Dependencies that hang and die (chaos/main_test.go): floodgate serve
# processes on private nats-server and redis-server processes (a Redis
# Cluster, a Sentinel) under SIGSTOP, SIGCONT and SIGKILL. About a minute.
test-chaos:
	$(GO) test -tags chaos -count=1 $(GOTESTFLAGS) ./chaos/

# The operator console in headless Chromium (Debian's chromium) against a
# real `floodgate serve --demo-feed` (console/browser_test.go).
test-browser:
	$(GO) test -tags browser -count=1 -run Browser $(GOTESTFLAGS) ./console/

# Refreshes the README's console screenshots in docs/img.
console-screenshots:
	SCREENSHOTS=$(CURDIR)/docs/img $(GO) test -tags browser -count=1 -run Browser ./console/

# Re-vendors uPlot into console/static/vendor from console/package-lock.json.
console-vendor:
	./scripts/vendor-console.sh

# staticcheck, go vet (with the integration and cluster files), gofmt and
# go mod tidy; every check runs, and the target fails if any of them did.
lint:
	@command -v $(STATICCHECK) >/dev/null 2>&1 || { \
	  echo "lint: $(STATICCHECK) not on PATH: $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)"; exit 1; }
	@rc=0; \
	echo "$(STATICCHECK) -tags $(LINT_TAGS) ./..."; $(STATICCHECK) -tags $(LINT_TAGS) ./... || rc=1; \
	echo "$(GO) vet -tags $(LINT_TAGS) ./..."; $(GO) vet -tags $(LINT_TAGS) ./... || rc=1; \
	echo "gofmt -l ."; out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "$$out"; echo "lint: gofmt -l lists the files above"; rc=1; fi; \
	echo "$(GO) mod tidy -diff"; $(GO) mod tidy -diff || rc=1; \
	exit $$rc

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# One-line breaking changes applied to a temporary copy, one at a time: each
# must make a named test of make test fail (scripts/mutants.go lists them;
# CONTRIBUTING.md records the last run). A few minutes; not part of CI.
mutants:
	$(GO) run scripts/mutants.go

load: build
	./$(BIN) load --self --duration 20s

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Every fuzz target for 10 minutes (a long run before a release; the figure
# of docs/security.md). `make fuzz` stays short (FUZZTIME, 10 s each).
.PHONY: fuzz-long
fuzz-long:
	$(MAKE) fuzz FUZZTIME=10m

clean:
	rm -rf bin
