#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit, property and integration tests.
# Installs nothing today: every test-only tool this suite needs is a Rust crate built by cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
