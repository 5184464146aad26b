# Floodgate make targets (see ../shared/spec/cli.md and README.md).
GO        ?= go
BIN       := bin/floodgate
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
NATS_URL  ?= nats://127.0.0.1:4222
REDIS_URL ?= redis://127.0.0.1:6379/0
FUZZTIME  ?= 10s

.PHONY: build run test test-integration bench load fuzz clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/floodgate

run: build
	./$(BIN) serve --demo-feed --log-format console

test:
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

test-integration:
	NATS_URL=$(NATS_URL) REDIS_URL=$(REDIS_URL) $(GO) test -race -count=1 -tags integration -run Integration ./...

.PHONY: test-cluster
test-cluster:
	NATS_URL=$(NATS_URL) REDIS_URL=$(REDIS_URL) $(GO) test -tags cluster -count=1 -v ./cluster/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

load: build
	./$(BIN) load --self --duration 20s

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
