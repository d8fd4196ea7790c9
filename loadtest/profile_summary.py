#!/usr/bin/env python3
"""Summarises `perf script -F ip,sym` output of the gateway (loadtest/profile-gateway.sh).

Prints the share of all samples spent under each stage of a request (a sample counts for a
stage when any frame of its stack matches; stages nest, so shares within a group overlap),
then the functions with the most samples of their own.
"""
import re
import sys
from collections import Counter

STAGES = [
    ("kernel: socket writes (including loopback delivery to the client)", r"__GI___writev|\bdo_writev\b"),
    ("kernel: socket reads", r"__libc_recv|__sys_recvfrom"),
    ("kernel: epoll and idle (runtime parking)", r"park_internal|epoll_wait"),
    ("hyper: parse the request head", r"Http1Transaction>::parse"),
    ("hyper: encode the response head", r"Http1Transaction>::encode"),
    ("the service: edge, router, handler", r"TowerToHyperServiceFuture<.*>::poll|EdgeFuture"),
    ("  handler: limit_client (the gateway route)", r"routes::limit_client"),
    ("    backend check", r"ConcurrentBackend as .*Backend>::check|ConcurrentTable::check"),
    ("    client IP and key", r"ClientIpResolver"),
    ("    rate-limit headers", r"headers::insert"),
    ("    metrics (histograms, counters)", r"Metrics>?::record|prometheus::"),
    ("    the response (status, body, JSON)", r"IntoResponse>::into_response|serde_json::"),
    ("  drop request parts", r"drop_in_place<http::request::Parts>"),
    ("allocator (malloc and free, anywhere)", r"^(malloc|_int_malloc|_int_free|cfree|__GI___libc_(malloc|free)|tcache_get|unlink_chunk|malloc_consolidate)"),
]


def stacks(path):
    current = []
    for line in open(path, errors="replace"):
        line = line.strip()
        if not line:
            if current:
                yield current
            current = []
            continue
        parts = line.split(None, 1)
        current.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[1] if len(parts) > 1 else "?"))
    if current:
        yield current


def main():
    samples = list(stacks(sys.argv[1]))
    total = len(samples) or 1
    print(f"{len(samples)} samples of the gateway under closed-loop load.\n")
    print("| stage | share of samples |")
    print("|---|---|")
    for name, pattern in STAGES:
        regex = re.compile(pattern)
        if name.startswith("allocator"):
            hits = sum(1 for s in samples if regex.search(s[0]))
        else:
            hits = sum(1 for s in samples if any(regex.search(frame) for frame in s))
        print(f"| {name.replace(' ', '&nbsp;', len(name) - len(name.lstrip()))} | {hits / total:.1%} |")
    print("\nHottest functions (own samples):\n")
    print("| own share | function |")
    print("|---|---|")
    own = Counter(s[0][:120] for s in samples)
    for function, count in own.most_common(20):
        print(f"| {count / total:.1%} | `{function}` |")


main()
