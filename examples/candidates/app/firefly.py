"""Stand-in for Firefly, the FITS viewer the rating page embeds: it serves /firefly/ (a
viewer page for ?file=NAME) and /firefly/api/header (the FITS header cards as JSON) over the
candidate files in --data.

POST /firefly/debug/wedge makes it stop answering its health check, as a viewer stuck on a
bad file would; only a restart (grove's autoheal) brings it back."""

import argparse
import html
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

WEDGED = threading.Event()


def header(path):
    cards = {}
    with open(path, "rb") as f:
        while True:
            block = f.read(2880)
            if len(block) < 2880:
                raise ValueError("not a FITS file")
            for i in range(0, 2880, 80):
                card = block[i : i + 80].decode("ascii", "replace")
                key = card[:8].strip()
                if key == "END":
                    return cards
                if card[8:10] == "= ":
                    cards[key] = card[10:].split("/")[0].strip().strip("'").strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    data = os.path.realpath(args.data)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send(self, code, body, kind="application/json"):
            raw = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def fits(self, query):
            name = parse_qs(query).get("file", [""])[-1]
            path = os.path.realpath(os.path.join(data, name))
            if not name or not path.startswith(data + os.sep) or not os.path.isfile(path):
                return None, name
            return header(path), name

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/firefly/healthz":
                if WEDGED.is_set():
                    return self.send(503, '{"status": "wedged"}')
                return self.send(200, '{"status": "ok"}')
            if url.path == "/firefly/api/header":
                cards, name = self.fits(url.query)
                if cards is None:
                    return self.send(404, json.dumps({"error": f"no FITS file {name}"}))
                return self.send(200, json.dumps({"file": name, "header": cards}))
            if url.path in ("/firefly", "/firefly/"):
                cards, name = self.fits(url.query)
                rows = "".join(
                    f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                    for k, v in (cards or {}).items()
                )
                return self.send(
                    200,
                    f"<!doctype html><title>Firefly</title><h1>{html.escape(name or 'Firefly')}</h1><table>{rows}</table>",
                    "text/html",
                )
            self.send(404, '{"error": "not found"}')

        def do_POST(self):
            if self.path == "/firefly/debug/wedge":
                WEDGED.set()
                print("firefly: wedged on purpose; the health check fails from now on", flush=True)
                return self.send(200, '{"wedged": true}')
            self.send(404, '{"error": "not found"}')

        def log_message(self, fmt, *a):
            pass

    print(f"firefly: serving {data} on 127.0.0.1:{args.port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), H).serve_forever()


if __name__ == "__main__":
    main()
