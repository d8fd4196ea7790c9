#!/usr/bin/env bash
# Is turnstile-load the bottleneck? Its maximum rate (closed loop) against wrk's, both driving
# the same bare axum route (`turnstile-load serve-trivial`) with 64 connections, in 3
# interleaved rounds of 5 s; prints each round and the median ratio. Needs wrk (Debian package;
# installed here if missing). About 40 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update && apt-get install -y wrk; }
cargo build --profile dist -p turnstile-load >&2
bin=target/dist/turnstile-load
source loadtest/lib.sh
p=$(port)
start server "$bin" serve-trivial --listen "127.0.0.1:$p"
wait_port server "$p"
result="$scratch/result.json"
echo "| round | wrk req/s | turnstile-load req/s | ratio |"
echo "|---|---|---|---|"
ratios=()
for round in 1 2 3; do
  wrk_rate=$(wrk -t2 -c64 -d5s "http://127.0.0.1:$p/" | awk '/^Requests\/sec:/ {print $2}')
  "$bin" run --scenario loadtest/max-rate.toml --target "http://127.0.0.1:$p" --json "$result" --quiet >/dev/null
  ours=$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['throughput']))" "$result")
  ratio=$(python3 -c "print(f'{$ours / $wrk_rate:.2f}')")
  ratios+=("$ratio")
  echo "| $round | ${wrk_rate%.*} | $ours | $ratio |"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)
echo
echo "median ratio turnstile-load / wrk: $median"
