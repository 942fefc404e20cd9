#!/usr/bin/python3
"""A live RTSP server for the train agent's tests: GStreamer's RTSP server (Debian
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-ugly for x264enc) serving CAMERAS
test patterns at rtsp://127.0.0.1:PORT/cam0, /cam1, … as H.264 over RTP (TCP or UDP, as the client
asks), 320x240 at 15 fps, a keyframe every 15 frames; with --user, only with HTTP basic
credentials. Runs until killed."""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cameras", type=int, default=1)
    ap.add_argument("--fps", type=int, default=15)
    ap.add_argument("--user", help="require RTSP basic authentication with this user …")
    ap.add_argument("--password", default="")
    ap.add_argument("--sdp-only", action="store_true",
                    help="parameter sets (SPS, PPS) only in the SDP, never in the stream")
    args = ap.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
    # In-band parameter sets before every keyframe (most cameras), or only in the SDP's
    # sprop-parameter-sets (some cameras): x264 writes them once, into the caps, and the payloader
    # announces them in the SDP only.
    encoder, caps, interval = ('option-string="repeat-headers=0"', ",stream-format=avc", 0) if args.sdp_only else ("", "", -1)
    for i in range(args.cameras):
        factory = GstRtspServer.RTSPMediaFactory()
        pattern = ["smpte", "ball", "snow", "pinwheel"][i % 4]
        factory.set_launch(
            f"( videotestsrc is-live=true pattern={pattern} ! video/x-raw,width=320,height=240,framerate={args.fps}/1 "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bitrate=300 {encoder} "
            f"! video/x-h264,profile=baseline{caps} ! rtph264pay name=pay0 pt=96 config-interval={interval} )"
        )
        # One pipeline for every client of a camera, as an IP camera has.
        factory.set_shared(True)
        if args.user:
            permissions = GstRtspServer.RTSPPermissions()
            permissions.add_permission_for_role(args.user, "media.factory.access", True)
            permissions.add_permission_for_role(args.user, "media.factory.construct", True)
            factory.set_permissions(permissions)
        mounts.add_factory(f"/cam{i}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print(f"rtsp server on 127.0.0.1:{args.port} with {args.cameras} cameras", file=sys.stderr, flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
