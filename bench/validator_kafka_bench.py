#!/usr/bin/env python3
"""ingest-validator through Kafka, exactly once: throughput and end-to-end latency.

  throughput  pre-load N simulated ticks on a fresh raw topic, start the validator, and
              time it from its first record to the commit of its last (its own metrics);
              also the same N records round-tripped by himari-kafkacheck (plain Kafka,
              no transform) as a ceiling in the same run: the ratio is the figure to quote.
  latency     produce at a fixed rate (default 10,000/s) with the send time embedded in
              each tick; a read_committed consumer of quality_scores measures
              receive time - send time (produce -> validate -> transaction commit ->
              visible downstream), reported as p50/p99/p99.9, with the breakdown by
              stage, each stamp on the one machine's clock:
                sent_to_appended     producer -> broker append (the raw topic uses
                                     LogAppendTime; the delivery report carries it)
                appended_to_consumed broker append -> the validator takes the record
                                     (its input_age histogram: fetch and queueing)
                sent_to_judged       to the quality record's processed_at
                judged_to_visible    waiting in the open transaction, the commit, its
                                     markers, the downstream consumer's fetch
                produced_to_visible  from the quality record's own CreateTime (ms)
                open, commit_call    the validator's histograms: how long a transaction
                                     stays open, how long its commit call takes

Needs the test stack's Kafka (scripts/stack.sh start kafka with HIMARI_PROFILE=test) or
--bootstrap. Prints a table and one JSON line per measurement.

  .cache/venv/bin/python bench/validator_kafka_bench.py throughput [--records 1000000]
  .cache/venv/bin/python bench/validator_kafka_bench.py latency [--rate 10000] [--seconds 30]
      [--commit-interval-ms 0] [--offsets changelog|group] [--delivery at_least_once]
  .cache/venv/bin/python bench/validator_kafka_bench.py cpu --rate 2000 --seconds 30
      (the make run shape: himari-sim -> validator; CPU seconds per 1,000 records of the
      broker, the validator and the feed; HIMARI_BUILD_DIR picks the build)
"""
import argparse
import datetime
import functools
import json
import multiprocessing as mp
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid

import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(os.environ.get("HIMARI_BUILD_DIR", ROOT / "build")) / "bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Topics:
    def __init__(self, bootstrap):
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        tag = uuid.uuid4().hex[:8]
        # The raw topic stamps each record with the broker's append time (LogAppendTime):
        # the producer's delivery report then carries it, and the validator's input_age
        # histogram measures append -> consumed.
        self.names = {"raw": (f"bench-raw-{tag}", 12, {"message.timestamp.type": "LogAppendTime"}),
                      "quality": (f"bench-quality-{tag}", 6, {}),
                      "dlq": (f"bench-dlq-{tag}", 3, {}),
                      "events": (f"bench-events-{tag}", 3, {}),
                      "changelog": (f"bench-changelog-{tag}", 12, {"cleanup.policy": "compact"})}
        futs = self.admin.create_topics([NewTopic(n, p, 1, config=c)
                                         for n, p, c in self.names.values()])
        for f in futs.values():
            f.result(30)
        self.group = f"bench-validator-{tag}"

    def __getitem__(self, k):
        return self.names[k][0]

    def env(self, bootstrap, commit_interval_ms, offsets=None, delivery=None):
        return {"HIMARI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                **({"HIMARI_VALIDATOR_OFFSETS": offsets} if offsets else {}),
                **({"HIMARI_VALIDATOR_DELIVERY": delivery} if delivery else {}),
                "HIMARI_SERVICE_INSTANCE_ID": f"bench-{uuid.uuid4().hex[:6]}",
                "HIMARI_VALIDATOR_INPUT_TOPIC": self["raw"],
                "HIMARI_VALIDATOR_OUTPUT_TOPIC": self["quality"],
                "HIMARI_VALIDATOR_DLQ_TOPIC": self["dlq"],
                "HIMARI_VALIDATOR_EVENTS_TOPIC": self["events"],
                "HIMARI_VALIDATOR_CHANGELOG_TOPIC": self["changelog"],
                "HIMARI_VALIDATOR_GROUP_ID": self.group,
                **({"HIMARI_VALIDATOR_COMMIT_INTERVAL_MS": str(commit_interval_ms)}
                   if commit_interval_ms >= 0 else {}),
                "HIMARI_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warn")}

    def delete(self):
        for f in self.admin.delete_topics([n for n, _, _ in self.names.values()]).values():
            try:
                f.result(30)
            except Exception:  # noqa: BLE001 - cleanup
                pass


def metric(port, name):
    total = None
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total or 0.0


def histogram_quantiles(port, name, labels=""):
    """p50/p99/p99.9 (ms) of one of our Prometheus histograms (the series whose labels
    contain `labels`), interpolated within its buckets."""
    buckets = []
    for line in requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + "_bucket{") and labels in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le),
                            float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    out = {}
    for q in (0.5, 0.99, 0.999):
        out[q] = None
        want, lo_bound, lo_count = q * total, 0.0, 0.0
        for bound, count in buckets if total else []:
            if count >= want:
                top = lo_bound if bound == float("inf") else bound
                frac = (want - lo_count) / (count - lo_count) if count > lo_count else 1
                out[q] = round((lo_bound + frac * (top - lo_bound)) * 1000, 2)
                break
            lo_bound, lo_count = bound, count
    return out


def start_validator(env):
    port = free_port()
    log = open(f"/tmp/bench-validator-{port}.log", "wb")
    extra = ["--config", os.environ["BENCH_VALIDATOR_CONFIG"]] if os.environ.get(
        "BENCH_VALIDATOR_CONFIG") else []
    proc = subprocess.Popen([str(BIN / "ingest-validator"), *extra],
                            env={**os.environ, **env, "HIMARI_ADMIN_PORT": str(port)},
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"validator did not get ready; see {log.name}")
        time.sleep(0.1)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(args):
    tmp = pathlib.Path(f"/tmp/bench-ticks-{args.records}.jsonl")
    if not tmp.exists():
        subprocess.run([str(BIN / "himari-sim"), "--count", str(args.records), "--seed", "42",
                        "--anomaly-rate", "0.01", "--out", str(tmp)], check=True)
    topics = Topics(args.bootstrap)
    try:
        print(f"==> loading {args.records} records", file=sys.stderr)
        subprocess.run([str(BIN / "himari-sim"), "--kafka", args.bootstrap, "--topic",
                        topics["raw"], "--input", str(tmp), "--rate", "0"], check=True,
                       stderr=subprocess.DEVNULL)
        proc, port = start_validator(topics.env(args.bootstrap, args.commit_interval_ms))
        t_first = None
        cpu0 = cpu_seconds(proc.pid)
        while True:
            n = metric(port, "himari_validator_records_total")
            now = time.monotonic()
            if n > 0 and t_first is None:
                t_first = now
            if n >= args.records and metric(port, "himari_validator_transaction_records") == 0:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - t_first
        cpu = cpu_seconds(proc.pid) - cpu0
        txn = metric(port, "himari_kafka_transaction_seconds_count")
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        rate = args.records / elapsed
        result = {"bench": "validator_eos_throughput", "records": args.records,
                  "seconds": round(elapsed, 3), "records_per_s": round(rate),
                  "validator_cpu_seconds": round(cpu, 2), "transactions": int(txn),
                  "commit_interval_ms": args.commit_interval_ms}
    finally:
        topics.delete()
    # Ceiling: the same record count round-tripped through Kafka by common/'s clients.
    ceiling_topic = Topics(args.bootstrap)
    try:
        run = subprocess.run([str(BIN / "himari-kafkacheck"), "--bootstrap", args.bootstrap,
                              "--topic", ceiling_topic["raw"], "--count", str(args.records),
                              "--transactional", "--txn-records", "20000", "--timeout", "300"],
                             capture_output=True, text=True, check=True)
        ceiling = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        ceiling_topic.delete()
    result["kafkacheck_txn_roundtrip_records_per_s"] = round(ceiling["records_per_s"])
    result["ratio_to_roundtrip"] = round(rate / ceiling["records_per_s"], 3)
    print(json.dumps(result))


def _consume_latencies(bootstrap, topic, expected, out_q, stop_at, measure_from_ns):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-lat-{uuid.uuid4()}",
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 5})
    c.subscribe([topic])
    lat, when, to_judged, to_visible, to_produced = [], [], [], [], []
    received = 0
    while received < expected and time.time() < stop_at:
        msg = c.poll(0.1)
        if msg is None or msg.error():
            continue
        now_ns = time.time_ns()
        rec = json.loads(msg.value())
        sent = (rec.get("original_data") or {}).get("sent_ns")
        if isinstance(sent, int):
            received += 1
            if sent < measure_from_ns:
                continue  # warm-up: the first transactions set up partitions, metadata
            lat.append((now_ns - sent) / 1e6)
            when.append(now_ns)
            judged = rec.get("processed_at")
            if judged:  # the validator's clock: the same machine's
                j_ns = datetime.datetime.fromisoformat(judged.replace("Z", "+00:00")) \
                    .timestamp() * 1e9
                to_judged.append((j_ns - sent) / 1e6)
                to_visible.append((now_ns - j_ns) / 1e6)
            # The quality record's own timestamp (CreateTime, ms): when the validator
            # produced it into its open transaction. What follows it is the wait for the
            # commit, the commit, its markers and this consumer's fetch.
            ts_type, ts_ms = msg.timestamp()
            if ts_type != 0:
                to_produced.append((now_ns / 1e6 - ts_ms))
    c.close()
    # The worst second too: a tail spread evenly differs from one burst.
    by_second = {}
    for t, v in zip(when, lat):
        by_second.setdefault((t - when[0]) // 1_000_000_000, []).append(v)
    worst = sorted((round(max(v), 1), s) for s, v in by_second.items())[-3:] if when else []
    out_q.put((lat, worst, received, sorted(to_judged), sorted(to_visible),
               sorted(to_produced)))


def _eos_peer(bootstrap, raw, quality, group, stop_at):
    """Exactly-once consume-transform-produce in its simplest form (confluent-kafka):
    read raw, write each record to quality, every 5 ms send the offsets in the
    transaction and commit. No checks, no changelog: the floor of Kafka EOS here."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([raw])
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"eos-peer-{uuid.uuid4()}",
                  "linger.ms": 1, "retry.backoff.ms": 10})
    p.init_transactions()
    p.begin_transaction()
    last, n = time.monotonic(), 0
    while time.time() < stop_at:
        m = c.poll(0.001)
        if m is not None and not m.error():
            p.produce(quality, json.dumps({"original_data": json.loads(m.value())}).encode(),
                      key=m.key())
            n += 1
        if n and time.monotonic() - last >= 0.005:
            p.send_offsets_to_transaction(c.position(c.assignment()),
                                          c.consumer_group_metadata())
            p.commit_transaction()
            p.begin_transaction()
            last, n = time.monotonic(), 0
    c.close()


def latency(args):
    topics = Topics(args.bootstrap)
    proc = port = None
    stages = {}
    try:
        if not args.peer:
            proc, port = start_validator(topics.env(args.bootstrap, args.commit_interval_ms,
                                                    args.offsets, args.delivery))
        elif args.peer == "eos":
            proc = mp.Process(target=_eos_peer, args=(args.bootstrap, topics["raw"],
                                                      topics["quality"], topics.group,
                                                      time.time() + args.seconds + args.warmup
                                                      + 40))
            proc.start()
        total = args.rate * (args.seconds + args.warmup)
        q = mp.Queue()
        measure_from_ns = time.time_ns() + int((3 + args.warmup) * 1e9)
        consumer = mp.Process(target=_consume_latencies,
                              args=(args.bootstrap, topics["quality"], total, q,
                                    time.time() + args.seconds + args.warmup + 60,
                                    measure_from_ns))
        consumer.start()
        time.sleep(3)  # consumer joined its group
        conf = {"bootstrap.servers": args.bootstrap, "linger.ms": 1,
                "enable.idempotence": True, "partitioner": "murmur2_random"}
        if args.peer == "txn":
            # The peer: the same records straight into quality_scores in Kafka
            # transactions committed every 5 ms (what the validator's transactions cost
            # without the validator: one hop, no transform, no changelog, no offsets).
            conf.update({"transactional.id": f"bench-peer-{uuid.uuid4()}",
                         "retry.backoff.ms": 10})
        p = Producer(conf)
        if args.peer == "txn":
            p.init_transactions()
            p.begin_transaction()
        last_commit = time.monotonic()
        symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
        exchanges = ["binance", "kraken", "bybit", "coinbase", "deribit"]
        ids = {}
        appended = []  # sent -> appended by the broker (the raw topic's LogAppendTime)

        def on_delivery(sent_ns, err, msg):
            if err is None and sent_ns >= measure_from_ns:
                appended.append(msg.timestamp()[1] - sent_ns / 1e6)
        t0 = time.monotonic()
        for i in range(total):
            # Sleep (not spin) when ahead: on 2 cores a spinning producer would take a
            # core from the broker and the validator and inflate the figure.
            ahead = t0 + i / args.rate - time.monotonic()
            if ahead > 0.0005:
                time.sleep(ahead)
            sym, ex = symbols[i % 3], exchanges[(i // 3) % 5]
            ids[(ex, sym)] = ids.get((ex, sym), 1000) + 1
            now_ns = time.time_ns()
            rec = {"timestamp": now_ns // 1_000_000, "exchange": ex, "symbol": sym,
                   "price": 37000.0 + (i % 7) * 0.5, "volume": 0.01 + (i % 13) * 0.001,
                   "trade_id": ids[(ex, sym)], "side": "buy", "sent_ns": now_ns}
            if args.peer == "txn":
                p.produce(topics["quality"], json.dumps({"original_data": rec}).encode(),
                          key=sym.encode())
                if time.monotonic() - last_commit >= 0.005:
                    p.commit_transaction()
                    p.begin_transaction()
                    last_commit = time.monotonic()
            else:
                p.produce(topics["raw"], json.dumps(rec).encode(), key=sym.encode(),
                          on_delivery=functools.partial(on_delivery, now_ns))
            p.poll(0)
        if args.peer == "txn":
            p.commit_transaction()
        p.flush(30)
        lat, worst, received, to_judged, to_visible, to_produced = q.get(
            timeout=args.seconds + args.warmup + 90)
        lat = sorted(lat)
        consumer.join()
        txn_n = txn_le25 = txn_le100 = txn_s = 0
        if args.peer == "eos":
            proc.join(120)
        elif proc:
            txn_n = metric(port, 'himari_kafka_transaction_seconds_count{op="commit"}')
            txn_le25 = metric(port,
                              'himari_kafka_transaction_seconds_bucket{op="commit",le="0.025"}')
            txn_le100 = metric(port,
                               'himari_kafka_transaction_seconds_bucket{op="commit",le="0.1"}')
            txn_s = metric(port, 'himari_kafka_transaction_seconds_sum{op="commit"}')
            stages["appended_to_consumed_ms"] = histogram_quantiles(
                port, "himari_validator_input_age_seconds")
            stages["open_ms"] = histogram_quantiles(port,
                                                    "himari_validator_transaction_open_seconds")
            stages["commit_call_ms"] = histogram_quantiles(
                port, "himari_kafka_transaction_seconds", 'op="commit"')
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    finally:
        topics.delete()

    def pct(x, v=None):
        v = lat if v is None else v
        return round(v[min(len(v) - 1, int(len(v) * x))], 2) if v else None

    def quantiles(v):
        return {q: pct(q, v) for q in (0.5, 0.99, 0.999)}

    stages = {"sent_to_appended_ms": quantiles(sorted(appended)), **stages,
              "sent_to_judged_ms": quantiles(to_judged),
              "judged_to_visible_ms": quantiles(to_visible),
              "produced_to_visible_ms": quantiles(to_produced)}
    print(f"{'stage':<26}{'p50 ms':>10}{'p99 ms':>10}{'p99.9 ms':>10}", file=sys.stderr)
    for k, v in stages.items():
        print(f"{k:<26}" + "".join(f"{'' if v.get(q) is None else v[q]:>10}"
                                   for q in (0.5, 0.99, 0.999)), file=sys.stderr)

    print(json.dumps({"bench": f"peer_{args.peer}_latency" if args.peer else "validator_eos_latency",
                      "rate": args.rate,
                      "records": total, "received": received, "measured": len(lat),
                      "warmup_s": args.warmup,
                      "commit_interval_ms": args.commit_interval_ms,
                      "offsets": args.offsets, "delivery": args.delivery,
                      "stages": {k: {str(q): x for q, x in v.items()} for k, v in stages.items()},
                      "commits": int(txn_n),
                      "commit_avg_ms": round(1000 * txn_s / txn_n, 2) if txn_n else None,
                      "commits_over_25ms": int(txn_n - txn_le25),
                      "commits_over_100ms": int(txn_n - txn_le100),
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
                      "max_ms": round(lat[-1], 2),
                      "worst_seconds": [{"second": s, "max_ms": m} for m, s in worst]}))


def broker_pid():
    pidfile = pathlib.Path(os.environ.get("HIMARI_RUN_DIR", ROOT / "run" / "test")) / "kafka" / "kafka.pid"
    return int(pidfile.read_text().strip())


def cpu(args):
    """The make run shape: himari-sim paced at --rate into the raw topic, the validator at
    its defaults; CPU seconds of the broker, the validator and the feed per 1,000 records
    over --seconds (after the validator is ready and the feed started)."""
    topics = Topics(args.bootstrap)
    try:
        proc, port = start_validator(topics.env(args.bootstrap, args.commit_interval_ms,
                                                args.offsets, args.delivery))
        broker = broker_pid()
        sim = subprocess.Popen([str(BIN / "himari-sim"), "--kafka", args.bootstrap, "--topic",
                                topics["raw"], "--rate", str(args.rate), "--duration",
                                str(args.seconds + 2)], stderr=subprocess.DEVNULL)
        time.sleep(2)  # the feed connected and at pace
        pids = {"broker": broker, "validator": proc.pid, "feed": sim.pid}
        n0 = metric(port, "himari_validator_records_total")
        c0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        time.sleep(args.seconds)
        c1 = {k: cpu_seconds(pid) for k, pid in pids.items()}
        n = metric(port, "himari_validator_records_total") - n0
        sim.wait(30)
        commits = metric(port, 'himari_kafka_transaction_seconds_count{op="commit"}')
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    finally:
        topics.delete()
    per_k = {k: round(1000 * (c1[k] - c0[k]) / n, 4) if n else None for k in c0}
    for k in c0:
        print(f"{k:<10} {c1[k] - c0[k]:7.2f} CPU s   {per_k[k]} s per 1,000 records",
              file=sys.stderr)
    print(json.dumps({"bench": "pipeline_cpu", "rate": args.rate, "seconds": args.seconds,
                      "records": int(n), "transactions": int(commits),
                      "cpu_s": {k: round(c1[k] - c0[k], 2) for k in c0},
                      "cpu_s_per_1000_records": per_k}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["throughput", "latency", "cpu"])
    ap.add_argument("--bootstrap", default=os.environ.get("HIMARI_KAFKA_BOOTSTRAP",
                                                          "127.0.0.1:29092"))
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--peer", choices=["txn", "eos"], default=None,
                    help="latency, instead of the validator: 'txn' = the producer writes the "
                         "output topic in 5 ms transactions itself (one hop, no offsets); "
                         "'eos' = a minimal Python consume-transform-produce with "
                         "send_offsets_to_transaction every 5 ms (what exactly-once costs "
                         "without our code)")
    ap.add_argument("--warmup", type=int, default=3,
                    help="latency: seconds of load at the start left out of the figures")
    ap.add_argument("--commit-interval-ms", type=int, default=-1,
                    help="validator.commit_interval_ms; -1: the service's default")
    ap.add_argument("--offsets", choices=["changelog", "group"], default=None,
                    help="validator.offsets (default: the service's)")
    ap.add_argument("--delivery", choices=["exactly_once", "at_least_once"], default=None,
                    help="validator.delivery (default: the service's)")
    args = ap.parse_args()
    {"throughput": throughput, "latency": latency, "cpu": cpu}[args.mode](args)


if __name__ == "__main__":
    main()
