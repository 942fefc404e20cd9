#!/usr/bin/env bash
# Validate every deployment file (scripts/test.sh runs this; docs/operations.md describes them):
#   docker-compose.yml  docker-compose config, with and without --profile cluster;
#                       tests/deploy/check_cluster.py (the profile's services agree)
#   deploy/cluster/     nats-server -t on nats.conf; nginx -t on nginx.conf (its stream part only
#                       where Debian's libnginx-mod-stream is installed: said when it is not)
#   Dockerfile          tests/deploy/check_dockerfile.py (no Docker engine needed)
#   deploy/systemd/     systemd-analyze verify (warnings fail too), systemd-sysusers into a
#                       scratch root, and its railcast.toml loaded by the real server
#   deploy/kubernetes/  kubernetes-validate --strict against the Kubernetes schemas,
#                       tests/deploy/check_kubernetes.py, the ConfigMap's railcast.toml loaded by
#                       the real server
#   deploy/prometheus/  promtool check rules / test rules, when the files exist
# Runs scripts/setup.sh (its packages and venv) and needs the debug railcast-server, which test.sh
# has built; built here when missing. RAILCAST_SERVER overrides its path.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
venv="${RAILCAST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/railcast-venv}"
server="$(realpath -m "${RAILCAST_SERVER:-${CARGO_TARGET_DIR:-target}/debug/railcast-server}")"
if [ ! -x "$server" ]; then
  echo "check-deploy: building $server"
  cargo build --locked -p railcast-server --bin railcast-server
  [ -x "$server" ] || { echo "check-deploy: $server is still missing" >&2; exit 1; }
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# A configuration file as the server loads it, with nothing from this shell's environment.
check_config() {
  if ! env -i PATH="$PATH" "$server" --config "$1" --check-config >/dev/null; then
    echo "check-deploy: $2 is not a valid railcast configuration" >&2
    return 1
  fi
}

docker-compose -f docker-compose.yml config -q
# The image has no curl or wget: a health check must run the server's own.
if grep -nE '^[^#]*"(curl|wget)"' docker-compose.yml >&2; then
  echo "check-deploy: docker-compose.yml runs curl or wget (above), which the image lacks" >&2
  exit 1
fi
echo "docker-compose.yml: valid"

# The `cluster` profile: resolved, then its services, NATS routes and nginx upstreams agree.
docker-compose -f docker-compose.yml --profile cluster config >"$scratch/cluster.yml"
python3 tests/deploy/check_cluster.py "$scratch/cluster.yml" deploy/cluster
for n in 1 2 3; do
  nats-server -c deploy/cluster/nats.conf --name "nats-$n" -t >/dev/null 2>&1 \
    || { nats-server -c deploy/cluster/nats.conf --name "nats-$n" -t; exit 1; }
done
# nginx resolves upstream names when it loads the file: the relays become 127.0.0.1 here.
mkdir -p "$scratch/nginx"
stream_module=/usr/lib/nginx/modules/ngx_stream_module.so
if [ -f "$stream_module" ]; then
  # The official image has the stream module built in; Debian's is a module to load.
  { echo "load_module $stream_module;"; sed -E 's/relay-[0-9]+:/127.0.0.1:/' deploy/cluster/nginx.conf; } >"$scratch/nginx/nginx.conf"
  nginx_checked="whole"
else
  # Without the module the `stream` block cannot be parsed: the http part is checked alone.
  sed -E 's/relay-[0-9]+:/127.0.0.1:/' deploy/cluster/nginx.conf | sed '/^stream {/,/^}/d' >"$scratch/nginx/nginx.conf"
  nginx_checked="http part only; the stream (QUIC) part is NOT checked: apt-get install libnginx-mod-stream"
  echo "check-deploy: $stream_module is missing: deploy/cluster/nginx.conf's stream part is not checked" >&2
fi
said="$(nginx -p "$scratch/nginx" -c "$scratch/nginx/nginx.conf" -e stderr -g "pid $scratch/nginx/nginx.pid;" -t 2>&1)" \
  || { echo "$said" >&2; echo "check-deploy: deploy/cluster/nginx.conf fails nginx -t (above)" >&2; exit 1; }
echo "deploy/cluster: valid (nats-server -t for nats-1..3, nginx -t: $nginx_checked)"

python3 tests/deploy/check_dockerfile.py Dockerfile

# systemd: the unit as installed, its ExecStart pointed at the built server (verify needs it).
unit=deploy/systemd/railcast.service
grep -q '^ExecStart=/usr/local/bin/railcast-server --config /etc/railcast/railcast.toml$' "$unit" \
  || { echo "check-deploy: $unit: ExecStart is not /usr/local/bin/railcast-server --config /etc/railcast/railcast.toml" >&2; exit 1; }
sed "s|^ExecStart=/usr/local/bin/railcast-server|ExecStart=$server|" "$unit" >"$scratch/railcast.service"
# verify exits 0 on settings it ignores (a typo'd key, a bad value): any word about the unit fails.
said="$(systemd-analyze verify "$scratch/railcast.service" 2>&1)" || { echo "$said" >&2; exit 1; }
if grep -F 'railcast.service' <<<"$said" >&2; then
  echo "check-deploy: $unit: systemd-analyze verify warns (above)" >&2
  exit 1
fi
mkdir -p "$scratch/root/etc"
systemd-sysusers --root="$scratch/root" "$PWD/deploy/systemd/railcast.sysusers" >/dev/null 2>&1 \
  || { systemd-sysusers --root="$scratch/root" "$PWD/deploy/systemd/railcast.sysusers"; exit 1; }
grep -q '^railcast:' "$scratch/root/etc/passwd" \
  || { echo "check-deploy: railcast.sysusers creates no user railcast" >&2; exit 1; }
check_config deploy/systemd/railcast.toml deploy/systemd/railcast.toml
echo "deploy/systemd: valid (systemd-analyze verify, sysusers, railcast.toml)"

# Kubernetes: every manifest but the kustomization, against the schemas, unknown fields refused.
manifests=()
for f in deploy/kubernetes/*.yaml; do
  [ "$f" = deploy/kubernetes/kustomization.yaml ] || manifests+=("$f")
done
"$venv/bin/kubernetes-validate" --strict --quiet "${manifests[@]}"
"$venv/bin/python" tests/deploy/check_kubernetes.py deploy/kubernetes "$scratch/kubernetes.toml"
check_config "$scratch/kubernetes.toml" "deploy/kubernetes/configmap.yaml's railcast.toml"
echo "deploy/kubernetes: valid (${#manifests[@]} manifests against the schemas, consistency, railcast.toml)"

# Prometheus rules, when there are any.
if [ -f deploy/prometheus/alerts.yml ]; then
  promtool check rules deploy/prometheus/alerts.yml
  shopt -s nullglob
  rule_tests=(deploy/prometheus/*test*.yml)
  shopt -u nullglob
  if ((${#rule_tests[@]})); then
    promtool test rules "${rule_tests[@]}"
  fi
fi
