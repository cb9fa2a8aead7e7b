#!/usr/bin/env python3
"""bench/grpc_bench.py: unary gRPC round trips against a HIMARI service (or the Python peer,
bench/grpc_peer_server.py): N concurrent clients call ControlService.GetStatus in a loop for
S seconds after a warm-up; prints calls/s and the latency p50/p99/p99.9 in microseconds, then
one JSON line with the figures.

    grpc_bench.py --target HOST:PORT --clients N --seconds S [--warmup S] [--procs P]

How the clients are built, and why. Each client has its own channel (its own HTTP/2
connection), like N independent strategies, and runs calls back to back (closed loop: the
next call starts when the previous answer came). The clients are grpc.aio tasks: in one
process, N asyncio tasks cost much less CPU per call than N threads blocking in the sync
stub (those threads fight over the GIL and wake through futures, which showed up as client
time in the latencies here), and on a 2-core machine the client must leave a core to the
server under test. --procs spreads the clients over P processes (round robin) for machines
with cores to spare; the default is 1. The client is the same for every target, so the
ratio between two targets is fair even where the absolute figures carry client overhead.

Latency is measured per call in the client (perf_counter_ns around the await). Calls that
fail are counted as errors (and named) and left out of the latencies.
Must never: target anything but what it is given (default none); it only reads.
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import pathlib
import sys
import time
from array import array

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))


async def _client(target: str, t_start: float, t_measure: float, t_end: float,
                  lat: array, errors: dict) -> None:
    import grpc
    import himari_grpc

    m = himari_grpc.modules()
    req = m.control_pb2.GetStatusRequest()
    async with grpc.aio.insecure_channel(target) as ch:
        stub = m.control_pb2_grpc.ControlServiceStub(ch)
        await ch.channel_ready()
        while time.monotonic() < t_start:
            await asyncio.sleep(0.001)
        clock = time.perf_counter_ns
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            t0 = clock()
            try:
                await stub.GetStatus(req, timeout=5)
            except grpc.RpcError as e:  # counted, never retried
                if now >= t_measure:
                    key = f"{e.code().name}: {e.details()}"
                    errors[key] = errors.get(key, 0) + 1
                continue
            if now >= t_measure:
                lat.append((clock() - t0) // 1000)


async def _proc_main(target: str, n: int, t_start: float, t_measure: float, t_end: float):
    lats = [array("q") for _ in range(n)]
    errors: dict = {}
    await asyncio.wait_for(
        asyncio.gather(*(_client(target, t_start, t_measure, t_end, lats[i], errors)
                         for i in range(n))),
        timeout=t_end - time.monotonic() + 30)
    out = array("q")
    for a in lats:
        out.extend(a)
    return out, errors


def _sync_client(target: str, t_start: float, t_measure: float, t_end: float,
                 lat: array, errors: dict) -> None:
    import grpc
    import himari_grpc

    m = himari_grpc.modules()
    req = m.control_pb2.GetStatusRequest()
    with grpc.insecure_channel(target) as ch:
        stub = m.control_pb2_grpc.ControlServiceStub(ch)
        grpc.channel_ready_future(ch).result(timeout=10)
        while time.monotonic() < t_start:
            time.sleep(0.001)
        clock = time.perf_counter_ns
        while True:
            now = time.monotonic()
            if now >= t_end:
                break
            t0 = clock()
            try:
                stub.GetStatus(req, timeout=5)
            except grpc.RpcError as e:
                if now >= t_measure:
                    key = f"{e.code().name}: {e.details()}"
                    errors[key] = errors.get(key, 0) + 1
                continue
            if now >= t_measure:
                lat.append((clock() - t0) // 1000)


def _threads_main(target: str, n: int, t_start: float, t_measure: float, t_end: float):
    import threading

    lats = [array("q") for _ in range(n)]
    errs = [dict() for _ in range(n)]
    th = [threading.Thread(target=_sync_client,
                           args=(target, t_start, t_measure, t_end, lats[i], errs[i]),
                           daemon=True) for i in range(n)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=t_end - time.monotonic() + 30)
    out = array("q")
    errors: dict = {}
    for a, e in zip(lats, errs):
        out.extend(a)
        for k, v in e.items():
            errors[k] = errors.get(k, 0) + v
    return out, errors


def _proc_entry(conn, mode, target, n, t_start, t_measure, t_end):
    try:
        if mode == "threads":
            lat, errors = _threads_main(target, n, t_start, t_measure, t_end)
        else:
            lat, errors = asyncio.run(_proc_main(target, n, t_start, t_measure, t_end))
        conn.send((lat.tobytes(), errors, None))
    except Exception as e:  # reported by the parent
        conn.send((b"", {}, f"{type(e).__name__}: {e}"))
    conn.close()


def percentile(sorted_us: array, q: float) -> float:
    """Nearest-rank percentile of sorted values (q in [0, 100])."""
    if not sorted_us:
        return float("nan")
    k = max(0, min(len(sorted_us) - 1, int(round(q / 100.0 * len(sorted_us) + 0.5)) - 1))
    return float(sorted_us[k])


def main() -> int:
    ap = argparse.ArgumentParser(description="GetStatus round trips over gRPC.")
    ap.add_argument("--target", required=True, help="HOST:PORT")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--procs", type=int, default=1, help="client processes (default 1)")
    ap.add_argument("--mode", choices=("auto", "aio", "threads"), default="auto",
                    help="client kind; auto: threads for 1 client per process, aio above")
    ap.add_argument("--label", default="", help="free text copied into the JSON line")
    a = ap.parse_args()
    if a.clients < 1 or a.seconds <= 0 or a.warmup < 0 or a.procs < 1:
        ap.error("--clients, --procs >= 1; --seconds > 0; --warmup >= 0")
    procs = min(a.procs, a.clients)
    mode = a.mode
    if mode == "auto":
        mode = "threads" if a.clients <= procs else "aio"
    share = [a.clients // procs + (1 if i < a.clients % procs else 0) for i in range(procs)]

    # Compile the protos once here, not in every child at the same time.
    import himari_grpc
    himari_grpc.modules()

    # spawn, not fork: a forked grpcio process inherits state grpc does not expect.
    ctx = mp.get_context("spawn")
    t_start = time.monotonic() + 1.0 + 0.5 * procs  # room to start and connect
    t_measure = t_start + a.warmup
    t_end = t_measure + a.seconds
    pipes, children = [], []
    for n in share:
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_proc_entry,
                        args=(child, mode, a.target, n, t_start, t_measure, t_end))
        p.start()
        child.close()
        pipes.append(parent)
        children.append(p)
    lat = array("q")
    errors: dict = {}
    failures = []
    for parent in pipes:
        raw, errs, fail = parent.recv()
        part = array("q")
        part.frombytes(raw)
        lat.extend(part)
        for k, v in errs.items():
            errors[k] = errors.get(k, 0) + v
        if fail:
            failures.append(fail)
    for p in children:
        p.join(timeout=10)

    s = array("q", sorted(lat))
    n_err = sum(errors.values())
    res = {
        "bench": "grpc_getstatus",
        "target": a.target,
        "label": a.label,
        "clients": a.clients,
        "procs": procs,
        "mode": mode,
        "seconds": a.seconds,
        "warmup": a.warmup,
        "calls": len(s),
        "errors": n_err,
        "calls_per_s": round(len(s) / a.seconds, 1),
        "p50_us": percentile(s, 50),
        "p99_us": percentile(s, 99),
        "p999_us": percentile(s, 99.9),
        "max_us": float(s[-1]) if s else float("nan"),
        "mean_us": round(sum(s) / len(s), 1) if s else float("nan"),
    }
    print(f"target {a.target}: {a.clients} clients x {a.seconds:g} s "
          f"(warm-up {a.warmup:g} s, {mode}, {procs} process{'es' if procs > 1 else ''})")
    print(f"  calls       {res['calls']}  ({res['calls_per_s']:.0f}/s), errors {n_err}")
    print(f"  latency us  p50 {res['p50_us']:.0f}  p99 {res['p99_us']:.0f}  "
          f"p99.9 {res['p999_us']:.0f}  max {res['max_us']:.0f}")
    for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  error x{v}: {k}")
    for f in failures:
        print(f"  client process failed: {f}")
    print(json.dumps(res), flush=True)
    return 1 if failures or not s else 0


if __name__ == "__main__":
    sys.exit(main())
