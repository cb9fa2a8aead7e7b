"""common/ Kafka clients on a libuv loop against the real broker: 100,000 records round-trip
through hm_producer and hm_consumer (himari-kafkacheck) with nothing lost, duplicated or
altered, checked by the tool itself and, independently, by a confluent-kafka consumer."""
import json
import subprocess

from conftest import BIN, consume_all

COUNT = 100_000


def _kafkacheck(bootstrap, topic, *extra):
    run = subprocess.run([str(BIN / "himari-kafkacheck"), "--bootstrap", bootstrap,
                          "--topic", topic, "--count", str(COUNT), "--timeout", "120", *extra],
                         capture_output=True, text=True, timeout=180)
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    return run.returncode, summary, run.stderr


def _check_independently(bootstrap, topic, run_id):
    values = consume_all(bootstrap, topic, COUNT, timeout=90)
    seqs = []
    for v in values:
        rec = json.loads(v)
        assert rec["run"] == run_id
        seqs.append(rec["seq"])
    assert len(seqs) == COUNT, f"independent reader saw {len(seqs)} records"
    assert sorted(seqs) == list(range(COUNT)), "records missing or duplicated"


def test_100k_records_round_trip_idempotent_producer(kafka, topic_factory):
    topic = topic_factory(partitions=6, prefix="kafkacheck")
    rc, summary, stderr = _kafkacheck(kafka, topic, "--run-id", "plain")
    assert rc == 0, stderr
    assert summary["ok"] is True
    assert summary["read"] == summary["delivered"] == COUNT
    assert summary["missing"] == summary["duplicates"] == summary["corrupt"] == 0
    _check_independently(kafka, topic, "plain")


def test_100k_records_round_trip_in_transactions_read_committed(kafka, topic_factory):
    topic = topic_factory(partitions=6, prefix="kafkacheck-txn")
    rc, summary, stderr = _kafkacheck(kafka, topic, "--transactional", "--txn-records", "7000",
                                      "--run-id", "txn")
    assert rc == 0, stderr
    assert summary["ok"] is True and summary["transactional"] is True
    assert summary["read"] == COUNT and summary["duplicates"] == 0
    _check_independently(kafka, topic, "txn")


def test_kafkacheck_fails_when_records_are_missing(kafka, topic_factory):
    # The check must be able to fail: a topic that cannot hold the records (max message
    # size below one record) makes deliveries fail, and the tool must say so.
    topic = topic_factory(partitions=1, prefix="kafkacheck-small",
                          config={"max.message.bytes": "20"})
    run = subprocess.run([str(BIN / "himari-kafkacheck"), "--bootstrap", kafka, "--topic",
                          topic, "--count", "50", "--timeout", "10"],
                         capture_output=True, text=True, timeout=60)
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert run.returncode == 1
    assert summary["ok"] is False and summary["delivery_failed"] > 0
