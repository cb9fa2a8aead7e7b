#!/usr/bin/env python3
"""bench/grpc_peer_server.py: the peer of the gRPC benchmark, a minimal Python grpcio server
with ControlService.GetStatus (a static Status, the same shape a validator answers) and the
standard grpc.health.v1 Health service (Check and Watch), on 127.0.0.1:PORT.

bench/grpc_bench.py runs the same GetStatus load against it and against a HIMARI service;
the ratio of the two is the figure in docs/BENCHMARKS.md.

Two server flavours of grpcio, both stock. The default is the classic server with a
ThreadPoolExecutor (--workers threads), the form grpcio's documentation shows; on this
2-core machine it served about as many calls/s as the grpc.aio server or more (aio was ahead
in one of four runs with 16 clients, behind in three, and never ahead with one client).
--aio selects the asyncio server, so both can be measured.

Usage: grpc_peer_server.py PORT [--aio] [--workers N]
Prints "listening on 127.0.0.1:PORT" when ready; SIGTERM or SIGINT stops it (grace 1 s).
Must never: listen beyond 127.0.0.1.
"""
import argparse
import asyncio
import pathlib
import signal
import sys
import threading
from concurrent import futures

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))
import himari_grpc  # noqa: E402  (the generated modules, compiled once)

M = himari_grpc.modules()
pb = M.control_pb2
hpb = M.health_pb2


def static_status():
    return pb.Status(
        service="peer", instance_id="peer-1", version="0.1.0",
        state=pb.SERVICE_STATE_RUNNING, config_digest="0123456789abcdef",
        uptime_seconds=12.5, records_in=1000, records_out=1000,
        transactions_committed=10,
        partitions=[pb.PartitionStatus(topic="raw_market_data", partition=3, position=100,
                                       lag=7)])


STATUS = static_status()
SERVING = hpb.HealthCheckResponse(status=hpb.HealthCheckResponse.SERVING)


class SyncControl(M.control_pb2_grpc.ControlServiceServicer):
    def GetStatus(self, request, context):
        return STATUS


class SyncHealth(M.health_pb2_grpc.HealthServicer):
    def Check(self, request, context):
        if request.service:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return SERVING

    def Watch(self, request, context):
        yield SERVING
        done = threading.Event()
        context.add_callback(done.set)
        done.wait()


class AioControl(M.control_pb2_grpc.ControlServiceServicer):
    async def GetStatus(self, request, context):
        return STATUS


class AioHealth(M.health_pb2_grpc.HealthServicer):
    async def Check(self, request, context):
        if request.service:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return SERVING

    async def Watch(self, request, context):
        yield SERVING
        await asyncio.Event().wait()  # until the client cancels


def run_sync(port: int, workers: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    M.control_pb2_grpc.add_ControlServiceServicer_to_server(SyncControl(), server)
    M.health_pb2_grpc.add_HealthServicer_to_server(SyncHealth(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        sys.exit(f"grpc_peer_server: cannot listen on 127.0.0.1:{port}")
    server.start()
    print(f"listening on 127.0.0.1:{bound} (sync, {workers} workers)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop(grace=1).wait()


async def run_aio(port: int) -> None:
    server = grpc.aio.server()
    M.control_pb2_grpc.add_ControlServiceServicer_to_server(AioControl(), server)
    M.health_pb2_grpc.add_HealthServicer_to_server(AioHealth(), server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    if bound == 0:
        sys.exit(f"grpc_peer_server: cannot listen on 127.0.0.1:{port}")
    await server.start()
    print(f"listening on 127.0.0.1:{bound} (aio)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--aio", action="store_true", help="grpc.aio server instead of the thread pool")
    ap.add_argument("--workers", type=int, default=16, help="threads of the thread-pool server")
    a = ap.parse_args()
    if a.aio:
        asyncio.run(run_aio(a.port))
    else:
        run_sync(a.port, a.workers)


if __name__ == "__main__":
    main()
