# HIMARI Opus 1: the two commands a new user needs, and a few more.
#
#   make run     install what is missing, build, start the local stack (Kafka,
#                Redis, PostgreSQL on loopback), every service that exists, and
#                the simulated market feed; print what runs and where to look
#   make stop    stop all of it; leaves no process behind
#   make test    the whole test suite (format, unit, sanitizers, integration on
#                real servers); ends with "N passed, N failed"
#
# Everything else is a step of those: deps, build, build-asan, unit, bench, ...
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)

.PHONY: help deps build build-asan run stop status export-day test unit format format-check bench topics clean

help:
	@echo "make run | make stop | make test   (see README.md)"
	@echo "other targets: deps build build-asan unit format format-check bench status export-day clean"

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	@echo "==> configuring $(BUILD)/"
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null

build: $(BUILD)/build.ninja
	@echo "==> building into $(BUILD)/bin/"
	@cmake --build $(BUILD) -j $(JOBS)

$(BUILD_ASAN)/build.ninja:
	@echo "==> configuring $(BUILD_ASAN)/ (AddressSanitizer + UndefinedBehaviorSanitizer)"
	@cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DHIMARI_SANITIZE=ON >/dev/null

build-asan: $(BUILD_ASAN)/build.ninja
	@echo "==> building the sanitizer build into $(BUILD_ASAN)/"
	@cmake --build $(BUILD_ASAN) -j $(JOBS)

run:
	@scripts/run.sh start

stop:
	@scripts/run.sh stop

status:
	@scripts/run.sh status

# The cold archive of one day now (DATE=YYYY-MM-DD, default today UTC), into make run's S3.
export-day:
	@scripts/run.sh export-day $(DATE)

test:
	@scripts/test.sh

unit: build
	@ctest --test-dir $(BUILD) --output-on-failure

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') && echo "==> format: clean"

bench: build
	@bench/run.sh

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-release
