"""FeatureService over gRPC (grpcio, as a strategy calls it) against a running
feature-engine on a real broker: every method's answers equal the replay of the same input,
errors carry the right status and a message naming the field, deadlines are honoured, and
StreamFeatures pushes updates, and a consumer that did not read gets the current value. Redis is left unreachable on purpose: the service answers from memory.
"""
import json
import math
import threading
import time

import grpc
import pytest

from conftest import BIN, ROOT, consume_all
from himari_grpc import features_stub, modules
from test_features_kafka import corpus, env_for, topics, wait_produced  # noqa: F401 (fixtures)
from validator_env import produce_file


def as_dict(features):
    return {k: v for k, v in features.values.items()}


def same(got: dict, want: dict):
    """got: a Features' values map; want: a replay JSON block (null = absent)."""
    keys = {k for k, v in want.items() if k not in ("last_trade_ts", "ticks") and v is not None}
    assert set(got) == keys, (set(got) ^ keys)
    for k in keys:
        assert math.isclose(got[k], want[k], rel_tol=0, abs_tol=0), (k, got[k], want[k])


@pytest.fixture
def running(kafka, topics, corpus, service_factory, tmp_path):  # noqa: F811
    """A feature-engine that has processed the whole corpus (Redis: nothing listens)."""
    env = env_for(kafka, topics, "fe-grpc", (1, tmp_path / "none"), 0)
    env.pop("HIMARI_REDIS_PASSWORD_FILE")
    env["HIMARI_GRPC_MAX_WATCH_STREAMS"] = "8"
    svc = service_factory("feature-engine", args=["--config", str(corpus["config"])], env=env)
    svc.wait_ready()
    wait_produced(produce_file(kafka, topics["input"], corpus["quality"], rate=0))
    got = consume_all(kafka, topics["output"], len(corpus["features"]), timeout=120)
    assert len(got) == len(corpus["features"])
    yield svc
    assert svc.stop() == 0, svc.tail()


def test_get_latest_and_batch_equal_the_replays_final_view(running, corpus):  # noqa: F811
    m = modules().features_pb2
    stub = features_stub(running.grpc_target)
    latest = {v["symbol"]: v for v in corpus["latest"]}
    for sym, want in latest.items():
        r = stub.GetLatest(m.GetLatestRequest(symbol=sym), timeout=5)
        assert r.features.symbol == sym and r.features.exchange == ""
        assert r.features.timestamp_ms == want["timestamp"]
        same(as_dict(r.features), want["features"])
        assert [e.exchange for e in r.exchanges] == sorted(want["exchanges"])
        for e in r.exchanges:
            same(as_dict(e), want["exchanges"][e.exchange])
        one = stub.GetLatest(m.GetLatestRequest(symbol=sym, exchange="binance"), timeout=5)
        assert one.features.exchange == "binance" and not one.exchanges
        same(as_dict(one.features), want["exchanges"]["binance"])
    b = stub.BatchGetLatest(m.BatchGetLatestRequest(symbols=["ETH/USDT", "NOPE/USDT",
                                                             "BTC/USDT"]), timeout=5)
    assert [s.features.symbol for s in b.found] == ["ETH/USDT", "BTC/USDT"]
    assert list(b.not_found) == ["NOPE/USDT"]
    assert list(stub.ListSymbols(m.ListSymbolsRequest(), timeout=5).symbols) == sorted(latest)


def test_get_history_equals_the_replays_records(running, corpus):  # noqa: F811
    m = modules().features_pb2
    stub = features_stub(running.grpc_target)
    records = [json.loads(r) for r in corpus["features"] if json.loads(r)["symbol"] == "SOL/USDT"]
    r = stub.GetHistory(m.GetHistoryRequest(symbol="SOL/USDT", limit=50), timeout=5)
    want = records[-50:]
    assert [h.interval_end_ms for h in r.records] == [w["interval_end"] for w in want]
    for h, w in zip(r.records, want):
        assert h.interval_start_ms == w["interval_start"]
        same(as_dict(h.features), w["features"])
    lo, hi = records[10]["interval_end"], records[19]["interval_end"]
    r = stub.GetHistory(m.GetHistoryRequest(symbol="SOL/USDT", from_ms=lo, to_ms=hi), timeout=5)
    assert [h.interval_end_ms for h in r.records] == [w["interval_end"] for w in records[10:20]]


@pytest.mark.parametrize("call, code, words", [
    ("GetLatest(m.GetLatestRequest(symbol='DOGE/USDT'))", grpc.StatusCode.NOT_FOUND, "DOGE/USDT"),
    ("GetLatest(m.GetLatestRequest(symbol='BTC/USDT', exchange='ftx'))",
     grpc.StatusCode.NOT_FOUND, "ftx"),
    ("GetLatest(m.GetLatestRequest(symbol=''))", grpc.StatusCode.INVALID_ARGUMENT, "symbol"),
    ("GetLatest(m.GetLatestRequest(symbol='X' * 60))", grpc.StatusCode.INVALID_ARGUMENT, "symbol"),
    ("BatchGetLatest(m.BatchGetLatestRequest())", grpc.StatusCode.INVALID_ARGUMENT, "symbols"),
    ("BatchGetLatest(m.BatchGetLatestRequest(symbols=['A/B'] * 101))",
     grpc.StatusCode.INVALID_ARGUMENT, "symbols"),
    ("BatchGetLatest(m.BatchGetLatestRequest(symbols=['BTC/USDT', '']))",
     grpc.StatusCode.INVALID_ARGUMENT, "symbols[1]"),
    ("GetHistory(m.GetHistoryRequest(symbol='BTC/USDT', limit=1001))",
     grpc.StatusCode.INVALID_ARGUMENT, "limit"),
    ("GetHistory(m.GetHistoryRequest(symbol='BTC/USDT', from_ms=5, to_ms=4))",
     grpc.StatusCode.INVALID_ARGUMENT, "from_ms"),
    ("GetHistory(m.GetHistoryRequest(symbol='DOGE/USDT'))", grpc.StatusCode.NOT_FOUND, "DOGE"),
])
def test_errors_name_what_is_wrong(running, call, code, words):
    m = modules().features_pb2  # noqa: F841 (used by eval)
    stub = features_stub(running.grpc_target)  # noqa: F841
    with pytest.raises(grpc.RpcError) as e:
        eval(f"stub.{call[:call.index('(')]}({call[call.index('(') + 1:-1]}, timeout=5)")
    assert e.value.code() == code
    assert words in e.value.details()


def test_a_deadline_is_honoured_and_the_server_stays_healthy(running):
    m = modules().features_pb2
    stub = features_stub(running.grpc_target)
    stream = stub.StreamFeatures(m.StreamFeaturesRequest(symbols=["BTC/USDT"]), timeout=0.5)
    got = []
    with pytest.raises(grpc.RpcError) as e:
        for msg in stream:
            got.append(msg)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert got and got[0].features.symbol == "BTC/USDT"  # the current value came first
    assert stub.GetLatest(m.GetLatestRequest(symbol="BTC/USDT"), timeout=5).features.symbol


def test_stream_features_pushes_changes_and_a_reader_that_waited_gets_the_current_value(
        running, kafka, topics, corpus):  # noqa: F811
    m = modules().features_pb2
    stub = features_stub(running.grpc_target)
    fast = stub.StreamFeatures(m.StreamFeaturesRequest(), timeout=60)
    slow = stub.StreamFeatures(m.StreamFeaturesRequest(symbols=["ETH/USDT"]), timeout=60)
    seen = []

    def read_fast():
        try:
            for msg in fast:
                seen.append((msg.features.symbol, msg.features.timestamp_ms))
        except grpc.RpcError:
            pass

    t = threading.Thread(target=read_fast, daemon=True)
    t.start()
    time.sleep(1.0)
    assert {s for s, _ in seen} == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}  # current values
    # New ticks: the same corpus again, later by a day, so that every record is new.
    shifted = corpus["quality"].with_name("shifted.jsonl")
    with open(shifted, "w") as out:
        for line in corpus["quality"].read_text().splitlines():
            r = json.loads(line)
            if isinstance(r.get("timestamp"), int):
                r["timestamp"] += 86_400_000
            out.write(json.dumps(r) + "\n")
    before = len(seen)
    wait_produced(produce_file(kafka, topics["input"], shifted, rate=0))
    final = {v["symbol"]: v["timestamp"] + 86_400_000 for v in corpus["latest"]}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        last = {}
        for s, ts in seen:
            last[s] = ts
        if last == final:
            break
        time.sleep(0.2)
    assert last == final, "the fast stream did not reach the final view"
    assert len(seen) > before + 10, "updates were not pushed as they came"
    # The other stream was not read at all meanwhile. Its messages wait in the transport's
    # flow-control window and, once that is full, the server conflates (one pending entry
    # per symbol): reading it now ends at the current value, and it never held more than
    # the changes there were.
    got = []
    for msg in slow:
        assert msg.features.symbol == "ETH/USDT"
        got.append(msg.features.timestamp_ms)
        if msg.features.timestamp_ms == final["ETH/USDT"]:
            break
    assert got[-1] == final["ETH/USDT"]
    eth_pushed = sum(1 for s, _ in seen if s == "ETH/USDT")
    assert len(got) <= eth_pushed + 1
    fast.cancel()
    slow.cancel()


def test_himarictl_features_prints_the_latest_view(running, corpus):  # noqa: F811
    import subprocess
    want = next(v for v in corpus["latest"] if v["symbol"] == "BTC/USDT")
    out = subprocess.run([str(BIN / "himarictl"), "--target", running.grpc_target, "--json",
                          "features", "BTC/USDT"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["features"]["values"]["last_price"] == want["features"]["last_price"]
    assert [e["exchange"] for e in got["exchanges"]] == sorted(want["exchanges"])
    text = subprocess.run([str(BIN / "himarictl"), "--target", running.grpc_target, "features",
                           "BTC/USDT", "--exchange", "kraken"], capture_output=True, text=True,
                          timeout=30)
    assert text.returncode == 0 and "BTC/USDT kraken" in text.stdout
    assert f"{want['exchanges']['kraken']['last_price']:.10g}" in text.stdout
    missing = subprocess.run([str(BIN / "himarictl"), "--target", running.grpc_target,
                              "features", "DOGE/USDT"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_the_stream_example_prints_updates(running):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(ROOT / "examples/stream_features.py"),
                          "--target", running.grpc_target, "--count", "2", "--seconds", "20",
                          "BTC/USDT", "ETH/USDT"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all(l.split()[0] in ("BTC/USDT", "ETH/USDT") for l in lines)
