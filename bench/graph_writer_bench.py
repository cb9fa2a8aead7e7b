#!/usr/bin/env python3
"""The graph-writer (issue 14): events/s merged into Neo4j against a plain Python writer
with the official neo4j driver doing the same MERGEs, the delay from causal_events to a
queryable node, and the query plans of the statements.

  throughput  N causal events (synthesised in the shapes the feature-engine and the
              validator emit: whale transfers, price movements, liquidation cascades, feed
              silences and resumptions; see `synth`) pre-loaded on a fresh 3-partition
              topic (causal_events has 3), keyed by symbol or asset. Then, in turn, on the
              same events shifted in time (so every pass has ids of its own and the same
              graph shape: the lags between events are unchanged), each pass starting from
              the same database state (the previous pass's nodes deleted by id):
                graph_writer  build/bin/graph-writer on its own topic (HTTP transactional
                              API, UNWIND batches of batch_max_events), timed from its first
                              record taken (its input_age histogram's count) to its last
                              event committed (himari_graph_events_total{written}), polled
                              every 50 ms
                peer          a plain Python writer: a confluent-kafka consumer, json.loads,
                              the rows events.c builds (the same fields and scaling), batches
                              of the same size, the exact statements the graph-writer runs
                              (taken from `graph-writer --replay`'s output, not copied), one
                              official-driver (Bolt) execute_write per batch with a statement
                              per kind in the graph-writer's order, offsets committed after;
                              timed from its first record received to its last commit
              Reported: events/s, per-batch seconds (the first five, all, the median), the
              PRECEDED links made, CPU seconds of the client and of Neo4j's JVM (when it
              runs here), and the ratio graph_writer / peer.
  latency     events produced to a fresh topic at --rate/s for --seconds (event times:
              now) with the graph-writer running at each of --intervals
              (graph_writer.batch_interval_ms); a poller process asks Neo4j for the ids
              produced and not yet seen every --poll-ms (one index seek per id, by label),
              and an event's delay is the first poll that found its node minus its produce
              call: p50 / p99 / max, the first --warmup-s seconds left out. Also the
              writer's commit_delay and transaction histograms.
  profile     PROFILE (in a transaction rolled back) of each kind's statement with one batch
              of --profile-rows fresh rows, on a graph holding one throughput pass of
              --records events: every operator with its rows and db hits, the scans
              flagged (NodeByLabelScan, AllNodesScan), the total db hits and the time.
  all         throughput, profile and latency in one run (the defaults: 2-4 minutes on the
              shared 2-core machine, depending on the build).

Every mode starts with a warm-up (--warmup events through `graph-writer --replay --apply`,
deleted: Neo4j's JIT warm for every pass) and a history (--history events of their own,
another seed, in a time range no pass links to, kept until the end): the graph a running
writer meets, whose pairs and assets already have events. Before each pass Neo4j's query
caches are emptied and the statements planned once (one row, rolled back) on the graph as
it is: a plan is otherwise kept from whenever it was made (an empty graph plans the link
MATCHes differently from a populated one), and no measured batch pays the planning.

Needs Kafka and Neo4j (scripts/stack.sh start kafka neo4j). The addresses come from the
same environment as the stack (scripts/env.sh: HIMARI_PORT_BASE, HIMARI_RUN_DIR; default the
test profile's) or from --bootstrap / --bolt / --http / --password-file. The bench writes
only its own event and wallet nodes (ids and addresses of its own, times 30-60 days ago)
and deletes them at the end (--keep: not); pairs, assets and exchanges stay.
Prints tables on stderr and one JSON line per measurement on stdout.

  HIMARI_PROFILE=test HIMARI_PORT_BASE=25000 HIMARI_RUN_DIR=/tmp/gwb-run \\
      scripts/stack.sh start kafka neo4j
  export HIMARI_PORT_BASE=25000 HIMARI_RUN_DIR=/tmp/gwb-run
  .cache/venv/bin/python bench/graph_writer_bench.py throughput [--records 20000] [--rounds 1]
  .cache/venv/bin/python bench/graph_writer_bench.py latency [--rate 100] [--seconds 30]
      [--intervals 500,100]
  .cache/venv/bin/python bench/graph_writer_bench.py profile [--records 20000]
  .cache/venv/bin/python bench/graph_writer_bench.py all
  HIMARI_PROFILE=test HIMARI_PORT_BASE=25000 HIMARI_RUN_DIR=/tmp/gwb-run scripts/stack.sh stop

HIMARI_BUILD_DIR picks the build (default build/).
"""
import argparse
import hashlib
import json
import multiprocessing as mp
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import requests
from confluent_kafka import Consumer, Producer
from neo4j import GraphDatabase

from benchlib import (cpu_seconds, create_topic, delete_topic, diff, free_port,
                      histogram_quantiles, metric, metric_lines, say)

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(os.environ.get("HIMARI_BUILD_DIR", ROOT / "build")) / "bin"
PORT_BASE = int(os.environ.get("HIMARI_PORT_BASE", "29000"))
RUN_DIR = pathlib.Path(os.environ.get("HIMARI_RUN_DIR", ROOT / "run" / "test"))
PARTITIONS = 3  # causal_events' (common/src/topics.c)
DAY_MS = 86_400_000
LABELS = {"whale_transfer": "WhaleTransfer", "price_movement": "PriceMovement",
          "liquidation_cascade": "CascadeEvent", "feed_silence": "FeedEvent",
          "feed_resumed": "FeedEvent"}
# events.c's statement order within a transaction (gw_kind).
KIND_ORDER = ("whale_transfer", "price_movement", "liquidation_cascade", "feed_event")


def neo4j_pid(args):
    """The stack's Neo4j JVM, when it runs on this machine (its pid file)."""
    try:
        pid = int((RUN_DIR / "neo4j" / "neo4j.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if cpu_seconds(pid) is not None else None


def pct(values, q):
    return round(float(np.percentile(values, q)), 1) if len(values) else None


# ---- the events ------------------------------------------------------------------------------

# The simulator's universe (tools/sim: 3 symbols, 5 exchanges, its rate shares and prices)
# and the feature-engine's whale thresholds (BTC 100, ETH 1000, USDT / USDC 10 M).
SYMBOLS = (("BTC/USDT", 0.45, 37000.0), ("ETH/USDT", 0.35, 2000.0), ("SOL/USDT", 0.20, 60.0))
EXCHANGES = ("binance", "kraken", "bybit", "coinbase", "deribit")
WHALE_ASSETS = (("BTC", 0.40, 100, 2000), ("ETH", 0.35, 1000, 20000),
                ("USDT", 0.15, 1e7, 2e8), ("USDC", 0.10, 1e7, 2e8))
# The mix by count (feed events: silences and resumptions, half each).
MIX = (("whale_transfer", 0.30), ("price_movement", 0.35), ("liquidation_cascade", 0.20),
       ("feed", 0.15))
WALLETS = 400  # whales reuse addresses: TRANSFERRED fans out of a few hundred wallets


def pick(rng, table, weight_at=1):
    x, acc = rng.random(), 0.0
    for row in table:
        acc += row[weight_at]
        if x < acc:
            return row
    return table[-1]


def synth(n, per_hour, seed=14):
    """N events as templates: (kind, fields with times in ms relative to 0), in emission
    order, one every 3600/per_hour s on average (Poisson). A cascade is emitted a minute
    after its last liquidation (the feature-engine closes an episode after 60 s quiet),
    so its timestamp is earlier than its neighbours'; a feed silence's event time is the
    watermark that exposed it."""
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        t += rng.expovariate(per_hour / 3_600_000.0)
        now = int(t)
        kind = pick(rng, MIX)[0]
        if kind == "whale_transfer":
            asset, _, lo, hi = pick(rng, WHALE_ASSETS)
            ex = rng.choice(EXCHANGES) if rng.random() < 0.4 else None
            out.append((kind, {"asset": asset, "timestamp": now,
                               "amount": round(rng.uniform(lo, hi), 6),
                               "wallet": rng.randrange(WALLETS), "exchange": ex}))
            continue
        sym, _, price = pick(rng, SYMBOLS)
        if kind == "price_movement":
            window, thr = (300, 1) if rng.random() < 0.6 else (3600, 2)
            change = rng.choice((-1, 1)) * rng.uniform(thr, 2.5 * thr)
            frm = round(price * (1 + rng.gauss(0, 0.02)), 3)
            out.append((kind, {"symbol": sym, "timestamp": (now // 1000 + 1) * 1000,
                               "window_s": window, "change_percent": change,
                               "price_from": frm, "price_to": round(frm * (1 + change / 100), 3),
                               "threshold_percent": thr}))
        elif kind == "liquidation_cascade":
            last = now - 60_000
            first = last - rng.randrange(5_000, 300_000)
            count = rng.randrange(5, 60)
            buys = rng.randrange(0, count + 1)
            value = round(count * rng.uniform(20_000, 600_000), 2)
            sev = ("critical" if value >= 20e6 else "high" if value >= 5e6 else
                   "medium" if value >= 1e6 else "low")
            out.append((kind, {"symbol": sym, "timestamp": first, "end_timestamp": last,
                               "count": count, "buy_count": buys, "sell_count": count - buys,
                               "total_liquidation_value": value, "severity": sev}))
        else:
            ex = rng.choice(EXCHANGES)
            gap = rng.randrange(5_000, 120_000)
            if rng.random() < 0.5:
                out.append(("feed_silence", {"exchange": ex, "symbol": sym,
                                             "last_timestamp": now - gap, "watermark": now,
                                             "silent_ms": gap}))
            else:
                out.append(("feed_resumed", {"exchange": ex, "symbol": sym,
                                             "last_timestamp": now - gap, "timestamp": now,
                                             "gap_ms": gap}))
    return out


def hexid(salt, i, nbytes):
    return "0x" + hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()[:2 * nbytes]


def materialize(templates, offset_ms, salt):
    """The templates as causal_events records, every time shifted by offset_ms (a whole
    number of seconds) and every hash and wallet salted: [(key, json bytes, id, label)]."""
    assert offset_ms % 1000 == 0
    out = []
    for i, (kind, f) in enumerate(templates):
        if kind == "whale_transfer":
            tx = hexid(salt, i, 32)
            ev = {"type": kind, "asset": f["asset"], "timestamp": f["timestamp"] + offset_ms,
                  "amount": f["amount"], "from": hexid(salt + "w", f["wallet"], 20),
                  "to": hexid(salt + "to", i, 20), "exchange": f["exchange"], "symbol": None,
                  "tx_hash": tx, "event_id": f"whale_transfer:{tx}"}
            key = f["asset"]
        elif kind == "price_movement":
            ts = f["timestamp"] + offset_ms
            ev = {"type": kind, **f, "timestamp": ts,
                  "event_id": f"price_movement:{f['symbol']}:{f['window_s']}:{ts}"}
            key = f["symbol"]
        elif kind == "liquidation_cascade":
            a, b = f["timestamp"] + offset_ms, f["end_timestamp"] + offset_ms
            ev = {"type": kind, **f, "timestamp": a, "end_timestamp": b,
                  "event_id": f"liquidation_cascade:{f['symbol']}:{a}:{b}"}
            key = f["symbol"]
        else:
            last = f["last_timestamp"] + offset_ms
            ev = {"type": kind, **f, "last_timestamp": last}
            if kind == "feed_silence":
                ev["watermark"] = f["watermark"] + offset_ms
                ev["event_id"] = f"feed_silence:{f['exchange']}:{f['symbol']}:{last}"
            else:
                ev["timestamp"] = f["timestamp"] + offset_ms
                ev["event_id"] = f"feed_resumed:{f['exchange']}:{f['symbol']}:{ev['timestamp']}"
            key = f["symbol"]
        out.append((key.encode(), json.dumps(ev, separators=(",", ":")).encode(),
                    ev["event_id"], LABELS[kind]))
    return out


def span_ms(templates):
    """How far apart two uses of the templates must be so that no link joins them."""
    return (max(f.get("timestamp", 0) for _, f in templates) // 1000) * 1000 + 2 * DAY_MS


def mix_of(events):
    c = {}
    for _, _, _, label in events:
        c[label] = c.get(label, 0) + 1
    return c


# ---- what events.c builds, in Python (the peer) ----------------------------------------------

def pair_assets(symbol):
    parts = symbol.split("/") if symbol else []
    if len(parts) == 2 and parts[0] and parts[1]:
        return parts[0], parts[1]
    return None, None


def event_row(d):
    """gw_batch_add's parameter row of one event (services/graph-writer/events.c):
    (statement kind, row)."""
    t = d["type"]
    if t == "whale_transfer":
        return "whale_transfer", {
            "id": d["event_id"], "ts": d["timestamp"], "asset": d["asset"],
            "amount": float(d["amount"]), "from": d.get("from"), "to": d.get("to"),
            "exchange": d.get("exchange"), "tx_hash": d.get("tx_hash")}
    if t == "price_movement":
        base, quote = pair_assets(d["symbol"])
        return "price_movement", {
            "id": d["event_id"], "ts": d["timestamp"], "symbol": d["symbol"], "base": base,
            "quote": quote, "window_s": d["window_s"], "change": d["change_percent"] * 0.01,
            "change_points": float(d["change_percent"]), "price_from": d.get("price_from"),
            "price_to": d.get("price_to"), "threshold": d.get("threshold_percent")}
    if t == "liquidation_cascade":
        base, quote = pair_assets(d["symbol"])
        return "liquidation_cascade", {
            "id": d["event_id"], "ts": d["timestamp"], "symbol": d["symbol"], "base": base,
            "quote": quote, "end_ts": d["end_timestamp"], "count": d["count"],
            "buy_count": d.get("buy_count"), "sell_count": d.get("sell_count"),
            "value": float(d["total_liquidation_value"]), "severity": d["severity"]}
    if t in ("feed_silence", "feed_resumed"):
        resumed = t == "feed_resumed"
        base, quote = pair_assets(d["symbol"])
        return "feed_event", {
            "id": d["event_id"], "ts": d["timestamp" if resumed else "watermark"], "type": t,
            "last_ts": d["last_timestamp"], "exchange": d["exchange"], "symbol": d["symbol"],
            "base": base, "quote": quote, "gap_ms": d.get("gap_ms" if resumed else "silent_ms")}
    raise ValueError(f"type {t} is not an event the graph holds")


def writer_statements():
    """The statements the graph-writer runs, per kind, and its window parameters: from
    `graph-writer --replay` over one event of each kind (so the peer runs the same text)."""
    sample = materialize(synth(60, 600, seed=1), 0, "probe")
    seen, lines = set(), []
    for _, value, _, label in sample:
        if label not in seen:
            seen.add(label)
            lines.append(value)
    with tempfile.TemporaryDirectory(prefix="gwb-replay-") as d:
        src = pathlib.Path(d) / "ev.jsonl"
        src.write_bytes(b"\n".join(lines) + b"\n")
        out = subprocess.run([str(BIN / "graph-writer"), "--replay", str(src)], check=True,
                             capture_output=True, timeout=60).stdout
    body = json.loads(out.splitlines()[0])
    stmts, windows = {}, None
    for s in body["statements"]:
        rows = s["parameters"]["rows"]
        kind = ("whale_transfer" if "tx_hash" in rows[0] else
                "price_movement" if "window_s" in rows[0] else
                "liquidation_cascade" if "severity" in rows[0] else "feed_event")
        stmts[kind] = s["statement"]
        windows = {k: v for k, v in s["parameters"].items() if k != "rows"}
    assert set(stmts) == set(KIND_ORDER), stmts.keys()
    return stmts, windows


# ---- Kafka ------------------------------------------------------------------------------------

def produce_all(bootstrap, topic, events):
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "linger.ms": 20, "compression.type": "snappy"})
    failed = []
    for key, value, _, _ in events:
        while True:
            try:
                p.produce(topic, value, key=key,
                          on_delivery=lambda err, _m: err and failed.append(err))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    if p.flush(60) != 0 or failed:
        raise SystemExit(f"producing to {topic} failed: {failed[:3]}")


# ---- Neo4j ------------------------------------------------------------------------------------

def driver(args):
    # Notifications off: Neo4j 5.26 warns on every run that CALL { WITH x ... } (the
    # graph-writer's form) is deprecated for CALL (x) { ... }.
    return GraphDatabase.driver(args.bolt, auth=("neo4j", pathlib.Path(
        args.password_file).read_text().strip()), notifications_min_severity="OFF")


def by_label(events):
    out = {}
    for _, _, eid, label in events:
        out.setdefault(label, []).append(eid)
    return out


def count_nodes(drv, events):
    n = 0
    with drv.session() as s:
        for label, ids in by_label(events).items():
            n += s.run(f"UNWIND $ids AS id MATCH (e:{label} {{id: id}}) RETURN count(e) AS n",
                       ids=ids).single()["n"]
    return n


def count_links(drv, events):
    """PRECEDED relationships out of these events (each counted once)."""
    n = 0
    with drv.session() as s:
        for label, ids in by_label(events).items():
            n += s.run(f"UNWIND $ids AS id MATCH (e:{label} {{id: id}})-[r:PRECEDED]->() "
                       "RETURN count(r) AS n", ids=ids).single()["n"]
    return n


def wallets_of(events):
    out = set()
    for _, value, _, label in events:
        if label == "WhaleTransfer":
            out.add(json.loads(value)["from"])
    return sorted(out)


def delete_events(drv, events):
    """DETACH DELETE these events' nodes and their wallets, by id (index seeks), in
    transactions of 2,000: the database state from before they were written."""
    with drv.session() as s:
        for label, ids in by_label(events).items():
            for i in range(0, len(ids), 2000):
                s.run(f"UNWIND $ids AS id MATCH (e:{label} {{id: id}}) DETACH DELETE e",
                      ids=ids[i:i + 2000]).consume()
        w = wallets_of(events)
        for i in range(0, len(w), 2000):
            s.run("UNWIND $a AS a MATCH (w:Wallet {address: a}) DETACH DELETE w",
                  a=w[i:i + 2000]).consume()


def graph_size(drv):
    with drv.session() as s:
        return {"nodes": s.run("MATCH (n) RETURN count(n) AS n").single()["n"],
                "relationships": s.run("MATCH ()-[r]->() RETURN count(r) AS n").single()["n"]}


# ---- the graph-writer -------------------------------------------------------------------------

class GraphWriter:
    """build/bin/graph-writer on a topic of its own, in a directory of its own."""

    def __init__(self, args, topic, **extra):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="gwb-writer-")
        env = {**os.environ,
               "HIMARI_KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
               "HIMARI_GRAPH_WRITER_INPUT_TOPIC": topic,
               "HIMARI_GRAPH_WRITER_GROUP_ID": f"gwb-{uuid.uuid4().hex[:8]}",
               "HIMARI_NEO4J_URL": args.http,
               "HIMARI_NEO4J_PASSWORD_FILE": str(args.password_file),
               "HIMARI_SERVICE_INSTANCE_ID": f"gwb-{uuid.uuid4().hex[:6]}",
               "HIMARI_ADMIN_PORT": str(self.port),
               "HIMARI_GRPC_PORT": str(free_port()),
               "HIMARI_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warn"),
               **{k: str(v) for k, v in extra.items()}}
        self.log = pathlib.Path(self.dir) / "graph-writer.log"
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([str(BIN / "graph-writer")], env=env, cwd=self.dir,
                                     stdout=self.logf, stderr=subprocess.STDOUT)

    def lines(self):
        return metric_lines(self.port)

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"graph-writer exited ({self.proc.returncode}); see {self.log}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/readyz",
                                timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise SystemExit(f"graph-writer not ready after {timeout}s; see {self.log}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def clear_plans(args):
    """Empty Neo4j's query caches and plan the graph-writer's statements again on the
    statistics of the graph as it is (a plan is otherwise kept until the counts diverge
    enough, which a pass may or may not reach): each statement run once with one row in a
    transaction rolled back, so that no measured batch pays the planning either."""
    stmts, windows = args.statements
    probe = {}
    for _, value, _, _ in materialize(synth(60, 600, seed=1), 0, "plan"):
        kind, row = event_row(json.loads(value))
        probe.setdefault(kind, [row])
    with driver(args) as drv, drv.session() as s:
        s.run("CALL db.clearQueryCaches()").consume()
        for kind in KIND_ORDER:
            tx = s.begin_transaction()
            tx.run(stmts[kind], rows=probe[kind], **windows).consume()
            tx.rollback()


def apply_events(args, events, what):
    """Events through `graph-writer --replay --apply` (the schema, then batches of
    --batch), with a request timeout of 300 s (this is set-up, not measured): seconds."""
    say(f"{what}: {len(events):,} events through graph-writer --replay --apply")
    with tempfile.TemporaryDirectory(prefix="gwb-apply-") as d:
        src = pathlib.Path(d) / "ev.jsonl"
        src.write_bytes(b"\n".join(v for _, v, _, _ in events) + b"\n")
        env = {**os.environ, "HIMARI_NEO4J_URL": args.http,
               "HIMARI_NEO4J_PASSWORD_FILE": str(args.password_file),
               "HIMARI_NEO4J_REQUEST_TIMEOUT_MS": "300000",
               "HIMARI_GRAPH_WRITER_BATCH_MAX_EVENTS": str(args.batch),
               "HIMARI_LOG_LEVEL": "warn"}
        t0 = time.monotonic()
        subprocess.run([str(BIN / "graph-writer"), "--replay", str(src), "--apply", "--output",
                        "/dev/null"], check=True, env=env, timeout=900,
                       stderr=subprocess.DEVNULL)
        secs = time.monotonic() - t0
    say(f"{what} took {secs:.1f} s")
    return secs


def warm_up(args, templates):
    """--warmup events applied and deleted: Neo4j's JIT warm for every pass."""
    if args.warmup <= 0:
        return
    events = materialize(templates[:args.warmup], args.base_ms - 10 * DAY_MS, args.salt + "warm")
    apply_events(args, events, "warm-up")
    with driver(args) as drv:
        delete_events(drv, events)


def write_history(args):
    """--history events of their own (another seed), in a time range of their own before
    every other use (no link reaches them from a pass), kept until the end: the graph a
    running writer meets, whose pairs and assets already have events. The passes' cost
    with the statements as the planner plans them depends on it."""
    if args.history <= 0:
        return None
    tpl = synth(args.history, args.per_hour, seed=15)
    events = materialize(tpl, args.base_ms - 30 * DAY_MS - span_ms(tpl), args.salt + "hist")
    clear_plans(args)
    secs = apply_events(args, events, "history")
    with driver(args) as drv:
        size = graph_size(drv)
    print(json.dumps({"bench": "graph_writer_history", "events": len(events),
                      "seconds": round(secs, 2), "events_per_s": round(len(events) / secs),
                      "graph": size}))
    return events


# ---- throughput -------------------------------------------------------------------------------

def run_graph_writer(args, topic, n, jvm):
    extra = {"HIMARI_GRAPH_WRITER_BATCH_MAX_EVENTS": args.batch}
    gw = GraphWriter(args, topic, **extra)
    t0 = t1 = None
    c0 = j0 = None
    batches = []  # (seconds in Neo4j, events) per batch, from the metrics' deltas
    last = (0.0, 0.0, 0.0)  # written, transactions, transaction seconds
    deadline = time.monotonic() + max(300, n / 50)
    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                raise SystemExit(f"graph-writer: not all {n} events by the deadline; see {gw.log}")
            if gw.proc.poll() is not None:
                raise SystemExit(f"graph-writer exited ({gw.proc.returncode}); see {gw.log}")
            try:
                lines = gw.lines()
            except requests.RequestException:
                time.sleep(0.02)
                continue
            if t0 is None:
                if metric(lines, "himari_graph_input_age_seconds_count") > 0:
                    t0 = now
                    c0, j0 = cpu_seconds(gw.proc.pid), cpu_seconds(jvm)
                else:
                    time.sleep(0.01)
                    continue
            written = metric(lines, "himari_graph_events_total", 'result="written"')
            txns = metric(lines, "himari_graph_transaction_seconds_count")
            txn_s = metric(lines, "himari_graph_transaction_seconds_sum")
            if txns > last[1]:
                k = int(txns - last[1])
                for _ in range(k):  # more than one between polls: their mean
                    batches.append(((txn_s - last[2]) / k, (written - last[0]) / k))
                last = (written, txns, txn_s)
            if written >= n:
                t1 = now
                break
            time.sleep(0.05)
        c1, j1 = cpu_seconds(gw.proc.pid), cpu_seconds(jvm)
        txn_sum = metric(lines, "himari_graph_transaction_seconds_sum")
        failures = metric(lines, "himari_graph_sink_failures_total")
        rejected = metric(lines, "himari_graph_events_total", 'result="rejected_by_neo4j"') + \
            metric(lines, "himari_graph_events_total", 'result="rejected_input"')
    finally:
        gw.stop()
    secs = t1 - t0
    return {"path": "graph_writer", "seconds": round(secs, 3), "events_per_s": round(n / secs),
            "batches": len(batches),
            "batch_s_first": [round(b[0], 3) for b in batches[:5]],
            "batch_s_all": [round(b[0], 3) for b in batches],
            "batch_s_median": round(statistics.median(b[0] for b in batches), 3),
            "batch_events_median": round(statistics.median(b[1] for b in batches)),
            "neo4j_busy_fraction": round(txn_sum / secs, 3),
            "failed_flushes": int(failures), "rejected": int(rejected),
            "client_cpu_s": diff(c0, c1), "neo4j_cpu_s": diff(j0, j1)}


def run_peer(args, topic, n, jvm, stmts, windows):
    """A plain Python writer with the official driver: consume, json.loads, the rows,
    batches of args.batch (or the oldest waiting batch_interval_ms), one execute_write per
    batch (a statement per kind present, in events.c's order), offsets committed after."""
    c = Consumer({"bootstrap.servers": args.bootstrap,
                  "group.id": f"gwb-peer-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.subscribe([topic])
    drv = driver(args)

    def write(tx, rows_by_kind):
        for k in KIND_ORDER:
            if rows_by_kind.get(k):
                tx.run(stmts[k], rows=rows_by_kind[k], **windows).consume()

    t0 = None
    p0 = j0 = None
    got, batches = 0, []
    pending, oldest = {}, None
    in_batch = 0
    deadline = time.monotonic() + max(300, n / 50)
    try:
        while got < n or in_batch:
            if time.monotonic() > deadline:
                raise SystemExit(f"peer: {got} of {n} events before the deadline")
            msgs = c.consume(num_messages=min(500, args.batch), timeout=0.1) if got < n else []
            if msgs and t0 is None:
                t0 = time.monotonic()
                p0, j0 = time.process_time(), cpu_seconds(jvm)
            for m in msgs:
                if m.error():
                    raise SystemExit(f"peer: {m.error()}")
                kind, row = event_row(json.loads(m.value()))
                pending.setdefault(kind, []).append(row)
                in_batch += 1
                got += 1
                if oldest is None:
                    oldest = time.monotonic()
            full = in_batch >= args.batch or (got >= n and in_batch)
            if full or (in_batch and time.monotonic() - oldest >= args.interval_ms / 1000):
                b0 = time.monotonic()
                with drv.session() as s:
                    s.execute_write(write, pending)
                batches.append((time.monotonic() - b0, in_batch))
                c.commit(asynchronous=False)
                pending, oldest, in_batch = {}, None, 0
        t1 = time.monotonic()
        p1, j1 = time.process_time(), cpu_seconds(jvm)
    finally:
        c.close()
        drv.close()
    secs = t1 - t0
    in_tx = sum(b[0] for b in batches)
    return {"path": "peer", "seconds": round(secs, 3), "events_per_s": round(n / secs),
            "batches": len(batches),
            "batch_s_first": [round(b[0], 3) for b in batches[:5]],
            "batch_s_all": [round(b[0], 3) for b in batches],
            "batch_s_median": round(statistics.median(b[0] for b in batches), 3),
            "batch_events_median": round(statistics.median(b[1] for b in batches)),
            "neo4j_busy_fraction": round(in_tx / secs, 3),
            "client_cpu_s": round(p1 - p0, 2), "neo4j_cpu_s": diff(j0, j1)}


def one_pass(args, path, templates, offset_ms, salt, jvm, stmts, windows):
    events = materialize(templates, offset_ms, salt)
    n = len(events)
    clear_plans(args)
    topic = create_topic(args.bootstrap, f"gwb-{path}", PARTITIONS)
    try:
        say(f"{path}: producing {n:,} events to {topic}")
        produce_all(args.bootstrap, topic, events)
        say(f"{path}: writing")
        if path == "graph_writer":
            r = run_graph_writer(args, topic, n, jvm)
        else:
            r = run_peer(args, topic, n, jvm, stmts, windows)
    finally:
        delete_topic(args.bootstrap, topic)
    with driver(args) as drv:
        r["nodes"] = count_nodes(drv, events)
        r["preceded_links"] = count_links(drv, events)
        r["graph"] = graph_size(drv)
    if r["nodes"] != n:
        raise SystemExit(f"{path}: {r['nodes']} of {n} event nodes in Neo4j")
    say(f"{path}: {r['events_per_s']:,} events/s ({r['seconds']} s, {r['batches']} batches, "
        f"median {r['batch_s_median']} s, first {r['batch_s_first']}), "
        f"{r['preceded_links']:,} PRECEDED links")
    return r, events


def throughput(args, templates=None, keep_last=False):
    templates = templates or synth(args.records, args.per_hour)
    stmts, windows = writer_statements()
    jvm = neo4j_pid(args)
    say(f"{len(templates):,} events over {(span_ms(templates) - 2 * DAY_MS) / 3.6e6:.0f} "
        f"simulated hours; Neo4j JVM pid {jvm}")
    span = span_ms(templates)
    results, kept = [], None
    paths = ["graph_writer"] + (["peer"] if args.peer else [])
    k = 0
    for rnd in range(args.rounds):
        for path in paths:
            offset = args.base_ms + k * span
            k += 1
            r, events = one_pass(args, path, templates, offset, f"{args.salt}{k}", jvm, stmts,
                                 windows)
            r.update({"bench": "graph_writer_throughput", "round": rnd + 1,
                      "records": len(templates), "batch_max_events": args.batch,
                      "mix": mix_of(events), "per_simulated_hour": args.per_hour})
            results.append(r)
            last = rnd == args.rounds - 1 and path == paths[-1]
            if keep_last and last:
                kept = (events, offset)
            elif not args.keep:
                with driver(args) as drv:
                    delete_events(drv, events)
    print(f"{'round':<6}{'path':<14}{'events/s':>9}{'seconds':>9}{'batches':>8}"
          f"{'batch s p50':>12}{'first batches s':>32}{'client cpu':>11}{'neo4j cpu':>10}",
          file=sys.stderr)
    for r in results:
        print(f"{r['round']:<6}{r['path']:<14}{r['events_per_s']:>9}{r['seconds']:>9}"
              f"{r['batches']:>8}{r['batch_s_median']:>12}{str(r['batch_s_first']):>32}"
              f"{str(r['client_cpu_s']):>11}{str(r['neo4j_cpu_s']):>10}", file=sys.stderr)
    for rnd in range(1, args.rounds + 1):
        ours = [r for r in results if r["round"] == rnd and r["path"] == "graph_writer"]
        peer = [r for r in results if r["round"] == rnd and r["path"] == "peer"]
        if ours and peer:
            ratio = ours[0]["events_per_s"] / peer[0]["events_per_s"]
            print(f"round {rnd}: graph_writer / peer = {ratio:.2f}x", file=sys.stderr)
            ours[0]["ratio_to_peer"] = round(ratio, 2)
    for r in results:
        print(json.dumps(r))
    return kept


# ---- latency ----------------------------------------------------------------------------------

def poller(args, q, out, stop):
    """Ask Neo4j every poll_ms for the produced ids not yet seen (per label, by the
    unique-constraint index); put (id, first seen) into out at the end."""
    drv = driver(args)
    outstanding, seen, gaps = {}, {}, []
    query_parts = {label: f"MATCH (n:{label}) WHERE n.id IN ${label} RETURN n.id AS id"
                   for label in set(LABELS.values())}
    last = time.monotonic()
    with drv.session() as s:
        while True:
            while True:
                try:
                    eid, label = q.get_nowait()
                except Exception:  # noqa: BLE001 - queue.Empty
                    break
                outstanding.setdefault(label, set()).add(eid)
            live = {k: sorted(v) for k, v in outstanding.items() if v}
            if live:
                cypher = " UNION ALL ".join(query_parts[k] for k in live)
                found = [rec["id"] for rec in s.run(cypher, **live)]
                t = time.monotonic()
                for eid in found:
                    seen[eid] = t
                for k in live:
                    outstanding[k].difference_update(found)
            elif stop.is_set():
                break
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            time.sleep(max(0.0, args.poll_ms / 1000 - (time.monotonic() - now)))
    drv.close()
    out.put((seen, gaps))


def latency_one(args, interval, templates):
    clear_plans(args)
    topic = create_topic(args.bootstrap, "gwb-lat", PARTITIONS)
    gw = GraphWriter(args, topic, HIMARI_GRAPH_WRITER_BATCH_INTERVAL_MS=interval)
    q, out, stop = mp.Queue(), mp.Queue(), mp.Event()
    proc = None
    sent = {}
    try:
        gw.wait_ready()
        time.sleep(3)  # the consumer group's join
        proc = mp.Process(target=poller, args=(args, q, out, stop), daemon=True)
        proc.start()
        n = args.rate * args.seconds
        # Event times before the throughput passes' (they do not matter to the delay),
        # the templates' own gaps: the same link density as the throughput passes.
        offset = args.base_ms - (2 + args.intervals.index(interval)) * span_ms(templates[:n])
        events = materialize(templates[:n], offset, f"{args.salt}lat{interval}")
        p = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True,
                      "linger.ms": 0})
        t_start = time.monotonic()
        for i, (key, value, eid, label) in enumerate(events):
            due = t_start + i / args.rate
            while (d := due - time.monotonic()) > 0:
                p.poll(min(d, 0.005))
            t = time.monotonic()
            p.produce(topic, value, key=key)
            sent[eid] = (t, t - t_start)
            q.put((eid, label))
            p.poll(0)
        p.flush(30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if metric(gw.lines(), "himari_graph_events_total", 'result="written"') >= n:
                break
            time.sleep(0.1)
        time.sleep(max(0.5, 3 * args.poll_ms / 1000))
        stop.set()
        seen, gaps = out.get(timeout=60)
        proc.join(10)
        lines = gw.lines()
    finally:
        stop.set()
        gw.stop()
        delete_topic(args.bootstrap, topic)
    with driver(args) as drv:
        if not args.keep:
            delete_events(drv, events)
    d = sorted(1000 * (seen[e] - t) for e, (t, since) in sent.items()
               if e in seen and since >= args.warmup_s)
    # Where the tail is: the worst delay of each 5 s of sending (one stall or spread).
    worst = {}
    for e, (t, since) in sent.items():
        if e in seen:
            k = int(since // 5) * 5
            worst[k] = max(worst.get(k, 0.0), 1000 * (seen[e] - t))
    written = metric(lines, "himari_graph_events_total", 'result="written"')
    txns = metric(lines, "himari_graph_transaction_seconds_count")
    return {"bench": "graph_writer_latency", "batch_interval_ms": interval, "rate": args.rate,
            "seconds": args.seconds, "events": len(sent), "measured": len(d),
            "unseen": sum(1 for e in sent if e not in seen),
            "p50_ms": pct(d, 50), "p99_ms": pct(d, 99), "max_ms": round(d[-1], 1) if d else None,
            "over_1s": sum(1 for x in d if x > 1000),
            "max_ms_by_5s": {k: round(v) for k, v in sorted(worst.items())},
            "poll_ms_p50": round(1000 * statistics.median(gaps), 1) if gaps else None,
            "poll_ms_max": round(1000 * max(gaps), 1) if gaps else None,
            "batches": int(txns), "events_per_batch": round(written / txns, 1) if txns else None,
            "transaction_ms": histogram_quantiles(lines, "himari_graph_transaction_seconds"),
            "commit_delay_ms": histogram_quantiles(lines, "himari_graph_commit_delay_seconds")}


def latency(args, templates=None):
    templates = templates or synth(max(args.records, args.rate * args.seconds), args.per_hour)
    results = []
    for rnd in range(args.lat_rounds):
        for iv in args.intervals:
            say(f"latency round {rnd + 1}: batch_interval_ms {iv}, {args.rate}/s for "
                f"{args.seconds} s")
            r = latency_one(args, iv, templates)
            r["round"] = rnd + 1
            results.append(r)
            say(f"p50 {r['p50_ms']} p99 {r['p99_ms']} max {r['max_ms']} ms "
                f"({r['events_per_batch']} events a batch, transaction p50 "
                f"{r['transaction_ms']['0.5']} ms)")
    print(f"{'round':<6}{'interval ms':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'events/batch':>13}{'txn p50 ms':>11}{'unseen':>7}{'poll ms':>8}", file=sys.stderr)
    for r in results:
        print(f"{r['round']:<6}{r['batch_interval_ms']:>12}{r['p50_ms']:>9}{r['p99_ms']:>9}"
              f"{r['max_ms']:>9}{str(r['events_per_batch']):>13}"
              f"{str(r['transaction_ms']['0.5']):>11}{r['unseen']:>7}{r['poll_ms_p50']:>8}",
              file=sys.stderr)
    for r in results:
        print(json.dumps(r))


# ---- profile ----------------------------------------------------------------------------------

def plan_rows(plan, depth=0):
    """The profiled plan as (depth, operator, details, rows, db hits), root first."""
    a = plan.get("args", {})
    yield (depth, plan["operatorType"], a.get("Details", ""), a.get("Rows", plan.get("rows")),
           a.get("DbHits", plan.get("dbHits")))
    for child in plan.get("children", []):
        yield from plan_rows(child, depth + 1)


def profile(args, templates=None, kept=None):
    """PROFILE each kind's statement with a fresh batch, rolled back, on a graph holding
    one pass of events (written here by the graph-writer when none was kept)."""
    templates = templates or synth(args.records, args.per_hour)
    stmts, windows = writer_statements()
    made = None
    if kept is None:
        say(f"profile: writing {len(templates):,} events with the graph-writer first")
        args.rounds, args.peer = 1, False
        kept = made = throughput(args, templates, keep_last=True)
    # A fresh batch: the first profile_rows events shifted into the middle of the kept
    # pass's times (so the link MATCHes find neighbours), ids and wallets of their own.
    mid = (templates[len(templates) // 2][1].get("timestamp", 0) // 1000) * 1000
    fresh = materialize(templates[:args.profile_rows], kept[1] + mid, args.salt + "prof")
    rows = {}
    for _, value, _, _ in fresh:
        kind, row = event_row(json.loads(value))
        rows.setdefault(kind, []).append(row)
    results = []
    with driver(args) as drv:
        size = graph_size(drv)
        with drv.session() as s:
            for kind in KIND_ORDER:
                if not rows.get(kind):
                    continue
                tx = s.begin_transaction()
                t0 = time.monotonic()
                summary = tx.run("PROFILE " + stmts[kind], rows=rows[kind], **windows).consume()
                secs = time.monotonic() - t0
                tx.rollback()
                ops = list(plan_rows(summary.profile))
                scans = [o for o in ops if o[1].startswith(("NodeByLabelScan", "AllNodesScan"))]
                r = {"bench": "graph_writer_profile", "kind": kind, "rows": len(rows[kind]),
                     "graph": size, "seconds": round(secs, 3),
                     "db_hits": sum(o[4] or 0 for o in ops),
                     "label_scans": [{"operator": o[1], "details": o[2], "rows": o[3],
                                      "db_hits": o[4]} for o in scans],
                     "operators": [{"depth": o[0], "operator": o[1], "details": o[2][:160],
                                    "rows": o[3], "db_hits": o[4]} for o in ops]}
                results.append(r)
                print(f"\n{kind}: {len(rows[kind])} rows, {secs:.3f} s, {r['db_hits']:,} db hits"
                      f" on a graph of {size['nodes']:,} nodes / {size['relationships']:,}"
                      " relationships", file=sys.stderr)
                for depth, op, det, nrows, hits in ops:
                    flag = "  <-- scan" if (op, det) in [(x[1], x[2]) for x in scans] else ""
                    print(f"  {'  ' * depth}{op:<34}{str(nrows):>9}{str(hits):>11}  "
                          f"{det[:110]}{flag}", file=sys.stderr)
        if made is not None and not args.keep:
            delete_events(drv, made[0])
    for r in results:
        print(json.dumps(r))


def all_modes(args, templates):
    kept = throughput(args, templates[:args.records], keep_last=True)
    profile(args, templates[:args.records], kept=kept)
    if kept is not None and not args.keep:
        with driver(args) as drv:
            delete_events(drv, kept[0])
    latency(args, templates)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["throughput", "latency", "profile", "all"])
    ap.add_argument("--bootstrap", default=os.environ.get(
        "HIMARI_KAFKA_BOOTSTRAP",
        f"127.0.0.1:{os.environ.get('HIMARI_KAFKA_PORT', PORT_BASE + 92)}"))
    ap.add_argument("--bolt", default="bolt://127.0.0.1:" + os.environ.get(
        "HIMARI_NEO4J_BOLT_PORT", str(PORT_BASE + 687)))
    ap.add_argument("--http", default="http://127.0.0.1:" + os.environ.get(
        "HIMARI_NEO4J_HTTP_PORT", str(PORT_BASE + 474)))
    ap.add_argument("--password-file", default=str(RUN_DIR / "secrets/neo4j_password"))
    ap.add_argument("--records", type=int, default=10000, help="throughput/profile: events")
    ap.add_argument("--per-hour", type=float, default=120,
                    help="events per simulated hour over the 3 pairs (the link density: a "
                         "pair's events within the 1 h windows)")
    ap.add_argument("--rounds", type=int, default=1, help="throughput: rounds of both paths")
    ap.add_argument("--no-peer", dest="peer", action="store_false",
                    help="throughput: the graph-writer alone")
    ap.add_argument("--batch", type=int, default=2000,
                    help="graph_writer.batch_max_events, and the peer's batch")
    ap.add_argument("--interval-ms", type=int, default=500,
                    help="the peer's batch interval (the graph-writer's default)")
    ap.add_argument("--warmup", type=int, default=2000,
                    help="events applied and deleted before anything is measured")
    ap.add_argument("--history", type=int, default=10000,
                    help="events of their own written first and kept during the run (the "
                         "graph a running writer meets); 0: every pass on an empty graph")
    ap.add_argument("--rate", type=int, default=100, help="latency: events/s")
    ap.add_argument("--seconds", type=int, default=30, help="latency: seconds of load")
    ap.add_argument("--warmup-s", type=float, default=3, help="latency: seconds left out")
    ap.add_argument("--intervals", default="500,100",
                    help="latency: graph_writer.batch_interval_ms values, in turn")
    ap.add_argument("--lat-rounds", type=int, default=1, help="latency: rounds")
    ap.add_argument("--poll-ms", type=float, default=10, help="latency: poll interval")
    ap.add_argument("--profile-rows", type=int, default=600, help="profile: batch size")
    ap.add_argument("--keep", action="store_true", help="leave the run's nodes in Neo4j")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("graph_writer_bench: terminated"))
    args.intervals = [int(x) for x in args.intervals.split(",")]
    # Times 30-60 days ago, whole seconds; a salt of the run for hashes and wallets.
    rng = random.Random()
    args.base_ms = (int(time.time()) - 60 * 86400 + rng.randrange(0, 30 * 86400)) * 1000
    args.salt = uuid.uuid4().hex[:8]
    args.statements = writer_statements()
    subprocess.run([str(BIN / "himari-topics"), "--bootstrap", args.bootstrap, "--wait", "60",
                    "ensure"], check=True, stdout=subprocess.DEVNULL)
    templates = synth(max(args.records, args.rate * args.seconds), args.per_hour)
    warm_up(args, templates)
    history = write_history(args)
    try:
        if args.mode == "throughput":
            throughput(args, templates[:args.records])
        elif args.mode == "latency":
            latency(args, templates)
        elif args.mode == "profile":
            profile(args, templates[:args.records])
        else:
            all_modes(args, templates)
    finally:
        if history and not args.keep:
            with driver(args) as drv:
                delete_events(drv, history)


if __name__ == "__main__":
    main()
