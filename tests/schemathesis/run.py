"""Runs schemathesis against a fresh broker: the OpenAPI description at /openapi.json, every
operation, with three tokens (a sender that sends to itself, so it may walk the whole lifecycle; a
recipient; a service owner), in every phase including stateful runs along the described links.

Checks: no 5xx, status codes, content types, response headers and bodies as the schema says. A token
for which no case was generated fails the run, as a failed check does.

usage: run.py BROKER_BINARY [SECONDS_PER_TOKEN]
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

PARTY = "0192:111111111"
RECIPIENT = "0192:222222222"
OWNER = "0192:991825827"
RESOURCE = "test-resource"
API_KEY = "schemathesis-statistics-key"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def token(binary, data_dir, org, scope):
    out = subprocess.run(
        [binary, "token", "--data-dir", data_dir, "--org", org, "--scope", scope],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def call(url, method, bearer, body):
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).read()


def main():
    binary = sys.argv[1]
    seconds = sys.argv[2] if len(sys.argv) > 2 else "40"
    data_dir = tempfile.mkdtemp(prefix="broker-schemathesis-")
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # The daily summary's operator key, sent with every request: its calls get past the key.
        env={**os.environ, "RUST_LOG": "warn", "BROKER__STATISTICS__API_KEY": API_KEY},
    )
    try:
        base = server.stdout.readline().strip().removeprefix("listening on ")
        api = f"{base}/broker/api/v1"
        owner = token(binary, data_dir, OWNER, "altinn:serviceowner")
        call(f"{api}/serviceowner", "POST", owner, {"name": "Schemathesis owner"})
        call(f"{api}/resource/{RESOURCE}", "PUT", owner, {})
        tokens = {
            "sender": token(binary, data_dir, PARTY, "altinn:broker.write altinn:broker.read"),
            "recipient": token(binary, data_dir, RECIPIENT, "altinn:broker.read"),
            "service owner": token(binary, data_dir, OWNER, "altinn:serviceowner altinn:broker.maintenance"),
        }
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "hooks",
            "PYTHONPATH": os.path.dirname(os.path.abspath(__file__)),
            "BROKER_ST_PARTY": PARTY,
            "BROKER_ST_RESOURCE": RESOURCE,
        }
        failed = []
        cases = 0
        for name, bearer in tokens.items():
            report = tempfile.mkdtemp(prefix="st-report-")
            args = [
                sys.executable,
                "-c",
                "from schemathesis.cli import schemathesis; schemathesis()",
                "run",
                f"{base}/openapi.json",
                "-H",
                f"Authorization: Bearer {bearer}",
                "-H",
                f"X-API-Key: {API_KEY}",
                "--checks",
                CHECKS,
                "--max-examples",
                "25",
                "--max-time",
                seconds,
                # One worker: CPython 3.11's AST construction is not thread-safe (gh-106905), and
                # hypothesis parses sources to describe strategies.
                "--workers",
                "1",
                "--seed",
                "20261201",
                "--report-dir",
                report,
            ]
            run = subprocess.run(args, env=env, capture_output=True, text=True)
            shutil.rmtree(report, ignore_errors=True)
            generated = re.search(r"(\d+) generated", run.stdout)
            count = int(generated.group(1)) if generated else 0
            cases += count
            print(f"schemathesis: {name} token: {count} cases generated, exit {run.returncode}")
            # A run that generated nothing tested nothing: that is a failure, not a pass.
            if run.returncode != 0 or count == 0:
                print(run.stdout[-20000:])
                print(run.stderr[-5000:])
                failed.append(name)
        print(f"schemathesis: {cases} cases in all")
        if failed:
            sys.exit(f"schemathesis: failures (or no cases generated) with the {', '.join(failed)} token(s)")
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
