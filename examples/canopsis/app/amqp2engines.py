"""The engines: consume the bus, store every event, and report their own performance."""

import json
import os
import signal
import socket
import sys
import time

import bus


def main():
    db = bus.store()
    conn = bus.amqp_connection()
    channel = conn.channel()
    bus.declare(channel)
    channel.basic_qos(prefetch_count=50)
    stats = {"processed": 0, "since": time.time()}

    def on_message(ch, method, _props, body):
        try:
            event = json.loads(body)
            if not isinstance(event, dict):
                raise ValueError("an event is a JSON object")
        except ValueError as e:
            print(f"amqp2engines: dropped a malformed event: {e}", flush=True)
            ch.basic_ack(method.delivery_tag)
            return
        event.setdefault("routing_key", method.routing_key)
        bus.insert(db, event)
        ch.basic_ack(method.delivery_tag)
        stats["processed"] += 1

    def report():
        # Engines are data sources too: their own throughput goes on the bus.
        elapsed = max(time.time() - stats["since"], 0.001)
        bus.publish(
            channel,
            {
                "event_type": "perf",
                "connector": "engine",
                "component": socket.gethostname(),
                "resource": "amqp2engines",
                "perf_data": {
                    "processed": stats["processed"],
                    "rate": round(stats["processed"] / elapsed, 2),
                },
                "timestamp": bus.now(),
            },
        )
        stats["processed"], stats["since"] = 0, time.time()
        conn.call_later(10, report)

    def stop(*_):
        # Finish the message in hand, then leave (grove sends SIGTERM and waits stop_grace).
        conn.add_callback_threadsafe(channel.stop_consuming)

    signal.signal(signal.SIGTERM, stop)
    channel.basic_consume(bus.QUEUE, on_message)
    conn.call_later(1, report)
    print("amqp2engines: consuming " + bus.QUEUE, flush=True)
    channel.start_consuming()
    conn.close()
    print("amqp2engines: stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
