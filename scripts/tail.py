#!/usr/bin/env python3
"""Print the records of a topic as they arrive (read_committed), one JSON line each.

    scripts/tail.py [--bootstrap HOST:PORT] [--from-beginning] [--count N] TOPIC

A look at what the services produce; uses the confluent-kafka client from the project's
venv (.cache/venv/bin/python scripts/tail.py ...).
"""
import argparse
import os
import sys
import uuid

from confluent_kafka import Consumer, KafkaError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("topic")
    ap.add_argument("--bootstrap", default=os.environ.get("HIMARI_KAFKA_BOOTSTRAP",
                                                          "127.0.0.1:19092"))
    ap.add_argument("--from-beginning", action="store_true")
    ap.add_argument("--count", type=int, default=0, help="stop after N records")
    args = ap.parse_args()
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": f"himari-tail-{uuid.uuid4()}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest" if args.from_beginning else "latest",
    })
    consumer.subscribe([args.topic])
    seen = 0
    try:
        while not args.count or seen < args.count:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"error: {msg.error()}", file=sys.stderr)
                continue
            sys.stdout.write(msg.value().decode("utf-8", "replace") + "\n")
            sys.stdout.flush()
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
