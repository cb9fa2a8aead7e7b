"""The system's topics exist on the real broker with the seed's partitions, retention and
compression (himari-topics ensure), and ensure is idempotent."""
import subprocess

from confluent_kafka.admin import ConfigResource

from conftest import BIN

SEED = {
    "raw_market_data": (12, "604800000"),
    "quality_scores": (6, "1209600000"),
    "causal_events": (3, "2592000000"),
    "features_computed": (6, "7776000000"),
}


def test_seed_topics_have_the_seeds_partitions_retention_and_compression(kafka, admin):
    md = admin.list_topics(timeout=10)
    for name, (partitions, retention) in SEED.items():
        assert name in md.topics, f"{name} missing"
        assert len(md.topics[name].partitions) == partitions
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        cfg = admin.describe_configs([res])[res].result(timeout=10)
        assert cfg["retention.ms"].value == retention
        assert cfg["compression.type"].value == "snappy"
    for dlq in ("raw_market_data.dlq", "quality_scores.dlq", "causal_events.dlq"):
        assert dlq in md.topics, f"dead-letter topic {dlq} missing"


def test_changelog_topic_is_compacted_with_one_partition_per_input_partition(kafka, admin):
    md = admin.list_topics(timeout=10)
    assert len(md.topics["ingest-validator.changelog"].partitions) == 12
    res = ConfigResource(ConfigResource.Type.TOPIC, "ingest-validator.changelog")
    cfg = admin.describe_configs([res])[res].result(timeout=10)
    assert cfg["cleanup.policy"].value == "compact"


def test_ensure_twice_creates_nothing_and_check_passes(kafka):
    run = subprocess.run([str(BIN / "himari-topics"), "--bootstrap", kafka, "ensure"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "all" in run.stderr and "present" in run.stderr
    check = subprocess.run([str(BIN / "himari-topics"), "--bootstrap", kafka, "check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
