"""The archiver into real PostgreSQL from a real broker: one row per input record (in
market_data or, with its reason, in market_data_rejects), none twice, after a redelivery,
kill -9 mid-batch and a PostgreSQL restart mid-stream; candles equal to SQL over
market_data and to a Python computation from the input; migrations idempotent."""
import random
import struct
import subprocess
import time

import requests

from archiver_env import (archiver_env, assert_candles_equal, count_rows, db_candles, duplicates,
                          expected_rows, input_trades, new_topic, postgres, produce,
                          python_candles, quality_records, query, start_archiver, tag,
                          trades_of, wait_rows)
from conftest import BIN, stack

__all__ = ["postgres"]

SQL_CANDLES = """
SELECT extract(epoch FROM date_bin(%(width)s::interval, timestamp, 'epoch'))::bigint AS b,
       symbol, exchange,
       (array_agg(price ORDER BY timestamp, source_partition, source_offset))[1],
       max(price), min(price),
       (array_agg(price ORDER BY timestamp DESC, source_partition DESC, source_offset DESC))[1],
       sum(coalesce(volume, 0)), count(*), avg(quality_score), stddev_samp(price),
       max(price) - min(price)
FROM market_data WHERE exchange LIKE %(like)s AND type = 'trade' GROUP BY 1, 2, 3"""


def sql_candles(width: str, like: str):
    rows = query(SQL_CANDLES, {"width": width, "like": like})
    return {(r[0], r[1], r[2]): {"open": r[3], "high": r[4], "low": r[5], "close": r[6],
                                 "volume": r[7], "trade_count": r[8], "avg_quality": r[9],
                                 "price_stddev": r[10], "price_range": r[11]} for r in rows}


def check_candles(t, want_trades):
    like = f"%\\_{t}"
    for view, width, secs in (("ohlcv_5min", "5 minutes", 300), ("ohlcv_1hour", "1 hour", 3600)):
        got = db_candles(view, like)
        assert got, f"{view}: no candles"
        assert_candles_equal(got, sql_candles(width, like), f"{view} vs SQL")
        assert_candles_equal(got, python_candles(want_trades, secs), f"{view} vs Python")


def f32(x):
    return None if x is None else struct.unpack("f", struct.pack("f", x))[0]


def row_of(rec):
    """A valid record as its market_data row should read (the test's own reading)."""
    return (rec["timestamp"], rec["symbol"], rec["exchange"], float(rec["price"]),
            None if rec.get("volume") is None else float(rec["volume"]),
            f32(rec["quality_score"]), list(rec.get("issues") or []), rec.get("trade_id"),
            rec.get("side"), rec.get("type") or "trade")


def table_rows(topic):
    got = query("""SELECT (extract(epoch FROM timestamp) * 1000)::BIGINT, symbol, exchange,
                          price, volume, quality_score, issues, trade_id, side, type
                   FROM market_data WHERE source_topic = %s""", (topic,))
    return sorted((*r[:5], f32(r[5]), *r[6:]) for r in got)


def test_rows_rejects_and_candles_with_out_of_order_input_and_a_redelivery(
        kafka, admin, postgres, service_factory, tmp_path):
    t = tag()
    records = quality_records(tmp_path, 8000, seed=31, exchange_tag=t)
    # Out of order: the records go to random partitions in a shuffled order, so the
    # archiver sees each bucket's trades in no particular order.
    rnd = random.Random(5)
    order = list(range(len(records)))
    rnd.shuffle(order)
    records = [records[i] for i in order]
    partitions = [rnd.randrange(6) for _ in records]
    topic = new_topic(admin)
    produce(topic, records, partitions_of=lambda i, _line: partitions[i])
    svc = start_archiver(service_factory, topic, f"g-{t}", HIMARI_ARCHIVER_BATCH_MAX_ROWS=700)
    md, rj = wait_rows(topic, len(records))
    accepted, rejected = expected_rows(records)
    got = dict(query("""SELECT reason, count(*) FROM market_data_rejects WHERE source_topic = %s
                        GROUP BY 1""", (topic,)))
    assert got == dict(rejected) and rejected["parse_error"] > 0
    assert md == len(accepted)
    assert duplicates(topic) == 0
    assert table_rows(topic) == sorted(row_of(r) for r in accepted)
    detail = query("""SELECT field, detail, octet_length(record) FROM market_data_rejects
                      WHERE source_topic = %s AND reason = 'price_not_positive' LIMIT 1""",
                   (topic,))
    assert detail and detail[0][0] == "price" and "not above 0" in detail[0][1] \
        and detail[0][2] > 0
    want = input_trades(records, partitions)
    check_candles(t, want)
    svc.stop()

    # A redelivery: every record again, under another group. Nothing changes; every record
    # (valid or rejected) counts as a duplicate, none as inserted or rejected.
    before = query("SELECT * FROM ohlcv_5min WHERE exchange LIKE %s ORDER BY 1, 2, 3",
                   (f"%\\_{t}",))
    again = start_archiver(service_factory, topic, f"g2-{t}")
    deadline = time.time() + 90
    while time.time() < deadline:
        dup = again.metric("himari_archiver_rows_total", 'result="duplicate"')
        if dup >= len(records):
            break
        time.sleep(0.5)
    assert again.metric("himari_archiver_rows_total", 'result="duplicate"') == len(records)
    assert again.metric("himari_archiver_rows_total", 'result="inserted"') == 0
    assert again.metric("himari_archiver_rows_total", 'result="rejected"') == 0
    assert query("SELECT * FROM ohlcv_5min WHERE exchange LIKE %s ORDER BY 1, 2, 3",
                 (f"%\\_{t}",)) == before
    assert query("SELECT count(*) FROM market_data WHERE source_topic = %s",
                 (topic,))[0][0] == md
    check_candles(t, want)
    again.stop()


def test_kill9_mid_batch_loses_and_doubles_nothing(kafka, admin, postgres, service_factory,
                                                    tmp_path):
    t = tag()
    records = quality_records(tmp_path, 40000, seed=32, exchange_tag=t, rate=200)
    topic = new_topic(admin)
    produce(topic, records)
    accepted, rejected = expected_rows(records)
    group = f"g-{t}"
    backlog_at_kill = []
    for _ in range(3):
        svc = start_archiver(service_factory, topic, group, HIMARI_ARCHIVER_BATCH_MAX_ROWS=2000,
                             HIMARI_ARCHIVER_BATCH_INTERVAL_MS=5000)
        deadline = time.time() + 60
        while time.time() < deadline and svc.metric("himari_archiver_backlog_rows") == 0 \
                and sum(count_rows(topic)) < len(records):
            time.sleep(0.05)
        time.sleep(random.uniform(0.05, 0.4))
        backlog_at_kill.append(svc.metric("himari_archiver_backlog_rows"))
        svc.kill9()
    assert any(b > 0 for b in backlog_at_kill), f"no kill hit a batch: {backlog_at_kill}"
    svc = start_archiver(service_factory, topic, group)
    md, rj = wait_rows(topic, len(records), timeout=180)
    assert (md, rj) == (len(accepted), sum(rejected.values()))
    assert duplicates(topic) == 0
    check_candles(t, trades_of(f"%\\_{t}"))  # Python over the stored trades
    svc.stop()


def test_postgres_restart_mid_stream(kafka, admin, postgres, service_factory, tmp_path):
    t = tag()
    records = quality_records(tmp_path, 20000, seed=33, exchange_tag=t, rate=200)
    topic = new_topic(admin)
    accepted, rejected = expected_rows(records)
    svc = start_archiver(service_factory, topic, f"g-{t}", HIMARI_ARCHIVER_BATCH_MAX_ROWS=1000)
    half = len(records) // 2
    produce(topic, records[:half])
    wait_rows(topic, half // 2, timeout=60)
    stack("stop", "postgres")
    produce(topic, records[half:])
    deadline = time.time() + 30
    status = {}
    while time.time() < deadline:
        status = requests.get(svc.url("/status"), timeout=5).json()
        if int(status["details"]["backlog_rows"]) > 0 and status["details"]["postgres"] != "READY":
            break
        time.sleep(0.2)
    assert status["details"]["postgres"] not in ("READY", "BUSY"), status
    assert int(status["details"]["backlog_rows"]) > 0, status
    assert svc.metric("himari_archiver_postgres_up") == 0
    assert requests.get(svc.url("/readyz"), timeout=5).status_code == 503
    time.sleep(2)
    stack("start", "postgres")
    md, rj = wait_rows(topic, len(records), timeout=120)
    assert (md, rj) == (len(accepted), sum(rejected.values()))
    assert duplicates(topic) == 0
    assert svc.metric("himari_archiver_postgres_up") == 1
    svc.stop()


def schema_snapshot():
    return query("""SELECT table_name, column_name, data_type FROM information_schema.columns
                    WHERE table_schema = 'public' ORDER BY 1, 2"""), \
        query("""SELECT p.proname, md5(p.prosrc) FROM pg_proc p
                 JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'public' ORDER BY 1"""), \
        query("SELECT version, checksum FROM schema_migrations ORDER BY 1")


def test_migrations_run_twice_change_nothing(postgres):
    before = schema_snapshot()
    assert before[2], "no migration recorded"
    out = subprocess.run([str(BIN / "archiver"), "--migrate"], env=archiver_env(), check=True,
                         timeout=60, capture_output=True, text=True).stdout
    assert "storage plain, 0 migration(s) applied" in out, out
    assert schema_snapshot() == before
    for view in ("ohlcv_5min", "ohlcv_1hour"):
        cols = [r[0] for r in query("""SELECT column_name FROM information_schema.columns
                                       WHERE table_name = %s ORDER BY ordinal_position""",
                                    (view,))]
        assert cols == ["bucket", "symbol", "exchange", "open", "high", "low", "close", "volume",
                        "trade_count", "avg_quality", "price_stddev", "price_range"]


def test_a_batch_larger_than_the_socket_takes_at_once_commits(kafka, admin, postgres,
                                                              service_factory, tmp_path):
    """One COPY of ~6 MB (40,000 rows in a single batch): libpq cannot hand it to the socket
    in one go, and the rest must follow when the socket is writable (a stall here held the
    batch until the statement timeout, then resent it for ever)."""
    t = tag()
    records = quality_records(tmp_path, 40000, seed=47, exchange_tag=t, rate=400)
    topic = new_topic(admin)
    produce(topic, records)
    start = time.time()
    start_archiver(service_factory, topic, f"g-{t}", HIMARI_ARCHIVER_BATCH_MAX_ROWS=100000,
                   HIMARI_ARCHIVER_BATCH_INTERVAL_MS=5000)
    md, rj = wait_rows(topic, len(records), timeout=90)
    accepted, _ = expected_rows(records)
    assert md == len(accepted) and duplicates(topic) == 0
    assert time.time() - start < 90
