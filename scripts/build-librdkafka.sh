#!/usr/bin/env bash
# scripts/build-librdkafka.sh - builds the librdkafka every HIMARI binary links (statically)
# into PREFIX (default $HIMARI_RDKAFKA_PREFIX, i.e. .cache/librdkafka).
#
# Why not Debian's: Debian 12 ships librdkafka 2.0.2 (January 2023), whose transaction
# commits measured slower than current releases' on the same broker in most paired runs
# (docs/BENCHMARKS.md, "Which librdkafka"); the commit is most of the validator's end-to-end
# latency, and three years of transactional-producer fixes came after it. The source comes
# through the Rust package registry (the rdkafka-sys package carries librdkafka's C tree;
# scripts/librdkafka/Cargo.toml pins the version), fetched by cargo, the registry's ordinary
# client, into $HIMARI_CACHE_DIR/cargo. Built with CMake as a static library (SSL, zlib and
# zstd from Debian; no SASL/GSSAPI, no OIDC), so the binaries need no librdkafka at run time.
#
# Idempotent: a stamp (version + build options) in PREFIX makes a second run print
# "present" and do nothing. Must never: install into the system, or touch ~/.cargo.
#
# Usage: scripts/build-librdkafka.sh [--check] [PREFIX]
#   --check: build nothing, exit 0 when PREFIX holds this build and 1 when not
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=env.sh disable=SC1091
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"

check=0
if [[ "${1:-}" == --check ]]; then
	check=1
	shift
fi
prefix="${1:-$HIMARI_RDKAFKA_PREFIX}"
manifest_dir="$HIMARI_ROOT/scripts/librdkafka"
crate="$(sed -n 's/^rdkafka-sys = "=\(.*\)"$/\1/p' "$manifest_dir/Cargo.toml")"
[[ -n "$crate" ]] || hm_die "build-librdkafka: no pinned rdkafka-sys version in $manifest_dir/Cargo.toml"
readonly CMAKE_OPTS=(-DCMAKE_BUILD_TYPE=Release -DCMAKE_POSITION_INDEPENDENT_CODE=ON
	-DRDKAFKA_BUILD_STATIC=ON -DRDKAFKA_BUILD_EXAMPLES=OFF -DRDKAFKA_BUILD_TESTS=OFF
	-DWITH_SSL=ON -DWITH_ZLIB=ON -DWITH_ZSTD=ON -DWITH_SASL=OFF -DWITH_CURL=OFF
	-DENABLE_LZ4_EXT=OFF)
want="rdkafka-sys $crate ${CMAKE_OPTS[*]}"
stamp="$prefix/.himari-build"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$prefix/lib/librdkafka.a" ]]; then
	[[ $check -eq 1 ]] || hm_say "librdkafka: present in $prefix ($(head -c 60 "$prefix/VERSION"))"
	exit 0
fi
[[ $check -eq 0 ]] || exit 1
command -v cargo >/dev/null 2>&1 || hm_die "build-librdkafka: cargo not found (scripts/deps.sh installs it)"
command -v cmake >/dev/null 2>&1 || hm_die "build-librdkafka: cmake not found (scripts/deps.sh installs it)"

export CARGO_HOME="$HIMARI_CACHE_DIR/cargo"
work="$HIMARI_CACHE_DIR/librdkafka-build"
rm -rf "$work"
mkdir -p "$work/fetch/src"
cp "$manifest_dir/Cargo.toml" "$work/fetch/"
cp "$manifest_dir/src/lib.rs" "$work/fetch/src/"
hm_say "librdkafka: fetching rdkafka-sys $crate with cargo"
(cd "$work/fetch" && cargo fetch --quiet) >"$work/fetch.log" 2>&1 ||
	{ tail -20 "$work/fetch.log" >&2; hm_die "build-librdkafka: cargo fetch failed (log: $work/fetch.log)"; }
# The package's directory is rdkafka-sys-<version>+<librdkafka version>.
src="$(find "$CARGO_HOME/registry/src" -maxdepth 2 -type d -name "rdkafka-sys-$crate+*" | head -1)"
[[ -n "$src" && -f "$src/librdkafka/CMakeLists.txt" ]] ||
	hm_die "build-librdkafka: no librdkafka source in the fetched rdkafka-sys-$crate"
version="${src##*+}"

hm_say "librdkafka: building $version into $prefix (about a minute on 2 cores)"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
{
	cmake -S "$src/librdkafka" -B "$work/build" "${generator[@]}" "${CMAKE_OPTS[@]}" \
		-DCMAKE_INSTALL_PREFIX="$prefix.tmp" &&
		cmake --build "$work/build" -j "$(nproc)" &&
		rm -rf "$prefix.tmp" && cmake --install "$work/build"
} >"$work/build.log" 2>&1 ||
	{ tail -30 "$work/build.log" >&2; hm_die "build-librdkafka: build failed (log: $work/build.log)"; }
[[ -f "$prefix.tmp/lib/librdkafka.a" ]] || hm_die "build-librdkafka: no librdkafka.a was installed"
printf '%s\n' "$want" >"$prefix.tmp/.himari-build"
printf '%s\n' "$version" >"$prefix.tmp/VERSION"
rm -rf "$prefix"
mv "$prefix.tmp" "$prefix"
rm -rf "$work"
hm_say "librdkafka: $version ready in $prefix"
