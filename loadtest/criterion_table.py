#!/usr/bin/env python3
"""Prints the Markdown table for docs/BENCHMARKS.md from criterion's saved estimates.

Run after `cargo bench -p turnstile-backend --bench check`. Reads
target/criterion/check_<shape>_<n>_thread/<contender>/<n>/new/estimates.json and reports each
contender's median time per check, and its ratio to governor's in the same group.
"""
import json
import pathlib
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
SHAPES = ["hot_key", "many_keys"]
THREADS = [1, 2]
CONTENDERS = ["governor", "concurrent", "sharded", "actor"]


def median_ns(shape, threads, contender):
    path = ROOT / f"check_{shape}_{threads}_thread" / contender / str(threads) / "new" / "estimates.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"]


def main():
    columns = [(shape, threads) for shape in SHAPES for threads in THREADS]
    header = "| contender | " + " | ".join(f"{s.replace('_', ' ')}, {t} thread{'s' if t > 1 else ''}" for s, t in columns) + " |"
    print(header)
    print("|---" * (len(columns) + 1) + "|")
    for contender in CONTENDERS:
        cells = []
        for shape, threads in columns:
            value = median_ns(shape, threads, contender)
            reference = median_ns(shape, threads, "governor")
            if value is None:
                cells.append("n/a")
            elif contender == "governor" or not reference:
                cells.append(f"{value:,.0f} ns")
            else:
                cells.append(f"{value:,.0f} ns ({value / reference:.2f}×)")
        print(f"| {contender} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
