#!/usr/bin/env python3
"""Writes the golden vectors of railcast wire format v1 from docs/wire-format.md alone.

This is an independent encoder (no Rust involved): if the Rust crate and this script disagree,
one of them departs from the spec. Run it only when the format changes on purpose:
    python3 protocol/tests/vectors/make_vectors.py
Each NAME.hex is annotated hex: '#' starts a comment, the remaining hex digit pairs are the bytes.
manifest.json says what decoding each file must give.
"""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))
MAGIC = b"RC"
manifest = []

def hexline(b, note):
    return " ".join(f"{x:02x}" for x in b).ljust(48) + f"# {note}"

def video(name, desc, *, flags, codec, camera, seq, ts, idx, count, payload, declared=None,
          version=1, kind=1, magic=MAGIC, cut=None, extra=b"", expect=None):
    plen = len(payload) if declared is None else declared
    lines = [f"# {name}: {desc}", "# video packet, wire format v1, big-endian"]
    fields = [
        (magic, 'magic "RC"'), (bytes([version]), f"version {version}"), (bytes([kind]), f"kind 0x{kind:02x} (video)"),
        (bytes([flags]), f"flags 0x{flags:02x} (bit0 keyframe = {flags & 1})"), (bytes([codec]), f"codec 0x{codec:02x} " + ("(0x02 = Opus, one whole packet)" if codec == 2 else "(0x01 = H.264 Annex B)")),
        (struct.pack(">H", camera), f"camera id {camera}"), (struct.pack(">I", seq), f"frame sequence {seq}"),
        (struct.pack(">Q", ts), f"capture timestamp {ts} us"), (struct.pack(">H", idx), f"chunk index {idx}"),
        (struct.pack(">H", count), f"chunk count {count}"), (struct.pack(">H", plen), f"payload length {plen}"),
    ]
    data = b"".join(f for f, _ in fields) + payload + extra
    if cut is not None:
        data = data[:cut]
    pos = 0
    for f, note in fields:
        chunk = data[pos:pos + len(f)]
        if chunk:
            lines.append(hexline(chunk, note))
        pos += len(f)
    rest = data[pos:]
    for i in range(0, len(rest), 16):
        lines.append(hexline(rest[i:i + 16], "payload" if i == 0 else "…"))
    open(os.path.join(HERE, name + ".hex"), "w").write("\n".join(lines) + "\n")
    entry = {"file": name + ".hex", "kind": "video", "description": desc}
    if expect:
        entry["expect"] = {"error": expect}
    else:
        entry["expect"] = {"ok": {"keyframe": bool(flags & 1), "codec": {1: "h264", 2: "opus"}[codec], "camera": camera, "seq": seq,
                                  "capture_us": ts, "chunk_index": idx, "chunk_count": count,
                                  "payload_hex": payload.hex()}}
    manifest.append(entry)

def control(name, desc, kind, body, *, expect_ok=None, expect=None, declared=None, cut=None):
    raw = body.encode() if isinstance(body, str) else body
    blen = len(raw) if declared is None else declared
    head = [(MAGIC, 'magic "RC"'), (b"\x01", "version 1"), (bytes([kind]), f"kind 0x{kind:02x}"),
            (struct.pack(">I", blen), f"body length {blen}")]
    data = b"".join(f for f, _ in head) + raw
    if cut is not None:
        data = data[:cut]
    lines = [f"# {name}: {desc}", "# control frame, wire format v1, big-endian; body is UTF-8 JSON"]
    pos = 0
    for f, note in head:
        if data[pos:pos + len(f)]:
            lines.append(hexline(data[pos:pos + len(f)], note))
        pos += len(f)
    rest = data[pos:]
    for i in range(0, len(rest), 16):
        seg = rest[i:i + 16]
        lines.append(hexline(seg, repr(seg.decode("utf-8", "replace"))))
    open(os.path.join(HERE, name + ".hex"), "w").write("\n".join(lines) + "\n")
    entry = {"file": name + ".hex", "kind": "control", "description": desc}
    entry["expect"] = {"error": expect} if expect else {"ok": expect_ok}
    manifest.append(entry)

TS = 1_763_812_800_123_456  # 2025-11-22T12:00:00.123456Z
sps_pps_idr = bytes.fromhex("00000001674d401fe8802800b5") + bytes.fromhex("0000000168ee3c80") + bytes.fromhex("0000000165888400")
video("video_keyframe_single", "a whole keyframe in one chunk", flags=1, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=sps_pps_idr)
video("video_delta_chunk_2_of_3", "middle chunk of a delta frame, camera 3", flags=0, codec=1, camera=3, seq=4_294_967_295,
      ts=TS + 33_333, idx=1, count=3, payload=bytes(range(1, 41)))
video("video_max_payload", "1150-byte payload, the default limit", flags=0, codec=1, camera=65535, seq=123456,
      ts=TS, idx=2, count=3, payload=bytes((i * 31) % 256 for i in range(1150)))
video("video_reserved_flags", "reserved flag bits set: ignored by receivers", flags=0xfe, codec=1, camera=1, seq=7, ts=TS, idx=0, count=1,
      payload=b"\x00\x00\x00\x01\x41\x9a")
# errors
video("video_err_bad_magic", "magic is not RC", magic=b"RX", flags=1, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01", expect="bad_magic")
video("video_err_version", "version 2 is unknown to a v1 decoder", version=2, flags=1, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01", expect="unsupported_version")
video("video_err_truncated_header", "cut inside the header", flags=1, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01\x02", cut=20, expect="truncated")
video("video_err_truncated_payload", "declares 10 payload bytes, carries 4", flags=1, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01\x02\x03\x04", declared=10, expect="truncated")
video("video_err_trailing", "4 bytes more than declared", flags=0, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01\x02", extra=b"\xde\xad\xbe\xef", expect="length_mismatch")
video("video_err_codec", "codec 0x09 is not defined", flags=0, codec=9, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01", expect="unknown_codec")
video("video_err_chunk", "chunk index 3 of 3", flags=0, codec=1, camera=0, seq=0, ts=TS, idx=3, count=3, payload=b"\x01", expect="bad_chunk")
video("video_err_zero_count", "chunk count 0", flags=0, codec=1, camera=0, seq=0, ts=TS, idx=0, count=0, payload=b"\x01", expect="bad_chunk")
video("video_err_too_large", "1151-byte payload, over the default limit", flags=0, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=bytes(1151), expect="payload_too_large")
video("video_err_empty", "zero-length payload", flags=0, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"", expect="empty_payload")
video("video_err_kind", "a control kind where a video packet was expected", kind=0x12, flags=0, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01", expect="wrong_kind")

# Audio (section 2.7): codec 0x02, one whole Opus packet per packet, chunk 0 of 1, keyframe flag set;
# the camera field is the audio source's id (cameras and audio sources share one id space).
# f8 ff fe: an Opus packet of 20 ms of silence (TOC 0xf8: CELT fullband, 20 ms, mono, one frame).
OPUS_SILENCE = bytes.fromhex("f8fffe")
video("audio_opus_frame", "audio: one 20 ms Opus packet of audio source 256", flags=1, codec=2, camera=256, seq=50,
      ts=TS + 50 * 20_000, idx=0, count=1, payload=OPUS_SILENCE)
video("audio_opus_max_id", "audio: a longer Opus packet, audio source 65535, sequence about to wrap", flags=1, codec=2, camera=65535,
      seq=4_294_967_295, ts=TS, idx=0, count=1, payload=bytes([0xfc]) + bytes((i * 13) % 256 for i in range(79)))
video("audio_err_chunked", "audio is never split: an Opus packet as chunk 0 of 2", flags=1, codec=2, camera=256, seq=1, ts=TS,
      idx=0, count=2, payload=OPUS_SILENCE, expect="bad_chunk")

hello = {"train_id": "train-1", "cameras": [{"id": 0, "codec": "h264", "width": 640, "height": 480, "fps": 30},
                                           {"id": 1, "codec": "h264", "width": 320, "height": 240, "fps": 15}], "software": "railcast-train-sim/0.1.0"}
control("control_hello", "train hello with two cameras", 0x10, json.dumps(hello, separators=(",", ":")), expect_ok={"hello": hello})
welcome = {"server_time_us": TS, "max_payload": 1150}
control("control_welcome", "server welcome", 0x11, json.dumps(welcome, separators=(",", ":")), expect_ok={"welcome": welcome})
cmd = {"command_id": 42, "command": {"type": "set_speed", "kmh": 80.0}}
control("control_command_set_speed", "command: set speed", 0x12, json.dumps(cmd, separators=(",", ":")), expect_ok={"command": cmd})
cmd2 = {"command_id": 43, "command": {"type": "horn", "duration_ms": 750}}
control("control_command_horn", "command: horn", 0x12, json.dumps(cmd2, separators=(",", ":")), expect_ok={"command": cmd2})
cmd3 = {"command_id": 44, "command": {"type": "request_keyframe", "camera": 1}}
control("control_command_keyframe", "command: request keyframe of camera 1", 0x12, json.dumps(cmd3, separators=(",", ":")), expect_ok={"command": cmd3})
ack = {"command_id": 42, "ok": True, "message": "speed set to 80 km/h"}
control("control_command_ack", "command ack", 0x13, json.dumps(ack, separators=(",", ":")), expect_ok={"command_ack": ack})
tel = {"timestamp_us": TS, "speed_kmh": 80.0, "odometer_m": 1234.5, "horn": False}
control("control_telemetry", "telemetry", 0x14, json.dumps(tel, separators=(",", ":")), expect_ok={"telemetry": tel})
status = {"sources": [{"id": 0, "state": "streaming", "fps": 25.0, "bitrate_bps": 1200000.0},
                      {"id": 1, "state": "reconnecting", "detail": "connection refused", "fps": 0.0, "bitrate_bps": 0.0}]}
control("control_status", "status: a train's report on its sources", 0x17, json.dumps(status, separators=(",", ":")),
        expect_ok={"status": status})
control("control_err_status_state", "status: a state longer than 32 bytes", 0x17,
        json.dumps({"sources": [{"id": 0, "state": "s" * 33}]}, separators=(",", ":")), expect="bad_body")
kfr = {"camera": 0}
control("control_keyframe_request", "keyframe request for camera 0", 0x15, json.dumps(kfr, separators=(",", ":")), expect_ok={"keyframe_request": kfr})
err = {"code": "unauthorized", "message": "unknown train token"}
control("control_error", "error", 0x16, json.dumps(err, separators=(",", ":")), expect_ok={"error": err})
hello_audio = {"train_id": "train-7", "cameras": [{"id": 0, "codec": "h264", "width": 640, "height": 480, "fps": 30}],
               "audio": [{"id": 256, "codec": "opus", "sample_rate": 48000, "channels": 1, "frame_ms": 20}],
               "software": "railcast-train-sim/0.1.0"}
control("control_hello_audio", "train hello with a camera and a cab microphone (audio source 256)", 0x10,
        json.dumps(hello_audio, separators=(",", ":")), expect_ok={"hello": hello_audio})
control("control_err_hello_audio_id", "audio source with a camera's id: one id space per train", 0x10,
        '{"train_id":"t","cameras":[{"id":0,"codec":"h264","width":2,"height":2,"fps":1}],'
        '"audio":[{"id":0,"codec":"opus","sample_rate":48000,"channels":1,"frame_ms":20}]}', expect="bad_body")
control("control_err_hello_audio_rate", "audio source at 44.1 kHz: version 1 has 48 kHz only", 0x10,
        '{"train_id":"t","cameras":[{"id":0,"codec":"h264","width":2,"height":2,"fps":1}],'
        '"audio":[{"id":9,"codec":"opus","sample_rate":44100,"channels":1,"frame_ms":20}]}', expect="bad_body")
control("control_err_incomplete", "header declares 64 body bytes, 10 present: read more", 0x13, '{"command_', declared=64, expect="incomplete")
control("control_err_too_large", "body length 65537 over the 65536 limit", 0x14, "{}", declared=65537, expect="body_too_large")
control("control_err_bad_json", "body is not JSON", 0x13, "not json", expect="bad_body")
control("control_err_bad_hello", "hello without cameras", 0x10, '{"train_id":"t","cameras":[]}', expect="bad_body")
control("control_err_bad_train_id", "train id with a slash", 0x10, '{"train_id":"a/b","cameras":[{"id":0,"codec":"h264","width":2,"height":2,"fps":1}]}', expect="bad_body")
control("control_err_unknown_kind", "kind 0x30 is not defined", 0x30, "{}", expect="unknown_kind")


# Data-channel video messages (section 2.6): whole packets back to back.
def vpkt(*, flags=0, codec=1, camera=0, seq=0, ts=TS, idx=0, count=1, payload=b"\x01", declared=None, version=1, kind=1, magic=MAGIC):
    plen = len(payload) if declared is None else declared
    return (magic + bytes([version, kind, flags, codec]) + struct.pack(">HIQHHH", camera, seq, ts, idx, count, plen) + payload)

def message(name, desc, parts, error=None):
    """parts: (bytes, note, parse) in order; parse is "ok", a reason label, or None for the bytes the
    split refuses (they end the message with `error`)."""
    lines = [f"# {name}: {desc}", "# video message on a data channel (wire format v1, section 2.6): packets back to back"]
    packets = []
    for data, note, parse in parts:
        lines.append(f"# {note}")
        for i in range(0, len(data), 16):
            lines.append(hexline(data[i:i + 16], "" if i else f"{len(data)} bytes"))
        if parse is not None:
            packets.append({"hex": data.hex(), "parse": parse})
    open(os.path.join(HERE, name + ".hex"), "w").write("\n".join(lines) + "\n")
    manifest.append({"file": name + ".hex", "kind": "video_message", "description": desc,
                     "expect": {"packets": packets, "error": error}})

frame = [bytes(range(7, 7 + 60)), bytes(range(100, 100 + 60)), bytes(range(200, 240))]
chunks = [vpkt(flags=1, camera=2, seq=9, idx=i, count=3, payload=p) for i, p in enumerate(frame)]
message("video_message_single", "one packet: what a message always held before 2.6",
        [(chunks[0], "packet: chunk 0 of 3", "ok")])
message("video_message_three_packets", "the three chunks of a keyframe in one message",
        [(c, f"packet: chunk {i} of 3", "ok") for i, c in enumerate(chunks)])
message("video_message_two_cameras", "packets of two cameras interleaved, as relayed",
        [(vpkt(camera=0, seq=5, payload=b"\x00\x00\x00\x01\x41\x9a"), "camera 0, frame 5", "ok"),
         (vpkt(camera=1, seq=77, idx=0, count=2, payload=bytes(1150)), "camera 1, frame 77, chunk 0 of 2, 1150-byte payload", "ok"),
         (vpkt(camera=0, seq=6, payload=b"\x00\x00\x00\x01\x41\x9b"), "camera 0, frame 6", "ok")])
message("video_message_bad_packet_inside", "a packet with an unknown codec is dropped alone; the split goes on",
        [(chunks[0], "packet: chunk 0 of 3", "ok"), (vpkt(codec=9, payload=b"\x02\x03"), "packet with codec 0x09", "unknown_codec"),
         (chunks[2], "packet: chunk 2 of 3", "ok")])
message("video_message_err_short_tail", "10 bytes after the last packet: fewer than a header",
        [(chunks[0], "packet: chunk 0 of 3", "ok"), (chunks[1][:10], "10 bytes", None)], error="truncated")
message("video_message_err_overrun", "the second packet declares 60 payload bytes, 20 remain",
        [(chunks[0], "packet: chunk 0 of 3", "ok"), (chunks[1][:46], "header declaring 60 bytes, then 20", None)], error="truncated")
message("video_message_err_bad_magic", "garbage after the first packet",
        [(chunks[0], "packet: chunk 0 of 3", "ok"), (b"XX" + bytes(30), "32 bytes that do not start with RC", None)], error="bad_magic")
message("video_message_err_version", "a version-2 packet after the first",
        [(chunks[0], "packet: chunk 0 of 3", "ok"), (vpkt(version=2), "packet with version 2", None)], error="unsupported_version")
message("video_message_err_control", "a control frame header inside a video message",
        [(chunks[0], "packet: chunk 0 of 3", "ok"), (vpkt(kind=0x12), "kind 0x12 (a command frame)", None)], error="wrong_kind")
message("video_message_err_empty", "an empty message", [], error="truncated")
message("video_message_audio_and_video", "audio packets between the chunks of a video frame, as relayed",
        [(chunks[0], "packet: video chunk 0 of 3", "ok"),
         (vpkt(flags=1, codec=2, camera=256, seq=3, payload=OPUS_SILENCE), "audio source 256, Opus packet 3", "ok"),
         (chunks[1], "packet: video chunk 1 of 3", "ok"),
         (vpkt(flags=1, codec=2, camera=256, seq=4, idx=0, count=2, payload=OPUS_SILENCE), "audio chunked: dropped alone", "bad_chunk"),
         (chunks[2], "packet: video chunk 2 of 3", "ok")])


# Reassembly (section 2.5): packets delivered one after another to one receiver, and what must come
# out. The packets are back to back as in a data-channel message (2.6), each valid on its own (2.1).
def fdata(seq, n):
    return bytes((seq * 7 + i) % 256 for i in range(n))

def fpkts(seq, key, n=40, count=1, camera=0):
    """The packets of frame `seq` (n bytes split into `count` equal chunks), chunk 0 first."""
    data, size = fdata(seq, n), n // count
    return [vpkt(flags=int(key), camera=camera, seq=seq, ts=TS + seq * 33_333, idx=i, count=count,
                 payload=data[i * size:(i + 1) * size]) for i in range(count)]

def out(after, seq, key, n=40, camera=0):
    return {"after": after, "camera": camera, "seq": seq, "keyframe": key, "capture_us": TS + seq * 33_333,
            "data_hex": fdata(seq, n).hex()}

def stats(packets, frames, late=0, duplicate=0, inconsistent=0, incomplete=0, skipped=0):
    return {"packets": packets, "frames": frames, "late_packets": late, "duplicate_packets": duplicate,
            "inconsistent_packets": inconsistent, "incomplete_frames": incomplete, "skipped_frames": skipped}

def assembler(name, desc, steps, frames, st):
    """steps: (packet, note) in delivery order; frames: what the receiver emits, `after` the index of
    the packet that completes each; st: its counters at the end."""
    lines = [f"# {name}: {desc}",
             "# reassembly (wire format v1, section 2.5): video packets delivered in this order, back to back"]
    for i, (data, note) in enumerate(steps):
        lines.append(f"# packet {i}: {note}")
        for j in range(0, len(data), 16):
            lines.append(hexline(data[j:j + 16], "" if j else f"{len(data)} bytes"))
    open(os.path.join(HERE, name + ".hex"), "w").write("\n".join(lines) + "\n")
    manifest.append({"file": name + ".hex", "kind": "assembler", "description": desc,
                     "expect": {"frames": frames, "stats": st}})

k5, d6, k7, d8 = fpkts(5, True), fpkts(6, False), fpkts(7, True), fpkts(8, False)
assembler("assembler_skipped_counts_as_emitted",
          "a complete delta frame skipped while waiting for a keyframe counts as emitted: it and older frames are late",
          [(d6[0], "delta 6, complete: skipped (a receiver starts waiting for a keyframe)"),
           (k5[0], "keyframe 5, complete, but at or before 6: late, not shown"),
           (d6[0], "delta 6 again: late, not collected a second time"),
           (k7[0], "keyframe 7: shown"), (d8[0], "delta 8: shown")],
          [out(3, 7, True), out(4, 8, False)], stats(5, 2, late=2, skipped=1))
k0, d1, d2, k3 = fpkts(0, True), fpkts(1, False, count=2), fpkts(2, False), fpkts(3, True)
assembler("assembler_skipped_mid_stream",
          "after a loss, the missing chunk of the abandoned frame is late behind the skipped delta frame",
          [(k0[0], "keyframe 0: shown"), (d1[0], "delta 1, chunk 0 of 2"),
           (d2[0], "delta 2, complete: abandons 1 (incomplete) and is skipped"),
           (d1[1], "delta 1, chunk 1 of 2: late (1 is before the skipped 2)"), (k3[0], "keyframe 3: shown")],
          [out(0, 0, True), out(4, 3, True)], stats(5, 2, late=1, incomplete=1, skipped=1))
four = [fpkts(s, s == 10, count=2) for s in (10, 11, 12, 13)]
assembler("assembler_four_frames_collecting",
          "four frames collected at once, the limit: none is abandoned",
          [(f[0], f"{'keyframe' if s == 10 else 'delta'} {s}, chunk 0 of 2") for s, f in zip((10, 11, 12, 13), four)]
          + [(f[1], f"{'keyframe' if s == 10 else 'delta'} {s}, chunk 1 of 2: shown") for s, f in zip((10, 11, 12, 13), four)],
          [out(4 + i, s, s == 10) for i, s in enumerate((10, 11, 12, 13))], stats(8, 4))
five = [fpkts(s, s in (10, 11), count=2) for s in (10, 11, 12, 13, 14)]
kind = lambda s: "keyframe" if s in (10, 11) else "delta"
assembler("assembler_fifth_frame_evicts_oldest",
          "the frame being started counts among the four: starting a fifth abandons the oldest",
          [(f[0], f"{kind(s)} {s}, chunk 0 of 2" + (": the fifth frame, abandons 10" if s == 14 else ""))
           for s, f in zip((10, 11, 12, 13, 14), five)]
          + [(five[0][1], "keyframe 10, chunk 1 of 2: late (older than the four collected)")]
          + [(f[1], f"{kind(s)} {s}, chunk 1 of 2: shown") for s, f in zip((11, 12, 13, 14), five[1:])],
          [out(6 + i, s, s == 11) for i, s in enumerate((11, 12, 13, 14))], stats(10, 4, late=1, incomplete=1))

def apkt(seq):
    return vpkt(flags=1, codec=2, camera=256, seq=seq, ts=TS + seq * 20_000, payload=bytes([0xf8, seq, 0xfe]))

def aout(after, seq):
    return {"after": after, "camera": 256, "seq": seq, "keyframe": True, "capture_us": TS + seq * 20_000,
            "data_hex": bytes([0xf8, seq, 0xfe]).hex()}

assembler("assembler_audio_every_packet_a_frame",
          "every audio packet is a whole keyframe: emitted at once, also while the camera waits for a keyframe, "
          "and a gap costs nothing but the lost packet",
          [(d6[0], "camera 0, delta 6, complete: skipped (a receiver starts waiting for a keyframe)"),
           (apkt(0), "audio 256, packet 0: emitted"), (apkt(1), "audio 256, packet 1: emitted"),
           (apkt(3), "audio 256, packet 3 (2 is missing): emitted, it is a keyframe"),
           (apkt(2), "audio 256, packet 2: late (before 3)")],
          [aout(1, 0), aout(2, 1), aout(3, 3)], stats(5, 3, late=1, skipped=1))

json.dump(manifest, open(os.path.join(HERE, "manifest.json"), "w"), indent=1)
open(os.path.join(HERE, "manifest.json"), "a").write("\n")
print(f"wrote {len(manifest)} vectors")
