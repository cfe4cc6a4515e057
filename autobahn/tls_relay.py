#!/usr/bin/env python3
"""A test-only TLS relay for running the Autobahn cases over wss://.

    python3 autobahn/tls_relay.py --upstream 127.0.0.1:PORT --ca cert.pem [--listen 127.0.0.1:0]

kosoku cannot speak TLS itself (its WebSocket core is built without it), so it connects
in the clear to this relay, which opens a TLS connection (verifying the server against
--ca) to wscast for each one and pumps bytes both ways. wscast thus serves every case
over TLS; only the last hop, inside this machine, is plain. Prints `relay listening on
HOST:PORT` once ready. A FIN from the client is passed on as TLS close after the server
has had 2 s to finish (TLS has no half-close); the server's close_notify and FIN are
passed on as a FIN.
"""

import argparse
import asyncio
import ssl
import sys

CHUNK = 1 << 16
LINGER = 2.0


async def pump(reader, writer, on_eof):
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    await on_eof()


async def relay(down_r, down_w, upstream, ctx):
    host, port = upstream
    try:
        up_r, up_w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
    except (OSError, ssl.SSLError) as e:
        print(f"relay: cannot reach {host}:{port} over TLS: {e}", file=sys.stderr, flush=True)
        down_w.close()
        return
    up_done = asyncio.Event()

    async def down_eof():
        # The client's FIN: give the server time to answer, then close TLS.
        try:
            await asyncio.wait_for(up_done.wait(), LINGER)
        except asyncio.TimeoutError:
            pass
        up_w.close()

    async def up_eof():
        up_done.set()
        try:
            down_w.write_eof()
        except OSError:
            pass

    await asyncio.gather(pump(down_r, up_w, down_eof), pump(up_r, down_w, up_eof))
    down_w.close()
    up_w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="HOST:PORT of wscast's TLS port")
    ap.add_argument("--ca", required=True, help="PEM certificate to trust")
    ap.add_argument("--listen", default="127.0.0.1:0")
    args = ap.parse_args()
    up_host, _, up_port = args.upstream.rpartition(":")
    ctx = ssl.create_default_context(cafile=args.ca)
    host, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(
        lambda r, w: relay(r, w, (up_host, int(up_port)), ctx), host, int(port), limit=CHUNK
    )
    addr = server.sockets[0].getsockname()
    print(f"relay listening on {addr[0]}:{addr[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
