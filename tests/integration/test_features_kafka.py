"""The feature-engine in Kafka mode (real broker, real Redis): what it commits to
features_computed and causal_events, read_committed, equals `feature-engine --replay` of the
same quality records, exactly once: no record missing, none twice, per symbol in the same
order, byte for byte, also when it is killed with SIGKILL three times under load and its
state is rebuilt from the input each time (the stage framework's rebuild shape). Its Redis
view (read with redis-py, as a strategy reads it) holds the replay's final latest view and
history, also after Redis was stopped mid-stream and came back with stale values.

The input is the ingest-validator's replay of a simulated feed (10 simulated minutes, 3
symbols on 5 exchanges, anomalies and liquidations), produced to a fresh 6-partition topic
keyed by symbol, as the validator writes quality_scores.
"""
import collections
import json
import random
import subprocess
import sys
import time
import uuid

import pytest
import redis

from conftest import BIN, ROOT, consume_all, create_topic, stack
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
    out, events, latest = d / "features.jsonl", d / "events.jsonl", d / "latest.jsonl"
    subprocess.run([str(BIN / "feature-engine"), "--config", str(cfg), "--replay", str(quality),
                    "--output", str(out), "--events", str(events), "--latest", str(latest)],
                   check=True, timeout=300, stderr=subprocess.DEVNULL)
    return {"quality": quality, "config": cfg, "features": out.read_bytes().splitlines(),
            "events": events.read_bytes().splitlines(),
            "latest": [json.loads(line) for line in latest.read_text().splitlines()]}


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


def env_for(bootstrap, topics, instance, redis_server=None, db=0):
    env = {"HIMARI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HIMARI_SERVICE_INSTANCE_ID": instance,
            "HIMARI_FEATURES_INPUT_TOPIC": topics["input"],
            "HIMARI_FEATURES_OUTPUT_TOPIC": topics["output"],
            "HIMARI_FEATURES_EVENTS_TOPIC": topics["events"],
            "HIMARI_FEATURES_DLQ_TOPIC": topics["dlq"],
            "HIMARI_FEATURES_GROUP_ID": topics["group"]}
    if redis_server:
        env.update({"HIMARI_REDIS_PORT": str(redis_server[0]),
                    "HIMARI_REDIS_PASSWORD_FILE": str(redis_server[1]),
                    "HIMARI_REDIS_DB": str(db)})
    return env


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


def redis_client(redis_server, db):
    port, password_file = redis_server
    return redis.Redis(host="127.0.0.1", port=port, db=db,
                       password=password_file.read_text().strip(), decode_responses=True)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def assert_view_is_the_replays(r, corpus):
    """features:*:latest and the history hold the replay's final view, exactly."""
    for want in corpus["latest"]:
        sym = want["symbol"]
        got = r.get(f"features:{sym}:latest")
        assert got is not None, f"features:{sym}:latest missing"
        assert json.loads(got) == want, f"features:{sym}:latest is not the final view"
        assert 0 < r.ttl(f"features:{sym}:latest") <= 3600
        for ex, block in want["exchanges"].items():
            one = json.loads(r.get(f"features:{ex}:{sym}:latest"))
            assert one["exchange"] == ex and one["features"] == block
    for sym, records in by_symbol(corpus["features"]).items():
        history = r.zrange(f"features:{sym}:history", 0, -1, withscores=True)
        want = records[-1000:]
        assert [m for m, _ in history] == [w.decode() for w in want]
        assert [int(s) for _, s in history] == [json.loads(w)["interval_end"] for w in want]


def test_redis_holds_the_final_view_and_history(kafka, topics, corpus, redis_server,
                                                service_factory):
    db = 1
    r = redis_client(redis_server, db)
    r.flushdb()
    svc = service_factory("feature-engine", args=["--config", str(corpus["config"])],
                          env=env_for(kafka, topics, "fe-redis", redis_server, db))
    svc.wait_ready()
    wait_for(lambda: svc.metric("himari_features_redis_up") == 1, 30, "the Redis connection")
    producer = produce_file(kafka, topics["input"], corpus["quality"], rate=0)
    wait_produced(producer)
    got = consume_all(kafka, topics["output"], len(corpus["features"]), timeout=120)
    assert len(got) == len(corpus["features"])
    wait_for(lambda: r.get("features:BTC/USDT:latest") is not None and
             json.loads(r.get("features:BTC/USDT:latest")) ==
             next(v for v in corpus["latest"] if v["symbol"] == "BTC/USDT"), 30,
             "the final BTC/USDT view in Redis")
    assert_view_is_the_replays(r, corpus)
    # The example strategy that reads Redis directly sees the same.
    example = subprocess.run([sys.executable, str(ROOT / "examples/redis_reader.py"), "--port",
                              str(redis_server[0]), "--db", str(db), "--password-file",
                              str(redis_server[1]), "BTC/USDT", "ETH/USDT"],
                             capture_output=True, text=True, timeout=30)
    assert example.returncode == 0, example.stderr
    btc = next(v for v in corpus["latest"] if v["symbol"] == "BTC/USDT")
    assert f"last={btc['features']['last_price']}" in example.stdout
    assert svc.stop() == 0, svc.tail()


def test_after_a_redis_restart_mid_stream_nothing_is_stale_or_missing(kafka, topics, corpus,
                                                                      redis_server,
                                                                      service_factory):
    db = 2
    r = redis_client(redis_server, db)
    r.flushdb()
    svc = service_factory("feature-engine", args=["--config", str(corpus["config"])],
                          env=env_for(kafka, topics, "fe-redis-restart", redis_server, db))
    svc.wait_ready()
    wait_for(lambda: svc.metric("himari_features_redis_up") == 1, 30, "the Redis connection")
    lines = corpus["quality"].read_bytes().splitlines(keepends=True)
    half = corpus["quality"].with_name("first-half.jsonl")
    rest = corpus["quality"].with_name("second-half.jsonl")
    half.write_bytes(b"".join(lines[: len(lines) // 2]))
    rest.write_bytes(b"".join(lines[len(lines) // 2:]))
    wait_produced(produce_file(kafka, topics["input"], half, rate=0))
    wait_for(lambda: r.exists("features:BTC/USDT:latest"), 30, "a first view in Redis")
    r.close()
    # Redis goes away while the second half streams in: the engine keeps computing.
    stack("stop", "redis")
    wait_produced(produce_file(kafka, topics["input"], rest, rate=0))
    got = consume_all(kafka, topics["output"], len(corpus["features"]), timeout=120)
    assert len(got) == len(corpus["features"]), "features stopped while Redis was down"
    wait_for(lambda: svc.metric("himari_features_redis_up") == 0, 30, "Redis seen down")
    stack("start", "redis")  # back with its persisted values, stale by now
    r = redis_client(redis_server, db)
    wait_for(lambda: svc.metric("himari_features_redis_up") == 1, 30, "the reconnect")
    wait_for(lambda: json.loads(r.get("features:BTC/USDT:latest") or "{}") ==
             next(v for v in corpus["latest"] if v["symbol"] == "BTC/USDT"), 30,
             "the current BTC/USDT view after the restart")
    for want in corpus["latest"]:
        assert json.loads(r.get(f"features:{want['symbol']}:latest")) == want
    events = [e["event"] for e in svc.log_events() if e.get("event", "").startswith("redis_")]
    assert events == ["redis_ready", "redis_down", "redis_ready"], events
    # History records of the outage are not in Redis (the topic has them), and counted.
    lost = svc.metric("himari_features_redis_history_skipped_total") + \
        svc.metric("himari_features_redis_write_errors_total")
    assert lost > 0
    assert svc.stop() == 0, svc.tail()


def test_a_wrong_redis_password_is_named_and_the_engine_keeps_computing(kafka, topics, corpus,
                                                                        redis_server, tmp_path,
                                                                        service_factory):
    wrong = tmp_path / "wrong_password"
    wrong.write_text("not-the-password\n")
    env = env_for(kafka, topics, "fe-redis-auth", (redis_server[0], wrong), 3)
    svc = service_factory("feature-engine", args=["--config", str(corpus["config"])], env=env)
    svc.wait_ready()  # Redis is a view: readiness does not wait for it
    wait_produced(produce_file(kafka, topics["input"], corpus["quality"], rate=0))
    got = consume_all(kafka, topics["output"], len(corpus["features"]), timeout=120)
    assert len(got) == len(corpus["features"])
    assert svc.metric("himari_features_redis_up") == 0
    failed = [e for e in svc.log_events() if e.get("event") == "redis_auth_failed"]
    assert failed and "AUTH" in failed[0]["error"], svc.tail()
    assert svc.stop() == 0, svc.tail()
