"""ingest-validator on the real broker, exactly once.

The reference is the replay of the same file through the same engine: the records the
validator commits on Kafka (read_committed) must equal it, exactly once each, after a clean
run, after kill -9 at random moments, and when a second instance dies and its partitions
(and their state) move to the first."""
import json
import random
import subprocess
import time

import pytest

from conftest import consume_all
from validator_env import assert_equal_to_replay, produce_file, replay, simulate

COUNT = 200_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validator-corpus")
    ticks, labels = simulate(tmp, COUNT, seed=11, anomaly_rate=0.02)
    return ticks, labels, replay(ticks, tmp)


def _wait_produced(proc, timeout=300):
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode(errors="replace")


def test_committed_output_equals_replay_and_bad_input_goes_to_the_dlq(kafka, topics, corpus,
                                                                       service_factory):
    ticks, _labels, expected = corpus
    svc = service_factory("ingest-validator", env=topics.env(kafka, "eos-a"))
    svc.wait_ready()
    _wait_produced(produce_file(kafka, topics.raw, ticks))
    got = consume_all(kafka, topics.quality, COUNT, timeout=240)
    assert_equal_to_replay(got, expected)

    # Unparseable input: a PARSE_ERROR record above, and its bytes whole on the DLQ.
    parse_errors = [json.loads(r) for r in expected if b'"PARSE_ERROR"' in r]
    assert parse_errors, "the corpus must contain unparseable lines"
    dlq = consume_all(kafka, topics.dlq, len(parse_errors), timeout=60, with_meta=True)
    assert len(dlq) == len(parse_errors)
    lines = set(ticks.read_bytes().splitlines())
    for value, _key, _part, _off, headers in dlq:
        assert value in lines, "a DLQ record is not an input line verbatim"
        h = dict(headers)
        assert h["himari.source.topic"].decode() == topics.raw
        assert h["himari.error"], "the error must be named in a header"
        int(h["himari.source.offset"])

    assert svc.metric("himari_validator_records_total") == COUNT
    assert svc.metric("himari_validator_issues_total", 'code="PARSE_ERROR"') == len(parse_errors)
    assert svc.stop() == 0, svc.tail()


def test_kill_9_three_times_under_load_output_still_equals_replay(kafka, topics, corpus,
                                                                 service_factory):
    ticks, _labels, expected = corpus
    env = topics.env(kafka, "eos-crash")
    svc = service_factory("ingest-validator", env=env)
    svc.wait_ready()
    producer = produce_file(kafka, topics.raw, ticks, rate=12_000)  # ~17 s of load
    t0 = time.monotonic()
    rng = random.Random(1234)
    for moment in sorted(rng.uniform(1.0, 14.0) for _ in range(3)):
        time.sleep(max(0.0, t0 + moment - time.monotonic()))
        svc.kill9()
        # The same instance id: its transactional id fences the killed process and aborts
        # its open transaction; static membership gives it the same partitions back.
        svc = service_factory("ingest-validator", env=env)
        svc.wait_ready(timeout=60)
    _wait_produced(producer)
    got = consume_all(kafka, topics.quality, COUNT, timeout=240)
    assert_equal_to_replay(got, expected)
    assert svc.stop() == 0, svc.tail()


def kill_9_at(svc, function: str, timeout: float = 60):
    """Let the service run until it enters `function`, and kill it there (SIGKILL from
    gdb, the process stopped at the breakpoint): a kill -9 aimed at one moment."""
    run = subprocess.run(["gdb", "-batch", "-nx", "-p", str(svc.proc.pid),
                          "-ex", f"break {function}", "-ex", "continue", "-ex", "kill"],
                         capture_output=True, text=True, timeout=timeout)
    assert f"in {function}" in run.stdout or "Breakpoint 1," in run.stdout, run.stdout[-2000:]
    svc.proc.wait(30)
    svc.logf.close()


def test_kill_9_between_the_outputs_and_the_offsets_of_a_transaction(kafka, topics, corpus,
                                                                    service_factory):
    """The moment a transaction holds its outputs and state but not yet its offsets (the
    checkpoint records): killed there three times under load, the output still equals
    the replay, exactly once."""
    ticks, _labels, expected = corpus
    env = topics.env(kafka, "eos-aimed")
    svc = service_factory("ingest-validator", env=env)
    svc.wait_ready()
    producer = produce_file(kafka, topics.raw, ticks, rate=12_000)
    for _ in range(3):
        time.sleep(2.0)
        kill_9_at(svc, "write_checkpoints")
        svc = service_factory("ingest-validator", env=env)
        svc.wait_ready(timeout=60)
    _wait_produced(producer)
    got = consume_all(kafka, topics.quality, COUNT, timeout=240)
    assert_equal_to_replay(got, expected)
    assert svc.stop() == 0, svc.tail()


def test_two_instances_split_partitions_and_survivor_takes_over_state(kafka, topics, corpus,
                                                                      service_factory):
    ticks, _labels, expected = corpus
    a = service_factory("ingest-validator", env=topics.env(kafka, "eos-pair-a"))
    b = service_factory("ingest-validator", env=topics.env(kafka, "eos-pair-b"))
    a.wait_ready()
    b.wait_ready()
    producer = produce_file(kafka, topics.raw, ticks, rate=12_000)
    time.sleep(4)
    # Both are working: each owns part of the 12 partitions.
    owned_a = [e for e in a.log_events() if e.get("event") == "kafka_partitions_assigned"]
    owned_b = [e for e in b.log_events() if e.get("event") == "kafka_partitions_assigned"]
    assert owned_a and owned_b
    assert owned_a[-1]["partitions"] + owned_b[-1]["partitions"] == 12
    assert 0 < owned_b[-1]["partitions"] < 12
    b.kill9()
    _wait_produced(producer)
    got = consume_all(kafka, topics.quality, COUNT, timeout=300)
    assert_equal_to_replay(got, expected)
    final = [e for e in a.log_events() if e.get("event") == "kafka_partitions_assigned"][-1]
    assert final["partitions"] == 12, "the survivor must own every partition"
    assert a.stop() == 0, a.tail()
