#!/usr/bin/env bash
# The redis backend next to the in-process ones, next to Redis itself, and on a Redis Cluster.
#
# 1. Allowed traffic: a `dist` `turnstile` per backend (actor, sharded, concurrent, redis on one
#    Redis, redis in cluster mode on a 3-primary Redis Cluster) on loopback, driven by
#    `turnstile-load` closed loop (loadtest/redis-check.toml: 64 connections, /v1/check over
#    10,000 keys, 5 s), 3 interleaved rounds.
# 2. `redis-benchmark` running the very script the backend runs (EVALSHA of gcra.lua, random
#    keys, 64 connections, 100,000 calls), 3 rounds: the ceiling Redis itself puts on the
#    backend on this machine.
# 3. Denied-heavy traffic (loadtest/redis-denied.toml: Zipf(2) keys, mostly denied): the
#    concurrent backend, the redis backend with its local deny cache (the default) and without
#    it, 3 interleaved rounds; Redis commands per denied check from INFO commandstats.
#    Parts 1 and 2 also sample the CPU each process spends per check (2 s in the middle of
#    each run, from /proc): where the two cores go.
# Prints every round, the medians, and the ratios. Needs redis-server, redis-cli and
# redis-benchmark (Debian package redis-server; installed here if missing). About 4 minutes
# after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }
cargo build --profile dist -p turnstile-gateway -p turnstile-load >&2
source loadtest/lib.sh

redis_port=$(port)
# In the foreground of a background job, so the exit trap stops it like every other server.
start redis-server redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$scratch"
wait_port redis-server "$redis_port"

# Three cluster primaries (no replicas: this measures throughput, not failover).
cluster_ports=()
for i in 1 2 3; do
  p=$(port)
  # A node's cluster bus is its port + 10,000.
  while ((p > 55535)); do p=$(port); done
  mkdir -p "$scratch/cluster-$p"
  start "cluster-$p" redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$scratch/cluster-$p" --cluster-enabled yes --cluster-config-file nodes.conf
  wait_port "cluster-$p" "$p"
  cluster_ports+=("$p")
done
redis-cli --cluster create $(printf '127.0.0.1:%s ' "${cluster_ports[@]}") --cluster-yes >/dev/null
poll redis-cluster sh -c "redis-cli -p ${cluster_ports[0]} CLUSTER INFO | grep -q cluster_state:ok"
seeds=$(printf 'redis://127.0.0.1:%s,' "${cluster_ports[@]}")
seeds=${seeds%,}

declare -A url
serve() { # name, then turnstile flags
  local name=$1 p
  shift
  p=$(port)
  local gateway=(env TURNSTILE_LOG=warn "$@" target/dist/turnstile --listen "127.0.0.1:$p")
  start "$name" "${gateway[@]}"
  # For the redis backend, ready means Redis answers it too.
  wait_ready "$name" "${gateway[@]}"
  url[$name]="http://127.0.0.1:$p"
}
for backend in actor sharded concurrent; do serve "$backend" TURNSTILE_BACKEND="$backend"; done
serve redis TURNSTILE_BACKEND=redis TURNSTILE_REDIS_URL="redis://127.0.0.1:$redis_port"
serve redis-no-cache TURNSTILE_BACKEND=redis TURNSTILE_REDIS_URL="redis://127.0.0.1:$redis_port" \
  TURNSTILE_REDIS__LOCAL_DENY_CACHE=false TURNSTILE_REDIS__KEY_PREFIX=nocache:
serve redis-cluster TURNSTILE_BACKEND=redis TURNSTILE_REDIS__MODE=cluster TURNSTILE_REDIS_URL="$seeds"

result="$scratch/result.json"
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(round($1))" "$result"; }
median() { # the middle of three space-separated numbers
  local values
  read -r -a values <<<"$1"
  printf '%s\n' "${values[@]}" | sort -n | sed -n 2p
}
evalsha_calls() {
  redis-cli -p "$redis_port" INFO commandstats | tr -d '\r' |
    awk -F'[=,]' '/^cmdstat_evalsha:/ { print $2 }' | grep . || echo 0
}

hz=$(getconf CLK_TCK)
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
redis_ticks() { # name: the Redis processes a gateway (or redis-benchmark) talks to
  local p total=0
  if [[ $1 == redis-cluster ]]; then
    for p in "${cluster_ports[@]}"; do total=$((total + $(cpu_ticks "${pid[cluster-$p]}"))); done
  elif [[ $1 == redis* ]]; then
    total=$(cpu_ticks "${pid[redis-server]}")
  fi
  echo "$total"
}
declare -A cpu_gateway cpu_redis cpu_rest
sample_cpu() { # name, then the load command: runs it, samples 2 s in its middle
  local name=$1 g0 r0 m0 g1 r1 m1 job
  shift
  "$@" &
  job=$!
  sleep 2
  g0=$( [[ -n ${pid[$name]:-} ]] && cpu_ticks "${pid[$name]}" || echo 0); r0=$(redis_ticks "$name"); m0=$(machine_ticks)
  sleep 2
  g1=$( [[ -n ${pid[$name]:-} ]] && cpu_ticks "${pid[$name]}" || echo 0); r1=$(redis_ticks "$name"); m1=$(machine_ticks)
  wait "$job"
  sampled="$((g1 - g0)) $((r1 - r0)) $((m1 - m0 - (g1 - g0) - (r1 - r0)))"
}
per_check() { # ticks over the 2 s sample, checks/s: µs of CPU per check
  python3 -c "print(round($1 / $hz / 2 / $2 * 1e6, 1))"
}

allowed=(actor sharded concurrent redis redis-cluster)
declare -A rates
echo "## Allowed traffic: /v1/check, closed loop, 64 connections, 10,000 keys (checks/s)"
echo
echo "| round | $(printf '%s | ' "${allowed[@]}")"
echo "|---|$(printf -- '---|%.0s' "${allowed[@]}")"
for round in 1 2 3; do
  row="| $round |"
  for name in "${allowed[@]}"; do
    sample_cpu "$name" target/dist/turnstile-load run --scenario loadtest/redis-check.toml \
      --target "${url[$name]}" --json "$result" --quiet >/dev/null
    rate=$(field "r['throughput']")
    rates[$name]+="$rate "
    read -r g r rest <<<"$sampled"
    cpu_gateway[$name]+="$(per_check "$g" "$rate") "
    cpu_redis[$name]+="$(per_check "$r" "$rate") "
    cpu_rest[$name]+="$(per_check "$rest" "$rate") "
    row+=" $rate |"
  done
  echo "$row"
done
echo
for name in "${allowed[@]}"; do echo "median $name: $(median "${rates[$name]}")"; done

sha=$(redis-cli -p "$redis_port" SCRIPT LOAD "$(cat crates/turnstile-backend/src/redis_backend/gcra.lua)")
echo
echo "## redis-benchmark: EVALSHA of the backend's own script (calls/s)"
bench_rates=""
for round in 1 2 3; do
  # 10 per second, burst 5, cost 1, Redis's clock, no expiry slack. 200,000 calls: long
  # enough (~6 s here) for the CPU sample in its middle.
  sample_cpu redis-benchmark sh -c "redis-benchmark -p $redis_port -c 64 -n 200000 -r 10000 -q \
    EVALSHA $sha 1 'bench:__rand_int__' 100000000 500000000 1 5 '' 0 > $scratch/bench.out"
  rate=$(tr '\r' '\n' <"$scratch/bench.out" | awk '/requests per second/ { for (i = 2; i <= NF; i++) if ($i == "requests") print $(i - 1) }' | tail -1)
  read -r g r rest <<<"$sampled"
  cpu_redis[redis-benchmark]+="$(per_check "$r" "${rate%.*}") "
  cpu_rest[redis-benchmark]+="$(per_check "$rest" "${rate%.*}") "
  echo "round $round: ${rate%.*}"
  bench_rates+="${rate%.*} "
done
redis_median=$(median "$bench_rates")
echo "median redis-benchmark: $redis_median"

echo
echo "## CPU per check (µs, median of 3 rounds; 2 s sampled mid-run; rest = load generator, kernel, other)"
echo
echo "| run | gateway | Redis | rest | total |"
echo "|---|---|---|---|---|"
for name in concurrent redis redis-cluster redis-benchmark; do
  g=$( [[ $name == redis-benchmark ]] && echo 0 || median "${cpu_gateway[$name]}")
  r=$( [[ $name == concurrent ]] && echo 0 || median "${cpu_redis[$name]}")
  rest=$(median "${cpu_rest[$name]}")
  echo "| $name | $g | $r | $rest | $(python3 -c "print(round($g + $r + $rest, 1))") |"
done

denied=(concurrent redis redis-no-cache)
declare -A denied_rates per_denied
echo
echo "## Denied-heavy traffic: /v1/check, closed loop, 64 connections, Zipf(2) keys (checks/s; % denied; Redis commands per denied check)"
echo
echo "| round | $(printf '%s | ' "${denied[@]}")"
echo "|---|$(printf -- '---|%.0s' "${denied[@]}")"
for round in 1 2 3; do
  row="| $round |"
  for name in "${denied[@]}"; do
    before=$(evalsha_calls)
    target/dist/turnstile-load run --scenario loadtest/redis-denied.toml \
      --target "${url[$name]}" --json "$result" --quiet >/dev/null
    after=$(evalsha_calls)
    rate=$(field "r['throughput']")
    share=$(field "100 * r['outcomes']['limited'] / r['requests']")
    denied_rates[$name]+="$rate "
    cell=" $rate; ${share}%"
    if [[ $name != concurrent ]]; then
      # Warm-up checks reach Redis too: counted against the measured window's denials, so
      # this is an upper bound. Admitted checks cost one command each.
      per=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); o=r['outcomes']; print(f\"{max($after - $before - o['allowed'], 0) / max(o['limited'], 1):.3f}\")" "$result")
      per_denied[$name]+="$per "
      cell+="; $per"
    fi
    row+="$cell |"
  done
  echo "$row"
done
echo
for name in "${denied[@]}"; do echo "median $name: $(median "${denied_rates[$name]}")"; done
for name in redis redis-no-cache; do echo "median Redis commands per denied check, $name: $(median "${per_denied[$name]}")"; done

echo
echo "## Ratios (medians)"
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "redis backend / redis-benchmark EVALSHA (allowed): $(ratio "$(median "${rates[redis]}")" "$redis_median")"
echo "redis backend / concurrent backend (allowed): $(ratio "$(median "${rates[redis]}")" "$(median "${rates[concurrent]}")")"
echo "redis cluster (3 primaries) / one Redis (allowed): $(ratio "$(median "${rates[redis-cluster]}")" "$(median "${rates[redis]}")")"
echo "redis backend / concurrent backend (denied-heavy): $(ratio "$(median "${denied_rates[redis]}")" "$(median "${denied_rates[concurrent]}")")"
echo "redis backend without the deny cache / concurrent backend (denied-heavy): $(ratio "$(median "${denied_rates[redis-no-cache]}")" "$(median "${denied_rates[concurrent]}")")"
