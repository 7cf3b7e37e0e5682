#!/usr/bin/env python3
"""The e2e run's in-cluster webhook receiver: one JSON line on stdout per request it receives.

    python3 receiver.py [--port 8080]

Standard library only: it runs in the official python image, mounted from a ConfigMap. It answers
every POST with 204 and verifies nothing; e2e/run.py reads the lines with `kubectl logs` and
verifies each signature itself with the key from the endpoint's Secret. GET /healthz answers 200.
A line: {"kind": "delivery", "time": <unix seconds>, "path": ..., "headers": {lower-case name:
value}, "body": <the body as text>}.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the delivery client expects of real receivers

    def do_GET(self):
        self.reply(200 if self.path == "/healthz" else 404)

    def do_POST(self):
        body = self.read_body()
        line = json.dumps({
            "kind": "delivery",
            "time": time.time(),
            "path": self.path,
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "body": body.decode("utf-8", errors="replace"),
        })
        with LOCK:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        self.reply(204)

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status):
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass  # stdout carries only the JSON lines


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("0.0.0.0", args.port), Handler)
    server.daemon_threads = True
    print(json.dumps({"kind": "listening", "port": args.port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
