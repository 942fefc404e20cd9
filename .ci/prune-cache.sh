#!/usr/bin/env bash
# Keeps the CI build cache bounded: every rebuild links each test and binary again under a new
# hash, and the old ones stay behind (the cache reached 68 GB and filled the disk). In each
# profile's deps/ this keeps the newest of each test or binary executable and of each of our own
# crates' files (railcast*), and deletes the older ones; third-party artifacts, which several
# hashes of one name may legitimately share, are left alone. Cargo rebuilds whatever it misses.
# Safe to run on an empty or missing directory.
set -euo pipefail
dir=${1:?usage: prune-cache.sh CARGO_TARGET_DIR}
for deps in "$dir"/*/deps; do
  [ -d "$deps" ] || continue
  # "name-hash[.ext]" → group by name and extension, newest first, drop all but the first.
  find "$deps" -maxdepth 1 -type f \( -perm -u+x -o -name '*railcast*' \) -printf '%T@ %f\n' | sort -rn | awk '
    {
      f = $2; ext = ""
      if (f !~ /^(lib)?railcast/ && f ~ /\./) next
      if (match(f, /\.[a-z]+$/)) { ext = substr(f, RSTART); base = substr(f, 1, RSTART - 1) } else { base = f }
      n = split(base, parts, "-"); hash = parts[n]
      if (n < 2 || length(hash) != 16 || hash !~ /^[0-9a-f]+$/) next
      key = substr(base, 1, length(base) - 17) ext
      if (seen[key]++) print f
    }' | while read -r f; do rm -f "$deps/$f"; done
done
# Incremental state is never reused by CI (CARGO_INCREMENTAL=0): drop any left from older runs.
rm -rf "$dir"/*/incremental
