"""aiortc 1.16 as a railcast WebRTC remote control, through the REST flow (the server offers).

    python aiortc_peer.py --http 127.0.0.1:PORT --token TOKEN --remote-control rc-… [--frames 20]

1. POST /api/webrtc/offer; the offer SDP is reported as it came (candidate lines,
   end-of-candidates), then applied; aiortc's answer (its candidates inside: aiortc does not
   trickle) is POSTed, and an empty candidate ends the client's candidates.
2. GET /api/webrtc/sessions/{id}/candidates until `complete`: the server's candidates found
   after the offer, each added with addIceCandidate, and reported.
3. `video` messages are split into packets (docs/wire-format.md §2.6; each header checked as in
   §2.1), the chunks of each frame reassembled and their SHA-256 reported, for the Rust test to
   compare with the simulator's manifest.
4. A `ping` and a `set_speed` command on `command`; their `pong` and `command_ack` are reported.
5. pc.close(), aiortc's normal close (its SCTP sends an ABORT chunk).

The last stdout line is one JSON object; the exit status is non-zero on any failure (the object
then has "error").
"""

import argparse
import asyncio
import hashlib
import json
import struct
import sys
import time
import urllib.error
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

HEADER = struct.Struct(">2sBBBBHIQHHH")  # wire-format.md §2: 26 bytes, big-endian
assert HEADER.size == 26


def call(base, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


class Frames:
    """Chunks → whole frames, per (camera, sequence)."""

    def __init__(self):
        self.pending = {}
        self.done = []
        self.messages = 0
        self.packets = 0
        self.bad = []

    def message(self, data):
        self.messages += 1
        at = 0
        while at < len(data):
            if len(data) - at < HEADER.size:
                self.bad.append(f"truncated header at byte {at} of {len(data)}")
                return
            magic, version, kind, flags, codec, camera, seq, capture_us, index, count, length = HEADER.unpack_from(
                data, at
            )
            if (magic, version, kind, codec) != (b"RC", 1, 1, 1):
                self.bad.append(f"bad preamble {magic!r} v{version} kind {kind} codec {codec}")
                return
            end = at + HEADER.size + length
            if length == 0 or count == 0 or index >= count or end > len(data):
                self.bad.append(f"bad packet: chunk {index}/{count}, {length} bytes, message {len(data)}")
                return
            self.packets += 1
            frame = self.pending.setdefault(
                (camera, seq), {"count": count, "chunks": {}, "capture_us": capture_us, "keyframe": bool(flags & 1)}
            )
            frame["chunks"][index] = bytes(data[at + HEADER.size : end])
            if len(frame["chunks"]) == frame["count"]:
                del self.pending[(camera, seq)]
                whole = b"".join(frame["chunks"][i] for i in range(frame["count"]))
                self.done.append(
                    {
                        "camera": camera,
                        "seq": seq,
                        "keyframe": frame["keyframe"],
                        "capture_us": frame["capture_us"],
                        "size": len(whole),
                        "sha256": hashlib.sha256(whole).hexdigest(),
                    }
                )
            at = end


async def run(args, report):
    base = f"http://{args.http}"
    t0 = time.monotonic()
    status, offer = await asyncio.to_thread(
        call, base, args.token, "POST", "/api/webrtc/offer", {"remote_control_id": args.remote_control}
    )
    if status != 200:
        raise RuntimeError(f"offer: {status} {offer}")
    sid = offer["session_id"]
    report["session_id"] = sid
    lines = [line.strip() for line in offer["sdp"].splitlines()]
    report["offer_candidates"] = [line[2:] for line in lines if line.startswith("a=candidate:")]
    report["offer_end_of_candidates"] = "a=end-of-candidates" in lines

    pc = RTCPeerConnection()
    channels = {}
    opened = asyncio.Event()
    frames = Frames()
    events = []
    event_arrived = asyncio.Event()

    @pc.on("datachannel")
    def on_datachannel(channel):
        channels[channel.label] = channel
        if "video" in channels and "command" in channels:
            opened.set()

        @channel.on("message")
        def on_message(message):
            if channel.label == "video" and isinstance(message, bytes):
                frames.message(message)
            elif channel.label == "command" and isinstance(message, str):
                events.append(json.loads(message))
                event_arrived.set()

    async def event(pred, what, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            for e in events:
                if pred(e):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no {what} within {timeout} s; events: {[e.get('type') for e in events]}")
            event_arrived.clear()
            try:
                await asyncio.wait_for(event_arrived.wait(), left)
            except asyncio.TimeoutError:
                pass

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        status, body = await asyncio.to_thread(
            call,
            base,
            args.token,
            "POST",
            "/api/webrtc/answer",
            {"session_id": sid, "type": "answer", "sdp": pc.localDescription.sdp},
        )
        if status != 204:
            raise RuntimeError(f"answer: {status} {body}")
        status, body = await asyncio.to_thread(
            call, base, args.token, "POST", "/api/webrtc/ice-candidate", {"session_id": sid, "candidate": ""}
        )
        if status != 204:
            raise RuntimeError(f"end of candidates: {status} {body}")

        # The server's candidates after the offer, until it says gathering is complete.
        after, late, complete = 0, [], False
        deadline = time.monotonic() + 10
        while not complete and time.monotonic() < deadline:
            status, page = await asyncio.to_thread(
                call, base, args.token, "GET", f"/api/webrtc/sessions/{sid}/candidates?after={after}&wait_ms=2000"
            )
            if status != 200:
                raise RuntimeError(f"candidates: {status} {page}")
            for c in page["candidates"]:
                late.append(c["candidate"])
                ice = candidate_from_sdp(c["candidate"].removeprefix("candidate:"))
                ice.sdpMid, ice.sdpMLineIndex = c.get("sdpMid"), c.get("sdpMLineIndex")
                await pc.addIceCandidate(ice)
            after, complete = page["next"], page["complete"]
        report["late_candidates"] = late
        report["candidates_complete"] = complete

        await asyncio.wait_for(opened.wait(), 10)
        report["setup_ms"] = round((time.monotonic() - t0) * 1000, 1)
        welcome = await event(lambda e: e.get("type") == "welcome", "welcome")
        report["welcome"] = welcome

        deadline = time.monotonic() + 10
        while len(frames.done) < args.frames and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if len(frames.done) < args.frames:
            raise RuntimeError(f"{len(frames.done)} of {args.frames} frames within 10 s")

        channels["command"].send(json.dumps({"type": "ping", "t": 7}))
        await event(lambda e: e.get("type") == "pong" and e.get("t") == 7, "pong")
        channels["command"].send(
            json.dumps({"type": "command", "request_id": "aiortc-1", "command": {"type": "set_speed", "kmh": 42}})
        )
        report["ack"] = await event(lambda e: e.get("request_id") == "aiortc-1", "command answer")
    finally:
        report["frames"] = frames.done
        report["messages"] = frames.messages
        report["packets"] = frames.packets
        report["bad_packets"] = frames.bad
        report["events"] = [e.get("type") for e in events]
        # aiortc's normal close: SCTP ABORT, DTLS close_notify, ICE stops.
        await pc.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--http", required=True, help="the server's HTTP address, host:port")
    p.add_argument("--token", required=True, help="a client bearer token")
    p.add_argument("--remote-control", required=True, help="the remote control id")
    p.add_argument("--frames", type=int, default=20, help="whole frames to receive before the command")
    args = p.parse_args()
    report = {"ok": False}
    code = 0
    try:
        asyncio.run(asyncio.wait_for(run(args, report), 30))
        report["ok"] = not report["bad_packets"]
        if report["bad_packets"]:
            report["error"] = "invalid packets on video"
            code = 1
    except Exception as e:  # the report says what failed; the exit status says that it did
        report["error"] = f"{type(e).__name__}: {e}"
        code = 1
    print(json.dumps(report), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
