#!/usr/bin/env bash
# Where the gateway route's time goes, next to the bare axum route, on this machine:
#
#   bash loadtest/profile-gateway.sh                # ~2 minutes; writes target/profile-gateway/
#   POLICY=denied bash loadtest/profile-gateway.sh  # the same with nearly every request refused
#
# Builds with `--profile profiling` (the dist build with line tables), starts the bare route
# (`turnstile-load serve-trivial`) and the gateway on the concurrent backend with its defaults
# and bench-peers.sh's all-allowed policy (or, with POLICY=denied, its 1/s burst 1), then drives each with the same closed-loop load as
# bench-peers.sh (64 connections, 10,000 clients in X-Forwarded-For):
#   1. server CPU time per request for both, 3 interleaved rounds (from /proc);
#   2. a `perf record` (cpu-clock, DWARF call graphs) of the gateway under that load, and a
#      summary: the share of samples under each stage of a request, and the hottest functions.
# Needs `perf` (Debian's linux-perf; installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/profile-gateway
if [[ ${POLICY:-allowed} == denied ]]; then limit=1; burst=1; else limit=1000000; burst=1000000; fi
mkdir -p "$out"
command -v perf >/dev/null || { apt-get update && apt-get install -y linux-perf; }
cargo build --profile profiling -p turnstile-gateway -p turnstile-load >&2
bin=target/profiling
source loadtest/lib.sh

bare_port=$(port)
start bare "$bin/turnstile-load" serve-trivial --listen "127.0.0.1:$bare_port"
wait_port bare "$bare_port"
gateway_port=$(port)
gateway=(env TURNSTILE_LOG=warn TURNSTILE_TRUSTED_PROXIES='["127.0.0.1/32"]'
  "TURNSTILE_POLICIES__DEFAULT__LIMIT=$limit" TURNSTILE_POLICIES__DEFAULT__PERIOD=1s
  "TURNSTILE_POLICIES__DEFAULT__BURST=$burst"
  "$bin/turnstile" --backend concurrent --listen "127.0.0.1:$gateway_port")
start gateway "${gateway[@]}"
wait_ready gateway "${gateway[@]}"

cat >"$scratch/load.toml" <<TOML
name = "profile"
mode = "closed"
rate = 1000
connections = 64
duration = "8s"
warmup = "500ms"
timeout = "2s"
[traffic]
route = "gateway"
keys = { distribution = "uniform", count = 10000 }
TOML

cpu_per_request() { # pid port → "throughput µs-per-request", over 5 s inside the 8 s run
  "$bin/turnstile-load" run --scenario "$scratch/load.toml" --target "http://127.0.0.1:$2" \
    --json "$scratch/run.json" --quiet >/dev/null &
  local load=$! t0 t1
  sleep 1.5; t0=$(cpu_ticks "$1"); sleep 5; t1=$(cpu_ticks "$1")
  wait "$load"
  python3 -c 'import json, sys
rate = json.load(open(sys.argv[1]))["throughput"]; cpu = int(sys.argv[2]) / int(sys.argv[3])
print(f"{rate:.0f} {cpu / (5 * rate) * 1e6:.2f}")' \
    "$scratch/run.json" "$((t1 - t0))" "$(getconf CLK_TCK)"
}

{
  echo "== policy: ${POLICY:-allowed}; machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc --version)"
  echo "| round | bare route req/s | bare µs CPU/request | gateway req/s | gateway µs CPU/request | throughput ratio | CPU ratio |"
  echo "|---|---|---|---|---|---|---|"
  for round in 1 2 3; do
    read -r bare_rate bare_cpu < <(cpu_per_request "${pid[bare]}" "$bare_port")
    read -r gw_rate gw_cpu < <(cpu_per_request "${pid[gateway]}" "$gateway_port")
    python3 -c 'import sys
r, br, bc, gr, gc = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {r} | {br:,.0f} | {bc:.2f} | {gr:,.0f} | {gc:.2f} | {gr / br:.3f} | {gc / bc:.3f} |")' \
      "$round" "$bare_rate" "$bare_cpu" "$gw_rate" "$gw_cpu"
  done
} | tee "$out/cpu.md"

"$bin/turnstile-load" run --scenario "$scratch/load.toml" --target "http://127.0.0.1:$gateway_port" --quiet >/dev/null &
load=$!
sleep 2
perf record -F 1999 -e cpu-clock --call-graph dwarf,32768 -p "${pid[gateway]}" -o "$out/perf.data" -- sleep 4 2>/dev/null
wait "$load"
perf script -i "$out/perf.data" -F ip,sym 2>/dev/null >"$out/stacks.txt"
"$bin/turnstile-load" report profile "$out/stacks.txt" | tee "$out/summary.md"
