#!/usr/bin/env python3
"""A sample webhook receiver: verifies each delivery with the `standardwebhooks` package.

    PYTHONPATH=.tools/python python3 scripts/sample_receiver.py --port 9000 \\
        --secret /acme/orders-app=whsec_... --secret /globex/billing=whsec_... [--log deliveries.jsonl]

Every POST is checked against the secret configured for its path and printed as one line.
Answers 204 when the signature is valid, 400 otherwise (the operator then retries).
GET /healthz answers 200. Run scripts/tools.sh first to install standardwebhooks into .tools/.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import standardwebhooks
except ImportError:
    # Fall back to the project-local install made by scripts/tools.sh.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".tools", "python"))
    try:
        import standardwebhooks
    except ImportError:
        sys.exit("sample_receiver: the standardwebhooks package is missing; run scripts/tools.sh "
                 "and set PYTHONPATH=.tools/python")

MAX_BODY_PRINT = 200


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, verifiers, log_file):
        super().__init__(address, Handler)
        self.verifiers = verifiers  # path -> standardwebhooks.Webhook
        self.log_file = log_file
        self.lock = threading.Lock()

    def record(self, line, entry):
        with self.lock:
            print(line, flush=True)
            if self.log_file:
                self.log_file.write(json.dumps(entry) + "\n")
                self.log_file.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
    server: Receiver

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, b"ok\n")
        else:
            self.reply(404, b"not found\n")

    def do_POST(self):
        body = self.read_body()
        webhook_id = self.headers.get("webhook-id", "")
        event_type = self.headers.get("webhook-event-type", "")
        verifier = self.server.verifiers.get(self.path)
        if verifier is None:
            ok, reason = False, "no secret configured for this path"
        else:
            try:
                verifier.verify(body, dict(self.headers.items()), json_parse=False)
                ok, reason = True, ""
            except Exception as error:  # noqa: BLE001 - any failure means "not verified"
                ok, reason = False, str(error) or type(error).__name__
        text = body.decode("utf-8", errors="replace")
        shown = text if len(text) <= MAX_BODY_PRINT else text[:MAX_BODY_PRINT] + "..."
        verdict = "verified OK" if ok else f"verified FAILED ({reason})"
        self.server.record(
            f"{self.path}  id={webhook_id}  type={event_type}  {verdict}  body={shown}",
            {
                "time": time.time(),
                "path": self.path,
                "id": webhook_id,
                "eventType": event_type,
                "timestamp": self.headers.get("webhook-timestamp", ""),
                "verified": ok,
                "reason": reason,
                "body": text,
            },
        )
        if ok:
            self.reply(204, b"")
        else:
            self.reply(400, f"signature verification failed: {reason}\n".encode())

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

    def reply(self, status, body):
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # one line per delivery is printed by do_POST instead


def parse_secret(value):
    path, sep, secret = value.partition("=")
    if not sep or not path.startswith("/") or not secret:
        raise argparse.ArgumentTypeError(f"expected /PATH=whsec_..., got {value!r}")
    try:
        return path, standardwebhooks.Webhook(secret)
    except Exception as error:  # noqa: BLE001
        raise argparse.ArgumentTypeError(f"bad secret for {path}: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on (default 9000)")
    parser.add_argument("--secret", type=parse_secret, action="append", default=[], metavar="/PATH=whsec_...",
                        help="signing secret for deliveries to PATH (repeatable)")
    parser.add_argument("--log", metavar="FILE", help="also append one JSON line per delivery to FILE")
    args = parser.parse_args()

    log_file = open(args.log, "a", encoding="utf-8") if args.log else None
    try:
        server = Receiver((args.host, args.port), dict(args.secret), log_file)
    except OSError as error:
        sys.exit(f"sample_receiver: cannot listen on {args.host}:{args.port}: {error.strerror or error}")
    paths = ", ".join(sorted(server.verifiers)) or "none"
    print(f"sample receiver listening on http://{args.host}:{args.port} (secrets for: {paths})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if log_file:
            log_file.close()


if __name__ == "__main__":
    main()
