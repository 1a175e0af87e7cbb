"""What the Canopsis programs share: the AMQP bus and the JSON event store.

The seed stored events in MongoDB; Debian has no MongoDB, so this stack keeps them as
PostgreSQL JSONB documents (one `events` table, a GIN index for queries by field).
"""

import json
import os
import time

import pika
import psycopg2
import psycopg2.extras

EXCHANGE = "canopsis.events"
QUEUE = "Engine_store"


def amqp_connection():
    params = pika.URLParameters(os.environ["AMQP_URL"])
    params.heartbeat = 30
    params.connection_attempts = 5
    params.retry_delay = 1
    return pika.BlockingConnection(params)


def declare(channel):
    """The topic exchange data sources publish to, and the store engine's queue."""
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.queue_declare(QUEUE, durable=True)
    channel.queue_bind(QUEUE, EXCHANGE, routing_key="#")


def publish(channel, event):
    key = f"{event.get('event_type', 'check')}.{event.get('component', '-')}"
    channel.basic_publish(
        EXCHANGE,
        key,
        json.dumps(event).encode(),
        pika.BasicProperties(content_type="application/json", delivery_mode=2),
    )


def store():
    conn = psycopg2.connect(os.environ["STORE_URL"])
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS events ("
            " id bigserial PRIMARY KEY,"
            " received timestamptz NOT NULL DEFAULT now(),"
            " doc jsonb NOT NULL)"
        )
        cur.execute("CREATE INDEX IF NOT EXISTS events_doc ON events USING gin (doc)")
    return conn


def insert(conn, event):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO events (doc) VALUES (%s)", (psycopg2.extras.Json(event),))


def find(conn, match, limit=50):
    """The newest events whose document contains `match` (JSONB containment)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, received, doc FROM events WHERE doc @> %s ORDER BY id DESC LIMIT %s",
            (psycopg2.extras.Json(match), limit),
        )
        return [
            {"id": i, "received": r.isoformat(), **d} for (i, r, d) in cur.fetchall()
        ]


def now():
    return time.time()
