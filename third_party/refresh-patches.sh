#!/bin/bash
# Regenerates each vendored crate's railcast.patch: the diff of its src/ against the published
# crate in cargo's registry (run `cargo fetch` first with the [patch] entries removed if the
# registry copy is missing). Files railcast added (diff -N) are in the patch whole.
set -euo pipefail
cd "$(dirname "$0")"
for dir in */; do
  crate=${dir%/}
  orig=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate" 2>/dev/null | head -1 || true)
  [ -n "$orig" ] || { echo "skip $crate: not in the registry"; continue; }
  (cd "$orig" && diff -ruN src "$OLDPWD/$crate/src" || true) \
    | sed -E "s#^diff -ruN src/(\S+) \S+/src/\S+#diff -ru a/src/\1 b/src/\1#; s#^--- src/(\S+)\t.*#--- a/src/\1#; s#^\+\+\+ \S+/src/(\S+)\t.*#+++ b/src/\1#" > "$crate/railcast.patch"
  echo "$crate: $(grep -c '^@@' "$crate/railcast.patch") hunks"
done
