#!/usr/bin/env bash
# bench/grpc-bench.sh - unary GetStatus round trips on loopback: the ingest-validator's gRPC
# server (C core on the libuv loop) against a minimal Python grpcio server answering the same
# method (bench/grpc_peer_server.py), with 1 and 16 concurrent grpcio clients, in alternation,
# ROUNDS times each. The ratio ours/peer in the same run is the figure (machines here are
# shared and noisy). Needs the test stack's Kafka: HIMARI_PROFILE=test scripts/stack.sh start kafka.
#   bench/grpc-bench.sh [--seconds S] [--rounds N]
set -euo pipefail
export HIMARI_PROFILE=test
# shellcheck source-path=SCRIPTDIR source=../scripts/env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/env.sh"
cd "$HIMARI_ROOT"
seconds=8
rounds=2
while [[ $# -gt 0 ]]; do
	case "$1" in
	--seconds) seconds="$2"; shift ;;
	--rounds) rounds="$2"; shift ;;
	*) echo "usage: $0 [--seconds S] [--rounds N]" >&2; exit 2 ;;
	esac
	shift
done
py="$HIMARI_VENV/bin/python"
ours_port=39181
peer_port=39182
log="$(mktemp -d)"
cleanup() { kill "$ours_pid" "$peer_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$log"; }
trap cleanup EXIT
HIMARI_KAFKA_BOOTSTRAP_SERVERS="$HIMARI_KAFKA_BOOTSTRAP" HIMARI_ADMIN_PORT=39180 \
	HIMARI_GRPC_PORT=$ours_port HIMARI_SERVICE_INSTANCE_ID=grpc-bench HIMARI_LOG_LEVEL=warn \
	HIMARI_VALIDATOR_GROUP_ID="grpc-bench-$$" build/bin/ingest-validator >"$log/ours.log" 2>&1 &
ours_pid=$!
"$py" bench/grpc_peer_server.py "$peer_port" >"$log/peer.log" 2>&1 &
peer_pid=$!
for _ in $(seq 1 100); do
	curl -fs 127.0.0.1:39180/readyz >/dev/null 2>&1 && break
	sleep 0.2
done
for ((r = 1; r <= rounds; r++)); do
	for clients in 1 16; do
		"$py" bench/grpc_bench.py --target "127.0.0.1:$ours_port" --clients "$clients" \
			--seconds "$seconds" --label "ours round $r" | tail -1
		"$py" bench/grpc_bench.py --target "127.0.0.1:$peer_port" --clients "$clients" \
			--seconds "$seconds" --label "python-peer round $r" | tail -1
	done
done
