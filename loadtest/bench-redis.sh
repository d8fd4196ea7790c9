#!/usr/bin/env bash
# The redis backend next to the in-process ones, and next to Redis itself.
#
# 1. Gateway throughput: a release `turnstile` per backend (actor, sharded, concurrent, redis)
#    on loopback, driven by `turnstile-load` closed loop (loadtest/redis-check.toml: 64
#    connections, /v1/check over 10,000 keys, 5 s), in 3 interleaved rounds.
# 2. `redis-benchmark` running the very script the backend runs (EVALSHA of gcra.lua, random
#    keys, 64 connections, 100,000 calls), 3 rounds: the ceiling Redis itself puts on the
#    backend on this machine.
# Prints every round, the medians, and the ratios. Needs redis-server and redis-benchmark
# (Debian package redis-server; installed here if missing). About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }
cargo build --profile dist -p turnstile-gateway -p turnstile-load >&2
source loadtest/lib.sh

redis_port=$(port)
# In the foreground of a background job, so the exit trap stops it like every other server.
start redis-server redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$scratch"
wait_port redis-server "$redis_port"

backends=(actor sharded concurrent redis)
declare -A url
for backend in "${backends[@]}"; do
  p=$(port)
  gateway=(env TURNSTILE_LOG=warn target/dist/turnstile --backend "$backend" --listen "127.0.0.1:$p"
    --redis-url "redis://127.0.0.1:$redis_port")
  start "$backend" "${gateway[@]}"
  # For the redis backend, ready means Redis answers it too.
  wait_ready "$backend" "${gateway[@]}"
  url[$backend]="http://127.0.0.1:$p"
done

result="$scratch/result.json"
declare -A rates
echo "## Gateway throughput, /v1/check, closed loop, 64 connections (checks/s)"
echo
echo "| round | $(printf '%s | ' "${backends[@]}")"
echo "|---|$(printf -- '---|%.0s' "${backends[@]}")"
for round in 1 2 3; do
  row="| $round |"
  for backend in "${backends[@]}"; do
    target/dist/turnstile-load run --scenario loadtest/redis-check.toml \
      --target "${url[$backend]}" --json "$result" --quiet >/dev/null
    rate=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(round(r['throughput']))" "$result")
    rates[$backend]+="$rate "
    row+=" $rate |"
  done
  echo "$row"
done
median() { # the middle of three space-separated numbers
  local values
  read -r -a values <<<"$1"
  printf '%s\n' "${values[@]}" | sort -n | sed -n 2p
}
echo
for backend in "${backends[@]}"; do
  echo "median $backend: $(median "${rates[$backend]}")"
done

sha=$(redis-cli -p "$redis_port" SCRIPT LOAD "$(cat crates/turnstile-backend/src/redis_backend/gcra.lua)")
echo
echo "## redis-benchmark: EVALSHA of the backend's own script (calls/s)"
bench_rates=""
for round in 1 2 3; do
  # 10 per second, burst 5, cost 1, Redis's clock, no expiry slack.
  rate=$(redis-benchmark -p "$redis_port" -c 64 -n 100000 -r 10000 -q \
    EVALSHA "$sha" 1 "bench:__rand_int__" 100000000 500000000 1 5 "" 0 \
    | tr '\r' '\n' | awk '/requests per second/ { for (i = 2; i <= NF; i++) if ($i == "requests") print $(i - 1) }' | tail -1)
  echo "round $round: ${rate%.*}"
  bench_rates+="${rate%.*} "
done
redis_median=$(median "$bench_rates")
echo "median redis-benchmark: $redis_median"
echo
gateway_redis=$(median "${rates[redis]}")
concurrent=$(median "${rates[concurrent]}")
python3 -c "print(f'redis backend / redis-benchmark EVALSHA: {$gateway_redis / $redis_median:.2f}')"
python3 -c "print(f'redis backend / concurrent backend: {$gateway_redis / $concurrent:.2f}')"
