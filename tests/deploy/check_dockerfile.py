#!/usr/bin/env python3
"""Checks the Dockerfile as far as a machine without a Docker engine can (scripts/check-deploy.sh).

- every COPY source from the build context exists and is not excluded by .dockerignore, which keeps
  target/ and node_modules/ out of the context;
- the dependency layer: every workspace member's manifest is copied and listed in ARG CRATES, and
  the stubbed workspace it builds (the files copied before `COPY . .`, stubs made as the RUN makes
  them) loads with cargo (`cargo metadata --locked`);
- the binaries copied to the runtime image are the bins of the packages built, with the `dist`
  profile, which Cargo.toml defines stripped;
- the runtime image has the health check `railcast-server healthcheck`, no curl and a CA bundle;
  the console is built with an LTS line of Node (even major, 22 or later).

Usage: check_dockerfile.py [DOCKERFILE]  (from the repository root; exit 1 with the reasons).
"""
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

errors = []


def fail(msg):
    errors.append(msg)


def instructions(text):
    """(stage index, keyword, arguments) per instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    stage = -1
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage += 1
        yield stage, word, rest.strip()


def ignored(path, patterns):
    path = path.rstrip("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(part, pat[3:]) for part in path.split("/")):
                return True
        elif fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
            return True
    return False


def main():
    dockerfile = sys.argv[1] if len(sys.argv) > 1 else "Dockerfile"
    text = open(dockerfile).read()
    ins = list(instructions(text))
    stages = max(s for s, _, _ in ins) + 1
    final = stages - 1

    patterns = [l.strip() for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
    for must in ("target/", "**/node_modules/"):
        if must not in patterns:
            fail(f".dockerignore: {must} is missing (it would go into the build context)")

    args = {}
    for _, word, rest in ins:
        if word == "ARG":
            name, _, value = rest.partition("=")
            args[name] = value.strip('"')
    crates = args.get("CRATES", "").split()
    build = args.get("BUILD", "").split()

    # COPY sources from the context.
    copies = []  # (stage, sources, destination) without --from
    for stage, word, rest in ins:
        if word in ("COPY", "ADD"):
            parts = shlex.split(rest)
            if any(p.startswith("--from=") for p in parts):
                continue
            parts = [p for p in parts if not p.startswith("--")]
            copies.append((stage, parts[:-1], parts[-1]))
            for src in parts[:-1]:
                if src in (".", "./"):
                    continue
                if not os.path.exists(src):
                    fail(f"COPY {src}: not in the build context")
                elif ignored(src, patterns):
                    fail(f"COPY {src}: excluded by .dockerignore")

    # The workspace members, as cargo sees them.
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--no-deps", "--offline", "--format-version", "1"],
        check=True, capture_output=True, text=True).stdout)
    root = meta["workspace_root"]
    members = {}
    for pkg in meta["packages"]:
        if pkg["id"] in meta["workspace_members"]:
            members[pkg["name"]] = (os.path.relpath(os.path.dirname(pkg["manifest_path"]), root), pkg)
    member_dirs = sorted(d for d, _ in members.values())
    if sorted(crates) != member_dirs:
        fail(f"ARG CRATES is {sorted(crates)}, the workspace members are {member_dirs}")

    # The stubbed workspace: what the build stage has before `COPY . .`.
    build_stage = next((s for s, srcs, _ in copies if srcs == ["."]), None)
    if build_stage is None:
        fail("no `COPY . .` in the build stage")
    else:
        before = []
        for stage, srcs, dest in copies:
            if stage != build_stage:
                continue
            if srcs == ["."]:
                break
            before.append((srcs, dest))
        copied = set()
        with tempfile.TemporaryDirectory() as tmp:
            for srcs, dest in before:
                for src in srcs:
                    if not os.path.exists(src):
                        continue  # reported above
                    if os.path.isdir(src):  # Docker copies a directory's contents into dest
                        shutil.copytree(src, os.path.join(tmp, dest), dirs_exist_ok=True)
                        continue
                    to = os.path.join(dest, os.path.basename(src)) if dest.endswith("/") or dest == "." else dest
                    copied.add(os.path.normpath(to))
                    os.makedirs(os.path.dirname(os.path.join(tmp, to)), exist_ok=True)
                    shutil.copy(src, os.path.join(tmp, to))
            for d in member_dirs:
                if f"{d}/Cargo.toml" not in copied:
                    fail(f"the dependency layer does not copy {d}/Cargo.toml")
            for crate in crates:
                os.makedirs(os.path.join(tmp, crate, "src"), exist_ok=True)
                open(os.path.join(tmp, crate, "src", "lib.rs"), "w").close()
                with open(os.path.join(tmp, crate, "src", "main.rs"), "w") as f:
                    f.write("fn main() {}\n")
            done = subprocess.run(["cargo", "metadata", "--no-deps", "--offline", "--locked", "--format-version", "1"],
                                  cwd=tmp, capture_output=True, text=True)
            if done.returncode != 0:
                fail(f"the stubbed workspace of the dependency layer does not load: {done.stderr.strip()}")

    # What is built and shipped.
    packages = [build[i + 1] for i, a in enumerate(build) if a == "-p"]
    bins = set()
    for name in packages:
        if name not in members:
            fail(f"ARG BUILD: -p {name} is not a workspace member")
            continue
        bins |= {t["name"] for t in members[name][1]["targets"] if "bin" in t["kind"]}
    if "--profile" not in build or build[build.index("--profile") + 1] != "dist":
        fail("ARG BUILD does not build with --profile dist")
    cargo_toml = open("Cargo.toml").read()
    dist = re.search(r"^\[profile\.dist\]\n((?:[^\[\n].*\n|\n)*)", cargo_toml, re.M)
    if not dist or not re.search(r'^strip\s*=\s*("symbols"|true)', dist.group(1), re.M):
        fail("Cargo.toml: [profile.dist] with strip = \"symbols\" is missing")
    shipped = set()
    for stage, word, rest in ins:
        if stage == final and word == "COPY" and "--from=build" in rest:
            shipped |= {os.path.basename(p) for p in shlex.split(rest)[1:-1] if p.startswith("/usr/local/bin/")}
    for name in ("railcast-server", "railcast-train-sim", "railcast-train-agent"):
        if name not in shipped:
            fail(f"the runtime image lacks {name}")
    for name in shipped - bins:
        fail(f"the runtime image copies {name}, which the build does not make (bins: {sorted(bins)})")
    for name in shipped:
        if f"target/dist/{name}" not in text:
            fail(f"{name} is not taken from target/dist/")

    # The runtime stage.
    final_ins = [(w, r) for s, w, r in ins if s == final]
    checks = [r for w, r in final_ins if w == "HEALTHCHECK"]
    if len(checks) != 1 or not re.search(r'CMD \["railcast-server", "healthcheck"\]$', checks[0]):
        fail(f'the runtime stage needs one HEALTHCHECK ... CMD ["railcast-server", "healthcheck"], has {checks}')
    for w, r in final_ins:
        if w == "RUN" and re.search(r"\bcurl\b|\bwget\b", r):
            fail(f"the runtime stage installs curl or wget: {r}")
    if not any("/etc/ssl/certs/ca-certificates.crt" in r or "ca-certificates" in r.split() for _, r in final_ins):
        fail("the runtime stage has no CA bundle (`--ca system` of the simulator and the agent)")
    node = [r for _, w, r in ins if w == "FROM" and r.startswith("node:")]
    major = [int(m.group(1)) for m in (re.match(r"node:(\d+)", r) for r in node) if m]
    if not major or any(m % 2 or m < 22 for m in major):
        fail(f"the console must be built with a Node LTS line (even major, 22 or later): {node}")

    for e in errors:
        print(f"{dockerfile}: {e}", file=sys.stderr)
    if errors:
        return 1
    print(f"{dockerfile}: valid ({stages} stages; dependency layer: {len(crates)} manifests; ships {', '.join(sorted(shipped))})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
