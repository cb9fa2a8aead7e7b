#!/usr/bin/env bash
# bench/features-bench.sh - the feature-engine serving strategies (bench/features_bench.py):
#   1. GetLatest p50/p99 with 1 and 16 clients of a compiled load generator (bench/grpc-load,
#      C; or ghz with --client ghz) against a Python grpcio + redis-py server,
#      redis-benchmark GET and our GetStatus, while a 1,000 trades/s feed runs;
#   2. freshness at 10,000 trades/s: trade sent -> visible in quality_scores, in
#      features:{symbol}:latest and in StreamFeatures, with 1 subscriber;
#   3. the same with 100 StreamFeatures subscribers (4 processes).
# With --baseline DIR, step 1 runs first on that build (e.g. an earlier commit's: git
# worktree add /tmp/base REV && make -C /tmp/base build), then on ours: a before/after pair.
# With --client ghz, installs ghz (go install, into .cache/go/bin) when it is missing.
# Needs a build (make build) and the test stack:
#   HIMARI_PROFILE=test scripts/stack.sh start kafka redis
#   bench/features-bench.sh [--seconds S] [--rounds N] [--baseline BUILD_DIR]
#                           [--only latency|freshness] [--client c|ghz]
set -euo pipefail
export HIMARI_PROFILE=test
# shellcheck source-path=SCRIPTDIR source=../scripts/env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$HIMARI_ROOT"
seconds=8
rounds=2
baseline=""
only=""
client=c
while [[ $# -gt 0 ]]; do
	case "$1" in
	--seconds) seconds="$2"; shift ;;
	--rounds) rounds="$2"; shift ;;
	--baseline) baseline="$2"; shift ;;
	--only) only="$2"; shift ;;
	--client) client="$2"; shift ;;
	*) sed -n '2,16p' "$0" >&2; exit 2 ;;
	esac
	shift
done
py="$HIMARI_VENV/bin/python"
ghz="$HIMARI_ROOT/.cache/go/bin/ghz"
if [[ "$client" == ghz && ! -x "$ghz" ]]; then
	echo "==> installing ghz v0.93.0 into .cache/go/bin (go install)"
	GOPATH="$HIMARI_ROOT/.cache/go" GOBIN="$HIMARI_ROOT/.cache/go/bin" GOFLAGS=-modcacherw \
		go install github.com/bojand/ghz/cmd/ghz@v0.93.0
fi
export GHZ="$ghz"
if [[ -z "$only" || "$only" == latency ]]; then
	if [[ -n "$baseline" ]]; then
		echo "==> GetLatest on the baseline build $baseline"
		HIMARI_BUILD_DIR="$baseline" "$py" bench/features_bench.py latency --seconds "$seconds" \
			--rounds "$rounds" --client "$client"
	fi
	echo "==> GetLatest on build/"
	"$py" bench/features_bench.py latency --seconds "$seconds" --rounds "$rounds" --client "$client"
fi
if [[ -z "$only" || "$only" == freshness ]]; then
	echo "==> freshness at 10,000 trades/s, 1 StreamFeatures subscriber"
	"$py" bench/features_bench.py freshness --rate 10000 --seconds 20
	echo "==> freshness at 10,000 trades/s, 100 StreamFeatures subscribers"
	"$py" bench/features_bench.py freshness --rate 10000 --seconds 20 --streams 100 --procs 4
fi
