# shellcheck shell=bash
# scripts/env.sh - the one place that says where a HIMARI profile keeps its files and which
# loopback ports its servers use. Sourced (never run) by scripts/deps.sh, scripts/stack.sh,
# the lead's scripts and the Makefile's recipes (which must use bash).
#
# Must never: change the caller's shell options (no `set -e` here), start or stop anything,
# overwrite a value the caller set, or let the dev and test profiles share a port or a dir.
#
# Every variable keeps a value the caller exported. Values this file derived itself are
# remembered as NAME=value lines in HIMARI_ENV_DERIVED (for profile HIMARI_ENV_DERIVED_FOR), so
# a shell that sourced it for "dev" and then runs `HIMARI_PROFILE=test scripts/stack.sh ...`
# gets test's dirs and ports rather than dev's leftovers, while a value the caller changed
# since (HIMARI_RUN_DIR=/x HIMARI_PROFILE=test ...) is still the caller's and is kept.

# hm_say MESSAGE... - tell the user what is happening, on stderr so stdout stays parseable.
hm_say() {
	printf '==> %s\n' "$*" >&2
}

# hm_die MESSAGE... - say what went wrong and stop the script (or the Makefile recipe).
hm_die() {
	printf '==> error: %s\n' "$*" >&2
	exit 1
}

# _hm_env_default NAME VALUE - export NAME=VALUE unless the caller set NAME; remember that
# this file chose it.
_hm_env_default() {
	if [[ -z "${!1:-}" ]]; then
		printf -v "$1" '%s' "$2"
		HIMARI_ENV_DERIVED+="$1=$2"$'\n'
	fi
	export "${1?}"
}

# The repo root is where this file lives, whatever the caller's working directory.
HIMARI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
export HIMARI_ROOT

HIMARI_PROFILE="${HIMARI_PROFILE:-dev}"
case "$HIMARI_PROFILE" in
dev | test) ;;
*)
	printf '==> error: HIMARI_PROFILE must be dev or test, not "%s"\n' "$HIMARI_PROFILE" >&2
	return 1
	;;
esac
export HIMARI_PROFILE

# Values derived for another profile by an earlier sourcing must not leak into this one.
if [[ -n "${HIMARI_ENV_DERIVED_FOR:-}" && "$HIMARI_ENV_DERIVED_FOR" != "$HIMARI_PROFILE" ]]; then
	while IFS='=' read -r _hm_name _hm_value; do
		if [[ -n "$_hm_name" && "${!_hm_name:-}" == "$_hm_value" ]]; then
			unset "$_hm_name"
		fi
	done <<<"${HIMARI_ENV_DERIVED:-}"
	unset _hm_name _hm_value
	HIMARI_ENV_DERIVED=""
fi
# A re-source for the same profile keeps the earlier lines (those values stay derived).
HIMARI_ENV_DERIVED="${HIMARI_ENV_DERIVED:-}"

if [[ "$HIMARI_PROFILE" == test ]]; then
	_hm_env_default HIMARI_PORT_BASE 29000
else
	_hm_env_default HIMARI_PORT_BASE 19000
fi
_hm_env_default HIMARI_RUN_DIR "$HIMARI_ROOT/run/$HIMARI_PROFILE"
_hm_env_default HIMARI_CACHE_DIR "$HIMARI_ROOT/.cache"

_hm_env_default HIMARI_KAFKA_PORT $((HIMARI_PORT_BASE + 92))
_hm_env_default HIMARI_KAFKA_CONTROLLER_PORT $((HIMARI_PORT_BASE + 93))
_hm_env_default HIMARI_REDIS_PORT $((HIMARI_PORT_BASE + 379))
_hm_env_default HIMARI_PG_PORT $((HIMARI_PORT_BASE + 432))
_hm_env_default HIMARI_S3_PORT $((HIMARI_PORT_BASE + 900))
_hm_env_default HIMARI_S3_BUCKET himari-archive
# Neo4j's own defaults are 7474 (HTTP) and 7687 (Bolt); docker compose publishes 39474/39687.
_hm_env_default HIMARI_NEO4J_HTTP_PORT $((HIMARI_PORT_BASE + 474))
_hm_env_default HIMARI_NEO4J_BOLT_PORT $((HIMARI_PORT_BASE + 687))
_hm_env_default HIMARI_KAFKA_BOOTSTRAP "127.0.0.1:$HIMARI_KAFKA_PORT"
# Monitoring (scripts/stack.sh prometheus, alertmanager and the exporters): their usual ports
# 9090, 9093, 9100, 9121 and 9187 moved into the block. The services' admin ports (8080-8084
# at base+80..84, scripts/run.sh) are what Prometheus scrapes and where Alertmanager sends.
_hm_env_default HIMARI_PROM_PORT $((HIMARI_PORT_BASE + 909))
_hm_env_default HIMARI_AM_PORT $((HIMARI_PORT_BASE + 993))
_hm_env_default HIMARI_NODE_EXPORTER_PORT $((HIMARI_PORT_BASE + 910))
_hm_env_default HIMARI_REDIS_EXPORTER_PORT $((HIMARI_PORT_BASE + 921))
_hm_env_default HIMARI_PG_EXPORTER_PORT $((HIMARI_PORT_BASE + 918))

_hm_env_default HIMARI_VENV "$HIMARI_CACHE_DIR/venv"
_hm_env_default HIMARI_KAFKA_LIB "$HIMARI_CACHE_DIR/java/kafka/lib"
# lib/ (neo4j-harness and its jars), neo4j-launcher.jar (which names lib/ in its manifest) and
# neo4j-launcher.jsa (its class archive), all made by scripts/deps.sh.
_hm_env_default HIMARI_NEO4J_DIR "$HIMARI_CACHE_DIR/java/neo4j"
_hm_env_default HIMARI_RDKAFKA_PREFIX "$HIMARI_CACHE_DIR/librdkafka"
_hm_env_default HIMARI_VERSITYGW "$HIMARI_CACHE_DIR/go/bin/versitygw"

HIMARI_ENV_DERIVED_FOR="$HIMARI_PROFILE"
export HIMARI_ENV_DERIVED HIMARI_ENV_DERIVED_FOR
