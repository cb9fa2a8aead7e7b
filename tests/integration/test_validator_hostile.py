"""The ingest-validator on the real broker against input and situations meant to stop it:
a record too large to forward, a corrupt batch, a broker that stops answering during a
stop, a changelog with a transaction left open. Each test says what the stream must do:
keep going, keep the bad part, lose nothing."""
import json
import os
import signal
import struct
import time

import pytest
import requests
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from conftest import RUN_DIR, consume_all

BIG = 1_020_000  # bytes: above librdkafka's 1,000,000 message.max.bytes, below the broker's


def tick(i: int, symbol: str = "BTC/USDT", exchange: str = "binance") -> bytes:
    return json.dumps({"timestamp": 1_700_000_000_000 + i * 10, "symbol": symbol,
                       "exchange": exchange, "price": 37_000 + (i % 7), "volume": 0.5,
                       "trade_id": 1000 + i, "side": "buy"}).encode()


def produce(bootstrap: str, topic: str, values, key: bytes = b"BTC/USDT"):
    """In order, to one partition (one key), with a producer allowed large messages."""
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                  "message.max.bytes": 2_000_000, "linger.ms": 5})
    failed = []
    for v in values:
        p.produce(topic, v, key=key, on_delivery=lambda err, _m: err and failed.append(err))
    assert p.flush(60) == 0
    assert not failed, failed


def test_a_record_too_large_to_forward_whole_is_kept_cut_and_the_ticks_behind_it_come_out(
        kafka, topics, service_factory):
    svc = service_factory("ingest-validator", env=topics.env(kafka, "poison"))
    svc.wait_ready()
    big = b'{"symbol":"BTC/USDT","exchange":"binance","pad":"' + b"x" * BIG + b'"}'
    ticks = [tick(i) for i in range(50)]
    produce(kafka, topics.raw, [big] + ticks)

    # One quality record per input record: the big one's (small, without its bytes) and
    # every tick behind it on the same partition.
    records = [json.loads(r) for r in consume_all(kafka, topics.quality, 51, timeout=90)]
    assert len(records) == 51, svc.tail()
    rejected = [r for r in records if "PARSE_ERROR" in r["issues"]]
    assert len(rejected) == 1
    assert rejected[0]["original_data"] is None and rejected[0]["original_bytes"] == len(big)
    assert sorted(int(r["trade_id"]) for r in records if r["trade_id"]) == \
        [1000 + i for i in range(50)]

    # The big one is on the DLQ, cut to what one message may hold, and says so.
    dlq = consume_all(kafka, topics.dlq, 1, timeout=30, with_meta=True)
    assert len(dlq) == 1
    value, _key, _part, _off, headers = dlq[0]
    h = dict(headers)
    assert h["himari.truncated"] == b"true"
    assert int(h["himari.original_bytes"]) == len(big)
    assert h["himari.source.topic"].decode() == topics.raw
    assert int(h["himari.source.offset"]) == 0
    assert 900_000 < len(value) < len(big) and big.startswith(value)

    assert svc.metric("himari_validator_dead_letters_truncated_total") == 1
    assert svc.metric("himari_validator_dead_letters_total") == 1
    assert svc.metric("himari_validator_issues_total", 'code="PARSE_ERROR"') == 1
    assert svc.metric("himari_validator_records_total") == 51
    assert svc.stop() == 0, svc.tail()


def batches(segment: bytes):
    """(base offset, start, end) of each record batch of a Kafka log segment."""
    out, pos = [], 0
    while pos + 12 <= len(segment):
        base, length = struct.unpack(">qi", segment[pos:pos + 12])
        out.append((base, pos, pos + 12 + length))
        pos += 12 + length
    return out


def test_a_corrupt_batch_is_kept_as_a_gap_in_the_dlq_and_the_stream_goes_on(
        kafka, topics, service_factory):
    # Twenty ticks on one partition, gzip: offsets 0-9 one batch each, 10-14 in one batch,
    # 15-19 one batch each. Then the five-record batch's gzip trailer is changed in the
    # broker's log segment, as a bad disk or a bad copy would leave it: the batch no longer
    # decompresses (the broker does not look on reads), and librdkafka fetches it again
    # and again.
    p = Producer({"bootstrap.servers": kafka, "enable.idempotence": True, "linger.ms": 200,
                  "compression.type": "gzip"})
    partitions = []
    for i in range(20):
        p.produce(topics.raw, tick(i), key=b"BTC/USDT",
                  on_delivery=lambda err, m: partitions.append(m.partition()))
        if not 10 <= i < 14:
            assert p.flush(30) == 0
    assert len(set(partitions)) == 1 and len(partitions) == 20
    segment = RUN_DIR / "kafka" / "data" / f"{topics.raw}-{partitions[0]}" / \
        "00000000000000000000.log"
    found = {b[0]: b for b in batches(segment.read_bytes())}
    assert sorted(found) == list(range(11)) + list(range(15, 20)), sorted(found)
    _base, _start, end = found[10]
    with open(segment, "r+b") as f:
        f.seek(end - 1)  # the last byte of the gzip member: its ISIZE
        last = f.read(1)
        f.seek(end - 1)
        f.write(bytes([last[0] ^ 0xFF]))

    svc = service_factory("ingest-validator", env=topics.env(kafka, "gzip"))
    svc.wait_ready()
    records = [json.loads(r) for r in consume_all(kafka, topics.quality, 15, timeout=60)]
    assert sorted(int(r["trade_id"]) for r in records) == \
        [1000 + i for i in range(20) if not 10 <= i < 15], svc.tail()
    # The unreadable records are not silently skipped: each offset's gap is on the DLQ.
    dlq = consume_all(kafka, topics.dlq, 5, timeout=30, with_meta=True)
    assert len(dlq) == 5, svc.tail()
    gaps = []
    for value, _key, _part, _off, headers in dlq:
        h = dict(headers)
        assert not value
        assert b"consume error" in h["himari.error"], h
        assert h["himari.source.topic"].decode() == topics.raw
        assert int(h["himari.source.partition"]) == partitions[0]
        gaps.append(int(h["himari.source.offset"]))
    assert sorted(gaps) == [10, 11, 12, 13, 14]
    assert svc.metric("himari_validator_consume_errors_total") == 5
    assert svc.stop() == 0, svc.tail()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def wait_group_empty(bootstrap, group, timeout):
    """Until the broker describes the consumer group with no member (coordinator loaded,
    members expired)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            d = admin.describe_consumer_groups([group])[group].result(10)
            if not d.members:
                return
            last = f"{len(d.members)} member(s), state {d.state}"
        except KafkaException as e:
            last = str(e)
        time.sleep(0.5)
    raise AssertionError(f"group {group} not empty after {timeout}s: {last}")


def test_a_stop_with_the_broker_not_answering_ends_in_time_and_says_what_it_left(
        kafka, topics, service_factory):
    env = topics.env(kafka, "frozen", extra={"HIMARI_SERVICE_STOP_TIMEOUT_MS": "15000",
                                             "HIMARI_VALIDATOR_COMMIT_INTERVAL_MS": "60000"})
    svc = service_factory("ingest-validator", env=env)
    svc.wait_ready()
    produce(kafka, topics.raw, [tick(i) for i in range(20)])
    wait_for(lambda: svc.metric("himari_validator_transaction_records") == 20, 30,
             "20 records in the open transaction")

    # The broker stops answering (its process frozen), then the service is told to stop.
    broker = int((RUN_DIR / "kafka" / "kafka.pid").read_text())
    os.kill(broker, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        code = svc.proc.wait(40)
        took = time.monotonic() - t0
    finally:
        os.kill(broker, signal.SIGCONT)
    assert code == 1, svc.tail()  # the stop could not do its work, and says so
    assert took < 15.5, f"took {took:.1f}s, beyond its own 15 s stop timeout"
    left = [e for e in svc.log_events() if e.get("event") == "drain_incomplete"]
    assert left and left[0]["records_not_committed"] == 20, svc.tail()

    # Nothing was lost: never committed, the records are judged again, once. The next
    # owner starts once the broker has settled after the freeze (its group coordinator
    # reloaded, the frozen member expired): a consumer that joined while the coordinator
    # was reloading once never joined at all (librdkafka 2.12, CI), and that recovery is
    # not what this test measures.
    wait_group_empty(kafka, topics.group, timeout=120)
    again = service_factory("ingest-validator", env={**env,
                                                     "HIMARI_VALIDATOR_COMMIT_INTERVAL_MS": "5"})
    again.wait_ready(timeout=180)
    records = [json.loads(r) for r in consume_all(kafka, topics.quality, 20, timeout=90)]
    assert sorted(int(r["trade_id"]) for r in records) == [1000 + i for i in range(20)]
    assert again.stop() == 0, again.tail()


def test_a_new_owner_waits_for_unresolved_transactions_before_it_trusts_the_changelog(
        kafka, topics, service_factory):
    """Stale restore: the changelog is read to its last stable offset, and an unresolved
    transaction (here one left open, as a dead writer leaves it; equally the markers of a
    commit still being written) hides what was committed after it. A new owner must not
    resume from the committed offsets with the state before them."""
    x = service_factory("ingest-validator", env=topics.env(kafka, "x"))
    x.wait_ready()
    # Find the partition of the symbol, then leave a transaction open on the changelog
    # partition of the same number.
    partitions = []
    p = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
    p.produce(topics.raw, tick(0), key=b"BTC/USDT",
              on_delivery=lambda err, m: partitions.append(m.partition()))
    assert p.flush(30) == 0
    zombie = Producer({"bootstrap.servers": kafka, "transactional.id": f"zombie-{topics.group}",
                       "transaction.timeout.ms": 120000})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(topics.changelog, b"{}", key=b"zombie|X/Y", partition=partitions[0])
    assert zombie.flush(30) == 0

    # The first owner judges 100 ticks and commits them, state and offsets, after it.
    produce(kafka, topics.raw, [tick(i) for i in range(1, 100)])
    assert len(consume_all(kafka, topics.quality, 100, timeout=60)) == 100
    assert x.stop() == 0, x.tail()

    # A second instance takes the partitions over. Its restore must not finish while
    # the open transaction hides the first owner's state...
    y = service_factory("ingest-validator", env=topics.env(kafka, "y"))

    def readyz():
        try:
            return requests.get(y.url("/readyz"), timeout=2).text
        except requests.RequestException:
            return ""

    # (x was a static member: its partitions move after its session timeout, 10 s)
    wait_for(lambda: "restoring" in readyz(), 40, "y restoring its partitions")
    time.sleep(3)
    assert y.proc.poll() is None, y.tail()
    assert "restoring" in readyz(), readyz()
    assert any(e.get("event") == "reader_waiting_for_transactions" for e in y.log_events())
    # ... and once it is resolved, the state is there: a repeated trade is a duplicate.
    produce(kafka, topics.raw, [tick(99)])
    zombie.abort_transaction(30)
    y.wait_ready(timeout=60)
    records = [json.loads(r) for r in consume_all(kafka, topics.quality, 101, timeout=60)]
    assert len(records) == 101
    last = [r for r in records if r["trade_id"] == "1099"]
    assert len(last) == 2
    assert any("DUPLICATE_TRADE_ID" in r["issues"] for r in last), last
    assert y.stop() == 0, y.tail()


def test_unreadable_changelog_records_are_counted_not_only_logged(kafka, topics,
                                                                 service_factory):
    produce(kafka, topics.changelog, [b"not a state record", b"{\"also\": \"not\"}"],
            key=b"binance|BTC/USDT")
    svc = service_factory("ingest-validator", env=topics.env(kafka, "badlog"))
    svc.wait_ready()
    assert svc.metric("himari_validator_changelog_unreadable_total") == 2
    assert any(e.get("event") == "changelog_record_unreadable" for e in svc.log_events())
    # The key starts over: its ticks are judged as those of a new key, and nothing stops.
    produce(kafka, topics.raw, [tick(i) for i in range(5)])
    assert len(consume_all(kafka, topics.quality, 5, timeout=60)) == 5
    assert svc.stop() == 0, svc.tail()
