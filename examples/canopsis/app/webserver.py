"""The Canopsis REST API: a WSGI application run by gunicorn.

Authentication is the application's own, as the seed requires: POST /api/auth with the
account's name and password returns a signed token, sent back as `Authorization: Bearer`.

    GET  /api/health              200 when the store answers (no token needed)
    POST /api/auth                {"username", "password"} -> {"token"}
    POST /api/events              an event -> published on the bus (202)
    GET  /api/events?k=v&limit=n  stored events whose fields match k=v, newest first
    GET  /api/perf                the newest perf sample of each data source
"""

import base64
import hashlib
import hmac
import json
import os
import time
from urllib.parse import parse_qs

import bus

SECRET = os.environ["CANOPSIS_SECRET_KEY"].encode()
USER = os.environ.get("CANOPSIS_USER", "root")
PASSWORD = os.environ["CANOPSIS_PASSWORD"]
TOKEN_LIFETIME = 3600


def sign(payload):
    mac = hmac.new(SECRET, payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(payload).decode() + "." + base64.urlsafe_b64encode(mac).decode()


def verify(token):
    try:
        p, m = token.split(".", 1)
        payload = base64.urlsafe_b64decode(p)
        mac = base64.urlsafe_b64decode(m)
    except ValueError:
        return None
    if not hmac.compare_digest(mac, hmac.new(SECRET, payload, hashlib.sha256).digest()):
        return None
    try:
        claims = json.loads(payload)
    except ValueError:
        return None
    if claims.get("exp", 0) < time.time():
        return None
    return claims.get("sub")


def reply(start, status, body):
    data = json.dumps(body).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def read_json(environ):
    try:
        n = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        n = 0
    if n <= 0 or n > 1 << 20:
        return None
    try:
        return json.loads(environ["wsgi.input"].read(n))
    except ValueError:
        return None


def application(environ, start):
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if path == "/api/health":
        try:
            conn = bus.store()
            conn.close()
        except Exception as e:  # noqa: BLE001 - any store failure is "unhealthy"
            return reply(start, "503 Service Unavailable", {"status": "store down", "error": str(e)})
        return reply(start, "200 OK", {"status": "ok"})
    if path == "/api/auth" and method == "POST":
        body = read_json(environ) or {}
        ok = hmac.compare_digest(str(body.get("username", "")), USER) and hmac.compare_digest(
            str(body.get("password", "")), PASSWORD
        )
        if not ok:
            return reply(start, "401 Unauthorized", {"error": "wrong username or password"})
        claims = {"sub": USER, "exp": int(time.time()) + TOKEN_LIFETIME}
        return reply(start, "200 OK", {"token": sign(json.dumps(claims).encode())})
    if not path.startswith("/api/"):
        return reply(start, "404 Not Found", {"error": "no such resource"})
    auth = environ.get("HTTP_AUTHORIZATION", "")
    user = verify(auth[7:]) if auth.startswith("Bearer ") else None
    if user is None:
        return reply(start, "401 Unauthorized", {"error": "log in at POST /api/auth"})
    if path == "/api/events" and method == "POST":
        event = read_json(environ)
        if not isinstance(event, dict) or not event.get("component"):
            return reply(start, "400 Bad Request", {"error": "an event is a JSON object with a component"})
        event.setdefault("event_type", "check")
        event.setdefault("timestamp", bus.now())
        event["author"] = user
        conn = bus.amqp_connection()
        try:
            channel = conn.channel()
            bus.declare(channel)
            bus.publish(channel, event)
        finally:
            conn.close()
        return reply(start, "202 Accepted", {"queued": True})
    if path == "/api/events" and method == "GET":
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        try:
            limit = max(1, min(int(query.pop("limit", "50")), 500))
        except ValueError:
            return reply(start, "400 Bad Request", {"error": "limit is a number"})
        conn = bus.store()
        try:
            return reply(start, "200 OK", {"events": bus.find(conn, query, limit)})
        finally:
            conn.close()
    if path == "/api/perf" and method == "GET":
        conn = bus.store()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT DISTINCT ON (doc->>'connector', doc->>'resource') doc FROM events"
                    " WHERE doc->>'event_type' = 'perf'"
                    " ORDER BY doc->>'connector', doc->>'resource', id DESC"
                )
                return reply(start, "200 OK", {"perf": [r[0] for r in cur.fetchall()]})
        finally:
            conn.close()
    return reply(start, "405 Method Not Allowed", {"error": f"{method} {path} is not served"})
