#!/usr/bin/env python3
"""quality_codes.py: the per-code table of docs/QUALITY_CHECKS.md, from the code table.

Reads common/include/himari/quality.h (names, default weights, held state) and prints
the Markdown table that sits between the markers

    <!-- codes:begin -->  ...  <!-- codes:end -->

of docs/QUALITY_CHECKS.md. With --check DOC it compares instead and exits 1 when the
document is out of date (a code added to the table without its row, a weight changed).
Python 3 standard library only.
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODES_H = os.path.join(ROOT, "common", "include", "himari", "quality.h")

# code -> (threshold: the configuration key(s) that decide it, meaning in one line)
FACTS = {
    "PARSE_ERROR": ("checks.max_record_bytes", "not one JSON object (syntax, bad UTF-8, duplicate key, too deep) or longer than the limit; the bytes go to the DLQ"),
    "INVALID_TYPE": ("-", "\"type\" is not trade, liquidation or transfer; judged as a trade"),
    "MISSING_TIMESTAMP": ("-", "no \"timestamp\""),
    "INVALID_TIMESTAMP": ("-", "timestamp null, not an integer ms or ISO-8601 with zone, non-finite, or negative"),
    "MISSING_SYMBOL": ("-", "no \"symbol\" (trades and liquidations)"),
    "INVALID_SYMBOL": ("-", "symbol null, not a string, empty or with escapes"),
    "INVALID_SYMBOL_FORMAT": ("-", "symbol is not BASE/QUOTE, each 1..20 of [A-Z0-9]"),
    "MISSING_EXCHANGE": ("-", "no \"exchange\" (trades and liquidations)"),
    "INVALID_EXCHANGE": ("-", "exchange null, not a string, empty or with escapes"),
    "UNKNOWN_EXCHANGE": ("checks.valid_exchanges", "exchange (lower-cased) is not configured"),
    "INVALID_TRADE_ID": ("-", "trade_id present but null, negative, fractional, empty or of another type"),
    "MISSING_SIDE": ("-", "a liquidation without \"side\""),
    "INVALID_SIDE": ("-", "side is not buy or sell (any case)"),
    "MISSING_PRICE": ("-", "no \"price\""),
    "INVALID_PRICE": ("-", "price null, not a number or numeric string"),
    "NON_FINITE_PRICE": ("-", "price NaN, Infinity or beyond a double's range"),
    "INVALID_PRICE_NEGATIVE": ("-", "price below zero"),
    "ZERO_PRICE": ("-", "price exactly zero"),
    "EXCESSIVE_PRECISION": ("checks.max_price_decimals", "more significant decimals in the price than the limit"),
    "MISSING_VOLUME": ("-", "no \"volume\""),
    "INVALID_VOLUME": ("-", "volume null, not a number or numeric string"),
    "NON_FINITE_VOLUME": ("-", "volume NaN, Infinity or beyond a double's range"),
    "INVALID_VOLUME_NEGATIVE": ("-", "volume below zero"),
    "ZERO_VOLUME": ("-", "volume exactly zero"),
    "MISSING_ASSET": ("-", "a transfer without a valid \"asset\""),
    "MISSING_AMOUNT": ("-", "a transfer without \"amount\""),
    "INVALID_AMOUNT": ("-", "transfer amount not a number, non-finite, zero or negative"),
    "MISSING_ADDRESS": ("-", "a transfer whose \"from\" or \"to\" is missing or invalid"),
    "OUT_OF_ORDER": ("-", "timestamp before the key's last accepted one"),
    "DUPLICATE_TIMESTAMP": ("-", "same ms as the key's last tick, and one of the two has no trade id"),
    "LARGE_GAP": ("checks.large_gap_ms", "informational: more time since the key's last accepted tick than the limit (news about the feed: a lull or an outage, not a defect of this trade)"),
    "DUPLICATE_TRADE_ID": ("-", "trade id equal to one of the key's last 16"),
    "TRADE_ID_GAP": ("-", "numeric trade id more than one above the key's last"),
    "TRADE_ID_OUT_OF_ORDER": ("-", "numeric trade id below the key's last, and not a recent duplicate"),
    "STALE_DATA": ("checks.stale_ms", "older than the reference time (ingest time, or the symbol's watermark) by more"),
    "DELAYED_DATA": ("checks.delayed_ms", "older than the reference time by more (and not stale)"),
    "FUTURE_TIMESTAMP": ("checks.future_ms, future_lull_factor, future_lull_max_ms, future_confirm_ticks", "ahead of the reference time by more (event clock: and by more than the symbol's rhythm makes a lull)"),
    "EXTREME_PRICE_MOVE": ("checks.extreme_move", "\\|price / reference - 1\\| above, vs the key's last accepted price"),
    "LARGE_PRICE_MOVE": ("checks.large_move", "\\|price / reference - 1\\| above (and not extreme)"),
    "PRICE_ANOMALY": ("checks.anomaly_deviation, checks.ema_alpha", "\\|price / EMA - 1\\| above, vs the key's EMA of accepted prices"),
    "CROSS_EXCHANGE_DEVIATION": ("checks.cross_exchange_deviation, _window_ms, _min_peers", "away from the median of the other exchanges' fresh accepted prices"),
    "SPIKE_REVERTED": ("checks.spike_revert_tolerance", "informational: back at the reference after a flagged move (that one was a transient spike)"),
    "LEVEL_SHIFT_CONFIRMED": ("checks.level_confirm_ticks, _tolerance", "informational: confirms the new level the key's previous flagged tick showed"),
    "EXTREME_VOLUME_SPIKE": ("checks.extreme_volume_ratio, volume_spike_sigmas, volume_alpha, volume_warmup_ticks", "log volume above the key's baseline by max(ln ratio, (sigmas + 2) sd): a size far beyond any real market's tail"),
    "VOLUME_SPIKE": ("checks.volume_spike_ratio, volume_spike_sigmas, volume_alpha, volume_warmup_ticks", "informational: log volume above the key's baseline by max(ln ratio, sigmas sd) (a block trade is genuine data)"),
    "NOTIONAL_OUTLIER": ("checks.notional_max, checks.instruments", "informational: a notional (price x volume; inverse: contracts x size) above the limit"),
    "NO_STATE": ("checks.max_keys", "informational: judged without its key's state because the partition held max_keys keys (a trade's new key evicted another; a liquidation found none)"),
}

HOLDS = {"HM_QHOLD_ALL": "price, volume, sequence", "HM_QHOLD_VALUES": "price, volume",
         "HM_QHOLD_PRICE": "price", "HM_QHOLD_VOLUME": "volume", "HM_QHOLD_SEQ": "sequence",
         "0": "-"}


def read_codes():
    text = open(CODES_H, encoding="utf-8").read()
    body = text[text.index("#define HM_QCODES(X)"):]
    body = body[:body.index("typedef enum hm_qcode")]
    return re.findall(r"X\((\w+),\s*([0-9.]+),\s*([\w|]+)\)", body)


def table():
    rows = ["| # | code | weight | holds | threshold (config key) | meaning |",
            "|---|---|---|---|---|---|"]
    codes = read_codes()
    for i, (name, weight, holds) in enumerate(codes):
        if name not in FACTS:
            raise SystemExit(f"quality_codes.py: {name} has no entry in FACTS")
        thr, meaning = FACTS[name]
        rows.append(f"| {i} | `{name}` | {float(weight):.2f} | {HOLDS.get(holds, holds)} | "
                    f"{thr if thr == '-' else '`' + thr + '`'} | {meaning} |")
    extra = set(FACTS) - {c[0] for c in codes}
    if extra:
        raise SystemExit(f"quality_codes.py: FACTS names unknown codes {sorted(extra)}")
    return "\n".join(rows) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", metavar="DOC", help="compare with the table in DOC")
    a = ap.parse_args()
    t = table()
    if not a.check:
        sys.stdout.write(t)
        return 0
    doc = open(a.check, encoding="utf-8").read()
    m = re.search(r"<!-- codes:begin -->\n(.*?)<!-- codes:end -->", doc, re.S)
    if not m:
        print(f"quality_codes.py: {a.check} has no codes:begin/end markers", file=sys.stderr)
        return 1
    if m.group(1) != t:
        print(f"quality_codes.py: the code table in {a.check} is out of date; regenerate it "
              "with bench/quality_codes.py", file=sys.stderr)
        return 1
    print(f"quality_codes.py: {a.check} matches himari/quality.h ({t.count(chr(10)) - 2} codes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
