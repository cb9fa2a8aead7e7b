#!/usr/bin/env bash
# replay-bench.sh: the ingest-validator's replay throughput and accuracy on simulated data.
#
#   bench/replay-bench.sh [--records N] [--seed S] [--accuracy-records N] [--build DIR]
#                         [--min-rate R] [--keep DIR] [--baseline BIN [--rounds K]]
#
# 1. Throughput: himari-sim writes N records (default 2,000,000, fixed seed, the
#    simulator's default market: 3 symbols x 5 exchanges, 10,000 records/s of simulated
#    time, no injected anomalies); `ingest-validator --replay` judges them on one core,
#    once writing to /dev/null and once to a file. Best of 3 runs each, as records/s
#    including reading the input and writing every quality record.
# 2. Accuracy: a 100,000-record labelled run (--anomaly-rate 0.02) through
#    bench/accuracy.py: detection rate per anomaly kind and false-positive rate. The run
#    uses --rate 200 (500 s of simulated time) so that feed silences (90..300 s) happen
#    and end inside it; at the default 10,000/s it would span 10 s and have none.
#
# With --baseline BIN (another build's ingest-validator, e.g. of the commit before a
# change: `git worktree add /tmp/base <commit> && cmake -S /tmp/base -B /tmp/base/build -G
# Ninja && cmake --build /tmp/base/build`), the throughput part instead runs BIN and this
# build in turn, K rounds (default 7), both to /dev/null, and prints each one's median and
# the ratio this/baseline of the medians; it also checks that both write the same bytes
# (processed_at aside) and exits 1 if not.
#
# Exit status: 1 when the accuracy targets are missed (detection >= 0.99, false positives
# <= 0.005) or, with --min-rate, when the throughput is below it; 2 on bad usage.
# Needs the build's himari-sim and ingest-validator and python3; writes only to a
# temporary directory (removed at the end unless --keep).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
records=2000000
acc_records=100000
seed=20240101
build="$root/build"
min_rate=0
keep=""
baseline=""
rounds=7

while [ $# -gt 0 ]; do
    case "$1" in
        --records) records=$2; shift 2 ;;
        --accuracy-records) acc_records=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --min-rate) min_rate=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "replay-bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

sim="$build/bin/himari-sim"
iv="$build/bin/ingest-validator"
for b in "$sim" "$iv"; do
    [ -x "$b" ] || { echo "replay-bench.sh: $b not built (cmake --build $build)" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/replay-bench.XXXXXX")
cleanup() { if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi; rm -rf "$work"; }
trap cleanup EXIT

# The summary line ingest-validator prints on stderr: {"event":"replay_done",...}
rate_of() { python3 -c 'import json,sys; print(int(json.loads(sys.stdin.read().strip().splitlines()[-1])["records_per_s"]))'; }

echo "== generating $records records (seed $seed)"
"$sim" --count "$records" --seed "$seed" --out "$work/raw.jsonl"
bytes=$(stat -c %s "$work/raw.jsonl")
echo "   $(( bytes / 1048576 )) MiB of JSONL, $(( bytes / records )) bytes a record"

if [ -n "$baseline" ]; then
    [ -x "$baseline" ] || { echo "replay-bench.sh: --baseline $baseline is not executable" >&2; exit 2; }
    median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    : > "$work/base.rates"
    : > "$work/this.rates"
    for _ in $(seq "$rounds"); do
        "$baseline" --replay "$work/raw.jsonl" --output /dev/null 2>&1 >/dev/null | rate_of >> "$work/base.rates"
        "$iv" --replay "$work/raw.jsonl" --output /dev/null 2>&1 >/dev/null | rate_of >> "$work/this.rates"
    done
    base_med=$(median < "$work/base.rates")
    this_med=$(median < "$work/this.rates")
    echo "== replay throughput against a baseline ($rounds rounds each, in turn, to /dev/null)"
    echo "   baseline $baseline: median $base_med records/s ($(tr '\n' ' ' < "$work/base.rates"))"
    echo "   this build:          median $this_med records/s ($(tr '\n' ' ' < "$work/this.rates"))"
    echo "   ratio this/baseline: $(awk -v a="$this_med" -v b="$base_med" 'BEGIN { printf "%.3f", a / b }')"
    strip() { sed -E 's/"processed_at":"[^"]*"/"processed_at":""/' "$1"; }
    "$baseline" --replay "$work/raw.jsonl" --output "$work/base.out" 2>/dev/null
    "$iv" --replay "$work/raw.jsonl" --output "$work/this.out" 2>/dev/null
    if cmp -s <(strip "$work/base.out") <(strip "$work/this.out"); then
        echo "   output: byte-identical to the baseline's (processed_at aside), $records records"
    else
        echo "replay-bench.sh: output differs from the baseline's" >&2
        exit 1
    fi
    rm -f "$work/base.out" "$work/this.out"
    best_null=$this_med
    best_file=0
else
    best_null=0
    best_file=0
    for _ in 1 2 3; do
        r=$("$iv" --replay "$work/raw.jsonl" --output /dev/null 2>&1 >/dev/null | rate_of)
        [ "$r" -gt "$best_null" ] && best_null=$r
        r=$("$iv" --replay "$work/raw.jsonl" --output "$work/out.jsonl" 2>&1 >/dev/null | rate_of)
        [ "$r" -gt "$best_file" ] && best_file=$r
    done
    out_lines=$(wc -l < "$work/out.jsonl")
    [ "$out_lines" -eq "$records" ] || { echo "replay-bench.sh: $out_lines output lines for $records records" >&2; exit 1; }
    echo "== replay throughput (one core, best of 3)"
    echo "   to /dev/null: $best_null records/s"
    echo "   to a file:    $best_file records/s"
fi
rm -f "$work/raw.jsonl" "$work/out.jsonl"

echo "== accuracy: $acc_records records, --anomaly-rate 0.02, --rate 200 (seed $seed)"
"$sim" --count "$acc_records" --seed "$seed" --rate 200 --anomaly-rate 0.02 \
    --labels "$work/labels.jsonl" --out "$work/acc.jsonl"
"$iv" --replay "$work/acc.jsonl" --output "$work/acc.out.jsonl" --events "$work/events.jsonl" \
    2>"$work/acc.stderr"
echo "   events: $(wc -l < "$work/events.jsonl") (feed_silence / feed_resumed)"
status=0
python3 "$here/accuracy.py" "$work/labels.jsonl" "$work/acc.jsonl" "$work/acc.out.jsonl" || status=$?

printf '{"event":"replay_bench","records":%s,"records_per_s_devnull":%s,"records_per_s_file":%s,"accuracy_exit":%s}\n' \
    "$records" "$best_null" "$best_file" "$status"
if [ "$min_rate" -gt 0 ] && [ "$best_null" -lt "$min_rate" ]; then
    echo "replay-bench.sh: $best_null records/s is below --min-rate $min_rate" >&2
    exit 1
fi
exit "$status"
