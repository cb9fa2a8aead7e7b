#!/usr/bin/env bash
# scripts/test.sh - `make test`: the whole test suite, on a fresh machine or a warm one.
#
#   1. dependencies (apt packages, Kafka jars, Python clients) - installed if missing
#   2. builds: release-with-debug (build/) and ASan+UBSan (build-asan/)
#   3. static checks: clang-format, cppcheck, shellcheck, generated config examples, the
#      issue-code table in docs/QUALITY_CHECKS.md, a Release build (build-release/),
#      docker-compose config, ansible syntax, Prometheus's config and alert rules (promtool check
#      and the rules' unit tests, docs/ALERTS.md)
#   4. unit tests (cmocka) in both builds
#   5. integration tests (pytest) against real servers on loopback (test profile ports),
#      started here and always stopped at the end
#
# Every stage is recorded; the last line is "N passed, N failed" and the exit status
# is non-zero when anything failed. Options: --no-integration, --only-integration,
# -k EXPR (passed to pytest).
set -uo pipefail

export HIMARI_PROFILE=test
# shellcheck source-path=SCRIPTDIR source=env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HIMARI_ROOT" || exit 1

run_unit=1
run_integration=1
pytest_k=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--no-integration) run_integration=0 ;;
	--only-integration) run_unit=0 ;;
	-k)
		pytest_k=(-k "$2")
		shift
		;;
	*)
		printf 'usage: %s [--no-integration|--only-integration] [-k EXPR]\n' "$0" >&2
		exit 2
		;;
	esac
	shift
done

RESULTS="$HIMARI_ROOT/build/test-results"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
STAGES="$RESULTS/stages.txt"
: >"$STAGES"

# stage NAME COMMAND... - run a check, record pass/fail, keep its output in a log.
stage() {
	local name="$1"
	shift
	local log="$RESULTS/$name.log"
	hm_say "test: $name"
	if "$@" >"$log" 2>&1; then
		printf 'pass %s\n' "$name" >>"$STAGES"
	else
		printf 'fail %s\n' "$name" >>"$STAGES"
		printf '==> FAILED: %s (last lines of %s)\n' "$name" "$log" >&2
		tail -n 40 "$log" >&2
	fi
}

# --- 1. dependencies and builds (a failure here stops everything: nothing can run) ---
if ! scripts/deps.sh; then
	echo "0 passed, 1 failed (dependencies could not be installed)"
	exit 1
fi
if ! make --no-print-directory build; then
	echo "0 passed, 1 failed (build)"
	exit 1
fi
if [[ $run_unit == 1 ]] && ! make --no-print-directory build-asan; then
	echo "0 passed, 1 failed (sanitizer build)"
	exit 1
fi

# --- 2. static checks and unit tests ---
if [[ $run_unit == 1 ]]; then
	stage format-check make --no-print-directory format-check
	stage cppcheck cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
		--inline-suppr --std=c11 -I common/include -I build/proto \
		--suppress=missingIncludeSystem common/src services tools
	stage shellcheck bash -c 'shellcheck -x -S warning scripts/*.sh bench/*.sh .ci/run'
	stage config-examples scripts/check-config-examples.sh
	stage quality-codes-doc python3 bench/quality_codes.py --check docs/QUALITY_CHECKS.md
	# Genuine exchange trades: false positives within the targets (docs/BENCHMARKS.md).
	stage real-trades python3 bench/real_trades.py tests/unit/fixtures/real-trades/dev_trades.jsonl.gz
	# A user's optimised build must build; -Werror here so that -O3-only warnings show in CI.
	stage release-build bash -c 'cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release \
		-DHIMARI_WERROR=ON >/dev/null && cmake --build build-release -j "$(nproc)"'
	stage docker-compose-config docker-compose -f deploy/docker-compose.yml config --quiet
	stage prometheus-config promtool check config deploy/prometheus/prometheus.yml
	stage prometheus-rules bash -c 'promtool check rules deploy/prometheus/rules/himari.rules.yml &&
		promtool test rules deploy/prometheus/tests/himari.rules.test.yml'
	stage alertmanager-config amtool check-config deploy/alertmanager/alertmanager.yml
	stage ansible-syntax bash -c 'cd deploy/ansible && ANSIBLE_LOCALHOST_WARNING=False \
		ANSIBLE_INVENTORY_UNPARSED_WARNING=False ansible-playbook -i inventory.example.ini \
		--syntax-check site.yml'
	hm_say "test: unit tests (build/)"
	ctest --test-dir build --output-junit "$RESULTS/unit.xml" --output-on-failure \
		>"$RESULTS/unit.log" 2>&1 || tail -n 60 "$RESULTS/unit.log" >&2
	hm_say "test: unit tests under ASan+UBSan (build-asan/)"
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir build-asan --output-junit "$RESULTS/unit-asan.xml" \
		--output-on-failure >"$RESULTS/unit-asan.log" 2>&1 ||
		tail -n 60 "$RESULTS/unit-asan.log" >&2
fi

# --- 3. integration tests on real servers ---
if [[ $run_integration == 1 ]]; then
	cleanup() {
		hm_say "test: stopping the test stack"
		scripts/stack.sh stop >"$RESULTS/stack-stop.log" 2>&1 || true
	}
	trap cleanup EXIT
	if scripts/stack.sh start kafka redis postgres; then
		printf 'pass %s\n' stack-start >>"$STAGES"
		hm_say "test: integration tests (pytest, real servers on loopback)"
		"$HIMARI_VENV/bin/python" -m pytest tests/integration -q -rfE -p no:cacheprovider \
			--junitxml="$RESULTS/integration.xml" "${pytest_k[@]}" 2>&1 |
			tee "$RESULTS/integration.log"
	else
		printf 'fail %s\n' stack-start >>"$STAGES"
	fi
fi

# --- summary ---
"$HIMARI_VENV/bin/python" scripts/test_summary.py "$RESULTS"
