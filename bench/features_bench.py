#!/usr/bin/env python3
"""The feature-engine serving strategies: GetLatest latency, freshness, StreamFeatures fan-out.

Each mode builds the real path on fresh topics of the test stack's broker: a producer ->
raw topic -> ingest-validator -> quality topic -> feature-engine -> its Redis view (db
--db of the test stack's Redis) and its gRPC FeatureService. Trades are 3 symbols on 5
exchanges with event time = the wall clock at send.

  latency    GetLatest p50/p99 (ms) and calls/s with 1 and 16 concurrent clients, driven
             by a compiled closed-loop generator so the client does not starve the server
             on 2 cores: bench/grpc-load (C on grpc core, each client its own connection;
             the default) or ghz (--client ghz; it decodes answers by reflection and was
             the bottleneck at 16 clients), while a feed of --feed-rate trades/s keeps the view changing. Against, in the
             same rounds: the same GetLatest on a minimal Python grpcio + redis-py server
             answering from the same Redis keys (bench/features_peer_server.py), a plain
             Redis GET of the same key by redis-benchmark, and our GetStatus (the floor of
             a gRPC call on our server).
             Configurations alternate, --rounds times; HIMARI_BUILD_DIR picks the build
             (a before/after pair).
  freshness  trades at --rate/s for --seconds; for every trade, the time from its send to
             the first moment it is visible: in features:{symbol}:latest (a watcher on
             Redis keyspace notifications GETs the key on each change) and in
             StreamFeatures (--streams subscribers, over --procs processes). A tick k of a
             symbol is visible once a view's `ticks` count (ticks applied, exact) reaches
             k, so the figure is per trade, not per update. For the validator's share, the
             same per trade at its output (a read_committed consumer of the quality topic:
             what the feature-engine can see at the earliest). Also the feature-engine's CPU
             per 1,000 trades, and the messages the subscribers got (conflation: a slow
             subscriber gets the latest value, not every one).

  .cache/venv/bin/python bench/features_bench.py latency [--seconds 8] [--rounds 2]
      [--feed-rate 1000] [--client c|ghz]
  .cache/venv/bin/python bench/features_bench.py freshness [--rate 10000] [--seconds 20]
      [--streams 1] [--procs 1]

Needs the test stack (HIMARI_PROFILE=test scripts/stack.sh start kafka redis) and a build;
--client ghz needs ghz (bench/features-bench.sh --client ghz installs it). Prints a table and one
JSON line per measurement. Bounded: every process stops by itself.
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import redis
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "integration"))
from validator_kafka_bench import BIN, ROOT, cpu_seconds, free_port, start_validator  # noqa: E402

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
EXCHANGES = ["binance", "coinbase", "kraken", "bybit", "deribit"]  # the validator's default list
BASE = {"BTC/USDT": 37000.0, "ETH/USDT": 2000.0, "SOL/USDT": 60.0}
STACK = ROOT / "run" / "test"
HIST_US = 1_000_000  # latency histogram: 1 us bins up to 1 s (later: the last bin)


class Pipeline:
    """Fresh topics, a validator and a feature-engine between them."""

    def __init__(self, bootstrap, redis_port, password_file, db):
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        tag = uuid.uuid4().hex[:8]
        self.t = {k: f"fbench-{k}-{tag}" for k in
                  ("raw", "quality", "vdlq", "vevents", "changelog", "features", "causal", "fdlq")}
        parts = {"raw": 12, "quality": 6, "changelog": 12, "features": 6}
        conf = {"changelog": {"cleanup.policy": "compact"}}
        for f in self.admin.create_topics([NewTopic(n, parts.get(k, 3), 1, config=conf.get(k, {}))
                                           for k, n in self.t.items()]).values():
            f.result(30)
        self.validator, _ = start_validator({
            "HIMARI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HIMARI_SERVICE_INSTANCE_ID": f"fbench-v-{tag}",
            "HIMARI_VALIDATOR_INPUT_TOPIC": self.t["raw"],
            "HIMARI_VALIDATOR_OUTPUT_TOPIC": self.t["quality"],
            "HIMARI_VALIDATOR_DLQ_TOPIC": self.t["vdlq"],
            "HIMARI_VALIDATOR_EVENTS_TOPIC": self.t["vevents"],
            "HIMARI_VALIDATOR_CHANGELOG_TOPIC": self.t["changelog"],
            "HIMARI_VALIDATOR_GROUP_ID": f"fbench-v-{tag}",
            "HIMARI_LOG_LEVEL": "warn"})
        self.admin_port, self.grpc_port = free_port(), free_port()
        self.log = open(f"/tmp/fbench-feature-engine-{self.admin_port}.log", "wb")
        self.fe = subprocess.Popen([str(BIN / "feature-engine")], env={
            **os.environ,
            "HIMARI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HIMARI_SERVICE_INSTANCE_ID": f"fbench-f-{tag}",
            "HIMARI_FEATURES_INPUT_TOPIC": self.t["quality"],
            "HIMARI_FEATURES_OUTPUT_TOPIC": self.t["features"],
            "HIMARI_FEATURES_EVENTS_TOPIC": self.t["causal"],
            "HIMARI_FEATURES_DLQ_TOPIC": self.t["fdlq"],
            "HIMARI_FEATURES_GROUP_ID": f"fbench-f-{tag}",
            "HIMARI_REDIS_PORT": str(redis_port),
            "HIMARI_REDIS_PASSWORD_FILE": str(password_file),
            "HIMARI_REDIS_DB": str(db),
            "HIMARI_ADMIN_PORT": str(self.admin_port),
            "HIMARI_GRPC_PORT": str(self.grpc_port),
            "HIMARI_GRPC_MAX_WATCH_STREAMS": "256",
            "HIMARI_LOG_LEVEL": "warn"}, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{self.admin_port}/readyz",
                                timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.fe.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"feature-engine did not get ready; see {self.log.name}")
            time.sleep(0.1)

    def close(self):
        for p in (self.fe, self.validator):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
        for f in self.admin.delete_topics(list(self.t.values())).values():
            try:
                f.result(30)
            except Exception:  # noqa: BLE001 - cleanup
                pass


def feed(bootstrap, topic, rate, seconds, send_ns=None, stop=None):
    """Trades at `rate`/s for `seconds` (or until `stop` is set). send_ns: per symbol, a
    shared array that gets each trade's send time at index (its tick number - 1)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True})
    ids, count = {}, {s: 0 for s in SYMBOLS}
    t0, i = time.monotonic(), 0
    while (stop is None or not stop.is_set()) and (seconds is None or i < rate * seconds):
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0.0005:
            time.sleep(ahead)  # sleep, not spin: 2 cores
        sym, ex = SYMBOLS[i % 3], EXCHANGES[(i // 3) % 5]
        ids[(ex, sym)] = ids.get((ex, sym), 1000) + 1
        now_ns = time.time_ns()
        if send_ns is not None:
            send_ns[sym][count[sym]] = now_ns
        count[sym] += 1
        rec = {"timestamp": now_ns // 1_000_000, "exchange": ex, "symbol": sym,
               "price": BASE[sym] * (1 + ((i * 7919) % 201 - 100) * 1e-5),
               "volume": 0.01 + (i % 13) * 0.001, "trade_id": ids[(ex, sym)],
               "side": "buy" if i % 2 else "sell", "sent_ns": now_ns}
        p.produce(topic, json.dumps(rec).encode(), key=sym.encode())
        p.poll(0)
        i += 1
    p.flush(30)
    return count


def redis_client(a):
    return redis.Redis(host="127.0.0.1", port=a.redis_port, db=a.db,
                       password=pathlib.Path(a.password_file).read_text().strip())


def wait_ticks(r, want, timeout=120):
    """Until features:{symbol}:latest counts `want[symbol]` ticks for every symbol."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = {}
        for s in SYMBOLS:
            raw = r.get(f"features:{s}:latest")
            got[s] = json.loads(raw)["features"]["ticks"] if raw else 0
        if all(got[s] >= want[s] for s in SYMBOLS):
            return got
        time.sleep(0.2)
    raise SystemExit(f"the Redis view did not reach {want} ticks within {timeout} s: {got}")


# ---- latency -----------------------------------------------------------------------------

def client_cpu(run):
    """run() -> dict, with the CPU its child processes used (cores busy over the run)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    x = run()
    r1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {**x, "client_cores": round(cpu / wall, 2)}


LOAD_CALLS = {"himari.v1.FeatureService.GetLatest": "get-latest",
              "himari.v1.ControlService.GetStatus": "get-status"}


def load(a, target, call, data, clients, seconds, proto="features"):
    """One closed-loop run of a compiled load generator: bench/grpc-load (C, the default)
    or ghz (--client ghz)."""
    if a.client == "ghz":
        return client_cpu(lambda: _ghz(target, call, data, clients, seconds, proto))
    return client_cpu(lambda: _grpc_load(target, call, data, clients, seconds))


def _grpc_load(target, call, data, clients, seconds):
    # The generator is this checkout's (HIMARI_BUILD_DIR picks the servers under test).
    args = [str(ROOT / "build/bin/grpc-load"), "--target", target, "--call", LOAD_CALLS[call],
            "--clients", str(clients), "--seconds", str(seconds)]
    for k in ("symbol", "exchange"):
        if k in data:
            args += [f"--{k}", data[k]]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise SystemExit(f"grpc-load {call} on {target} failed: {out.stderr} {out.stdout}")
    r = json.loads(out.stdout)
    return {k: r[k] for k in ("p50_ms", "p99_ms", "p999_ms", "rps", "calls")}


def _ghz(target, call, data, clients, seconds, proto):
    exe = os.environ.get("GHZ", str(ROOT / ".cache/go/bin/ghz"))
    out = subprocess.run([exe, "--insecure", "--proto", str(ROOT / f"proto/himari/v1/{proto}.proto"),
                          "--import-paths", str(ROOT / "proto"), "--call", call, "-d",
                          json.dumps(data), "-c", str(clients), "--connections", str(clients),
                          "-z", f"{seconds}s", "--format", "json", target],
                         capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0 and not out.stdout:
        raise SystemExit(f"ghz failed: {out.stderr}")
    r = json.loads(out.stdout)
    d = {x["percentage"]: x["latency"] / 1e6 for x in r.get("latencyDistribution") or []}
    codes = dict(r.get("statusCodeDistribution") or {})
    ok = codes.pop("OK", 0)
    # At the end of -z, ghz closes its connections under the calls still in flight: up to
    # one Canceled or Unavailable per connection is its own doing; anything else is ours.
    theirs = {k: v for k, v in codes.items() if k in ("Canceled", "Unavailable")}
    if ok == 0 or sum(theirs.values()) > clients or len(theirs) != len(codes):
        raise SystemExit(f"ghz {call} on {target}: {r.get('statusCodeDistribution')} "
                         f"{r.get('errorDistribution')}")
    return {"p50_ms": round(d[50], 3), "p99_ms": round(d[99], 3), "rps": round(r["rps"]),
            "calls": ok}


def redis_get(a, key, clients, seconds):
    return client_cpu(lambda: _redis_get(a, key, clients, seconds))


def _redis_get(a, key, clients, seconds):
    n = int(seconds * (25000 if clients == 1 else 60000))
    out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(a.redis_port), "-a",
                          pathlib.Path(a.password_file).read_text().strip(), "--dbnum",
                          str(a.db), "-c", str(clients), "-n", str(n), "--csv", "GET", key],
                         capture_output=True, text=True, timeout=seconds * 10 + 60)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    if out.returncode != 0 or len(lines) < 2:
        raise SystemExit(f"redis-benchmark failed: {out.stdout} {out.stderr}")
    head = [h.strip('"') for h in lines[0].split(",")]
    row = dict(zip(head, (v.strip('"') for v in lines[-1].split(","))))
    return {"p50_ms": float(row["p50_latency_ms"]), "p99_ms": float(row["p99_latency_ms"]),
            "rps": round(float(row["rps"]))}


def latency(a):
    if a.client == "ghz" and not shutil.which(os.environ.get("GHZ", str(ROOT / ".cache/go/bin/ghz"))):
        raise SystemExit("no ghz: run bench/features-bench.sh --client ghz (it installs it) or set GHZ")
    r = redis_client(a)
    r.flushdb()
    pipe = Pipeline(a.bootstrap, a.redis_port, a.password_file, a.db)
    peer_port = free_port()
    peer = subprocess.Popen([sys.executable, str(ROOT / "bench/features_peer_server.py"),
                             str(peer_port), "--redis-port", str(a.redis_port),
                             "--password-file", str(a.password_file), "--db", str(a.db)],
                            stdout=subprocess.PIPE, text=True)
    stop = mp.Event()
    feeder = None
    try:
        if "listening" not in peer.stdout.readline():
            raise SystemExit("the peer server did not start")
        # Five minutes of event time cannot be had in a bench; 10 s of trades on every
        # market is enough for every window's code path (the cost is the same).
        wait_ticks(r, feed(a.bootstrap, pipe.t["raw"], 3000, 10))
        feeder = mp.Process(target=feed, args=(a.bootstrap, pipe.t["raw"], a.feed_rate, None,
                                               None, stop))
        if a.feed_rate > 0:
            feeder.start()
        ours, theirs = f"127.0.0.1:{pipe.grpc_port}", f"127.0.0.1:{peer_port}"
        key = "features:BTC/USDT:latest"
        # The server's own CPU per call: its CPU over the run less what the feed alone
        # costs it (measured first, over 3 s), over the calls answered.
        c0 = cpu_seconds(pipe.fe.pid)
        time.sleep(3)
        feed_cpu_per_s = (cpu_seconds(pipe.fe.pid) - c0) / 3

        def on_ours(call, data, proto="features"):
            def run(c):
                t0, c0 = time.monotonic(), cpu_seconds(pipe.fe.pid)
                x = load(a, ours, call, data, c, a.seconds, proto)
                cpu = cpu_seconds(pipe.fe.pid) - c0 - feed_cpu_per_s * (time.monotonic() - t0)
                return {**x, "server_cpu_us_per_call": round(max(cpu, 0) / x["calls"] * 1e6, 1)}
            return run

        configs = [
            ("ours GetLatest (symbol, 5 exchanges)", on_ours(
                "himari.v1.FeatureService.GetLatest", {"symbol": "BTC/USDT"})),
            ("ours GetLatest (one exchange)", on_ours(
                "himari.v1.FeatureService.GetLatest", {"symbol": "BTC/USDT", "exchange": "binance"})),
            ("ours GetStatus (the floor of a call)", on_ours(
                "himari.v1.ControlService.GetStatus", {}, "control")),
            ("python grpcio+redis-py GetLatest (symbol)", lambda c: load(
                a, theirs, "himari.v1.FeatureService.GetLatest", {"symbol": "BTC/USDT"}, c,
                a.seconds)),
            ("redis-benchmark GET " + key, lambda c: redis_get(a, key, c, a.seconds)),
        ]
        rows = []
        print(f"{'configuration':<44}{'clients':>8}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>9}"
              f"{'server us/call':>16}{'client cores':>14}", file=sys.stderr)
        for rnd in range(1, a.rounds + 1):
            for clients in (1, 16):
                for name, run in configs:
                    x = run(clients)
                    rows.append({"bench": "features_get_latest", "config": name,
                                 "clients": clients, "round": rnd, "feed_rate": a.feed_rate, **x})
                    print(f"{name:<44}{clients:>8}{x['p50_ms']:>9}{x['p99_ms']:>9}{x['rps']:>9}"
                          f"{x.get('server_cpu_us_per_call', ''):>16}{x['client_cores']:>14}",
                          file=sys.stderr)
        for row in rows:
            print(json.dumps(row))
    finally:
        stop.set()
        if feeder and feeder.pid:
            feeder.join(30)
        peer.send_signal(signal.SIGTERM)
        peer.wait(30)
        pipe.close()


# ---- freshness ---------------------------------------------------------------------------

def _visible(send, seen, ticks, now_ns, since_ns, lat):
    """Ticks seen+1..ticks of a symbol became visible at now_ns: their latencies (us) go
    to the list lat (one small array per message; the histogram is built at the end)."""
    if ticks <= seen:
        return seen
    s = np.frombuffer(send.get_obj(), dtype=np.int64)[seen:ticks]
    s = s[s >= since_ns]
    if len(s):
        lat.append((now_ns - s) // 1000)
    return ticks


def _histogram(lat):
    if not lat:
        return np.zeros(HIST_US, dtype=np.int64)
    return np.bincount(np.minimum(np.concatenate(lat), HIST_US - 1), minlength=HIST_US)


def _redis_watcher(a, send, since_ns, stop_at, out_q):
    r = redis_client(a)
    ps = r.pubsub(ignore_subscribe_messages=True)
    keys = {f"__keyspace@{a.db}__:features:{s}:latest": s for s in SYMBOLS}
    ps.subscribe(*keys)
    hist = []
    seen = {s: 0 for s in SYMBOLS}
    updates = 0
    while time.time() < stop_at:
        m = ps.get_message(timeout=0.5)
        if not m or m["data"] != b"set":
            continue
        sym = keys[m["channel"].decode()]
        raw = r.get(f"features:{sym}:latest")
        now = time.time_ns()
        if raw is None:
            continue
        i = raw.find(b'"ticks":') + 8  # the first: the symbol's block, across exchanges
        ticks = int(raw[i:raw.find(b"}", i)])
        seen[sym] = _visible(send[sym], seen[sym], ticks, now, since_ns, hist)
        updates += 1
        if all(seen[s] >= a.expect[s] for s in SYMBOLS):
            break
    out_q.put(("redis", _histogram(hist), updates, seen))


def _quality_watcher(a, topic, since_ns, stop_at, out_q):
    """The validator's part: each quality record visible (read_committed) downstream."""
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"fbench-q-{uuid.uuid4()}",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    c.subscribe([topic])
    lat, n, want = [], 0, sum(a.expect.values())
    while n < want and time.time() < stop_at:
        # A short wait: consume() returns when it has num_messages or at the timeout.
        msgs = c.consume(500, 0.002)
        now = time.time_ns()
        sent = []
        for m in msgs:
            if not m.error():
                v = m.value()
                i = v.find(b'"sent_ns":') + 10  # no JSON parse: this consumer must keep up
                sent.append(int(v[i:v.find(b"}", i)]))
        n += len(sent)
        sent = np.array(sent, dtype=np.int64)
        sent = sent[sent >= since_ns]
        if len(sent):
            lat.append((now - sent) // 1000)
    c.close()
    out_q.put(("quality", _histogram(lat), n, None))


def _stream_subscribers(a, n, send, since_ns, stop_at, out_q):
    import grpc
    from himari_grpc import modules
    pb = modules().features_pb2
    hist = []
    totals = {"messages": 0, "done": 0}

    async def one(ch):
        stub = modules().features_pb2_grpc.FeatureServiceStub(ch)
        seen = {s: 0 for s in SYMBOLS}
        call = stub.StreamFeatures(pb.StreamFeaturesRequest(symbols=SYMBOLS),
                                   timeout=max(1.0, stop_at - time.time()))
        try:
            async for msg in call:
                now = time.time_ns()
                sym = msg.features.symbol
                seen[sym] = _visible(send[sym], seen[sym], msg.features.ticks, now, since_ns, hist)
                totals["messages"] += 1
                if all(seen[s] >= a.expect[s] for s in SYMBOLS):
                    break
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        finally:
            call.cancel()
        totals["done"] += all(seen[s] >= a.expect[s] for s in SYMBOLS)

    async def main():
        target = f"127.0.0.1:{a.grpc_port}"
        # One channel per subscriber, as separate strategies would have.
        chans = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                 for _ in range(n)]
        await asyncio.gather(*(one(c) for c in chans))
        for c in chans:
            await c.close()

    asyncio.run(main())
    out_q.put(("stream", _histogram(hist), totals["messages"], totals["done"]))


def quantiles(hist):
    total = int(hist.sum())
    if total == 0:
        return {"n": 0}
    c = np.cumsum(hist)
    q = {k: round(float(np.searchsorted(c, total * p)) / 1000, 3)
         for k, p in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999))}
    return {"n": total, **q, "max_ms": round(float(np.nonzero(hist)[0][-1]) / 1000, 3)}


def freshness(a):
    r = redis_client(a)
    r.flushdb()
    old_notify = r.config_get("notify-keyspace-events")["notify-keyspace-events"]
    r.config_set("notify-keyspace-events", "K$")
    pipe = Pipeline(a.bootstrap, a.redis_port, a.password_file, a.db)
    total = a.rate * (a.seconds + a.warmup)
    # feed() sends symbol i at positions i, i + 3, ...: its trades, and so its ticks.
    a.expect = {s: (total - i + 2) // 3 for i, s in enumerate(SYMBOLS)}
    send = {s: mp.Array("q", a.expect[s]) for s in SYMBOLS}
    a.grpc_port = pipe.grpc_port
    since_ns = time.time_ns() + int((3 + a.warmup) * 1e9)
    stop_at = time.time() + 3 + a.seconds + a.warmup + 60
    q = mp.Queue()
    procs = [mp.Process(target=_redis_watcher, args=(a, send, since_ns, stop_at, q)),
             mp.Process(target=_quality_watcher,
                        args=(a, pipe.t["quality"], since_ns, stop_at, q))]
    procs += [mp.Process(target=_stream_subscribers,
                         args=(a, a.streams // a.procs + (i < a.streams % a.procs), send,
                               since_ns, stop_at, q)) for i in range(a.procs)]
    try:
        for p in procs:
            p.start()
        time.sleep(3)  # subscribers connected
        cpu0 = cpu_seconds(pipe.fe.pid)
        count = feed(a.bootstrap, pipe.t["raw"], a.rate, a.seconds + a.warmup, send)
        assert count == a.expect, (count, a.expect)
        results = [q.get(timeout=stop_at - time.time() + 30) for _ in procs]
        cpu = cpu_seconds(pipe.fe.pid) - cpu0
        for p in procs:
            p.join(30)
    finally:
        r.config_set("notify-keyspace-events", old_notify)
        pipe.close()
    redis_seen = next(x[3] for x in results if x[0] == "redis")
    if redis_seen != a.expect:
        print(f"features_bench: the Redis view counted {redis_seen} ticks of {a.expect} sent: "
              "not every trade was applied (see the feature-engine's records_total)",
              file=sys.stderr)
    quality_hist = sum(h for kind, h, *_ in results if kind == "quality")
    redis_hist = sum(h for kind, h, *_ in results if kind == "redis")
    stream_hist = sum(h for kind, h, *_ in results if kind == "stream")
    stream_msgs = sum(m for kind, _, m, _ in results if kind == "stream")
    complete = sum(d for kind, _, _, d in results if kind == "stream")
    trades = total
    out = {"bench": "features_freshness", "rate": a.rate, "seconds": a.seconds,
           "streams": a.streams, "procs": a.procs, "trades": trades,
           "quality_scores": quantiles(quality_hist),
           "redis": {**quantiles(redis_hist), "updates": next(x[2] for x in results if x[0] == "redis")},
           "stream": {**quantiles(stream_hist), "messages": stream_msgs,
                      "subscribers_that_saw_every_tick": complete},
           "fe_cpu_ms_per_1000_trades": round(1000 * cpu / trades * 1000, 2)}
    print(f"{'view':<16}{'trades':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'max ms':>9}",
          file=sys.stderr)
    for k in ("quality_scores", "redis", "stream"):
        v = out[k]
        print(f"{k:<16}{v.get('n', 0):>9}{v.get('p50_ms', ''):>9}{v.get('p99_ms', ''):>9}"
              f"{v.get('p999_ms', ''):>10}{v.get('max_ms', ''):>9}", file=sys.stderr)
    print(f"stream messages {stream_msgs} to {a.streams} subscribers; feature-engine CPU "
          f"{out['fe_cpu_ms_per_1000_trades']} ms per 1,000 trades", file=sys.stderr)
    print(json.dumps(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["latency", "freshness"])
    ap.add_argument("--bootstrap", default=os.environ.get("HIMARI_KAFKA_BOOTSTRAP",
                                                          "127.0.0.1:29092"))
    ap.add_argument("--redis-port", type=int, default=int(os.environ.get("HIMARI_REDIS_PORT",
                                                                         "29379")))
    ap.add_argument("--password-file", default=str(STACK / "secrets/redis_password"))
    ap.add_argument("--db", type=int, default=7, help="the Redis db the bench uses (flushed)")
    ap.add_argument("--seconds", type=int, default=None,
                    help="per configuration (latency, default 8) or of load (freshness, 20)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--client", choices=["c", "ghz"], default="c",
                    help="latency: the load generator, bench/grpc-load (C) or ghz (Go)")
    ap.add_argument("--feed-rate", type=int, default=1000, help="latency: trades/s meanwhile")
    ap.add_argument("--rate", type=int, default=10_000, help="freshness: trades/s")
    ap.add_argument("--warmup", type=int, default=2, help="freshness: seconds not measured")
    ap.add_argument("--streams", type=int, default=1, help="freshness: StreamFeatures subscribers")
    ap.add_argument("--procs", type=int, default=1, help="freshness: processes they run in")
    a = ap.parse_args()
    a.seconds = a.seconds or (8 if a.mode == "latency" else 20)
    a.procs = max(1, min(a.procs, a.streams))
    {"latency": latency, "freshness": freshness}[a.mode](a)


if __name__ == "__main__":
    main()
