"""Load through the edge for a while: kept-alive and fresh-connection clients, counting every
failed request (a connection error or a status other than 2xx) and the longest one.

usage: load.py PORT SECONDS [CLIENTS]; prints one JSON line."""
import http.client
import json
import sys
import threading
import time

port, seconds = int(sys.argv[1]), float(sys.argv[2])
clients = int(sys.argv[3]) if len(sys.argv) > 3 else 4
stop = time.monotonic() + seconds
lock = threading.Lock()
totals = {"ok": 0, "failed": 0, "longest_ms": 0.0}


def client(keep_alive):
    ok = failed = 0
    longest = 0.0
    conn = None
    while time.monotonic() < stop:
        began = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {} if keep_alive else {"Connection": "close"}
            conn.request("GET", "/", headers=headers)
            res = conn.getresponse()
            res.read()
            if 200 <= res.status < 300:
                ok += 1
            else:
                failed += 1
            if not keep_alive or res.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            failed += 1
            if conn is not None:
                conn.close()
            conn = None
        longest = max(longest, (time.monotonic() - began) * 1000)
    with lock:
        totals["ok"] += ok
        totals["failed"] += failed
        totals["longest_ms"] = max(totals["longest_ms"], longest)


threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
totals["longest_ms"] = round(totals["longest_ms"], 1)
print(json.dumps(totals))
