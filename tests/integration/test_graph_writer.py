"""The graph-writer into the project's real Neo4j from a real broker: the simulator's
whale-dump scenario (a whale transfer to an exchange, a 2-3 % fall within the hour, a
liquidation cascade after it), through the validator and the feature-engine (replay), into
causal_events and the graph; the guide's Query 1 and Query 3 run unchanged with the
official Python driver and return the chain; a full redelivery changes no count.

Each test's scenario starts at a time of its own, so its event ids (which carry the event
times) are its own in the shared database."""
import json
import random
import subprocess
import time

from neo4j import GraphDatabase

from conftest import BIN, BOOTSTRAP, create_topic, neo4j_server, produce_lines

__all__ = ["neo4j_server"]

QUERY_1 = """
MATCH (w:Wallet)-[:TRANSFERRED]->(t:WhaleTransfer)-[:TO]->(e:Exchange)
WHERE t.timestamp > datetime() - duration('P1D')
    AND t.amount > 100 // BTC threshold
WITH w, t, e
MATCH (pm:PriceMovement)-[:ON_PAIR]->(:Pair {symbol: 'BTC/USDT'})
WHERE pm.timestamp > t.timestamp
    AND pm.timestamp < t.timestamp + duration('PT1H')
    AND pm.change_percent < -0.02 // 2% drop
RETURN w.address AS whale,
       t.amount AS transfer_amount,
       t.timestamp AS transfer_time,
       pm.change_percent AS price_change,
       pm.timestamp AS price_time
ORDER BY t.timestamp DESC
LIMIT 20"""

QUERY_3 = """
MATCH path = (trigger)-[*1..5]->(effect:CascadeEvent)
WHERE effect.id = $event_id
RETURN path"""


def scenario_events(tmp_path):
    """The whale-dump story's causal events (bytes lines), starting 2..20 h ago."""
    start_ms = int(time.time() * 1000) - random.randint(2 * 3600, 20 * 3600) * 1000
    raw, quality, events = tmp_path / "raw.jsonl", tmp_path / "q.jsonl", tmp_path / "ev.jsonl"
    subprocess.run([str(BIN / "himari-sim"), "--scenario", "whale-dump", "--duration", "4500",
                    "--rate", "50", "--start-ms", str(start_ms), "--out", str(raw)],
                   check=True, timeout=120)
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(raw), "--output",
                    str(quality)], check=True, timeout=300, stderr=subprocess.DEVNULL)
    subprocess.run([str(BIN / "feature-engine"), "--replay", str(quality), "--output",
                    "/dev/null", "--events", str(events)], check=True, timeout=300,
                   stderr=subprocess.DEVNULL)
    lines = events.read_bytes().splitlines()
    kinds = [json.loads(x)["type"] for x in lines]
    assert {"whale_transfer", "price_movement", "liquidation_cascade"} <= set(kinds), kinds
    return lines


def counts(session, ids):
    """Nodes with these event ids, and relationships touching them."""
    n = session.run("MATCH (e) WHERE e.id IN $ids RETURN count(e) AS n", ids=ids).single()["n"]
    r = session.run("MATCH (e)-[r]-() WHERE e.id IN $ids RETURN count(DISTINCT r) AS r",
                    ids=ids).single()["r"]
    return n, r


def wait_nodes(session, ids, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        n, _ = counts(session, ids)
        if n == len(ids):
            return
        time.sleep(0.5)
    raise AssertionError(f"{counts(session, ids)[0]} of {len(ids)} events in the graph")


def start_writer(service_factory, neo4j, topic, group):
    _bolt, http, password_file = neo4j
    svc = service_factory("graph-writer", env={
        "HIMARI_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "HIMARI_GRAPH_WRITER_INPUT_TOPIC": topic,
        "HIMARI_GRAPH_WRITER_GROUP_ID": group,
        "HIMARI_GRAPH_WRITER_BATCH_INTERVAL_MS": "200",
        "HIMARI_NEO4J_URL": http,
        "HIMARI_NEO4J_PASSWORD_FILE": str(password_file)})
    svc.wait_ready(timeout=120)
    return svc


def test_scenario_answers_the_guides_queries_and_a_redelivery_changes_nothing(
        kafka, admin, neo4j_server, service_factory, tmp_path):
    lines = scenario_events(tmp_path)
    ids = [json.loads(x)["event_id"] for x in lines]
    topic = create_topic(admin, partitions=3, prefix="ev")
    produce_lines(BOOTSTRAP, topic, lines)
    writer = start_writer(service_factory, neo4j_server, topic, f"g-{topic}")
    bolt, _http, password_file = neo4j_server
    driver = GraphDatabase.driver(bolt, auth=("neo4j", password_file.read_text().strip()))
    with driver.session() as s:
        wait_nodes(s, ids)
        whale = next(json.loads(x) for x in lines if json.loads(x)["type"] == "whale_transfer")
        rows = [r for r in s.run(QUERY_1).data() if r["transfer_time"].to_native().timestamp()
                * 1000 == whale["timestamp"]]
        assert len(rows) >= 1, "Query 1: no price drop after the whale transfer"
        assert rows[0]["whale"] == whale["from"] and rows[0]["transfer_amount"] == whale["amount"]
        assert -1 < rows[0]["price_change"] < -0.02  # a fraction, as the guide compares it
        cascade = next(json.loads(x) for x in lines
                       if json.loads(x)["type"] == "liquidation_cascade")
        chains = [[next(iter(n.labels)) for n in r["path"].nodes]
                  for r in s.run(QUERY_3, event_id=cascade["event_id"])]
        assert ["Wallet", "WhaleTransfer", "PriceMovement", "CascadeEvent"] in chains, chains
        before = counts(s, ids)
        assert writer.stop() == 0

        # Everything again, under another group: the same nodes and relationships.
        again = start_writer(service_factory, neo4j_server, topic, f"g2-{topic}")
        deadline = time.time() + 120
        while time.time() < deadline:
            if again.metric("himari_graph_events_total", '{result="written"}') >= len(lines):
                break
            time.sleep(0.5)
        assert again.metric("himari_graph_events_total", '{result="written"}') >= len(lines)
        assert counts(s, ids) == before
        assert again.stop() == 0
    driver.close()
