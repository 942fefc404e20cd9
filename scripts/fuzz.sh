#!/usr/bin/env bash
# Coverage-guided fuzzing of the wire decoders with libFuzzer, on the stable toolchain (docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    default: 60 s each, every target
#
# Builds protocol/fuzz with the instrumentation flags `cargo fuzz build --sanitizer none` uses (no
# nightly, no cargo-fuzz), seeds each target from protocol/tests/vectors/*.hex, runs it for the given
# time and prints executions, execs/s, corpus, coverage and crashes per target. Exits non-zero when
# any target crashed; the crashing input is kept under the target dir and its path printed.
# Everything lives in ${CARGO_TARGET_DIR:-target}/fuzz/: build/, seeds/ (rewritten each run),
# corpus/ (grows from run to run; delete it to start afresh), artifacts/ (crashes), logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

all_targets=(video_packet control_frames client_message)
secs="${1:-60}"
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all_targets[@]}")
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]; targets: ${all_targets[*]}" >&2
  exit 2
fi
for t in "${targets[@]}"; do
  [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz: unknown target $t (${all_targets[*]})" >&2; exit 2; }
done

target_dir="${CARGO_TARGET_DIR:-target}"
[[ "$target_dir" = /* ]] || target_dir="$root/$target_dir"
work="$target_dir/fuzz"
mkdir -p "$work"/{seeds,corpus,artifacts,logs}

# The flags cargo-fuzz passes for `--sanitizer none`: SanitizerCoverage feeding libFuzzer
# (8-bit counters, PC table, compare tracing, stack depth), `cfg(fuzzing)`, and debug assertions
# with overflow checks in an optimized build. `--target` keeps them off build scripts and proc macros.
host="$(rustc -vV | sed -n 's/^host: //p')"
flags=(
  --cfg fuzzing
  -Cpasses=sancov-module
  -Cllvm-args=-sanitizer-coverage-level=4
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
  -Cllvm-args=-sanitizer-coverage-pc-table
  -Cllvm-args=-sanitizer-coverage-trace-compares
  -Cdebug-assertions
  -Coverflow-checks
)
[[ "$host" == *-linux-* ]] && flags+=(-Cllvm-args=-sanitizer-coverage-stack-depth)
echo "fuzz: building ${targets[*]} ($host, $(rustc --version))"
build_start=$SECONDS
RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR="$work/build" \
  cargo build --quiet --release --locked --manifest-path protocol/fuzz/Cargo.toml --target "$host" \
  $(printf -- '--bin %s ' "${targets[@]}")
echo "fuzz: built in $((SECONDS - build_start)) s"
bin_dir="$work/build/$host/release"

# Seeds: the golden vectors as binary, plus a few streams the vectors alone do not give (several
# frames for the assembler, several control frames split into chunks, client messages).
rm -rf "$work/seeds"
python3 - "$root/protocol/tests/vectors" "$work/seeds" <<'PY'
import json, pathlib, struct, sys

vectors, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
def read_hex(p):
    toks = []
    for line in p.read_text().splitlines():
        toks += line.split('#', 1)[0].split()
    return bytes(int(t, 16) for t in toks)
def write(target, name, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)

manifest = {e['file']: e for e in json.loads((vectors / 'manifest.json').read_text())}
ok = lambda f: 'ok' in manifest.get(f, {}).get('expect', {})
video, control = [], []
for p in sorted(vectors.glob('*.hex')):
    data = read_hex(p)
    if p.name.startswith('video_'):
        write('video_packet', p.stem, data)
        if ok(p.name):
            video.append(data)
    elif p.name.startswith('control_'):
        write('control_frames', p.stem, b'\x00' + data)   # no split bytes: one piece
        if ok(p.name):
            control.append(data)
            if len(data) > 8:
                write('client_message', p.stem, data[8:])  # the JSON body

def packet(seq, chunk, count, payload, keyframe, camera=0):
    return (b'RC\x01\x01' + bytes([1 if keyframe else 0, 1]) + struct.pack('>HIQHHH', camera, seq,
            1_700_000_000_000_000 + seq, chunk, count, len(payload)) + payload)
def frame(seq, keyframe, size, camera=0, limit=40):
    data = bytes((i * 7 + seq) & 0xff for i in range(size))
    chunks = [data[i:i + limit] for i in range(0, size, limit)]
    return [packet(seq, i, len(chunks), c, keyframe, camera) for i, c in enumerate(chunks)]

write('video_packet', 'stream_vectors', b''.join(video))
# Keyframe, deltas across the sequence wrap, a reordered and duplicated frame, a loss, a keyframe.
s = 0xFFFFFFFE
stream = frame(s, True, 100) + frame(s + 1, False, 60)
f = frame(0, False, 120)
stream += [f[2], f[0], f[0], f[1]] + frame(1, False, 90)[1:] + frame(2, False, 50) + frame(3, True, 80)
stream += frame(4, False, 30, camera=1) + frame(5, True, 30, camera=1) + frame(4, False, 10)
write('video_packet', 'stream_assembler', b''.join(stream))

both = b''.join(control)
write('control_frames', 'stream_whole', b'\x00' + both)
write('control_frames', 'stream_split', b'\x03\x00\x06\x3f' + both)   # chunks of 1, 7, 64 bytes
write('control_frames', 'stream_small_limit', b'\x08' + both)          # 256-byte body limit

for name, text in {
    'ping': '{"type":"ping","t":1712345678.25}',
    'horn': '{"type":"command","request_id":"r1","command":{"type":"horn","duration_ms":300}}',
    'speed': '{"type":"command","request_id":"r-2","command":{"type":"set_speed","kmh":80.5}}',
    'keyframe': '{"type":"command","request_id":"k","command":{"type":"request_keyframe","camera":1}}',
    'escaped': '{"type":"command","request_id":"\\u00e9\\n","command":{"type":"request_keyframe"}}',
}.items():
    write('client_message', name, text.encode())
PY

status=0
rows=()
crashes=()
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  log="$work/logs/$t.log"
  echo "fuzz: $t for ${secs} s"
  rc=0
  # New inputs go to corpus/ (the first directory); seeds/ is only read. No -jobs/-workers: one
  # process per target, the machine is shared.
  "$bin_dir/$t" "$work/corpus/$t" "$work/seeds/$t" \
    -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$work/artifacts/$t/" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # The last status line: "#1234 DONE cov: 567 ft: 890 corp: 42/3Kb ...".
  status_line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$status_line")
  found=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
  n_found=0
  [ -n "$found" ] && n_found=$(wc -l <<<"$found")
  rows+=("$(printf '%-16s %12s %9s %12s %7s %7s %8s' "$t" "${execs:-?}" "${rate:-?}" "${corp:-?}" "${cov:-?}" \
    "${ft:-?}" "$n_found")")
  if [ "$rc" -ne 0 ] || [ "$n_found" -gt 0 ]; then
    status=1
    echo "fuzz: $t FAILED (exit $rc); log: $log" >&2
    grep -E -m 20 'panicked|ERROR|SUMMARY|deadly signal' "$log" >&2 || tail -20 "$log" >&2
    while IFS= read -r f; do
      [ -n "$f" ] || continue
      crashes+=("$f")
      echo "fuzz: crashing input kept at $f; replay: $bin_dir/$t $f" >&2
    done <<<"$found"
  fi
done

echo
printf '%-16s %12s %9s %12s %7s %7s %8s\n' target executions execs/s corpus cov ft crashes
printf '%s\n' "${rows[@]}"
if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED; crashing inputs:" >&2
  printf '  %s\n' "${crashes[@]:-(none written; see the logs under $work/logs)}" >&2
  exit 1
fi
echo "fuzz: no crash in ${#targets[@]} targets, ${secs} s each"
