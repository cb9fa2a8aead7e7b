#!/usr/bin/env python3
"""accuracy.py: how well the ingest-validator finds the simulator's labelled anomalies.

Reads three files of one run:
  LABELS  himari-sim --labels output: {"seq":N,"kind":K,"exchange":E,"symbol":S} per line,
          seq = 0-based line index in the simulator output;
  INPUT   the simulator output (JSONL), only to check that the line counts agree;
  OUTPUT  ingest-validator --replay output (one quality record per input line).

A labelled record is detected when its issues contain one of its kind's expected codes
(EXPECTED below). A false positive is an unlabelled record whose quality_score is below 1:
informational codes (weight 0, e.g. SPIKE_REVERTED) do not lower the score and do not count.

Prints a table per kind, the codes behind the false positives, and a final JSON line.
Exit status: 0 when detection >= --min-detection (0.99) and the false-positive rate
<= --max-fp (0.005), 1 otherwise, 2 on bad input. Python 3 standard library only.
"""
import argparse
import collections
import json
import sys

MOVE = ["EXTREME_PRICE_MOVE", "LARGE_PRICE_MOVE", "PRICE_ANOMALY", "CROSS_EXCHANGE_DEVIATION"]

# Which codes count as finding each kind of the simulator's anomalies.
EXPECTED = {
    "price_spike": MOVE,
    "volume_spike": ["VOLUME_SPIKE", "EXTREME_VOLUME_SPIKE", "NOTIONAL_OUTLIER"],
    "negative_price": ["INVALID_PRICE_NEGATIVE"],
    "zero_price": ["ZERO_PRICE"],
    "negative_volume": ["INVALID_VOLUME_NEGATIVE"],
    "zero_volume": ["ZERO_VOLUME"],
    "missing_field": ["MISSING_TIMESTAMP", "MISSING_SYMBOL", "MISSING_EXCHANGE",
                      "MISSING_PRICE", "MISSING_VOLUME"],
    "wrong_type": ["INVALID_PRICE", "INVALID_VOLUME"],
    "non_finite": ["NON_FINITE_PRICE", "NON_FINITE_VOLUME", "INVALID_PRICE"],
    "malformed_json": ["PARSE_ERROR"],
    "invalid_utf8": ["PARSE_ERROR"],
    "out_of_order": ["OUT_OF_ORDER"],
    "duplicate_trade_id": ["DUPLICATE_TRADE_ID"],
    "trade_id_gap": ["TRADE_ID_GAP"],
    "stale": ["STALE_DATA"],
    "delayed": ["DELAYED_DATA"],
    "future": ["FUTURE_TIMESTAMP"],
    "excessive_precision": ["EXCESSIVE_PRECISION"],
    "unknown_exchange": ["UNKNOWN_EXCHANGE"],
    "invalid_symbol": ["INVALID_SYMBOL_FORMAT", "INVALID_SYMBOL"],
    "invalid_side": ["INVALID_SIDE"],
    "cross_exchange": ["CROSS_EXCHANGE_DEVIATION"],
    "level_shift": MOVE,
    "feed_silence": ["LARGE_GAP"],
}


def count_lines(path):
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (0 if last == b"\n" else 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("labels")
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--min-detection", type=float, default=0.99)
    ap.add_argument("--max-fp", type=float, default=0.005)
    ap.add_argument("--show-misses", type=int, default=0,
                    help="print up to N missed labels and N false positives")
    ap.add_argument("--any-issue", action="store_true",
                    help="detected = any issue at all, whatever its code (for peers "
                         "without our codes, e.g. bench/seed_operator.py)")
    a = ap.parse_args()

    labels = {}
    with open(a.labels, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec["kind"] not in EXPECTED:
                print(f"accuracy.py: {a.labels}:{ln}: unknown kind {rec['kind']!r}",
                      file=sys.stderr)
                return 2
            labels[rec["seq"]] = rec

    n_in = count_lines(a.input)
    per_kind = collections.OrderedDict((k, [0, 0]) for k in EXPECTED)  # labelled, detected
    fp_codes = collections.Counter()
    misses, fps = [], []
    n_out = clean = fp = 0
    with open(a.output, encoding="utf-8") as f:
        for seq, line in enumerate(f):
            n_out += 1
            q = json.loads(line)
            issues = q["issues"]
            lab = labels.get(seq)
            if lab is not None:
                k = per_kind[lab["kind"]]
                k[0] += 1
                if (bool(issues) if a.any_issue
                        else any(c in issues for c in EXPECTED[lab["kind"]])):
                    k[1] += 1
                elif len(misses) < a.show_misses:
                    misses.append((seq, lab["kind"], issues))
            else:
                clean += 1
                if q["quality_score"] < 1:
                    fp += 1
                    fp_codes.update(issues)
                    if len(fps) < a.show_misses:
                        fps.append((seq, issues))
    if n_out != n_in:
        print(f"accuracy.py: {a.output} has {n_out} records for {n_in} input lines",
              file=sys.stderr)
        return 2
    if labels and max(labels) >= n_out:
        print(f"accuracy.py: a label points past the output (seq {max(labels)})",
              file=sys.stderr)
        return 2

    labelled = sum(v[0] for v in per_kind.values())
    detected = sum(v[1] for v in per_kind.values())
    detection = detected / labelled if labelled else 1.0
    fp_rate = fp / clean if clean else 0.0

    print(f"{'kind':<22}{'labelled':>10}{'detected':>10}{'rate':>9}")
    for kind, (n, d) in per_kind.items():
        if n:
            print(f"{kind:<22}{n:>10}{d:>10}{d / n:>9.4f}")
    print(f"{'all':<22}{labelled:>10}{detected:>10}{detection:>9.4f}")
    print(f"false positives: {fp} of {clean} unlabelled records ({fp_rate:.5f})")
    if fp_codes:
        print("  codes on false positives: " +
              ", ".join(f"{c} {n}" for c, n in fp_codes.most_common()))
    for seq, kind, issues in misses:
        print(f"  missed: line {seq} {kind} issues={issues}")
    for seq, issues in fps:
        print(f"  false positive: line {seq} issues={issues}")
    ok = detection >= a.min_detection and fp_rate <= a.max_fp
    print(json.dumps({"event": "accuracy", "records": n_out, "labelled": labelled,
                      "detected": detected, "detection_rate": round(detection, 5),
                      "unlabelled": clean, "false_positives": fp,
                      "false_positive_rate": round(fp_rate, 6),
                      "per_kind": {k: round(d / n, 4) for k, (n, d) in per_kind.items() if n},
                      "per_kind_counts": {k: [n, d] for k, (n, d) in per_kind.items() if n},
                      "pass": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
