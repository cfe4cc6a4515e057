"""py-broadcast: stdin lines -> every client, with the Python `websockets` library.

The compression peer of bench/compression.sh: `websockets`' own broadcast recipe
(`websockets.asyncio.server.broadcast`) with the library's default permessage-deflate
(`compression="deflate"`: context takeover, 12-bit windows, zlib), so every message is
compressed once per client, by that client's own deflate stream. One asyncio event
loop, one thread, like wscast.

    python broadcast.py --listen 127.0.0.1:PORT     # prints "listening on ws://.../ws" on stderr
"""

import argparse
import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

CLIENTS = set()


async def handler(websocket):
    CLIENTS.add(websocket)
    try:
        await websocket.wait_closed()
    finally:
        CLIENTS.discard(websocket)


async def feed():
    """Reads stdin a line at a time and broadcasts it; broadcast() only queues frames,
    so a line is compressed and written for every client before the next is read."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        broadcast(CLIENTS, text)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1:8080")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    async with serve(handler, host, int(port), max_size=1 << 20, ping_interval=None) as server:
        print(f"listening on ws://{args.listen}/ws", file=sys.stderr, flush=True)
        await feed()
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
