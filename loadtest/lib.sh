# Helpers shared by the benchmark scripts in loadtest/ (sourced, not run):
#   port          a free loopback TCP port
#   $scratch      a temporary directory, removed on exit
#   pids+=($!)    a background process to kill on exit
#   cpu_ticks PID the CPU time (user + system, clock ticks) of PID and its children
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
scratch=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
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
