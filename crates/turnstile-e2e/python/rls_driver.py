"""A real Envoy rate limit service client, driven line by line by the Rust end-to-end test.

Uses grpcio and xds-protos (the grpc project's generated Envoy types), so the wire format is
checked by code Turnstile did not write. Reads one JSON command per line on stdin, answers one
JSON line on stdout:

- {"op": "call", "domain": d, "descriptors": [[[key, value], ...], ...], "hits": n,
   "timeout": s}  -> the response as JSON, or {"error": "<grpc code>", "message": ...}
- {"op": "load_start", "domain": d, "descriptors": [...], "threads": n}: calls in a loop
- {"op": "load_stop"} -> {"calls": n, "failures": [first few errors]}
"""

import json
import sys
import threading
import time

import grpc
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

Code = rls_pb2.RateLimitResponse.Code
Unit = rls_pb2.RateLimitResponse.RateLimit.Unit


def request(command):
    return rls_pb2.RateLimitRequest(
        domain=command["domain"],
        hits_addend=command.get("hits", 0),
        descriptors=[
            ratelimit_pb2.RateLimitDescriptor(
                entries=[
                    ratelimit_pb2.RateLimitDescriptor.Entry(key=key, value=value)
                    for key, value in descriptor
                ]
            )
            for descriptor in command["descriptors"]
        ],
    )


def call(stub, command):
    started = time.monotonic()
    try:
        response = stub.ShouldRateLimit(request(command), timeout=command.get("timeout", 5))
    except grpc.RpcError as error:
        return {
            "error": error.code().name,
            "message": error.details(),
            "elapsed": time.monotonic() - started,
        }
    statuses = []
    for status in response.statuses:
        limit = None
        if status.HasField("current_limit"):
            limit = {
                "requests_per_unit": status.current_limit.requests_per_unit,
                "unit": Unit.Name(status.current_limit.unit),
                "name": status.current_limit.name,
            }
        statuses.append(
            {
                "code": Code.Name(status.code),
                "remaining": status.limit_remaining,
                "limit": limit,
                "reset_seconds": status.duration_until_reset.ToTimedelta().total_seconds()
                if status.HasField("duration_until_reset")
                else None,
            }
        )
    return {
        "code": Code.Name(response.overall_code),
        "statuses": statuses,
        "headers": {header.key: header.value for header in response.response_headers_to_add},
    }


class Load:
    def __init__(self, stub, command):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        self.failures = []
        self.threads = [
            threading.Thread(target=self.run, args=(stub, command))
            for _ in range(command.get("threads", 2))
        ]
        for thread in self.threads:
            thread.start()

    def run(self, stub, command):
        while not self.stop.is_set():
            answer = call(stub, command)
            with self.lock:
                self.calls += 1
                if "error" in answer and len(self.failures) < 5:
                    self.failures.append(answer)

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join()
        return {"calls": self.calls, "failures": self.failures}


def main():
    channel = grpc.insecure_channel(sys.argv[1])
    stub = rls_pb2_grpc.RateLimitServiceStub(channel)
    load = None
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "call":
            answer = call(stub, command)
        elif command["op"] == "load_start":
            load = Load(stub, command)
            answer = {"started": True}
        elif command["op"] == "load_stop":
            answer = load.finish() if load else {"calls": 0, "failures": []}
            load = None
        else:
            answer = {"error": "BAD_COMMAND", "message": command["op"]}
        print(json.dumps(answer), flush=True)
    channel.close()


if __name__ == "__main__":
    main()
