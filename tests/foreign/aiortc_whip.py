"""aiortc 1.16 as a WHIP publisher (RFC 9725): a train that speaks WebRTC instead of QUIC.

    python aiortc_whip.py --http 127.0.0.1:PORT --train train-w --token TRAIN_TOKEN \
        [--cameras 2] [--audio] [--stall I]… [--no-channel] [--via HOST:PORT] [--timeout 60]

1. OPTIONS on the WHIP endpoint (status and `Accept-Post` reported).
2. An offer of `--cameras` send-only video tracks forced to H.264 by codec preferences (aiortc
   encodes with PyAV's libx264; camera i is 320x240 + i*(64x48), a moving ramp at 30 fps),
   with `--audio` a send-only Opus track (aiortc's silence), and the `command` data channel
   (`--stall I`: camera I's track never yields a picture),
   is POSTed as `application/sdp` with the train's token; `201`, `Location`, `ETag` reported.
   With `--via`, every media datagram crosses a relay there: the offer goes without aiortc's
   candidates, and the answer's candidates are rewritten to the relay's address.
3. While it publishes, every `command` on the channel is acked (`command_ack`, ok, "done by
   aiortc") and recorded; a `telemetry` goes out every second.
4. A line on stdin (or `--timeout`) ends it: DELETE on the `Location` (status reported, then a
   second DELETE: 404; 0 when the server is gone), and the report: frames each track produced,
   commands received, the peer connection's states.

The last stdout line is one JSON object; the exit status is non-zero on any failure.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack


def request(url, token, method, body=None, content_type=None):
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode(errors="replace")
    except (urllib.error.URLError, ConnectionError) as e:  # the server is gone (a shutdown test)
        return 0, {}, str(e)


class Ramp(VideoStreamTrack):
    """A moving luma ramp, so that every frame differs; counts the frames it produced."""

    def __init__(self, width, height, stalled=False):
        super().__init__()
        self.width, self.height = width, height
        self.frames = 0
        self.stalled = stalled

    async def recv(self):
        if self.stalled:  # a camera that never delivers a picture
            await asyncio.Future()
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        t = self.frames
        for i, plane in enumerate(frame.planes):
            w = plane.line_size
            h = self.height if i == 0 else self.height // 2
            row = bytes(((x + 4 * t) & 0xFF) if i == 0 else 128 for x in range(w))
            plane.update(row * h)
        frame.pts, frame.time_base = pts, time_base
        self.frames += 1
        return frame


async def run(args, report):
    base = "http://" + args.http
    endpoint = f"{base}/api/whip/trains/{urllib.parse.quote(args.train)}"
    status, headers, _ = await asyncio.to_thread(request, endpoint, None, "OPTIONS")
    report["options"] = {"status": status, "accept_post": headers.get("accept-post")}

    pc = RTCPeerConnection()
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() == "video/h264"]
    tracks = []
    for i in range(args.cameras):
        track = Ramp(320 + 64 * i, 240 + 48 * i, stalled=i in args.stall)
        tracks.append(track)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(h264)
    if args.audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    states = report["connection_states"] = []

    @pc.on("connectionstatechange")
    def on_state():
        states.append(pc.connectionState)

    commands = []
    opened = asyncio.Event()
    channel = None if args.no_channel else pc.createDataChannel("command")
    if channel is None:
        opened.set()
    else:
        channel.on("open", opened.set)
        channel.on("message", lambda message: on_message(message))

    def on_message(message):
        try:
            msg = json.loads(message)
        except ValueError:
            report.setdefault("bad_messages", []).append(str(message)[:200])
            return
        if msg.get("type") == "command":
            commands.append({"command_id": msg["command_id"], "command": msg["command"], "at": time.time()})
            channel.send(json.dumps({"type": "command_ack", "command_id": msg["command_id"], "ok": True, "message": "done by aiortc"}))
        else:
            report.setdefault("other_messages", []).append(msg)

    async def telemetry():
        await opened.wait()
        if channel is None:
            return
        odometer = 0.0
        while True:
            odometer += 10.0
            channel.send(json.dumps({"type": "telemetry", "timestamp_us": int(time.time() * 1e6), "speed_kmh": 36.0, "odometer_m": odometer}))
            await asyncio.sleep(1.0)

    await pc.setLocalDescription(await pc.createOffer())
    posted = time.monotonic()
    offer = pc.localDescription.sdp
    if args.via:
        offer = "".join(line for line in offer.splitlines(keepends=True) if not line.startswith("a=candidate:"))
    status, headers, answer = await asyncio.to_thread(
        request, endpoint, args.token, "POST", offer.encode(), "application/sdp"
    )
    report["post"] = {
        "status": status,
        "location": headers.get("location"),
        "etag": headers.get("etag"),
        "content_type": headers.get("content-type"),
        "ms": round((time.monotonic() - posted) * 1000, 1),
    }
    if status != 201:
        raise RuntimeError(f"POST {endpoint}: {status} {answer}")
    if args.via:
        answer = via(answer, args.via)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.wait_for(opened.wait(), 15)
    report["channel_open_ms"] = round((time.monotonic() - posted) * 1000, 1)
    started = time.monotonic()
    sent_before = [t.frames for t in tracks]
    ticker = asyncio.ensure_future(telemetry())
    print(json.dumps({"event": "publishing", "location": headers.get("location")}), flush=True)
    try:
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), args.timeout)
    except asyncio.TimeoutError:
        report["timed_out"] = True
    elapsed = time.monotonic() - started
    ticker.cancel()
    report["seconds"] = round(elapsed, 2)
    report["frames_sent"] = [t.frames for t in tracks]
    report["fps_sent"] = [round((t.frames - b) / elapsed, 2) for t, b in zip(tracks, sent_before)]
    report["commands"] = commands

    session = urllib.parse.urljoin(base + "/", headers.get("location") or "")
    status, _, _ = await asyncio.to_thread(request, session, args.token, "DELETE")
    report["delete"] = status
    status, _, _ = await asyncio.to_thread(request, session, args.token, "DELETE")
    report["delete_again"] = status
    await pc.close()


def via(sdp, address):
    """`sdp` with the address and port of every candidate replaced by `address` (HOST:PORT)."""
    host, port = address.rsplit(":", 1)
    lines = []
    for line in sdp.splitlines(keepends=True):
        if line.startswith("a=candidate:"):
            f = line.rstrip("\r\n").split(" ")
            f[4], f[5] = host, port
            line = " ".join(f) + "\r\n"
        lines.append(line)
    return "".join(lines)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--audio", action="store_true")
    p.add_argument("--no-channel", action="store_true", help="open no command data channel")
    p.add_argument("--stall", type=int, action="append", default=[], help="a camera index that sends nothing")
    p.add_argument("--via", help="HOST:PORT of a UDP relay every media datagram crosses")
    p.add_argument("--timeout", type=float, default=60)
    args = p.parse_args()
    report = {"ok": False}
    try:
        asyncio.run(run(args, report))
        report["ok"] = True
    except Exception as e:  # the report carries the reason; the Rust test prints it
        report["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(report), flush=True)
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
