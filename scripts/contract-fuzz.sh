#!/usr/bin/env bash
# Contract fuzzing of the HTTP API with schemathesis (docs/fuzzing.md, "The HTTP contract").
#
#   scripts/contract-fuzz.sh [IDENTITY...]    admin, viewer, anonymous (default: all three)
#
# Starts the debug railcast-server from ${CARGO_TARGET_DIR:-target} on loopback (port 0 for HTTP
# and QUIC, generated demo credentials), waits for /readyz, connects simulated trains
# (railcast-train-sim: one online, one gone offline), then tests every operation of the contract
# the server serves at /api/openapi.json once per identity: with the admin token, with the viewer
# token and with no token (tests/contract/contract_fuzz.py runs schemathesis and says how). Then
# it stops the simulator and the server with SIGTERM.
# Fails on a 5xx, a status code the contract does not list for the operation, a response that
# breaks its schema or content type, input the contract forbids accepted, an admin-only route
# answering the viewer anything but 403, a protected route answering no token anything but 401,
# a contract parameter that cannot be sent where it is declared, and a panic in the server log.
# Needs: cargo build -p railcast-server -p railcast-train-sim; schemathesis from scripts/setup.sh
# (a venv, pinned by tests/requirements.txt). Takes about 30 s.
# Logs and reports: ${CARGO_TARGET_DIR:-target}/contract-fuzz/ (rewritten on each run).
# Exit status: 0 passed, 1 findings, 2 on usage or start-up errors.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

for id in "$@"; do
  case "$id" in
    admin|viewer|anonymous) ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "contract-fuzz: unknown identity $id (admin viewer anonymous)" >&2; exit 2 ;;
  esac
done

venv="${RAILCAST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/railcast-venv}"
if ! "$venv/bin/python" -c 'import schemathesis' >/dev/null 2>&1; then
  echo "contract-fuzz: schemathesis is not installed in $venv: run scripts/setup.sh" >&2
  exit 2
fi
target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
server="$target_dir/debug/railcast-server"
sim="$target_dir/debug/railcast-train-sim"
for bin in "$server" "$sim"; do
  if [ ! -x "$bin" ]; then
    echo "contract-fuzz: no $bin: cargo build -p railcast-server -p railcast-train-sim first" >&2
    exit 2
  fi
done

# Loopback only: no proxy may stand between the tools and the server. No .pyc files in the
# repository (the hooks are imported from tests/contract).
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
export PYTHONDONTWRITEBYTECODE=1

out="$target_dir/contract-fuzz"
rm -rf "$out"
mkdir -p "$out"
creds="$out/credentials.toml"

pid=""
sim_pid=""
stop_server() {
  if [ -n "$sim_pid" ] && kill -0 "$sim_pid" 2>/dev/null; then
    kill -TERM "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  sim_pid=""
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    # shutdown_grace is 5 s; then the server exits anyway. Past 10 s something is wrong.
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "contract-fuzz: the server did not stop on SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  fi
  pid=""
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Loopback only, ports picked by the kernel. No console (web_root): the contract is the API.
# Recording on, so that the playback routes answer from real recordings of the trains below.
# The environment's RAILCAST_* settings are dropped so that a developer's shell cannot change
# what is tested; the few settings that matter are given here.
env_clean=()
while IFS='=' read -r name _; do
  if [[ "$name" == RAILCAST_* ]]; then env_clean+=(-u "$name"); fi
done < <(env)
env "${env_clean[@]}" RUST_LOG=warn,railcast_server=info "$server" \
  --http-addr 127.0.0.1:0 --quic-addr 127.0.0.1:0 --webrtc-bind-ip 127.0.0.1 \
  --web-root "$out/no-console" --demo-trains 4 --credentials-out "$creds" \
  --webrtc-connect-timeout 5m --record-dir "$out/recordings" --record-segment-duration 2s \
  >"$out/server.out" 2>"$out/server.log" &
pid=$!

# Run a check every 0.1 s, up to N times, while the server lives; succeed once it does.
poll() {
  local n=$1; shift
  for _ in $(seq "$n"); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# Give up: say why, with the end of the server's log.
start_failed() {
  echo "contract-fuzz: $1; its log:" >&2
  tail -n 30 "$out/server.log" >&2
  exit 2
}
bound() { addr="$(sed -n 's/^listening http //p' "$out/server.out")"; [ -n "$addr" ]; }
ready() { curl -fsS --max-time 2 "$base/readyz" >/dev/null 2>&1 && [ -s "$creds" ]; }

addr=""
poll 300 bound || start_failed "the server did not start"
case "$addr" in
  127.*) ;;
  *) echo "contract-fuzz: the server listens on $addr, not on loopback" >&2; exit 2 ;;
esac
base="http://$addr"
poll 100 ready || start_failed "$base/readyz did not answer 200"
echo "contract-fuzz: server $base (pid $pid), output in $out" >&2

# Trains, so that the train routes answer with real ones (the Train schema, cameras and all):
# train-2 connects for a moment and goes offline (last_seen, offline_reason), train-1 stays online
# with two small cameras for the whole run. train-3 and train-4 have tokens and never connect.
sim_args=(--server "$base" --credentials "$creds" --trains 1 --width 160 --height 120 --fps 5 --bitrate 50k)
"$sim" "${sim_args[@]}" --first 2 --duration 2s >"$out/train-sim-2.log" 2>&1 || {
  echo "contract-fuzz: the train simulator failed:" >&2; tail -n 20 "$out/train-sim-2.log" >&2; exit 2
}
"$sim" "${sim_args[@]}" --first 1 --cameras 2 >"$out/train-sim-1.log" 2>&1 &
sim_pid=$!
admin="$(sed -n 's/^token admin [^ ]* //p' "$out/server.out" | head -n 1)"
trains=""
for _ in $(seq 300); do
  trains="$(curl -fsS --max-time 2 -H "Authorization: Bearer $admin" "$base/api/trains" 2>/dev/null || true)"
  if [[ "$trains" == *'"id":"train-1","online":true'* && "$trains" == *'"id":"train-2","online":false'* ]]; then break; fi
  trains=""
  kill -0 "$sim_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$trains" ]; then
  echo "contract-fuzz: train-1 did not come online (and train-2 offline); the simulator's log:" >&2
  tail -n 20 "$out/train-sim-1.log" >&2
  exit 2
fi

start=$SECONDS
rc=0
"$venv/bin/python" tests/contract/contract_fuzz.py --base-url "$base" --credentials "$creds" \
  --out "$out" "$@" || rc=$?
stop_server
# A panic anywhere in the server is a finding even when every response looked right.
if grep -n "panicked" "$out/server.log" >&2; then
  echo "contract-fuzz: the server panicked (above; full log: $out/server.log)" >&2
  [ "$rc" = 0 ] && rc=1
fi
echo "contract-fuzz: exit $rc after $((SECONDS - start)) s" >&2
exit "$rc"
