#!/usr/bin/env bash
# Side-by-side benchmark: Floodgate (this tree, and optionally another
# revision such as the parent commit) and Centrifugo v6.9.1 under the same
# client, `floodgate load`, on one private nats-server.
#
#   scripts/bench-centrifugo.sh [load flags...]
#   RUNS=5 BASE=HEAD~1 scripts/bench-centrifugo.sh --scenario hot --conns 15000 --rate 20
#
# Each broker runs alone on core $BROKER_CORE with GOMAXPROCS=1; nats-server
# and the generator share core $LOAD_CORE. Centrifugo is built with
# `go install github.com/centrifugal/centrifugo/v6@v6.9.1` into a temporary
# GOBIN (never kept) and runs with docs/bench/centrifugo.json (NATS broker
# in raw mode on 127.0.0.1:$NATS_PORT, loopback only, insecure client mode:
# anonymous connect and subscribe); Floodgate with docs/bench/floodgate.yaml
# (every per-IP cap lifted). The generator speaks Centrifugo's JSON protocol
# to Centrifugo (--protocol centrifugo: a connect and a subscribe command
# per connection; the channel is the NATS subject) and Floodgate's to
# Floodgate. Runs are interleaved (target order repeats RUNS times); every
# report is kept as JSON in $OUT and summarised at the end.
#
# Environment: RUNS (1), BASE (a git revision of Floodgate to add, e.g.
# HEAD~1; built from a temporary worktree), TARGETS (default "floodgate
# centrifugo", plus "base" with BASE), OUT (a new temporary directory),
# BROKER_CORE (0), LOAD_CORE (1), NATS_PORT (4231: must match
# docs/bench/centrifugo.json), GOGC_SERVE / GOMEMLIMIT_SERVE (passed to
# Floodgate's serve as GOGC / GOMEMLIMIT when set).
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$ROOT"
RUNS=${RUNS:-1}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
NATS_PORT=${NATS_PORT:-4231}
OUT=${OUT:-$(mktemp -d /tmp/fg-bench.XXXXXX)}
TMP=$(mktemp -d /tmp/fg-bench-build.XXXXXX)
CENTRIFUGO_MODULE=github.com/centrifugal/centrifugo/v6@v6.9.1
TARGETS=${TARGETS:-"floodgate centrifugo${BASE:+ base}"}
mkdir -p "$OUT"

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${BASE:-}" ] && [ -d "$TMP/base-src" ]; then git worktree remove --force "$TMP/base-src" >/dev/null 2>&1 || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT

echo "building floodgate ($(git rev-parse --short HEAD)) into $TMP" >&2
go build -o "$TMP/floodgate" ./cmd/floodgate
if [ -n "${BASE:-}" ]; then
	echo "building floodgate $BASE ($(git rev-parse --short "$BASE"))" >&2
	git worktree add --detach "$TMP/base-src" "$BASE" >/dev/null 2>&1
	(cd "$TMP/base-src" && go build -o "$TMP/floodgate-base" ./cmd/floodgate)
fi
if [[ " $TARGETS " == *" centrifugo "* ]]; then
	echo "installing $CENTRIFUGO_MODULE into a temporary GOBIN" >&2
	GOBIN="$TMP/gobin" go install "$CENTRIFUGO_MODULE"
fi

# A private NATS server for every broker and the publisher.
taskset -c "$LOAD_CORE" nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$OUT/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done

wait_http() { # url
	for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "broker did not come up at $1" >&2
	return 1
}

# Every run dials from 4 fresh loopback addresses (127.0.0.x), so the
# previous run's sockets in TIME_WAIT (60 s) never leave it short of
# ephemeral ports (a nearly full port range makes connect() slow).
INVOCATION=0
run_target() { # target run
	local target=$1 run=$2 bpid url metrics proto addrs
	shift 2
	local b=$((10 + 4 * (INVOCATION % 60)))
	INVOCATION=$((INVOCATION + 1))
	addrs=127.0.0.$b,127.0.0.$((b + 1)),127.0.0.$((b + 2)),127.0.0.$((b + 3))
	case $target in
	floodgate | base)
		local bin="$TMP/floodgate"
		[ "$target" = base ] && bin="$TMP/floodgate-base"
		rm -rf "$TMP/data-$target"
		env ${GOGC_SERVE:+GOGC=$GOGC_SERVE} ${GOMEMLIMIT_SERVE:+GOMEMLIMIT=$GOMEMLIMIT_SERVE} GOMAXPROCS=1 \
			taskset -c "$BROKER_CORE" "$bin" serve --nats-url "nats://127.0.0.1:$NATS_PORT" \
			--listen 127.0.0.1:8090 --api-listen 127.0.0.1:8091 --data-dir "$TMP/data-$target" \
			--config docs/bench/floodgate.yaml --log-level warn --shutdown-grace 0 >"$OUT/$target-$run.log" 2>&1 &
		bpid=$!
		url=ws://127.0.0.1:8090/ws metrics=http://127.0.0.1:8091/metrics proto=floodgate
		wait_http http://127.0.0.1:8091/healthz
		;;
	centrifugo)
		GOMAXPROCS=1 taskset -c "$BROKER_CORE" "$TMP/gobin/centrifugo" -c docs/bench/centrifugo.json >"$OUT/$target-$run.log" 2>&1 &
		bpid=$!
		url=ws://127.0.0.1:8000/connection/websocket metrics=http://127.0.0.1:8000/metrics proto=centrifugo
		wait_http "$metrics"
		;;
	*)
		echo "unknown target $target" >&2
		return 1
		;;
	esac
	PIDS+=("$bpid")
	echo "== $target run $run" >&2
	taskset -c "$LOAD_CORE" "$TMP/floodgate" load --url "$url" --nats-url "nats://127.0.0.1:$NATS_PORT" \
		--metrics-url "$metrics" --protocol "$proto" --source-addrs "$addrs" --json "$OUT/$target-$run.json" "$@" >"$OUT/$target-$run.txt" 2>"$OUT/$target-$run.progress" || true
	cat "$OUT/$target-$run.txt"
	kill "$bpid" 2>/dev/null || true
	wait "$bpid" 2>/dev/null || true
	sleep 2 # let TIME_WAIT sockets and the broker's memory go
}

for run in $(seq "$RUNS"); do
	for target in $TARGETS; do
		run_target "$target" "$run" "$@"
	done
done

python3 - "$OUT" $TARGETS <<'PY'
import json, sys, glob, os
out, targets = sys.argv[1], sys.argv[2:]
print(f"\nreports in {out}")
for t in targets:
    for f in sorted(glob.glob(os.path.join(out, f"{t}-*.json")), key=lambda p: int(p.rsplit("-", 1)[1][:-5])):
        r = json.load(open(f))
        name = os.path.basename(f)[:-5]
        if r.get("hot"):
            h = r["hot"]
            print(f"{name:16} join {h['join_s']:.3f} s ({h['joined_ok']} ok, {h['join_failed']} failed), leave {h['leave_s']:.3f} s, "
                  f"broker CPU {h['storm_cpu_s']:.2f} s, alloc {h['storm_alloc_bytes']/2**20:.0f} MiB, "
                  f"steady p99 {h['steady_before']['p99_ms']:.1f} -> {h['steady_during']['p99_ms']:.1f} ms")
        else:
            print(f"{name:16} delivered {r['delivered']} ({r['delivered_per_s']:.0f}/s), loss {r['loss_pct']:.3f} %, "
                  f"p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms, max {r['latency_max_ms']:.1f} ms, "
                  f"CPU {r['broker_cpu_s_per_million']:.2f} s/M, wire {r['wire_bytes_per_frame']:.0f} B/frame")
PY
