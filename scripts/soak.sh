#!/usr/bin/env bash
# Soak run: 5 trains and 50 remote controls (25 WebSocket, 25 WebRTC data channels) against the
# real server for a set time; reports server RSS over time, delivery and drops per transport,
# client errors and disconnects, server counters and panics (docs/benchmarks.md, "Soak").
#
#   scripts/soak.sh [DURATION] [-- BENCH_FLAGS...]   release build, default 10m
#   scripts/soak.sh --debug [DURATION] [-- ...]      the debug build instead (no release build)
#   scripts/soak.sh --short [-- ...]                 20 s on the debug build (CI; < 1 min)
#
# DURATION is what railcast-bench --soak-duration takes: 30s, 2m, 1h. BENCH_FLAGS go to
# railcast-bench as they are, e.g. `-- --soak-interval 30s --server-cpu 0 --load-cpu 1`.
# The binaries are built first (`cargo build [--release] -p railcast-bench -p railcast-server`,
# a no-op when they are up to date) in ${CARGO_TARGET_DIR:-target}. The output (one JSON line,
# then the table) is also kept in ${CARGO_TARGET_DIR:-target}/soak/, the server log under
# $TMPDIR/railcast-bench-PID/. Exit status: 0 when the soak passed (no panic, no client error or
# disconnect, ≥ 99 % of frames delivered on each transport), 1 when it did not, 2 on usage or
# start-up errors.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

profile=release
duration=10m
while [ $# -gt 0 ]; do
  case "$1" in
    --short) profile=debug; duration=20s ;;
    --debug) profile=debug ;;
    --release) profile=release ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    -*) echo "soak: unknown option $1" >&2; usage ;;
    *) duration="$1" ;;
  esac
  shift
done
if ! [[ "$duration" =~ ^[0-9]+(ms|s|m|h|min|sec)?$ ]]; then
  echo "soak: bad duration $duration (e.g. 30s, 10m, 1h)" >&2
  exit 2
fi

target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
build=(cargo build --locked -p railcast-bench -p railcast-server)
[ "$profile" = release ] && build+=(--release)
echo "soak: ${build[*]}" >&2
CARGO_TARGET_DIR="$target_dir" "${build[@]}"

mkdir -p "$target_dir/soak"
out="$target_dir/soak/soak-$(date +%Y%m%d-%H%M%S)-$profile-$duration.txt"
echo "soak: $profile build, $duration; output also in $out" >&2
start=$SECONDS
rc=0
"$target_dir/$profile/railcast-bench" --scenario soak --soak-duration "$duration" "$@" | tee "$out" || rc=$?
# With pipefail, rc is the first failing command's status: the bench's unless tee failed.
echo "soak: exit $rc after $((SECONDS - start)) s" >&2
exit "$rc"
