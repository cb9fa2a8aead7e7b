#!/usr/bin/env bash
# scripts/deps.sh - installs what building, testing and `make run` need on a Debian 12 machine:
# Debian packages, librdkafka built from source (scripts/build-librdkafka.sh ->
# $HIMARI_RDKAFKA_PREFIX), the Apache Kafka jars (scripts/java/kafka/pom.xml -> $HIMARI_KAFKA_LIB) and
# the integration tests' Python venv ($HIMARI_VENV). Idempotent: each step checks first and a
# second run only prints "==> deps: all present".
#
# Must never: run `apt-get update` when nothing is missing, touch Maven's settings or write a
# registry host name anywhere, install into the system Python, or start any server.
#
# Usage: scripts/deps.sh [--apt-only | --no-apt]
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

readonly APT_PACKAGES=(
	build-essential cmake ninja-build pkg-config
	libuv1-dev libssl-dev zlib1g-dev libhiredis-dev libpq-dev libprotobuf-c-dev protobuf-c-compiler
	libgrpc-dev libh2o-dev libyaml-dev libcmocka-dev libcurl4-openssl-dev libjansson-dev
	libzstd-dev libsnappy-dev
	redis-server postgresql-15 prometheus
	clang-format cppcheck shellcheck docker-compose ansible
	python3-venv openjdk-17-jre-headless maven
	curl procps iproute2 gdb
)
readonly POM="$HIMARI_ROOT/scripts/java/kafka/pom.xml"
readonly REQUIREMENTS="$HIMARI_ROOT/tests/integration/requirements.txt"

usage() {
	printf 'usage: %s [--apt-only | --no-apt]\n' "$(basename "$0")" >&2
	exit 2
}

do_apt=1
do_rest=1
case "${1:-}" in
"") ;;
--apt-only) do_rest=0 ;;
--no-apt) do_apt=0 ;;
-h | --help) usage ;;
*) usage ;;
esac
[[ $# -le 1 ]] || usage

changed=0

sha256_of() {
	sha256sum "$1" | cut -d' ' -f1
}

# Root runs apt-get directly; anyone else needs sudo (asked once, by apt's own prompt).
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		hm_die "need root for: $* (and sudo is not installed)"
	fi
}

step_apt() {
	local pkg missing=()
	for pkg in "${APT_PACKAGES[@]}"; do
		# "ii " = wanted and installed; "rc" (removed, config left) or absent counts as missing.
		if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null)" != "ii " ]]; then
			missing+=("$pkg")
		fi
	done
	# cargo fetches librdkafka's source: rustup's when present, else Debian's.
	command -v cargo >/dev/null 2>&1 || missing+=(cargo)
	if [[ ${#missing[@]} -eq 0 ]]; then
		return 0
	fi
	changed=1
	hm_say "deps: installing Debian packages: ${missing[*]}"
	as_root apt-get update -q || hm_die "apt-get update failed"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" || hm_die "apt-get install failed for: ${missing[*]}"
}

step_librdkafka() {
	"$HIMARI_ROOT/scripts/build-librdkafka.sh" --check && return 0
	changed=1
	"$HIMARI_ROOT/scripts/build-librdkafka.sh" || hm_die "librdkafka could not be built"
}

step_kafka_jars() {
	local stamp="$HIMARI_KAFKA_LIB/.pom.sha256" want tmp log
	[[ -f "$POM" ]] || hm_die "missing $POM"
	want="$(sha256_of "$POM")"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
		compgen -G "$HIMARI_KAFKA_LIB/kafka_2.13-*.jar" >/dev/null; then
		return 0
	fi
	changed=1
	command -v mvn >/dev/null 2>&1 || hm_die "mvn not found (install maven, or run without --no-apt)"
	command -v java >/dev/null 2>&1 || hm_die "java not found (install openjdk-17-jre-headless)"
	hm_say "deps: fetching Kafka jars with Maven into $HIMARI_KAFKA_LIB"
	# Fetch into a fresh sibling dir and swap it in, so an interrupted run never leaves a
	# half-filled lib dir that carries a valid stamp.
	mkdir -p "$(dirname "$HIMARI_KAFKA_LIB")"
	tmp="$HIMARI_KAFKA_LIB.tmp.$$"
	log="$(dirname "$HIMARI_KAFKA_LIB")/mvn.log"
	rm -rf "$tmp"
	# Maven's output goes to a log (with -q it still prints stray terminal escapes) and is
	# shown only when it fails.
	if ! mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
		rm -rf "$tmp"
		tail -n 40 "$log" >&2
		hm_die "Maven could not fetch the Kafka jars (output above; all of it in $log)"
	fi
	compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || {
		rm -rf "$tmp"
		hm_die "Maven ran but no kafka_2.13 jar arrived in $tmp"
	}
	printf '%s\n' "$want" >"$tmp/.pom.sha256"
	rm -rf "$HIMARI_KAFKA_LIB"
	mv "$tmp" "$HIMARI_KAFKA_LIB"
	hm_say "deps: $(find "$HIMARI_KAFKA_LIB" -name '*.jar' | wc -l) Kafka jars in $HIMARI_KAFKA_LIB"
}

# The S3 server the archiver's tests and `make run` use (scripts/stack.sh s3): versitygw,
# Apache-2.0, built from its module with the Go toolchain (/usr/local/go on these machines,
# else the go on PATH; it fetches a newer toolchain itself when the module needs one).
readonly VERSITYGW_MODULE=github.com/versity/versitygw/cmd/versitygw@v1.8.0

step_go_tools() {
	local go_bin
	if [[ -x "$HIMARI_VERSITYGW" ]]; then
		return 0
	fi
	go_bin="$(command -v go || true)"
	[[ -n "$go_bin" ]] || go_bin=/usr/local/go/bin/go
	[[ -x "$go_bin" ]] || hm_die "no Go toolchain (go on PATH or /usr/local/go) to build versitygw"
	changed=1
	hm_say "deps: building versitygw (S3 server) with go install into $(dirname "$HIMARI_VERSITYGW") (about a minute)"
	GOPATH="$HIMARI_CACHE_DIR/go" GOBIN="$(dirname "$HIMARI_VERSITYGW")" GOFLAGS=-modcacherw \
		"$go_bin" install "$VERSITYGW_MODULE" || hm_die "go install $VERSITYGW_MODULE failed"
}

# make_venv DIR - a venv from the python3 on PATH (pyenv's, on the polyglot machines), or from
# Debian's python3 (python3-venv) when that one has no ensurepip.
make_venv() {
	local dir="$1"
	rm -rf "$dir"
	mkdir -p "$(dirname "$dir")"
	if python3 -m venv "$dir" 2>/dev/null; then
		return 0
	fi
	rm -rf "$dir"
	hm_say "deps: python3 -m venv failed; trying /usr/bin/python3 (Debian's python3-venv)"
	[[ -x /usr/bin/python3 ]] || hm_die "no /usr/bin/python3 to fall back on"
	/usr/bin/python3 -m venv "$dir" || hm_die "cannot create a venv at $dir (install python3-venv)"
}

step_venv() {
	local stamp="$HIMARI_VENV/.requirements.sha256" want
	[[ -f "$REQUIREMENTS" ]] || hm_die "missing $REQUIREMENTS"
	want="$(sha256_of "$REQUIREMENTS")"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
		"$HIMARI_VENV/bin/python" -c 'pass' 2>/dev/null; then
		return 0
	fi
	changed=1
	# A venv whose interpreter no longer runs (its base Python was removed) is rebuilt whole.
	if ! "$HIMARI_VENV/bin/python" -c 'pass' 2>/dev/null; then
		hm_say "deps: creating Python venv at $HIMARI_VENV"
		make_venv "$HIMARI_VENV"
	fi
	rm -f "$stamp"
	hm_say "deps: installing $(basename "$REQUIREMENTS") into the venv"
	"$HIMARI_VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS" ||
		hm_die "pip install -r $REQUIREMENTS failed"
	printf '%s\n' "$want" >"$stamp"
}

if [[ $do_apt -eq 1 ]]; then
	step_apt
fi
if [[ $do_rest -eq 1 ]]; then
	step_librdkafka
	step_kafka_jars
	step_go_tools
	step_venv
fi

if [[ $changed -eq 0 ]]; then
	hm_say "deps: all present"
else
	hm_say "deps: done"
fi
