#!/bin/bash
# Runs the unit tests of the vendored webrtc's UDP mux (patch 18: STUN parsing, routing by ufrag,
# address and transaction, bounds, removal). The crate is outside the workspace, so the tests
# build in a scratch copy: its manifest without the dev-dependencies (the library's own tests use
# none), the other vendored crates patched in as in the root manifest, and the workspace's lock
# file so the versions (and, with WEBRTC_TARGET=<the workspace's target dir>, most artefacts) are
# the ones railcast builds. Needs crates.io or a warm cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r "$here/webrtc-0.21.1/src" "$scratch/"
cp "$here/../Cargo.lock" "$scratch/"
awk '/^\[dev-dependencies/ { skip = 1; next } /^\[/ { skip = 0 } !skip' "$here/webrtc-0.21.1/Cargo.toml" > "$scratch/Cargo.toml"
cat >> "$scratch/Cargo.toml" <<TOML

[workspace]

[profile.dev.package."*"]
opt-level = 2

[patch.crates-io]
rtc = { path = "$here/rtc-0.21.1" }
rtc-ice = { path = "$here/rtc-ice-0.21.1" }
rtc-dtls = { path = "$here/rtc-dtls-0.21.1" }
rtc-sctp = { path = "$here/rtc-sctp-0.21.1" }
rtc-srtp = { path = "$here/rtc-srtp-0.21.1" }
TOML
cd "$scratch"
CARGO_TARGET_DIR="${WEBRTC_TARGET:-$scratch/target}" cargo test --lib --quiet udp_mux
