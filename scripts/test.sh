#!/usr/bin/env bash
# Run every test: formatting, lints, unit tests, golden vectors, the end-to-end tests that start
# the real server, simulator and clients on loopback, and the deployment files' validation.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The web console: unit tests (Vitest: the TypeScript wire decoder on the same golden vectors,
# assembler, clock offset, Auto policy), then type-check and build into web-client/dist, which the
# console end-to-end tests (server/tests/browser/console_*.rs) serve.
(cd web-client && npm test && npm run build)
# The end-to-end tests spawn the workspace binaries; build them first. They are grouped by area
# into one executable per directory of server/tests/ (each executable links webrtc-rs); inside
# one, tests run on parallel threads, except those that take testkit::serial().
cargo build --workspace --bins --locked
cargo test --workspace --locked
# The HTTP contract: schemathesis against the real server's /api/openapi.json, every operation, as
# admin, as viewer and with no token (about 30 s; docs/fuzzing.md, "The HTTP contract").
./scripts/contract-fuzz.sh
# The vendored rtc-sctp's own unit tests, which cover railcast's patch 13 (third_party/PATCHES.md).
RTC_SCTP_TARGET="$(realpath -m "${CARGO_TARGET_DIR:-target}")/rtc-sctp" ./third_party/test-rtc-sctp.sh
# The vendored webrtc's UDP mux (patch 18), its own unit tests: STUN parsing against RFC 5769's
# vectors, routing by ufrag, address and transaction, the per-session bounds, removal.
WEBRTC_TARGET="$(realpath -m "${CARGO_TARGET_DIR:-target}")/webrtc-mux" ./third_party/test-webrtc-udp-mux.sh
# The load tool: every benchmark scenario at tiny sizes against the debug build (checks that the
# tool works; no timing is asserted). Figures come from the full run, see docs/benchmarks.md.
"${CARGO_TARGET_DIR:-target}/debug/railcast-bench" --smoke --json-only
# The soak, short mode: 5 trains and 50 clients over both transports for 20 s; fails on a panic, a
# client error or delivery below 99 % (the 10-minute run: scripts/soak.sh, docs/benchmarks.md).
./scripts/soak.sh --short
# Fuzzing smoke run: each fuzz target of the wire decoders for 15 s (libFuzzer on stable; a crash
# fails the run and keeps the input). The longer run and its figures: docs/fuzzing.md.
./scripts/fuzz.sh 15
# The deployment files: compose, the Dockerfile, systemd, Kubernetes, Prometheus rules
# (docs/operations.md); with the debug server built above.
./scripts/check-deploy.sh
