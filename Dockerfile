# Floodgate container image: a static binary on distroless, running as a
# non-root user. See docs/operations.md ("Docker").
#
#   docker build -t floodgate --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse --short HEAD) .
#   docker run --rm -p 8080:8080 -p 8081:8081 floodgate serve --demo-feed

# --- build -------------------------------------------------------------------
FROM golang:1.26 AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=none
# CGO_ENABLED=0: a static binary that needs no libc in the runtime image.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/floodgate ./cmd/floodgate \
 && mkdir -p /out/data

# --- runtime -----------------------------------------------------------------
# distroless/static: CA certificates, /etc/passwd with the nonroot user
# (65532), tzdata; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/floodgate /usr/local/bin/floodgate
# The bbolt key store of a single node (unused when FLOODGATE_REDIS_URL is set).
COPY --from=build --chown=65532:65532 /out/data /var/lib/floodgate
USER 65532:65532
WORKDIR /var/lib/floodgate
ENV FLOODGATE_DATA_DIR=/var/lib/floodgate \
    FLOODGATE_LOG_FORMAT=json
VOLUME ["/var/lib/floodgate"]
# 8080: websocket listener (GET /ws); 8081: API listener (REST, /healthz,
# /readyz, /metrics). The embedded NATS server (single node without
# FLOODGATE_NATS_URL) listens on 127.0.0.1:4223 inside the container; set
# FLOODGATE_EMBEDDED_NATS_LISTEN=0.0.0.0:4223 and publish the port only if
# publishers outside the container must reach it (it has no authentication).
EXPOSE 8080 8081
# No HEALTHCHECK: the image has no shell or curl. Probe GET /readyz (ready,
# 503 with reasons otherwise) and GET /healthz (alive) on port 8081 from the
# orchestrator. SIGTERM drains (RECONNECT notice, close after
# --shutdown-grace): give the container at least grace + 10 s to stop.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/floodgate"]
CMD ["serve"]
