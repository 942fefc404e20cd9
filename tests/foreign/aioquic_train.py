#!/usr/bin/env python3
"""A railcast train written with aioquic, a QUIC stack nobody on the project wrote.

It first behaves (docs/wire-format.md): TLS 1.3 with ALPN railcast/1 and the server certificate
pinned by its SHA-256 (or not checked with --insecure), a hello with the train's token, the
welcome, telemetry, video packets as QUIC datagrams, a command_ack for every command, a keyframe
after a keyframe_request. Then, on a new connection each, it misbehaves the ways foreign clients
did (issue 18): garbage after the hello, a second hello, a frame over 64 KiB, malformed datagrams
and packets, many streams, and last an abandoned connection (no close at all).

It prints one JSON object on its last stdout line: what it saw in each case (the server's error
frame, whether it finished the stream, its close code and reason) and what it sent (the frames'
sequence numbers and SHA-256). The caller (server/tests/ingest/foreign_quic_train.rs) checks that
against what the server and a WebSocket client saw. Exit status 1 when a step could not be done
at all (no handshake, no welcome, a wrong certificate, no close where one is due).

    aioquic_train.py --quic 127.0.0.1:4433 --alpn railcast/1 --sha256 AB:CD:… \\
        --train train-9 --token TOKEN [--commands 1]
"""

import argparse
import asyncio
import hashlib
import json
import os
import socket
import ssl
import struct
import sys
import time

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography.hazmat.primitives.serialization import Encoding

HELLO, WELCOME, COMMAND, COMMAND_ACK, TELEMETRY, KEYFRAME_REQUEST, ERROR = range(0x10, 0x17)
CONTROL = 0  # the first client-initiated bidirectional stream
CHUNK = 1000  # video payload per datagram: fits aioquic's 1,200-byte packets


def now_us():
    return time.time_ns() // 1000


def control(kind, body):
    """One control frame: magic, version, kind, body length, JSON (or raw bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return b"RC\x01" + bytes([kind]) + struct.pack(">I", len(data)) + data


def video(seq, keyframe, payload, camera=0, codec=1, capture=None):
    """The packets of one frame, its payload split into equal chunks (wire format 2)."""
    count = max(1, -(-len(payload) // CHUNK))
    size, extra = divmod(len(payload), count)
    packets, at, capture = [], 0, capture or now_us()
    for i in range(count):
        n = size + (1 if i < extra else 0)
        header = b"RC\x01\x01" + struct.pack(
            ">BBHIQHHH", 1 if keyframe else 0, codec, camera, seq, capture, i, count, n
        )
        packets.append(header + payload[at : at + n])
        at += n
    return packets


class Train(QuicConnectionProtocol):
    """aioquic's asyncio protocol, recording the control stream, the datagrams and the close."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buf = b""
        self.frames = []  # (kind, body) received on the control stream
        self.fin = False
        self.reset = None
        self.mangle = None  # rewrites outgoing UDP datagrams, when set
        self.mangled = 0
        self.abandoned = False

    def quic_event_received(self, event):
        # Not aioquic's stream readers: the writer it makes for a stream nobody holds is
        # collected at once, and closing it finishes the stream (which ends the session).
        if isinstance(event, events.StreamDataReceived) and event.stream_id == CONTROL:
            self.buf += event.data
            while len(self.buf) >= 8:
                (length,) = struct.unpack(">I", self.buf[4:8])
                if len(self.buf) < 8 + length:
                    break
                kind, body = self.buf[3], self.buf[8 : 8 + length]
                self.buf = self.buf[8 + length :]
                try:
                    body = json.loads(body)
                except ValueError:
                    body = {"undecodable": body.hex()}
                self.frames.append((kind, body))
            self.fin = self.fin or event.end_stream
        elif isinstance(event, events.StreamReset) and event.stream_id == CONTROL:
            self.reset = event.error_code

    def transmit(self):
        if self.abandoned:
            return
        if self.mangle is None:
            return super().transmit()
        # The same as aioquic's transmit, with each datagram rewritten on its way out.
        self._transmit_task = None
        for data, addr in self._quic.datagrams_to_send(now=self._loop.time()):
            self.mangled += 1
            self._transport.sendto(self.mangle(data), addr)
        timer_at = self._quic.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self._loop.call_at(timer_at, self._handle_timer)
        self._timer_at = timer_at

    # What the server did.

    def close_info(self):
        """The server's CONNECTION_CLOSE, as soon as it arrived (aioquic reports it only after
        draining): application close (code, reason) or transport error (frame_type set)."""
        e = self._quic._close_event
        if e is None:
            return None
        return {"code": e.error_code, "reason": e.reason_phrase, "transport": e.frame_type is not None}

    def of_kind(self, kind):
        return [b for k, b in self.frames if k == kind]

    async def until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # What the train does.

    def send(self, data, end=False):
        self._quic.send_stream_data(CONTROL, data, end_stream=end)
        self.transmit()

    def datagram(self, data):
        self._quic.send_datagram_frame(data)
        self.transmit()

    def abandon(self):
        """Vanish: no CONNECTION_CLOSE, no more packets, the socket shut."""
        self.abandoned = True
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close()


class Session:
    def __init__(self, args):
        self.args = args
        self.seq = 0
        self.sent = []  # every frame sent: {"seq", "keyframe", "sha256", "case"}
        self.failures = []

    def hello(self):
        return {
            "train_id": self.args.train,
            "cameras": [{"id": 0, "codec": "h264", "width": 320, "height": 240, "fps": 15}],
            "software": "aioquic_train.py",
            "token": self.args.token,
        }

    async def connect(self, case):
        """A pinned connection with the hello said and the welcome read."""
        a = self.args
        host, port = a.quic.rsplit(":", 1)
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        cfg = QuicConfiguration(
            is_client=True,
            alpn_protocols=[a.alpn],
            server_name="localhost",
            verify_mode=ssl.CERT_NONE,  # pinned by hand below, before the token is sent
            max_datagram_frame_size=65536,
            idle_timeout=10.0,
        )
        loop = asyncio.get_running_loop()
        _, train = await loop.create_datagram_endpoint(
            lambda: Train(QuicConnection(configuration=cfg)),
            local_addr=("::" if family == socket.AF_INET6 else "0.0.0.0", 0),
            family=family,
        )
        train.connect((host, int(port)))
        await asyncio.wait_for(train.wait_connected(), 5)
        if not a.insecure:
            der = train._quic.tls._peer_certificate.public_bytes(Encoding.DER)
            got = hashlib.sha256(der).hexdigest()
            want = a.sha256.replace(":", "").lower()
            if got != want:
                train.close(error_code=0, reason_phrase="certificate does not match the pin")
                raise SystemExit(f"{case}: server certificate {got} is not the pinned {want}")
        train.send(control(HELLO, self.hello()))
        await train.until(lambda: train.frames or train.close_info(), 5)
        if not train.frames or train.frames[0][0] != WELCOME:
            raise SystemExit(f"{case}: no welcome: {train.frames} {train.close_info()}")
        return train

    def frame(self, train, case, keyframe, size=2500):
        payload = os.urandom(size)
        for p in video(self.seq, keyframe, payload):
            train.datagram(p)
        sha256 = hashlib.sha256(payload).hexdigest()
        self.sent.append({"seq": self.seq, "keyframe": keyframe, "sha256": sha256, "case": case})
        self.seq += 1

    async def answered(self, train, case, started):
        """What the server did after a fatal error: the error frame, the stream's end, the close."""
        closed = await train.until(train.close_info, 3)
        if not closed:
            self.failures.append(f"{case}: the server did not close the connection within 3 s")
        errors = train.of_kind(ERROR)
        last = train.frames[-1] if train.frames else None
        return {
            "error": errors[-1] if errors else None,
            "error_is_last": bool(errors) and last == (ERROR, errors[-1]),
            "fin": train.fin,
            "close": train.close_info(),
            "ms": round((time.monotonic() - started) * 1000, 1),
        }

    # The cases.

    async def interop(self):
        """Speak the protocol as a train should, until `--commands` commands were acked."""
        train = await self.connect("interop")
        welcome = train.frames[0][1]
        acked, keyframe_requests, telemetry, want_keyframe = [], 0, 0, False
        started = time.monotonic()
        handled = 1
        while time.monotonic() - started < 8:
            for kind, body in train.frames[handled:]:
                if kind == COMMAND:
                    action = body["command"]
                    message = f"aioquic: {action['type']} done"
                    ack = {"command_id": body["command_id"], "ok": True, "message": message}
                    train.send(control(COMMAND_ACK, ack))
                    acked.append({"command_id": body["command_id"], "type": action["type"]})
                elif kind == KEYFRAME_REQUEST:
                    keyframe_requests += 1
                    want_keyframe = True
            handled = len(train.frames)
            # 15 fps, a keyframe every 5 frames and after a request, telemetry every 5 frames.
            self.frame(train, "interop", keyframe=self.seq % 5 == 0 or want_keyframe)
            want_keyframe = False
            if self.seq % 5 == 1:
                status = {"timestamp_us": now_us(), "speed_kmh": 42.0, "odometer_m": 1.5, "horn": False}
                train.send(control(TELEMETRY, status))
                telemetry += 1
            if len(acked) >= self.args.commands and self.seq >= 15:
                break
            await asyncio.sleep(1 / 15)
        if len(acked) < self.args.commands:
            self.failures.append(f"interop: {len(acked)} of {self.args.commands} commands arrived")
        await asyncio.sleep(0.2)  # let the last datagrams and acks go out before the close
        train.close(error_code=0, reason_phrase="interop done")
        train.transmit()
        await train.until(lambda: train._quic._close_event is not None, 1)
        return {
            "alpn": train._quic.tls.alpn_negotiated,
            "welcome": welcome,
            "commands_acked": acked,
            "keyframe_requests": keyframe_requests,
            "telemetry_sent": telemetry,
            "frames_sent": sum(1 for f in self.sent if f["case"] == "interop"),
        }

    async def fatal(self, case, data):
        """A connection that writes `data` on its control stream after the welcome."""
        train = await self.connect(case)
        started = time.monotonic()
        train.send(data)
        return await self.answered(train, case, started)

    async def malformed(self):
        """Bad datagrams and QUIC packets: dropped and counted, the connection stays up."""
        case = "malformed"
        train = await self.connect(case)
        self.frame(train, case, keyframe=True)
        good = video(self.seq, True, b"\x07" * 100)[0]
        bad = {
            "empty": b"",
            "not_a_packet": b"hello?",
            "bad_magic": b"XX" + good[2:],
            "unsupported_version": good[:2] + b"\x09" + good[3:],
            "wrong_kind": good[:3] + bytes([HELLO]) + good[4:],
            "unknown_codec": good[:5] + b"\x09" + good[6:],
            "bad_chunk": good[:22] + b"\x00\x00" + good[24:],
            "payload_too_large": good[:24] + struct.pack(">H", 5000) + good[26:],
            "truncated": good[:40],
            "length_mismatch": good + b"tail",
            "unknown_camera": good[:6] + b"\x00\x05" + good[8:],
        }
        for d in bad.values():
            train.datagram(d)
        # Raw UDP the server must ignore: garbage from another socket, a long-header "Initial"
        # of garbage, and, on the connection's own path, short-header packets carrying its
        # connection id with garbage where the encrypted payload should be.
        host, port = self.args.quic.rsplit(":", 1)
        addr = (host.strip("[]"), int(port))
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        udp_garbage = 0
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            for n in (1, 20, 1200):
                s.sendto(os.urandom(n), addr)
                udp_garbage += 1
            initial = b"\xc3\x00\x00\x00\x01\x08" + os.urandom(8) + b"\x08" + os.urandom(8) + os.urandom(1180)
            s.sendto(initial, addr)
            udp_garbage += 1
        dcid = train._quic._peer_cid.cid
        for _ in range(5):
            train._transport.sendto(b"\x40" + dcid + os.urandom(60), addr)
            udp_garbage += 1
        # The connection's own packets, one byte flipped each: they fail authentication.
        train.mangle = lambda d: d[:-20] + bytes([d[-20] ^ 0xFF]) + d[-19:]
        train.send(control(TELEMETRY, {"timestamp_us": now_us(), "speed_kmh": 1.0, "odometer_m": 2.0}))
        self.frame(train, case, keyframe=True, size=300)  # lost with its mangled packet
        await asyncio.sleep(0.15)
        train.mangle = None
        mangled = train.mangled
        # Still the same connection: a PING is answered, and a new frame reaches the clients.
        t = time.monotonic()
        await asyncio.wait_for(train.ping(), 3)
        ping_ms = round((time.monotonic() - t) * 1000, 1)
        self.frame(train, case, keyframe=True)
        await asyncio.sleep(0.3)
        still_open = train.close_info() is None
        if not still_open:
            self.failures.append(f"malformed: the server closed the connection: {train.close_info()}")
        train.close(error_code=0, reason_phrase="malformed done")
        train.transmit()
        return {
            "datagrams": sorted(bad),
            "udp_garbage": udp_garbage,
            "mangled_packets": mangled,
            "still_open": still_open,
            "ping_ms": ping_ms,
            "error_frames": train.of_kind(ERROR),
            "frame_after": self.sent[-1],
        }

    async def many_streams(self):
        """Streams beyond the server's limits (one bidirectional, no unidirectional stream)."""
        case = "many_streams"
        train = await self.connect(case)
        q = train._quic
        limits = {"bidi": q._remote_max_streams_bidi, "uni": q._remote_max_streams_uni}
        # Politely: aioquic holds the streams back (STREAMS_BLOCKED) and the connection goes on.
        for _ in range(50):
            q.send_stream_data(q.get_next_available_stream_id(), b"x" * 100, end_stream=True)
        for _ in range(10):
            q.send_stream_data(q.get_next_available_stream_id(is_unidirectional=True), b"y", end_stream=True)
        train.transmit()
        await asyncio.wait_for(train.ping(), 3)
        polite_open = train.close_info() is None
        # Hostile: pretend the server allowed 1,000 of each and send on them all.
        started = time.monotonic()
        q._remote_max_streams_bidi = q._remote_max_streams_uni = 1000
        q._unblock_streams(False)
        q._unblock_streams(True)
        train.transmit()
        answer = await self.answered(train, case, started)
        answer.update(server_limits=limits, polite_open=polite_open)
        return answer

    async def abandon(self):
        """Hello, a frame, then silence: no close, no acknowledgements, the socket gone."""
        case = "abandon"
        train = await self.connect(case)
        self.frame(train, case, keyframe=True)
        await asyncio.sleep(0.1)
        train.abandon()
        return {"abandoned_at_us": now_us(), "frame": self.sent[-1]}


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quic", required=True, help="the server's QUIC address, HOST:PORT")
    p.add_argument("--alpn", default="railcast/1")
    pin = p.add_mutually_exclusive_group(required=True)
    pin.add_argument("--sha256", help="the server certificate's SHA-256 (hex, colons allowed)")
    pin.add_argument("--insecure", action="store_true", help="do not check the server certificate")
    p.add_argument("--train", required=True, help="train id")
    p.add_argument("--token", required=True, help="the train's token")
    p.add_argument("--commands", type=int, default=0, help="commands to wait for and ack while behaving")
    args = p.parse_args()

    s = Session(args)
    out = {"ok": False}
    try:
        out["interop"] = await s.interop()
        cases = {}
        oversized = control(TELEMETRY, b" " * 70_000)
        for case, data in [
            ("garbage_after_hello", b"\x00\xffgarbage after the hello"),
            ("second_hello", control(HELLO, s.hello())),
            ("oversized_frame", oversized),
            ("server_kind_frame", control(COMMAND, {"command_id": 1, "command": {"type": "horn"}})),
        ]:
            cases[case] = await s.fatal(case, data)
            if not cases[case]["error"]:
                s.failures.append(f"{case}: no error frame before the close")
        cases["malformed"] = await s.malformed()
        cases["many_streams"] = await s.many_streams()
        cases["abandon"] = await s.abandon()
        out["cases"] = cases
    except (Exception, SystemExit) as e:  # reported in the JSON, and the exit status
        s.failures.append(f"{type(e).__name__}: {e}")
    out["frames_sent"] = s.sent
    out["failures"] = s.failures
    out["ok"] = not s.failures
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
