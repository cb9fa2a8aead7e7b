#!/usr/bin/env bash
# scripts/run.sh - `make run` / `make stop` / `make status`: the local system in one command.
#
#   start   install what is missing, build, start Kafka + Redis + PostgreSQL + S3 (versitygw) + Neo4j on loopback
#           (dev profile ports), create the topics, start every service that exists (the
#           health-gateway last, probing the others), then the monitoring (Prometheus scraping
#           the services, Alertmanager sending to the gateway, the node/Redis/PostgreSQL
#           exporters) and the simulated market feed, wait until they are ready, print where
#           to look (the gateway's status page first)
#   stop    stop the feed, the services (SIGTERM: they commit and leave cleanly) and the
#           servers; leaves no process behind
#   status  what is running
#   export-day [DATE]  the archiver's Parquet files of DATE (default today, UTC) into S3 now
#
# Environment: HIMARI_SIM_RATE (records/s, default 2000), HIMARI_SIM_ANOMALY_RATE (default
# 0.01), HIMARI_PORT_BASE (default 19000), everything scripts/env.sh documents and the
# monitoring's knobs in scripts/stack.sh's header (HIMARI_PROM_SCRAPE_INTERVAL, ...).
set -euo pipefail
export HIMARI_PROFILE="${HIMARI_PROFILE:-dev}"
# shellcheck source-path=SCRIPTDIR source=env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HIMARI_ROOT"

SERVICES_DIR="$HIMARI_RUN_DIR/services"
LOG_DIR="$HIMARI_RUN_DIR/logs"
SIM_RATE="${HIMARI_SIM_RATE:-2000}"
SIM_ANOMALY_RATE="${HIMARI_SIM_ANOMALY_RATE:-0.01}"

# The admin (HTTP) and gRPC ports of each service: its default ports (the HM_SERVICES table
# in common/include/himari/service.h, as its generated config/<name>.example.yaml shows them,
# admin 80NN and gRPC 90NN) moved into the profile's block: admin base+NN, gRPC base+100+NN.
# So ingest-validator is 19081 and 19181 in the dev profile.
default_port() {
	local port
	port="$(awk -v sect="$2:" '$0 == sect { on = 1; next } /^[a-z]/ { on = 0 }
		on && $1 == "port:" { print $2; exit }' "config/$1.example.yaml" 2>/dev/null)"
	[[ "$port" =~ ^[0-9]+$ ]] || hm_die "no $2.port for $1 in config/$1.example.yaml"
	echo "$port"
}
admin_port() { echo $((HIMARI_PORT_BASE + $(default_port "$1" admin) - 8000)); }
grpc_port() { echo $((HIMARI_PORT_BASE + 100 + $(default_port "$1" grpc) - 9000)); }
TOKEN_FILE="$HIMARI_RUN_DIR/secrets/grpc_token"
readonly MONITORING=(prometheus alertmanager node-exporter redis-exporter postgres-exporter)

# ensure_token - the bearer token for mutating gRPC calls (Pause, Drain, ...), made once.
ensure_token() {
	[[ -s "$TOKEN_FILE" ]] && return
	mkdir -p "$(dirname "$TOKEN_FILE")"
	(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$TOKEN_FILE")
	hm_say "generated the gRPC control token in $TOKEN_FILE"
}

# services_present - the services this checkout has (each a folder under services/ with a
# main.c: one without is modules that land before their service), in the
# pipeline's order (each after what feeds it; a folder not named here comes last), so that
# `make run` starts the validator before the feature-engine and stops them the other way.
readonly PIPELINE_ORDER=(ingest-validator feature-engine archiver graph-writer health-gateway)
services_present() {
	local d name
	for name in "${PIPELINE_ORDER[@]}"; do
		[[ -f "services/$name/main.c" ]] && echo "$name"
	done
	for d in services/*/; do
		name="$(basename "$d")"
		[[ -f "$d/main.c" && " ${PIPELINE_ORDER[*]} " != *" $name "* ]] && echo "$name"
	done
	return 0
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# service_env NAME - the environment (VAR=value lines) a service of `make run` gets: the
# stack's ports and generated secrets over its config/NAME.example.yaml.
service_env() {
	local name="$1"
	printf '%s\n' \
		"HIMARI_KAFKA_BOOTSTRAP_SERVERS=$HIMARI_KAFKA_BOOTSTRAP" \
		"HIMARI_ADMIN_PORT=$(admin_port "$name")" \
		"HIMARI_GRPC_PORT=$(grpc_port "$name")" \
		"HIMARI_GRPC_TOKEN_FILE=$TOKEN_FILE" \
		"HIMARI_REDIS_PASSWORD_FILE=$HIMARI_RUN_DIR/secrets/redis_password" \
		"HIMARI_POSTGRES_PORT=$HIMARI_PG_PORT" \
		"HIMARI_POSTGRES_PASSWORD_FILE=$HIMARI_RUN_DIR/secrets/postgres_password" \
		"HIMARI_S3_ENDPOINT=http://127.0.0.1:$HIMARI_S3_PORT" \
		"HIMARI_S3_BUCKET=$HIMARI_S3_BUCKET" \
		"HIMARI_S3_ACCESS_KEY_FILE=$HIMARI_RUN_DIR/secrets/s3_access_key" \
		"HIMARI_S3_SECRET_KEY_FILE=$HIMARI_RUN_DIR/secrets/s3_secret_key" \
		"HIMARI_ARCHIVE_DIRECTORY=$HIMARI_RUN_DIR/archive" \
		"HIMARI_NEO4J_URL=http://127.0.0.1:$HIMARI_NEO4J_HTTP_PORT" \
		"HIMARI_NEO4J_PASSWORD_FILE=$HIMARI_RUN_DIR/secrets/neo4j_password" \
		"HIMARI_SERVICE_INSTANCE_ID=$name-dev"
	if [[ "$name" == health-gateway ]]; then
		printf 'HIMARI_GATEWAY_SERVICES=%s\n' "$(service_list http:// health-gateway)"
	fi
}

# service_list SCHEME [EXCEPT] - every service present but EXCEPT as a comma list of
# name=SCHEME127.0.0.1:admin_port: the health-gateway's HIMARI_GATEWAY_SERVICES (http://) and
# Prometheus's HIMARI_PROM_SERVICES (no scheme).
service_list() {
	local scheme="$1" except="${2:-}" name list=()
	for name in $(services_present); do
		[[ "$name" != "$except" ]] || continue
		list+=("$name=${scheme}127.0.0.1:$(admin_port "$name")")
	done
	(
		IFS=,
		printf '%s' "${list[*]}"
	)
}

start_service() {
	local name="$1" port
	port="$(admin_port "$name")"
	if pid_alive "$SERVICES_DIR/$name.pid"; then
		hm_say "$name already running (pid $(cat "$SERVICES_DIR/$name.pid"))"
		return
	fi
	hm_say "starting $name (admin http://127.0.0.1:$port, gRPC 127.0.0.1:$(grpc_port "$name"), log $LOG_DIR/$name.log)"
	local envs
	mapfile -t envs < <(service_env "$name")
	env "${envs[@]}" nohup "build/bin/$name" --config "config/$name.example.yaml" \
		>>"$LOG_DIR/$name.log" 2>&1 &
	echo $! >"$SERVICES_DIR/$name.pid"
}

wait_ready() {
	local name="$1" port deadline
	port="$(admin_port "$name")"
	deadline=$((SECONDS + 90))
	until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
		if ! pid_alive "$SERVICES_DIR/$name.pid"; then
			tail -n 20 "$LOG_DIR/$name.log" >&2
			hm_die "$name exited; see $LOG_DIR/$name.log"
		fi
		if ((SECONDS > deadline)); then
			curl -s "http://127.0.0.1:$port/readyz" >&2 || true
			hm_die "$name not ready after 90 s; see $LOG_DIR/$name.log"
		fi
		sleep 0.5
	done
	hm_say "$name ready"
}

start_sim() {
	if pid_alive "$SERVICES_DIR/himari-sim.pid"; then
		hm_say "simulated feed already running"
		return
	fi
	hm_say "starting the simulated feed: $SIM_RATE records/s, anomaly rate $SIM_ANOMALY_RATE"
	nohup build/bin/himari-sim --kafka "$HIMARI_KAFKA_BOOTSTRAP" --rate "$SIM_RATE" \
		--anomaly-rate "$SIM_ANOMALY_RATE" --seed "$RANDOM" \
		>>"$LOG_DIR/himari-sim.log" 2>&1 &
	echo $! >"$SERVICES_DIR/himari-sim.pid"
}

stop_pid() {
	local name="$1" file="$SERVICES_DIR/$1.pid" pid i
	[[ -f "$file" ]] || return 0
	pid="$(cat "$file")"
	if kill -0 "$pid" 2>/dev/null; then
		hm_say "stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			hm_say "$name did not stop in 30 s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$file"
}

cmd_start() {
	scripts/deps.sh
	make --no-print-directory build
	mkdir -p "$SERVICES_DIR" "$LOG_DIR"
	ensure_token
	scripts/stack.sh start kafka redis postgres s3 neo4j
	build/bin/himari-topics --bootstrap "$HIMARI_KAFKA_BOOTSTRAP" ensure
	local name
	for name in $(services_present); do start_service "$name"; done
	for name in $(services_present); do wait_ready "$name"; done
	# After the services, so that their first scrapes find them up. Prometheus scrapes the
	# services this checkout has (a missing one would be ServiceDown for ever).
	HIMARI_PROM_SERVICES="$(service_list "")" scripts/stack.sh start "${MONITORING[@]}"
	start_sim
	local gw_port=""
	if [[ " $(services_present | tr '\n' ' ') " == *" health-gateway "* ]]; then
		gw_port="$(admin_port health-gateway)"
		cat <<EOF

================================================================================
  Status page: http://127.0.0.1:$gw_port/status
================================================================================
EOF
	else
		printf '\n  (no status page: services/health-gateway has no main.c in this checkout)\n'
	fi
	cat <<EOF

HIMARI is running (profile $HIMARI_PROFILE, files under $HIMARI_RUN_DIR):
  Prometheus  http://127.0.0.1:$HIMARI_PROM_PORT   (targets: /targets, alerts: /alerts; rules: deploy/prometheus/rules/)
  Alertmanager http://127.0.0.1:$HIMARI_AM_PORT   (every alert to the health-gateway${gw_port:+, http://127.0.0.1:$gw_port/api/v1/alerts})
  exporters   node http://127.0.0.1:$HIMARI_NODE_EXPORTER_PORT/metrics, redis :$HIMARI_REDIS_EXPORTER_PORT, postgres :$HIMARI_PG_EXPORTER_PORT
  Kafka       $HIMARI_KAFKA_BOOTSTRAP   (topics: build/bin/himari-topics --bootstrap $HIMARI_KAFKA_BOOTSTRAP list)
  Redis       127.0.0.1:$HIMARI_REDIS_PORT   PostgreSQL 127.0.0.1:$HIMARI_PG_PORT (database himari_analytics)
  S3          http://127.0.0.1:$HIMARI_S3_PORT (versitygw, bucket $HIMARI_S3_BUCKET: the cold archive, a file per closed day and exchange)
  Neo4j       bolt://127.0.0.1:$HIMARI_NEO4J_BOLT_PORT  http://127.0.0.1:$HIMARI_NEO4J_HTTP_PORT (user neo4j, password in $HIMARI_RUN_DIR/secrets/neo4j_password)
  feed        build/bin/himari-sim -> raw_market_data at $SIM_RATE records/s (log $LOG_DIR/himari-sim.log)
EOF
	for name in $(services_present); do
		printf '  %-16s http://127.0.0.1:%s/status  /metrics  /readyz   (log %s)\n' \
			"$name" "$(admin_port "$name")" "$LOG_DIR/$name.log"
	done
	cat <<EOF

Look at it:
EOF
	if [[ -n "$gw_port" ]]; then
		cat <<EOF
  curl -s http://127.0.0.1:$gw_port/api/v1/status   # every part, quality per exchange, firing alerts (JSON)
  chromium --headless --no-sandbox --disable-gpu --screenshot=/tmp/himari-status.png \\
    --window-size=1400,1000 --virtual-time-budget=5000 http://127.0.0.1:$gw_port/status
EOF
	fi
	cat <<EOF
  build/bin/himarictl --target 127.0.0.1:$(grpc_port ingest-validator) status
  build/bin/himarictl --target 127.0.0.1:$(grpc_port ingest-validator) --token-file $TOKEN_FILE pause   (then: resume)
  curl -s http://127.0.0.1:$(admin_port ingest-validator)/metrics | grep himari_validator_records_total
  $HIMARI_VENV/bin/python scripts/tail.py --bootstrap $HIMARI_KAFKA_BOOTSTRAP quality_scores
  $HIMARI_VENV/bin/python scripts/tail.py --bootstrap $HIMARI_KAFKA_BOOTSTRAP features_computed
  build/bin/himarictl --target 127.0.0.1:$(grpc_port feature-engine) features BTC/USDT
  PGPASSWORD="\$(cat $HIMARI_RUN_DIR/secrets/postgres_password)" psql -h 127.0.0.1 -p $HIMARI_PG_PORT -U himari himari_analytics \\
    -c "SELECT bucket, symbol, exchange, open, high, low, close, trade_count FROM ohlcv_5min ORDER BY bucket DESC LIMIT 10"
  curl -s -u "neo4j:\$(cat $HIMARI_RUN_DIR/secrets/neo4j_password)" -H 'Content-Type: application/json' http://127.0.0.1:$HIMARI_NEO4J_HTTP_PORT/db/neo4j/tx/commit \\
    -d '{"statements":[{"statement":"MATCH (e) WHERE e:WhaleTransfer OR e:PriceMovement OR e:CascadeEvent RETURN labels(e)[0] AS kind, count(*) AS n"}]}'
  HIMARI_RUN_DIR=$HIMARI_RUN_DIR HIMARI_S3_PORT=$HIMARI_S3_PORT HIMARI_S3_BUCKET=$HIMARI_S3_BUCKET build/bin/himari-s3 ls market_data/
    (the archive: a day's files come 15 min after it ends, UTC; today's now: make export-day)
  make status
Stop everything with: make stop
EOF
}

cmd_stop() {
	stop_pid himari-sim
	local name
	for name in $(services_present | tac); do stop_pid "$name"; done
	scripts/stack.sh stop
	hm_say "stopped; nothing of profile $HIMARI_PROFILE is running"
}

# export-day [DATE] - write DATE's (default: today, UTC) archive files now, with the
# running archiver's settings (the day need not be closed: a later export replaces them).
cmd_export_day() {
	local day="${1:-$(date -u +%F)}" envs
	mapfile -t envs < <(service_env archiver)
	env "${envs[@]}" build/bin/archiver --config config/archiver.example.yaml --export-day "$day"
	hm_say "list the archive: HIMARI_RUN_DIR=$HIMARI_RUN_DIR HIMARI_S3_PORT=$HIMARI_S3_PORT HIMARI_S3_BUCKET=$HIMARI_S3_BUCKET build/bin/himari-s3 ls market_data/"
}

cmd_status() {
	local name
	for name in himari-sim $(services_present); do
		if pid_alive "$SERVICES_DIR/$name.pid"; then
			printf '%-18s running (pid %s)\n' "$name" "$(cat "$SERVICES_DIR/$name.pid")"
		else
			printf '%-18s stopped\n' "$name"
		fi
	done
	scripts/stack.sh status || true
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
export-day) cmd_export_day "${2:-}" ;;
*)
	printf 'usage: %s start|stop|status|export-day [YYYY-MM-DD]\n' "$0" >&2
	exit 2
	;;
esac
