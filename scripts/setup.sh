#!/usr/bin/env bash
# Install what the build and the tests need and a fresh machine may lack. Idempotent and quick when
# everything is present. System packages come from apt-get (needs root, as on CI).
set -euo pipefail

need_apt=()
command -v g++ >/dev/null 2>&1 || need_apt+=(g++ make)      # openh264's bundled C++ sources
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)   # validates docker-compose.yml
command -v curl >/dev/null 2>&1 || need_apt+=(curl)          # scripts/demo.sh
[ -x /usr/bin/chromium ] || need_apt+=(chromium)             # real-browser tests (never a downloaded browser)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)     # drives Chromium through playwright-core
[ -x /usr/bin/turnserver ] || need_apt+=(coturn)            # real TURN relay for the WebRTC tests

if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  else
    echo "setup: please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi

# playwright-core only (it downloads no browser), pinned by package-lock.json.
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ ! -d "$here/tests/browser/node_modules/playwright-core" ]; then
  (cd "$here/tests/browser" && npm ci --no-audit --no-fund)
fi
# The web console: Vue, Vite, Vitest, playwright-core (pinned by web-client/package-lock.json).
if [ ! -d "$here/web-client/node_modules/vite" ]; then
  (cd "$here/web-client" && npm ci --no-audit --no-fund)
fi

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
