#!/usr/bin/env bash
# scripts/deps.sh - installs what building, testing and `make run` need on a Debian 12 machine:
# Debian packages, librdkafka built from source (scripts/build-librdkafka.sh ->
# $HIMARI_RDKAFKA_PREFIX), the Apache Kafka jars (scripts/java/kafka/pom.xml -> $HIMARI_KAFKA_LIB),
# neo4j-harness's jars and our Neo4j launcher (scripts/java/neo4j/ -> $HIMARI_NEO4J_DIR), the S3
# server (versitygw) and the integration tests' Python venv ($HIMARI_VENV). Idempotent: each
# step checks first and a second run only prints "==> deps: all present".
#
# Must never: run `apt-get update` when nothing is missing, touch Maven's settings or write a
# registry host name anywhere, install into the system Python, or start any server of the
# stack (the Neo4j launcher's one self-test runs a throw-away store in a temporary dir, on
# ports the kernel picks, and stops it), nor leave a packaged daemon running or enabled that
# listens beyond loopback (Debian's Prometheus, Alertmanager and exporters listen on every
# address by default: see step_apt).
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
	redis-server postgresql-15 prometheus # prometheus: also promtool (test.sh's rules checks)
	prometheus-alertmanager prometheus-node-exporter prometheus-redis-exporter
	prometheus-postgres-exporter # run by stack.sh on loopback (alertmanager: also amtool)
	chromium # headless screenshots of the health-gateway's status page
	clang-format cppcheck shellcheck docker-compose ansible
	python3-venv openjdk-17-jre-headless openjdk-17-jdk-headless maven
	curl procps iproute2 gdb
)
# Packages whose daemon Debian starts and enables at install, listening on every address
# (0.0.0.0:9090, :9093, :9100, :9121, :9187): stack.sh runs its own instances on loopback,
# so the packaged ones are kept from starting and switched off (see no_daemon_start).
readonly APT_DAEMONS=(prometheus prometheus-alertmanager prometheus-node-exporter
	prometheus-redis-exporter prometheus-postgres-exporter)
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
	no_daemon_start as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" || hm_die "apt-get install failed for: ${missing[*]}"
	switch_off_daemons "${missing[@]}"
}

# no_daemon_start CMD... - run CMD (an apt-get install) with invoke-rc.d and deb-systemd-invoke
# refusing to start services: a policy-rc.d that exits 101, written for the install only. One
# that is already there (container images ship one) is the machine's and is left as it is.
readonly POLICY_RC_D=/usr/sbin/policy-rc.d
no_daemon_start() {
	local rc=0
	if [[ -e "$POLICY_RC_D" ]]; then
		"$@" || rc=$?
		return "$rc"
	fi
	printf '#!/bin/sh\n# Written by HIMARI scripts/deps.sh for one apt-get install; removed after it.\nexit 101\n' |
		as_root tee "$POLICY_RC_D" >/dev/null
	as_root chmod 0755 "$POLICY_RC_D"
	"$@" || rc=$?
	as_root rm -f "$POLICY_RC_D"
	return "$rc"
}

# switch_off_daemons PKG... - of the packages just installed, those in APT_DAEMONS: stopped if
# one got started anyway, and not started at boot (systemd: disabled; sysvinit: update-rc.d
# disable), so that nothing of theirs listens on 0.0.0.0. Packages installed before this run
# are the operator's and are not touched.
switch_off_daemons() {
	local pkg
	for pkg in "$@"; do
		[[ " ${APT_DAEMONS[*]} " == *" $pkg "* ]] || continue
		if [[ -d /run/systemd/system ]]; then
			as_root systemctl disable --now "$pkg.service" >/dev/null 2>&1 || true
		elif [[ -x "/etc/init.d/$pkg" ]]; then
			if as_root "/etc/init.d/$pkg" status >/dev/null 2>&1; then
				as_root "/etc/init.d/$pkg" stop >/dev/null 2>&1 || true
			fi
			as_root update-rc.d "$pkg" disable >/dev/null 2>&1 || true
		fi
		hm_say "deps: $pkg's own daemon is off (stack.sh runs it on loopback when asked)"
	done
}

step_librdkafka() {
	"$HIMARI_ROOT/scripts/build-librdkafka.sh" --check && return 0
	changed=1
	"$HIMARI_ROOT/scripts/build-librdkafka.sh" || hm_die "librdkafka could not be built"
}

# fetch_jars WHAT POM LIB GLOB - the runtime classpath of POM laid into LIB by Maven; nothing
# to do while LIB's stamp matches the pom's sha256 and a jar matching GLOB is there.
fetch_jars() {
	local what="$1" pom="$2" lib="$3" glob="$4" stamp want tmp log
	stamp="$lib/.pom.sha256"
	[[ -f "$pom" ]] || hm_die "missing $pom"
	want="$(sha256_of "$pom")"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && compgen -G "$lib/$glob" >/dev/null; then
		return 0
	fi
	changed=1
	command -v mvn >/dev/null 2>&1 || hm_die "mvn not found (install maven, or run without --no-apt)"
	command -v java >/dev/null 2>&1 || hm_die "java not found (install openjdk-17-jre-headless)"
	hm_say "deps: fetching the $what jars with Maven into $lib"
	# Fetch into a fresh sibling dir and swap it in, so an interrupted run never leaves a
	# half-filled lib dir that carries a valid stamp.
	mkdir -p "$(dirname "$lib")"
	tmp="$lib.tmp.$$"
	log="$(dirname "$lib")/mvn.log"
	rm -rf "$tmp"
	# Maven's output goes to a log (with -q it still prints stray terminal escapes) and is
	# shown only when it fails.
	if ! mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
		rm -rf "$tmp"
		tail -n 40 "$log" >&2
		hm_die "Maven could not fetch the $what jars (output above; all of it in $log)"
	fi
	compgen -G "$tmp/$glob" >/dev/null || {
		rm -rf "$tmp"
		hm_die "Maven ran but no $glob arrived in $tmp"
	}
	printf '%s\n' "$want" >"$tmp/.pom.sha256"
	rm -rf "$lib"
	mv "$tmp" "$lib"
	hm_say "deps: $(find "$lib" -name '*.jar' | wc -l) $what jars in $lib"
}

step_kafka_jars() {
	fetch_jars Kafka "$POM" "$HIMARI_KAFKA_LIB" 'kafka_2.13-*.jar'
}

# The Neo4j server of the tests (scripts/stack.sh neo4j): neo4j-harness's jars in lib/, and
# our launcher (scripts/java/neo4j/Neo4jLauncher.java) compiled into neo4j-launcher.jar,
# whose manifest names them (Class-Path: lib/...) and opens the JDK packages Neo4j reaches
# into (Add-Opens), so that stack.sh runs it as `java -jar`. A class archive recorded at the
# self-test below halves the CPU of every start (~25 s to ~11 s here).
readonly NEO4J_POM="$HIMARI_ROOT/scripts/java/neo4j/pom.xml"
readonly NEO4J_LAUNCHER_SRC="$HIMARI_ROOT/scripts/java/neo4j/Neo4jLauncher.java"

step_neo4j_jars() {
	fetch_jars Neo4j "$NEO4J_POM" "$HIMARI_NEO4J_DIR/lib" 'neo4j-harness-*.jar'
}

# neo4j_manifest - the launcher jar's manifest on stdout; lines of at most 72 bytes, a long
# value continued on lines that start with a space.
neo4j_manifest() {
	local f
	printf 'Main-Class: Neo4jLauncher\n'
	printf 'Add-Opens: java.base/java.nio java.base/java.io java.base/sun.nio.ch\n'
	{
		printf 'Class-Path:'
		for f in "$HIMARI_NEO4J_DIR"/lib/*.jar; do
			printf ' lib/%s' "$(basename "$f")"
		done
		printf '\n'
	} | fold -w 70 | sed '2,$s/^/ /'
}

# The jar, and then one self-test run of it (a new store in a temporary dir, ports chosen by
# the kernel on 127.0.0.1, a query over Bolt and over HTTP, a wrong password refused, a clean
# stop: about 40 s) that records the classes it loaded into neo4j-launcher.jsa. Redone when
# the source, the jars or the JDK change.
step_neo4j_launcher() {
	local dir="$HIMARI_NEO4J_DIR" jar jsa stamp want log tmp
	jar="$dir/neo4j-launcher.jar"
	jsa="$dir/neo4j-launcher.jsa"
	stamp="$dir/.launcher.sha256"
	log="$dir/launcher.log"
	[[ -f "$NEO4J_LAUNCHER_SRC" ]] || hm_die "missing $NEO4J_LAUNCHER_SRC"
	command -v java >/dev/null 2>&1 || hm_die "java not found (install openjdk-17-jre-headless)"
	want="$({ cat "$NEO4J_LAUNCHER_SRC" "$dir/lib/.pom.sha256"; java -version 2>&1; } | sha256sum | cut -d' ' -f1)"
	if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$jar" && -f "$jsa" ]]; then
		return 0
	fi
	changed=1
	command -v javac >/dev/null 2>&1 && command -v jar >/dev/null 2>&1 ||
		hm_die "javac and jar not found (install openjdk-17-jdk-headless, or run without --no-apt)"
	hm_say "deps: compiling the Neo4j launcher into $jar"
	rm -f "$stamp" "$jsa"
	tmp="$dir/launcher.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp/classes"
	neo4j_manifest >"$tmp/MANIFEST.MF"
	# A new jar replaces the old one by rename: a running server keeps reading the old file.
	if ! javac -Xlint:all -Werror -d "$tmp/classes" -cp "$dir/lib/*" "$NEO4J_LAUNCHER_SRC" >"$log" 2>&1 ||
		! jar --create --file "$tmp/neo4j-launcher.jar" --manifest "$tmp/MANIFEST.MF" \
			-C "$tmp/classes" . >>"$log" 2>&1; then
		rm -rf "$tmp"
		tail -n 40 "$log" >&2
		hm_die "the Neo4j launcher did not compile (output above; all of it in $log)"
	fi
	mv -f "$tmp/neo4j-launcher.jar" "$jar"
	hm_say "deps: self-test of the Neo4j launcher, recording its class archive (about a minute)"
	mkdir -p "$tmp/home"
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$tmp/password"
	# The archive is written when the JVM exits, and is only valid for this jar at this path.
	if ! java -Xms128m -Xmx512m -XX:+UseG1GC -XX:ArchiveClassesAtExit="$tmp/neo4j-launcher.jsa" \
		-Xlog:cds=off -Xlog:cds+dynamic=off -jar "$jar" --home "$tmp/home" --bolt-port 0 \
		--http-port 0 --password-file "$tmp/password" --self-test >>"$log" 2>&1 </dev/null ||
		[[ ! -s "$tmp/neo4j-launcher.jsa" ]]; then
		tail -n 40 "$log" >&2
		tail -n 20 "$tmp/home/logs/debug.log" >&2 2>/dev/null || true
		rm -rf "$tmp"
		hm_die "the Neo4j launcher's self-test failed (output above; all of it in $log)"
	fi
	mv -f "$tmp/neo4j-launcher.jsa" "$jsa"
	rm -rf "$tmp"
	printf '%s\n' "$want" >"$stamp"
	hm_say "deps: Neo4j launcher ready ($(grep -o 'started in [0-9]* ms' "$log" | tail -n1) without its archive)"
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
	step_neo4j_jars
	step_neo4j_launcher
	step_go_tools
	step_venv
fi

if [[ $changed -eq 0 ]]; then
	hm_say "deps: all present"
else
	hm_say "deps: done"
fi
