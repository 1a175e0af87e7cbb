"""The report server's PDF converter (the seed's service on :9016): POST /convert with a
.docx returns the PDF that LibreOffice (Debian's libreoffice-writer-nogui, headless) makes
of it. One conversion at a time, each with its own LibreOffice profile in a temporary folder."""
import argparse
import os
import shutil
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
MAX_BYTES = 20 << 20


def soffice():
    for name in ("soffice", "libreoffice"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("pdfconvert: LibreOffice is missing (apt-get install libreoffice-writer-nogui)")


def convert(binary, data):
    with LOCK, tempfile.TemporaryDirectory(prefix="pdfconvert-") as tmp:
        src = os.path.join(tmp, "in.docx")
        with open(src, "wb") as f:
            f.write(data)
        profile = "file://" + os.path.join(tmp, "profile")
        proc = subprocess.run(
            [binary, f"-env:UserInstallation={profile}", "--headless", "--norestore",
             "--convert-to", "pdf", "--outdir", tmp, src],
            capture_output=True, timeout=120,
        )
        out = os.path.join(tmp, "in.pdf")
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"LibreOffice failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-500:]}")
        with open(out, "rb") as f:
            return f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    binary = soffice()

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
            if self.path != "/convert":
                return self.reply(404, b"not found", "text/plain")
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                n = -1
            if n <= 0 or n > MAX_BYTES:
                return self.reply(400, b"send a .docx of at most 20 MB", "text/plain")
            data = self.rfile.read(n)
            try:
                pdf = convert(binary, data)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                return self.reply(422, str(e).encode(), "text/plain")
            self.reply(200, pdf, "application/pdf")

        def log_message(self, fmt, *a):
            print("pdfconvert: " + fmt % a, flush=True)

    print(f"pdfconvert: {binary} on 127.0.0.1:{args.port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
