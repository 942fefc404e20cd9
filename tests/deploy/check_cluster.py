#!/usr/bin/env python3
"""The compose `cluster` profile hangs together (scripts/check-deploy.sh; no Docker engine).

Usage: check_cluster.py RESOLVED_COMPOSE_YAML DEPLOY_CLUSTER_DIR
The YAML is `docker-compose --profile cluster config` (anchors and variables resolved). Checks:
the services outside the profile are the demo's only (plain `docker compose up` is unchanged);
the NATS routes are the three NATS services, each started with its own --name; the relays'
NATS URLs name those services, their node ids and WebRTC ports differ, and they share one
credentials file and QUIC certificate; both nginx upstreams list exactly the relays; only the
load balancer publishes HTTP and QUIC.
"""
import re
import sys

import yaml

DEMO = {"server", "mosquitto", "trains"}


def main(compose_path, cluster_dir):
    services = yaml.safe_load(open(compose_path))["services"]
    errors = []
    outside = {n for n, s in services.items() if not s.get("profiles")}
    if outside != DEMO:
        errors.append(f"services started without --profile: {sorted(outside)}, want {sorted(DEMO)}")
    for name, s in services.items():
        if name not in DEMO and s.get("profiles") != ["cluster"]:
            errors.append(f"{name}: profiles {s.get('profiles')}, want [cluster]")

    nats = sorted(n for n in services if n.startswith("nats-"))
    conf = open(f"{cluster_dir}/nats.conf").read()
    routes = sorted(re.findall(r"nats://([\w.-]+):6222", conf))
    if len(nats) != 3 or routes != nats:
        errors.append(f"nats.conf routes {routes} are not the NATS services {nats}")
    names = [s["command"][s["command"].index("--name") + 1] for n, s in services.items() if n in nats]
    if sorted(names) != nats:
        errors.append(f"NATS --name values {names}, want {nats}")

    relays = sorted(n for n in services if n.startswith("relay-"))
    env = {n: services[n]["environment"] for n in relays}
    ids = [e.get("RAILCAST_CLUSTER_NODE_ID") for e in env.values()]
    if len(relays) != 3 or len(set(ids)) != 3 or None in ids:
        errors.append(f"relays {relays} need three distinct node ids, got {ids}")
    for n, e in env.items():
        hosts = re.findall(r"nats://(?:[^@/]*@)?([\w.-]+):4222", e.get("RAILCAST_CLUSTER_NATS_URL", ""))
        if not hosts or not set(hosts) <= set(nats):
            errors.append(f"{n}: RAILCAST_CLUSTER_NATS_URL names no NATS service of the profile")
        port = e.get("RAILCAST_WEBRTC_UDP_PORT")
        published = [p for p in services[n].get("ports", []) if p.get("protocol") == "udp"]
        if [(str(p["published"]), str(p["target"])) for p in published] != [(port, port)]:
            errors.append(f"{n}: WebRTC port {port} must be published as the same number, alone")
    for key in ("RAILCAST_AUTH_FILE", "RAILCAST_TLS_CERT", "RAILCAST_TLS_KEY", "RAILCAST_CLUSTER_NATS_URL"):
        if len({e.get(key) for e in env.values()}) != 1 or None in {e.get(key) for e in env.values()}:
            errors.append(f"relays differ in {key} (every node needs the same)")
    if len({e.get("RAILCAST_WEBRTC_UDP_PORT") for e in env.values()}) != 3:
        errors.append("relays share a WebRTC port (each publishes its own)")

    nginx = open(f"{cluster_dir}/nginx.conf").read()
    for port, what in (("8080", "http"), ("4433", "stream")):
        upstream = sorted(re.findall(rf"^\s*server ([\w.-]+):{port}\b", nginx, re.M))
        if upstream != relays:
            errors.append(f"nginx.conf {what} upstream {upstream} is not the relays {relays}")
    if not re.search(r"^\s*hash \$remote_addr consistent;", nginx, re.M):
        errors.append("nginx.conf: the QUIC upstream does not hash the client's address")
    lb = services.get("cluster-lb", {})
    lb_ports = {(str(p["target"]), p.get("protocol")) for p in lb.get("ports", [])}
    if not {("8080", "tcp"), ("4433", "udp")} <= lb_ports:
        errors.append(f"cluster-lb publishes {sorted(lb_ports)}, want 8080/tcp and 4433/udp")

    for e in errors:
        print(f"check_cluster: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"cluster profile: consistent ({len(nats)} NATS, {len(relays)} relays, one load balancer)")


if __name__ == "__main__":
    main(*sys.argv[1:])
