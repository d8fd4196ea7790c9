"""An application for the reverse-proxy tests to stand Turnstile in front of.

    python3 upstream.py PORT ACCESS_LOG NAME

Listens on 127.0.0.1:PORT (HTTP/1.1, keep-alive, a thread per connection) and appends one line
per request it answers to ACCESS_LOG: `METHOD PATH BODY_BYTES`. Every answer carries
`X-Upstream: NAME`, and a hop-by-hop header of its own (`Connection: x-upstream-hop`,
`X-Upstream-Hop`) that a proxy must not pass on.

- any path: reads the whole body (Content-Length or chunked) as it arrives, in 64 KiB pieces,
  and answers JSON: method, path, headers (lower-case names, every value), body_bytes, sha256.
- /slow: as above, after 3 s.
- /big/N: N bytes of `x`, streamed in 64 KiB writes (Content-Length); /chunked/N: the same in
  chunked transfer encoding.
"""

import hashlib
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PIECE = 64 * 1024
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        digest = hashlib.sha256()
        total = 0

        def take(left):
            nonlocal total
            while left:
                piece = self.rfile.read(min(left, PIECE))
                if not piece:
                    raise ConnectionError("body cut short")
                digest.update(piece)
                total += len(piece)
                left -= len(piece)

        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                take(size)
                self.rfile.readline()
        else:
            take(int(self.headers.get("Content-Length", "0")))
        return total, digest.hexdigest()

    def common_headers(self):
        self.send_header("X-Upstream", NAME)
        self.send_header("Connection", "x-upstream-hop")
        self.send_header("X-Upstream-Hop", "1")
        self.send_header("X-End-To-End", "kept")

    def answer(self):
        body_bytes, sha256 = self.read_body()
        with LOCK, open(ACCESS_LOG, "a") as log:
            log.write(f"{self.command} {self.path} {body_bytes}\n")
        if self.path.startswith("/slow"):
            time.sleep(3)
        parts = self.path.split("?")[0].split("/")
        if len(parts) == 3 and parts[1] in ("big", "chunked"):
            self.stream(parts[1], int(parts[2]))
            return
        headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": headers,
                "body_bytes": body_bytes,
                "sha256": sha256,
            }
        ).encode()
        self.send_response(200)
        self.common_headers()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def stream(self, how, size):
        self.send_response(200)
        self.common_headers()
        self.send_header("Content-Type", "application/octet-stream")
        if how == "big":
            self.send_header("Content-Length", str(size))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = b"x" * PIECE
        left = size
        while left:
            n = min(left, PIECE)
            if how == "big":
                self.wfile.write(piece[:n])
            else:
                self.wfile.write(b"%x\r\n" % n + piece[:n] + b"\r\n")
            left -= n
        if how == "chunked":
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer


if __name__ == "__main__":
    PORT, ACCESS_LOG, NAME = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    open(ACCESS_LOG, "w").close()
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
