#!/usr/bin/env bash
# real-trades.sh: the ingest-validator on real markets and on the simulator's labelled
# anomalies, the two sides of one trade-off (false positives on genuine data, detection
# of bad data).
#
#   bench/real-trades.sh [--trades FILE] [--build DIR] [--seeds "S1 S2 .."] [--records N]
#
# 1. bench/real_trades.py on FILE (default: the development set of real exchange trades,
#    tests/unit/fixtures/real-trades/dev_trades.jsonl.gz, or $HIMARI_REAL_TRADES, e.g. a
#    hold-out kept elsewhere): replays each capture window and prints the false-positive rate
#    (score < 1) per market and per code. Targets: <= 0.5% overall, <= 2% on every market
#    of >= 1,000 trades.
# 2. For each seed (default 20240101 7 42 99 1234): himari-sim writes N labelled records (default
#    100,000, --anomaly-rate 0.02, --rate 200 so that feed silences happen inside the
#    run), the validator replays them and bench/accuracy.py prints the detection rate per
#    kind (a code of weight 0 that names the anomaly counts as found) and the false
#    positives; then the rate per kind pooled over the seeds. Target: >= 99% on every kind.
# 3. The simulator's profiles of real markets (himari-sim --profile, all clean data), each
#    through the validator: the records scored below 1 (false positives) and their codes:
#    sparse (--rate 0.05: minutes between a symbol's trades, lulls up to an hour),
#    fat-tails, bursts, insurance-fund, inverse (with a binancecoinm exchange) at --rate
#    200, and all of them at --rate 2. Reported, not judged: an insurance-fund print is a
#    genuine trade at a price no other exchange trades at, and is flagged.
# Exit status 1 when a target of 1 or 2 is missed, 2 on bad usage. Writes only to a
# temporary directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
trades=${HIMARI_REAL_TRADES:-$root/tests/unit/fixtures/real-trades/dev_trades.jsonl.gz}
build="$root/build"
seeds="20240101 7 42 99 1234"
records=100000
while [ $# -gt 0 ]; do
    case "$1" in
        --trades) trades=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --records) records=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "real-trades.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
[ -f "$trades" ] || { echo "real-trades.sh: no trades file at $trades (--trades FILE)" >&2; exit 2; }
for b in himari-sim ingest-validator; do
    [ -x "$build/bin/$b" ] || { echo "real-trades.sh: $build/bin/$b not built (make build)" >&2; exit 2; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/real-trades.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0

echo "== real trades: $trades"
python3 "$here/real_trades.py" "$trades" --build "$build" || status=1

: > "$work/acc.jsonl"
for seed in $seeds; do
    echo "== simulator: $records records, --anomaly-rate 0.02, --rate 200, seed $seed"
    "$build/bin/himari-sim" --count "$records" --seed "$seed" --rate 200 --anomaly-rate 0.02 \
        --labels "$work/labels.jsonl" --out "$work/sim.jsonl"
    "$build/bin/ingest-validator" --replay "$work/sim.jsonl" --output "$work/sim.out.jsonl" 2>/dev/null
    python3 "$here/accuracy.py" "$work/labels.jsonl" "$work/sim.jsonl" "$work/sim.out.jsonl" \
        --show-misses 5 | tee "$work/acc.txt" || true
    tail -1 "$work/acc.txt" >> "$work/acc.jsonl"
done
# Per kind, pooled over the seeds (one seed labels ~95 records of a kind: one miss is 1%).
python3 - "$work/acc.jsonl" <<'EOF' || status=1
import collections, json, sys
n, d, fp, clean = collections.Counter(), collections.Counter(), 0, 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    fp += r["false_positives"]
    clean += r["unlabelled"]
    for k, (a, b) in r["per_kind_counts"].items():
        n[k] += a
        d[k] += b
print("== detection per kind, pooled over the seeds")
for k in n:
    print(f"   {k:<22}{d[k]:>6} / {n[k]:<6}{d[k] / n[k]:>8.4f}")
low = min(d[k] / n[k] for k in n)
print(f"   lowest {low:.4f} (target >= 0.99); false positives {fp} of {clean} unlabelled")
print(json.dumps({"event": "synthetic_detection", "lowest_kind_rate": round(low, 4),
                  "per_kind": {k: [n[k], d[k]] for k in n}, "false_positives": fp,
                  "unlabelled": clean}))
sys.exit(0 if low >= 0.99 else 1)
EOF

echo "== simulator profiles of real markets (clean data): records scored below 1"
for p in sparse fat-tails bursts insurance-fund inverse all; do
    rate=200
    exchanges=binance,kraken,bybit,coinbase,deribit
    profile=$p
    case "$p" in
        sparse) rate=0.05 ;;
        inverse) exchanges=binance,binancecoinm,kraken,bybit ;;
        all) profile=sparse,fat-tails,bursts,insurance-fund,inverse
             exchanges=binance,binancecoinm,kraken,bybit
             rate=2 ;;
    esac
    echo "-- --profile $profile --rate $rate"
    "$build/bin/himari-sim" --count "$records" --seed 3 --rate "$rate" --exchanges "$exchanges" \
        --profile "$profile" --out "$work/profile.jsonl"
    # Reported, not judged (targets of 100%): the same replay and count as the real trades'.
    python3 "$here/real_trades.py" "$work/profile.jsonl" --build "$build" --max-overall 1 \
        --max-market 1 | grep -v '^{'
done
exit "$status"
