#!/usr/bin/env python3
"""The archiver (issue 13): rows/s into PostgreSQL against the guide's execute_values path,
the delay from quality_scores to a queryable row, and the Parquet writer.

  throughput  N quality records (simulated ticks judged by the validator's replay, all valid
              trades or liquidations, timed in yesterday's UTC day, exchanges renamed
              <exchange>_b<tag> so that the run's candles meet no other rows) pre-loaded on
              a fresh 6-partition topic. Then, on the SAME records:
                archiver    build/bin/archiver from the topic into market_data (COPY
                            batches through async libpq, candles and day counts in the
                            same transaction), timed from its first record taken (its
                            input_age histogram's count) to its last row committed
                            (himari_archiver_rows_total), polled every 50 ms
                guide       the guide's TimescaleDBSink in plain Python: a confluent-kafka
                            consumer, json.loads of each record, the guide's tuple, a
                            buffer of 500 rows flushed with psycopg2's execute_values
                            (page_size: psycopg2's default 100, which the guide keeps),
                            INSERT ... ON CONFLICT DO NOTHING, one commit per flush; timed
                            from its first record received to its last commit (the
                            guide's template string has a typo, "(%, %s, ...)": the
                            default template is used; its naive local datetime is UTC here)
                guide_db    the same execute_values flushes over the rows the guide run
                            decoded, kept in memory: the database's share alone
                guide_db_tuned  the same with the archiver's batch (20,000 rows a
                            commit) and page_size 1,000: execute_values at its best
              The guide's table is a fresh bench_guide.market_data (schema bench_guide,
              dropped at the end): market_data's columns, unique key, day partitions and
              the guide's three indexes; the archiver's own tables are only written by the
              archiver, and the run's rows are deleted from them afterwards (--keep: not).
              Also reported: CPU seconds of the client (archiver or Python), of its
              PostgreSQL backend and of the whole PostgreSQL server (every child of the
              postmaster) over each run, when the server runs on this machine.
              --batch-max-rows sets archiver.batch_max_rows (--no-guide: the archiver
              alone); --archivers N runs N archiver processes in one consumer group
              (Kafka splits the partitions between them: how the service scales out);
              --stall-s turns a run where no batch commits for that long into an error.
  latency     quality records produced at --rate/s for --seconds (timestamp = the send
              time) with the archiver running at each of --intervals
              (archiver.batch_interval_ms; batch_max_rows at its default); a poller
              process reads max(source_offset) of market_data per partition every
              --poll-ms, and each row's delay is the first poll that saw its offset
              minus its send time (the produce call): p50 / p99 / max, the first 3 s
              left out. Also, from SQL, ingested_at (the batch transaction's start:
              now()) minus timestamp, and the archiver's commit_delay and batch_seconds
              histograms.
  apply       the database's floor: the same records as COPY text rows of market_data
              (the archiver's format), sent in batches of --batch-rows by psycopg2 to a
              copy of market_data (schema bench_apply, LIKE ... INCLUDING ALL, dropped at
              the end), one commit per batch. Passes over the same rows, each on an
              emptied table:
                copy_direct  COPY into market_data with its unique key and the guide's
                             three indexes: what the archiver's batch costs at least
                             (its candles and day counts come folded: a few rows)
                copy_noidx   the same without the three secondary indexes
  parquet     build/bin/parquet-write --rows N --codec C for each of --codecs, --rounds
              times (median): MB/s of JSON lines written as Parquet, rows/s, bytes, and
              the ratio JSON lines : Parquet.

Needs Kafka and PostgreSQL (scripts/stack.sh start kafka postgres). The addresses come
from the same environment as the stack (scripts/env.sh: HIMARI_PORT_BASE, HIMARI_RUN_DIR;
default the test profile's) or from --bootstrap / --pg-port / --pg-password-file.
Prints a table on stderr and one JSON line per measurement on stdout.

  HIMARI_PROFILE=test HIMARI_PORT_BASE=23000 HIMARI_RUN_DIR=/tmp/himari-bench-run \\
      scripts/stack.sh start kafka postgres
  export HIMARI_PORT_BASE=23000 HIMARI_RUN_DIR=/tmp/himari-bench-run
  .cache/venv/bin/python bench/archiver_bench.py throughput [--records 1000000] [--rounds 1]
      [--no-guide] [--batch-max-rows N] [--archivers N]
  .cache/venv/bin/python bench/archiver_bench.py latency [--rate 5000] [--seconds 30]
      [--intervals 1000,250,0]
  .cache/venv/bin/python bench/archiver_bench.py apply [--records 1000000] [--batch-rows 20000]
  .cache/venv/bin/python bench/archiver_bench.py parquet [--rows 1000000] [--codecs zstd,snappy]
  HIMARI_PROFILE=test HIMARI_PORT_BASE=23000 HIMARI_RUN_DIR=/tmp/himari-bench-run \\
      scripts/stack.sh stop kafka postgres

HIMARI_BUILD_DIR picks the build (default build/).
"""
import argparse
import datetime
import functools
import json
import multiprocessing as mp
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import psycopg2
import requests
from confluent_kafka import Consumer, Producer
from psycopg2.extras import execute_values

from benchlib import (cpu_seconds, create_topic, delete_topic, diff, free_port,
                      histogram_quantiles, metric, metric_lines, say)

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = pathlib.Path(os.environ.get("HIMARI_BUILD_DIR", ROOT / "build")) / "bin"
PORT_BASE = int(os.environ.get("HIMARI_PORT_BASE", "29000"))
RUN_DIR = pathlib.Path(os.environ.get("HIMARI_RUN_DIR", ROOT / "run" / "test"))
DAY_MS = 86_400_000
PARTITIONS = 6
EXCHANGES = ("binance", "kraken", "bybit", "coinbase", "deribit")
GUIDE_BATCH, GUIDE_PAGE = 500, 100  # TimescaleDBSink(batch_size=500); execute_values' default
COLUMNS = ("timestamp", "symbol", "exchange", "price", "volume", "quality_score", "issues",
           "trade_id", "side", "type", "processed_at", "source_topic", "source_partition",
           "source_offset")


# ---- PostgreSQL --------------------------------------------------------------------------

def pg_connect(args):
    return psycopg2.connect(host=args.pg_host, port=args.pg_port, dbname=args.dbname,
                            user=args.pg_user, options="-c TimeZone=UTC",
                            application_name="bench-archiver",
                            password=pathlib.Path(args.pg_password_file).read_text().strip())


def pg_exec(args, sql, params=(), fetch=True):
    conn = pg_connect(args)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if fetch and cur.description else None
    finally:
        conn.close()


def cpu_sum(pids):
    """cpu_seconds summed over processes, None when one is not readable."""
    got = [cpu_seconds(p) for p in pids]
    return None if None in got else sum(got)


def ppid_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def server_cpu(postmaster):
    """CPU seconds of the PostgreSQL server: the postmaster and every child (backends,
    WAL writer, checkpointer, autovacuum) alive now. None when the server is elsewhere."""
    if postmaster is None:
        return None
    total = cpu_seconds(postmaster) or 0.0
    for d in os.listdir("/proc"):
        if d.isdigit() and ppid_of(int(d)) == postmaster:
            total += cpu_seconds(int(d)) or 0.0
    return total


# ---- Kafka ----------------------------------------------------------------------------------

# ---- the archiver ---------------------------------------------------------------------------

class Archiver:
    """build/bin/archiver on a topic of its own, in a directory of its own, stopped by stop()."""

    def __init__(self, args, topic, group=None, **extra):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="archiver-bench-")
        env = {**os.environ,
               "HIMARI_KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
               "HIMARI_POSTGRES_HOST": args.pg_host,
               "HIMARI_POSTGRES_PORT": str(args.pg_port),
               "HIMARI_POSTGRES_DBNAME": args.dbname,
               "HIMARI_POSTGRES_USER": args.pg_user,
               "HIMARI_POSTGRES_PASSWORD_FILE": str(args.pg_password_file),
               "HIMARI_POSTGRES_SSLMODE": "disable",
               "HIMARI_ARCHIVE_ENABLED": "false",
               "HIMARI_ARCHIVER_INPUT_TOPIC": topic,
               "HIMARI_ARCHIVER_GROUP_ID": group or f"bench-archiver-{uuid.uuid4().hex[:8]}",
               "HIMARI_SERVICE_INSTANCE_ID": f"bench-{uuid.uuid4().hex[:6]}",
               "HIMARI_ADMIN_PORT": str(self.port),
               "HIMARI_GRPC_PORT": str(free_port()),
               "HIMARI_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warn"),
               **{k: str(v) for k, v in extra.items()}}
        self.log = pathlib.Path(self.dir) / "archiver.log"
        self.logf = open(self.log, "wb")
        self.started = datetime.datetime.now(datetime.timezone.utc)
        self.proc = subprocess.Popen([str(BIN / "archiver")], env=env, cwd=self.dir,
                                     stdout=self.logf, stderr=subprocess.STDOUT)

    def lines(self):
        return metric_lines(self.port)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"archiver exited ({self.proc.returncode}); see {self.log}")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/readyz",
                                timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise SystemExit(f"archiver not ready after {timeout}s; see {self.log}")

    def backend_pids(self, args):
        """Its PostgreSQL backends: connections named himari-archiver opened since it
        started."""
        rows = pg_exec(args, """SELECT pid FROM pg_stat_activity
                                WHERE application_name = 'himari-archiver'
                                  AND backend_start >= %s""", (self.started,))
        return [r[0] for r in rows]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


# ---- records --------------------------------------------------------------------------------

def yesterday_ms():
    return (int(time.time() * 1000) // DAY_MS - 1) * DAY_MS


def quality_file(n, start_ms):
    """N quality records (bytes lines) of simulated, clean trades and liquidations, timed
    from start_ms at 10,000 records/s of simulated time; cached in /tmp."""
    path = pathlib.Path(f"/tmp/bench-archiver-quality-{n}-{start_ms}.jsonl")
    if not path.exists():
        raw = path.with_suffix(".raw")
        say(f"generating {n:,} quality records ({path})")
        subprocess.run([str(BIN / "himari-sim"), "--count", str(n), "--seed", "42",
                        "--rate", "10000", "--start-ms", str(start_ms), "--anomaly-rate", "0",
                        "--transfer-rate", "0", "--out", str(raw)], check=True, timeout=600)
        tmp = path.with_suffix(".tmp")
        subprocess.run([str(BIN / "ingest-validator"), "--replay", str(raw), "--output",
                        str(tmp)], check=True, timeout=600, stderr=subprocess.DEVNULL)
        raw.unlink()
        tmp.rename(path)
    return path


def tagged(data: bytes, tag: str) -> bytes:
    for ex in EXCHANGES:
        data = data.replace(f'"exchange":"{ex}"'.encode(), f'"exchange":"{ex}_{tag}"'.encode())
    return data


def guide_row(value: bytes, topic, partition, offset):
    """The guide's TimescaleDBSink.invoke: json.loads and its tuple (with the columns
    market_data has beyond the guide's seven, so both paths store the same rows)."""
    data = json.loads(value)
    return (datetime.datetime.fromtimestamp(data["timestamp"] / 1000.0, datetime.timezone.utc),
            data["symbol"], data.get("exchange", "unknown"), data.get("price", 0.0),
            data.get("volume", 0.0), data.get("quality_score", 1.0), data.get("issues", []),
            data.get("trade_id"), data.get("side"), data.get("type", "trade"),
            data.get("processed_at"), topic, partition, offset)


GUIDE_SQL = ("INSERT INTO bench_guide.market_data (" + ", ".join(COLUMNS) +
             ") VALUES %s ON CONFLICT DO NOTHING")


def create_guide_table(args, days):
    """bench_guide.market_data: market_data's columns, unique key and day partitions, and the
    guide's three indexes."""
    parts = "".join(
        f"CREATE TABLE bench_guide.market_data_{d:%Y%m%d} PARTITION OF bench_guide.market_data"
        f" FOR VALUES FROM ('{d:%Y-%m-%d} 00:00:00+00') TO"
        f" ('{d + datetime.timedelta(days=1):%Y-%m-%d} 00:00:00+00');" for d in days)
    pg_exec(args, """
        DROP SCHEMA IF EXISTS bench_guide CASCADE;
        CREATE SCHEMA bench_guide;
        CREATE TABLE bench_guide.market_data (LIKE public.market_data INCLUDING ALL)
            PARTITION BY RANGE (timestamp);
    """ + parts, fetch=False)


# ---- throughput ------------------------------------------------------------------------------

def run_archiver(args, topic, n, postmaster):
    """--archivers instances in one consumer group (Kafka splits the partitions between
    them), timed from the first record any of them took to the last row committed."""
    extra = {"HIMARI_ARCHIVER_BATCH_MAX_ROWS": args.batch_max_rows} if args.batch_max_rows \
        else {}
    group = f"bench-archiver-{uuid.uuid4().hex[:8]}"
    archs = [Archiver(args, topic, group=group, **extra) for _ in range(args.archivers)]
    t0 = None
    c0 = s0 = b0 = None
    backends = []
    deadline = time.monotonic() + max(300, n / 2000)
    last_rows, last_progress = -1.0, time.monotonic()
    logs = ", ".join(str(a.log) for a in archs)

    def total(lines, name):
        return sum(metric(ls, name) for ls in lines)

    try:
        while True:
            now = time.monotonic()
            if now > deadline:
                raise SystemExit(f"archiver: not all {n} rows after the deadline; see {logs}")
            for a in archs:
                if a.proc.poll() is not None:
                    raise SystemExit(f"archiver exited ({a.proc.returncode}); see {a.log}")
            try:
                lines = [a.lines() for a in archs]
            except requests.RequestException:
                time.sleep(0.02)
                continue
            if t0 is None:
                if total(lines, "himari_archiver_input_age_seconds_count") > 0:
                    t0 = now
                    c0 = cpu_sum(a.proc.pid for a in archs)
                    s0 = server_cpu(postmaster)
                    backends = sorted({p for a in archs for p in a.backend_pids(args)})
                    b0 = {p: cpu_seconds(p) for p in backends}
                else:
                    time.sleep(0.01)
                    continue
            rows = total(lines, "himari_archiver_rows_total")
            if rows >= n:
                t1 = now
                break
            if rows != last_rows:
                last_rows, last_progress = rows, now
            elif now - last_progress > args.stall_s:
                raise SystemExit(
                    f"archiver: no batch committed for {args.stall_s:.0f} s at {rows:.0f} of {n}"
                    f" rows ({total(lines, 'himari_archiver_sink_failures_total'):.0f} failed"
                    f" flushes); see {logs}")
            time.sleep(0.05)
        c1 = cpu_sum(a.proc.pid for a in archs)
        s1 = server_cpu(postmaster)
        b1 = {p: cpu_seconds(p) for p in backends}
        batches = total(lines, "himari_archiver_batch_seconds_count")
        batch_s = total(lines, "himari_archiver_batch_seconds_sum")
        batch_q = histogram_quantiles(lines[0], "himari_archiver_batch_seconds")
    finally:
        for a in archs:
            a.stop()
    stored = pg_exec(args, "SELECT count(*) FROM market_data WHERE source_topic = %s",
                     (topic,))[0][0]
    rejected = pg_exec(args, "SELECT count(*) FROM market_data_rejects WHERE source_topic = %s",
                       (topic,))[0][0]
    secs = t1 - t0
    backend = None
    if backends and all(v is not None for v in list(b0.values()) + list(b1.values())):
        backend = round(sum(b1[p] - b0[p] for p in backends), 2)
    return {"path": "archiver" if args.archivers == 1 else f"archiver x{args.archivers}",
            "archivers": args.archivers, "rows": int(stored), "rejected": int(rejected),
            "seconds": round(secs, 3), "rows_per_s": round(n / secs),
            "batches": int(batches), "rows_per_batch": round(n / batches) if batches else None,
            "batch_ms": batch_q,
            "db_busy_fraction": round(batch_s / secs / args.archivers, 3),
            "rows_per_s_in_batches": round(n / batch_s * args.archivers) if batch_s else None,
            "client_cpu_s": diff(c0, c1),
            "backend_cpu_s": backend, "server_cpu_s": diff(s0, s1)}


def run_guide_kafka(args, topic, n, postmaster):
    """The guide's sink fed by a Python consumer: decode, tuple, 500-row execute_values
    flushes. Returns its figures and the rows it decoded (for the DB-only runs)."""
    conn = pg_connect(args)
    conn.set_session(autocommit=False)
    cur = conn.cursor()
    backend = conn.get_backend_pid()
    c = Consumer({"bootstrap.servers": args.bootstrap,
                  "group.id": f"bench-guide-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.subscribe([topic])
    rows, buf = [], []
    t0 = None
    deadline = time.monotonic() + max(600, n / 500)
    got = 0
    try:
        while got < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"guide: {got} of {n} records before the deadline")
            msgs = c.consume(num_messages=1000, timeout=1.0)
            if not msgs:
                continue
            if t0 is None:
                t0 = time.monotonic()
                p0, b0, s0 = time.process_time(), cpu_seconds(backend), server_cpu(postmaster)
            for m in msgs:
                if m.error():
                    continue
                r = guide_row(m.value(), topic, m.partition(), m.offset())
                buf.append(r)
                got += 1
                if len(buf) >= GUIDE_BATCH:
                    execute_values(cur, GUIDE_SQL, buf, page_size=GUIDE_PAGE)
                    conn.commit()
                    rows.extend(buf)
                    buf = []
        if buf:
            execute_values(cur, GUIDE_SQL, buf, page_size=GUIDE_PAGE)
            conn.commit()
            rows.extend(buf)
        t1 = time.monotonic()
        p1, b1, s1 = time.process_time(), cpu_seconds(backend), server_cpu(postmaster)
    finally:
        c.close()
        conn.close()
    stored = pg_exec(args, "SELECT count(*) FROM bench_guide.market_data")[0][0]
    secs = t1 - t0
    return {"path": "guide", "rows": int(stored), "seconds": round(secs, 3),
            "rows_per_s": round(n / secs), "batch_rows": GUIDE_BATCH, "page_size": GUIDE_PAGE,
            "client_cpu_s": round(p1 - p0, 2), "backend_cpu_s": diff(b0, b1),
            "server_cpu_s": diff(s0, s1)}, rows


def run_guide_db(args, rows, batch, page, postmaster, name):
    """execute_values over rows already decoded: the database's share of the guide's path."""
    pg_exec(args, "TRUNCATE bench_guide.market_data", fetch=False)
    conn = pg_connect(args)
    cur = conn.cursor()
    backend = conn.get_backend_pid()
    p0, b0, s0 = time.process_time(), cpu_seconds(backend), server_cpu(postmaster)
    t0 = time.monotonic()
    for i in range(0, len(rows), batch):
        execute_values(cur, GUIDE_SQL, rows[i:i + batch], page_size=page)
        conn.commit()
    t1 = time.monotonic()
    p1, b1, s1 = time.process_time(), cpu_seconds(backend), server_cpu(postmaster)
    conn.close()
    stored = pg_exec(args, "SELECT count(*) FROM bench_guide.market_data")[0][0]
    secs = t1 - t0
    return {"path": name, "rows": int(stored), "seconds": round(secs, 3),
            "rows_per_s": round(len(rows) / secs), "batch_rows": batch, "page_size": page,
            "client_cpu_s": round(p1 - p0, 2), "backend_cpu_s": diff(b0, b1),
            "server_cpu_s": diff(s0, s1)}


def postmaster_pid(args):
    """The postmaster's pid when the server runs here (the parent of our backend), else None."""
    conn = pg_connect(args)
    try:
        parent = ppid_of(conn.get_backend_pid())
    finally:
        conn.close()
    return parent if parent is not None and server_cpu(parent) is not None else None


def cleanup_archiver_rows(args, topic, tag):
    like = f"%\\_{tag}"
    pg_exec(args, """DELETE FROM market_data WHERE source_topic = %(t)s;
                     DELETE FROM market_data_rejects WHERE source_topic = %(t)s;
                     DELETE FROM ohlcv_5min_state WHERE exchange LIKE %(l)s;
                     DELETE FROM ohlcv_1hour_state WHERE exchange LIKE %(l)s;
                     DELETE FROM market_data_days WHERE exchange LIKE %(l)s;
                     DELETE FROM archiver_offsets WHERE source_topic = %(t)s""",
            {"t": topic, "l": like}, fetch=False)


def throughput_migrate(args):
    """The archiver's schema, applied by the archiver (a no-op when it is up to date)."""
    subprocess.run([str(BIN / "archiver"), "--migrate"], check=True, timeout=120,
                   capture_output=True, env={
                       **os.environ, "HIMARI_POSTGRES_HOST": args.pg_host,
                       "HIMARI_POSTGRES_PORT": str(args.pg_port),
                       "HIMARI_POSTGRES_DBNAME": args.dbname,
                       "HIMARI_POSTGRES_USER": args.pg_user,
                       "HIMARI_POSTGRES_PASSWORD_FILE": str(args.pg_password_file),
                       "HIMARI_POSTGRES_SSLMODE": "disable"})


def throughput(args):
    throughput_migrate(args)
    postmaster = postmaster_pid(args)
    start_ms = yesterday_ms() + 3_600_000
    src = quality_file(args.records, start_ms)
    day = datetime.datetime.fromtimestamp(start_ms / 1000, datetime.timezone.utc).date()
    size = src.stat().st_size
    results = []
    for rnd in range(args.rounds):
        tag = f"b{uuid.uuid4().hex[:6]}"
        data = tagged(src.read_bytes(), tag)
        path = pathlib.Path(f"/tmp/bench-archiver-{tag}.jsonl")
        path.write_bytes(data)
        del data
        topic = create_topic(args.bootstrap, "bench-archiver", PARTITIONS)
        try:
            say(f"round {rnd + 1}: loading {args.records:,} records ({size / 1e6:.0f} MB) "
                f"on {topic}")
            subprocess.run([str(BIN / "himari-sim"), "--kafka", args.bootstrap, "--topic",
                            topic, "--input", str(path), "--rate", "0"], check=True,
                           timeout=900, stderr=subprocess.DEVNULL)
            path.unlink()
            create_guide_table(args, [day, day + datetime.timedelta(days=1)])
            got = []
            say("archiver")
            ours = run_archiver(args, topic, args.records, postmaster)
            say(f"archiver: {ours['rows_per_s']:,} rows/s")
            got.append(ours)
            if args.guide:
                say("guide (Kafka, json.loads, execute_values)")
                guide, rows = run_guide_kafka(args, topic, args.records, postmaster)
                say(f"guide: {guide['rows_per_s']:,} rows/s")
                say("guide, the database alone")
                guide_db = run_guide_db(args, rows, GUIDE_BATCH, GUIDE_PAGE, postmaster,
                                        "guide_db")
                tuned = run_guide_db(args, rows, 20000, 1000, postmaster, "guide_db_tuned")
                del rows
                got += [guide, guide_db, tuned]
        finally:
            if not args.keep:
                cleanup_archiver_rows(args, topic, tag)
                pg_exec(args, "DROP SCHEMA IF EXISTS bench_guide CASCADE", fetch=False)
            delete_topic(args.bootstrap, topic)
            path.unlink(missing_ok=True)
        for r in got:
            r.update({"bench": "archiver_throughput", "round": rnd + 1,
                      "records": args.records, "record_bytes_avg": round(size / args.records),
                      "batch_max_rows": args.batch_max_rows})
        for r in got[1:]:
            r["ours_over_this"] = round(ours["rows_per_s"] / r["rows_per_s"], 2)
        results += got
    print(f"{'round':<6}{'path':<16}{'rows':>9}{'seconds':>9}{'rows/s':>10}{'ours/this':>10}"
          f"{'client cpu':>11}{'backend cpu':>12}{'server cpu':>11}", file=sys.stderr)
    for r in results:
        print(f"{r['round']:<6}{r['path']:<16}{r['rows']:>9}{r['seconds']:>9}"
              f"{r['rows_per_s']:>10}{r.get('ours_over_this', ''):>10}"
              f"{str(r['client_cpu_s']):>11}{str(r['backend_cpu_s']):>12}"
              f"{str(r['server_cpu_s']):>11}", file=sys.stderr)
    for r in results:
        print(json.dumps(r))


# ---- latency --------------------------------------------------------------------------------

def _poll_offsets(args, topic, interval_s, stop, out_q):
    """Every interval_s: max(source_offset) of market_data per partition of topic, with
    the wall-clock time the query was sent (its snapshot is taken then: a row it sees was
    committed before)."""
    conn = pg_connect(args)
    conn.set_session(autocommit=True)
    cur = conn.cursor()
    sql = """SELECT (SELECT max(source_offset) FROM market_data
                     WHERE source_topic = %s AND source_partition = p)
             FROM generate_series(0, %s) AS p ORDER BY p"""
    samples = []
    while not stop.is_set():
        t = time.time()
        cur.execute(sql, (topic, PARTITIONS - 1))
        samples.append((t, [-1 if r[0] is None else r[0] for r in cur.fetchall()]))
        left = interval_s - (time.time() - t)
        if left > 0:
            time.sleep(left)
    conn.close()
    out_q.put(samples)


def templates(n):
    """(prefix, suffix) byte pairs of quality records split around their timestamp value."""
    src = quality_file(max(n, 10_000), yesterday_ms())
    out = []
    with open(src, "rb") as f:
        for line in f:
            rec = json.loads(line)
            rec["timestamp"] = 0  # the top-level one: original_data's comes later
            b = json.dumps(rec, separators=(",", ":")).encode()
            pre, post = b.split(b'"timestamp":0', 1)
            out.append((pre + b'"timestamp":', post, rec["symbol"].encode()))
            if len(out) >= n:
                break
    return out


def latency_one(args, interval_ms, tpl, tag):
    topic = create_topic(args.bootstrap, "bench-archiver-lat", PARTITIONS)
    arch = Archiver(args, topic, HIMARI_ARCHIVER_BATCH_INTERVAL_MS=interval_ms)
    poller = None
    try:
        arch.wait_ready()
        time.sleep(2)  # group joined, partitions assigned
        stop, q = mp.Event(), mp.Queue()
        poller = mp.Process(target=_poll_offsets, args=(args, topic, args.poll_ms / 1000, stop, q))
        poller.start()
        p = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 1,
                      "enable.idempotence": True})
        sends = []  # (partition, offset, send time)

        def on_delivery(sent, err, msg):
            if err is None:
                sends.append((msg.partition(), msg.offset(), sent))
        total = args.rate * args.seconds
        t0 = time.monotonic()
        for i in range(total):
            # Sleep (not spin) when ahead: a spinning producer takes a core of two.
            ahead = t0 + i / args.rate - time.monotonic()
            if ahead > 0.0005:
                time.sleep(ahead)
            pre, post, key = tpl[i % len(tpl)]
            now = time.time()
            value = pre + str(int(now * 1000)).encode() + post
            value = value.replace(b'_TAG"', f'_{tag}"'.encode())
            while True:
                try:
                    p.produce(topic, value, key=key,
                              on_delivery=functools.partial(on_delivery, now))
                    break
                except BufferError:
                    p.poll(0.01)
            p.poll(0)
        p.flush(60)
        want = {}
        for part, off, _ in sends:
            want[part] = max(want.get(part, -1), off)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = dict(pg_exec(args, """SELECT source_partition, max(source_offset)
                                         FROM market_data WHERE source_topic = %s
                                         GROUP BY 1""", (topic,)))
            if all(got.get(k, -1) >= v for k, v in want.items()):
                break
            time.sleep(0.2)
        time.sleep(3 * args.poll_ms / 1000)
        stop.set()
        samples = q.get(timeout=60)
        poller.join(30)
        lines = arch.lines()
    finally:
        if poller is not None and poller.is_alive():
            poller.terminate()
        arch.stop()
    # Per partition: the poll times and the running max of the offsets they saw.
    times = np.array([s[0] for s in samples])
    delays, unseen = [], 0
    start = min(s[2] for s in sends) + args.warmup if sends else 0
    for part in range(PARTITIONS):
        seen = np.maximum.accumulate(np.array([s[1][part] for s in samples]))
        mine = [(off, sent) for pa, off, sent in sends if pa == part and sent >= start]
        if not mine:
            continue
        offs = np.array([m[0] for m in mine])
        sent = np.array([m[1] for m in mine])
        idx = np.searchsorted(seen, offs, side="left")
        ok = idx < len(times)
        unseen += int((~ok).sum())
        delays.append((times[idx[ok]] - sent[ok]) * 1000)
    d = np.sort(np.concatenate(delays)) if delays else np.array([])
    sql = pg_exec(args, """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x),
                                  percentile_cont(0.99) WITHIN GROUP (ORDER BY x), max(x), count(*)
                           FROM (SELECT extract(epoch FROM ingested_at - timestamp) * 1000 AS x
                                 FROM market_data WHERE source_topic = %s
                                   AND timestamp >= to_timestamp(%s)) s""",
                  (topic, start))[0]
    poll_gaps = np.diff(times) * 1000 if len(times) > 1 else np.array([0])
    rows = metric(lines, "himari_archiver_rows_total")
    batches = metric(lines, "himari_archiver_batch_seconds_count")
    if not args.keep:
        cleanup_archiver_rows(args, topic, tag)
    delete_topic(args.bootstrap, topic)
    return {"bench": "archiver_latency", "batch_interval_ms": interval_ms, "rate": args.rate,
            "seconds": args.seconds, "warmup_s": args.warmup, "records": len(sends),
            "measured": int(len(d)), "unseen": unseen,
            "p50_ms": round(float(np.percentile(d, 50)), 1) if len(d) else None,
            "p99_ms": round(float(np.percentile(d, 99)), 1) if len(d) else None,
            "max_ms": round(float(d[-1]), 1) if len(d) else None,
            "poll_ms_p50": round(float(np.percentile(poll_gaps, 50)), 1),
            "poll_ms_max": round(float(poll_gaps.max()), 1),
            "sql_ingested_minus_timestamp_ms": {
                "0.5": round(sql[0], 1) if sql[0] is not None else None,
                "0.99": round(sql[1], 1) if sql[1] is not None else None,
                "max": round(float(sql[2]), 1) if sql[2] is not None else None,
                "rows": sql[3]},
            "batches": int(batches), "rows_per_batch": round(rows / batches) if batches else None,
            "commit_delay_ms": histogram_quantiles(lines, "himari_archiver_commit_delay_seconds"),
            "batch_ms": histogram_quantiles(lines, "himari_archiver_batch_seconds")}


def latency(args):
    throughput_migrate(args)
    tpl = templates(20_000)
    # Exchanges renamed <exchange>_<tag> (a tag per run, substituted at send) so that the
    # run's candles meet no other rows.
    tpl = [(tagged(a, "TAG"), b, k) for a, b, k in tpl]
    results = []
    for rnd in range(args.rounds):
        for iv in args.intervals:
            tag = f"l{uuid.uuid4().hex[:6]}"
            say(f"round {rnd + 1}: batch_interval_ms {iv}, {args.rate}/s for {args.seconds} s")
            r = latency_one(args, iv, tpl, tag)
            r["round"] = rnd + 1
            results.append(r)
            say(f"p50 {r['p50_ms']} p99 {r['p99_ms']} max {r['max_ms']} ms")
    print(f"{'round':<6}{'interval ms':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
          f"{'rows/batch':>11}{'batch p50 ms':>13}{'sql p50':>9}{'poll ms':>8}", file=sys.stderr)
    for r in results:
        print(f"{r['round']:<6}{r['batch_interval_ms']:>12}{r['p50_ms']:>9}{r['p99_ms']:>9}"
              f"{r['max_ms']:>9}{str(r['rows_per_batch']):>11}"
              f"{str(r['batch_ms']['0.5']):>13}"
              f"{str(r['sql_ingested_minus_timestamp_ms']['0.5']):>9}"
              f"{r['poll_ms_p50']:>8}", file=sys.stderr)
    for r in results:
        print(json.dumps(r))


# ---- apply: where a batch's time goes ---------------------------------------------------------

def iso_ms(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc) \
        .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def copy_text(value: bytes, topic, partition, offset):
    """A record as the archiver's COPY text row of market_data (services/archiver/rows.c,
    add_accepted), for the clean records of quality_file (no text needs escaping)."""
    d = json.loads(value)
    vol = d.get("volume")
    issues = "{" + ",".join(f'"{i}"' for i in d.get("issues") or []) + "}"
    return "\t".join([
        iso_ms(d["timestamp"]), d["symbol"], d["exchange"], repr(float(d["price"])),
        "\\N" if vol is None else repr(float(vol)), repr(float(d["quality_score"])), issues,
        d.get("trade_id") or "\\N", d.get("side") or "\\N", d.get("type") or "trade",
        d.get("processed_at") or "\\N", topic, str(partition), str(offset)]) + "\n"


BENCH_TABLES = ("market_data", "market_data_rejects", "ohlcv_5min_state", "ohlcv_1hour_state",
                "market_data_days")


def apply(args):
    import io
    throughput_migrate(args)
    postmaster = postmaster_pid(args)
    start_ms = yesterday_ms() + 3_600_000
    src = quality_file(args.records, start_ms)
    say(f"{args.records:,} records as COPY text")
    topic = "bench-apply"
    lines = []
    with open(src, "rb") as f:
        for i, line in enumerate(f):
            lines.append(copy_text(line, topic, i % PARTITIONS, i // PARTITIONS))
    batches = ["".join(lines[i:i + args.batch_rows]) for i in range(0, len(lines),
                                                                       args.batch_rows)]
    del lines
    md_cols = ", ".join(COLUMNS)
    day = datetime.datetime.fromtimestamp(start_ms / 1000, datetime.timezone.utc).date()
    # The partitions by hand: himari_ensure_partitions() would find public's of that day.
    parts = "".join(
        f"CREATE TABLE bench_apply.market_data_{d:%Y%m%d} PARTITION OF bench_apply.market_data"
        f" FOR VALUES FROM ('{d:%Y-%m-%d} 00:00:00+00') TO"
        f" ('{d + datetime.timedelta(days=1):%Y-%m-%d} 00:00:00+00');"
        for d in (day, day + datetime.timedelta(days=1)))
    pg_exec(args, "DROP SCHEMA IF EXISTS bench_apply CASCADE; CREATE SCHEMA bench_apply;"
            "CREATE TABLE bench_apply.market_data (LIKE public.market_data INCLUDING ALL)"
            " PARTITION BY RANGE (timestamp);" +
            "".join(f"CREATE TABLE bench_apply.{t} (LIKE public.{t} INCLUDING ALL);"
                    for t in BENCH_TABLES[1:]) + parts, fetch=False)
    results = []
    try:
        conn = pg_connect(args)
        cur = conn.cursor()
        cur.execute("SET search_path = bench_apply, public")
        cur.execute("SELECT himari_session_init()")
        conn.commit()
        backend = conn.get_backend_pid()

        def empty():
            cur.execute("TRUNCATE " + ", ".join(BENCH_TABLES))
            conn.commit()

        def timed(name, body):
            empty()
            b0, s0 = cpu_seconds(backend), server_cpu(postmaster)
            t0 = time.monotonic()
            steps = body()
            secs = time.monotonic() - t0
            b1, s1 = cpu_seconds(backend), server_cpu(postmaster)
            cur.execute("SELECT count(*) FROM market_data")
            n = cur.fetchone()[0]
            conn.commit()
            r = {"bench": "archiver_apply", "pass": name, "records": args.records,
                 "batch_rows": args.batch_rows, "rows": n, "seconds": round(secs, 3),
                 "rows_per_s": round(args.records / secs),
                 "us_per_row": round(1e6 * secs / args.records, 1),
                 "backend_cpu_s": diff(b0, b1), "server_cpu_s": diff(s0, s1)}
            if steps:
                r["us_per_row_by_step"] = {k: round(1e6 * v / args.records, 1)
                                           for k, v in steps.items()}
            results.append(r)
            say(f"{name}: {r['rows_per_s']:,} rows/s")

        def copy_direct():
            for b in batches:
                cur.copy_expert(f"COPY market_data ({md_cols}) FROM STDIN", io.StringIO(b))
                conn.commit()

        timed("copy_direct", copy_direct)
        cur.execute("""SELECT string_agg(format('DROP INDEX bench_apply.%I', indexname), ';')
                       FROM pg_indexes WHERE schemaname = 'bench_apply'
                        AND tablename = 'market_data' AND indexdef NOT LIKE '%UNIQUE%'""")
        cur.execute(cur.fetchone()[0])
        conn.commit()
        timed("copy_noidx", copy_direct)
        conn.close()
    finally:
        if not args.keep:
            pg_exec(args, "DROP SCHEMA IF EXISTS bench_apply CASCADE", fetch=False)
    print(f"{'pass':<14}{'rows/s':>9}{'us/row':>8}{'backend cpu':>12}{'server cpu':>11}",
          file=sys.stderr)
    for r in results:
        print(f"{r['pass']:<14}{r['rows_per_s']:>9}{r['us_per_row']:>8}"
              f"{str(r['backend_cpu_s']):>12}{str(r['server_cpu_s']):>11}", file=sys.stderr)
        for k, v in r.get("us_per_row_by_step", {}).items():
            print(f"  {k:<22}{v:>8} us/row", file=sys.stderr)
    for r in results:
        print(json.dumps(r))


# ---- parquet --------------------------------------------------------------------------------

def parquet(args):
    results = []
    with tempfile.TemporaryDirectory(prefix="archiver-bench-pq-") as d:
        for codec in args.codecs:
            runs = []
            for _ in range(args.rounds):
                out = subprocess.run([str(BIN / "parquet-write"), "--rows", str(args.rows),
                                      "--codec", codec, "--out", f"{d}/{codec}.parquet"],
                                     check=True, capture_output=True, text=True, timeout=600)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            med = statistics.median(r["mb_per_s"] for r in runs)
            r = runs[0]
            results.append({"bench": "archiver_parquet_write", "codec": codec, "rows": r["rows"],
                            "rounds": args.rounds, "json_bytes": r["json_bytes"],
                            "parquet_bytes": r["bytes"],
                            "uncompressed_bytes": r["uncompressed_bytes"],
                            "ratio_json_to_parquet": r["ratio"],
                            "mb_per_s_median": med,
                            "mb_per_s_runs": [x["mb_per_s"] for x in runs],
                            "rows_per_s_median": round(statistics.median(
                                x["rows"] / x["seconds"] for x in runs))})
    print(f"{'codec':<8}{'rows':>9}{'JSON MB':>9}{'Parquet MB':>11}{'ratio':>7}{'MB/s':>8}"
          f"{'rows/s':>10}", file=sys.stderr)
    for r in results:
        print(f"{r['codec']:<8}{r['rows']:>9}{r['json_bytes'] / 1e6:>9.1f}"
              f"{r['parquet_bytes'] / 1e6:>11.2f}{r['ratio_json_to_parquet']:>7}"
              f"{r['mb_per_s_median']:>8}{r['rows_per_s_median']:>10}", file=sys.stderr)
    for r in results:
        print(json.dumps(r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["throughput", "latency", "apply", "parquet"])
    ap.add_argument("--bootstrap", default=os.environ.get(
        "HIMARI_KAFKA_BOOTSTRAP",
        f"127.0.0.1:{os.environ.get('HIMARI_KAFKA_PORT', PORT_BASE + 92)}"))
    ap.add_argument("--pg-host", default="127.0.0.1")
    ap.add_argument("--pg-port", type=int,
                    default=int(os.environ.get("HIMARI_PG_PORT", PORT_BASE + 432)))
    ap.add_argument("--pg-password-file", default=str(RUN_DIR / "secrets/postgres_password"))
    ap.add_argument("--pg-user", default="himari")
    ap.add_argument("--dbname", default="himari_analytics")
    ap.add_argument("--records", type=int, default=1_000_000, help="throughput: records")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds (default 1; parquet: 3, the median is reported)")
    ap.add_argument("--batch-max-rows", type=int, default=None,
                    help="throughput: archiver.batch_max_rows (default: the archiver's)")
    ap.add_argument("--archivers", type=int, default=1,
                    help="throughput: archiver processes in one consumer group")
    ap.add_argument("--no-guide", dest="guide", action="store_false",
                    help="throughput: the archiver alone (e.g. to try --batch-max-rows)")
    ap.add_argument("--stall-s", type=float, default=150,
                    help="throughput: give up when no batch committed for this long")
    ap.add_argument("--batch-rows", type=int, default=20000, help="apply: rows per batch")
    ap.add_argument("--rate", type=int, default=5000, help="latency: records/s")
    ap.add_argument("--seconds", type=int, default=30, help="latency: seconds of load")
    ap.add_argument("--warmup", type=float, default=3, help="latency: seconds left out")
    ap.add_argument("--intervals", default="1000,250,0",
                    help="latency: archiver.batch_interval_ms values, in turn")
    ap.add_argument("--poll-ms", type=float, default=10, help="latency: poll interval")
    ap.add_argument("--rows", type=int, default=1_000_000, help="parquet: rows")
    ap.add_argument("--codecs", default="zstd,snappy", help="parquet: codecs")
    ap.add_argument("--keep", action="store_true",
                    help="leave the run's rows in the database and the guide's schema")
    args = ap.parse_args()
    # A SIGTERM (timeout(1), Ctrl-C's cousin) unwinds like an error: the archiver is
    # stopped and the run's topic, rows and schema removed by the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("archiver_bench: terminated"))
    args.intervals = [int(x) for x in args.intervals.split(",")]
    args.codecs = args.codecs.split(",")
    if args.rounds is None:
        args.rounds = 3 if args.mode == "parquet" else 1
    {"throughput": throughput, "latency": latency, "apply": apply,
     "parquet": parquet}[args.mode](args)


if __name__ == "__main__":
    main()
