#!/usr/bin/env bash
# The in-process backend benchmarks behind docs/BENCHMARKS.md, in one command (~5 minutes):
#   1. criterion: ns per check, each backend vs governor, 1 and 2 threads, hot key / many keys;
#   2. the real-time bottleneck: checks/s with 1 ms of I/O-like work per check.
# Prints the machine, then both Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "## Machine"
echo "- $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB"
echo "- $(uname -sr), $(rustc --version)"
echo "- clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)"
echo

cargo bench -p turnstile-backend --bench check >&2
echo "## ns per check (median; ratio to governor in the same group)"
cargo run --profile dist -q -p turnstile-load -- report criterion target/criterion
echo

echo "## Throughput with 1 ms of I/O-like work per check (512 callers, 2 tokio workers)"
cargo bench -p turnstile-backend --bench bottleneck 2>/dev/null | grep '^|'
