"""Stand-in for collectd with its AMQP plugin: host CPU and memory, published as perf events."""

import argparse
import os
import socket
import time

import bus


def cpu_times():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return idle, sum(fields)


def memory_used_percent():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
    return round(100.0 * (1 - info["MemAvailable"] / info["MemTotal"]), 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=10.0)
    args = ap.parse_args()
    host = socket.gethostname()
    conn = bus.amqp_connection()
    channel = conn.channel()
    bus.declare(channel)
    print(f"collectd: publishing host samples every {args.interval}s", flush=True)
    idle0, total0 = cpu_times()
    while True:
        conn.sleep(args.interval)
        idle1, total1 = cpu_times()
        busy = 1 - (idle1 - idle0) / max(total1 - total0, 1)
        idle0, total0 = idle1, total1
        bus.publish(
            channel,
            {
                "event_type": "perf",
                "connector": "collectd",
                "component": host,
                "resource": "host",
                "perf_data": {
                    "cpu_percent": round(100 * busy, 1),
                    "mem_used_percent": memory_used_percent(),
                },
                "timestamp": bus.now(),
                "pid": os.getpid(),
            },
        )


if __name__ == "__main__":
    main()
