"""Shared set-up for the ingest-validator's integration tests: a simulated input with
labelled anomalies, its replay output (the reference), fresh topics per test, and the
comparison of what the validator committed on Kafka with the replay."""
import collections
import json
import pathlib
import subprocess
import uuid

from conftest import BIN, create_topic


def simulate(tmp: pathlib.Path, count: int, seed: int = 11, anomaly_rate: float = 0.02):
    """(ticks path, labels path): deterministic simulated input."""
    ticks, labels = tmp / f"ticks-{seed}.jsonl", tmp / f"labels-{seed}.jsonl"
    subprocess.run([str(BIN / "himari-sim"), "--count", str(count), "--seed", str(seed),
                    "--anomaly-rate", str(anomaly_rate), "--labels", str(labels),
                    "--out", str(ticks)], check=True, timeout=120)
    return ticks, labels


def replay(ticks: pathlib.Path, tmp: pathlib.Path):
    """The replay output lines (bytes) of a file: the reference Kafka mode must equal."""
    out = tmp / (ticks.stem + ".quality.jsonl")
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(ticks), "--output",
                    str(out)], check=True, timeout=300, stderr=subprocess.DEVNULL)
    return out.read_bytes().splitlines()


def normalise(record: bytes) -> str:
    """A quality record without processed_at, the one field allowed to differ."""
    obj = json.loads(record)
    obj.pop("processed_at", None)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def by_symbol(records):
    """Records grouped by symbol, in order (the order a symbol's records keep on Kafka)."""
    groups = collections.defaultdict(list)
    for r in records:
        n = normalise(r)
        groups[json.loads(n).get("symbol")].append(n)
    return groups


def assert_equal_to_replay(kafka_records, replay_records):
    """Same records, exactly once each; per symbol in the same order. Records with a
    symbol stay in one partition in order; those without (parse errors) are compared as a
    multiset, as they are spread over partitions."""
    assert len(kafka_records) == len(replay_records), \
        f"{len(kafka_records)} records on Kafka vs {len(replay_records)} in replay"
    got, want = by_symbol(kafka_records), by_symbol(replay_records)
    assert sorted(got.keys(), key=str) == sorted(want.keys(), key=str)
    for symbol in want:
        if symbol is None:
            assert sorted(got[symbol]) == sorted(want[symbol]), "records without a symbol differ"
            continue
        if got[symbol] != want[symbol]:
            for i, (g, w) in enumerate(zip(got[symbol], want[symbol])):
                if g != w:
                    raise AssertionError(f"{symbol}: first difference at record {i}:\n"
                                         f"kafka : {g}\nreplay: {w}")
            raise AssertionError(f"{symbol}: {len(got[symbol])} vs {len(want[symbol])} records")


class Topics:
    """A fresh set of the validator's topics, and the env that points it at them."""

    def __init__(self, admin):
        tag = uuid.uuid4().hex[:8]
        self.raw = create_topic(admin, 12, f"raw-{tag}")
        self.quality = create_topic(admin, 6, f"quality-{tag}")
        self.dlq = create_topic(admin, 3, f"raw-dlq-{tag}")
        self.events = create_topic(admin, 3, f"events-{tag}")
        self.changelog = create_topic(admin, 12, f"changelog-{tag}",
                                      {"cleanup.policy": "compact"})
        self.group = f"ingest-validator-{tag}"
        self.admin = admin

    def env(self, bootstrap: str, instance: str, clock: str = "event", extra=None) -> dict:
        return {
            "HIMARI_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "HIMARI_SERVICE_INSTANCE_ID": instance,
            "HIMARI_VALIDATOR_INPUT_TOPIC": self.raw,
            "HIMARI_VALIDATOR_OUTPUT_TOPIC": self.quality,
            "HIMARI_VALIDATOR_DLQ_TOPIC": self.dlq,
            "HIMARI_VALIDATOR_EVENTS_TOPIC": self.events,
            "HIMARI_VALIDATOR_CHANGELOG_TOPIC": self.changelog,
            "HIMARI_VALIDATOR_GROUP_ID": self.group,
            "HIMARI_VALIDATOR_FRESHNESS_CLOCK": clock,
            "HIMARI_KAFKA_STATISTICS_INTERVAL_MS": "1000",
            **(extra or {}),
        }

    def delete(self):
        names = [self.raw, self.quality, self.dlq, self.events, self.changelog]
        for fut in self.admin.delete_topics(names).values():
            try:
                fut.result(timeout=30)
            except Exception:  # noqa: BLE001 - cleanup only
                pass


def produce_file(bootstrap: str, topic: str, ticks: pathlib.Path, rate: int = 0):
    """Produce every line of the file verbatim, keyed by symbol (the simulator's --input
    mode, a real librdkafka producer); rate 0 = as fast as possible."""
    return subprocess.Popen([str(BIN / "himari-sim"), "--kafka", bootstrap, "--topic", topic,
                             "--input", str(ticks), "--rate", str(rate)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
