#!/usr/bin/env bash
# The secrets every node of the compose `cluster` profile shares, made once before its first start:
#   deploy/cluster/make-secrets.sh && docker compose --profile cluster up --build cluster-lb cluster-trains
# into deploy/cluster/secrets/ (or the directory given), which the relays mount read-only:
#   credentials.toml  the relays' auth_file: one token works on every node. It holds SHA-256
#                     digests only (docs/security.md, "Credentials"), no secret.
#   trains.toml       the simulated trains' tokens in clear (railcast-train-sim --credentials).
#   quic.crt/.key     one self-signed QUIC certificate for every node (tls_cert, tls_key): a train
#                     learns the fingerprint from one node and its QUIC may reach another.
# The client tokens are printed here and kept nowhere else. Nothing is overwritten: delete the
# directory to make new ones. Needs openssl and sha256sum.
#
# The relays run as uid 10001 and read these through a bind mount, so the files are world-readable
# (0644): fine for a demo on your machine. In production use your own auth_file and a CA-issued
# certificate, readable by uid 10001 only (chown 10001, mode 0640).
set -euo pipefail
dir="${1:-$(dirname "$0")/secrets}"
if [ -e "$dir/credentials.toml" ]; then
  echo "make-secrets: $dir/credentials.toml exists; keeping it (delete $dir to start over)"
  exit 0
fi
mkdir -p "$dir"
token() { openssl rand -hex 16; }
digest() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

admin="$(token)" operator="$(token)" viewer="$(token)"
{
  echo '# Made by deploy/cluster/make-secrets.sh: token digests only.'
  for who in admin operator viewer; do
    printf '\n[[clients]]\nname = "cluster-%s"\nrole = "%s"\nsha256 = "%s"\n' "$who" "$who" "$(digest "${!who}")"
  done
  printf '\n[trains]\n'
} >"$dir/credentials.toml"
echo '# Made by deploy/cluster/make-secrets.sh: the simulated trains'"'"' tokens.' >"$dir/trains.toml"
printf '[trains]\n' >>"$dir/trains.toml"
for n in 1 2 3 4; do
  t="$(token)"
  printf '"train-%s" = "sha256:%s"\n' "$n" "$(digest "$t")" >>"$dir/credentials.toml"
  printf '"train-%s" = "%s"\n' "$n" "$t" >>"$dir/trains.toml"
done

# ECDSA P-256, as the relays' own generated certificates; the names are those trains may dial.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 365 \
  -subj /CN=railcast-cluster -addext "subjectAltName=DNS:localhost,DNS:cluster-lb,IP:127.0.0.1" \
  -keyout "$dir/quic.key" -out "$dir/quic.crt" 2>/dev/null
chmod 0755 "$dir"
chmod 0644 "$dir"/credentials.toml "$dir"/trains.toml "$dir"/quic.crt "$dir"/quic.key

echo "make-secrets: wrote $dir (credentials.toml, trains.toml, quic.crt, quic.key)"
echo "console tokens (any node, through the one address; not stored anywhere):"
for who in admin operator viewer; do
  echo "  cluster-$who: ${!who}    http://localhost:8080/#token=${!who}"
done
