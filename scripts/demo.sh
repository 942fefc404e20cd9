#!/usr/bin/env bash
# Build and start the demo: a railcast server on 127.0.0.1 (HTTP 8080, QUIC 4433) and two simulated
# trains. Nothing to configure. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
HTTP_ADDR="${RAILCAST_HTTP_ADDR:-127.0.0.1:8080}"
QUIC_ADDR="${RAILCAST_QUIC_ADDR:-127.0.0.1:4433}"

cargo build --release --bins
# The web console (served at /). Without npm the server shows a status page there instead.
if command -v npm >/dev/null 2>&1; then
  (cd web-client && { [ -d node_modules/vite ] || npm ci --no-audit --no-fund; } && npm run build)
else
  echo "demo: npm not found; the console is not built (scripts/setup.sh installs it)" >&2
fi

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

./target/release/railcast-server --http-addr "$HTTP_ADDR" --quic-addr "$QUIC_ADDR" &
pids+=($!)
for _ in $(seq 50); do
  curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
./target/release/railcast-train-sim --server "http://$HTTP_ADDR" --trains 2 &
pids+=($!)

cat <<MSG

railcast demo running:
  console  http://$HTTP_ADDR/
  trains   curl http://$HTTP_ADDR/api/trains
  watch    see README.md, "Watch a train"
Ctrl-C to stop.
MSG
wait
