"""The feature-engine in Kafka mode (real broker): what it commits to features_computed and
causal_events, read_committed, equals `feature-engine --replay` of the same quality records,
exactly once: no record missing, none twice, per symbol in the same order, byte for byte,
also when it is killed with SIGKILL three times under load and its state is rebuilt from
the input each time (the stage framework's rebuild shape).

The input is the ingest-validator's replay of a simulated feed (10 simulated minutes, 3
symbols on 5 exchanges, anomalies and liquidations), produced to a fresh 6-partition topic
keyed by symbol, as the validator writes quality_scores.
"""
import collections
import json
import random
import subprocess
import time
import uuid

import pytest

from conftest import BIN, consume_all, create_topic
from validator_env import produce_file

CONFIG = """
events:
  price_moves: {60: 0.002, 300: 0.004}
  cascade_min_count: 3
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("features-kafka")
    raw, quality = d / "raw.jsonl", d / "quality.jsonl"
    subprocess.run([str(BIN / "himari-sim"), "--seed", "21", "--count", "30000", "--rate", "50",
                    "--anomaly-rate", "0.02", "--liquidation-rate", "0.01", "--out", str(raw)],
                   check=True, timeout=120)
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(raw), "--output",
                    str(quality)], check=True, timeout=300, stderr=subprocess.DEVNULL)
    cfg = d / "fe.yaml"
    cfg.write_text(CONFIG)
    out, events = d / "features.jsonl", d / "events.jsonl"
    subprocess.run([str(BIN / "feature-engine"), "--config", str(cfg), "--replay", str(quality),
                    "--output", str(out), "--events", str(events)], check=True, timeout=300,
                   stderr=subprocess.DEVNULL)
    return {"quality": quality, "config": cfg, "features": out.read_bytes().splitlines(),
            "events": events.read_bytes().splitlines()}


@pytest.fixture
def topics(admin):
    tag = uuid.uuid4().hex[:8]
    names = {"input": create_topic(admin, 6, f"quality-{tag}"),
             "output": create_topic(admin, 6, f"features-{tag}"),
             "events": create_topic(admin, 3, f"events-{tag}"),
             "dlq": create_topic(admin, 3, f"quality-dlq-{tag}"),
             "group": f"feature-engine-{tag}"}
    yield names
    for fut in admin.delete_topics([v for k, v in names.items() if k != "group"]).values():
        try:
            fut.result(timeout=30)
        except Exception:  # noqa: BLE001 - cleanup only
            pass


def env_for(bootstrap, topics, instance):
    return {"HIMARI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HIMARI_SERVICE_INSTANCE_ID": instance,
            "HIMARI_FEATURES_INPUT_TOPIC": topics["input"],
            "HIMARI_FEATURES_OUTPUT_TOPIC": topics["output"],
            "HIMARI_FEATURES_EVENTS_TOPIC": topics["events"],
            "HIMARI_FEATURES_DLQ_TOPIC": topics["dlq"],
            "HIMARI_FEATURES_GROUP_ID": topics["group"]}


def by_symbol(records):
    groups = collections.defaultdict(list)
    for r in records:
        groups[json.loads(r)["symbol"]].append(r)
    return groups


def assert_features_equal(got, want):
    assert len(got) == len(want), f"{len(got)} features_computed records vs {len(want)} in replay"
    g, w = by_symbol(got), by_symbol(want)
    assert sorted(g) == sorted(w)
    for symbol in w:
        for i, (a, b) in enumerate(zip(g[symbol], w[symbol])):
            assert a == b, f"{symbol}: first difference at record {i}:\nkafka : {a}\nreplay: {b}"


def wait_produced(producer):
    assert producer.wait(120) == 0, producer.stderr.read().decode()[-2000:]


def test_kafka_mode_equals_the_replay_across_three_kill_9_under_load(kafka, topics, corpus,
                                                                    service_factory):
    env = env_for(kafka, topics, "fe-crash")
    args = ["--config", str(corpus["config"])]
    svc = service_factory("feature-engine", args=args, env=env)
    svc.wait_ready()
    producer = produce_file(kafka, topics["input"], corpus["quality"], rate=3000)  # ~10 s
    t0 = time.monotonic()
    rng = random.Random(99)
    for moment in sorted(rng.uniform(1.5, 8.0) for _ in range(3)):
        time.sleep(max(0.0, t0 + moment - time.monotonic()))
        svc.kill9()
        # The same instance id: its transactional id fences the killed process and aborts
        # its open transaction; the new one rebuilds its windows from the input.
        svc = service_factory("feature-engine", args=args, env=env)
        svc.wait_ready(timeout=60)
    wait_produced(producer)
    got = consume_all(kafka, topics["output"], len(corpus["features"]), timeout=180)
    assert_features_equal(got, corpus["features"])
    events = consume_all(kafka, topics["events"], len(corpus["events"]), timeout=60)
    assert len(corpus["events"]) >= 5, "the rules should make events in this stream"
    assert sorted(events) == sorted(corpus["events"]), "events differ from the replay"
    # The last instance rebuilt its windows from records whose outputs were committed
    # before: their sends were suppressed, not sent twice.
    assert svc.metric("himari_features_rebuild_sends_suppressed_total") > 0
    assert svc.stop() == 0, svc.tail()
