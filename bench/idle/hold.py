"""Holds idle keep-alive client connections open for bench/idle/run.sh.

    python3 hold.py HOST PORT MODE          MODE: h1 (plain HTTP/1.1), h1s (HTTPS,
                                            HTTP/1.1 over ALPN), h2 (HTTPS, HTTP/2)

Reads lines from stdin: `open N` opens N more connections, each of which sends one GET /
and reads its whole answer (so the server has served a request and gone back to waiting),
then stays open doing nothing; it prints `held TOTAL FAILED` when they are all idle.
`quit` (or the end of stdin) closes them all. HTTP/2 is spoken by hand (the preface, one
SETTINGS, one HEADERS frame with HPACK static-table entries): no third-party package.
"""

import asyncio
import ssl
import struct
import sys

HOST, PORT, MODE = sys.argv[1], int(sys.argv[2]), sys.argv[3]
OPENING = 64  # connections being opened at once

held = []


def context():
    if MODE == "h1":
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"] if MODE == "h2" else ["http/1.1"])
    return ctx


CTX = context()


async def h1(reader, writer):
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    await reader.readexactly(length)


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(index, value):
    # Literal header field without indexing, name from the static table (4-bit prefix).
    return bytes([index]) + bytes([len(value)]) + value


async def h2(reader, writer):
    if writer.get_extra_info("ssl_object").selected_alpn_protocol() != "h2":
        raise RuntimeError("the server did not choose h2")
    block = b"\x82\x87\x84" + literal(1, b"localhost")  # GET, https, /, :authority
    writer.write(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
        + frame(4, 0, 0)  # SETTINGS
        + frame(1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS
    )
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags, stream = head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        await reader.readexactly(length)
        if kind == 4 and not flags & 1:
            writer.write(frame(4, 1, 0))  # SETTINGS ack
        if kind == 7:
            raise RuntimeError("GOAWAY")
        if stream == 1 and kind in (0, 1) and flags & 1:
            return  # END_STREAM on our stream: the answer is whole


async def one(gate):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, PORT, ssl=CTX, limit=1 << 16), 30
            )
            await asyncio.wait_for((h2 if MODE == "h2" else h1)(reader, writer), 30)
        except Exception as e:  # noqa: BLE001 - counted and said once
            return str(e) or type(e).__name__
        held.append(writer)
        return None


async def main():
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPENING)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        words = line.split()
        if not words or words[0] == "quit":
            break
        errors = [e for e in await asyncio.gather(*(one(gate) for _ in range(int(words[1])))) if e]
        if errors:
            print(f"hold: {len(errors)} failed, first: {errors[0]}", file=sys.stderr, flush=True)
        await asyncio.sleep(1)  # let the servers go idle after their last answer
        print(f"held {len(held)} {len(errors)}", flush=True)
    for w in held:
        w.close()


asyncio.run(main())
