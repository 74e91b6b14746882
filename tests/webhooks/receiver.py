"""A real webhook receiver for the delivery tests.

Every POST to /hook/NAME is checked the way a subscriber would: the Standard Webhooks signature with
the `standardwebhooks` package (against NAME's secret, set with PUT /control/NAME/secret), and the body
parsed with the CloudEvents SDK. Each request is appended as one JSON line to the log file (so a
restarted receiver keeps the record); it answers as PUT /control/NAME/answer says (a status, 200 by
default; 0 takes the request and never answers; a redirect status points at /hook/NAME-redirected;
401 when the signature does not verify). PUT /control/NAME/accept with a media type makes NAME take
only bodies of that type, as a JSON framework's body parser does (415 for any other; by default both
application/json and application/cloudevents+json are read).

    python3 receiver.py LOG_FILE [PORT]   prints "listening on PORT" when ready
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cloudevents.core.bindings.http import HTTPMessage, from_structured_event
from standardwebhooks.webhooks import Webhook

LOG = sys.argv[1]
SECRETS = {}
ANSWERS = {}
ACCEPTS = {}
STRUCTURED = ("application/json", "application/cloudevents+json")
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length)

    def reply(self, status, text=b"", location=None):
        self.send_response(status)
        if location:
            self.send_header("location", location)
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_PUT(self):
        parts = self.path.strip("/").split("/")
        value = self.body().decode()
        if len(parts) == 3 and parts[0] == "control":
            with LOCK:
                if parts[2] == "secret":
                    SECRETS[parts[1]] = value.split()
                elif parts[2] == "answer":
                    ANSWERS[parts[1]] = int(value)
                elif parts[2] == "accept":
                    ACCEPTS[parts[1]] = value.strip()
            return self.reply(204)
        self.reply(404)

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "hook":
            return self.reply(404)
        name = parts[1]
        payload = self.body()
        received = time.time()
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            secrets = SECRETS.get(name, [])
            answer = ANSWERS.get(name, 200)
            accepted = (ACCEPTS[name],) if name in ACCEPTS else STRUCTURED
        media_type = (headers.get("content-type") or "").split(";")[0].strip().lower()
        verified = []
        for secret in secrets:
            try:
                Webhook(secret).verify(payload, headers)
                verified.append(secret)
            except Exception:
                pass
        record = {
            "name": name,
            "received": received,
            "webhook_id": headers.get("webhook-id"),
            "webhook_timestamp": headers.get("webhook-timestamp"),
            "signatures": (headers.get("webhook-signature") or "").split(),
            "verified_with": verified,
            "content_type": headers.get("content-type"),
            "answered": answer if verified else 401,
        }
        if media_type not in accepted:
            record["answered"] = 415
        try:
            if media_type not in STRUCTURED:
                raise ValueError("not a structured CloudEvent")
            event = from_structured_event(HTTPMessage(headers=headers, body=payload))
            record["event"] = {k: str(v) for k, v in event.get_attributes().items()}
            record["data"] = event.get_data()
        except Exception as e:  # recorded, so the test names what did not parse
            record["parse_error"] = repr(e)
        with LOCK:
            with open(LOG, "a") as log:
                log.write(json.dumps(record, default=str) + "\n")
        if record["answered"] == 0:
            # A dead endpoint: it takes the request and never answers.
            time.sleep(120)
            return
        redirect = record["answered"] in (301, 302, 303, 307, 308)
        self.reply(record["answered"], location=f"/hook/{name}-redirected" if redirect else None)


def main():
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
