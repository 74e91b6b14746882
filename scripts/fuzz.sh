#!/usr/bin/env bash
# Fuzzes what parses untrusted input (tests/fuzz: the Range and tus header grammars, Upload-Metadata,
# the JSON request bodies, the form-data reader and bearer tokens) with cargo-fuzz (libFuzzer).
#   scripts/fuzz.sh               each target for 5 s (the test command's short run)
#   scripts/fuzz.sh 60            each target for 60 s
#   scripts/fuzz.sh --runs 10000000   each target for that many executions (the long runs)
# New inputs go to tests/fuzz/corpus/TARGET (not committed); tests/fuzz/seeds/TARGET are the seeds. A
# crash stops the script with its input under tests/fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
limit="-max_total_time=${1:-5}"
if [ "${1:-}" = "--runs" ]; then
  limit="-runs=${2:?--runs needs a number}"
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# The fuzz crate is outside the workspace; it starts from the workspace's versions.
[ -f tests/fuzz/Cargo.lock ] || cp Cargo.lock tests/fuzz/Cargo.lock
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets this stable toolchain take them. Rust is memory
# safe, so the runs go without AddressSanitizer (`-s none`): faster to build and to run.
export RUSTC_BOOTSTRAP=1
fuzz=(cargo fuzz run --fuzz-dir tests/fuzz -s none)
cargo fuzz build --fuzz-dir tests/fuzz -s none
for target in $(cargo fuzz list --fuzz-dir tests/fuzz); do
  mkdir -p "tests/fuzz/corpus/$target"
  log=$(mktemp)
  if ! "${fuzz[@]}" "$target" "tests/fuzz/corpus/$target" "tests/fuzz/seeds/$target" -- "$limit" >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz: $target FAILED (input under tests/fuzz/artifacts/$target)"
    exit 1
  fi
  runs=$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1)
  echo "fuzz: $target: ${runs:-no summary}s, no crash"
  rm -f "$log"
done
