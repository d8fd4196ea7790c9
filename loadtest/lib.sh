# shellcheck shell=bash
# Helpers shared by the benchmark scripts in loadtest/ (sourced, not run):
#   port          a free loopback TCP port
#   $scratch      a temporary directory, removed on exit
#   pids+=($!)    a background process to kill on exit
#   start NAME COMMAND...
#                 runs COMMAND in the background (killed on exit), its output in
#                 $scratch/NAME.log, its process id in ${pid[NAME]}
#   cpu_ticks PID the CPU time (user + system, clock ticks) of PID and its children
#   wait_ready NAME COMMAND...
#                 until the turnstile gateway started as NAME with COMMAND (its env and flags)
#                 is ready: `COMMAND --readiness-check` (GET /readyz) exits 0
#   wait_port NAME PORT
#                 until a server that is not turnstile (nginx, redis, the governor peer,
#                 `turnstile-load serve-trivial`), started as NAME, accepts connections on
#                 127.0.0.1:PORT
# Both wait at most 10 s, then print the server's log and exit: no fixed sleeps at start-up.
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
scratch=$(mktemp -d)
pids=()
declare -gA pid
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
cpu_ticks() {
  # awk, not python: a sampler that takes tens of milliseconds of CPU shows up in the p99s.
  local kids
  kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
  for p in "$1" $kids; do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{sub(/^.*\) /, ""); total += $12 + $13} END {print total + 0}'
}
start() {
  local name=$1
  shift
  "$@" >"$scratch/$name.log" 2>&1 &
  pids+=($!)
  # shellcheck disable=SC2034 # read by the scripts that source this file
  pid[$name]=$!
}
poll() { # name, then a command: run it every 0.1 s until it succeeds, 100 tries at most
  local name=$1 try
  shift
  for ((try = 0; try < 100; try++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$name: not ready after 10 s ($*):" >&2
  "$@" >&2 || true
  echo "--- $scratch/$name.log:" >&2
  cat "$scratch/$name.log" >&2 || true
  exit 1
}
wait_ready() {
  local name=$1
  shift
  poll "$name" "$@" --readiness-check
}
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1"); }
wait_port() { poll "$1" accepts "$2"; }
