"""The archiver's cold archive with real PostgreSQL, a real broker and the real S3 server
(versitygw): Parquet files per (date, exchange) in the Hive layout, read back by pyarrow and
by DuckDB equal to market_data; written on demand (archiver --export-day) to a directory and
by the day-close scheduler to S3, where boto3 lists the layout; a late row makes its day due
again and the file is replaced with it. (An upload interrupted by an S3 restart is
tests/integration/test_s3_client.py: the same client code.)"""
import datetime
import io
import json
import os
import re
import subprocess
import time

import boto3
import duckdb
import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from archiver_env import (DAY_MS, S3_BUCKET, S3_ENDPOINT, archiver_env, new_topic, postgres,
                          produce, quality_records, query, s3_server, start_archiver, tag,
                          wait_rows, yesterday_start_ms)
from conftest import BIN, RUN_DIR

__all__ = ["postgres", "s3_server"]

COLUMNS = ["timestamp", "symbol", "price", "volume", "quality_score", "issues", "trade_id",
           "side", "type", "processed_at", "ingested_at", "source_topic", "source_partition",
           "source_offset"]
KEY_RE = re.compile(r"^market_data/date=(\d{4}-\d{2}-\d{2})/exchange=([^/]+)/part-0\.parquet$")


def table_rows(date: str, exchange: str):
    """market_data's rows of one (date, exchange) in the archive's order, as Python values
    comparable with pyarrow's (issues comma-joined, REAL as float32)."""
    rows = query("""SELECT timestamp, symbol, price, volume, quality_score,
                           array_to_string(issues, ','), trade_id, side, type, processed_at,
                           ingested_at, source_topic, source_partition, source_offset
                    FROM market_data WHERE exchange = %s
                      AND timestamp >= %s::date AND timestamp < %s::date + 1
                    ORDER BY timestamp, source_partition, source_offset""",
                 (exchange, date, date))
    return [normalise(dict(zip(COLUMNS, r))) for r in rows]


def normalise(row: dict) -> dict:
    out = dict(row)
    out["quality_score"] = float(np.float32(row["quality_score"]))
    for k in ("timestamp", "processed_at", "ingested_at"):
        if out[k] is not None:
            out[k] = out[k].astimezone(datetime.timezone.utc)
    return out


def parquet_rows(table):
    return [normalise({c: r[c] for c in COLUMNS}) for r in table.to_pylist()]


def load(service_factory, admin, tmp_path, t, days=2):
    """The simulator's records (several exchanges) on `days` closed UTC days into
    market_data; returns the topic, the (date, exchange) pairs that hold rows, the records."""
    topic = new_topic(admin)
    records = []
    for d in range(days):
        start = yesterday_start_ms() - d * DAY_MS + 3_600_000
        records += quality_records(tmp_path, 1500, seed=70 + d, exchange_tag=t, start_ms=start)
    produce(topic, records)
    svc = start_archiver(service_factory, topic, f"g-{t}")
    wait_rows(topic, len(records))
    svc.stop()
    pairs = query("""SELECT DISTINCT (timestamp AT TIME ZONE 'UTC')::date::text, exchange
                     FROM market_data WHERE source_topic = %s ORDER BY 1, 2""", (topic,))
    assert len(pairs) >= 2 * days, pairs
    return topic, pairs, records


def test_export_day_to_a_directory_reads_back_equal_in_pyarrow_and_duckdb(
        kafka, admin, postgres, service_factory, tmp_path):
    t = tag()
    _topic, pairs, _records = load(service_factory, admin, tmp_path, t, days=1)
    date = pairs[0][0]
    ours = sorted(ex for d, ex in pairs if d == date)
    archive = tmp_path / "archive"
    env = {**os.environ, **archiver_env(HIMARI_ARCHIVE_DIRECTORY=archive,
                                        HIMARI_S3_ENDPOINT="")}
    # One exchange, then the whole day: every exchange of the day that day (other tests'
    # included: the database is shared), ours among them.
    one = subprocess.run([str(BIN / "archiver"), "--export-day", date, "--exchange", ours[0]],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr + one.stdout
    assert re.search(r"1 file\(s\) written, 0 failed", one.stdout), one.stdout
    assert re.search(r"\d+ rows, [\d.]+ MB zstd \([\d.]+:1 vs the rows as JSON lines\)",
                     one.stdout), one.stdout
    every = subprocess.run([str(BIN / "archiver"), "--export-day", date], env=env,
                           capture_output=True, text=True, timeout=600)
    assert every.returncode == 0, every.stderr + every.stdout

    for exchange in ours:
        path = archive / f"market_data/date={date}/exchange={exchange}/part-0.parquet"
        assert path.is_file(), sorted(p.name for p in archive.rglob("*"))
        want = table_rows(date, exchange)
        assert want
        # pyarrow, the file alone and the dataset with its Hive partitions.
        assert parquet_rows(pq.read_table(path)) == want
        ds = pads.dataset(archive / "market_data", format="parquet", partitioning="hive")
        part = ds.to_table(filter=(pads.field("exchange") == exchange)
                           & (pads.field("date") == date))
        assert part.num_rows == len(want)
        assert parquet_rows(part.sort_by([("timestamp", "ascending"),
                                          ("source_partition", "ascending"),
                                          ("source_offset", "ascending")])) == want
        # DuckDB over the whole tree, its own reader and its own Hive partitioning.
        con = duckdb.connect()
        glob = str(archive / "market_data/*/*/*.parquet")
        got = con.execute(f"""SELECT count(*), sum(price), min(timestamp), max(source_offset),
                                     count(trade_id), count(DISTINCT symbol)
                              FROM read_parquet('{glob}', hive_partitioning = true)
                              WHERE exchange = ? AND date = ?::DATE""",
                          [exchange, date]).fetchone()
        db = query("""SELECT count(*), sum(price), min(timestamp), max(source_offset),
                             count(trade_id), count(DISTINCT symbol)
                      FROM market_data WHERE exchange = %s
                        AND timestamp >= %s::date AND timestamp < %s::date + 1""",
                   (exchange, date, date))[0]
        assert got[0] == db[0] and got[3] == db[3] and got[4] == db[4] and got[5] == db[5]
        assert abs(got[1] - db[1]) <= 1e-9 * abs(db[1])
        assert got[2].replace(tzinfo=datetime.timezone.utc) == db[2]
        rows_dd = con.execute(f"SELECT * EXCLUDE (date, exchange) FROM read_parquet('{path}') "
                              "ORDER BY timestamp, source_partition, source_offset").fetchall()
        assert len(rows_dd) == len(want)
        assert [r[0].replace(tzinfo=datetime.timezone.utc) for r in rows_dd] == \
            [w["timestamp"] for w in want]
        # The ledger: one row, with the rows the file holds.
        rec = query("SELECT rows, key, destination, codec FROM archive_exports "
                    "WHERE date = %s AND exchange = %s", (date, exchange))
        assert rec == [(len(want), f"market_data/date={date}/exchange={exchange}/part-0.parquet",
                        str(path), "zstd")]


def test_bad_arguments_are_refused_clearly(postgres):
    env = {**os.environ, **archiver_env()}
    bad = subprocess.run([str(BIN / "archiver"), "--export-day", "2026-02-30"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "'2026-02-30' is not a date" in bad.stderr
    empty = subprocess.run([str(BIN / "archiver"), "--export-day", "1999-01-01"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert empty.returncode == 1 and "no rows in market_data on 1999-01-01" in empty.stderr


def boto3_client():
    return boto3.client("s3", endpoint_url=S3_ENDPOINT, region_name="us-east-1",
                        aws_access_key_id=(RUN_DIR / "secrets/s3_access_key").read_text().strip(),
                        aws_secret_access_key=(RUN_DIR / "secrets/s3_secret_key")
                        .read_text().strip())


def listing(s3):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET,
                                                             Prefix="market_data/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def wait_exported(pairs, rows_of, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = {(d, ex): n for d, ex, n in query(
            "SELECT date::text, exchange, rows FROM archive_exports WHERE destination LIKE 's3://%%'")}
        if all(got.get(p) == rows_of(p) for p in pairs):
            return
        time.sleep(1.0)
    raise AssertionError(f"not exported in {timeout}s: "
                         f"{[(p, got.get(p), rows_of(p)) for p in pairs if got.get(p) != rows_of(p)]}")


def rows_in_table(pair):
    return query("""SELECT count(*) FROM market_data WHERE exchange = %s
                    AND timestamp >= %s::date AND timestamp < %s::date + 1""",
                 (pair[1], pair[0], pair[0]))[0][0]


def s3_rows(s3, date, exchange):
    body = s3.get_object(Bucket=S3_BUCKET, Key=f"market_data/date={date}/exchange={exchange}/"
                         "part-0.parquet")["Body"].read()
    return parquet_rows(pq.read_table(io.BytesIO(body)))


def test_closed_days_go_to_s3_by_themselves_and_a_late_row_replaces_its_file(
        kafka, admin, postgres, s3_server, service_factory, tmp_path):
    t = tag()
    topic, pairs, records = load(service_factory, admin, tmp_path, t, days=2)
    pairs = [tuple(p) for p in pairs]
    # The service with its scheduler: checks every second, days close at once (grace 0).
    svc = start_archiver(
        service_factory, topic, f"g-{t}", HIMARI_ARCHIVE_ENABLED="true",
        HIMARI_ARCHIVE_DIRECTORY=tmp_path / "staging", HIMARI_ARCHIVE_GRACE_S=0,
        HIMARI_ARCHIVE_CHECK_INTERVAL_S=1, HIMARI_ARCHIVE_CODEC="snappy",
        HIMARI_S3_ENDPOINT=S3_ENDPOINT,
        HIMARI_S3_ACCESS_KEY_FILE=RUN_DIR / "secrets/s3_access_key",
        HIMARI_S3_SECRET_KEY_FILE=RUN_DIR / "secrets/s3_secret_key")
    wait_exported(pairs, rows_in_table)
    s3 = boto3_client()
    keys = listing(s3)
    for date, exchange in pairs:
        assert f"market_data/date={date}/exchange={exchange}/part-0.parquet" in keys
        assert s3_rows(s3, date, exchange) == table_rows(date, exchange)
    assert all(KEY_RE.match(k) for k in keys), [k for k in keys if not KEY_RE.match(k)][:5]
    assert svc.metric("himari_archiver_archive_exports_total", '{result="ok"}') >= len(pairs)
    assert svc.metric("himari_archiver_archive_exports_total", '{result="failed"}') == 0
    assert not list((tmp_path / "staging").rglob("*.parquet")), "staging files left behind"

    # A late trade for the oldest day: the day is due again and its file replaced.
    date, exchange = pairs[0]
    late = next(r for r in map(json.loads, records)
                if r.get("exchange") == exchange and r.get("type") == "trade"
                and (r.get("price") or 0) > 0 and not r.get("issues"))
    late.update(timestamp=f"{date}T23:59:59.123456Z", trade_id=f"late-{t}")
    before = rows_in_table((date, exchange))
    produce(topic, [json.dumps(late).encode()])
    wait_exported([(date, exchange)], lambda _p: before + 1)
    rows = s3_rows(s3, date, exchange)
    assert len(rows) == before + 1 and rows == table_rows(date, exchange)
    assert rows[-1]["trade_id"] == f"late-{t}"
    assert svc.stop() == 0
