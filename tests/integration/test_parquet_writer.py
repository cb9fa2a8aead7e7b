"""The archiver's Parquet writer (services/archiver/parquet.c) read back by real readers.

bench/parquet-write writes synthetic trades with the writer and the same rows as JSON lines
(--emit-json); pyarrow and DuckDB must read the file to exactly those values, with the
declared types, the row groups asked for, and statistics that match the data. No server
is needed: only build/bin/parquet-write.
"""
import json
import os
import signal
import struct
import subprocess
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BIN

WRITER = BIN / "parquet-write"

EXPECTED_TYPES = {
    "ts": pa.timestamp("us", tz="UTC"),
    "symbol": pa.string(),
    "exchange": pa.string(),
    "price": pa.float64(),
    "volume": pa.float64(),
    "quality_score": pa.float32(),
    "issues": pa.string(),
    "trade_id": pa.string(),
    "side": pa.string(),
    "source_partition": pa.int32(),
    "source_offset": pa.int64(),
}
OPTIONAL = {"issues", "trade_id"}


def f32(x):
    """A JSON number as the float32 the writer stored."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def write(tmp_path, *args, rows=3000):
    out, expected = tmp_path / "trades.parquet", tmp_path / "trades.jsonl"
    res = subprocess.run([str(WRITER), "--rows", str(rows), "--out", str(out),
                          "--emit-json", str(expected), *args],
                         check=True, capture_output=True, text=True)
    summary = json.loads(res.stdout)
    with open(expected) as f:
        want = [json.loads(line) for line in f]
    assert len(want) == rows
    return out, want, summary


def arrow_rows(path):
    """Every row as plain Python values (ts as µs since the epoch)."""
    t = pq.read_table(path)
    cols = {name: t.column(name) for name in t.column_names}
    cols["ts"] = cols["ts"].cast(pa.int64())
    lists = {name: col.to_pylist() for name, col in cols.items()}
    return [dict(zip(lists, vals)) for vals in zip(*lists.values())]


def normalised(want):
    return [{**r, "quality_score": f32(r["quality_score"])} for r in want]


def check_schema(path):
    schema = pq.read_schema(path)
    assert {f.name: f.type for f in schema} == EXPECTED_TYPES
    assert {f.name for f in schema if f.nullable} == OPTIONAL


def check_statistics(path, want, row_group_rows):
    md = pq.ParquetFile(path).metadata
    assert md.created_by.startswith("himari archiver")
    assert md.num_rows == len(want)
    assert md.num_row_groups == -(-len(want) // row_group_rows)
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    for g in range(md.num_row_groups):
        rows = normalised(want[g * row_group_rows:(g + 1) * row_group_rows])
        rg = md.row_group(g)
        assert rg.num_rows == len(rows)
        for i, name in enumerate(names):
            col = rg.column(i)
            values = [r[name] for r in rows if r[name] is not None]
            st = col.statistics
            assert col.num_values == len(rows), name
            assert st.null_count == len(rows) - len(values), name
            if not values:
                assert not st.has_min_max, name
                continue
            assert st.has_min_max, name
            lo, hi = st.min, st.max
            if name == "ts":
                lo, hi = int(lo.timestamp() * 1e6 + 0.5), int(hi.timestamp() * 1e6 + 0.5)
            if name == "ts":
                assert (lo, hi) == (min(values), max(values)), name
            elif isinstance(values[0], str):  # bytewise unsigned order
                key = [v.encode() for v in values]
                assert (lo.encode() if isinstance(lo, str) else lo) == min(key), name
                assert (hi.encode() if isinstance(hi, str) else hi) == max(key), name
            else:
                assert (lo, hi) == (min(values), max(values)), name
    return md


def check_duckdb(path, want):
    got = duckdb.sql(
        f"select epoch_us(ts), symbol, exchange, price, volume, quality_score, issues, "
        f"trade_id, side, source_partition, source_offset from read_parquet('{path}')"
    ).fetchall()
    keys = list(EXPECTED_TYPES)
    assert [dict(zip(keys, r)) for r in got] == normalised(want)
    agg = duckdb.sql(
        f"select count(*), count(issues), count(trade_id), sum(source_offset), "
        f"count(distinct symbol), max(ts) > min(ts) from read_parquet('{path}')").fetchall()[0]
    assert agg == (len(want), sum(r["issues"] is not None for r in want),
                   sum(r["trade_id"] is not None for r in want),
                   sum(r["source_offset"] for r in want),
                   len({r["symbol"] for r in want}), True)


@pytest.mark.parametrize("codec", ["zstd", "snappy", "none"])
def test_each_codec_reads_back_exactly_with_nulls_and_row_groups(tmp_path, codec):
    # 2 KiB pages: every chunk has several data pages (after its dictionary page, if any).
    out, want, summary = write(tmp_path, "--codec", codec, "--row-group-rows", "700",
                               "--page-bytes", "2048")
    assert summary["rows"] == 3000 and summary["row_groups"] == 5
    assert summary["bytes"] == os.path.getsize(out)
    assert not (tmp_path / "trades.parquet.tmp").exists()
    assert any(r["issues"] is None for r in want) and any(r["issues"] for r in want)
    assert any(r["trade_id"] is None for r in want)
    check_schema(out)
    assert arrow_rows(out) == normalised(want)
    md = check_statistics(out, want, 700)
    col = md.row_group(0).column(1)  # symbol: a handful of values, dictionary encoded
    assert col.compression == {"none": "UNCOMPRESSED"}.get(codec, codec.upper())
    assert "RLE_DICTIONARY" in col.encodings and col.has_dictionary_page
    check_duckdb(out, want)


def test_many_distinct_strings_fall_back_to_plain_and_read_back(tmp_path):
    out, want, summary = write(tmp_path, "--codec", "zstd", "--row-group-rows", "2000",
                               "--dict-max-entries", "500", rows=5000)
    assert summary["dict_fallbacks"] >= 3  # trade_id in each of the 3 row groups
    md = pq.ParquetFile(out).metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    for g in range(md.num_row_groups):
        trade_id = md.row_group(g).column(names.index("trade_id"))
        assert "RLE_DICTIONARY" not in trade_id.encodings and not trade_id.has_dictionary_page
        side = md.row_group(g).column(names.index("side"))
        assert "RLE_DICTIONARY" in side.encodings
    assert arrow_rows(out) == normalised(want)
    check_statistics(out, want, 2000)
    check_duckdb(out, want)


def test_one_big_row_group_with_several_pages(tmp_path):
    out, want, _ = write(tmp_path, "--codec", "snappy", rows=200000)
    # 200,000 doubles are 1.6 MB of PLAIN values: two pages of the default 1 MiB.
    assert pq.ParquetFile(out).metadata.row_group(0).column(3).total_uncompressed_size > 1 << 20
    md = pq.ParquetFile(out).metadata
    assert md.num_row_groups == 1
    assert arrow_rows(out) == normalised(want)
    check_duckdb(out, want)


def test_a_killed_write_leaves_the_old_file_and_no_half_file(tmp_path):
    out = tmp_path / "trades.parquet"
    out.write_bytes(b"the previous day's file")
    proc = subprocess.Popen([str(WRITER), "--rows", "5000000", "--codec", "none",
                             "--out", str(out)], stdout=subprocess.DEVNULL)
    tmp = tmp_path / "trades.parquet.tmp"
    deadline = time.monotonic() + 180  # the sanitizer build is slow
    while not (tmp.exists() and tmp.stat().st_size > 0) and time.monotonic() < deadline:
        assert proc.poll() is None, "the writer ended before it was killed"
        time.sleep(0.01)
    assert tmp.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == b"the previous day's file"
    with pytest.raises(Exception):
        pq.read_table(tmp)  # the partial file has no footer: no reader takes it


def test_an_unwritable_directory_leaves_no_file(tmp_path):
    missing = tmp_path / "no-such-dir" / "trades.parquet"
    res = subprocess.run([str(WRITER), "--rows", "10", "--out", str(missing)],
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "trades.parquet.tmp" in res.stderr
    assert list(tmp_path.iterdir()) == []
