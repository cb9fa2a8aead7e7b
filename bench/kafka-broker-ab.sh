#!/usr/bin/env bash
# kafka-broker-ab.sh: end-to-end latency on the project's Kafka broker (3.9.1) against
# another Kafka version from Maven (default 4.4.0), A B A B on the test ports.
#
#   bench/kafka-broker-ab.sh [--version V] [--rounds K] [--seconds S] [--rate R]
#
# Fetches the other version's broker jars once into .cache/java/kafka-V/lib (a copy of
# scripts/java/kafka/pom.xml with kafka.version V and log4j 2's slf4j binding, which 4.x
# logs through), then per round and per broker: starts it on its own data directory
# (HIMARI_RUN_DIR under /tmp), warms it with 8 s of load (not measured: the first run
# after a start is the JIT's), runs bench/latency-matrix.sh --only
# eos_changelog_0ms,peer_txn,peer_eos, and stops it. The test stack's Kafka must not be
# running (same ports). Bounded: about 3 minutes per broker and round.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
version=4.4.0
rounds=2
seconds=20
rate=2000
while [[ $# -gt 0 ]]; do
	case "$1" in
	--version) version="$2"; shift 2 ;;
	--rounds) rounds="$2"; shift 2 ;;
	--seconds) seconds="$2"; shift 2 ;;
	--rate) rate="$2"; shift 2 ;;
	*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
	esac
done
cd "$root"
other_lib="$root/.cache/java/kafka-$version/lib"
if ! compgen -G "$other_lib/kafka_2.13-$version.jar" >/dev/null; then
	echo "==> fetching Kafka $version jars into $other_lib"
	work=$(mktemp -d)
	sed -e "s|<kafka.version>[^<]*<|<kafka.version>$version<|" \
		-e 's|<groupId>org.slf4j</groupId>|<groupId>org.apache.logging.log4j</groupId>|' \
		-e 's|<artifactId>slf4j-reload4j</artifactId>|<artifactId>log4j-slf4j-impl</artifactId>|' \
		-e 's|<version>1.7.36</version>|<version>2.26.1</version>|' \
		scripts/java/kafka/pom.xml >"$work/pom.xml"
	mvn -q -B -Dstyle.color=never -f "$work/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$other_lib" >"$work/mvn.log" 2>&1 ||
		{ tail -n 30 "$work/mvn.log" >&2; exit 1; }
	rm -rf "$work"
fi
declare -A lib_of=([kafka-3.9.1]="$root/.cache/java/kafka/lib" [kafka-$version]="$other_lib")
out_dir=$(mktemp -d /tmp/kafka-ab.XXXXXX)
for ((r = 1; r <= rounds; r++)); do
	for name in kafka-3.9.1 "kafka-$version"; do
		export HIMARI_PROFILE=test HIMARI_RUN_DIR="/tmp/himari-ab-$name" HIMARI_KAFKA_LIB="${lib_of[$name]}"
		scripts/stack.sh start kafka >/dev/null
		bench/latency-matrix.sh --rate "$rate" --seconds 8 --rounds 1 \
			--only peer_eos,eos_changelog_0ms --out "$out_dir/warm.jsonl" >/dev/null 2>&1 || true
		echo "==> $name, round $r"
		bench/latency-matrix.sh --rate "$rate" --seconds "$seconds" --rounds 1 \
			--only eos_changelog_0ms,peer_txn,peer_eos --out "$out_dir/$name.$r.jsonl" |
			grep ' round 1 '
		scripts/stack.sh stop kafka >/dev/null
	done
done
echo "==> JSON lines in $out_dir"
