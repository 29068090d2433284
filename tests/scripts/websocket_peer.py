#!/usr/bin/python3
"""A real WebSocket peer for splicer's tests, on Debian's python3-websockets (RFC 6455
framing, masking, the opening and closing handshakes all done by the library, not by us).

  websocket_peer.py server PORT
      Echo server on 127.0.0.1:PORT: every message comes back as it was sent; the text
      message "bye" makes the server close (code 1000) instead, so the close starts at the
      backend. Prints "listening" once it accepts, then runs until killed.

  websocket_peer.py client PORT HOST CAFILE MESSAGES SIZE [CLOSER]
      Connects to wss://HOST:PORT/ws through 127.0.0.1 (SNI and Host: HOST, the server's
      certificate checked against CAFILE; CAFILE "-": plain ws://), sends MESSAGES binary
      messages of SIZE random bytes while reading their echoes at the same time, compares
      each, then closes: CLOSER "client" (default) sends the close frame itself, "server"
      asks the server to. Prints one line of JSON: ok, echoed, bytes, close_code, error.
      Every wait is bounded (30 s for the whole exchange).
"""

import asyncio
import json
import os
import socket
import ssl
import sys

import websockets


async def serve(port):
    async def echo(ws, _path=None):
        async for message in ws:
            if message == "bye":
                await ws.close(code=1000, reason="server closes")
                return
            await ws.send(message)

    async with websockets.serve(echo, "127.0.0.1", port, max_size=None):
        print("listening", flush=True)
        await asyncio.Future()


async def run_client(port, host, cafile, messages, size, closer):
    report = {"ok": False, "echoed": 0, "bytes": 0, "close_code": None, "error": ""}
    context = None
    if cafile != "-":
        context = ssl.create_default_context(cafile=cafile)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    scheme = "wss" if context else "ws"
    uri = f"{scheme}://{host}:{port}/ws"
    extra = {"server_hostname": host} if context else {}
    payloads = [os.urandom(size) for _ in range(messages)]
    try:
        async with websockets.connect(uri, sock=sock, ssl=context, max_size=None,
                                      open_timeout=10, close_timeout=10, **extra) as ws:

            async def send_all():
                for payload in payloads:
                    await ws.send(payload)

            async def read_all():
                for payload in payloads:
                    echoed = await ws.recv()
                    if echoed != payload:
                        raise RuntimeError(f"echo {report['echoed']} differs")
                    report["echoed"] += 1
                    report["bytes"] += len(echoed)

            await asyncio.gather(send_all(), read_all())
            if closer == "server":
                await ws.send("bye")
                try:
                    await ws.recv()
                except websockets.ConnectionClosedOK:
                    pass
            else:
                await ws.close(code=1000, reason="client closes")
            await ws.wait_closed()
            report["close_code"] = ws.close_code
            report["ok"] = report["echoed"] == messages
    except Exception as error:  # reported, not raised: the test reads the JSON line
        report["error"] = f"{type(error).__name__}: {error}"
    return report


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2])))
        return 0
    if len(sys.argv) in (7, 8) and sys.argv[1] == "client":
        closer = sys.argv[7] if len(sys.argv) == 8 else "client"
        report = asyncio.run(asyncio.wait_for(
            run_client(int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]),
                       int(sys.argv[6]), closer), timeout=30))
        print(json.dumps(report), flush=True)
        return 0 if report["ok"] else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
