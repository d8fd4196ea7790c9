#!/usr/bin/env bash
# The gateway route's own cost by two yardsticks, side by side in one run:
#
#   bash loadtest/bench-wrk.sh          # ~4 minutes; writes target/bench-wrk/
#
# Four servers on loopback: the bare axum route (`turnstile-load serve-trivial`), the bare
# route answering the gateway's denied response byte for byte (`serve-trivial --mirror`: the
# physical limit of the denied path, a 429 with the same headers and body and no decision
# behind it), and Turnstile's gateway route (concurrent backend, its defaults) allowing
# everything (1,000,000/s) or denying nearly everything (1/s, burst 1).
# Each is driven, in turn and in 3 interleaved rounds, by
#   wrk -t1 -c32 and wrk -t1 -c64 (the external yardstick, 6 s each), and
#   turnstile-load closed loop, 64 connections (the yardstick of bench-peers.sh),
# and measured by the server's CPU time per request (user + system from /proc, sampled over
# 4 s inside the run): steadier than throughput on a shared machine, and what a limiter costs
# its host. Every figure is a ratio to the bare route in the same round; the table gives the
# median and the spread over rounds. Needs wrk (Debian package; installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
out=target/bench-wrk
mkdir -p "$out"
command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
cargo build --profile dist -p turnstile-gateway -p turnstile-load >&2
bin=${CARGO_TARGET_DIR:-target}/dist
source loadtest/lib.sh

echo "== machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc --version), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)" | tee "$out/machine.txt"

declare -A url
p=$(port); url[bare]="http://127.0.0.1:$p/"
start bare "$bin/turnstile-load" serve-trivial --listen "127.0.0.1:$p"
wait_port bare "$p"
for policy in allowed denied; do
  if [[ $policy == allowed ]]; then limit=1000000; burst=1000000; else limit=1; burst=1; fi
  p=$(port); url[$policy]="http://127.0.0.1:$p/"
  gateway=(env TURNSTILE_LOG=warn "TURNSTILE_POLICIES__DEFAULT__LIMIT=$limit"
    TURNSTILE_POLICIES__DEFAULT__PERIOD=1s "TURNSTILE_POLICIES__DEFAULT__BURST=$burst"
    "$bin/turnstile" --listen "127.0.0.1:$p")
  start "$policy" "${gateway[@]}"
  wait_ready "$policy" "${gateway[@]}"
done
p=$(port); url[mirror]="http://127.0.0.1:$p/"
start mirror "$bin/turnstile-load" serve-trivial --listen "127.0.0.1:$p" --mirror "${url[denied]}"
wait_port mirror "$p"

scenario="$scratch/closed.toml"
cat >"$scenario" <<'TOML'
name = "bench-wrk-closed"
mode = "closed"
rate = 1000
connections = 64
duration = "6s"
warmup = "500ms"
timeout = "2s"
[traffic]
route = "gateway"
keys = { distribution = "hot" }
TOML

results="$out/results.jsonl"
: >"$results"
measure() { # round yardstick target
  local round=$1 yardstick=$2 target=$3 load ticks0 ticks1 requests
  local log="$scratch/load.out"
  case $yardstick in
    wrk-c32) wrk -t1 -c32 -d6s "${url[$target]}" >"$log" & ;;
    wrk-c64) wrk -t1 -c64 -d6s "${url[$target]}" >"$log" & ;;
    turnstile-load-c64)
      "$bin/turnstile-load" run --scenario "$scenario" --target "${url[$target]%/}" \
        --json "$scratch/load.json" --quiet >/dev/null & ;;
  esac
  load=$!
  sleep 1; ticks0=$(cpu_ticks "${pid[$target]}"); sleep 4; ticks1=$(cpu_ticks "${pid[$target]}")
  wait "$load"
  if [[ $yardstick == wrk-* ]]; then
    requests=$(awk '/^Requests\/sec:/ {print $2}' "$log")
  else
    requests=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['throughput'])" "$scratch/load.json")
  fi
  python3 -c '
import json, sys
rnd, yardstick, target, ticks, hz, rate = sys.argv[1:]
cpu = int(ticks) / int(hz)
print(json.dumps({"round": int(rnd), "yardstick": yardstick, "target": target, "rate": float(rate),
  "cpu_us_per_request": cpu / (4 * float(rate)) * 1e6}))' \
    "$round" "$yardstick" "$target" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" "$requests" >>"$results"
}
for round in $(seq 1 "$rounds"); do
  echo "== round $round" >&2
  for yardstick in wrk-c32 wrk-c64 turnstile-load-c64; do
    for target in bare mirror allowed denied; do
      measure "$round" "$yardstick" "$target"
    done
  done
done
"$bin/turnstile-load" report wrk "$results" | tee "$out/wrk.md"
