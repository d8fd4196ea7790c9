#!/usr/bin/env python3
"""Formats bench-peers.sh's results (JSON lines) as Markdown tables of ratios to the baseline.

Every ratio compares a target with the bare axum route measured in the same round: throughput
(closed loop) as target / baseline (higher is better), the server's CPU time per request in
that closed-loop run as target / baseline (lower is better; what the limiter costs its host,
and steadier than throughput when the machine is shared), latency (open loop at 70% of the
baseline's maximum) as target / baseline (lower is better). Each cell is the median over the
rounds, with the spread (min-max) after it.
"""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
baseline_closed = {r["round"]: r for r in rows if r["target"] == "baseline" and r["mode"] == "closed"}
baseline_open = {(r["round"], r["keys"]): r for r in rows if r["target"] == "baseline" and r["mode"] == "open"}

cells = defaultdict(list)
for r in rows:
    if r["target"] == "baseline":
        continue
    key = (r["policy"], r["keys"], r["target"])
    if r["mode"] == "closed":
        base = baseline_closed[r["round"]]
        cells[key + ("throughput",)].append(r["throughput"] / base["throughput"])
        if r.get("cpu_us_per_request") and base.get("cpu_us_per_request"):
            cells[key + ("cpu",)].append(r["cpu_us_per_request"] / base["cpu_us_per_request"])
        cells[key + ("admitted",)].append(r["allowed"] / max(1, r["allowed"] + r["limited"] + r["other"]))
        cells[key + ("other",)].append(r["other"])
    else:
        base = baseline_open[(r["round"], r["keys"])]
        cells[key + ("p50",)].append(r["p50"] / base["p50"])
        cells[key + ("p99",)].append(r["p99"] / base["p99"])


def cell(values, percent=False):
    if not values:
        return "-"
    median = statistics.median(values)
    if percent:
        return f"{median:.0%}"
    return f"{median:.2f} ({min(values):.2f}-{max(values):.2f})"


base_rates = [b["throughput"] for b in baseline_closed.values()]
print(f"Baseline (bare axum route, closed loop, 64 connections): median {statistics.median(base_rates):,.0f} req/s "
      f"over {len(base_rates)} rounds ({min(base_rates):,.0f}-{max(base_rates):,.0f}).")
base_cpu = [b["cpu_us_per_request"] for b in baseline_closed.values() if b.get("cpu_us_per_request")]
if base_cpu:
    print(f"Baseline server CPU per request (closed loop): median {statistics.median(base_cpu):.2f} µs "
          f"({min(base_cpu):.2f}-{max(base_cpu):.2f}).")
opens = [b for b in baseline_open.values()]
print(f"Open-loop rate for the latency columns: 70% of each round's baseline maximum; baseline p50 "
      f"{statistics.median([b['p50'] for b in opens]):.2f} ms, p99 {statistics.median([b['p99'] for b in opens]):.2f} ms.")
print()
print("| policy | keys | target | throughput / baseline | CPU per request / baseline | p50 / baseline | p99 / baseline | admitted | not decided |")
print("|---|---|---|---|---|---|---|---|---|")
targets = [t for t in ["actor", "sharded", "concurrent", "tower_governor", "nginx"]
           if any(r["target"] == t for r in rows)]
for policy in ["allowed", "denied"]:
    for keys in ["many", "hot"]:
        for target in targets:
            k = (policy, keys, target)
            print(f"| {policy} | {keys} | {target} | {cell(cells[k + ('throughput',)])} | {cell(cells[k + ('cpu',)])} "
                  f"| {cell(cells[k + ('p50',)])} "
                  f"| {cell(cells[k + ('p99',)])} | {cell(cells[k + ('admitted',)], percent=True)} "
                  f"| {int(statistics.median(cells[k + ('other',)])) if cells[k + ('other',)] else '-'} |")
