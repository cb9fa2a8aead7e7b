"""The graph-writer into the project's real Neo4j from a real broker.

- The simulator's whale-dump scenario (a whale transfer to an exchange, a 2-3 % fall within
  the hour, a liquidation cascade after it), through the validator and the feature-engine
  (replay), into causal_events and the graph: the guide's Query 1 and Query 3 run unchanged
  with the official Python driver and return the chain; a full redelivery changes no count.
- Two liquidation episodes of one pair within the guide's hour (and one before them, and one
  alone later), as raw liquidations through the validator and the feature-engine: the
  guide's Query 2 returns exactly the rows the emitted cascades call for.
- Thousands of events streamed in while Neo4j restarts, or while the graph-writer is
  killed with SIGKILL and started again in the same group: every event id is in the graph
  exactly once and the relationships are exactly those the events call for (none doubled).

Each test's events carry times (and, for the synthetic ones, pairs, assets and wallets) of
their own, so its event ids and entities are its own in the shared database."""
import bisect
import json
import random
import subprocess
import threading
import time
import uuid

from confluent_kafka import Producer
from neo4j import GraphDatabase

from conftest import BIN, BOOTSTRAP, create_topic, neo4j_server, produce_lines, stack

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

QUERY_2 = """
MATCH (c:CascadeEvent)-[:ON_PAIR]->(p:Pair)
WHERE c.timestamp > datetime() - duration('P7D')
    AND c.severity IN ['high', 'critical']
WITH c, p
MATCH (prev:CascadeEvent)-[:ON_PAIR]->(p)
WHERE prev.timestamp < c.timestamp
    AND prev.timestamp > c.timestamp - duration('PT1H')
RETURN p.symbol AS pair,
       c.timestamp AS cascade_time,
       c.severity AS severity,
       c.total_liquidation_value AS liquidation_value,
       COUNT(prev) AS preceding_cascades
ORDER BY c.timestamp DESC"""

QUERY_3 = """
MATCH path = (trigger)-[*1..5]->(effect:CascadeEvent)
WHERE effect.id = $event_id
RETURN path"""


def causal_events_of(raw, tmp_path):
    """The causal events (bytes lines) the validator and the feature-engine raise from a
    file of raw ticks, both in replay mode."""
    quality, events = tmp_path / "q.jsonl", tmp_path / "ev.jsonl"
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(raw), "--output",
                    str(quality)], check=True, timeout=300, stderr=subprocess.DEVNULL)
    subprocess.run([str(BIN / "feature-engine"), "--replay", str(quality), "--output",
                    "/dev/null", "--events", str(events)], check=True, timeout=300,
                   stderr=subprocess.DEVNULL)
    return events.read_bytes().splitlines()


def scenario_events(tmp_path):
    """The whale-dump story's causal events (bytes lines), starting 2..20 h ago."""
    start_ms = int(time.time() * 1000) - random.randint(2 * 3600, 20 * 3600) * 1000
    raw = tmp_path / "raw.jsonl"
    subprocess.run([str(BIN / "himari-sim"), "--scenario", "whale-dump", "--duration", "4500",
                    "--rate", "50", "--start-ms", str(start_ms), "--out", str(raw)],
                   check=True, timeout=120)
    lines = causal_events_of(raw, tmp_path)
    kinds = [json.loads(x)["type"] for x in lines]
    assert {"whale_transfer", "price_movement", "liquidation_cascade"} <= set(kinds), kinds
    return lines


def node_count(session, ids):
    """Nodes with these event ids (of any label)."""
    return session.run("MATCH (e) WHERE e.id IN $ids RETURN count(e) AS n", ids=ids
                       ).single()["n"]


def counts(session, ids):
    """Nodes with these event ids, and relationships touching them."""
    r = session.run("MATCH (e)-[r]-() WHERE e.id IN $ids RETURN count(DISTINCT r) AS r",
                    ids=ids).single()["r"]
    return node_count(session, ids), r


def wait_nodes(session, ids, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if node_count(session, ids) >= len(ids):
            return
        time.sleep(0.5)
    raise AssertionError(f"{node_count(session, ids)} of {len(ids)} events in the graph")


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


# ---- the guide's Query 2: cascades preceded by cascades of their pair ---------------------

HOUR_MS = 3600 * 1000  # the guide's PT1H, and graph_writer.*_window_s's default (3600)


def liquidation_episodes(pair, t0, episodes, minutes, rng):
    """Raw ticks of one pair on binance: a trade every 2 s for `minutes` from t0 (a calm
    price near 100, so no price movement is raised), and for each (minute, count, volume)
    of `episodes` that many liquidations at price 100, 50 ms apart, a third of them buys.
    Bytes lines in time order."""
    recs, price, trade_id = [], 100.0, 1000
    for ts in range(t0, t0 + minutes * 60_000, 2000):
        price *= 1 + rng.gauss(0, 0.00005)
        recs.append({"timestamp": ts, "exchange": "binance", "symbol": pair,
                     "price": round(price, 4), "volume": round(rng.uniform(1, 20), 3),
                     "trade_id": trade_id, "side": rng.choice(["buy", "sell"])})
        trade_id += 1
    for minute, count, volume in episodes:
        for i in range(count):
            recs.append({"type": "liquidation", "timestamp": t0 + minute * 60_000 + 500 + i * 50,
                         "exchange": "binance", "symbol": pair, "price": 100.0,
                         "volume": volume, "side": "buy" if i % 3 == 0 else "sell"})
    recs.sort(key=lambda r: r["timestamp"])
    return [json.dumps(r, separators=(",", ":")).encode() for r in recs]


def query_2_rows_expected(cascades):
    """What the guide's Query 2 says of these cascade events (all of one pair, all in the
    last 7 days): each high or critical cascade with the number of cascades of its pair in
    the hour before it, when there is at least one; latest first."""
    rows = []
    for c in cascades:
        if c["severity"] not in ("high", "critical"):
            continue
        preceding = [p for p in cascades
                     if c["timestamp"] - HOUR_MS < p["timestamp"] < c["timestamp"]]
        if preceding:
            rows.append({"pair": c["symbol"], "cascade_time": c["timestamp"],
                         "severity": c["severity"],
                         "liquidation_value": c["total_liquidation_value"],
                         "preceding_cascades": len(preceding)})
    return sorted(rows, key=lambda r: -r["cascade_time"])


def epoch_ms(neo4j_datetime):
    return round(neo4j_datetime.to_native().timestamp() * 1000)


def test_query_2_finds_the_cascades_preceded_by_others_of_their_pair_within_the_hour(
        kafka, admin, neo4j_server, service_factory, tmp_path):
    rng = random.Random()
    pair = f"Q{uuid.uuid4().hex[:8].upper()}/USDT"  # this run's own pair
    t0 = int(time.time() * 1000) - rng.randint(3 * 3600, 20 * 3600) * 1000
    t0 -= t0 % 1000
    # (minute, liquidations, volume at 100): notional 1.6 M (medium), 6 M (high), 24 M
    # (critical), 6 M (high). The second and third episodes have cascades of the pair in
    # the hour before them (the first; the first and second); the last is alone.
    episodes = [(10, 8, 2000), (30, 12, 5000), (55, 20, 12000), (150, 10, 6000)]
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(b"\n".join(liquidation_episodes(pair, t0, episodes, 160, rng)) + b"\n")
    lines = causal_events_of(raw, tmp_path)
    events = [json.loads(x) for x in lines]
    cascades = [e for e in events if e["type"] == "liquidation_cascade"]
    assert [c["symbol"] for c in cascades] == [pair] * len(episodes), events
    expected = query_2_rows_expected(cascades)
    # The scenario is what it claims: two rows, the latest with two preceding cascades.
    assert [r["preceding_cascades"] for r in expected] == [2, 1], cascades

    topic = create_topic(admin, partitions=3, prefix="ev")
    produce_lines(BOOTSTRAP, topic, lines)
    writer = start_writer(service_factory, neo4j_server, topic, f"g-{topic}")
    bolt, _http, password_file = neo4j_server
    with GraphDatabase.driver(bolt, auth=("neo4j", password_file.read_text().strip())) as driver:
        with driver.session() as s:
            wait_nodes(s, [e["event_id"] for e in events])
            rows = [{**r, "cascade_time": epoch_ms(r["cascade_time"])}
                    for r in s.run(QUERY_2).data() if r["pair"] == pair]
            assert rows == expected
            # The graph-writer's own cascade links: each to every later one of its pair
            # within graph_writer.cascade_window_s, with the lag in seconds.
            links = s.run("MATCH (a:CascadeEvent)-[l:PRECEDED]->(b:CascadeEvent) "
                          "WHERE a.symbol = $pair RETURN a.id AS a, b.id AS b, l.lag_s AS lag",
                          pair=pair).data()
    assert sorted((x["a"], x["b"], x["lag"]) for x in links) == sorted(
        (a["event_id"], b["event_id"], (b["timestamp"] - a["timestamp"]) // 1000)
        for a in cascades for b in cascades
        if 0 < b["timestamp"] - a["timestamp"] <= HOUR_MS)
    assert writer.stop() == 0


# ---- thousands of events through a Neo4j restart and a kill -9 -----------------------------

def synthetic_events(n, pairs=8, step_ms=37_000):
    """n causal events in the feature-engine's JSON shape, one every step_ms, the last two
    days ago (outside the day the guide's Query 1 looks at: it joins any whale transfer
    with any BTC/USDT fall, so thousands of transfers there would push other tests' rows
    out of its LIMIT 20). On each of `pairs` pairs (base assets of this call's own, quote
    USDT) in turn, and per pair a whale transfer of its base asset (from this call's own
    wallet, to binance on every other one), a price movement, a liquidation cascade, and
    again. Per pair an event of a kind every 3 * pairs * step_ms (888 s): each event is
    linked to about four of the next kind within the hour. Dicts."""
    tag = uuid.uuid4().hex[:8]
    wallet = f"0x{tag}{'0' * 28}a11e"
    t0 = int(time.time() * 1000) - 48 * HOUR_MS - n * step_ms
    events = []
    for i in range(n):
        asset = f"S{tag.upper()}{i % pairs}"
        symbol, ts = f"{asset}/USDT", t0 + i * step_ms
        kind = (i // pairs) % 3
        if kind == 0:
            tx = f"0x{tag}{i:056x}"
            events.append({"type": "whale_transfer", "asset": asset, "timestamp": ts,
                           "amount": 500 + i % 400, "from": wallet,
                           "to": "0x28c6c06298d514db089934071355e5743bf21d60",
                           "exchange": "binance" if i % 2 else None, "symbol": None,
                           "tx_hash": tx, "event_id": f"whale_transfer:{tx}"})
        elif kind == 1:
            change = -1.0 - (i % 50) / 25
            events.append({"type": "price_movement", "symbol": symbol, "timestamp": ts,
                           "window_s": 300, "change_percent": change, "price_from": 100.0,
                           "price_to": 100.0 + change, "threshold_percent": 1,
                           "event_id": f"price_movement:{symbol}:300:{ts}"})
        else:
            count, end = 5 + i % 30, ts + 600 + i % 1000
            value = count * 400_000.0
            severity = ("critical" if value >= 2e7 else "high" if value >= 5e6
                        else "medium" if value >= 1e6 else "low")
            events.append({"type": "liquidation_cascade", "symbol": symbol, "timestamp": ts,
                           "end_timestamp": end, "count": count, "buy_count": count // 3,
                           "sell_count": count - count // 3, "total_liquidation_value": value,
                           "severity": severity,
                           "event_id": f"liquidation_cascade:{symbol}:{ts}:{end}"})
    return events


def expected_relationships(events, window_ms=HOUR_MS):
    """How many relationships the graph-writer makes for these events (docs/GRAPH.md, "The
    model"), when nothing else is on their pairs and assets: a whale transfer's OF_ASSET,
    TRANSFERRED (with a sender) and TO (with an exchange); a movement's or a cascade's
    ON_PAIR; and one PRECEDED per (whale transfer, later movement of a pair of its asset),
    (movement, later cascade of its pair), (cascade, later cascade of its pair) within the
    window (graph_writer.*_window_s, 1 h by default)."""
    later = {"price_movement": {}, "liquidation_cascade": {}}
    for e in events:
        if e["type"] in later:
            later[e["type"]].setdefault(e["symbol"], []).append(e["timestamp"])
    for by_symbol in later.values():
        for times in by_symbol.values():
            times.sort()

    def within(kind, symbol, ts):  # events of kind on symbol in (ts, ts + window]
        times = later[kind].get(symbol, [])
        return bisect.bisect_right(times, ts + window_ms) - bisect.bisect_right(times, ts)

    n = 0
    for e in events:
        if e["type"] == "whale_transfer":
            n += 1 + (e["from"] is not None) + (e["exchange"] is not None)
            n += sum(within("price_movement", symbol, e["timestamp"])
                     for symbol in later["price_movement"]
                     if symbol.split("/")[0] == e["asset"])
        elif e["type"] == "price_movement":
            n += 1 + within("liquidation_cascade", e["symbol"], e["timestamp"])
        else:
            n += 1 + within("liquidation_cascade", e["symbol"], e["timestamp"])
    return n


def encode(events):
    return [json.dumps(e, separators=(",", ":")).encode() for e in events]


class StreamProducer(threading.Thread):
    """Produces lines to a topic at about `rate` a second, in the background, so that a
    failure can be made while records are still arriving. `sent`: how many so far."""

    def __init__(self, topic, lines, rate):
        super().__init__(daemon=True)
        self.topic, self.lines, self.rate = topic, lines, rate
        self.sent, self.error = 0, None

    def run(self):
        try:
            p = Producer({"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True,
                          "linger.ms": 5, "partitioner": "murmur2_random"})
            failed = []
            start = time.monotonic()
            for i, line in enumerate(self.lines):
                ahead = start + i / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                while True:
                    try:
                        p.produce(self.topic, line,
                                  on_delivery=lambda err, _m: err and failed.append(err))
                        break
                    except BufferError:
                        p.poll(0.1)
                p.poll(0)
                self.sent = i + 1
            assert p.flush(60) == 0, "producer could not flush"
            assert not failed, f"delivery failures: {failed[:3]}"
        except Exception as e:  # noqa: BLE001 - raised again by finish()
            self.error = e

    def finish(self, timeout=120):
        self.join(timeout)
        assert not self.is_alive(), f"producer still running after {timeout}s"
        if self.error:
            raise self.error


def wait_metric(svc, name, labels, at_least, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = svc.metric(name, labels)
        if value >= at_least:  # nan (not yet exported) never is
            return value
        time.sleep(0.1)
    raise AssertionError(f"{name}{labels} below {at_least} after {timeout}s:\n" + svc.tail())


def assert_each_event_once_and_no_relationship_doubled(session, events):
    ids = [e["event_id"] for e in events]
    per_id = {r["id"]: r["n"] for r in session.run(
        "MATCH (e) WHERE e.id IN $ids RETURN e.id AS id, count(*) AS n", ids=ids)}
    missing = [i for i in ids if i not in per_id]
    doubled = {i: n for i, n in per_id.items() if n != 1}
    assert not missing and not doubled, (f"{len(missing)} missing (e.g. {missing[:3]}), "
                                         f"{len(doubled)} not once (e.g. {list(doubled)[:3]})")
    parallel = session.run(
        "MATCH (a)-[r]->(b) WHERE a.id IN $ids OR b.id IN $ids "
        "WITH a, b, type(r) AS t, count(r) AS n WHERE n > 1 RETURN count(*) AS pairs",
        ids=ids).single()["pairs"]
    assert parallel == 0, f"{parallel} relationships made more than once"
    _, relationships = counts(session, ids)
    assert relationships == expected_relationships(events)


def start_streaming(service_factory, neo4j, admin, n, warm=100, rate=250):
    """n synthetic events for a fresh topic and a graph-writer on it: the first `warm`
    produced and written (a Neo4j just started compiles the statements for ~15 s on a busy
    machine), the rest then streamed in at `rate` a second in the background."""
    events = synthetic_events(n)
    lines = encode(events)
    topic = create_topic(admin, partitions=3, prefix="ev")
    group = f"g-{topic}"
    writer = start_writer(service_factory, neo4j, topic, group)
    produce_lines(BOOTSTRAP, topic, lines[:warm])
    wait_metric(writer, "himari_graph_events_total", '{result="written"}', at_least=warm,
                timeout=120)
    stream = StreamProducer(topic, lines[warm:], rate)
    stream.start()
    return events, topic, group, writer, stream


def test_a_neo4j_restart_mid_stream_loses_no_event_and_doubles_nothing(
        kafka, admin, neo4j_server, service_factory):
    events, _topic, _group, writer, stream = start_streaming(
        service_factory, neo4j_server, admin, 4000)
    written = wait_metric(writer, "himari_graph_events_total", '{result="written"}',
                          at_least=600, timeout=90)
    assert stream.sent < len(stream.lines) and written < len(events), "not mid-stream"
    failures_before = writer.metric("himari_graph_sink_failures_total")
    stack("restart", "neo4j")
    stream.finish()
    bolt, _http, password_file = neo4j_server
    with GraphDatabase.driver(bolt, auth=("neo4j", password_file.read_text().strip())) as driver:
        with driver.session() as s:
            wait_nodes(s, [e["event_id"] for e in events], timeout=150)
            assert_each_event_once_and_no_relationship_doubled(s, events)
    # The restart was seen: flushes failed while Neo4j was away, and were sent again.
    assert writer.metric("himari_graph_sink_failures_total") > failures_before
    assert writer.metric("himari_graph_neo4j_up") == 1
    assert writer.stop() == 0


LABELS = {"whale_transfer": "WhaleTransfer", "price_movement": "PriceMovement",
          "liquidation_cascade": "CascadeEvent"}


def wait_writer_blocked(session, timeout=60):
    """Until a graph-writer transaction (its statements start UNWIND $rows) waits for a
    lock in Neo4j."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in session.run("SHOW TRANSACTIONS YIELD status, currentQuery"):
            if (r["currentQuery"] or "").startswith("UNWIND $rows") and \
                    r["status"].startswith("Blocked"):
                return
        time.sleep(0.1)
    raise AssertionError(f"no graph-writer transaction blocked after {timeout}s")


def test_a_kill_9_of_the_graph_writer_mid_commit_loses_no_event_and_doubles_nothing(
        kafka, admin, neo4j_server, service_factory):
    events, topic, group, writer, stream = start_streaming(
        service_factory, neo4j_server, admin, 6000)
    ids = [e["event_id"] for e in events]
    wait_metric(writer, "himari_graph_events_total", '{result="written"}', at_least=600,
                timeout=90)
    bolt, _http, password_file = neo4j_server
    with GraphDatabase.driver(bolt, auth=("neo4j", password_file.read_text().strip())) as driver, \
            driver.session() as s, driver.session() as holder:
        # A batch caught in its commit: our uncommitted node with the id of an event still
        # to come makes the writer's MERGE of that event wait for our transaction (the
        # uniqueness constraint's lock), so the kill lands while Neo4j runs the batch.
        held = events[min(len(events) - len(stream.lines) + stream.sent + 500,
                          len(events) - 1)]
        tx = holder.begin_transaction()
        tx.run(f"CREATE (:{LABELS[held['type']]} {{id: $id}})", id=held["event_id"]).consume()
        wait_writer_blocked(s)
        assert writer.metric("himari_graph_events_total", '{result="written"}') < len(events)
        writer.kill9()
        tx.rollback()
        # Neo4j finishes the orphaned transaction: that batch is in the graph, and its
        # offsets were never committed.
        wait_nodes(s, [held["event_id"]], timeout=30)
        in_graph = node_count(s, ids)

        again = start_writer(service_factory, neo4j_server, topic, group)
        stream.finish()
        wait_nodes(s, ids, timeout=150)
        assert_each_event_once_and_no_relationship_doubled(s, events)
    # The same group: the second writer went on from the committed offsets (not everything
    # again), and got the held batch again, which merged into what was there.
    written_again = wait_metric(again, "himari_graph_events_total", '{result="written"}',
                                at_least=len(events) - in_graph + 1, timeout=30)
    assert written_again < len(events)
    assert again.stop() == 0
