"""The report server's docserver (the seed's docx generation service on :8181): POST /render
with a record as JSON returns it as a .docx made with python-docx."""
import argparse
import io
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import docx

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def render(record):
    d = docx.Document()
    d.add_heading(str(record.get("title", "Untitled")), level=0)
    d.add_paragraph(f"Record {record.get('id', '-')}")
    for para in str(record.get("body", "")).split("\n"):
        d.add_paragraph(para)
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, code, body, kind):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            return self.reply(200, b"ok", "text/plain")
        self.reply(404, b"not found", "text/plain")

    def do_POST(self):
        if self.path != "/render":
            return self.reply(404, b"not found", "text/plain")
        try:
            n = int(self.headers.get("Content-Length", "0"))
            record = json.loads(self.rfile.read(n))
            if not isinstance(record, dict):
                raise ValueError("a record is a JSON object")
        except ValueError as e:
            return self.reply(400, str(e).encode(), "text/plain")
        self.reply(200, render(record), DOCX)

    def log_message(self, fmt, *a):
        print("docserver: " + fmt % a, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    print(f"docserver: on 127.0.0.1:{args.port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
