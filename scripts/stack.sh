#!/usr/bin/env bash
# scripts/stack.sh - starts, stops and reports the real servers that integration tests and
# `make run` use: Apache Kafka 3.9.1 (KRaft, single node), Redis, PostgreSQL 15, an S3
# server (versitygw, Apache-2.0, posix backend, built by scripts/deps.sh) and Neo4j 5.26
# community (neo4j-harness behind our launcher, scripts/java/neo4j/), and the monitoring:
# Prometheus, Alertmanager and the node, Redis and PostgreSQL exporters (Debian's packages),
# each on 127.0.0.1 only, with data, logs and pid under $HIMARI_RUN_DIR/<name>/ and the ports
# from scripts/env.sh, so the dev and test profiles run side by side.
#
# Must never: listen on anything but loopback, touch a process that is not this profile's
# (processes are matched on this run dir, pids are checked before they are signalled), leave a
# process behind after `stop`, or print a secret.
#
# Usage: stack.sh start|stop|status|restart [NAME ...]   (no names = all)
#        stack.sh logs NAME [-f]
# NAME: kafka redis postgres s3 neo4j prometheus alertmanager node-exporter redis-exporter
# postgres-exporter. `status` exits 0 when every named server is running and answering, 3
# otherwise.
#
# The monitoring's knobs (environment; read at each start, which rewrites the configs):
#   HIMARI_PROM_SCRAPE_INTERVAL  scrape interval (default 15s; the scrape timeout is 10 s or this
#                                when shorter)
#   HIMARI_PROM_EVAL_INTERVAL    rule evaluation interval (default 15s)
#   HIMARI_PROM_RULE_FOR         empty (default): the rules' `for:` as written; a duration (2s):
#                                every rule's `for:` replaced by it in Prometheus's copy
#   HIMARI_PROM_SERVICES         the HIMARI services to scrape, name=host:port,... (default: all
#                                five on their profile admin ports, health-gateway base+80 ...
#                                graph-writer base+84)
#   HIMARI_PROM_RETENTION        how long Prometheus keeps samples (default 1d; at most 512 MB)
#   HIMARI_AM_GROUP_WAIT, HIMARI_AM_GROUP_INTERVAL, HIMARI_AM_REPEAT_INTERVAL
#                                Alertmanager's route timing (defaults 10s, 1m, 4h)
#   HIMARI_AM_WEBHOOK_URL        where Alertmanager sends (default the health-gateway's
#                                http://127.0.0.1:<base+80>/api/v1/alerts)
# A test that wants ServiceDown at the gateway within seconds:
#   HIMARI_PROM_SCRAPE_INTERVAL=1s HIMARI_PROM_EVAL_INTERVAL=1s HIMARI_PROM_RULE_FOR=2s \
#   HIMARI_AM_GROUP_WAIT=1s HIMARI_AM_GROUP_INTERVAL=1s HIMARI_AM_REPEAT_INTERVAL=1m \
#     scripts/stack.sh restart prometheus alertmanager
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

readonly ALL_SERVERS=(kafka redis postgres s3 neo4j
	prometheus alertmanager node-exporter redis-exporter postgres-exporter)
readonly PG_BIN=/usr/lib/postgresql/15/bin
readonly STOP_WAIT_S=20
readonly RUN="$HIMARI_RUN_DIR"
readonly K="$RUN/kafka"
readonly R="$RUN/redis"
readonly S="$RUN/s3"
readonly N="$RUN/neo4j"

usage() {
	cat >&2 <<'EOF'
usage: stack.sh start|stop|status|restart [NAME ...]    (no names = all)
       stack.sh logs NAME [-f]
NAME: kafka redis postgres s3 neo4j prometheus alertmanager node-exporter redis-exporter
      postgres-exporter
EOF
	exit 2
}

# ---------------------------------------------------------------------------------------------
# small helpers

now() { printf '%s' "${EPOCHREALTIME/,/.}"; }

# elapsed_since T0 - seconds since T0 (from now), one decimal.
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# older_than T0 SECONDS - true once SECONDS have passed since T0.
older_than() { awk -v a="$1" -v b="$(now)" -v s="$2" 'BEGIN { exit !(b - a >= s) }'; }

# re_escape STRING - STRING as a literal for pgrep's extended regular expressions.
re_escape() { printf '%s' "$1" | sed 's/[][\.*^$+?(){}|]/\\&/g'; }

# pid_alive PID - PID exists and is not a zombie (this machine's init reaps orphans only
# every second or two; a zombie has already finished).
pid_alive() {
	local stat=""
	[[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	stat="${stat##*) }"
	[[ "${stat:0:1}" != Z ]]
}

cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# port_open PORT - something accepts TCP connections on 127.0.0.1:PORT.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# port_owner PORT - "users:((...))" of whoever listens on PORT, or empty.
port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -n1 || true; }

# read_pidfile FILE - the first line of FILE when it is a number.
read_pidfile() {
	local p=""
	if [[ -r "$1" ]]; then
		read -r p <"$1" 2>/dev/null || true
	fi
	[[ "$p" =~ ^[0-9]+$ ]] && printf '%s' "$p"
	return 0
}

# secret NAME - path of $RUN/secrets/NAME, made once: 32 random hex chars, mode 600.
secret() {
	local f="$RUN/secrets/$1"
	if [[ ! -s "$f" ]]; then
		mkdir -p "$RUN/secrets"
		chmod 700 "$RUN/secrets"
		(
			umask 077
			od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$f.tmp"
			mv "$f.tmp" "$f"
		)
		hm_say "generated $f"
	fi
	printf '%s' "$f"
}

# Sizes of log files when this invocation launched their server: a failure shows only what
# that start wrote, not an older run's shutdown.
declare -A LOG_OFFSET=()

mark_logs() {
	local f
	for f in "$@"; do
		LOG_OFFSET[$f]="$(stat -c %s "$f" 2>/dev/null || printf 0)"
	done
}

# show_log_tail FILE... - the last 30 lines each FILE got since mark_logs, to stderr.
show_log_tail() {
	local f off size
	for f in "$@"; do
		[[ -s "$f" ]] || continue
		off="${LOG_OFFSET[$f]:-0}"
		size="$(stat -c %s "$f")"
		[[ "$size" -ge "$off" ]] || off=0
		[[ "$size" -gt "$off" ]] || continue
		printf -- '--- last 30 lines of %s ---\n' "$f" >&2
		tail -c +"$((off + 1))" "$f" | tail -n 30 >&2
	done
}

# ---------------------------------------------------------------------------------------------
# Per-server knowledge: <name>_pattern (a pgrep -f regex matching only this instance),
# <name>_pidfile, <name>_prepare (config, first-time init), <name>_launch, <name>_ready,
# <name>_logs (logs to show), <name>_port_list, <name>_timeout, <name>_where. A server's name
# may have hyphens (node-exporter); its functions spell them as underscores (node_exporter_ready).

# srv NAME FUNCTION [ARG...] - call server NAME's FUNCTION (srv node-exporter ready).
srv() {
	local fn="${1//-/_}_$2"
	shift 2
	"$fn" "$@"
}

# ---- Kafka ----------------------------------------------------------------------------------
kafka_pattern() { printf 'kafka\\.Kafka %s$' "$(re_escape "$K/server.properties")"; }
kafka_pidfile() { printf '%s' "$K/kafka.pid"; }
kafka_logs() { printf '%s\n' "$K/server.log" "$K/kafka.out"; }
kafka_port_list() { printf '%s %s' "$HIMARI_KAFKA_PORT" "$HIMARI_KAFKA_CONTROLLER_PORT"; }
kafka_timeout() { printf 60; }
kafka_where() { printf '127.0.0.1:%s (controller %s)' "$HIMARI_KAFKA_PORT" "$HIMARI_KAFKA_CONTROLLER_PORT"; }

readonly KAFKA_JVM_OPTS=(-Xms512m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20
	-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
	-Djava.awt.headless=true)

kafka_prepare() {
	compgen -G "$HIMARI_KAFKA_LIB/kafka_2.13-*.jar" >/dev/null ||
		hm_die "no Kafka jars in $HIMARI_KAFKA_LIB: run scripts/deps.sh first"
	command -v java >/dev/null 2>&1 || hm_die "java not found on PATH (scripts/deps.sh installs it)"
	mkdir -p "$K/data"
	cat >"$K/server.properties" <<EOF
# Generated by scripts/stack.sh at every start from scripts/env.sh; edits are lost.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$HIMARI_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$HIMARI_KAFKA_PORT,CONTROLLER://127.0.0.1:$HIMARI_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$HIMARI_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$K/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
transaction.remove.expired.transaction.cleanup.interval.ms=3600000
log.cleaner.enable=true
log.cleaner.backoff.ms=1000
delete.topic.enable=true
group.min.session.timeout.ms=2000
log.retention.check.interval.ms=60000
EOF
	# HIMARI_KAFKA_SERVER_PROPERTIES: extra key=value words (a later key wins), e.g. for a
	# benchmark of the broker's thread counts.
	local prop
	for prop in ${HIMARI_KAFKA_SERVER_PROPERTIES:-}; do
		printf '%s\n' "$prop" >>"$K/server.properties"
	done
	cat >"$K/log4j.properties" <<EOF
# Generated by scripts/stack.sh (reload4j / log4j 1.x syntax).
log4j.rootLogger=INFO, server
log4j.appender.server=org.apache.log4j.RollingFileAppender
log4j.appender.server.File=$K/server.log
log4j.appender.server.MaxFileSize=100MB
log4j.appender.server.MaxBackupIndex=2
log4j.appender.server.layout=org.apache.log4j.PatternLayout
log4j.appender.server.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.controller=org.apache.log4j.RollingFileAppender
log4j.appender.controller.File=$K/controller.log
log4j.appender.controller.MaxFileSize=100MB
log4j.appender.controller.MaxBackupIndex=2
log4j.appender.controller.layout=org.apache.log4j.PatternLayout
log4j.appender.controller.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.controller=INFO, controller
log4j.additivity.kafka.controller=false
log4j.logger.org.apache.kafka.controller=INFO, controller
log4j.additivity.org.apache.kafka.controller=false
log4j.logger.state.change.logger=INFO, controller
log4j.additivity.state.change.logger=false
log4j.logger.kafka.request.logger=WARN
EOF
	# Kafka 4.x logs through log4j 2, which reads its own file (and ignores the one above).
	cat >"$K/log4j2.properties" <<EOF
# Generated by scripts/stack.sh (log4j 2 syntax, for a Kafka 4.x classpath).
appender.server.type=RollingFile
appender.server.name=server
appender.server.fileName=$K/server.log
appender.server.filePattern=$K/server.log.%i
appender.server.layout.type=PatternLayout
appender.server.layout.pattern=[%d] %p %m (%c)%n
appender.server.policies.type=Policies
appender.server.policies.size.type=SizeBasedTriggeringPolicy
appender.server.policies.size.size=100MB
appender.server.strategy.type=DefaultRolloverStrategy
appender.server.strategy.max=2
appender.controller.type=RollingFile
appender.controller.name=controller
appender.controller.fileName=$K/controller.log
appender.controller.filePattern=$K/controller.log.%i
appender.controller.layout.type=PatternLayout
appender.controller.layout.pattern=[%d] %p %m (%c)%n
appender.controller.policies.type=Policies
appender.controller.policies.size.type=SizeBasedTriggeringPolicy
appender.controller.policies.size.size=100MB
appender.controller.strategy.type=DefaultRolloverStrategy
appender.controller.strategy.max=2
rootLogger.level=INFO
rootLogger.appenderRef.server.ref=server
logger.controller.name=org.apache.kafka.controller
logger.controller.level=INFO
logger.controller.additivity=false
logger.controller.appenderRef.controller.ref=controller
logger.kcontroller.name=kafka.controller
logger.kcontroller.level=INFO
logger.kcontroller.additivity=false
logger.kcontroller.appenderRef.controller.ref=controller
logger.statechange.name=state.change.logger
logger.statechange.level=INFO
logger.statechange.additivity=false
logger.statechange.appenderRef.controller.ref=controller
logger.request.name=kafka.request.logger
logger.request.level=WARN
EOF
	cat >"$K/tools-log4j2.properties" <<'EOF'
appender.stderr.type=Console
appender.stderr.name=stderr
appender.stderr.target=SYSTEM_ERR
appender.stderr.layout.type=PatternLayout
appender.stderr.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stderr.ref=stderr
EOF
	cat >"$K/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
	# KRaft storage is formatted once; later starts reuse it (and its cluster id).
	if [[ ! -f "$K/data/meta.properties" ]]; then
		local tool=(java -Djava.awt.headless=true -Dlog4j.configuration="file:$K/tools-log4j.properties"
			-Dlog4j2.configurationFile="file:$K/tools-log4j2.properties"
			-cp "$HIMARI_KAFKA_LIB/*" kafka.tools.StorageTool)
		if [[ ! -s "$K/cluster.id" ]]; then
			"${tool[@]}" random-uuid >"$K/cluster.id.tmp" 2>>"$K/format.log" ||
				hm_die "kafka: StorageTool random-uuid failed (see $K/format.log)"
			mv "$K/cluster.id.tmp" "$K/cluster.id"
		fi
		hm_say "kafka: formatting $K/data (cluster id $(cat "$K/cluster.id"))"
		"${tool[@]}" format -t "$(cat "$K/cluster.id")" -c "$K/server.properties" \
			>>"$K/format.log" 2>&1 || {
			show_log_tail "$K/format.log"
			hm_die "kafka: formatting the storage failed"
		}
	fi
}

kafka_launch() {
	local pidfile
	pidfile="$(kafka_pidfile)"
	rm -f "$pidfile"
	# Readiness looks only at log lines written by this start.
	stat -c %s "$K/server.log" 2>/dev/null >"$K/start.offset" || printf '0\n' >"$K/start.offset"
	# setsid: a Ctrl-C in the caller's terminal must not reach the broker. The inner shell
	# writes its own pid and then becomes java, so the pid file names the broker itself.
	# HIMARI_KAFKA_JVM_OPTS: extra JVM flags after ours (a later flag wins).
	local extra_jvm=()
	read -r -a extra_jvm <<<"${HIMARI_KAFKA_JVM_OPTS:-}"
	# shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' kafka-launch "$pidfile" \
		java "${KAFKA_JVM_OPTS[@]}" "${extra_jvm[@]}" -Dkafka.logs.dir="$K" \
		-Dlog4j.configuration="file:$K/log4j.properties" \
		-Dlog4j2.configurationFile="file:$K/log4j2.properties" \
		-cp "$HIMARI_KAFKA_LIB/*" kafka.Kafka "$K/server.properties" \
		</dev/null >>"$K/kafka.out" 2>&1 9>&- &
}

kafka_ready() {
	local offset=0 size
	port_open "$HIMARI_KAFKA_PORT" || return 1
	offset="$(read_pidfile "$K/start.offset")"
	size="$(stat -c %s "$K/server.log" 2>/dev/null || printf 0)"
	# A log that shrank was rolled over: then all of it is new.
	if [[ -z "$offset" || "$size" -lt "$offset" ]]; then
		offset=0
	fi
	# Not grep -q: stopping at the first match would hand tail a SIGPIPE, failing the pipe.
	tail -c +"$((offset + 1))" "$K/server.log" 2>/dev/null | grep -F 'Kafka Server started' >/dev/null
}

# ---- Redis ----------------------------------------------------------------------------------
redis_pattern() { printf 'redis-server .*%s$' "$(re_escape "$R/redis.conf")"; }
redis_pidfile() { printf '%s' "$R/redis.pid"; }
redis_logs() { printf '%s\n' "$R/redis.log"; }
redis_port_list() { printf '%s' "$HIMARI_REDIS_PORT"; }
redis_timeout() { printf 30; }
redis_where() { printf '127.0.0.1:%s' "$HIMARI_REDIS_PORT"; }

redis_prepare() {
	local pw
	command -v redis-server >/dev/null 2>&1 || hm_die "redis-server not found (scripts/deps.sh)"
	pw="$(cat "$(secret redis_password)")"
	mkdir -p "$R/data"
	(
		umask 077
		cat >"$R/redis.conf" <<EOF
# Generated by scripts/stack.sh at every start from scripts/env.sh; edits are lost.
bind 127.0.0.1
port $HIMARI_REDIS_PORT
protected-mode yes
requirepass $pw
appendonly yes
appendfsync everysec
dir $R/data
daemonize yes
supervised no
pidfile $R/redis.pid
logfile $R/redis.log
loglevel notice
# The config path in the process title is how stack.sh tells this instance from others.
proc-title-template "{title} {listen-addr} {server-mode} {config-file}"
EOF
	)
}

redis_launch() {
	rm -f "$(redis_pidfile)"
	# daemonize yes: redis-server forks, detaches and writes its pid file itself.
	redis-server "$R/redis.conf" </dev/null >>"$R/redis.out" 2>&1 9>&- ||
		hm_die "redis-server refused to start (see $R/redis.out)"
}

redis_cli() {
	REDISCLI_AUTH="$(cat "$RUN/secrets/redis_password")" \
		redis-cli -h 127.0.0.1 -p "$HIMARI_REDIS_PORT" --no-auth-warning "$@"
}

redis_ready() {
	[[ "$(redis_cli ping 2>/dev/null)" == PONG ]]
}

# ---- S3 (versitygw) --------------------------------------------------------------------------
# One root account whose keys are the generated secrets s3_access_key and s3_secret_key,
# passed in the environment (never on the command line, which `ps` shows); buckets are
# directories of $S/data. The bucket HIMARI_S3_BUCKET is made once the server answers.
s3_pattern() { printf 'versitygw .*posix %s$' "$(re_escape "$S/data")"; }
s3_pidfile() { printf '%s' "$S/s3.pid"; }
s3_logs() { printf '%s\n' "$S/s3.log"; }
s3_port_list() { printf '%s' "$HIMARI_S3_PORT"; }
s3_timeout() { printf 30; }
s3_where() { printf 'http://127.0.0.1:%s (bucket %s)' "$HIMARI_S3_PORT" "$HIMARI_S3_BUCKET"; }

s3_prepare() {
	[[ -x "$HIMARI_VERSITYGW" ]] || hm_die "versitygw not found at $HIMARI_VERSITYGW (scripts/deps.sh)"
	secret s3_access_key >/dev/null
	secret s3_secret_key >/dev/null
	mkdir -p "$S/data"
}

s3_launch() {
	local pidfile
	pidfile="$(s3_pidfile)"
	rm -f "$pidfile"
	# shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
	ROOT_ACCESS_KEY="$(cat "$RUN/secrets/s3_access_key")" \
		ROOT_SECRET_KEY="$(cat "$RUN/secrets/s3_secret_key")" \
		setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' s3-launch "$pidfile" \
		"$HIMARI_VERSITYGW" --port "127.0.0.1:$HIMARI_S3_PORT" --quiet posix "$S/data" \
		</dev/null >>"$S/s3.log" 2>&1 9>&- &
}

# s3_curl METHOD PATH - a SigV4-signed request without a body as the root account; prints
# the HTTP status. The keys go to curl on its standard input (-K -), not in its arguments;
# S3 wants the payload's hash in a header (here the empty body's).
readonly S3_EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3_curl() {
	local method=(-X "$1")
	[[ "$1" != HEAD ]] || method=(-I)
	printf 'user = "%s:%s"\n' "$(cat "$RUN/secrets/s3_access_key")" \
		"$(cat "$RUN/secrets/s3_secret_key")" |
		curl -s -o /dev/null -w '%{http_code}' -m 2 -K - --aws-sigv4 "aws:amz:us-east-1:s3" \
			-H "x-amz-content-sha256: $S3_EMPTY_SHA256" "${method[@]}" \
			"http://127.0.0.1:$HIMARI_S3_PORT$2" 2>/dev/null || true
}

s3_ready() {
	[[ "$(s3_curl GET /)" == 200 ]] || return 1
	case "$(s3_curl HEAD "/$HIMARI_S3_BUCKET")" in
	200) return 0 ;;
	404) [[ "$(s3_curl PUT "/$HIMARI_S3_BUCKET")" == 200 ]] ;;
	*) return 1 ;;
	esac
}

# ---- Neo4j ----------------------------------------------------------------------------------
# Neo4j 5.26 community in one JVM: neo4j-harness started by our launcher (scripts/java/neo4j/
# Neo4jLauncher.java, built by scripts/deps.sh into $HIMARI_NEO4J_DIR), Bolt and HTTP on
# loopback, user neo4j with the generated secret neo4j_password (the launcher reads the file;
# the password is never on a command line), the store in $N/data, logs in $N/logs.
neo4j_pattern() { printf 'neo4j-launcher\\.jar --home %s( |$)' "$(re_escape "$N")"; }
neo4j_pidfile() { printf '%s' "$N/neo4j.pid"; }
neo4j_logs() { printf '%s\n' "$N/logs/debug.log" "$N/neo4j.out"; }
neo4j_port_list() { printf '%s %s' "$HIMARI_NEO4J_BOLT_PORT" "$HIMARI_NEO4J_HTTP_PORT"; }
# A first start on a busy 2-core machine without the class archive takes ~40 s.
neo4j_timeout() { printf 90; }
neo4j_where() { printf 'bolt://127.0.0.1:%s (http %s)' "$HIMARI_NEO4J_BOLT_PORT" "$HIMARI_NEO4J_HTTP_PORT"; }

# Heap and page cache (the launcher's 64 MiB) sized to share a 2-core test machine with Kafka:
# ~400 MB resident once up. The flags of Neo4j's own launcher that matter outside a
# production box; the jar's manifest opens the JDK packages Neo4j reaches into.
readonly NEO4J_JVM_OPTS=(-Xms128m -Xmx512m -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow
	-XX:+ExitOnOutOfMemoryError -Djdk.nio.maxCachedBufferSize=1024
	-Dio.netty.tryReflectionSetAccessible=true -Dlog4j2.disable.jmx=true -Djava.awt.headless=true)

neo4j_prepare() {
	[[ -f "$HIMARI_NEO4J_DIR/neo4j-launcher.jar" ]] ||
		hm_die "no Neo4j launcher in $HIMARI_NEO4J_DIR: run scripts/deps.sh first"
	command -v java >/dev/null 2>&1 || hm_die "java not found on PATH (scripts/deps.sh installs it)"
	secret neo4j_password >/dev/null
	# The store holds the password's hash and everything the graph-writer wrote.
	chmod 700 "$N"
}

neo4j_launch() {
	local pidfile cds=() extra_jvm=()
	pidfile="$(neo4j_pidfile)"
	rm -f "$pidfile"
	# The class archive deps.sh recorded; a JVM that cannot use it (another JDK, another jar)
	# says so in neo4j.out, ignores it and only starts slower.
	if [[ -f "$HIMARI_NEO4J_DIR/neo4j-launcher.jsa" ]]; then
		cds=(-XX:SharedArchiveFile="$HIMARI_NEO4J_DIR/neo4j-launcher.jsa" -Xshare:auto)
	fi
	# HIMARI_NEO4J_JVM_OPTS: extra JVM flags after ours (a later flag wins).
	read -r -a extra_jvm <<<"${HIMARI_NEO4J_JVM_OPTS:-}"
	# As for Kafka: setsid keeps the caller's Ctrl-C away, the pid file names the JVM itself.
	# shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' neo4j-launch "$pidfile" \
		java "${NEO4J_JVM_OPTS[@]}" "${cds[@]}" "${extra_jvm[@]}" \
		-jar "$HIMARI_NEO4J_DIR/neo4j-launcher.jar" --home "$N" \
		--bolt-port "$HIMARI_NEO4J_BOLT_PORT" --http-port "$HIMARI_NEO4J_HTTP_PORT" \
		--password-file "$RUN/secrets/neo4j_password" \
		</dev/null >>"$N/neo4j.out" 2>&1 9>&- &
}

# neo4j_query STATEMENT - one statement through the HTTP transactional API on database neo4j
# as user neo4j; prints the body and then the HTTP status on a line of its own. The password
# goes to curl on its standard input (-K -), not in its arguments.
neo4j_query() {
	printf 'user = "neo4j:%s"\n' "$(cat "$RUN/secrets/neo4j_password")" |
		curl -s -m 5 -K - -w '\n%{http_code}' -H 'Content-Type: application/json' \
			-d "{\"statements\":[{\"statement\":\"$1\"}]}" \
			"http://127.0.0.1:$HIMARI_NEO4J_HTTP_PORT/db/neo4j/tx/commit" 2>/dev/null || true
}

# Ready = the HTTP API runs a query as user neo4j (so auth, the password and database neo4j
# all work); Bolt is up by then (the launcher opens both before it is done).
neo4j_ready() {
	local reply
	[[ -r "$RUN/secrets/neo4j_password" ]] && port_open "$HIMARI_NEO4J_BOLT_PORT" || return 1
	reply="$(neo4j_query 'RETURN 1 AS ok')"
	[[ "${reply##*$'\n'}" == 200 && "$reply" == *'"errors":[]'* ]]
}

# ---- PostgreSQL -----------------------------------------------------------------------------
# PG_DIR is $RUN/postgres unless the postgres user cannot reach it (see pg_choose_dir).
PG_DIR="$RUN/postgres"
PG_SUPERUSER="$(id -un)"
if [[ $EUID -eq 0 ]]; then
	PG_SUPERUSER=postgres
fi

# as_pg CMD... - run CMD as the user that owns the cluster (initdb refuses to run as root).
as_pg() {
	if [[ $EUID -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

pg_can_reach() { as_pg test -d "$1" -a -x "$1" 2>/dev/null; }

# pg_choose_dir - make $RUN/postgres usable by the postgres user: every parent directory must
# be traversable. Fix what chmod o+x can fix; otherwise fall back to /var/tmp and link to it.
pg_choose_dir() {
	local d part parts fallback="/var/tmp/himari-$HIMARI_PROFILE-pg"
	if [[ -L "$RUN/postgres" ]]; then
		PG_DIR="$(readlink -f "$RUN/postgres")"
	fi
	[[ $EUID -eq 0 ]] || return 0
	mkdir -p "$PG_DIR"
	chown postgres:postgres "$PG_DIR"
	chmod 700 "$PG_DIR"
	pg_can_reach "$PG_DIR" && return 0
	# Top down, so each test sees its parents already traversable and blames the right dir.
	d=""
	IFS=/ read -ra parts <<<"${PG_DIR#/}"
	for part in "${parts[@]}"; do
		d+="/$part"
		as_pg test -x "$d" 2>/dev/null && continue
		chmod o+x "$d" 2>/dev/null || break
		hm_say "postgres: made $d traversable (chmod o+x) so the postgres user reaches its data dir"
	done
	pg_can_reach "$PG_DIR" && return 0
	if [[ -d "$RUN/postgres" && ! -L "$RUN/postgres" ]]; then
		rmdir "$RUN/postgres" 2>/dev/null ||
			hm_die "postgres: user postgres cannot reach $RUN/postgres, which is not empty"
	fi
	hm_say "postgres: user postgres cannot reach $RUN; using $fallback (linked from $RUN/postgres)"
	PG_DIR="$fallback"
	mkdir -p "$PG_DIR"
	chown postgres:postgres "$PG_DIR"
	chmod 700 "$PG_DIR"
	ln -sfn "$PG_DIR" "$RUN/postgres"
}

# Resolve the dir once for every command, without creating anything: stop and status must
# find a fallback dir chosen by an earlier start.
if [[ -L "$RUN/postgres" ]]; then
	PG_DIR="$(readlink -f "$RUN/postgres")"
fi

postgres_pattern() { printf 'bin/postgres -D %s( |$)' "$(re_escape "$PG_DIR/data")"; }
postgres_pidfile() { printf '%s' "$PG_DIR/data/postmaster.pid"; }
postgres_logs() { printf '%s\n' "$PG_DIR/postgres.log" "$PG_DIR/initdb.log"; }
postgres_port_list() { printf '%s' "$HIMARI_PG_PORT"; }
postgres_timeout() { printf 30; }
postgres_where() { printf '127.0.0.1:%s' "$HIMARI_PG_PORT"; }

postgres_prepare() {
	local sock_path sockdir_sql
	[[ -x "$PG_BIN/postgres" ]] || hm_die "PostgreSQL 15 not found in $PG_BIN (scripts/deps.sh)"
	secret postgres_password >/dev/null
	pg_choose_dir
	sock_path="$PG_DIR/.s.PGSQL.$HIMARI_PG_PORT"
	[[ ${#sock_path} -lt 100 ]] ||
		hm_die "postgres: socket path $sock_path is too long for a unix socket; use a shorter HIMARI_RUN_DIR"
	if [[ ! -f "$PG_DIR/data/PG_VERSION" ]]; then
		if [[ -d "$PG_DIR/data" ]] && [[ -n "$(ls -A "$PG_DIR/data")" ]]; then
			hm_die "postgres: $PG_DIR/data is not empty but holds no cluster; move it away"
		fi
		hm_say "postgres: initdb $PG_DIR/data"
		as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" --username="$PG_SUPERUSER" \
			--auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --no-locale \
			>"$PG_DIR/initdb.log" 2>&1 || {
			show_log_tail "$PG_DIR/initdb.log"
			hm_die "postgres: initdb failed"
		}
		printf "\ninclude = 'himari.conf'\t# written by scripts/stack.sh at every start\n" |
			as_pg tee -a "$PG_DIR/data/postgresql.conf" >/dev/null
	fi
	sockdir_sql="${PG_DIR//"'"/"''"}"
	# Regenerated at every start so the port and paths follow scripts/env.sh.
	as_pg tee "$PG_DIR/data/himari.conf" >/dev/null <<EOF
# Generated by scripts/stack.sh at every start from scripts/env.sh; edits are lost.
listen_addresses = '127.0.0.1'
port = $HIMARI_PG_PORT
unix_socket_directories = '$sockdir_sql'
fsync = on
password_encryption = 'scram-sha-256'
cluster_name = 'himari-$HIMARI_PROFILE'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

postgres_launch() {
	# -W: do not wait here; all servers boot in parallel and are waited for afterwards.
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -s -W start \
		</dev/null 9>&- || {
		show_log_tail "$PG_DIR/postgres.log"
		hm_die "postgres: pg_ctl start failed"
	}
}

postgres_ready() {
	"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$HIMARI_PG_PORT" -t 1
}

# postgres_after_ready - role himari with the password from the secret file and database
# himari_analytics owned by it; idempotent, so it runs at every start. The password travels
# on stdin, never on a command line.
postgres_after_ready() {
	local pw
	pw="$(cat "$RUN/secrets/postgres_password")"
	[[ "$pw" =~ ^[0-9a-f]+$ ]] || hm_die "postgres: $RUN/secrets/postgres_password is not hex"
	as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$HIMARI_PG_PORT" \
		-U "$PG_SUPERUSER" -d postgres >/dev/null <<EOF || hm_die "postgres: creating role/database failed"
SELECT 'CREATE ROLE himari LOGIN'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'himari') \gexec
ALTER ROLE himari WITH LOGIN PASSWORD '$pw';
SELECT 'CREATE DATABASE himari_analytics OWNER himari'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'himari_analytics') \gexec
EOF
	# The way clients will come in: TCP on loopback with a SCRAM password.
	PGPASSWORD="$pw" "$PG_BIN/psql" -X -q -At -h 127.0.0.1 -p "$HIMARI_PG_PORT" -U himari \
		-d himari_analytics -c 'SELECT 1' >/dev/null ||
		hm_die "postgres: role himari cannot log in to himari_analytics over TCP"
}

# ---- Monitoring: Prometheus, Alertmanager, node / Redis / PostgreSQL exporters ---------------
# Debian's packages (scripts/deps.sh keeps their own daemons off), each run here on loopback
# with its files under $RUN/<name>/. Prometheus scrapes the HIMARI services' admin ports
# (job "himari", label service, as deploy/prometheus/prometheus.yml does, so the rules read the
# same series), the exporters, Alertmanager and itself, evaluates a copy of
# deploy/prometheus/rules/himari.rules.yml and sends alerts to this Alertmanager, which sends
# them all to the health-gateway's webhook. The knobs (header of this file) let a test make an
# alert fire and reach the gateway within seconds.

# The services' admin ports in this profile: their default 80NN at base+NN (scripts/run.sh).
readonly SCRAPED_SERVICES=(health-gateway:80 ingest-validator:81 feature-engine:82 archiver:83
	graph-writer:84)
readonly GATEWAY_ADMIN_PORT=$((HIMARI_PORT_BASE + 80))

# duration_ms D - a Prometheus duration (500ms, 2s, 1m30s) in milliseconds; fails on any other
# form, so a knob with a typo stops the start instead of Prometheus refusing its config.
duration_ms() {
	local d="$1" ms=0 n
	[[ "$d" =~ ^([0-9]+(ms|s|m|h|d|w))+$ ]] || return 1
	while [[ "$d" =~ ^([0-9]+)(ms|s|m|h|d|w)(.*)$ ]]; do
		n="${BASH_REMATCH[1]}"
		case "${BASH_REMATCH[2]}" in
		ms) ms=$((ms + n)) ;;
		s) ms=$((ms + n * 1000)) ;;
		m) ms=$((ms + n * 60000)) ;;
		h) ms=$((ms + n * 3600000)) ;;
		d) ms=$((ms + n * 86400000)) ;;
		w) ms=$((ms + n * 604800000)) ;;
		esac
		d="${BASH_REMATCH[3]}"
	done
	printf '%s' "$ms"
}

# knob_duration VAR DEFAULT - the value of the duration knob VAR (DEFAULT when unset or empty).
knob_duration() {
	local v="${!1:-$2}"
	duration_ms "$v" >/dev/null || hm_die "$1=\"$v\" is not a duration such as 500ms, 2s or 1m"
	printf '%s' "$v"
}

# http_ok URL - URL answers 2xx within 2 s.
http_ok() { curl -fs -o /dev/null -m 2 "$1" 2>/dev/null; }

# launch_logged NAME LOG CMD... - start CMD detached (setsid: the caller's Ctrl-C never reaches
# it) with its pid (CMD itself: the inner shell execs it) in NAME's pid file and its output in LOG.
launch_logged() {
	local pidfile log="$2"
	pidfile="$(srv "$1" pidfile)"
	shift 2
	rm -f "$pidfile"
	# shellcheck disable=SC2016 # $$ and $1 belong to the inner shell
	setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' monitoring-launch "$pidfile" "$@" \
		</dev/null >>"$log" 2>&1 9>&- &
}

# ---- Prometheus -------------------------------------------------------------------------------
readonly P="$RUN/prometheus"
prometheus_pattern() { printf 'prometheus --config\\.file=%s( |$)' "$(re_escape "$P/prometheus.yml")"; }
prometheus_pidfile() { printf '%s' "$P/prometheus.pid"; }
prometheus_logs() { printf '%s\n' "$P/prometheus.log" "$P/check.log"; }
prometheus_port_list() { printf '%s' "$HIMARI_PROM_PORT"; }
prometheus_timeout() { printf 30; }
prometheus_where() { printf 'http://127.0.0.1:%s' "$HIMARI_PROM_PORT"; }

# prometheus_targets - "name address" lines: HIMARI_PROM_SERVICES (name=host:port, comma
# separated; an http:// in front is dropped) or every service on its profile port.
prometheus_targets() {
	local item name addr items=()
	if [[ -z "${HIMARI_PROM_SERVICES:-}" ]]; then
		for item in "${SCRAPED_SERVICES[@]}"; do
			printf '%s 127.0.0.1:%s\n' "${item%%:*}" "$((HIMARI_PORT_BASE + ${item##*:}))"
		done
		return 0
	fi
	IFS=, read -r -a items <<<"$HIMARI_PROM_SERVICES"
	for item in "${items[@]}"; do
		name="${item%%=*}"
		addr="${item#*=}"
		addr="${addr#http://}"
		addr="${addr%/}"
		[[ "$name" =~ ^[a-z0-9-]+$ && "$item" == *=* && "$addr" =~ ^[A-Za-z0-9.-]+:[0-9]+$ ]] ||
			hm_die "HIMARI_PROM_SERVICES: \"$item\" is not name=host:port"
		printf '%s %s\n' "$name" "$addr"
	done
}

prometheus_prepare() {
	local scrape eval rule_for timeout name addr targets
	command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 ||
		hm_die "prometheus or promtool not found (scripts/deps.sh)"
	scrape="$(knob_duration HIMARI_PROM_SCRAPE_INTERVAL 15s)"
	eval="$(knob_duration HIMARI_PROM_EVAL_INTERVAL 15s)"
	rule_for=""
	[[ -z "${HIMARI_PROM_RULE_FOR:-}" ]] || rule_for="$(knob_duration HIMARI_PROM_RULE_FOR 0s)"
	# A scrape may not outlast its interval: Prometheus's 10 s, or the interval when shorter.
	timeout=10s
	(($(duration_ms "$scrape") >= 10000)) || timeout="$scrape"
	# Not in a pipe or a process substitution: a bad HIMARI_PROM_SERVICES must stop the start.
	targets="$(prometheus_targets)"
	mkdir -p "$P/data" "$P/rules"
	{
		printf '# Copied by scripts/stack.sh at every start from deploy/prometheus/rules/himari.rules.yml'
		if [[ -n "$rule_for" ]]; then
			printf ", every rule's for: set to %s (HIMARI_PROM_RULE_FOR)" "$rule_for"
		fi
		printf '; edits are lost.\n'
		if [[ -n "$rule_for" ]]; then
			sed -E "s/^([[:space:]]+)for: .*/\\1for: $rule_for/" \
				"$HIMARI_ROOT/deploy/prometheus/rules/himari.rules.yml"
		else
			cat "$HIMARI_ROOT/deploy/prometheus/rules/himari.rules.yml"
		fi
	} >"$P/rules/himari.rules.yml"
	{
		cat <<EOF_PROM
# Generated by scripts/stack.sh at every start from scripts/env.sh and the HIMARI_PROM_*
# knobs; edits are lost. The compose stack's equivalent is deploy/prometheus/prometheus.yml.
global:
  scrape_interval: $scrape
  scrape_timeout: $timeout
  evaluation_interval: $eval
  external_labels:
    environment: $HIMARI_PROFILE

rule_files:
  - rules/himari.rules.yml

alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$HIMARI_AM_PORT"]

scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$HIMARI_PROM_PORT"]

  - job_name: alertmanager
    static_configs:
      - targets: ["127.0.0.1:$HIMARI_AM_PORT"]

  # HIMARI services: the admin endpoint's GET /metrics, labelled with the program's name.
  - job_name: himari
    metrics_path: /metrics
    static_configs:
EOF_PROM
		while read -r name addr; do
			printf '      - targets: ["%s"]\n        labels:\n          service: %s\n' "$addr" "$name"
		done <<<"$targets"
		cat <<EOF_PROM

  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:$HIMARI_NODE_EXPORTER_PORT"]

  - job_name: redis
    static_configs:
      - targets: ["127.0.0.1:$HIMARI_REDIS_EXPORTER_PORT"]

  - job_name: postgres
    static_configs:
      - targets: ["127.0.0.1:$HIMARI_PG_EXPORTER_PORT"]
EOF_PROM
	} >"$P/prometheus.yml"
	mark_logs "$P/check.log"
	promtool check config "$P/prometheus.yml" >"$P/check.log" 2>&1 || {
		show_log_tail "$P/check.log"
		hm_die "prometheus: promtool rejects $P/prometheus.yml"
	}
}

prometheus_launch() {
	local eval resend=1m
	# A firing alert goes to Alertmanager once, then again every resend delay (Prometheus's 1m):
	# the first send is dropped when it comes before the Alertmanager is discovered (up to 5 s
	# after the start), so with a short evaluation interval resend at that interval.
	eval="$(knob_duration HIMARI_PROM_EVAL_INTERVAL 15s)"
	(($(duration_ms "$eval") >= 60000)) || resend="$eval"
	launch_logged prometheus "$P/prometheus.log" prometheus --config.file="$P/prometheus.yml" \
		--web.listen-address="127.0.0.1:$HIMARI_PROM_PORT" --storage.tsdb.path="$P/data" \
		--storage.tsdb.retention.time="$(knob_duration HIMARI_PROM_RETENTION 1d)" \
		--storage.tsdb.retention.size=512MB --rules.alert.resend-delay="$resend"
}

prometheus_ready() { http_ok "http://127.0.0.1:$HIMARI_PROM_PORT/-/ready"; }

# ---- Alertmanager -----------------------------------------------------------------------------
# One receiver: the health-gateway's webhook (payload version 4), resolved alerts included.
# No cluster (--cluster.listen-address= switches gossip off, which would listen on 0.0.0.0:9094).
readonly A="$RUN/alertmanager"
alertmanager_pattern() { printf 'alertmanager --config\\.file=%s( |$)' "$(re_escape "$A/alertmanager.yml")"; }
alertmanager_pidfile() { printf '%s' "$A/alertmanager.pid"; }
alertmanager_logs() { printf '%s\n' "$A/alertmanager.log" "$A/check.log"; }
alertmanager_port_list() { printf '%s' "$HIMARI_AM_PORT"; }
alertmanager_timeout() { printf 30; }
alertmanager_where() { printf 'http://127.0.0.1:%s (webhook %s)' "$HIMARI_AM_PORT" "$(alertmanager_webhook)"; }
alertmanager_webhook() {
	printf '%s' "${HIMARI_AM_WEBHOOK_URL:-http://127.0.0.1:$GATEWAY_ADMIN_PORT/api/v1/alerts}"
}

alertmanager_prepare() {
	local wait interval repeat url
	command -v prometheus-alertmanager >/dev/null 2>&1 ||
		hm_die "prometheus-alertmanager not found (scripts/deps.sh)"
	wait="$(knob_duration HIMARI_AM_GROUP_WAIT 10s)"
	interval="$(knob_duration HIMARI_AM_GROUP_INTERVAL 1m)"
	repeat="$(knob_duration HIMARI_AM_REPEAT_INTERVAL 4h)"
	url="$(alertmanager_webhook)"
	[[ "$url" =~ ^https?://[^[:space:]\"]+$ ]] || hm_die "HIMARI_AM_WEBHOOK_URL=\"$url\" is not a URL"
	mkdir -p "$A/data"
	cat >"$A/alertmanager.yml" <<EOF_AM
# Generated by scripts/stack.sh at every start from scripts/env.sh and the HIMARI_AM_* knobs;
# edits are lost. The compose stack's equivalent is deploy/alertmanager/alertmanager.yml.
route:
  receiver: health-gateway
  group_by: [alertname, service]
  group_wait: $wait
  group_interval: $interval
  repeat_interval: $repeat

receivers:
  - name: health-gateway
    webhook_configs:
      - url: "$url"
        send_resolved: true
EOF_AM
	mark_logs "$A/check.log"
	if command -v amtool >/dev/null 2>&1; then
		amtool check-config "$A/alertmanager.yml" >"$A/check.log" 2>&1 || {
			show_log_tail "$A/check.log"
			hm_die "alertmanager: amtool rejects $A/alertmanager.yml"
		}
	fi
}

alertmanager_launch() {
	launch_logged alertmanager "$A/alertmanager.log" prometheus-alertmanager \
		--config.file="$A/alertmanager.yml" --storage.path="$A/data" \
		--web.listen-address="127.0.0.1:$HIMARI_AM_PORT" --cluster.listen-address=
}

alertmanager_ready() { http_ok "http://127.0.0.1:$HIMARI_AM_PORT/-/ready"; }

# ---- Exporters ----------------------------------------------------------------------------------
# They read no file of their own to tell one instance from another: an instance is the exporter
# on this profile's port (start refuses a port that is taken). Secrets reach them in their
# environment or through a file, never on the command line.

readonly NX="$RUN/node-exporter"
node_exporter_pattern() {
	printf 'prometheus-node-exporter --web\\.listen-address=%s( |$)' "$(re_escape "127.0.0.1:$HIMARI_NODE_EXPORTER_PORT")"
}
node_exporter_pidfile() { printf '%s' "$NX/node-exporter.pid"; }
node_exporter_logs() { printf '%s\n' "$NX/node-exporter.log"; }
node_exporter_port_list() { printf '%s' "$HIMARI_NODE_EXPORTER_PORT"; }
node_exporter_timeout() { printf 20; }
node_exporter_where() { printf 'http://127.0.0.1:%s/metrics' "$HIMARI_NODE_EXPORTER_PORT"; }
node_exporter_prepare() {
	command -v prometheus-node-exporter >/dev/null 2>&1 ||
		hm_die "prometheus-node-exporter not found (scripts/deps.sh)"
}
node_exporter_launch() {
	launch_logged node-exporter "$NX/node-exporter.log" prometheus-node-exporter \
		--web.listen-address="127.0.0.1:$HIMARI_NODE_EXPORTER_PORT"
}
node_exporter_ready() { http_ok "http://127.0.0.1:$HIMARI_NODE_EXPORTER_PORT/metrics"; }

# The Redis of this profile, with its generated password in REDIS_PASSWORD.
readonly RX="$RUN/redis-exporter"
redis_exporter_pattern() {
	printf 'prometheus-redis-exporter -web\\.listen-address=%s( |$)' "$(re_escape "127.0.0.1:$HIMARI_REDIS_EXPORTER_PORT")"
}
redis_exporter_pidfile() { printf '%s' "$RX/redis-exporter.pid"; }
redis_exporter_logs() { printf '%s\n' "$RX/redis-exporter.log"; }
redis_exporter_port_list() { printf '%s' "$HIMARI_REDIS_EXPORTER_PORT"; }
redis_exporter_timeout() { printf 20; }
redis_exporter_where() { printf 'http://127.0.0.1:%s/metrics (redis 127.0.0.1:%s)' "$HIMARI_REDIS_EXPORTER_PORT" "$HIMARI_REDIS_PORT"; }
redis_exporter_prepare() {
	command -v prometheus-redis-exporter >/dev/null 2>&1 ||
		hm_die "prometheus-redis-exporter not found (scripts/deps.sh)"
	secret redis_password >/dev/null
}
redis_exporter_launch() {
	REDIS_PASSWORD="$(cat "$RUN/secrets/redis_password")" \
		launch_logged redis-exporter "$RX/redis-exporter.log" prometheus-redis-exporter \
		-web.listen-address="127.0.0.1:$HIMARI_REDIS_EXPORTER_PORT" \
		-redis.addr="redis://127.0.0.1:$HIMARI_REDIS_PORT"
}
redis_exporter_ready() { http_ok "http://127.0.0.1:$HIMARI_REDIS_EXPORTER_PORT/metrics"; }

# PostgreSQL of this profile as role himari on himari_analytics (stack.sh creates both at the
# server's start): the DSN without its password in DATA_SOURCE_URI/USER, the password read by
# the exporter from the secret file (DATA_SOURCE_PASS_FILE).
readonly PX="$RUN/postgres-exporter"
postgres_exporter_pattern() {
	printf 'prometheus-postgres-exporter --web\\.listen-address=%s( |$)' "$(re_escape "127.0.0.1:$HIMARI_PG_EXPORTER_PORT")"
}
postgres_exporter_pidfile() { printf '%s' "$PX/postgres-exporter.pid"; }
postgres_exporter_logs() { printf '%s\n' "$PX/postgres-exporter.log"; }
postgres_exporter_port_list() { printf '%s' "$HIMARI_PG_EXPORTER_PORT"; }
postgres_exporter_timeout() { printf 20; }
postgres_exporter_where() { printf 'http://127.0.0.1:%s/metrics (postgres 127.0.0.1:%s)' "$HIMARI_PG_EXPORTER_PORT" "$HIMARI_PG_PORT"; }
postgres_exporter_prepare() {
	command -v prometheus-postgres-exporter >/dev/null 2>&1 ||
		hm_die "prometheus-postgres-exporter not found (scripts/deps.sh)"
	secret postgres_password >/dev/null
}
postgres_exporter_launch() {
	DATA_SOURCE_URI="127.0.0.1:$HIMARI_PG_PORT/himari_analytics?sslmode=disable" \
		DATA_SOURCE_USER=himari DATA_SOURCE_PASS_FILE="$RUN/secrets/postgres_password" \
		launch_logged postgres-exporter "$PX/postgres-exporter.log" prometheus-postgres-exporter \
		--web.listen-address="127.0.0.1:$HIMARI_PG_EXPORTER_PORT"
}
postgres_exporter_ready() { http_ok "http://127.0.0.1:$HIMARI_PG_EXPORTER_PORT/metrics"; }

# ---------------------------------------------------------------------------------------------
# generic start / stop / status

# find_pids NAME - pids of this instance: the pid file's (when it is really ours) and any
# process whose command line matches the instance pattern (e.g. one whose pid file was lost).
find_pids() {
	local name="$1" pattern pid
	pattern="$(srv "$name" pattern)"
	pid="$(read_pidfile "$(srv "$name" pidfile)")"
	{
		if pid_alive "$pid" && [[ "$(cmdline_of "$pid")" =~ $pattern ]]; then
			printf '%s\n' "$pid"
		fi
		pgrep -f -- "$pattern" || true
	} | sort -un
}

main_pid() { find_pids "$1" | sed -n 1p; }

declare -A LAUNCHED_AT=()
FAILED=0

start_launch() {
	local name="$1" pid port owner logs
	pid="$(main_pid "$name")"
	if [[ -n "$pid" ]]; then
		if srv "$name" ready; then
			hm_say "$name already running on $(srv "$name" where) (pid $pid)"
			return 0
		fi
		hm_say "$name is running (pid $pid) but not answering yet; waiting for it"
		LAUNCHED_AT[$name]="$(now)"
		return 0
	fi
	for port in $(srv "$name" port_list); do
		if port_open "$port"; then
			owner="$(port_owner "$port")"
			hm_say "$name: port $port on 127.0.0.1 is already taken${owner:+ by $owner}"
			FAILED=1
			return 0
		fi
	done
	mkdir -p "$RUN/$name"
	srv "$name" prepare
	hm_say "starting $name on $(srv "$name" where)"
	mapfile -t logs < <(srv "$name" logs)
	mark_logs "${logs[@]}"
	LAUNCHED_AT[$name]="$(now)"
	srv "$name" launch
}

# start_check NAME - one look at a launched server: 0 = ready (and announced), 1 = not yet,
# 2 = failed (announced, with its log tail).
start_check() {
	local name="$1" t0 timeout pid logs
	t0="${LAUNCHED_AT[$name]}"
	timeout="$(srv "$name" timeout)"
	mapfile -t logs < <(srv "$name" logs)
	pid="$(main_pid "$name")"
	if [[ -n "$pid" ]] && srv "$name" ready; then
		if declare -F "${name//-/_}_after_ready" >/dev/null; then
			srv "$name" after_ready
		fi
		hm_say "$name ready on 127.0.0.1:$(srv "$name" port_list | cut -d' ' -f1) (pid $pid, logs ${logs[0]}) after $(elapsed_since "$t0")s"
		return 0
	fi
	# No process after a few seconds means it exited (bad config, port race, ...).
	if [[ -z "$pid" ]] && older_than "$t0" 5; then
		show_log_tail "${logs[@]}"
		hm_say "$name exited during start (logs above)"
		return 2
	fi
	if older_than "$t0" "$timeout"; then
		show_log_tail "${logs[@]}"
		hm_say "$name not ready after ${timeout}s${pid:+ (pid $pid still running: stack.sh stop $name ends it)}"
		return 2
	fi
	return 1
}

cmd_start() {
	local name pending=() still rc
	# Launch all first, then poll them together: Kafka's JVM boots while Redis and
	# PostgreSQL come up, and each is announced as soon as it answers.
	for name in "$@"; do
		start_launch "$name"
		if [[ -n "${LAUNCHED_AT[$name]:-}" ]]; then
			pending+=("$name")
		fi
	done
	while [[ ${#pending[@]} -gt 0 ]]; do
		still=()
		for name in "${pending[@]}"; do
			rc=0
			start_check "$name" || rc=$?
			case $rc in
			0) ;;
			1) still+=("$name") ;;
			*) FAILED=1 ;;
			esac
		done
		pending=("${still[@]}")
		[[ ${#pending[@]} -eq 0 ]] || sleep 0.2
	done
	[[ $FAILED -eq 0 ]] || hm_die "start failed"
}

# stop_signal NAME - the polite signal. PostgreSQL gets SIGINT (fast shutdown): its SIGTERM
# is "smart" shutdown, which waits for every client to disconnect first.
stop_signal() {
	case "$1" in
	postgres) printf INT ;;
	*) printf TERM ;;
	esac
}

declare -A STOP_PIDS=()

stop_begin() {
	local name="$1" pids p children=""
	pids="$(find_pids "$name" | tr '\n' ' ')"
	if [[ -z "${pids// /}" ]]; then
		hm_say "$name not running"
		return 0
	fi
	# PostgreSQL's backends carry no path in their titles: remember them by parent.
	for p in $pids; do
		children+="$(pgrep -P "$p" | tr '\n' ' ' || true)"
	done
	hm_say "stopping $name (pid ${pids% })"
	for p in $pids; do
		kill -s "$(stop_signal "$name")" "$p" 2>/dev/null || true
	done
	STOP_PIDS[$name]="$pids $children"
}

# wait_gone SECONDS PID... - true once none of the pids is alive.
wait_gone() {
	local t0 p alive limit="$1"
	t0="$(now)"
	shift
	while :; do
		alive=0
		for p in "$@"; do
			pid_alive "$p" && alive=1 && break
		done
		[[ $alive -eq 0 ]] && return 0
		older_than "$t0" "$limit" && return 1
		sleep 0.1
	done
}

stop_finish() {
	local name="$1" pids left p t0
	pids="${STOP_PIDS[$name]:-}"
	[[ -n "${pids// /}" ]] || return 0
	t0="$(now)"
	# shellcheck disable=SC2086 # pid lists split on spaces on purpose
	if ! wait_gone "$STOP_WAIT_S" $pids; then
		hm_say "$name did not stop within ${STOP_WAIT_S}s: SIGKILL"
		for p in $pids; do
			kill -s KILL "$p" 2>/dev/null || true
		done
		# shellcheck disable=SC2086
		wait_gone 5 $pids || true
	fi
	left="$(find_pids "$name" | tr '\n' ' ')"
	if [[ -n "${left// /}" ]]; then
		hm_say "$name: processes still present after stop: $left"
		FAILED=1
		return 0
	fi
	# Pid files our launcher wrote (Redis and PostgreSQL write and remove their own).
	case "$name" in
	kafka | s3 | neo4j | prometheus | alertmanager | *-exporter) rm -f "$(srv "$name" pidfile)" ;;
	esac
	hm_say "$name stopped after $(elapsed_since "$t0")s"
}

# stop_services - the lead's service processes started from this run dir (one pid file each
# under $RUN/services/). A pid whose process started after its pid file was written belongs to
# someone else now (pid reuse) and is left alone.
stop_services() {
	local f pid etimes started mtime pids=() files=()
	for f in "$RUN"/services/*.pid; do
		[[ -e "$f" ]] || continue
		pid="$(read_pidfile "$f")"
		if ! pid_alive "$pid"; then
			rm -f "$f"
			continue
		fi
		etimes="$(ps -o etimes= -p "$pid" | tr -d ' ')"
		started=$(($(date +%s) - ${etimes:-0}))
		mtime="$(stat -c %Y "$f")"
		if ((started > mtime + 2)); then
			hm_say "services: pid $pid in $f is a newer, unrelated process; not touching it"
			rm -f "$f"
			continue
		fi
		hm_say "stopping service $(basename "$f" .pid) (pid $pid)"
		kill -s TERM "$pid" 2>/dev/null || true
		pids+=("$pid")
		files+=("$f")
	done
	[[ ${#pids[@]} -gt 0 ]] || return 0
	if ! wait_gone "$STOP_WAIT_S" "${pids[@]}"; then
		hm_say "services did not stop within ${STOP_WAIT_S}s: SIGKILL"
		for pid in "${pids[@]}"; do
			kill -s KILL "$pid" 2>/dev/null || true
		done
		wait_gone 5 "${pids[@]}" || {
			hm_say "services: some pids survived SIGKILL: ${pids[*]}"
			FAILED=1
		}
	fi
	rm -f "${files[@]}"
}

cmd_stop() {
	local all="$1" name
	shift
	if [[ "$all" -eq 1 ]]; then
		stop_services
	fi
	for name in "$@"; do
		stop_begin "$name"
	done
	for name in "$@"; do
		stop_finish "$name"
	done
	[[ $FAILED -eq 0 ]] || hm_die "stop failed"
}

cmd_status() {
	local name pid state rc=0 f spid
	for name in "$@"; do
		pid="$(main_pid "$name")"
		if [[ -z "$pid" ]]; then
			state=stopped
			rc=3
		elif srv "$name" ready; then
			state=running
		else
			state="running, not answering"
			rc=3
		fi
		printf '%-17s %-24s pid %-8s %s\n' "$name" "$state" "${pid:--}" "$(srv "$name" where)"
	done
	for f in "$RUN"/services/*.pid; do
		[[ -e "$f" ]] || continue
		spid="$(read_pidfile "$f")"
		if pid_alive "$spid"; then
			printf '%-17s %-24s pid %s\n' "$(basename "$f" .pid)" "running (service)" "$spid"
		fi
	done
	return "$rc"
}

cmd_logs() {
	local name="$1" follow="${2:-}" log
	log="$(srv "$name" logs | sed -n 1p)"
	[[ -e "$log" ]] || hm_die "no log yet: $log"
	if [[ "$follow" == -f ]]; then
		exec tail -n 50 -F "$log"
	fi
	tail -n 50 "$log"
}

# ---------------------------------------------------------------------------------------------

[[ $# -ge 1 ]] || usage
cmd="$1"
shift

if [[ "$cmd" == logs ]]; then
	[[ $# -ge 1 && $# -le 2 ]] || usage
	[[ " ${ALL_SERVERS[*]} " == *" $1 "* ]] || usage
	[[ $# -eq 1 || "$2" == -f ]] || usage
	cmd_logs "$@"
	exit 0
fi

names=()
all=0
if [[ $# -eq 0 ]]; then
	names=("${ALL_SERVERS[@]}")
	all=1
fi
for n in "$@"; do
	[[ " ${ALL_SERVERS[*]} " == *" $n "* ]] || {
		printf 'stack.sh: unknown server "%s" (%s)\n' "$n" "${ALL_SERVERS[*]}" >&2
		usage
	}
	[[ " ${names[*]} " == *" $n "* ]] || names+=("$n")
done

mkdir -p "$RUN"
# One stack.sh at a time per run dir changes things; servers are started with fd 9 closed so
# they never hold this lock.
if [[ "$cmd" != status ]]; then
	exec 9>"$RUN/.stack.lock"
	flock -w 120 9 || hm_die "another stack.sh holds $RUN/.stack.lock"
fi

case "$cmd" in
start) cmd_start "${names[@]}" ;;
stop) cmd_stop "$all" "${names[@]}" ;;
restart)
	cmd_stop 0 "${names[@]}"
	cmd_start "${names[@]}"
	;;
status) cmd_status "${names[@]}" ;;
*) usage ;;
esac
