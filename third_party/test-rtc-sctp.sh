#!/bin/bash
# Runs the vendored rtc-sctp's own unit tests (patch 13 changes its pending queue). The crate is
# outside the workspace and its manifest here leaves out the dev-dependencies, so the tests build
# in a scratch copy whose manifest adds them back (as published). Needs crates.io or a warm cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$here/rtc-sctp-0.21.1/src" "$here/rtc-sctp-0.21.1/Cargo.toml" "$scratch/"
cat >> "$scratch/Cargo.toml" <<'TOML'

[dev-dependencies.assert_matches]
version = "1.5.0"

[dev-dependencies.lazy_static]
version = "1.4.0"

[workspace]
TOML
cd "$scratch"
CARGO_TARGET_DIR="${RTC_SCTP_TARGET:-$scratch/target}" cargo test --lib --quiet
