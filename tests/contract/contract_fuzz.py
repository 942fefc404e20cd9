"""Contract fuzzing of a running railcast server: schemathesis against /api/openapi.json, once per
identity (admin token, viewer token, no token), plus what schemathesis cannot do itself.

Run by scripts/contract-fuzz.sh, which starts and stops the server (and a simulated train); by hand:

    python tests/contract/contract_fuzz.py --base-url http://127.0.0.1:PORT \
        --credentials CREDENTIALS.toml --out DIR [admin] [viewer] [anonymous]

Steps, each of which can fail the run (exit status 1; the others still run):

1. Lint the served contract: every `in: path` parameter must be in its path template and every
   template variable declared (schemathesis fills a path with whatever is declared, so a query
   parameter declared as a path one is never sent at all).
2. For each identity:
   a. create test data as admin: remote controls (one owned by another client, spares for the
      DELETE routes), WebRTC sessions of the admin and of the viewer, a live WebSocket session;
   b. edge probes, requests a schema-driven generator seldom makes: malformed JSON, a body over
      max_body, JSON as text/plain, JSON arrays for objects, a non-integer integer query parameter;
   c. schemathesis on every operation, every phase (examples, coverage, fuzzing, stateful):
      derandomized, a bounded number of examples per operation, one worker, no example database
      and no cache, so the same server build gets the same requests. Path and body ids are drawn
      half of the time from the test data (schemathesis dictionaries) and generated otherwise, so
      operations are tested on things that exist as well as on things that do not.
3. `GET /ws` as real WebSocket handshakes and a plain GET: 101 for a known remote control with a
   token in the header or in the access_token query parameter, and each refusal with its
   documented status and ErrorBody.

Operations schemathesis cannot test fully (all are still run through it; none is excluded):
- GET /ws is a WebSocket upgrade; schemathesis speaks plain HTTP (a 101 would leave it on an
  upgraded connection), so it only sees refusals. Step 3 covers the handshake.
- GET /metrics answers Prometheus text (schema: string): status and content type are checked,
  the exposition format is not.
- POST /api/webrtc/answer needs the SDP answer of a real peer, which cannot be generated: only its
  refusals are reached here (the end-to-end WebRTC tests reach its 204).

Every identity's schemathesis output is in DIR/<identity>.log, its JUnit report in
DIR/<identity>/junit.xml and every request in DIR/<identity>/requests.har; all failures are
summed up at the end, each with a curl command.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
IDENTITIES = ("admin", "viewer", "anonymous")

# Changing any of these changes which requests are sent.
MAX_EXAMPLES = 50
# How often a path or body id is taken from the test data rather than generated.
KNOWN_ID_PROBABILITY = 0.5
CHECKS = [
    # schemathesis's own
    "not_a_server_error",  # any 5xx (a 500 the contract documents is still a failure)
    "status_code_conformance",  # a status code the operation does not document
    "content_type_conformance",  # a Content-Type its documented response does not have
    "response_headers_conformance",  # documented response headers present and valid
    "response_schema_conformance",  # a body that breaks the documented schema
    "negative_data_rejection",  # input the contract forbids, answered with a 2xx
    "unsupported_method",  # another method on a documented path: 405 with an Allow header
    "allow_header_conformance",  # and that Allow header lists the documented methods
    "ignored_auth",  # a 2xx with the token must turn into a refusal without it
    "use_after_free",  # a resource answers 404 once it has been deleted (stateful)
    "ensure_resource_availability",  # and can be fetched once it has been created (stateful)
    # Not enforced: positive_data_acceptance (schema-valid input must be accepted). The contract
    # states no lengths, patterns or ranges for names, train ids, sdpMLineIndex and the SDP type,
    # and no schema can describe a valid SDP answer (docs/fuzzing.md).
    # tests/contract/hooks.py
    "viewer_refused_by_role",
    "anonymous_refused_by_token",
]


def log(message: str) -> None:
    print(f"contract-fuzz: {message}", file=sys.stderr, flush=True)


def tokens(credentials: Path) -> dict[str, str]:
    """The first client token of each role in the credentials file the server wrote."""
    data = tomllib.loads(credentials.read_text())
    found: dict[str, str] = {}
    for client in data.get("clients", []):
        role, token = client.get("role"), client.get("token")
        if role and token and role not in found:
            found[role] = token
    for role in ("admin", "viewer"):
        if role not in found:
            raise SystemExit(f"contract-fuzz: no {role} token in {credentials}")
    return found


def http(base: str, method: str, path: str, token: str | None = None, body=None):
    """(status, content type, parsed JSON or text) of one plain request."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    content_type = headers.get("Content-Type", "")
    try:
        payload = json.loads(raw) if "json" in content_type else raw.decode(errors="replace")
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, content_type, payload


def expect(what: str, result, status: int):
    if result[0] != status:
        raise SystemExit(f"contract-fuzz: setting up the test data: {what} answered {result[0]}: {result[2]}")
    return result[2]


# ---------------------------------------------------------------------------------------------
# The contract


def lint(schema: dict) -> list[str]:
    """Parameters that cannot mean what they say."""
    problems = []
    for path, item in schema.get("paths", {}).items():
        template = set(re.findall(r"\{([^}]+)\}", path))
        shared = item.get("parameters", [])
        for method, operation in item.items():
            if method == "parameters" or not isinstance(operation, dict):
                continue
            declared = {p["name"] for p in shared + operation.get("parameters", []) if p.get("in") == "path"}
            for name in sorted(declared - template):
                problems.append(
                    f"{method.upper()} {path}: parameter '{name}' is declared `in: path` but the path has "
                    f"no {{{name}}}, so clients (and schemathesis) never send it; it is a query parameter"
                )
            for name in sorted(template - declared):
                problems.append(f"{method.upper()} {path}: {{{name}}} in the path is not declared as a parameter")
    return problems


# ---------------------------------------------------------------------------------------------
# WebSocket handshakes (GET /ws)


def ws_connect(addr: tuple[str, int], target: str, token: str | None, upgrade: bool = True) -> tuple[int, str, socket.socket | None]:
    """Send a WebSocket upgrade request (or, upgrade=False, a plain GET): (status, body of a
    refusal, the socket if upgraded)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {target} HTTP/1.1", f"Host: {addr[0]}:{addr[1]}"]
    if upgrade:
        lines += ["Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Key: {key}"]
    else:
        lines += ["Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    s = socket.create_connection(addr, timeout=10)
    try:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 101:
            return status, "", s
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        want = int(length.group(1)) if length else 0
        while len(rest) < want:
            chunk = s.recv(4096)
            if not chunk:
                break
            rest += chunk
        s.close()
        return status, rest.decode(errors="replace"), None
    except BaseException:
        s.close()
        raise


class LiveWebSocket:
    """A WebSocket session kept open while schemathesis runs, so that /api/sessions and the
    remote controls' `sessions` have one to show. A thread reads (and drops) what the server sends
    so that the session never stalls."""

    def __init__(self, addr: tuple[str, int], rc_id: str, token: str):
        status, body, self.sock = ws_connect(addr, f"/ws?remote_control_id={rc_id}", token)
        if status != 101 or self.sock is None:
            raise SystemExit(f"contract-fuzz: setting up the test data: GET /ws answered {status}: {body}")
        self.sock.settimeout(None)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def ws_probe(base: str, schema: dict, tok: dict[str, str], identities: list[str]) -> list[dict]:
    """GET /ws as browsers and tools use it. Each expectation follows the contract's /ws
    responses; an answer outside them, or a refusal without the ErrorBody shape, is a failure."""
    documented = set(schema["paths"]["/ws"]["get"]["responses"])
    split = urlsplit(base)
    addr = (split.hostname, split.port)
    rc_id = expect("POST /api/remote-controls", http(base, "POST", "/api/remote-controls", tok["admin"], {"name": "fuzz ws"}), 201)["id"]
    owned_id = expect(
        "POST /api/remote-controls",
        http(base, "POST", "/api/remote-controls", tok["admin"], {"name": "fuzz ws owned", "owner": "someone-else"}),
        201,
    )["id"]
    token_of = {"admin": tok["admin"], "viewer": tok["viewer"], "anonymous": None}
    cases = []  # (identity, target, token in the header, upgrade headers, expected status)
    for identity in identities:
        token = token_of[identity]
        cases += [
            (identity, f"/ws?remote_control_id={rc_id}", token, True, 101 if token else 401),
            (identity, f"/ws?remote_control_id={rc_id}", token, False, 400 if token else 401),
            (identity, "/ws?remote_control_id=rc-does-not-exist", token, True, 404 if token else 401),
            (identity, "/ws", token, True, 400 if token else 401),
        ]
        if token:
            cases.append((identity, f"/ws?remote_control_id={rc_id}&access_token={token}", None, True, 101))
            cases.append((identity, f"/ws?remote_control_id={owned_id}", token, True, 101 if identity == "admin" else 403))
        else:
            cases.append((identity, f"/ws?remote_control_id={rc_id}&access_token=not-a-token", None, True, 401))
    failures = []
    for identity, target, token, upgrade, expected in cases:
        shown_target = target
        for name, value in token_of.items():
            if value:
                shown_target = shown_target.replace(value, f"${name.upper()}_TOKEN")
        curl = (
            "curl -i "
            + ("-H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==' " if upgrade else "")
            + (f"-H \"Authorization: Bearer ${identity.upper()}_TOKEN\" " if token else "")
            + f"'{base}{shown_target}'"
        )
        what = "WebSocket handshake" if upgrade else "plain GET"
        try:
            status, body, sock = ws_connect(addr, target, token, upgrade)
        except OSError as e:
            failures.append({"identity": identity, "operation": "GET /ws", "checks": [f"handshake failed: {e}"], "status": "", "curl": curl})
            continue
        if sock is not None:
            sock.close()
        problem = None
        if str(status) not in documented:
            problem = f"{status} is not documented for /ws"
        elif status != expected:
            problem = f"{status}, expected {expected}"
        elif status != 101:
            try:
                shape = json.loads(body)
                if not (isinstance(shape.get("code"), str) and isinstance(shape.get("message"), str)):
                    problem = "refusal without the ErrorBody shape"
            except (ValueError, AttributeError):
                problem = "refusal without the ErrorBody shape"
        if problem:
            failures.append(
                {"identity": identity, "operation": f"GET /ws ({what})", "checks": [problem], "status": f"[{status}] {body[:200]}", "curl": curl}
            )
    for rc in (rc_id, owned_id):
        http(base, "DELETE", f"/api/remote-controls/{rc}", tok["admin"])
    log(f"GET /ws: {len(cases)} requests (WebSocket handshakes and plain GETs), {len(failures)} failed")
    return failures


# ---------------------------------------------------------------------------------------------
# Test data


def make_test_data(base: str, tok: dict[str, str]) -> tuple[dict[str, list[str]], LiveWebSocket]:
    """Things to test on, made anew before each identity's run (the admin's run deletes some).
    Returns the dictionaries schemathesis draws ids from, and the live WebSocket session."""
    admin, viewer = tok["admin"], tok["viewer"]

    def create(body: dict) -> str:
        return expect("POST /api/remote-controls", http(base, "POST", "/api/remote-controls", admin, body), 201)["id"]

    def offer(rc: str, token: str) -> str:
        answer = http(base, "POST", "/api/webrtc/offer", token, {"remote_control_id": rc})
        return expect("POST /api/webrtc/offer", answer, 200)["session_id"]

    trains = expect("GET /api/trains", http(base, "GET", "/api/trains", admin), 200)
    train_ids = sorted(t["id"] for t in trains)
    online = [t["id"] for t in trains if t["online"]]
    # Open to every client, mapped to a train that sends video when there is one.
    rc_open = create({"name": "fuzz open"})
    if online:
        expect("PUT /api/remote-controls/{id}/train", http(base, "PUT", f"/api/remote-controls/{rc_open}/train", admin, {"train_id": online[0]}), 200)
    # Owned by the operator: the viewer may not use it (403).
    rc_owned = create({"name": "fuzz owned", "owner": "demo-operator"})
    # For DELETE /api/remote-controls/{id} only, which would take the others away.
    rc_spare = [create({"name": f"fuzz spare {n}"}) for n in (1, 2)]
    sessions = [offer(rc_open, admin), offer(rc_open, viewer)]
    spare_sessions = [offer(rc_open, admin), offer(rc_open, viewer)]
    split = urlsplit(base)
    live = LiveWebSocket((split.hostname, split.port), rc_open, viewer)
    dictionaries = {
        "remote-controls": [rc_open, rc_owned],
        "spare-remote-controls": rc_spare,
        # train-3 has a token but never connected (PUT .../train accepts it, GET /api/trains/{id} does not).
        "trains": sorted(set(train_ids) | {"train-1", "train-2", "train-3"}),
        "webrtc-sessions": sessions,
        "spare-webrtc-sessions": spare_sessions,
    }
    return dictionaries, live


# Which operation draws which id from which dictionary (operation ids of the contract).
BINDINGS = [
    ("get_remote_control", "path.id", "remote-controls"),
    ("set_train", "path.id", "remote-controls"),
    ("set_train", "body.train_id", "trains"),
    ("unset_train", "path.id", "remote-controls"),
    ("delete_remote_control", "path.id", "spare-remote-controls"),
    ("get_train", "path.id", "trains"),
    ("webrtc_offer", "body.remote_control_id", "remote-controls"),
    ("answer", "body.session_id", "webrtc-sessions"),
    ("ice_candidate", "body.session_id", "webrtc-sessions"),
    ("get_webrtc_session", "path.id", "webrtc-sessions"),
    ("server_candidates", "path.id", "webrtc-sessions"),
    ("delete_webrtc_session", "path.id", "spare-webrtc-sessions"),
]


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string for these values


def write_config(path: Path, schema: dict, dictionaries: dict[str, list[str]]) -> None:
    """tests/contract/schemathesis.toml, then the test data as dictionaries and bindings."""
    operation_ids = {o.get("operationId") for item in schema["paths"].values() for o in item.values() if isinstance(o, dict)}
    lines = [(HERE / "schemathesis.toml").read_text(), "", "# Generated by tests/contract/contract_fuzz.py: this run's test data."]
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = [{', '.join(toml_string(v) for v in values)}]"]
    for operation_id, parameter, dictionary in BINDINGS:
        if operation_id not in operation_ids:
            raise SystemExit(f"contract-fuzz: the contract has no operation {operation_id} (tests/contract/contract_fuzz.py BINDINGS)")
        lines += [
            "[[operations]]",
            f"include-operation-id = {toml_string(operation_id)}",
            f"parameters = {{ {toml_string(parameter)} = {{ dictionary = {toml_string(dictionary)}, probability = {KNOWN_ID_PROBABILITY} }} }}",
        ]
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# Edge probes: requests a schema-driven generator seldom or never makes


# 70 KiB of JSON, over the default max_body of 64 KiB, as a curl argument.
OVERSIZED_CURL = '--data-binary "$(printf \'{"name": "%071680d"}\' 0)"'


def raw_request(base: str, method: str, path: str, headers: dict[str, str], body: bytes | None):
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def positional_bodies(dictionaries: dict[str, list[str]]) -> dict[str, list]:
    """Each request body as a JSON array of its fields' values in the order of the server's
    struct, which serde accepts as the struct unless told not to. An order that no longer matches
    only turns these into 422s, which pass."""
    rc, session = dictionaries["remote-controls"][0], dictionaries["webrtc-sessions"][0]
    return {
        "create_remote_control": ["fuzz array", None],
        "set_train": ["train-1"],
        "webrtc_offer": [rc],
        "answer": [session, "answer", "v=0"],
        "ice_candidate": [session, None],
    }


def edge_probes(base: str, schema: dict, identity: str, token: str | None, dictionaries: dict[str, list[str]]) -> tuple[int, list[dict]]:
    """For each operation with a JSON body: malformed JSON, a body over max_body (64 KiB), the
    right JSON with another content type, and JSON arrays where the contract says object; for
    each integer query parameter: a value that is not one. Each answer must be documented for
    the operation, never 2xx, never 5xx, an ErrorBody in application/json, and, for the viewer
    on an admin-only operation or for no token, 403 or 401 as hooks.py's checks want."""
    rc, session = dictionaries["remote-controls"][0], dictionaries["webrtc-sessions"][0]
    ids = {"remote_control_id": rc, "session_id": session, "id": rc}
    arrays = positional_bodies(dictionaries)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    shown_auth = f' -H "Authorization: Bearer ${identity.upper()}_TOKEN"' if token else ""
    failures, count = [], 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict):
                continue
            op_id = operation.get("operationId", "")
            if op_id.startswith("delete_"):
                continue  # no body and no query: nothing here for them
            concrete = re.sub(r"\{([^}]+)\}", lambda m: ids["session_id"] if "webrtc" in path else ids.get(m.group(1), rc), path)
            requests = []  # (what, path, content type, body bytes, curl data argument)
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                big = json.dumps({"name": "x" * (70 * 1024)})
                requests += [
                    ("malformed JSON", concrete, "application/json", b"{", "-d '{'"),
                    ("body over max_body", concrete, "application/json", big.encode(), OVERSIZED_CURL),
                    ("JSON as text/plain", concrete, "text/plain", b"{}", "-d '{}'"),
                    ("empty JSON array", concrete, "application/json", b"[]", "-d '[]'"),
                ]
                if op_id in arrays:
                    body = json.dumps(arrays[op_id])
                    requests.append(("JSON array for an object", concrete, "application/json", body.encode(), f"-d '{body}'"))
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("schema", {}).get("type") == "integer":
                    requests.append((f"non-integer {parameter['name']}", f"{concrete}?{parameter['name']}=abc", None, None, ""))
            for what, target, content_type, body, data in requests:
                count += 1
                headers = dict(auth)
                if content_type:
                    headers["Content-Type"] = content_type
                status, got_type, raw = raw_request(base, method.upper(), target, headers, body)
                problems = []
                documented = operation.get("responses", {})
                if status >= 500:
                    problems.append(f"server error {status}")
                if str(status) not in documented:
                    problems.append(f"{status} is not documented (documented: {', '.join(documented)})")
                if 200 <= status < 300:
                    problems.append(f"{what} accepted ({status})")
                elif "application/json" not in got_type:
                    problems.append(f"{status} with Content-Type {got_type or '(none)'}, not the JSON ErrorBody")
                else:
                    try:
                        shape = json.loads(raw)
                        if not (isinstance(shape.get("code"), str) and isinstance(shape.get("message"), str)):
                            problems.append(f"{status} without the ErrorBody shape")
                    except (ValueError, AttributeError):
                        problems.append(f"{status} without the ErrorBody shape")
                summary = (operation.get("summary") or "").strip()
                if identity == "viewer" and summary.endswith("Admin.") and status != 403:
                    problems.append(f"an admin-only operation answered the viewer {status}, not 403")
                needs_token = all(r for r in operation.get("security", schema.get("security", []))) and operation.get("security", schema.get("security", []))
                if identity == "anonymous" and needs_token and status != 401:
                    problems.append(f"answered {status} without a token, not 401")
                if problems:
                    type_arg = f" -H 'Content-Type: {content_type}'" if content_type else ""
                    shown_target = target.replace(rc, "$RC_ID").replace(session, "$SESSION_ID")
                    failures.append({
                        "identity": identity,
                        "operation": f"{method.upper()} {path} ({what})",
                        "checks": problems,
                        "status": f"[{status}] {got_type}: {raw[:160].decode(errors='replace')}",
                        "curl": f"curl -i -X {method.upper()}{shown_auth}{type_arg} {data + ' ' if data else ''}'{base}{shown_target}'",
                    })
    log(f"{identity}: {count} edge probes, {len(failures)} failed")
    return count, failures


# ---------------------------------------------------------------------------------------------
# schemathesis


def schemathesis_command(venv_bin: Path, config: Path, base: str, token: str | None, report_dir: Path) -> list[str]:
    command = [
        str(venv_bin / "schemathesis"),
        "--config-file", str(config),
        "run", f"{base}/api/openapi.json",
        "--url", base,
        "--checks", ",".join(CHECKS),
        "--generation-deterministic",  # derandomized (no seed is used); implies no example database
        "--max-examples", str(MAX_EXAMPLES),
        "--continue-on-failure",  # every distinct failure of an operation, not only its first
        "--workers", "1",  # requests in one order: the server's state follows from them
        "--request-timeout", "15",
        "--report", "junit,har",  # har: every request and response, for looking into a failure
        "--report-junit-path", str(report_dir / "junit.xml"),
        "--report-har-path", str(report_dir / "requests.har"),
        "--no-color",
    ]
    if token is not None:
        command += ["--header", f"Authorization: Bearer {token}"]
    return command


def run_schemathesis(venv_bin: Path, base: str, schema: dict, tok: dict[str, str], identity: str, out: Path) -> dict:
    token = {"admin": tok["admin"], "viewer": tok["viewer"]}.get(identity)
    report_dir = out / identity
    report_dir.mkdir(parents=True, exist_ok=True)
    dictionaries, live = make_test_data(base, tok)
    _, probe_failures = edge_probes(base, schema, identity, token, dictionaries)
    config = report_dir / "schemathesis.toml"
    write_config(config, schema, dictionaries)
    command = schemathesis_command(venv_bin, config, base, token, report_dir)
    shown = [c.replace(token, f"${identity.upper()}_TOKEN") if token else c for c in command]
    log(f"{identity}: {shlex.join(shown)}")
    env = dict(
        os.environ,
        SCHEMATHESIS_HOOKS="hooks",
        PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH", "")])),
        RAILCAST_FUZZ_IDENTITY=identity,
        RAILCAST_FUZZ_TOKEN=token or "",
    )
    started = time.monotonic()
    try:
        with open(out / f"{identity}.log", "w") as logfile:
            # Its own working directory: schemathesis and Hypothesis write nothing into the repository.
            try:
                code = subprocess.run(command, cwd=report_dir, env=env, stdout=logfile, stderr=subprocess.STDOUT, timeout=600).returncode
            except subprocess.TimeoutExpired:
                code = "timeout (600 s)"
    finally:
        live.close()
    elapsed = time.monotonic() - started
    text = (out / f"{identity}.log").read_text(errors="replace")
    cases = re.search(r"Test cases:\s*\n\s*(.+)", text)
    log(f"{identity}: exit {code} in {elapsed:.0f} s ({cases.group(1).strip() if cases else 'no summary'})")
    failures = probe_failures + junit_failures(report_dir / "junit.xml", identity, tok)
    if code != 0 and not failures:
        failures.append({"identity": identity, "operation": "(run)", "checks": [f"schemathesis exited {code}, see {out / (identity + '.log')}"], "status": "", "curl": ""})
    return {"identity": identity, "code": code, "seconds": elapsed, "failures": failures}


def junit_failures(path: Path, identity: str, tok: dict[str, str]) -> list[dict]:
    """Each failure of schemathesis's JUnit report: its checks, the response and the curl command."""
    if not path.exists():
        return []
    found = []
    for testcase in ET.parse(path).getroot().iter("testcase"):
        for element in testcase.findall("failure") + testcase.findall("error"):
            text = element.text or element.get("message") or ""
            for block in re.split(r"(?m)^\d+\. Test Case ID: \S+\s*$", text):
                if not block.strip():
                    continue
                checks = [l.strip()[2:] for l in block.splitlines() if l.startswith("- ")]
                status = next((l.strip() for l in block.splitlines() if re.match(r"^\[\d{3}\]", l.strip())), "")
                curl = next((l.strip() for l in block.splitlines() if l.strip().startswith("curl ")), "")
                if token := ({"admin": tok["admin"], "viewer": tok["viewer"]}.get(identity)):
                    curl = curl.replace(token, f"${identity.upper()}_TOKEN")
                curl = curl.replace("'Authorization: [Filtered]'", f'"Authorization: Bearer ${identity.upper()}_TOKEN"')
                if element.tag == "error" and not checks:
                    checks = [block.strip().splitlines()[0]]
                found.append({"identity": identity, "operation": testcase.get("name", "?"), "checks": checks, "status": status, "curl": curl})
    return found


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="http://127.0.0.1:PORT of a running server")
    parser.add_argument("--credentials", required=True, type=Path, help="the file its --credentials-out wrote")
    parser.add_argument("--out", required=True, type=Path, help="directory for logs and reports")
    parser.add_argument("identities", nargs="*", help="admin, viewer, anonymous (default: all three)")
    args = parser.parse_args()
    for identity in args.identities:
        if identity not in IDENTITIES:
            parser.error(f"unknown identity {identity}")
    base = args.base_url.rstrip("/")
    host = urlsplit(base).hostname or ""
    if not (host.startswith("127.") or host in ("localhost", "::1")):
        raise SystemExit(f"contract-fuzz: {base} is not a loopback address")
    identities = args.identities or list(IDENTITIES)
    args.out.mkdir(parents=True, exist_ok=True)
    tok = tokens(args.credentials)
    venv_bin = Path(sys.executable).parent

    status, _, schema = http(base, "GET", "/api/openapi.json")
    if status != 200 or not isinstance(schema, dict):
        raise SystemExit(f"contract-fuzz: {base}/api/openapi.json answered {status}")
    (args.out / "openapi.json").write_text(json.dumps(schema, indent=2))
    operations = [(m.upper(), p) for p, item in schema["paths"].items() for m in item if m != "parameters"]
    log(f"{len(operations)} operations in the contract, all of them tested, as {', '.join(identities)}")

    failures: list[dict] = []
    for problem in lint(schema):
        failures.append({"identity": "contract", "operation": problem.split(":")[0], "checks": [problem.split(": ", 1)[1]], "status": "", "curl": f"curl -s {base}/api/openapi.json"})
    log(f"contract lint: {len(failures)} problem(s)")

    results = []
    for identity in identities:
        result = run_schemathesis(venv_bin, base, schema, tok, identity, args.out)
        results.append(result)
        failures += result["failures"]
    failures += ws_probe(base, schema, tok, identities)

    log(f"schemathesis: {sum(r['seconds'] for r in results):.0f} s for {len(results)} identities")
    if failures:
        log(f"{len(failures)} failure(s):")
        for f in failures:
            print(f"  [{f['identity']}] {f['operation']}: {'; '.join(f['checks'])}", file=sys.stderr)
            if f["status"]:
                print(f"      {f['status'][:300]}", file=sys.stderr)
            if f["curl"]:
                print(f"      {f['curl']}", file=sys.stderr)
        log(f"details: {args.out}/<identity>.log; tokens: {args.credentials}")
        return 1
    log("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
