"""A strategy reading the feature-engine's latest view straight from Redis (the guide's
layout: features:{symbol}:latest, JSON, refreshed after every batch of input)."""
import argparse
import json
import sys
import time

import redis


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("symbols", nargs="+", help="e.g. BTC/USDT")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6379)
    ap.add_argument("--db", type=int, default=0)
    ap.add_argument("--password-file", help="Redis AUTH password file")
    args = ap.parse_args()
    password = open(args.password_file).read().strip() if args.password_file else None
    r = redis.Redis(host=args.host, port=args.port, db=args.db, password=password,
                    decode_responses=True, socket_timeout=5)
    missing = 0
    for sym in args.symbols:
        raw = r.get(f"features:{sym}:latest")
        if raw is None:
            print(f"{sym}: no features in Redis", file=sys.stderr)
            missing += 1
            continue
        view = json.loads(raw)
        f = view["features"]
        age_ms = int(time.time() * 1000) - view["timestamp"]
        print(f"{sym:10s} last={f['last_price']} vwap_5m={f['vwap_5m']} "
              f"spread_bps={f['cross_exchange_spread_bps']} exchanges={sorted(view['exchanges'])} "
              f"newest_tick_age_ms={age_ms}")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
