#!/usr/bin/env bash
# Envoy's rate limit service next to /v1/check, on this machine, in one run:
#
#   bash loadtest/bench-rls.sh              # ~4 minutes after the build; writes target/bench-rls/
#
# One `turnstile` per backend (actor, sharded, concurrent, redis with a local redis-server),
# serving /v1/check over HTTP and ShouldRateLimit over gRPC (rls.listen, the rules of
# loadtest/rls/), both limiting 10,000 keys (uniform) with a limit nothing reaches, so the
# figures are the cost of a decision. Three kinds of call: /v1/check (one decision), and
# ShouldRateLimit with 1 descriptor (one decision per call, the strictest comparison) and with
# 3 (three decisions per call: Envoy sends one descriptor per matching `rate_limits` entry).
# For each backend and call: the maximum throughput (closed loop, 64 connections, 4 s after a
# 500 ms warm-up), p50/p99 of that run, and the gateway's CPU time per call and per decision
# (from /proc, sampled over 3 s inside the run). 3 interleaved rounds; `turnstile-load report
# rls` gives the medians and the CPU per decision against /v1/check's, per round.
#
# Environment: ROUNDS (default 3), BACKENDS (a subset), DESCRIPTORS (the larger gRPC call's
# descriptors, default 3).
# Needs redis-server (Debian package; installed here if missing) for the redis backend.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
descriptors=${DESCRIPTORS:-3}
out=target/bench-rls
mkdir -p "$out"
read -r -a backends <<<"${BACKENDS:-actor sharded concurrent redis}"
if [[ " ${backends[*]} " == *" redis "* ]] && ! command -v redis-server >/dev/null; then
  apt-get update && apt-get install -y redis-server
fi
cargo build --profile profiling -p turnstile-gateway -p turnstile-load >&2
bin=${CARGO_TARGET_DIR:-target}/profiling
source loadtest/lib.sh
echo "== machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc --version)" | tee "$out/machine.txt"

declare -A http_url grpc_url
for backend in "${backends[@]}"; do
  extra=()
  if [[ $backend == redis ]]; then
    redis_port=$(port)
    start redis redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no
    wait_port redis "$redis_port"
    extra=(--redis-url "redis://127.0.0.1:$redis_port")
  fi
  http_port=$(port)
  grpc_port=$(port)
  gateway=(env TURNSTILE_LOG=warn TURNSTILE_POLICIES__DEFAULT__LIMIT=1000000
    TURNSTILE_POLICIES__DEFAULT__PERIOD=1s TURNSTILE_POLICIES__DEFAULT__BURST=1000000
    "$bin/turnstile" --backend "$backend" --listen "127.0.0.1:$http_port"
    --rls-listen "127.0.0.1:$grpc_port" --rls-config loadtest/rls "${extra[@]}")
  start "$backend" "${gateway[@]}"
  wait_ready "$backend" "${gateway[@]}"
  http_url[$backend]="http://127.0.0.1:$http_port"
  grpc_url[$backend]="http://127.0.0.1:$grpc_port"
done

scenario() { # route descriptors → a scenario file
  local file="$scratch/$1-$2.toml"
  cat >"$file" <<TOML
name = "rls-$1-$2"
mode = "closed"
connections = 64
duration = "4s"
warmup = "500ms"
timeout = "2s"
[traffic]
route = "$1"
keys = { distribution = "uniform", count = 10000 }
rls = { domain = "loadtest", descriptors = $2 }
TOML
  echo "$file"
}
results="$out/results.jsonl"
: >"$results"
measure() { # round backend transport route url descriptors
  local json="$scratch/last.json" load ticks0 ticks1
  "$bin/turnstile-load" run --scenario "$(scenario "$4" "$6")" --target "$5" --json "$json" --quiet >/dev/null &
  load=$!
  sleep 1; ticks0=$(cpu_ticks "${pid[$2]}"); sleep 3; ticks1=$(cpu_ticks "${pid[$2]}")
  wait "$load"
  python3 - "$json" "$1" "$2" "$3" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" "$6" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cpu_seconds = int(sys.argv[5]) / int(sys.argv[6])
print(json.dumps({"round": int(sys.argv[2]), "backend": sys.argv[3], "transport": sys.argv[4],
  "descriptors": int(sys.argv[7]),
  "throughput": r["throughput"], "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
  "cpu_us_per_call": cpu_seconds / (3 * r["throughput"]) * 1e6 if r["throughput"] else 0,
  "allowed": r["outcomes"]["allowed"], "requests": r["requests"]}))
PY
}
for round in $(seq 1 "$rounds"); do
  echo "== round $round" >&2
  for backend in "${backends[@]}"; do
    measure "$round" "$backend" http check "${http_url[$backend]}" 1
    measure "$round" "$backend" grpc rls "${grpc_url[$backend]}" 1
    measure "$round" "$backend" grpc rls "${grpc_url[$backend]}" "$descriptors"
  done
done
"$bin/turnstile-load" report rls "$results" | tee "$out/rls.md"
