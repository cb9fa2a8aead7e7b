#!/usr/bin/env bash
# scripts/check-config-examples.sh - config/<service>.example.yaml must be exactly what the
# service prints with --print-config-example, so the documented keys and defaults are the
# ones the code has. With --write, regenerate the files instead of checking them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HIMARI_ROOT"

write=0
[[ "${1:-}" == "--write" ]] && write=1
status=0
checked=0
for dir in services/*/; do
	name="$(basename "$dir")"
	# A service whose modules land before its main.c is not a program yet (CMakeLists.txt).
	[[ -f "$dir/main.c" ]] || continue
	bin="build/bin/$name"
	example="config/$name.example.yaml"
	[[ -x "$bin" ]] || {
		hm_say "config-examples: $bin is not built"
		status=1
		continue
	}
	if [[ $write == 1 ]]; then
		"$bin" --print-config-example >"$example"
		hm_say "config-examples: wrote $example"
	elif ! diff -u "$example" <("$bin" --print-config-example); then
		hm_say "config-examples: $example differs from '$bin --print-config-example' (run scripts/check-config-examples.sh --write)"
		status=1
	fi
	checked=$((checked + 1))
done
[[ $checked -gt 0 ]] || {
	hm_say "config-examples: no service found"
	exit 1
}
exit "$status"
