#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, property, integration and benchmark smoke tests,
# schemathesis over the OpenAPI description, and a short run of every fuzz target.
# Test-only tools are installed when missing (idempotent, quick when present): curl, which the README's
# examples use (tests/readme.rs runs them as written), script (bsdutils) for a terminal in a test, the real tus clients
# tuspy (PyPI) and tus-js-client (npm) that the tus tests drive, @tus/server (npm) that the benchmark
# smoke test measures beside Broker, nginx-light for the benchmark's download anchor and wrk for its
# small-request anchor, clamav-daemon and clamdscan (Debian packages: with apt-get as root, else with
# sudo; the run stops naming what is missing when neither can install them): the scanner tests start clamd on a
# free loopback port with the project's own signature database, and the scan benchmark times clamdscan, standardwebhooks, cloudevents and prometheus-client (PyPI) for
# the webhook receiver and the metrics parser, pyarrow (PyPI) that reads the daily statistics report back,
# aiosmtpd (PyPI), the SMTP server the e-mail notification tests send to, cryptography (PyPI) that
# makes the test CA and certificate it serves over TLS, schemathesis (PyPI) and
# cargo-fuzz (crates.io).
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests need: installed with apt-get as root, else through sudo when it is at
# hand; otherwise the run stops here, naming what is missing, rather than in the middle of the suite.
install_debian() {
  local why=$1
  shift
  local apt=(apt-get)
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      apt=(sudo apt-get)
    else
      echo "error: $* not installed (needed by $why), and neither root nor sudo is at hand to install it: apt-get install $*"
      exit 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $* not installed (needed by $why), and apt-get is not available to install it"
    exit 1
  fi
  "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || { "${apt[@]}" update -qq >/dev/null 2>&1 && "${apt[@]}" install -y -qq --no-install-recommends "$@" >/dev/null 2>&1; } \
    || { echo "error: could not install $* (needed by $why)"; exit 1; }
}
if [ ! -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
  install_debian "the benchmark smoke test's download anchor" nginx-light
fi
if ! command -v curl >/dev/null 2>&1; then
  install_debian "the README's examples, which tests/readme.rs runs as written" curl
fi
if ! command -v script >/dev/null 2>&1; then
  # util-linux's `script` gives the log-colour test a terminal.
  install_debian "the test that logs are coloured only on a terminal" bsdutils
fi
if ! command -v wrk >/dev/null 2>&1; then
  install_debian "the benchmark smoke test's small-request anchor" wrk
fi
if { [ ! -x /usr/sbin/clamd ] && ! command -v clamd >/dev/null 2>&1; } || ! command -v clamdscan >/dev/null 2>&1; then
  # The tests need a real clamd, and the scan benchmark's anchor clamdscan (only a Recommends of
  # clamav-daemon).
  install_debian "the scanner tests and the scan benchmark" clamav-daemon clamdscan
fi
if ! python3 -c "import tusclient" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check tuspy
fi
# The webhook receiver the delivery tests run verifies signatures with standardwebhooks and parses
# bodies with the CloudEvents SDK (2.x API); the metrics test parses /metrics with prometheus-client.
if ! python3 -c "import standardwebhooks, prometheus_client; from cloudevents.core.bindings.http import from_structured_event" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check standardwebhooks 'cloudevents>=2.2,<3' prometheus-client
fi
# The statistics test reads the daily summary's Parquet file with pyarrow; the notification tests
# receive e-mail with aiosmtpd, over STARTTLS and TLS with a test CA made with cryptography.
if ! python3 -c "import pyarrow.parquet, aiosmtpd, cryptography" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check pyarrow aiosmtpd cryptography
fi
if ! python3 -c "import schemathesis" >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check 'schemathesis>=4.32,<5'
fi
if [ ! -f tests/tus-clients/node_modules/tus-js-client/package.json ]; then
  (cd tests/tus-clients && npm ci --no-audit --no-fund --silent)
fi
if [ ! -f benches/peers/node_modules/@tus/server/package.json ]; then
  (cd benches/peers && npm ci --no-audit --no-fund --silent)
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# Once more with every file on disk: small files are kept in the database by default, and reads,
# ranges, scanning, purges and crashes must behave the same either way.
BROKER__STORAGE__INLINE_MAX_BYTES=0 cargo test --workspace --locked --test integration
# The same debug binary the integration tests ran, fuzzed through its OpenAPI description.
python3 tests/schemathesis/run.py target/debug/broker 40
scripts/fuzz.sh 5
