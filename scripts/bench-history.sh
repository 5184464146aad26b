#!/usr/bin/env bash
# Benchmarks of the history (docs/benchmarks.md): `floodgate serve` with
# --history off and --history on, side by side, under the same client
# (`floodgate load`), on one private `nats-server -js`.
#
#   RUNS=5 scripts/bench-history.sh --conns 1000 --rate 400 --duration 20s --warmup 2s
#   TARGETS=on scripts/bench-history.sh --scenario resume --conns 1000 --rate 100 --away 2s
#   TARGETS=on scripts/bench-history.sh --scenario hot --snapshot --conns 1000 --rate 100 --payload book
#
# The broker runs alone on core $BROKER_CORE with GOMAXPROCS=1 and
# nats-server (JetStream: storing and republishing is broker-side work) is
# pinned to that core too; the generator has core $LOAD_CORE. Runs are
# interleaved (the target order repeats RUNS times). The history stream is
# deleted after every run, so an "off" run never pays for JetStream storing
# what is published and every "on" run starts from an empty stream. Every
# report is kept as JSON in $OUT and summarised at the end.
#
# Environment: RUNS (1), TARGETS ("off on"), OUT (a new temporary
# directory), BROKER_CORE (0), LOAD_CORE (1), NATS_PORT (4232).
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$ROOT"
RUNS=${RUNS:-1}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
NATS_PORT=${NATS_PORT:-4232}
OUT=${OUT:-$(mktemp -d /tmp/fg-bench.XXXXXX)}
TMP=$(mktemp -d /tmp/fg-bench-build.XXXXXX)
TARGETS=${TARGETS:-"off on"}
STREAM=FLOODGATE_MD
mkdir -p "$OUT"

PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

echo "building floodgate ($(git rev-parse --short HEAD)) into $TMP" >&2
go build -o "$TMP/floodgate" ./cmd/floodgate

taskset -c "$BROKER_CORE" nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$TMP/js" >"$OUT/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=($NATS_PID)

# cpu_s PID: the process's user+system CPU seconds so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
nats-server --version >&2

# delete_stream removes the history stream with a JetStream API request
# over the plain NATS protocol (no client needed; a missing stream is fine).
delete_stream() {
	exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT"
	printf 'CONNECT {"verbose":false}\r\nPUB $JS.API.STREAM.DELETE.%s 0\r\n\r\nPING\r\n' "$STREAM" >&3
	sleep 0.3
	exec 3>&-
}

wait_http() { # url
	for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
	echo "broker did not come up at $1" >&2
	return 1
}

# Every run dials from 4 fresh loopback addresses (127.0.0.x), so the
# previous run's sockets in TIME_WAIT never leave it short of ports.
INVOCATION=0
run_target() { # target run
	local target=$1 run=$2 bpid addrs
	shift 2
	local b=$((10 + 4 * (INVOCATION % 60)))
	INVOCATION=$((INVOCATION + 1))
	addrs=127.0.0.$b,127.0.0.$((b + 1)),127.0.0.$((b + 2)),127.0.0.$((b + 3))
	rm -rf "$TMP/data"
	GOMAXPROCS=1 taskset -c "$BROKER_CORE" "$TMP/floodgate" serve --nats-url "nats://127.0.0.1:$NATS_PORT" --history "$target" \
		--listen 127.0.0.1:8090 --api-listen 127.0.0.1:8091 --data-dir "$TMP/data" \
		--config docs/bench/floodgate.yaml --log-level warn --shutdown-grace 0 >"$OUT/$target-$run.log" 2>&1 &
	bpid=$!
	PIDS+=("$bpid")
	wait_http http://127.0.0.1:8091/readyz
	echo "== history $target run $run" >&2
	local nats0
	nats0=$(cpu_s "$NATS_PID")
	taskset -c "$LOAD_CORE" "$TMP/floodgate" load --url ws://127.0.0.1:8090/ws --nats-url "nats://127.0.0.1:$NATS_PORT" \
		--metrics-url http://127.0.0.1:8091/metrics --source-addrs "$addrs" --json "$OUT/$target-$run.json" "$@" \
		>"$OUT/$target-$run.txt" 2>"$OUT/$target-$run.progress" || true
	echo "nats-server CPU      $(awk -v a="$nats0" -v b="$(cpu_s "$NATS_PID")" 'BEGIN { printf "%.2f", b - a }') s during the run" >>"$OUT/$target-$run.txt"
	cat "$OUT/$target-$run.txt"
	curl -fsS http://127.0.0.1:8091/metrics | grep -E '^floodgate_history_(replays_total|replays_from_memory_total|replayed_messages_total)' >>"$OUT/$target-$run.txt" || true
	kill "$bpid" 2>/dev/null || true
	wait "$bpid" 2>/dev/null || true
	delete_stream
	sleep 2 # let TIME_WAIT sockets and the broker's memory go
}

delete_stream
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
        name = "history " + os.path.basename(f)[:-5]
        nats = [l.split()[2] for l in open(f[:-5] + ".txt") if l.startswith("nats-server CPU")]
        nats = f", nats-server CPU {nats[0]} s" if nats else ""
        if r.get("resume"):
            x = r["resume"]
            print(f"{name:16} resumed {x['resumed']} (recovered {x['recovered']}, retries {x['retries']}), replayed {x['replayed']}, "
                  f"gaps {x['gaps']}, duplicates {x['duplicates']}, lost {x['lost']}, live p50 {x['live_p50_ms']:.0f} ms, "
                  f"p99 {x['live_p99_ms']:.0f} ms, last {x['last_live_s']:.3f} s, broker CPU {x['storm_cpu_s']:.2f} s{nats}")
        elif r.get("hot"):
            h = r["hot"]
            s = h["snapshot_after_ack"]
            print(f"{name:16} join {h['join_s']:.3f} s ({h['joined_ok']} ok), snapshots {h['snapshots']}: after the ack "
                  f"p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms, max {s['max_ms']:.3f} ms, broker CPU {h['storm_cpu_s']:.2f} s{nats}")
        else:
            print(f"{name:16} delivered {r['delivered']} ({r['delivered_per_s']:.0f}/s), loss {r['loss_pct']:.3f} %, "
                  f"p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms, max {r['latency_max_ms']:.1f} ms, "
                  f"CPU {r['broker_cpu_s_per_million']:.2f} s/M{nats}")
PY
