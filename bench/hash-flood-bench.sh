#!/usr/bin/env bash
# hash-flood-bench.sh: the ingest-validator's replay throughput on symbols chosen to
# collide in its state maps, against the same number of ordinary symbols.
#
#   bench/hash-flood-bench.sh [--symbols N] [--rounds R] [--build DIR] [--baseline BIN]
#
# hash-flood-gen writes two files of N symbols x R rounds of binance trades (default
# 50,000 x 4): "collide", symbols whose key hashes under the validator's former fixed map
# hash all home in 1/64 of the map (a flooder's input), and "plain", consecutive names.
# `ingest-validator --replay` judges each, best of 3, as records/s; the figure that
# matters is the ratio plain/collide (1 means flooding buys nothing). With --baseline BIN
# (another build's ingest-validator, e.g. of the commit before the maps were keyed) the
# same files go through BIN as well, so before and after are measured in one run.
# N must stay within checks.max_keys (100,000) so that every symbol keeps its state.
#
# Exit status: 0, or 2 on bad usage. Writes only to a temporary directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
symbols=50000
rounds=4
build="$root/build"
baseline=""

while [ $# -gt 0 ]; do
    case "$1" in
        --symbols) symbols=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --build) build=$2; shift 2 ;;
        --baseline) baseline=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "hash-flood-bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

gen="$build/bin/hash-flood-gen"
iv="$build/bin/ingest-validator"
for b in "$gen" "$iv"; do
    [ -x "$b" ] || { echo "hash-flood-bench.sh: $b not built (cmake --build $build)" >&2; exit 2; }
done
[ -z "$baseline" ] || [ -x "$baseline" ] || {
    echo "hash-flood-bench.sh: --baseline $baseline is not executable" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/hash-flood-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

rate_of() { python3 -c 'import json,sys; print(int(json.loads(sys.stdin.read().strip().splitlines()[-1])["records_per_s"]))'; }
best() { # best of 3: binary, file
    local b=0 r
    for _ in 1 2 3; do
        r=$("$1" --replay "$2" --output /dev/null 2>&1 >/dev/null | rate_of)
        [ "$r" -gt "$b" ] && b=$r
    done
    echo "$b"
}

for mode in collide plain; do
    "$gen" --symbols "$symbols" --rounds "$rounds" --mode "$mode" --out "$work/$mode.jsonl" 2>&1
done
echo "== $symbols symbols x $rounds rounds of binance trades, replay to /dev/null, best of 3"
for bin in ${baseline:+"$baseline"} "$iv"; do
    c=$(best "$bin" "$work/collide.jsonl")
    p=$(best "$bin" "$work/plain.jsonl")
    echo "   $bin: colliding symbols $c records/s, plain symbols $p records/s," \
         "plain/colliding $(awk -v a="$p" -v b="$c" 'BEGIN { printf "%.2f", a / b }')x"
done
