#!/usr/bin/env bash
# Turnstile side by side with what users would pick instead, on this machine, in one run:
#
#   bash loadtest/bench-peers.sh            # ~15 minutes; writes target/bench-peers/
#
# 1. HTTP: a bare axum route (the baseline: no limiter at all), Turnstile's gateway route on
#    the actor, sharded and concurrent backends, an axum server with tower_governor
#    (crates/turnstile-peer-governor) and nginx limit_req (loadtest/peers/), all limiting per
#    client address from X-Forwarded-For with the same GCRA policy:
#      allowed: 1,000,000/s, burst 1,000,000 (everything passes: the limiter's own cost)
#      denied:  1/s, burst 1 (almost everything is refused)
#    with many keys (10,000 clients, uniform) and one hot key. For each: the maximum
#    throughput (closed loop, 64 connections, 3 s), the server's CPU time per request during
#    that run (from /proc, the process and its children: less noisy than throughput on a
#    shared machine, and what a limiter costs its host), and p50/p99 at a fixed open-loop rate
#    of 70% of the baseline's maximum in the same round. 3 interleaved rounds; every figure is
#    a ratio to the baseline of its own round; the tables give the median and the spread.
#    Turnstile runs with its defaults (the concurrency limit on), as users run it.
# 2. Scaling: loadtest/scaling.toml's sweep (actor, sharded 1-64 shards; no work, CPU, sleep).
# 3. In-process: criterion (each backend vs governor) and heap bytes per key at 1M keys.
#
# Environment: ROUNDS (default 3), TARGETS (a subset), EXTRAS=0 (HTTP part only).
# Needs nginx (Debian package; installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
out=target/bench-peers
mkdir -p "$out"
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || { apt-get update && apt-get install -y nginx; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --profile dist -p turnstile-gateway -p turnstile-load -p turnstile-peer-governor >&2
bin=target/dist
source loadtest/lib.sh

echo "== machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc --version)" | tee "$out/machine.txt"

declare -A url pid_of
p=$(port); url[baseline]="http://127.0.0.1:$p"
start baseline "$bin/turnstile-load" serve-trivial --listen "127.0.0.1:$p"
wait_port baseline "$p"
for policy in allowed denied; do
  if [[ $policy == allowed ]]; then limit=1000000; burst=1000000; else limit=1; burst=1; fi
  for backend in actor sharded concurrent; do
    p=$(port); url[$policy/$backend]="http://127.0.0.1:$p"; pid_of[$policy/$backend]=$policy-$backend
    gateway=(env TURNSTILE_LOG=warn TURNSTILE_TRUSTED_PROXIES='["127.0.0.1/32"]'
      "TURNSTILE_POLICIES__DEFAULT__LIMIT=$limit" TURNSTILE_POLICIES__DEFAULT__PERIOD=1s
      "TURNSTILE_POLICIES__DEFAULT__BURST=$burst"
      "$bin/turnstile" --backend "$backend" --listen "127.0.0.1:$p")
    start "$policy-$backend" "${gateway[@]}"
    wait_ready "$policy-$backend" "${gateway[@]}"
  done
  p=$(port); url[$policy/tower_governor]="http://127.0.0.1:$p"; pid_of[$policy/tower_governor]=$policy-governor
  start "$policy-governor" "$bin/peer-governor" --listen "127.0.0.1:$p" --limit $limit --period 1s --burst $burst
  wait_port "$policy-governor" "$p"
  p=$(port); url[$policy/nginx]="http://127.0.0.1:$p"; pid_of[$policy/nginx]=$policy-nginx
  mkdir -p "$scratch/nginx-$policy/html"
  echo ok >"$scratch/nginx-$policy/html/ok.txt"
  # nginx's workers drop root privileges (to nobody): they must be able to read the page.
  chmod -R a+rX "$scratch"
  sed -e "s/@PORT@/$p/" -e "s/@RATE@/$limit/" -e "s/@BURST@/$((burst - 1))/" -e "s/ burst=0 / /" loadtest/peers/nginx-limit-req.conf \
    >"$scratch/nginx-$policy/nginx.conf"
  start "$policy-nginx" "$nginx_bin" -p "$scratch/nginx-$policy/" -c "$scratch/nginx-$policy/nginx.conf" -e stderr
  wait_port "$policy-nginx" "$p"
done

scenario() { # mode keys → a scenario file
  local file="$scratch/$1-$2.toml"
  local distribution='{ distribution = "uniform", count = 10000 }'
  [[ $2 == hot ]] && distribution='{ distribution = "hot" }'
  cat >"$file" <<TOML
name = "peers-$1-$2"
mode = "$1"
rate = 1000
connections = 64
duration = "3s"
warmup = "500ms"
timeout = "2s"
[traffic]
route = "gateway"
keys = $distribution
TOML
  echo "$file"
}
results="$out/results.jsonl"
: >"$results"
measure() { # round policy keys target mode url server [rate]
  local json="$scratch/last.json" extra=() load ticks0=0 ticks1=0
  [[ -n ${8:-} ]] && extra=(--rate "$8")
  "$bin/turnstile-load" run --scenario "$(scenario "$5" "$3")" --target "$6" --json "$json" --quiet "${extra[@]}" >/dev/null &
  load=$!
  # Closed loop only: CPU is sampled over 2 s well inside the 3 s measured window (after the
  # 500 ms warm-up). Open-loop runs, whose percentiles are the point, are left undisturbed.
  if [[ $5 == closed ]]; then
    sleep 1; ticks0=$(cpu_ticks "${pid[$7]}"); sleep 2; ticks1=$(cpu_ticks "${pid[$7]}")
  fi
  wait "$load"
  python3 - "$json" "$1" "$2" "$3" "$4" "$5" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
o = r["outcomes"]
cpu_seconds = int(sys.argv[7]) / int(sys.argv[8])
print(json.dumps({"round": int(sys.argv[2]), "policy": sys.argv[3], "keys": sys.argv[4], "target": sys.argv[5],
  "mode": sys.argv[6], "throughput": r["throughput"], "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
  "cpu_us_per_request": cpu_seconds / (2 * r["throughput"]) * 1e6 if r["throughput"] else None,
  "allowed": o["allowed"], "limited": o["limited"], "other": r["requests"] - o["allowed"] - o["limited"]}))
PY
}
# TARGETS="concurrent nginx" measures a subset; EXTRAS=0 skips parts 2 and 3.
read -r -a targets <<<"${TARGETS:-actor sharded concurrent tower_governor nginx}"
for round in $(seq 1 "$rounds"); do
  echo "== round $round" >&2
  measure "$round" none many baseline closed "${url[baseline]}" baseline
  base=$(tail -1 "$results" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["throughput"] * 0.7))')
  for keys in many hot; do
    measure "$round" none "$keys" baseline open "${url[baseline]}" baseline "$base"
  done
  for policy in allowed denied; do
    for keys in many hot; do
      for target in "${targets[@]}"; do
        measure "$round" "$policy" "$keys" "$target" closed "${url[$policy/$target]}" "${pid_of[$policy/$target]}"
        measure "$round" "$policy" "$keys" "$target" open "${url[$policy/$target]}" "${pid_of[$policy/$target]}" "$base"
      done
    done
  done
done
"$bin/turnstile-load" report peers "$results" | tee "$out/peers.md"
[[ ${EXTRAS:-1} == 0 ]] && exit 0

echo
echo "## Scaling: single actor vs sharded as work per check grows" | tee "$out/scaling.md"
"$bin/turnstile-load" compare --scenario loadtest/scaling.toml --backends actor,sharded --quiet \
  --out "$out/scaling-report" >/dev/null 2>&1
# The heading, a blank line, then the table up to the next blank line.
awk '/^## Throughput/ {on = 1} on {print} on && /^\|/ {table = 1} table && /^$/ {exit}' \
  "$out/scaling-report/report.md" | tee -a "$out/scaling.md"

echo
echo "## In-process: heap bytes per key at 1,000,000 IPv4 keys" | tee "$out/memory.md"
cargo bench -q -p turnstile-backend --bench memory 2>/dev/null | tee -a "$out/memory.md"

echo
echo "## In-process: criterion, each backend vs governor" | tee "$out/criterion.md"
cargo bench -q -p turnstile-backend --bench check >/dev/null 2>&1
"$bin/turnstile-load" report criterion target/criterion | tee -a "$out/criterion.md"
