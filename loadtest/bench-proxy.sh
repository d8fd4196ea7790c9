#!/usr/bin/env bash
# Turnstile as a rate-limiting reverse proxy, side by side with nginx doing the same, in one run:
#
#   bash loadtest/bench-proxy.sh            # ~3 minutes after the build; writes target/bench-proxy/
#
# One application (nginx serving a 100-byte file, loadtest/peers/nginx-upstream.conf) behind:
#   upstream:  nothing (the application alone: the ceiling);
#   nginx:     limit_req + proxy_pass with keep-alive upstream connections
#              (loadtest/peers/nginx-proxy.conf);
#   turnstile: `turnstile --upstream` on the concurrent backend, its defaults otherwise.
# Both proxies limit per client address from X-Forwarded-For (10,000 clients, uniform) with the
# same GCRA policy:
#   allowed: 1,000,000/s, burst 1,000,000 (everything passes: the cost of limiting + proxying)
#   denied:  1/s, burst 1 (almost everything is refused: a denial never touches the application)
# For each: the maximum throughput (closed loop, 64 connections, 3 s after a 500 ms warm-up) and
# the proxy's CPU µs per request in that run (from /proc, sampled over 2 s inside it), then p50
# and p99 at a fixed open-loop rate: 70% of nginx's maximum for that traffic in the same round.
# 3 interleaved rounds; `turnstile-load report proxy` gives the medians and the ratios to nginx.
#
# Environment: ROUNDS (default 3).
# Needs nginx (Debian package; installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
out=target/bench-proxy
mkdir -p "$out"
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || { apt-get update && apt-get install -y nginx; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --profile dist -p turnstile-gateway -p turnstile-load >&2
bin=${CARGO_TARGET_DIR:-target}/dist
source loadtest/lib.sh
echo "== machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(rustc --version), $("$nginx_bin" -v 2>&1)" | tee "$out/machine.txt"

nginx_site() { # name conf port [sed expressions...] → starts nginx from loadtest/peers/<conf>
  local name=$1 conf=$2 port=$3 dir="$scratch/$1"
  shift 3
  mkdir -p "$dir/html"
  head -c 100 /dev/zero | tr '\0' 'x' >"$dir/html/index.html"
  # nginx's workers drop root privileges (to nobody): they must be able to read the page.
  chmod -R a+rX "$scratch"
  sed -e "s/@PORT@/$port/" "$@" "loadtest/peers/$conf" >"$dir/nginx.conf"
  start "$name" "$nginx_bin" -p "$dir/" -c "$dir/nginx.conf" -e stderr
  wait_port "$name" "$port"
}

declare -A url
app=$(port)
nginx_site upstream nginx-upstream.conf "$app"
url[allowed/upstream]="http://127.0.0.1:$app"
for traffic in allowed denied; do
  if [[ $traffic == allowed ]]; then limit=1000000; burst=1000000; else limit=1; burst=1; fi
  p=$(port); url[$traffic/nginx]="http://127.0.0.1:$p"
  nginx_site "$traffic-nginx" nginx-proxy.conf "$p" -e "s/@UPSTREAM@/127.0.0.1:$app/" \
    -e "s/@RATE@/$limit/" -e "s/@BURST@/$((burst - 1))/" -e "s/ burst=0 / /"
  p=$(port); url[$traffic/turnstile]="http://127.0.0.1:$p"
  gateway=(env TURNSTILE_LOG=warn TURNSTILE_TRUSTED_PROXIES='["127.0.0.1/32"]'
    "TURNSTILE_POLICIES__DEFAULT__LIMIT=$limit" TURNSTILE_POLICIES__DEFAULT__PERIOD=1s
    "TURNSTILE_POLICIES__DEFAULT__BURST=$burst"
    "$bin/turnstile" --backend concurrent --listen "127.0.0.1:$p" --upstream "http://127.0.0.1:$app")
  start "$traffic-turnstile" "${gateway[@]}"
  wait_ready "$traffic-turnstile" "${gateway[@]}"
done

scenario() { # mode → a scenario file
  local file="$scratch/$1.toml"
  cat >"$file" <<TOML
name = "proxy-$1"
mode = "$1"
rate = 1000
connections = 64
duration = "3s"
warmup = "500ms"
timeout = "2s"
[traffic]
route = "gateway"
keys = { distribution = "uniform", count = 10000 }
TOML
  echo "$file"
}
results="$out/results.jsonl"
: >"$results"
measure() { # round traffic target mode [rate]
  local json="$scratch/last.json" extra=() load ticks0=0 ticks1=0 server="$2-$3"
  [[ $3 == upstream ]] && server=upstream
  [[ -n ${5:-} ]] && extra=(--rate "$5")
  "$bin/turnstile-load" run --scenario "$(scenario "$4")" --target "${url[$2/$3]}" --json "$json" --quiet "${extra[@]}" >/dev/null &
  load=$!
  if [[ $4 == closed ]]; then
    sleep 1; ticks0=$(cpu_ticks "${pid[$server]}"); sleep 2; ticks1=$(cpu_ticks "${pid[$server]}")
  fi
  wait "$load"
  python3 - "$json" "$1" "$2" "$3" "$4" "$((ticks1 - ticks0))" "$(getconf CLK_TCK)" >>"$results" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
cpu_seconds = int(sys.argv[6]) / int(sys.argv[7])
print(json.dumps({"round": int(sys.argv[2]), "traffic": sys.argv[3], "target": sys.argv[4],
  "mode": sys.argv[5], "throughput": r["throughput"], "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
  "cpu_us_per_request": cpu_seconds / (2 * r["throughput"]) * 1e6 if r["throughput"] else 0,
  "allowed": r["outcomes"]["allowed"], "limited": r["outcomes"]["limited"], "requests": r["requests"]}))
PY
}
for round in $(seq 1 "$rounds"); do
  echo "== round $round" >&2
  measure "$round" allowed upstream closed
  for traffic in allowed denied; do
    measure "$round" "$traffic" nginx closed
    rate=$(tail -1 "$results" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["throughput"] * 0.7))')
    measure "$round" "$traffic" turnstile closed
    measure "$round" "$traffic" nginx open "$rate"
    measure "$round" "$traffic" turnstile open "$rate"
    [[ $traffic == allowed ]] && measure "$round" allowed upstream open "$rate"
  done
done
"$bin/turnstile-load" report proxy "$results" | tee "$out/proxy.md"
