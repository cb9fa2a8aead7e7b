#!/usr/bin/env python3
"""The ingest-validator on real exchange trades: false positives per market and per code.

Every trade in a real capture is genuine, so a quality score below 1 on one is a false
positive. The file (JSONL, optionally gzip) is cut into capture windows wherever two
consecutive lines are more than --window-gap-h hours apart (separate captures years
apart would otherwise look like one long silence), and each window is replayed through
its own `ingest-validator --replay`, with `checks.valid_exchanges` extended by every
exchange name the file uses (a market's own name, e.g. binanceusdm, is not an unknown
exchange). Prints a table per market (trades, false positives, rate, codes) and per code,
then one JSON line; exit 1 when --max-overall or --max-market (markets of at least
--market-min trades) is exceeded.

  python3 bench/real_trades.py ../shared/data/real-trades/dev_trades.jsonl.gz
      [--build build] [--max-overall 0.005] [--max-market 0.02] [--keep DIR]
"""
import argparse
import collections
import gzip
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_EXCHANGES = ["binance", "kraken", "bybit", "deribit", "coinbase"]


def windows(path, gap_ms, exchanges):
    """The file's lines, cut into capture windows; adds each exchange name to `exchanges`."""
    opener = gzip.open if str(path).endswith(".gz") else open
    cur, last = [], None
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if isinstance(rec.get("exchange"), str):
                exchanges.add(rec["exchange"].lower())
            ts = rec.get("timestamp")
            if cur and isinstance(ts, int) and last is not None and ts - last > gap_ms:
                yield cur
                cur = []
            cur.append(line if line.endswith("\n") else line + "\n")
            last = ts if isinstance(ts, int) else last
    if cur:
        yield cur


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trades")
    ap.add_argument("--build", default=str(ROOT / "build"))
    ap.add_argument("--window-gap-h", type=float, default=6)
    ap.add_argument("--max-overall", type=float, default=0.005)
    ap.add_argument("--max-market", type=float, default=0.02)
    ap.add_argument("--market-min", type=int, default=1000)
    ap.add_argument("--config", help="a YAML config to start from (checks.valid_exchanges "
                                     "is replaced)")
    ap.add_argument("--keep", help="keep the windows and their quality records here")
    a = ap.parse_args()
    iv = pathlib.Path(a.build) / "bin" / "ingest-validator"
    if not iv.exists():
        sys.exit(f"real_trades.py: {iv} not built (make build)")
    work = pathlib.Path(a.keep or tempfile.mkdtemp(prefix="real-trades."))
    work.mkdir(parents=True, exist_ok=True)

    names = set()
    wins = list(windows(a.trades, a.window_gap_h * 3600 * 1000, names))
    exchanges = DEFAULT_EXCHANGES + sorted(names - set(DEFAULT_EXCHANGES))
    cfg = work / "config.yaml"
    base = pathlib.Path(a.config).read_text() if a.config else ""
    cfg.write_text(base + "\nchecks:\n  valid_exchanges: " + json.dumps(exchanges) + "\n"
                   if "checks:" not in base else base.replace(
                       "checks:", "checks:\n  valid_exchanges: " + json.dumps(exchanges), 1))

    trades = collections.Counter()
    fps = collections.Counter()
    codes = collections.Counter()
    market_codes = collections.defaultdict(collections.Counter)
    for i, w in enumerate(wins, 1):
        src, out = work / f"window{i}.jsonl", work / f"window{i}.quality.jsonl"
        src.write_text("".join(w))
        r = subprocess.run([str(iv), "--config", str(cfg), "--replay", str(src), "--output",
                            str(out)], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"real_trades.py: replay of window {i} failed: {r.stderr[-2000:]}")
        n = 0
        for line in open(out, encoding="utf-8"):
            q = json.loads(line)
            n += 1
            m = (q["exchange"] or "-", q["symbol"] or "-")  # a transfer has neither
            trades[m] += 1
            if q["quality_score"] < 1:
                fps[m] += 1
                for c in q["issues"]:
                    codes[c] += 1
                    market_codes[m][c] += 1
        if n != len(w):
            sys.exit(f"real_trades.py: window {i}: {n} quality records for {len(w)} trades")
    total, bad = sum(trades.values()), sum(fps.values())
    print(f"{len(wins)} capture windows, {total} trades; false positive = score < 1")
    print(f"{'market':<28}{'trades':>8}{'false +':>9}{'rate':>9}  codes")
    worst = 0.0
    for m in sorted(trades, key=lambda m: (-trades[m], m)):
        rate = fps[m] / trades[m]
        if trades[m] >= a.market_min:
            worst = max(worst, rate)
        detail = ", ".join(f"{c} {n}" for c, n in market_codes[m].most_common())
        print(f"{m[0] + ' ' + m[1]:<28}{trades[m]:>8}{fps[m]:>9}{100 * rate:>8.2f}%  {detail}")
    overall = bad / total if total else 0.0
    print(f"{'all':<28}{total:>8}{bad:>9}{100 * overall:>8.2f}%")
    print("codes on false positives: " + (", ".join(f"{c} {n}" for c, n in codes.most_common())
                                          or "none"))
    ok = overall <= a.max_overall and worst <= a.max_market
    print(json.dumps({"event": "real_trades", "windows": len(wins), "trades": total,
                      "false_positives": bad, "rate": round(overall, 5),
                      "worst_market_rate": round(worst, 5),
                      "per_market": {f"{m[0]} {m[1]}": {"trades": trades[m], "fp": fps[m]}
                                     for m in sorted(trades)},
                      "codes": dict(codes.most_common()), "pass": ok}))
    if not a.keep:
        for p in work.iterdir():
            p.unlink()
        os.rmdir(work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
