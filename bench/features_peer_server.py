#!/usr/bin/env python3
"""bench/features_peer_server.py: the peer of the GetLatest benchmark, the minimal Python
server a team would write first for the same job: grpcio's thread-pool server answering
FeatureService.GetLatest from the feature-engine's own Redis view with redis-py (GET
features:{symbol}:latest, or features:{exchange}:{symbol}:latest, JSON into the same
SymbolFeatures message), NOT_FOUND for a key that is not there.

bench/features_bench.py latency drives it and the feature-engine with the same ghz load;
the ratio of the two in one run is the figure in docs/BENCHMARKS.md.

Usage: features_peer_server.py PORT --redis-port P --password-file F [--db N] [--workers N]
Prints "listening on 127.0.0.1:PORT" when ready; SIGTERM or SIGINT stops it.
Must never: listen beyond 127.0.0.1.
"""
import argparse
import json
import pathlib
import signal
import sys
import threading
from concurrent import futures

import grpc
import redis

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))
import himari_grpc  # noqa: E402  (the generated modules, compiled once)

M = himari_grpc.modules()
pb = M.features_pb2


def features(symbol, exchange, timestamp, block):
    values = {k: v for k, v in block.items()
              if v is not None and k not in ("ticks", "last_trade_ts")}
    return pb.Features(symbol=symbol, exchange=exchange, timestamp_ms=timestamp,
                       last_trade_ms=block.get("last_trade_ts") or 0,
                       ticks=block.get("ticks", 0), values=values)


class Peer(M.features_pb2_grpc.FeatureServiceServicer):
    def __init__(self, client):
        self.r = client

    def GetLatest(self, request, context):
        if not request.symbol:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "symbol: empty")
        key = (f"features:{request.exchange}:{request.symbol}:latest" if request.exchange
               else f"features:{request.symbol}:latest")
        raw = self.r.get(key)
        if raw is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no features for {key}")
        v = json.loads(raw)
        out = pb.SymbolFeatures(features=features(v["symbol"], request.exchange,
                                                  v["timestamp"], v["features"]))
        for ex, block in sorted(v.get("exchanges", {}).items()):
            out.exchanges.append(features(v["symbol"], ex, v["timestamp"], block))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--db", type=int, default=0)
    ap.add_argument("--workers", type=int, default=16)
    a = ap.parse_args()
    password = pathlib.Path(a.password_file).read_text().strip()
    client = redis.Redis(host="127.0.0.1", port=a.redis_port, db=a.db, password=password,
                         max_connections=a.workers)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=a.workers))
    M.features_pb2_grpc.add_FeatureServiceServicer_to_server(Peer(client), server)
    bound = server.add_insecure_port(f"127.0.0.1:{a.port}")
    if bound == 0:
        sys.exit(f"features_peer_server: cannot listen on 127.0.0.1:{a.port}")
    server.start()
    print(f"listening on 127.0.0.1:{bound} ({a.workers} workers)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


if __name__ == "__main__":
    main()
