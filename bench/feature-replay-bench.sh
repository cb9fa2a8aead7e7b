#!/usr/bin/env bash
# feature-replay-bench.sh: the feature-engine's cost per input record, replay mode.
#
#   bench/feature-replay-bench.sh [--records N] [--rate R] [--rounds K] [--build DIR]
#
# himari-sim writes N records (default 1,000,000; 3 symbols x 5 exchanges; R records/s of
# simulated time, default 2,000, the make run feed, so 500 s of market), `ingest-validator
# --replay` turns them into quality records, then K rounds (default 5) of, in turn, the
# validator's replay of the raw file and `feature-engine --replay` of the quality file,
# both to /dev/null. Prints each run, then the medians as records/s and ns per record and
# the ratio feature-engine / validator (one core each; the same machine, the same minute).
# Writes only to a temporary directory, removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
records=1000000
rate=2000
rounds=5
build="$root/build"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--records) records=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	*) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
bin="$build/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "==> $records simulated records at $rate/s of simulated time"
"$bin/himari-sim" --seed 7 --count "$records" --rate "$rate" --out "$tmp/raw.jsonl"
"$bin/ingest-validator" --replay "$tmp/raw.jsonl" --output "$tmp/quality.jsonl" 2>/dev/null
seconds_of() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])["seconds"])'; }
declare -a fe iv
for ((r = 1; r <= rounds; r++)); do
	iv[r]=$("$bin/ingest-validator" --replay "$tmp/raw.jsonl" --output /dev/null 2>&1 | seconds_of)
	fe[r]=$("$bin/feature-engine" --replay "$tmp/quality.jsonl" --output /dev/null \
		--events /dev/null 2>&1 | seconds_of)
	printf '    round %d  validator %6.3f s  feature-engine %6.3f s\n' "$r" "${iv[r]}" "${fe[r]}"
done
python3 - "$records" "${iv[*]}" "${fe[*]}" <<'PY'
import statistics, sys
n = int(sys.argv[1])
iv = statistics.median(map(float, sys.argv[2].split()))
fe = statistics.median(map(float, sys.argv[3].split()))
for name, s in (("ingest-validator --replay (raw)", iv), ("feature-engine --replay (quality)", fe)):
    print(f"{name:36s} {n / s:12,.0f} records/s  {s / n * 1e9:7.0f} ns/record")
print(f"feature-engine / validator time: {fe / iv:.2f}x")
PY
