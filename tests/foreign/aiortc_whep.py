"""aiortc 1.16 as a WHEP player (draft-ietf-wish-whep) of a railcast remote control's cameras.

    python aiortc_whep.py --http 127.0.0.1:PORT --token TOKEN --remote-control rc-… \
        [--cameras 2] [--frames 30] [--timeout 30]

1. OPTIONS on the WHEP endpoint: its status and `Accept-Post` are reported.
2. An offer with `--cameras` receive-only video transceivers (no data channel: a plain player)
   is POSTed as `application/sdp`; the `201`, `Location`, `ETag` and answer are reported, and the
   answer applied (aiortc does not trickle: its candidates are in the offer).
3. Every track's frames are decoded by aiortc (H.264 through PyAV/FFmpeg) until each track has
   `--frames` of them; per track: frames decoded, picture size, and how many distinct pictures
   (a hash of the luma plane), so a frozen picture shows.
4. DELETE on the session's `Location`: its status is reported, then a second DELETE (404).

The last stdout line is one JSON object; the exit status is non-zero on any failure (the object
then has "error").
"""

import argparse
import asyncio
import hashlib
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription


def request(url, token, method, body=None, content_type=None):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, headers(resp.headers), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, headers(e.headers), e.read().decode(errors="replace")


def headers(message):
    """Header names are case-insensitive (HTTP/1.1 servers may send them in lower case)."""
    return {k.lower(): v for k, v in message.items()}


async def run(args, report):
    base = "http://" + args.http
    endpoint = f"{base}/api/whep/remote-controls/{urllib.parse.quote(args.remote_control)}"
    status, headers, _ = await asyncio.to_thread(request, endpoint, args.token, "OPTIONS")
    report["options"] = {"status": status, "accept_post": headers.get("accept-post")}

    pc = RTCPeerConnection()
    tracks = {}
    for _ in range(args.cameras):
        pc.addTransceiver("video", direction="recvonly")

    done = asyncio.Event()

    async def consume(index, track):
        t = tracks[index] = {"frames": 0, "width": 0, "height": 0, "distinct": 0}
        seen = set()
        while True:
            try:
                frame = await track.recv()
            except Exception:
                return
            t["frames"] += 1
            t["width"], t["height"] = frame.width, frame.height
            luma = bytes(frame.planes[0])
            digest = hashlib.sha256(luma).digest()
            if digest not in seen:
                seen.add(digest)
                t["distinct"] = len(seen)
            if len(tracks) == args.cameras and all(x["frames"] >= args.frames for x in tracks.values()):
                done.set()

    @pc.on("track")
    def on_track(track):
        mids = [t.mid for t in pc.getTransceivers()]
        index = next((i for i, tr in enumerate(pc.getTransceivers()) if tr.receiver.track is track), len(tracks))
        report.setdefault("mids", mids)
        asyncio.ensure_future(consume(index, track))

    await pc.setLocalDescription(await pc.createOffer())
    status, headers, answer = await asyncio.to_thread(
        request, endpoint, args.token, "POST", pc.localDescription.sdp.encode(), "application/sdp"
    )
    report["post"] = {
        "status": status,
        "location": headers.get("location"),
        "etag": headers.get("etag"),
        "content_type": headers.get("content-type"),
    }
    if status != 201:
        raise RuntimeError(f"POST {endpoint}: {status} {answer}")
    report["answer_video_mlines"] = sum(1 for line in answer.splitlines() if line.startswith("m=video"))
    started = time.monotonic()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except asyncio.TimeoutError:
        raise RuntimeError(f"not {args.frames} frames on each of {args.cameras} tracks within {args.timeout} s: {tracks}")
    report["seconds_to_frames"] = round(time.monotonic() - started, 2)
    report["tracks"] = [tracks[i] for i in sorted(tracks)]

    session = urllib.parse.urljoin(base + "/", headers.get("location") or "")
    status, _, _ = await asyncio.to_thread(request, session, args.token, "DELETE")
    report["delete"] = status
    status, _, _ = await asyncio.to_thread(request, session, args.token, "DELETE")
    report["delete_again"] = status
    await pc.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--remote-control", required=True)
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--timeout", type=float, default=30)
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
