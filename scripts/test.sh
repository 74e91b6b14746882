#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, property, integration and benchmark smoke tests.
# Test-only tools are installed when missing (idempotent, quick when present): nginx-light gives the
# benchmark's download anchor; without it (no apt) that anchor is skipped with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null 2>&1; } \
      || echo "warning: could not install nginx-light; the nginx anchor will be skipped"
  fi
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
