#!/usr/bin/env bash
# latency-matrix.sh: end-to-end latency of the validator's delivery modes and of the two
# Kafka peers, run in turn in one session so that the figures can be compared.
#
#   bench/latency-matrix.sh [--rate R] [--seconds S] [--rounds K]
#                           [--baseline NAME=BUILD_DIR ...] [--only NAME[,NAME...]] [--out FILE]
#
# Runs bench/validator_kafka_bench.py latency once per configuration, K rounds
# (default 2), round robin (A B C ... A B C ...) so that a slow minute of the shared
# machine hits every configuration alike:
#   eos_changelog_0ms   the default: offsets in the changelog, commit as soon as the
#                       previous commit ended
#   eos_changelog_5ms   the same with a 5 ms commit interval
#   eos_group_0ms       offsets in the consumer group (send_offsets_to_transaction)
#   alo_0ms             delivery: at_least_once (no transactions)
#   peer_txn            produce-only transactions every 5 ms: the broker's floor
#   peer_eos            minimal consume-transform-produce with send_offsets (Python)
#   NAME                with --baseline NAME=BUILD_DIR (repeatable): another build's
#                       validator at its defaults, e.g. the commit before this work
#                       (git worktree add /tmp/base <commit>; build it there)
# Prints one table row per run and then, per configuration, the median over rounds of
# p50/p99/p99.9 of the whole path and of each stage. JSON lines go to --out (default
# a temporary file, printed at the end).
#
# Needs the test stack's Kafka (HIMARI_PROFILE=test scripts/stack.sh start kafka) and a
# build (make build). Bounded: each run is --seconds of load plus ~15 s of set-up.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
py="$root/.cache/venv/bin/python"
rate=10000
seconds=20
rounds=2
declare -A build_of=()
only=""
out=""

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
	case "$1" in
	--rate) rate="$2"; shift 2 ;;
	--seconds) seconds="$2"; shift 2 ;;
	--rounds) rounds="$2"; shift 2 ;;
	--baseline) build_of[${2%%=*}]="${2#*=}"; shift 2 ;;
	--only) only="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	-h | --help) usage ;;
	*) printf 'latency-matrix.sh: unknown argument %s\n' "$1" >&2; usage ;;
	esac
done
[[ -x "$py" ]] || { echo "latency-matrix.sh: no venv at $py (run scripts/deps.sh)" >&2; exit 2; }
out=${out:-$(mktemp /tmp/latency-matrix.XXXXXX.jsonl)}
: >"$out"

declare -A args=(
	[eos_changelog_0ms]="--offsets changelog --commit-interval-ms 0"
	[eos_changelog_5ms]="--offsets changelog --commit-interval-ms 5"
	[eos_group_0ms]="--offsets group --commit-interval-ms 0"
	[alo_0ms]="--delivery at_least_once --commit-interval-ms 0"
	[peer_txn]="--peer txn"
	[peer_eos]="--peer eos"
)
names=(eos_changelog_0ms eos_changelog_5ms eos_group_0ms alo_0ms peer_txn peer_eos)
if [[ -n "$only" ]]; then IFS=, read -r -a names <<<"$only"; fi
for n in "${!build_of[@]}"; do
	[[ -x "${build_of[$n]}/bin/ingest-validator" ]] ||
		{ echo "latency-matrix.sh: no ${build_of[$n]}/bin/ingest-validator" >&2; exit 2; }
	args[$n]=""
	names+=("$n")
done
for n in "${names[@]}"; do
	[[ -v "args[$n]" ]] || { echo "latency-matrix.sh: unknown configuration $n" >&2; exit 2; }
done

echo "==> latency matrix: ${names[*]}; $rounds round(s) of ${seconds}s at ${rate}/s; JSON lines to $out"
for ((r = 1; r <= rounds; r++)); do
	for n in "${names[@]}"; do
		build_env=()
		[[ -v "build_of[$n]" ]] && build_env=(HIMARI_BUILD_DIR="${build_of[$n]}")
		# shellcheck disable=SC2086 # the configuration's arguments are words
		line=$(env "${build_env[@]}" "$py" "$here/validator_kafka_bench.py" latency \
			--rate "$rate" --seconds "$seconds" ${args[$n]} 2>/dev/null | tail -1)
		# The run's JSON, tagged with its configuration and round, to --out; a row here.
		"$py" -c '
import json, sys
r = json.loads(sys.argv[1]); r["config"] = sys.argv[2]; r["round"] = int(sys.argv[3])
with open(sys.argv[4], "a") as f:
    f.write(json.dumps(r) + "\n")
print("    round %s %-18s p50 %8s  p99 %8s  p99.9 %8s ms"
      % (sys.argv[3], sys.argv[2], r["p50_ms"], r["p99_ms"], r["p999_ms"]))' "$line" "$n" "$r" "$out"
	done
done

"$py" - "$out" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
order = list(dict.fromkeys(r["config"] for r in runs))
med = lambda xs: round(statistics.median(xs), 2) if xs else None
print(f"\nmedian over rounds (ms)     {'p50':>9}{'p99':>9}{'p99.9':>9}")
for c in order:
    rs = [r for r in runs if r["config"] == c]
    print(f"{c:<28}" + "".join(f"{med([r[k] for r in rs if r[k] is not None]) or '':>9}"
                               for k in ("p50_ms", "p99_ms", "p999_ms")))
    for stage in rs[0]["stages"]:
        vals = [[r["stages"][stage].get(q) for r in rs if r["stages"][stage].get(q) is not None]
                for q in ("0.5", "0.99", "0.999")]
        if any(vals):
            print(f"  {stage:<26}" + "".join(f"{med(v) if v else '':>9}" for v in vals))
EOF
echo "==> JSON lines: $out"
