#!/usr/bin/env python3
"""A webhook receiver to watch Broker's deliveries: answers every POST with 200 and prints it as one
JSON line (path, media type, webhook-id, body) on stdout. Standard library only.

    python3 scripts/webhook-echo.py [PORT]      PORT 0 picks a free one; prints "listening on PORT"

It checks no signature: a real subscriber verifies `webhook-signature` with the secret the
subscription was created with (for example with Python's `standardwebhooks` package).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            shown = json.loads(body)
        except ValueError:
            shown = body.decode("utf-8", "replace")
        line = {
            "path": self.path,
            "contentType": self.headers.get("content-type"),
            "webhookId": self.headers.get("webhook-id"),
            "body": shown,
        }
        print(json.dumps(line), flush=True)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = ThreadingHTTPServer(("127.0.0.1", port), Echo)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
