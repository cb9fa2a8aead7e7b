"""Shared set-up for the archiver's integration tests (real broker, real PostgreSQL, real S3
server): an input of quality records that covers what market_data must take and what it
must reject, the archiver started against the test stack, and independent computations of
what the database must hold (rows per record, candles) to compare with.

Tests share one database; each gives its records a unique exchange name ("binance_1a2b3c")
and its own topic, so rows and candles of one test never meet another's."""
import collections
import datetime
import decimal
import json
import math
import os
import pathlib
import subprocess
import time
import uuid

import psycopg2
import pytest

from conftest import BIN, BOOTSTRAP, HENV, RUN_DIR, create_topic, stack

PG_PORT = int(HENV["HIMARI_PG_PORT"])
PG_PASSWORD_FILE = RUN_DIR / "secrets/postgres_password"
S3_ENDPOINT = f"http://127.0.0.1:{HENV['HIMARI_S3_PORT']}"
S3_BUCKET = HENV["HIMARI_S3_BUCKET"]
DAY_MS = 86_400_000


@pytest.fixture(scope="session")
def postgres():
    """The test stack's PostgreSQL, migrated by the archiver itself."""
    stack("start", "postgres")
    subprocess.run([str(BIN / "archiver"), "--migrate"], env=archiver_env(), check=True,
                   timeout=60, capture_output=True)
    return PG_PORT


@pytest.fixture(scope="session")
def s3_server():
    stack("start", "s3")
    return S3_ENDPOINT


def connect():
    return psycopg2.connect(host="127.0.0.1", port=PG_PORT, dbname="himari_analytics",
                            user="himari", password=PG_PASSWORD_FILE.read_text().strip())


def query(sql, args=()):
    with connect() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def archiver_env(**extra) -> dict:
    """Environment overrides that point the archiver at the test stack."""
    env = {
        "HIMARI_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "HIMARI_POSTGRES_PORT": str(PG_PORT),
        "HIMARI_POSTGRES_PASSWORD_FILE": str(PG_PASSWORD_FILE),
        "HIMARI_POSTGRES_SSLMODE": "disable",
        "HIMARI_ARCHIVE_ENABLED": "false",
        "HIMARI_LOG_LEVEL": "info",
    }
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_archiver(service_factory, topic: str, group: str, **extra):
    env = archiver_env(HIMARI_ARCHIVER_INPUT_TOPIC=topic, HIMARI_ARCHIVER_GROUP_ID=group,
                       **extra)
    svc = service_factory("archiver", env={**os.environ, **env})
    svc.wait_ready(timeout=60)
    return svc


def yesterday_start_ms() -> int:
    now = int(time.time() * 1000)
    return (now // DAY_MS - 1) * DAY_MS


def quality_records(tmp: pathlib.Path, count: int, seed: int, exchange_tag: str,
                    start_ms: int = None, rate: int = 50, anomaly_rate: float = 0.02):
    """Quality records (bytes, one per line) of a simulated feed: the validator's replay of
    himari-sim, exchanges renamed <exchange>_<tag>. Includes PARSE_ERROR records and
    liquidations and transfers (the simulator's defaults), all timed in one UTC day
    (yesterday, unless start_ms)."""
    start_ms = yesterday_start_ms() + 3_600_000 if start_ms is None else start_ms
    raw, quality = tmp / f"raw-{seed}.jsonl", tmp / f"quality-{seed}.jsonl"
    subprocess.run([str(BIN / "himari-sim"), "--seed", str(seed), "--count", str(count),
                    "--rate", str(rate), "--start-ms", str(start_ms), "--anomaly-rate",
                    str(anomaly_rate), "--liquidation-rate", "0.01", "--out", str(raw)],
                   check=True, timeout=120)
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(raw), "--output",
                    str(quality)], check=True, timeout=300, stderr=subprocess.DEVNULL)
    out = []
    for line in quality.read_bytes().splitlines():
        rec = json.loads(line)
        if rec.get("exchange"):
            rec["exchange"] = f"{rec['exchange']}_{exchange_tag}"
        else:
            rec["exchange"] = f"unknown_{exchange_tag}"
        out.append(json.dumps(rec, separators=(",", ":")).encode())
    return out


def tag() -> str:
    return uuid.uuid4().hex[:8]


def expected_rows(records):
    """(records market_data takes, {reason: count} of the others): the rules of
    services/archiver/rows.c restated (the test's own reading of the spec)."""
    accepted, rejected = [], collections.Counter()
    for line in records:
        rec = json.loads(line)
        issues = rec.get("issues") or []
        if "PARSE_ERROR" in issues:
            rejected["parse_error"] += 1
        elif rec.get("type") == "transfer":
            rejected["not_a_trade"] += 1
        elif any(rec.get(f) is None for f in ("timestamp", "symbol", "exchange")):
            rejected["missing_field"] += 1
        elif rec.get("price") is None:
            rejected["missing_price"] += 1
        elif not rec["price"] > 0:
            rejected["price_not_positive"] += 1
        elif rec.get("volume") is not None and rec["volume"] < 0:
            rejected["volume_negative"] += 1
        else:
            accepted.append(rec)
    return accepted, rejected


def produce(topic: str, records, partitions_of=None):
    """Produce records (bytes) to topic; partitions_of(i, record) picks a partition (None:
    by key = symbol). Waits for every delivery."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True,
                  "linger.ms": 20})
    failed = []
    for i, line in enumerate(records):
        key = (json.loads(line).get("symbol") or "").encode()
        kw = {}
        if partitions_of:
            kw["partition"] = partitions_of(i, line)
        while True:
            try:
                p.produce(topic, value=line, key=key,
                          on_delivery=lambda err, _m: err and failed.append(err), **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    p.flush(60)
    assert not failed, failed[:3]


def count_rows(topic: str):
    """(market_data rows, rejects rows) of one test's topic."""
    md = query("SELECT count(*) FROM market_data WHERE source_topic = %s", (topic,))[0][0]
    rj = query("SELECT count(*) FROM market_data_rejects WHERE source_topic = %s",
               (topic,))[0][0]
    return md, rj


def wait_rows(topic: str, total: int, timeout: float = 120.0, during=None):
    """Wait until market_data + market_data_rejects hold `total` rows of the topic."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        md, rj = count_rows(topic)
        last = (md, rj)
        if md + rj >= total:
            return last
        if during:
            during(md + rj)
        time.sleep(0.3)
    raise AssertionError(f"{topic}: {last} rows after {timeout}s, want {total} in all")


def duplicates(topic: str) -> int:
    return query("""SELECT count(*) FROM (SELECT source_partition, source_offset FROM market_data
                    WHERE source_topic = %s GROUP BY 1, 2 HAVING count(*) > 1) d""",
                 (topic,))[0][0]


def python_candles(rows, width_s: int):
    """Candles computed in Python from (ts_us, partition, offset, symbol, exchange, price,
    volume, quality) trades: open/close by (ts, partition, offset), exact sums."""
    groups = collections.defaultdict(list)
    for r in rows:
        ts_us, part, off, symbol, exchange, price, volume, quality = r
        bucket = ts_us // (width_s * 1_000_000) * width_s
        groups[(bucket, symbol, exchange)].append(r)
    out = {}
    for key, trades in groups.items():
        trades.sort(key=lambda r: (r[0], r[1], r[2]))
        prices = [decimal.Decimal(repr(t[5])) for t in trades]
        n = len(trades)
        mean = sum(prices) / n
        var = sum((p - mean) ** 2 for p in prices) / (n - 1) if n > 1 else None
        out[key] = {
            "open": trades[0][5], "close": trades[-1][5],
            "high": max(t[5] for t in trades), "low": min(t[5] for t in trades),
            "volume": float(sum(decimal.Decimal(repr(t[6])) for t in trades)),
            "trade_count": n,
            "avg_quality": float(sum(decimal.Decimal(repr(t[7])) for t in trades) / n),
            "price_stddev": math.sqrt(float(var)) if var is not None else None,
            "price_range": max(t[5] for t in trades) - min(t[5] for t in trades),
        }
    return out


def db_candles(view: str, exchange_like: str):
    rows = query(f"""SELECT extract(epoch FROM bucket)::bigint, symbol, exchange, open, high,
                            low, close, volume, trade_count, avg_quality, price_stddev,
                            price_range
                     FROM {view} WHERE exchange LIKE %s""", (exchange_like,))
    return {(r[0], r[1], r[2]): {"open": r[3], "high": r[4], "low": r[5], "close": r[6],
                                 "volume": r[7], "trade_count": r[8], "avg_quality": r[9],
                                 "price_stddev": r[10], "price_range": r[11]} for r in rows}


def input_trades(records, partitions):
    """Trades of the input as python_candles wants them, with the (partition, offset) each
    record got when produced in order to the given partitions (a fresh topic)."""
    import struct
    next_offset = collections.Counter()
    out = []
    for line, part in zip(records, partitions):
        off = next_offset[part]
        next_offset[part] += 1
        rec = json.loads(line)
        if rec.get("type", "trade") != "trade":
            continue
        ts = rec.get("timestamp")
        if ts is None or rec.get("price") is None or not rec["price"] > 0 \
                or "PARSE_ERROR" in (rec.get("issues") or []) or rec.get("symbol") is None \
                or (rec.get("volume") is not None and rec["volume"] < 0):
            continue
        ts_us = parse_ts_us(ts)
        q32 = struct.unpack("f", struct.pack("f", rec["quality_score"]))[0]
        out.append((ts_us, part, off, rec["symbol"], rec["exchange"], rec["price"],
                    rec.get("volume") or 0.0, q32))
    return out


def parse_ts_us(ts) -> int:
    if isinstance(ts, (int, float)):
        return int(ts) * 1000
    d = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1_000_000 + d.microsecond


def trades_of(exchange_like: str):
    """market_data trades of a test as python_candles wants them."""
    return query("""SELECT (extract(epoch FROM timestamp) * 1000000)::bigint, source_partition,
                           source_offset, symbol, exchange, price, coalesce(volume, 0),
                           quality_score
                    FROM market_data WHERE exchange LIKE %s AND type = 'trade'""",
                 (exchange_like,))


def assert_candles_equal(got, want, what):
    assert set(got) == set(want), f"{what}: buckets differ: " \
        f"{sorted(set(got) ^ set(want))[:5]}"
    for key, w in want.items():
        g = got[key]
        for field in ("open", "close", "high", "low", "trade_count"):
            assert g[field] == w[field], f"{what} {key} {field}: {g[field]} != {w[field]}"
        for field, tol in (("volume", 1e-9), ("avg_quality", 1e-6), ("price_range", 1e-9)):
            assert math.isclose(g[field], w[field], rel_tol=tol, abs_tol=1e-9), \
                f"{what} {key} {field}: {g[field]} != {w[field]}"
        if w["price_stddev"] is None:
            assert g["price_stddev"] is None, f"{what} {key}: stddev of one trade"
        else:
            assert math.isclose(g["price_stddev"], w["price_stddev"], rel_tol=1e-6,
                                abs_tol=1e-9), f"{what} {key} price_stddev"


def new_topic(admin, partitions=6):
    return create_topic(admin, partitions=partitions, prefix="arch")
