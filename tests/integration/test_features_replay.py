"""The feature-engine's features and events equal an independent computation in numpy.

A simulated stream (himari-sim, 66 simulated minutes over 3 symbols and 5 exchanges, with
anomalies so that some records fall below the quality floor) goes through
`ingest-validator --replay` and then `feature-engine --replay`. This file computes the
same features from the quality records by another route: numpy masks over the records
that had arrived when each features_computed record was emitted (docs/FEATURES.md defines
the windows, the closes and the emission rule), not the engine's rings and buckets. Every
feature of every block (the symbol across exchanges, and each exchange) of a sample of
the records must agree to a relative 1e-9 (1e-6 for the z-score, whose standard deviation
can be small), the sequence of (symbol, interval) records must be the same, and so must
the causal events. No server is needed: this is the replay path that Kafka mode shares.
"""
import json
import math
import random
import re
import subprocess

import numpy as np
import pytest

from conftest import BIN, ROOT

FLOOR = 0.7
LATENESS_MS = 5000
INTERVAL_MS = 1000
FAST_S, SLOW_S = 30.0, 300.0
CROSS_FRESH_MS = 10000
MOVES = [(60, 0.002), (300, 0.004)]
CASCADE_WINDOW_MS, CASCADE_MIN_COUNT, CASCADE_MIN_NOTIONAL = 60000, 3, 1e12
WHALES = {"BTC": 100.0, "ETH": 1000.0}
RING_S = 3602  # per-second closes the engine keeps: P(s) looks back at most this far
SAMPLE = 600   # features_computed records compared feature by feature

CONFIG = f"""
features:
  quality_floor: {FLOOR}
  lateness_ms: {LATENESS_MS}
  emit_interval_ms: {INTERVAL_MS}
  ema_fast_s: {FAST_S}
  ema_slow_s: {SLOW_S}
  cross_fresh_ms: {CROSS_FRESH_MS}
events:
  price_moves: {{{", ".join(f"{w}: {t}" for w, t in MOVES)}}}
  cascade_window_ms: {CASCADE_WINDOW_MS}
  cascade_min_count: {CASCADE_MIN_COUNT}
  cascade_min_notional: {CASCADE_MIN_NOTIONAL:.0f}
  whale_thresholds: {{{", ".join(f"{a}: {v}" for a, v in WHALES.items())}}}
"""


def sequence_codes():
    """Issue codes that hold the validator's sequence state, read from the code table
    (HM_QCODES in himari/quality.h): records carrying one are not applied."""
    text = (ROOT / "common/include/himari/quality.h").read_text()
    rows = re.findall(r"X\((\w+), [0-9.]+, ([^)]*)\)", text)
    assert len(rows) > 40, "the code table was not found"
    return {name for name, holds in rows if "SEQ" in holds or "HM_QHOLD_ALL" in holds}


UNTRUSTED = sequence_codes()


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    d = tmp_path_factory.mktemp("features")
    raw, quality = d / "raw.jsonl", d / "quality.jsonl"
    subprocess.run([str(BIN / "himari-sim"), "--seed", "11", "--count", "40000", "--rate", "10",
                    "--anomaly-rate", "0.03", "--liquidation-rate", "0.02",
                    "--transfer-rate", "0.002", "--out", str(raw)], check=True)
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(raw), "--output",
                    str(quality)], check=True, capture_output=True)
    cfg = d / "fe.yaml"
    cfg.write_text(CONFIG)
    out, events, latest = d / "features.jsonl", d / "events.jsonl", d / "latest.jsonl"
    run = subprocess.run([str(BIN / "feature-engine"), "--config", str(cfg), "--replay",
                          str(quality), "--output", str(out), "--events", str(events),
                          "--latest", str(latest)], check=True, capture_output=True, text=True)
    summary = json.loads(run.stderr.strip().splitlines()[-1])
    load = lambda p: [json.loads(line) for line in p.read_text().splitlines()]
    return {"quality": load(quality), "features": load(out), "events": load(events),
            "latest": load(latest), "summary": summary}


class Reference:
    """The input as arrays, in arrival order, and the emissions the rule makes."""

    def __init__(self, records):
        rows, self.emissions, self.liqs, self.transfers = [], [], [], []
        sym_state = {}
        for r in records:
            if num(r.get("quality_score")) is None or UNTRUSTED & set(r.get("issues", [])):
                continue
            if r.get("type") == "transfer":
                self.transfers.append(r)
                continue
            sym, ex, ts = r.get("symbol"), r.get("exchange"), r.get("timestamp")
            if not isinstance(sym, str) or not sym or not isinstance(ex, str) or not ex \
                    or num(ts) is None:
                continue
            st = sym_state.setdefault(sym, {"newest": None, "end": None, "has": False})
            if st["newest"] is not None and ts < st["newest"] - LATENESS_MS:
                continue
            if st["end"] is not None and ts >= st["end"]:
                if st["has"]:
                    self.emissions.append((len(rows), sym, st["end"]))
                st["has"] = False
            if st["end"] is None or ts >= st["end"]:
                st["end"] = (ts // INTERVAL_MS + 1) * INTERVAL_MS
            st["newest"] = ts if st["newest"] is None else max(st["newest"], ts)
            score = r["quality_score"]
            price, volume = num(r.get("price")), num(r.get("volume"))
            priced = score >= FLOOR and price is not None and price > 0 and \
                volume is not None and volume >= 0
            if r.get("type") == "liquidation":
                self.liqs.append((len(rows), sym, ts, price, volume, r.get("side"), priced))
                continue
            rows.append((sym, ex, ts, price if priced else 0.0, volume if priced else 0.0,
                         {"buy": 1, "sell": -1}.get(r.get("side"), 0), score, priced,
                         score < FLOOR))
            st["has"] = True
        self.sym = np.array([r[0] for r in rows])
        self.ex = np.array([r[1] for r in rows])
        self.ts = np.array([r[2] for r in rows], dtype=np.int64)
        self.sec = self.ts // 1000
        self.price = np.array([r[3] for r in rows])
        self.vol = np.array([r[4] for r in rows])
        self.side = np.array([r[5] for r in rows])
        self.score = np.array([r[6] for r in rows])
        self.priced = np.array([r[7] for r in rows])
        self.below = np.array([r[8] for r in rows])
        self.emas = self._emas()

    def _emas(self):
        """EMA of per-second closes per market, read just before each emission."""
        state, out = {}, {}
        by_k = {}
        for k, sym, end in self.emissions:
            by_k.setdefault(k, []).append((sym, end))

        def read(s):
            if s is None or s["cur"] is None:
                return None
            close = s["close"][s["cur"]][1]
            if s["ema_sec"] is None:
                return close, close
            dt = s["cur"] - s["ema_sec"]
            return tuple(e + (1 - math.exp(-dt / tau)) * (close - e)
                         for e, tau in ((s["fast"], FAST_S), (s["slow"], SLOW_S)))

        for i in range(len(self.ts) + 1):
            for sym, end in by_k.get(i, []):
                for key in [(sym, None)] + [k for k in state if k[0] == sym and k[1]]:
                    out[(i, sym, end, key[1])] = read(state.get(key))
            if i == len(self.ts) or not self.priced[i]:
                continue
            for key in ((self.sym[i], None), (self.sym[i], self.ex[i])):
                s = state.setdefault(key, {"cur": None, "close": {}, "ema_sec": None,
                                           "fast": 0.0, "slow": 0.0})
                sec, ts, p = int(self.sec[i]), int(self.ts[i]), float(self.price[i])
                c = s["close"].get(sec)
                if c is None or ts >= c[0]:
                    s["close"][sec] = (ts, p)
                if s["cur"] is None:
                    s["cur"] = sec
                elif sec > s["cur"]:
                    close = s["close"][s["cur"]][1]
                    if s["ema_sec"] is None:
                        s["fast"] = s["slow"] = close
                    else:
                        dt = s["cur"] - s["ema_sec"]
                        s["fast"] += (1 - math.exp(-dt / FAST_S)) * (close - s["fast"])
                        s["slow"] += (1 - math.exp(-dt / SLOW_S)) * (close - s["slow"])
                    s["ema_sec"] = s["cur"]
                    s["cur"] = sec
        return out

    def market(self, k, sym, ex):
        m = np.zeros(len(self.ts), dtype=bool)
        m[:k] = True
        m &= self.sym == sym
        if ex is not None:
            m &= self.ex == ex
        return m

    def price_at(self, m, s):
        """P(s): the close of the latest second <= s with a trade, within the ring."""
        p = m & self.priced
        if not p.any():
            return None
        current = self.sec[p].max()
        q = p & (self.sec <= s) & (self.sec > current - RING_S)
        if not q.any():
            return None
        idx = np.flatnonzero(q)
        best = idx[np.lexsort((idx, self.ts[idx]))[-1]]  # max ts, then the later arrival
        return float(self.price[best])

    def closes(self, m, lo, hi):
        """{second: close} for the seconds in (lo, hi] with a trade."""
        idx = np.flatnonzero(m & self.priced & (self.sec > lo) & (self.sec <= hi))
        order = idx[np.lexsort((idx, self.ts[idx]))]  # by ts, then arrival: the last wins
        return {int(self.sec[i]): float(self.price[i]) for i in order}

    def features(self, k, sym, end, ex):
        m = self.market(k, sym, ex)
        e = (end - 1) // 1000
        f = {}
        last = self.price_at(m, e)
        f["last_price"] = last
        for key, w in (("log_return_1s", 1), ("log_return_10s", 10), ("log_return_1m", 60),
                       ("log_return_5m", 300), ("log_return_1h", 3600)):
            then = self.price_at(m, e - w) if last is not None else None
            f[key] = math.log(last / then) if then is not None else None
        closes = self.closes(m, e - 300, e)
        for key, w in (("realized_vol_1m", 60), ("realized_vol_5m", 300)):
            prev = self.price_at(m, e - w)
            total, n = 0.0, 0
            for sec in sorted(c for c in closes if c > e - w):
                if prev is not None:
                    total += math.log(closes[sec] / prev) ** 2
                    n += 1
                prev = closes[sec]
            f[key] = math.sqrt(total) if n else None
        ema = self.emas.get((k, sym, end, ex))
        f["ema_fast"], f["ema_slow"] = ema if ema and last is not None else (None, None)
        f["ema_spread_bps"] = (ema[0] - ema[1]) / ema[1] * 1e4 if ema and last is not None \
            else None
        win = {w: m & (self.sec > e - w) & (self.sec <= e) for w in (60, 300)}
        for w, tag in ((60, "1m"), (300, "5m")):
            t = win[w] & self.priced
            v = self.vol[t].sum()
            f[f"vwap_{tag}"] = float((self.price[t] * self.vol[t]).sum() / v) if v > 0 else None
            f[f"trade_count_{tag}"] = int(t.sum())
            f[f"volume_{tag}"] = float(v)
        t1 = win[60] & self.priced
        buy = self.vol[t1 & (self.side == 1)].sum()
        sell = self.vol[t1 & (self.side == -1)].sum()
        f["buy_sell_imbalance_1m"] = float((buy - sell) / (buy + sell)) if buy + sell > 0 \
            else None
        f["trade_intensity_1m"] = f["trade_count_1m"] / 60.0
        n = int(win[60].sum())
        f["mean_quality_1m"] = float(self.score[win[60]].mean()) if n else None
        f["bad_tick_ratio_1m"] = float(self.below[win[60]].sum() / n) if n else None
        t5 = win[300] & self.priced
        sd = float(self.price[t5].std()) if t5.sum() >= 2 else 0.0
        f["price_zscore_5m"] = (last - float(self.price[t5].mean())) / sd \
            if last is not None and sd > 0 else None
        f["cross_exchange_spread_bps"] = self.cross_spread(k, sym, end) if ex is None else None
        return f

    def cross_spread(self, k, sym, as_of):
        lasts = []
        for ex in np.unique(self.ex[self.market(k, sym, None)]):
            p = self.market(k, sym, ex) & self.priced
            if not p.any():
                continue
            idx = np.flatnonzero(p)
            best = idx[np.lexsort((idx, self.ts[idx]))[-1]]
            if as_of - CROSS_FRESH_MS <= self.ts[best] < as_of:
                lasts.append(float(self.price[best]))
        if len(lasts) < 2:
            return None
        lo, hi = min(lasts), max(lasts)
        return (hi - lo) / ((hi + lo) / 2) * 1e4


def close(a, b, rel):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-9)


@pytest.fixture(scope="module")
def reference(replayed):
    return Reference(replayed["quality"])


def test_the_replay_emits_one_record_per_symbol_interval_with_ticks(replayed, reference):
    got = [(r["symbol"], r["interval_end"]) for r in replayed["features"]]
    want = [(sym, end) for _, sym, end in reference.emissions]
    assert len(got) > 5000, "the stream should give thousands of intervals"
    assert got == want
    s = replayed["summary"]
    assert s["below_floor"] > 0, "anomalies should put some records below the floor"
    assert s["untrusted"] > 0, "anomalies should give records the features do not trust"
    assert s["late"] == 0 and s["bad_lines"] == 0


def test_every_feature_equals_the_numpy_computation(replayed, reference):
    rng = random.Random(3)
    picks = sorted(rng.sample(range(len(reference.emissions)), SAMPLE))
    picks.append(len(reference.emissions) - 1)  # the last: an hour of history behind it
    compared, mismatches = 0, []
    for i in picks:
        k, sym, end = reference.emissions[i]
        rec = replayed["features"][i]
        blocks = [(None, rec["features"])] + list(rec["exchanges"].items())
        for ex, got in blocks:
            want = reference.features(k, sym, end, ex)
            for key, w in want.items():
                rel = 1e-6 if key == "price_zscore_5m" else 1e-9
                compared += 1
                if not close(got[key], w, rel):
                    mismatches.append((sym, end, ex, key, got[key], w))
    assert not mismatches, f"{len(mismatches)} of {compared} differ, e.g. {mismatches[:5]}"
    # The comparison covered real values, not only nulls.
    last = replayed["features"][picks[-1]]["features"]
    assert last["log_return_1h"] is not None and last["realized_vol_5m"] is not None
    assert last["cross_exchange_spread_bps"] is not None


def reference_events(ref, quality):
    events = []
    fired = {}
    for k, sym, end in ref.emissions:
        m = ref.market(k, sym, None)
        e = (end - 1) // 1000
        now = ref.price_at(m, e)
        if now is None:
            continue
        for w, thr in MOVES:
            then = ref.price_at(m, e - w)
            if then is None:
                continue
            change = now / then - 1
            if abs(change) < thr / 2:
                fired[(sym, w)] = False
            if abs(change) >= thr and not fired.get((sym, w)):
                fired[(sym, w)] = True
                events.append(("price_movement", f"price_movement:{sym}:{w}:{end}"))
    return events


def test_price_movements_equal_the_reference(replayed, reference):
    got = [(e["type"], e["event_id"]) for e in replayed["events"]
           if e["type"] == "price_movement"]
    want = reference_events(reference, replayed["quality"])
    assert len(want) >= 5, "the thresholds should make several movements"
    # Both are in emission order per symbol; the engine interleaves symbols as the input does.
    assert sorted(got) == sorted(want)
    assert len(set(got)) == len(got), "an event id twice"


def test_cascades_and_whales_equal_the_reference(replayed, reference):
    got = {e["event_id"]: e for e in replayed["events"] if e["type"] != "price_movement"}
    want = {}
    # Liquidation episodes per symbol, closed by the symbol's next record past the window.
    # Every record of a symbol (trade or liquidation) can close it, in arrival order.
    sym_records = {}
    for r in replayed["quality"]:
        if num(r.get("quality_score")) is None or r.get("type") == "transfer" \
                or UNTRUSTED & set(r.get("issues", [])) \
                or not r.get("symbol") or num(r.get("timestamp")) is None:
            continue
        sym_records.setdefault(r["symbol"], []).append(r)
    for sym, recs in sym_records.items():
        ep = None
        newest = None
        for r in recs:
            ts = r["timestamp"]
            if not r.get("exchange") or (newest is not None and ts < newest - LATENESS_MS):
                continue
            if ep and ts > ep["last"] + CASCADE_WINDOW_MS:
                if ep["count"] >= CASCADE_MIN_COUNT:
                    want[f"liquidation_cascade:{sym}:{ep['first']}:{ep['last']}"] = ep
                ep = None
            newest = ts if newest is None else max(newest, ts)
            price, volume = num(r.get("price")), num(r.get("volume"))
            if r.get("type") == "liquidation" and r["quality_score"] >= FLOOR and \
                    price and price > 0 and volume is not None and volume >= 0:
                if ep is None:
                    ep = {"first": ts, "last": ts, "count": 0, "value": 0.0}
                ep["last"] = max(ep["last"], ts)
                ep["count"] += 1
                ep["value"] += price * volume
    for r in reference.transfers:
        asset = (r.get("asset") or "").upper()
        amount = num(r.get("amount"))
        if r["quality_score"] >= FLOOR and asset in WHALES and amount is not None \
                and amount >= WHALES[asset] and num(r.get("timestamp")) is not None:
            key = r["tx_hash"] if r.get("tx_hash") else f"{asset}:{r['timestamp']}:{r['from']}"
            want[f"whale_transfer:{key}"] = r
    cascades = [k for k in want if k.startswith("liquidation_cascade")]
    whales = [k for k in want if k.startswith("whale_transfer")]
    assert len(cascades) >= 3 and len(whales) >= 10, (len(cascades), len(whales))
    assert sorted(got) == sorted(want)
    for key in cascades:
        assert got[key]["count"] == want[key]["count"]
        assert math.isclose(got[key]["total_liquidation_value"], want[key]["value"],
                            rel_tol=1e-9)


def test_the_latest_view_is_each_symbols_newest_state(replayed):
    latest = {r["symbol"]: r for r in replayed["latest"]}
    assert sorted(latest) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    for sym, view in latest.items():
        trades = [r for r in replayed["quality"] if r.get("symbol") == sym
                  and r.get("type") == "trade" and num(r.get("timestamp")) is not None
                  and r.get("exchange") and num(r.get("quality_score")) is not None
                  and not UNTRUSTED & set(r["issues"])]
        assert view["timestamp"] == max(r["timestamp"] for r in trades)
        assert set(view["exchanges"]) == {r["exchange"] for r in trades}


def test_the_whale_dump_scenario_raises_exactly_its_events(tmp_path):
    """himari-sim --scenario whale-dump tells its story on a calm market; the
    feature-engine's defaults must find exactly that story: one whale transfer, one price
    movement per default rule on BTC/USDT, falling, after the transfer, and one liquidation
    cascade of the 25 liquidations, in that order of time."""
    raw, quality, events = tmp_path / "raw.jsonl", tmp_path / "q.jsonl", tmp_path / "ev.jsonl"
    subprocess.run([str(BIN / "himari-sim"), "--scenario", "whale-dump", "--duration", "4500",
                    "--rate", "20", "--out", str(raw)], check=True, timeout=120)
    subprocess.run([str(BIN / "ingest-validator"), "--replay", str(raw), "--output",
                    str(quality)], check=True, capture_output=True, timeout=120)
    subprocess.run([str(BIN / "feature-engine"), "--replay", str(quality), "--output",
                    "/dev/null", "--events", str(events)], check=True, capture_output=True,
                   timeout=300)
    got = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["type"], e.get("symbol") or e.get("asset"), e.get("window_s")) for e in got] == [
        ("whale_transfer", "BTC", None),
        ("price_movement", "BTC/USDT", 300),
        ("price_movement", "BTC/USDT", 3600),
        ("liquidation_cascade", "BTC/USDT", None),
    ]
    whale, move5, move60, cascade = got
    assert whale["amount"] == 850 and whale["exchange"] == "binance"
    assert -1.5 < move5["change_percent"] <= -1.0 and -3.1 < move60["change_percent"] <= -2.0
    assert whale["timestamp"] < move5["timestamp"] < move60["timestamp"] < cascade["timestamp"]
    assert cascade["count"] == 25 and cascade["sell_count"] == 25
    assert cascade["severity"] == "high"  # 25 x 10 BTC at ~35,800: ~9 M (5 M..20 M)
