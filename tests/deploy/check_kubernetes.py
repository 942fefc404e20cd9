#!/usr/bin/env python3
"""Consistency of deploy/kubernetes/ beyond its schemas (kubernetes-validate checks those;
scripts/check-deploy.sh runs both). Needs PyYAML (the test venv).

- kustomization.yaml lists every manifest of the directory, and only those;
- each Service selects the Deployment's pods and targets a port the container declares, with the
  same protocol;
- the probes are GETs of /healthz (liveness) and /readyz (readiness), routes the server has;
- the pod runs as the image's user (the Dockerfile's useradd --uid), non-root, with a read-only root
  file system and every capability dropped;
- the ConfigMap's railcast.toml is written to OUT, for `railcast-server --check-config`.

Usage: check_kubernetes.py DIR OUT  (from the repository root; exit 1 with the reasons).
"""
import glob
import os
import re
import sys

import yaml

errors = []


def fail(msg):
    errors.append(msg)


def main():
    directory, out = sys.argv[1], sys.argv[2]
    files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, "*.yaml")))
    kustomization = yaml.safe_load(open(os.path.join(directory, "kustomization.yaml")))
    listed = sorted(kustomization.get("resources", []))
    manifests = [f for f in files if f != "kustomization.yaml"]
    if listed != manifests:
        fail(f"kustomization.yaml lists {listed}, the directory has {manifests}")

    docs = []
    for f in manifests:
        docs += [d for d in yaml.safe_load_all(open(os.path.join(directory, f))) if d]
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    deployments = kinds.get("Deployment", [])
    if len(deployments) != 1:
        fail(f"expected one Deployment, found {len(deployments)}")
        return report()
    dep = deployments[0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    if dep["spec"]["selector"]["matchLabels"].items() - labels.items():
        fail("the Deployment's selector does not match its pod labels")
    container = pod["spec"]["containers"][0]
    ports = {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in container.get("ports", [])}

    for svc in kinds.get("Service", []):
        name = svc["metadata"]["name"]
        if svc["spec"].get("selector", {}).items() - labels.items():
            fail(f"Service {name} selects {svc['spec'].get('selector')}, not the pods ({labels})")
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            proto = p.get("protocol", "TCP")
            declared = ports.get(target) if isinstance(target, str) else next(
                (v for v in ports.values() if v[0] == target), None)
            if declared is None:
                fail(f"Service {name}: targetPort {target} is not a container port ({sorted(ports)})")
            elif declared[1] != proto:
                fail(f"Service {name}: port {target} is {proto} here, {declared[1]} in the container")
    wanted = {"http": ("TCP", 8080), "quic": ("UDP", 4433), "webrtc": ("UDP", 8189)}
    exposed = {(p.get("protocol", "TCP"), p["port"]) for s in kinds.get("Service", []) for p in s["spec"]["ports"]}
    for what, key in wanted.items():
        if key not in exposed:
            fail(f"no Service exposes {what} ({key[0]} {key[1]})")

    routes = set(re.findall(r'\.route\("(/[a-z]+)"', open("server/src/api/mod.rs").read()))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = container.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            fail(f"{probe} must GET {path}, gets {got}")
        if path not in routes:
            fail(f"{probe}: the server has no route {path} (server/src/api/mod.rs)")

    uid = re.search(r"useradd [^\n]*--uid (\d+)", open("Dockerfile").read())
    sec = pod["spec"].get("securityContext", {})
    csec = container.get("securityContext", {})
    if not uid or sec.get("runAsUser") != int(uid.group(1)):
        fail(f"runAsUser {sec.get('runAsUser')} is not the image's user ({uid and uid.group(1)})")
    if sec.get("runAsNonRoot") is not True:
        fail("runAsNonRoot is not true")
    if csec.get("readOnlyRootFilesystem") is not True or csec.get("allowPrivilegeEscalation") is not False:
        fail("the container needs readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
    if csec.get("capabilities", {}).get("drop") != ["ALL"]:
        fail("the container must drop ALL capabilities")

    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    maps = {c["metadata"]["name"]: c for c in kinds.get("ConfigMap", [])}
    config = next((v for v in volumes.values() if "configMap" in v), None)
    if not config or config["configMap"]["name"] not in maps:
        fail("no volume of a ConfigMap defined here")
    else:
        toml = maps[config["configMap"]["name"]]["data"].get("railcast.toml")
        if toml is None or env.get("RAILCAST_CONFIG") != mounts.get(config["name"]):
            fail("RAILCAST_CONFIG must name the mounted railcast.toml of the ConfigMap")
        else:
            with open(out, "w") as f:
                f.write(toml)
    secret = next((v for v in volumes.values() if "secret" in v), None)
    auth = env.get("RAILCAST_AUTH_FILE") or ""
    if not secret or not auth.startswith(mounts.get(secret["name"], "?") + "/"):
        fail("RAILCAST_AUTH_FILE must be a file of the mounted Secret")
    return report()


def report():
    for e in errors:
        print(f"deploy/kubernetes: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
