#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/seed-*: RFC 6455's own examples.

The seeds are committed; run this only to regenerate them (python3 fuzz/make_seeds.py).
Frames are the §5.7 examples, the request is §1.3's, and the connection seeds are that
request followed by masked client frames, so the fuzzer starts past the handshake.
The permessage-deflate seeds (deflate_offer, inflate_message) are RFC 7692's: browsers'
offers and §7.1's parameters, and §7.2.3's compressed "Hello"s.
"""

import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# §5.7: the masking key of every masked example.
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])

# §1.3's sample client handshake.
REQUEST_1_3 = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

# §1.3's sample server handshake.
RESPONSE_1_3 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"
    b"\r\n"
)


def mask(payload, key=KEY, offset=0):
    """§5.3: octet i XOR masking-key octet (i modulo 4)."""
    return bytes(b ^ key[(offset + i) % 4] for i, b in enumerate(payload))


def frame(opcode, payload, fin=True, key=None):
    """One frame with the minimal length encoding of §5.2, masked if `key` is given."""
    b0 = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if n <= 125:
        head = bytes([b0, mask_bit | n])
    elif n <= 0xFFFF:
        head = bytes([b0, mask_bit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mask_bit | 127]) + struct.pack(">Q", n)
    if key is None:
        return head + payload
    return head + key + mask(payload, key)


def record(opcode, payload, fin=True, key=None, chunk=None, length=None):
    """One record of the message_assembler target's input format (see its doc comment)."""
    flags = opcode | (0x80 if fin else 0)
    if key is not None:
        flags |= 0x40
    if chunk is not None:
        flags |= 0x10
    out = bytearray()
    if length is not None and length > 0xFFFF:
        flags |= 0x20
        out += struct.pack("<Q", length)
    else:
        out += struct.pack("<H", len(payload) if length is None else length)
    out = bytearray([flags]) + out
    if chunk is not None:
        out.append(chunk - 1)
    if key is not None:
        out += key
        payload = mask(payload, key)
    return bytes(out + payload)


BINARY_256 = bytes(range(256))

FRAME_HEADER = {
    # §5.7 "A single-frame unmasked text message"
    "seed-5.7-unmasked-text": bytes([0x81, 0x05]) + b"Hello",
    # §5.7 "A single-frame masked text message"
    "seed-5.7-masked-text": bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]),
    # §5.7 "A fragmented unmasked text message"
    "seed-5.7-fragmented-text": bytes([0x01, 0x03]) + b"Hel" + bytes([0x80, 0x02]) + b"lo",
    # §5.7 "Unmasked Ping request"
    "seed-5.7-unmasked-ping": bytes([0x89, 0x05]) + b"Hello",
    # §5.7 "Masked Ping response" (a Pong)
    "seed-5.7-masked-pong": bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]),
    # §5.7 "256 bytes binary message in a single unmasked frame"
    "seed-5.7-binary-256": bytes([0x82, 0x7E, 0x01, 0x00]) + BINARY_256,
    # §5.7 "64KiB binary message in a single unmasked frame" (header and the first bytes)
    "seed-5.7-binary-64k": bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]) + bytes(range(8)),
}

MESSAGE_ASSEMBLER = {
    "seed-text": record(1, b"Hello"),
    "seed-masked-text": record(1, b"Hello", key=KEY),
    "seed-fragmented-text": record(1, b"Hel", fin=False) + record(0, b"lo"),
    "seed-empty-fragments": record(2, b"", fin=False) + record(0, b"", fin=False) + record(0, b"x"),
    "seed-binary-256-chunked": record(2, BINARY_256, key=KEY, chunk=7),
    # A multi-byte character split across frames and pushes (§8.1 checks as text arrives).
    "seed-utf8-split": record(1, "h\u00e9".encode()[:2], fin=False, key=KEY)
    + record(0, "\u00e9llo \u20ac".encode()[1:], key=KEY, chunk=1),
    "seed-invalid-utf8": record(1, b"ok\xff", fin=False),
    "seed-too-big": record(2, b"", length=(1 << 63) - 1),
    "seed-two-messages": record(1, b"one") + record(2, b"\x00\x01", chunk=1) + record(1, b"three"),
}

HANDSHAKE = {
    "seed-1.3-request": REQUEST_1_3,
    "seed-1.3-response": RESPONSE_1_3,
    "seed-101-no-protocol": RESPONSE_1_3.replace(b"Sec-WebSocket-Protocol: chat\r\n", b""),
    "seed-version-8": REQUEST_1_3.replace(b"Version: 13", b"Version: 8"),
    "seed-post-body": b"POST /broadcast HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello",
    "seed-absolute-form": REQUEST_1_3.replace(b"GET /chat", b"GET http://server.example.com/chat?x=1"),
}

CLOSE_1000 = struct.pack(">H", 1000) + b"bye"
TEXT = frame(1, b"Hello", key=KEY)
PING = frame(9, b"Hello", key=KEY)
FRAGMENTED = frame(1, b"Hel", fin=False, key=KEY) + frame(0, b"lo", key=KEY)
CLOSE = frame(8, CLOSE_1000, key=KEY)
EVERYTHING = (
    TEXT
    + PING
    + frame(1, b"Hel", fin=False, key=KEY)
    + frame(9, b"in between", key=KEY)
    + frame(0, b"lo", key=KEY)
    + frame(2, BINARY_256, key=KEY)
    + frame(10, b"unsolicited", key=KEY)
    + CLOSE
)

# First byte: how the connection target cuts the rest into reads (0 = all at once,
# 1 = one byte per read, 0x0B = random reads of 1..3 bytes, 0x1E = random up to 131).
CONNECTION = {
    "seed-handshake-only": b"\x00" + REQUEST_1_3,
    "seed-text": b"\x00" + REQUEST_1_3 + TEXT,
    "seed-ping": b"\x00" + REQUEST_1_3 + PING,
    "seed-fragmented": b"\x00" + REQUEST_1_3 + FRAGMENTED,
    "seed-close": b"\x00" + REQUEST_1_3 + TEXT + CLOSE,
    "seed-everything": b"\x00" + REQUEST_1_3 + EVERYTHING,
    "seed-everything-bytewise": b"\x01" + REQUEST_1_3 + EVERYTHING,
    "seed-everything-random-3": b"\x0b" + REQUEST_1_3 + EVERYTHING,
    "seed-everything-random-131": b"\x1e" + REQUEST_1_3 + EVERYTHING,
    "seed-post-body": b"\x00" + HANDSHAKE["seed-post-body"],
    "seed-version-8": b"\x00" + HANDSHAKE["seed-version-8"] + TEXT,
}


# deflate_offer: a flags byte (0x01: echo mode's negotiate), then Sec-WebSocket-Extensions
# lines.
DEFLATE_OFFER = {
    # Chromium's (and `wscast connect`'s) offer; Firefox's; wscast's own answer.
    "seed-chromium": b"\x00permessage-deflate; client_max_window_bits",
    "seed-bare": b"\x00permessage-deflate",
    "seed-wscast-answer": b"\x00permessage-deflate; client_no_context_takeover",
    # §7.1.1.1, §7.1.2.1 (the server must answer with the same or a smaller window).
    "seed-server-no-context-takeover": b"\x01permessage-deflate; server_no_context_takeover",
    "seed-server-window-10": b"\x00permessage-deflate; server_max_window_bits=10",
    "seed-server-window-15": b"\x00permessage-deflate; server_max_window_bits=15",
    "seed-everything-quoted": b'\x00Permessage-Deflate; server_max_window_bits="9"; '
    b"client_max_window_bits=12; client_no_context_takeover; server_no_context_takeover",
    # Autobahn 13.7-like lists, over two header lines: declined offers are skipped.
    "seed-list": b"\x00x-webkit-deflate-frame, permessage-deflate; bogus, "
    b"permessage-deflate; server_no_context_takeover; server_max_window_bits=9\n"
    b"permessage-deflate; client_max_window_bits=8",
    # §7.1: to be declined.
    "seed-missing-value": b"\x00permessage-deflate; server_max_window_bits",
    "seed-window-16": b"\x00permessage-deflate; server_max_window_bits=16",
    "seed-leading-zero": b"\x00permessage-deflate; client_max_window_bits=09",
    "seed-duplicate": b"\x00permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "seed-flag-with-value": b"\x00permessage-deflate; client_no_context_takeover=1",
}

# RFC 7692 §7.2.3.1: "Hello" compressed, as the payload of one frame.
HELLO = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
# §7.2.3.2: the second "Hello", compressed with the first in the sliding window.
HELLO_AGAIN = bytes([0xF2, 0x00, 0x11, 0x00, 0x00])
# §7.2.3.3: "Hello" in a DEFLATE block with no compression.
HELLO_STORED = bytes([0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello" + bytes([0x00])
# §7.2.3.4: "Hello" in a DEFLATE block with BFINAL set.
HELLO_BFINAL = bytes([0xF3, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00, 0x00])
# §7.2.3.5: "He" and "llo" in two DEFLATE blocks in one message.
HELLO_TWO_BLOCKS = bytes([0xF2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xCA, 0xC9, 0xC9, 0x07, 0x00])
# §7.2.3.6: an empty fragment (here a whole empty message).
EMPTY = bytes([0x00])


def deflated(payload, wbits=15):
    """§7.2.1: DEFLATE with a sync flush, the 00 00 ff ff tail removed."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate_record(opcode, payload, fin=True, key=None, chunk=None, rsv1=False):
    """One record of the inflate_message target's input format (see its doc comment)."""
    flags = opcode | (0x80 if fin else 0) | (0x20 if rsv1 else 0)
    if key is not None:
        flags |= 0x40
    if chunk is not None:
        flags |= 0x10
    out = bytearray([flags]) + struct.pack("<H", len(payload))
    if chunk is not None:
        out.append(chunk - 1)
    if key is not None:
        out += key
        payload = mask(payload, key)
    return bytes(out + payload)


def round_trip(plain, text=True, count=None, reset=False, chunk=0, splits=()):
    """One message of the inflate_message target's round-trip format."""
    head = (0x01 if text else 0) | (0x02 if count is not None else 0) | (0x04 if reset else 0)
    head |= len(splits) << 4
    out = bytearray([head]) + struct.pack("<H", len(plain))
    if count is not None:
        out += struct.pack("<H", count)
    out.append(chunk)
    out += bytes(splits)
    return bytes(out + plain)


LOREM = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor " * 8
OFF, PER_MESSAGE, KEPT = b"\x00", b"\x01", b"\x02"
Z = True  # RSV1

# inflate_message: the first byte is the Inflating mode (records) or 0x80 | flags (round trip).
INFLATE_MESSAGE = {
    "seed-7.2.3.1-hello": PER_MESSAGE + inflate_record(1, HELLO, rsv1=Z),
    "seed-7.2.3.1-hello-masked": PER_MESSAGE + inflate_record(1, HELLO, key=KEY, chunk=2, rsv1=Z),
    # §7.2.3.1's fragmented "Hello": 0x41 0x03 0xf2 0x48 0xcd, 0x80 0x04 0xc9 0xc9 0x07 0x00.
    "seed-7.2.3.1-fragmented": PER_MESSAGE
    + inflate_record(1, HELLO[:3], fin=False, rsv1=Z)
    + inflate_record(0, HELLO[3:]),
    "seed-7.2.3.2-shared-window": KEPT + inflate_record(1, HELLO, rsv1=Z) + inflate_record(1, HELLO_AGAIN, rsv1=Z),
    "seed-7.2.3.3-stored": PER_MESSAGE + inflate_record(2, HELLO_STORED, rsv1=Z),
    "seed-7.2.3.4-bfinal": PER_MESSAGE + inflate_record(1, HELLO_BFINAL, rsv1=Z) + inflate_record(1, HELLO, rsv1=Z),
    "seed-7.2.3.4-bfinal-kept": KEPT + inflate_record(1, HELLO_BFINAL, rsv1=Z) + inflate_record(1, HELLO, rsv1=Z),
    "seed-7.2.3.5-two-blocks": PER_MESSAGE + inflate_record(1, HELLO_TWO_BLOCKS, key=KEY, rsv1=Z),
    "seed-7.2.3.6-empty": PER_MESSAGE
    + inflate_record(1, EMPTY, rsv1=Z)
    + inflate_record(1, HELLO[:3], fin=False, rsv1=Z)
    + inflate_record(0, b"", fin=False)
    + inflate_record(0, HELLO[3:]),
    # Compressed and uncompressed messages mixed; text that inflates to invalid UTF-8.
    "seed-mixed": PER_MESSAGE
    + inflate_record(1, b"plain")
    + inflate_record(2, deflated(BINARY_256), key=KEY, chunk=7, rsv1=Z)
    + inflate_record(1, deflated(LOREM)[:20], fin=False, key=KEY, rsv1=Z)
    + inflate_record(0, deflated(LOREM)[20:], key=KEY, chunk=3)
    + inflate_record(1, deflated(b"ok \xc3\x28"), rsv1=Z),
    # §8.1: 64 KiB of zeros in a few dozen bytes, over the 4 KiB limit.
    "seed-bomb": PER_MESSAGE + inflate_record(2, deflated(bytes(65536)), rsv1=Z),
    # RFC 1951 §3.2.3: BTYPE 11 is an error.
    "seed-corrupt": PER_MESSAGE + inflate_record(2, b"\xff\xff\xff\xff\xff", rsv1=Z),
    # RSV1 without the extension (RFC 6455 §5.2).
    "seed-rsv1-off": OFF + inflate_record(1, HELLO, rsv1=Z),
    # Round trips (0x80 | 0x01 kept, 0x02 masked, (window bits - 8) << 2).
    "seed-roundtrip-hello": b"\x9c" + round_trip(b"Hello"),
    "seed-roundtrip-kept-window-8": b"\x83"
    + KEY
    + round_trip(b"Hello")
    + round_trip(b"Hello")
    + round_trip(LOREM, chunk=5, splits=(64, 128))
    + round_trip(b"", text=False)
    + round_trip(LOREM[:100], reset=True),
    "seed-roundtrip-window-10": b"\x88" + round_trip(LOREM * 2, splits=(1, 2, 255), chunk=100),
    "seed-roundtrip-bomb": b"\x9c" + round_trip(b"a", text=False, count=65535),
    "seed-roundtrip-invalid-utf8": b"\x9d" + round_trip("caf\u00e9".encode()[:-1]) + round_trip(b"ok \xff ok"),
}


def main():
    for target, seeds in [
        ("frame_header", FRAME_HEADER),
        ("message_assembler", MESSAGE_ASSEMBLER),
        ("handshake", HANDSHAKE),
        ("connection", CONNECTION),
        ("deflate_offer", DEFLATE_OFFER),
        ("inflate_message", INFLATE_MESSAGE),
    ]:
        folder = os.path.join(HERE, "corpus", target)
        os.makedirs(folder, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
