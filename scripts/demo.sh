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

# No auth file: the server generates demo credentials, prints the console URLs with their tokens,
# and writes them (train tokens included) where the simulator reads them.
CREDENTIALS="target/demo-credentials.toml"
rm -f "$CREDENTIALS"
./target/release/railcast-server --http-addr "$HTTP_ADDR" --quic-addr "$QUIC_ADDR" \
  --credentials-out "$CREDENTIALS" > >(tee target/demo-server.out) &
pids+=($!)
for _ in $(seq 50); do
  curl -fsS "http://$HTTP_ADDR/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
./target/release/railcast-train-sim --server "http://$HTTP_ADDR" --credentials "$CREDENTIALS" --trains 2 &
pids+=($!)

for _ in $(seq 50); do
  grep -q '^console admin' target/demo-server.out 2>/dev/null && break
  sleep 0.1
done
ADMIN_TOKEN="$(sed -n 's/^token admin [^ ]* //p' target/demo-server.out)"
cat <<MSG

railcast demo running:
  console  $(sed -n 's/^console admin //p' target/demo-server.out)   (admin; operator and viewer URLs above)
  trains   curl -H "Authorization: Bearer $ADMIN_TOKEN" http://$HTTP_ADDR/api/trains
  tokens   $CREDENTIALS (generated for this run; docs/security.md)
  watch    see README.md, "Watch a train"
Ctrl-C to stop.
MSG
wait
