#!/usr/bin/env bash
# The command-line client on a large file, end to end against a real broker (release build, embedded
# SQLite + local disk, loopback): `broker send --parallel 4` of a SIZE file (default 1GiB), then a
# `broker fetch --limit-rate` killed part-way and run again, which must report resumedFrom > 0 and
# bytesTransferred = bytesTotal - resumedFrom and leave a file with the sent SHA-256.
# Usage: scripts/cli-resume-demo.sh [SIZE_IN_MIB]   (too big for the test suite; run by hand)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
cargo build --release --bins -q
BROKER=$PWD/target/release/broker
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BROKER" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q '^listening on ' "$WORK/server.out" && break; sleep 0.1; done
export BROKER_URL=$(sed -n 's/^listening on //p' "$WORK/server.out")
API=$BROKER_URL/broker/api/v1
token() { "$BROKER" token --data-dir "$WORK/data" --org "$1" --scope "$2" --ttl 2h; }
OWNER=$(token 0192:991825827 altinn:serviceowner)
SENDER=$(token 0192:111111111 "altinn:broker.write altinn:broker.read")
RECIPIENT=$(token 0192:222222222 altinn:broker.read)
curl -sf -X POST "$API/serviceowner" -H "Authorization: Bearer $OWNER" \
  -H 'Content-Type: application/json' -d '{"name": "CLI demo"}' >/dev/null
curl -sf -X PUT "$API/resource/cli-demo" -H "Authorization: Bearer $OWNER" \
  -H 'Content-Type: application/json' -d '{}' >/dev/null

echo "== a ${MIB} MiB file"
head -c "$((MIB << 20))" /dev/urandom >"$WORK/big.bin"
SHA=$(sha256sum "$WORK/big.bin" | cut -d' ' -f1)
echo "sha256 $SHA"

echo "== broker send --parallel 4"
START=$(date +%s.%N)
SENT=$(BROKER_TOKEN=$SENDER XDG_STATE_HOME=$WORK/state "$BROKER" send "$WORK/big.bin" \
  --resource cli-demo --sender 0192:111111111 --recipient 0192:222222222 --parallel 4 --json)
END=$(date +%s.%N)
echo "$SENT"
ID=$(echo "$SENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fileTransferId"])')
python3 -c "print(f'sent and published in {$END - $START:.1f} s ({$MIB / ($END - $START):.0f} MiB/s, MD5 and SHA-256 of the file included)')"

echo "== broker fetch --limit-rate 100MiB, killed after 3 s"
mkdir "$WORK/out"
cd "$WORK/out"
BROKER_TOKEN=$RECIPIENT "$BROKER" fetch "$ID" -o big.bin --parallel 4 --limit-rate 100MiB --json \
  >"$WORK/fetch1.json" 2>/dev/null &
FETCH_PID=$!
sleep 3
kill -9 "$FETCH_PID"
wait "$FETCH_PID" 2>/dev/null || true
ls -l big.bin.part

echo "== the same fetch again (no limit)"
BROKER_TOKEN=$RECIPIENT "$BROKER" fetch "$ID" -o big.bin --parallel 4 --json 2>/dev/null | tee "$WORK/fetch2.json"
python3 - "$WORK/fetch2.json" "$SHA" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["resumedFrom"] > 0, r
assert r["bytesTransferred"] == r["bytesTotal"] - r["resumedFrom"], r
assert r["sha256"] == sys.argv[2], r
print(f"resumed from {r['resumedFrom']} of {r['bytesTotal']} bytes; moved {r['bytesTransferred']} "
      f"= total - resumedFrom; SHA-256 verified")
EOF
[ "$(sha256sum big.bin | cut -d' ' -f1)" = "$SHA" ] && echo "big.bin on disk has the sent SHA-256; no .part left: $(ls)"
