#!/usr/bin/env bash
# seed-compare.sh: our ingest-validator replay against the seed's Python quality operator.
#
#   bench/seed-compare.sh [--count N] [--throughput-records N] [--seed S]
#                         [--seed-clock watermark|wall] [--keep DIR]
#   environment: BUILD (build directory, default <repo>/build), PYTHON (default the repo's
#   .cache/venv python, else python3)
#
# The peer is bench/seed_operator.py, the seed's ParseMarketData + QualityValidationOperator
# re-implemented line for line over JSONL (keyed by symbol, EMAs fed by every tick, the
# seed's thresholds), with its freshness "now" = the stream's watermark (--seed-clock
# watermark, the default: the most charitable reading of utcnow() for historical data;
# wall = the seed's literal utcnow(), which makes every historical tick STALE_DATA).
#
# 1. Accuracy corpus: himari-sim --count N (default 100000) --seed S (default 7)
#    --anomaly-rate 0.02 --rate 200 --labels L. Our replay and the seed operator judge it
#    (each timed); bench/accuracy.py scores both: detection by the kind's own codes and,
#    generous to the peer, by "any issue at all" (--any-issue); a false positive is an
#    unlabelled record with a score below 1 (for the seed: any issue). "Any issue" detection
#    is inflated by the peer's background flag rate, so the table also shows detection minus
#    the false-positive rate (Youden's J). The seed is run
#    literally and once more with --guard-zero-price (not the seed: without it one zero
#    price makes every later tick of its symbol raise ZeroDivisionError).
# 2. Throughput corpus: himari-sim --count N (default 1000000) --seed S, the simulator's
#    default market, no anomalies (the seed then runs every check on every record and never
#    raises). Both judge it to /dev/null, timed with /usr/bin/time (wall, user+sys CPU,
#    max RSS) or bash's `time` when /usr/bin/time is missing.
# 3. A table and one JSON line ({"event":"seed_compare",...}) with every figure.
#
# Builds BUILD (cmake -G Ninja) when its himari-sim or ingest-validator is missing.
# Writes only to a temporary directory (removed at the end unless --keep DIR).
# Exit status: 0 done, 1 a step failed, 2 bad usage.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
count=100000
tp_count=1000000
seed=7
keep=""
seed_clock=watermark
build=${BUILD:-$root/build}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$root/.cache/venv/bin/python" ]; then PYTHON="$root/.cache/venv/bin/python"; else PYTHON=python3; fi
fi

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --count) count=$2; shift 2 ;;
        --throughput-records) tp_count=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        --seed-clock) seed_clock=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "seed-compare.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
for v in "$count" "$tp_count" "$seed"; do
    case "$v" in ''|*[!0-9]*) echo "seed-compare.sh: '$v' is not a number" >&2; exit 2 ;; esac
done
case "$seed_clock" in watermark|wall) ;; *) echo "seed-compare.sh: --seed-clock watermark|wall" >&2; exit 2 ;; esac
if [ "$count" -le 0 ] || [ "$tp_count" -le 0 ]; then
    echo "seed-compare.sh: counts must be > 0" >&2
    exit 2
fi

sim="$build/bin/himari-sim"
iv="$build/bin/ingest-validator"
if [ ! -x "$sim" ] || [ ! -x "$iv" ]; then
    echo "== building $build"
    cmake -S "$root" -B "$build" -G Ninja >/dev/null
    cmake --build "$build" --target himari-sim ingest-validator
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/seed-compare.XXXXXX")
cleanup() { if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi; rm -rf "$work"; }
trap cleanup EXIT

# timed NAME OUTFILE CMD...: run CMD with stdout to OUTFILE and stderr to $work/NAME.err;
# writes "wall user sys maxrss_kb" to $work/NAME.time (maxrss 0 when unknown).
if [ -x /usr/bin/time ]; then timer="/usr/bin/time -v"; else timer="bash time"; fi
timed() {
    local name=$1 out=$2
    shift 2
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -v -o "$work/$name.tv" "$@" >"$out" 2>"$work/$name.err"
        awk -F': ' '
            /Elapsed \(wall clock\)/ { n = split($2, p, ":"); w = 0
                                       for (i = 1; i <= n; i++) w = w * 60 + p[i] }
            /User time/ { u = $2 } /System time/ { s = $2 }
            /Maximum resident set size/ { m = $2 }
            END { printf "%s %s %s %s\n", w, u, s, m }' "$work/$name.tv" >"$work/$name.time"
    else
        local TIMEFORMAT='%R %U %S 0'
        { time "$@" >"$out" 2>"$work/$name.err"; } 2>"$work/$name.time"
    fi
}

echo "== accuracy corpus: $count records, --seed $seed --anomaly-rate 0.02 --rate 200"
"$sim" --count "$count" --seed "$seed" --anomaly-rate 0.02 --rate 200 \
    --labels "$work/labels.jsonl" --out "$work/acc.jsonl"

echo "== ours: ingest-validator --replay"
timed ours_acc /dev/null "$iv" --replay "$work/acc.jsonl" --output "$work/ours.jsonl"
echo "== seed operator (literal; --clock $seed_clock)"
timed seed_acc "$work/seed.jsonl" "$PYTHON" "$here/seed_operator.py" --clock "$seed_clock" \
    "$work/acc.jsonl"
echo "== seed operator with --guard-zero-price (not the seed)"
timed guard_acc "$work/guard.jsonl" "$PYTHON" "$here/seed_operator.py" --clock "$seed_clock" \
    --guard-zero-price "$work/acc.jsonl"

# accuracy.py exits 1 when its (our) targets are missed; that is a result here, not an error.
acc() {
    local name=$1
    shift
    local st=0
    "$PYTHON" "$here/accuracy.py" "$@" >"$work/$name.acc" || st=$?
    [ "$st" -le 1 ] || { echo "seed-compare.sh: accuracy.py failed on $name" >&2; cat "$work/$name.acc" >&2; exit 1; }
    tail -n 1 "$work/$name.acc" >"$work/$name.accjson"
}
for who in ours seed guard; do
    acc "$who" "$work/labels.jsonl" "$work/acc.jsonl" "$work/$who.jsonl"
    acc "${who}_any" --any-issue "$work/labels.jsonl" "$work/acc.jsonl" "$work/$who.jsonl"
done
echo "== accuracy.py, seed literal, detection by code:"
sed -n '1,/^false positives/p' "$work/seed.acc" | sed 's/^/   /'
echo "== accuracy.py, seed literal, detection by any issue:"
sed -n '1,/^false positives/p' "$work/seed_any.acc" | sed 's/^/   /'

echo "== throughput corpus: $tp_count records, --seed $seed, no anomalies"
"$sim" --count "$tp_count" --seed "$seed" --out "$work/tp.jsonl"
echo "== ours"
timed ours_tp /dev/null "$iv" --replay "$work/tp.jsonl" --output /dev/null
echo "== seed operator"
timed seed_tp /dev/null "$PYTHON" "$here/seed_operator.py" --clock "$seed_clock" "$work/tp.jsonl"
rm -f "$work/tp.jsonl"

"$PYTHON" - "$work" "$count" "$tp_count" "$seed" "$timer" "$seed_clock" <<'EOF'
import json, os, sys

work, count, tp_count, seed, timer, clock = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]

def timing(name, n):
    wall, user, sys_, rss = (float(x) for x in open(os.path.join(work, name + ".time")).read().split())
    cpu = user + sys_
    return {"records": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "max_rss_kb": int(rss),
            "records_per_s": int(n / wall) if wall > 0 else None,
            "records_per_cpu_s": int(n / cpu) if cpu > 0 else None}

def last_json(name):
    lines = [l for l in open(os.path.join(work, name + ".err")).read().splitlines() if l.startswith("{")]
    return json.loads(lines[-1]) if lines else {}

def acc(name):
    return json.loads(open(os.path.join(work, name + ".accjson")).read())

res = {"event": "seed_compare", "seed": int(seed), "timer": timer,
       "seed_operator_clock": clock, "accuracy_records": count,
       "throughput_records": tp_count, "peers": {}}
for who, tag in (("ours", "ours"), ("seed", "seed"), ("guard", "seed_guard_zero_price")):
    a, b = acc(who), acc(who + "_any")
    p = {"accuracy_run": timing(who + "_acc", count),
         "detection_by_code": a["detection_rate"], "detection_any_issue": b["detection_rate"],
         "false_positive_rate": a["false_positive_rate"], "false_positives": a["false_positives"],
         "labelled": a["labelled"], "unlabelled": a["unlabelled"],
         "youden_j_any_issue": round(b["detection_rate"] - a["false_positive_rate"], 5),
         "per_kind_by_code": a["per_kind"], "per_kind_any_issue": b["per_kind"]}
    s = last_json(who + "_acc")
    if who != "ours":
        p["operator_exceptions"] = s.get("operator_exceptions")
        p["exception_types"] = s.get("exception_types")
        p["first_exception"] = s.get("first_exception")
    p["self_reported_records_per_s"] = s.get("records_per_s")
    res["peers"][tag] = p
res["peers"]["ours"]["throughput_run"] = timing("ours_tp", tp_count)
res["peers"]["ours"]["throughput_run"]["self_reported_records_per_s"] = last_json("ours_tp").get("records_per_s")
res["peers"]["seed"]["throughput_run"] = timing("seed_tp", tp_count)
st = last_json("seed_tp")
res["peers"]["seed"]["throughput_run"]["self_reported_records_per_s"] = st.get("records_per_s")
res["peers"]["seed"]["throughput_run"]["operator_exceptions"] = st.get("operator_exceptions")

o, s, g = res["peers"]["ours"], res["peers"]["seed"], res["peers"]["seed_guard_zero_price"]
def ratio(x, y):
    return round(x / y, 1) if x and y else None
res["throughput_ratio"] = ratio(o["throughput_run"]["records_per_s"], s["throughput_run"]["records_per_s"])
res["cpu_ratio"] = ratio(o["throughput_run"]["records_per_cpu_s"], s["throughput_run"]["records_per_cpu_s"])
res["accuracy_run_ratio"] = ratio(o["accuracy_run"]["records_per_s"], s["accuracy_run"]["records_per_s"])

print()
clock_text = ("watermark (freshness 'now' = max timestamp seen so far)" if clock == "watermark"
              else "wall (the seed's literal utcnow())")
print(f"seed operator clock: {clock_text}; timer: {timer}")
print(f"{'':34}{'ours':>14}{'seed':>14}{'seed+guard0':>14}{'ours/seed':>11}")
def row(label, ov, sv, gv, r=""):
    print(f"{label:34}{ov:>14}{sv:>14}{gv:>14}{r:>11}")
f = lambda v: f"{v:,}" if isinstance(v, int) else str(v)
row(f"throughput records/s ({tp_count:,})", f(o["throughput_run"]["records_per_s"]),
    f(s["throughput_run"]["records_per_s"]), "-", f"{res['throughput_ratio']}x")
row("  records per CPU second", f(o["throughput_run"]["records_per_cpu_s"]),
    f(s["throughput_run"]["records_per_cpu_s"]), "-", f"{res['cpu_ratio']}x")
row("  CPU s (user+sys)", o["throughput_run"]["cpu_s"], s["throughput_run"]["cpu_s"], "-")
row("  max RSS MiB", round(o["throughput_run"]["max_rss_kb"] / 1024, 1),
    round(s["throughput_run"]["max_rss_kb"] / 1024, 1), "-")
row(f"accuracy run records/s ({count:,})", f(o["accuracy_run"]["records_per_s"]),
    f(s["accuracy_run"]["records_per_s"]), f(g["accuracy_run"]["records_per_s"]),
    f"{res['accuracy_run_ratio']}x")
row("detection (kind's own codes)", f"{o['detection_by_code']:.4f}", f"{s['detection_by_code']:.4f}",
    f"{g['detection_by_code']:.4f}")
row("detection (any issue, generous)", f"{o['detection_any_issue']:.4f}", f"{s['detection_any_issue']:.4f}",
    f"{g['detection_any_issue']:.4f}")
row("false-positive rate", f"{o['false_positive_rate']:.5f}", f"{s['false_positive_rate']:.5f}",
    f"{g['false_positive_rate']:.5f}")
row("detection(any) - FP rate (Youden J)", f"{o['youden_j_any_issue']:.4f}",
    f"{s['youden_j_any_issue']:.4f}", f"{g['youden_j_any_issue']:.4f}")
row("operator exceptions (seed)", "-", f(s["operator_exceptions"]), f(g["operator_exceptions"]))
if s.get("first_exception"):
    fe = s["first_exception"]
    print(f"seed: first exception at line {fe['line']} ({fe['type']}: {fe['message']}); "
          "in Flink that fails the job, here the record is marked OPERATOR_EXCEPTION")
print(json.dumps(res, separators=(",", ":")))
EOF
